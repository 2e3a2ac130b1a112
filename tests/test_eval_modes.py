"""Mode coverage on hand-built samples whose answers are known in closed form.

All randomness is seeded (numpy default_rng with fixed seeds), so every run is identical.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from otgen.eval.modes import (assign_to_modes, kl_divergence, mode_coverage, mode_coverage_for_toy,
                              with_between_modes_fraction)


def _grid25(spacing=2.0):
    xs = (np.arange(5) - 2) * spacing
    return np.array([(x, y) for x in xs for y in xs])


def _ring8(radius=2.0):
    t = 2 * np.pi * np.arange(8) / 8
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def test_all_samples_on_five_of_twenty_five_modes_gives_five_captured():
    centres, std = _grid25(), 0.05
    rng = np.random.default_rng(0)
    chosen = np.array([0, 6, 12, 18, 24])
    samples = centres[rng.choice(chosen, 2500)] + std * rng.standard_normal((2500, 2)) * 0.5
    out = mode_coverage(samples, centres, std)
    assert out["modes_captured"] == 5
    assert out["modes_captured_strict"] == 5  # each gets ~500 >> 0.25 * 100
    assert out["high_quality_fraction"] == 1.0  # noise is 0.5 sigma: P(> 3 sigma) ~ 1e-15
    assert sorted(np.flatnonzero(out["mode_histogram"])) == list(chosen)
    # all HQ mass on 5 of 25 equally likely modes, equally split (up to sampling):
    # KL(p || uniform) = log(25 / 5) when p is uniform on the 5
    p = np.array(out["mode_histogram"]) / 2500
    expected = float(np.sum(p[p > 0] * np.log(p[p > 0] * 25)))
    assert out["reverse_kl"] == pytest.approx(expected, rel=1e-12)
    assert out["reverse_kl"] == pytest.approx(math.log(5), abs=0.01)


def test_exact_proportional_histogram_has_zero_kl_and_full_coverage():
    centres = _ring8()
    samples = np.repeat(centres, 10, axis=0)  # 10 points exactly at each centre
    out = mode_coverage(samples, centres, 0.02)
    assert out["modes_captured"] == 8 and out["modes_captured_strict"] == 8
    assert out["high_quality_fraction"] == 1.0
    assert out["reverse_kl"] == pytest.approx(0.0, abs=1e-15)
    assert out["mode_histogram"] == [10] * 8


def test_three_sigma_boundary_decides_high_quality():
    centres = np.array([[0.0, 0.0], [100.0, 0.0]])
    std = 1.0
    # 2.9 sigma away: high quality; 3.1 sigma: not, although its nearest mode is the same
    samples = np.array([[2.9, 0.0], [0.0, -3.1], [100.0, 2.0]])
    out = mode_coverage(samples, centres, std)
    assert out["mode_histogram"] == [1, 1]
    assert out["high_quality_fraction"] == pytest.approx(2 / 3)


def test_per_mode_std_changes_assignment_by_normalised_distance():
    centres = np.array([[0.0, 0.0], [4.0, 0.0]])
    x = np.array([[1.5, 0.0]])  # Euclidean-nearest is mode 0, but mode 1 is 4x wider
    idx, dist = assign_to_modes(x, centres, np.array([0.1, 1.0]))
    assert idx[0] == 1 and dist[0] == pytest.approx(2.5)


def test_strict_rule_with_unequal_weights():
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    weights = np.array([0.8, 0.2])
    # n = 100: expected shares 80 and 20; a quarter of them is 20 and 5
    samples = np.concatenate([np.zeros((96, 2)), np.tile([[10.0, 0.0]], (4, 1))])
    out = mode_coverage(samples, centres, 0.1, weights)
    assert out["modes_captured"] == 2
    assert out["modes_captured_strict"] == 1  # 4 < 0.25 * 20
    p = np.array([0.96, 0.04])
    assert out["reverse_kl"] == pytest.approx(float(np.sum(p * np.log(p / weights))), rel=1e-12)


def test_reverse_kl_direction_is_model_first():
    # p = (1, 0): KL(p || w) = log(1 / w_0) is finite; the forward direction would be infinite.
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    out = mode_coverage(np.zeros((50, 2)), centres, 0.1, np.array([0.25, 0.75]))
    assert out["reverse_kl"] == pytest.approx(math.log(4.0))


def test_no_high_quality_samples_and_nonfinite_samples():
    centres = _ring8()
    samples = np.full((10, 2), 50.0)
    samples[:3] = np.nan
    out = mode_coverage(samples, centres, 0.02)
    assert out["modes_captured"] == 0 and out["high_quality_fraction"] == 0.0
    assert out["reverse_kl"] == math.inf
    assert out["nonfinite_fraction"] == pytest.approx(0.3)


def test_permuting_samples_and_modes_is_consistent():
    rng = np.random.default_rng(1)
    centres = _grid25()
    samples = centres[rng.integers(0, 25, 400)] + 0.1 * rng.standard_normal((400, 2))
    a = mode_coverage(samples, centres, 0.1)
    perm = rng.permutation(25)
    b = mode_coverage(samples[rng.permutation(400)], centres[perm], 0.1)
    assert a["modes_captured"] == b["modes_captured"]
    assert a["high_quality_fraction"] == b["high_quality_fraction"]
    assert np.array(b["mode_histogram"]).tolist() == np.array(a["mode_histogram"])[perm].tolist()
    assert a["reverse_kl"] == pytest.approx(b["reverse_kl"], rel=1e-12)


def test_blocked_distance_matches_brute_force():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(30, 3))
    x = rng.normal(size=(9000, 3))  # more than one block
    idx, dist = assign_to_modes(x, centres, 0.5)
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=-1) / 0.5
    np.testing.assert_array_equal(idx, d.argmin(1))
    np.testing.assert_allclose(dist, d.min(1), rtol=1e-9, atol=1e-9)


def test_kl_divergence_closed_forms():
    assert kl_divergence([1, 1, 1, 1], [0.25] * 4) == pytest.approx(0.0)
    assert kl_divergence([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert kl_divergence([0, 1], [1, 0]) == math.inf
    assert kl_divergence([0, 0], [0.5, 0.5]) == math.inf


def test_toy_convenience_and_bad_inputs():
    toy = SimpleNamespace(name="ring8", centres=_ring8(), std=0.02, weights=np.full(8, 1 / 8))
    out = mode_coverage_for_toy(np.repeat(toy.centres, 3, axis=0), toy)
    assert out["modes_captured"] == 8
    with pytest.raises(ValueError, match="no Gaussian modes"):
        mode_coverage_for_toy(np.zeros((3, 2)), SimpleNamespace(name="spiral", centres=None, std=None))
    with pytest.raises(ValueError, match="samples must have shape"):
        mode_coverage(np.zeros((3, 3)), _ring8(), 0.1)
    with pytest.raises(ValueError, match="std"):
        mode_coverage(np.zeros((3, 2)), _ring8(), 0.0)
    with pytest.raises(ValueError, match="sum to 1"):
        mode_coverage(np.zeros((3, 2)), _ring8(), 0.1, np.ones(8))
    with pytest.raises(ValueError, match="weights must have shape"):
        mode_coverage(np.zeros((3, 2)), _ring8(), 0.1, np.ones(3) / 3)


def test_with_between_modes_fraction_recovers_what_mode_coverage_reports():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [1.0, 0.0]])
    samples = np.concatenate([rng.normal(size=(30, 2)) * 0.01, rng.uniform(-1, 2, size=(20, 2)), [[np.inf, 0.0]]])
    scores = mode_coverage(samples, centres, 0.01)
    assert 0 < scores["between_modes_fraction"] < 1 and scores["nonfinite_fraction"] > 0
    old = {k: v for k, v in scores.items() if k != "between_modes_fraction"}  # scored before the field
    assert with_between_modes_fraction(old)["between_modes_fraction"] == pytest.approx(scores["between_modes_fraction"])
    assert with_between_modes_fraction({"between_modes_fraction": 0.5, "high_quality_fraction": 0.2}) == \
        {"between_modes_fraction": 0.5, "high_quality_fraction": 0.2}  # present: kept
    assert with_between_modes_fraction({"fid": 3.0}) == {"fid": 3.0}  # not a mode score: left alone
