"""``otgen toy`` end to end (small sizes) and the AEOT pipeline object."""

import json

import jax
import numpy as np
import pytest

from otgen.aeot import AEOT, OTOptions, fit_whitening
from otgen.cli import main
from otgen.ot import NotConvergedWarning


def test_toy_aeot_run_writes_the_run_directory_and_covers_every_mode(tmp_path, capsys):
    out = tmp_path / "ring8"
    assert main(["toy", "--dist", "ring8", "--model", "aeot", "--out", str(out), "--n-train", "400",
                 "--n-samples", "1000", "--no-progress"]) == 0
    for name in ("samples.npy", "samples.png", "metrics.json", "config.json", "data.npy", "brenier.npz"):
        assert (out / name).exists(), name
    samples = np.load(out / "samples.npy")
    assert samples.shape == (1000, 2)
    m = json.loads((out / "metrics.json").read_text())
    assert m["modes_captured"] == 8 and m["high_quality_fraction"] >= 0.95 and m["reverse_kl"] < 0.05
    assert m["copy_fraction"] < 0.01 and m["ot_converged"] and m["interpolated_fraction"] > 0.95
    assert m["data_copying_ct"] > -5 and 0.9 < m["spread_ratio"] < 1.1 and m["w2"] > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 0 and cfg["config"]["extension"]["angle_threshold"] == 0.1
    printed = capsys.readouterr().out
    assert "modes 8/8" in printed and "copies of training points, data-copying C_T" in printed
    assert f"OT converged: yes (L1 {m['ot_l1_error']:.4f} <= tol 0.02)" in printed
    assert m["ot_stop_reason"] == "converged" and m["ot_notes"][0].startswith("discrete-OT start")
    # A step budget too small to converge is said on the summary line, not hidden.
    out3 = tmp_path / "short"
    with pytest.warns(NotConvergedWarning):
        main(["toy", "--dist", "ring8", "--out", str(out3), "--n-train", "400", "--n-samples", "200",
              "--steps", "1", "--no-progress"])
    m3 = json.loads((out3 / "metrics.json").read_text())
    assert not m3["ot_converged"] and m3["ot_stop_reason"] == "max_steps"
    assert (f"OT converged: no (L1 {m3['ot_l1_error']:.4f} > tol 0.02, stopped by max_steps)"
            in capsys.readouterr().out)
    # Same seed, same samples (reproducible end to end).
    out2 = tmp_path / "again"
    main(["toy", "--dist", "ring8", "--out", str(out2), "--n-train", "400", "--n-samples", "1000", "--no-progress"])
    np.testing.assert_array_equal(np.load(out2 / "samples.npy"), samples)


def test_toy_gan_run_and_user_data(tmp_path):
    data = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    np.save(tmp_path / "pts.npy", data)
    out = tmp_path / "gan"
    assert main(["toy", "--data", str(tmp_path / "pts.npy"), "--model", "gan", "--steps", "20", "--out", str(out),
                 "--n-samples", "200", "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert np.load(out / "samples.npy").shape == (200, 3) and "modes_captured" not in m
    assert (out / "checkpoint.npz").exists() and (out / "loss.png").exists()
    np.testing.assert_array_equal(np.load(out / "data.npy"), data)


def test_bad_data_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[0.0, np.nan], [1.0, 2.0]]))
    assert main(["toy", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["toy", "--help"])
    text = capsys.readouterr().out
    for flag in ("--dist", "--data", "--model", "--out", "--seed", "--n-samples", "--steps", "--resume",
                 "--angle-threshold", "grid25", "pacgan4"):
        assert flag in text


def test_whitening_round_trip_and_placement():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4)) + 3.0
    for source in ("gaussian", "uniform"):
        w = fit_whitening(z, source)
        t = w.apply(z)
        np.testing.assert_allclose(w.invert(t), z, atol=1e-3)
        if source == "uniform":
            assert t.min() >= 0.0199 and t.max() <= 0.9801
        else:
            np.testing.assert_allclose(np.cov(t, rowvar=False), np.eye(4), atol=1e-3)


def test_whitening_save_load_round_trip_and_corruption(tmp_path):
    from otgen.aeot import Whitening
    from otgen.checkpoint import CheckpointError, save_pytree

    w = fit_whitening(np.random.default_rng(1).normal(size=(100, 3)), "uniform")
    w.save(tmp_path / "w.npz")
    back = Whitening.load(tmp_path / "w.npz")
    for a, b in zip(w, back):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "bad.npz").write_bytes((tmp_path / "w.npz").read_bytes()[:100])
    with pytest.raises(CheckpointError):
        Whitening.load(tmp_path / "bad.npz")
    save_pytree(tmp_path / "other.npz", {"mean": np.zeros(3)}, {"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a saved code whitening"):
        Whitening.load(tmp_path / "other.npz")


def test_aeot_object_rejects_bad_codes_and_unfitted_use():
    model = AEOT(ot=OTOptions(max_steps=2))
    with pytest.raises(ValueError, match="not fitted"):
        model.sample(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 0.0]]), jax.random.key(0))
    with pytest.raises(ValueError, match="shape"):
        model.fit(np.zeros(5), jax.random.key(0))
    with pytest.raises(ValueError, match="optimizer"):
        OTOptions(optimizer="sgd")
