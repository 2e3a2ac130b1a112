"""``otgen toy`` end to end (small sizes) and the AEOT pipeline object."""

import json

import jax
import numpy as np
import pytest

from otgen.cli import main
from otgen.generators.aeot import AEOT, OTOptions, fit_whitening
from otgen.ot import NotConvergedWarning


def test_toy_aeot_run_writes_the_run_directory_and_covers_every_mode(tmp_path, capsys):
    out = tmp_path / "ring8"
    assert main(["toy", "--dist", "ring8", "--model", "aeot", "--out", str(out), "--n-train", "400",
                 "--n-samples", "1000", "--no-progress"]) == 0
    for name in ("samples.npy", "samples.png", "metrics.json", "config.json", "data.npy", "brenier.npz",
                 "power_diagram.png"):
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
    assert f"OT converged: yes (L1 {m['ot_l1_error']:.3g} <= tol 0.02 (exact 2-D path))" in printed
    assert m["ot_stop_reason"] == "converged" and m["ot_optimizer"] == "exact-newton" and m["ot_l1_error"] < 1e-8
    assert m["ot_notes"][0].startswith("exact power-diagram path") and m["power_diagram_png"]
    # A step budget too small to converge is said on the summary line, not hidden.
    out3 = tmp_path / "short"
    with pytest.warns(NotConvergedWarning):
        main(["toy", "--dist", "ring8", "--out", str(out3), "--n-train", "400", "--n-samples", "200",
              "--steps", "1", "--no-progress"])
    m3 = json.loads((out3 / "metrics.json").read_text())
    assert not m3["ot_converged"] and m3["ot_stop_reason"] == "max_steps"
    assert (f"OT converged: no (L1 {m3['ot_l1_error']:.3g} > tol 0.02, stopped by max_steps)"
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
    for flag in ("--dist", "--data", "--model", "--out", "--seed", "--n-samples", "--steps", "--overwrite",
                 "--angle-threshold", "grid25", "pacgan4"):
        assert flag in text


def test_rerun_resumes_and_another_model_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["toy", "--dist", "ring8", "--out", str(out), "--n-train", "300", "--n-samples", "300", "--no-progress"]
    assert main(args) == 0
    first = np.load(out / "samples.npy")
    stamp = (out / "brenier.npz").stat().st_mtime_ns
    assert main(args) == 0  # the same run again: the solved map is reloaded, not recomputed
    assert (out / "brenier.npz").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.load(out / "samples.npy"), first)
    capsys.readouterr()
    gan = ["toy", "--dist", "ring8", "--model", "gan", "--steps", "5", "--out", str(out), "--n-train", "300",
           "--n-samples", "300", "--no-progress"]
    assert main(gan) == 2
    err = capsys.readouterr().err
    assert "model: 'aeot' there, 'gan' now" in err and "--overwrite" in err
    np.testing.assert_array_equal(np.load(out / "samples.npy"), first)  # nothing touched
    assert main(gan + ["--overwrite"]) == 0
    assert not (out / "brenier.npz").exists() and (out / "checkpoint.npz").exists()


def test_out_that_is_a_file_or_a_foreign_directory_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["toy", "--out", str(tmp_path / "f"), "--no-progress"]) == 2
    assert "is an existing file" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    assert main(["toy", "--out", str(tmp_path / "d"), "--no-progress", "--overwrite"]) == 2
    assert "holds no otgen run" in capsys.readouterr().err
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"


def test_data_errors_leave_no_run_directory_and_name_the_problem(tmp_path, capsys):
    text = tmp_path / "points.npy"
    text.write_text("1.0 2.0\n3.0 4.0\n")
    assert main(["toy", "--data", str(text), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is not a .npy file" in err and "pickle" not in err
    assert not (tmp_path / "o").exists()
    np.savez(tmp_path / "two.npz", a=np.zeros((3, 2)), b=np.ones(3))
    assert main(["toy", "--data", str(tmp_path / "two.npz"), "--out", str(tmp_path / "o")]) == 2
    assert ".npz archive" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_repeated_points_are_merged_and_said(tmp_path, capsys):
    pts = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    data = np.concatenate([pts, pts[:40]])  # 40 points twice
    np.save(tmp_path / "dup.npy", data)
    out = tmp_path / "o"
    assert main(["toy", "--data", str(tmp_path / "dup.npy"), "--out", str(out), "--n-samples", "200",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "40 of the 140 training points repeat" in printed and "summed weight" in printed
    from otgen.ot import BrenierMap

    bmap = BrenierMap.load(out / "brenier.npz")
    assert bmap.num_targets == 100
    w = np.asarray(bmap.weights)
    np.testing.assert_allclose(np.sort(w)[-40:], 2 / 140, rtol=1e-5)
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_distinct_train"] == 100 and m["n_train_used"] == 140


def test_aeot_only_flags_are_refused_for_a_gan(tmp_path, capsys):
    assert main(["toy", "--model", "gan", "--angle-threshold", "0.2", "--out", str(tmp_path / "o")]) == 2
    assert "--angle-threshold" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_gan_identity_ignores_aeot_options_so_older_run_directories_resume():
    from otgen.pipelines.toy import ToyRunConfig

    gan = ToyRunConfig(model="gan", dist="ring8", out="x").identity()
    assert "ot_tol" not in gan and "steps" not in gan and gan["model"] == "gan"
    assert "ot_tol" in ToyRunConfig(model="aeot", dist="ring8", out="x").identity()


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
    from otgen.generators.aeot import Whitening
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


def test_cli_as_a_subprocess_refuses_bad_out_and_bad_data_with_exit_2(tmp_path):
    """The friction items as a user meets them: a real process, its exit code and stderr."""
    import subprocess
    import sys

    (tmp_path / "f").write_text("x")
    (tmp_path / "pts.npy").write_text("1 2\n3 4\n")
    for args, message in ((["--out", str(tmp_path / "f")], "is an existing file"),
                          (["--data", str(tmp_path / "pts.npy"), "--out", str(tmp_path / "o")], "is not a .npy file")):
        done = subprocess.run([sys.executable, "-m", "otgen.cli", "toy", *args], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_outputs_follow_the_users_umask(tmp_path):
    import os

    from otgen.rundir import RunDir

    mask = os.umask(0o022)
    os.umask(mask)
    rd = RunDir(tmp_path)
    rd.write_json("m.json", {"a": 1})
    rd.save_array("x.npy", np.zeros(3))
    for name in ("m.json", "x.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
