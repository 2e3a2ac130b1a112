"""The 2-D toy suite (otgen.data.toys) and user .npy data."""

import jax
import numpy as np
import pytest

from otgen.data import toys
from otgen.eval.modes import mode_coverage_for_toy


def test_pacgan_mixtures_exactly():
    ring = toys.get("ring8")
    t = 2 * np.pi * np.arange(8) / 8
    np.testing.assert_allclose(ring.centres, np.stack([np.cos(t), np.sin(t)], 1), atol=1e-12)
    assert ring.std == 0.01
    np.testing.assert_allclose(ring.weights, np.full(8, 1 / 8))
    grid = toys.get("grid25")
    assert grid.std == 0.05 and grid.centres.shape == (25, 2)
    assert sorted(set(grid.centres[:, 0])) == [-4, -2, 0, 2, 4]
    assert sorted(map(tuple, grid.centres)) == sorted((a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4))
    unequal = toys.get("ring8_unequal")
    assert unequal.weights.sum() == pytest.approx(1.0) and unequal.weights.max() / unequal.weights.min() == 8


@pytest.mark.parametrize("name", toys.names())
def test_samples_are_reproducible_and_score_as_the_true_distribution(name):
    toy = toys.get(name)
    a = toy.sample(jax.random.key(0), 5000)
    b = toy.sample(jax.random.key(0), 5000)
    assert a.shape == (5000, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    m = mode_coverage_for_toy(a, toy)
    assert m["modes_captured"] == m["n_modes"]
    # Within 3 sigma: 98.9% of a 2-D Gaussian (chi with 2 dof), 99.7% of a 1-D normal offset from a curve.
    assert m["high_quality_fraction"] > 0.97
    assert m["reverse_kl"] < 0.01


def test_unequal_weights_are_respected():
    toy = toys.get("ring8_unequal")
    m = mode_coverage_for_toy(toy.sample(jax.random.key(1), 30000), toy)
    share = np.asarray(m["mode_histogram"]) / sum(m["mode_histogram"])
    np.testing.assert_allclose(share, toy.weights, atol=0.01)


def test_curve_toy_coverage_detects_a_missing_piece():
    toy = toys.get("nested_rings")
    x = toy.sample(jax.random.key(2), 3000)
    inner_only = x[np.linalg.norm(x, axis=1) < 1.5]
    m = mode_coverage_for_toy(inner_only, toy)
    assert m["modes_captured"] == 1 and m["high_quality_fraction"] > 0.97
    gap = np.full((100, 2), 1.5, np.float32) / np.sqrt(2)  # radius 1.5: between the rings
    assert mode_coverage_for_toy(gap, toy)["high_quality_fraction"] == 0.0


def test_unknown_toy():
    with pytest.raises(ValueError, match="unknown toy distribution 'moons'"):
        toys.get("moons")


def test_load_npy_accepts_good_data_and_names_every_problem(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.arange(12, dtype=np.float64).reshape(6, 2))
    x = toys.load_npy(good)
    assert x.dtype == np.float32 and x.shape == (6, 2)
    cases = {
        "nan.npy": (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]), "NaN or inf \\(first at row 1\\)"),
        "flat.npy": (np.zeros(5), "shape \\(n, d\\)"),
        "cube.npy": (np.zeros((2, 2, 2)), "shape \\(n, d\\)"),
        "text.npy": (np.array([["a", "b"], ["c", "d"]]), "dtype"),
        "complex.npy": (np.ones((3, 2), np.complex64), "dtype"),
        "single.npy": (np.zeros((1, 2)), "at least 2 points"),
    }
    for name, (arr, msg) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(ValueError, match=msg):
            toys.load_npy(tmp_path / name)
    np.save(tmp_path / "records.npy", np.zeros((3, 2), dtype=[("a", "f4")]))  # structured: not numbers
    with pytest.raises(ValueError, match="dtype"):
        toys.load_npy(tmp_path / "records.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="is not a .npy file"):
        toys.load_npy(tmp_path / "junk.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "nan.npy").read_bytes()[:70])  # header, then truncated
    with pytest.raises(ValueError, match="not a readable numeric .npy"):
        toys.load_npy(tmp_path / "cut.npy")
    with pytest.raises(ValueError, match="does not exist"):
        toys.load_npy(tmp_path / "missing.npy")
