"""``otgen compare``: planning, resuming, failure handling and the generated reports.

The toy runner and toy registry are replaced by fakes whose samples have known
mode statistics (exact mixture draws vs a generator collapsed on one mode), so
the report's numbers are known in closed form.  All randomness is seeded.
"""

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from otgen.eval import evaluate
from experiments import compare, compare_runs, report_common, report_images
from otgen.rundir import RunDir

RING = 2.0 * np.stack([np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], axis=1)
STD = 0.02


def _fake_toy(name):
    if name != "ring8":
        raise ValueError(f"unknown toy {name!r}")
    return SimpleNamespace(name="ring8", centres=RING, std=STD, weights=np.full(8, 1 / 8),
                           sample=lambda key, n: RING[np.arange(n) % 8] + STD * np.random.default_rng(0).normal(size=(n, 2)))


class FakeRunner:
    """aeot: exactly 2500 // 8 samples at each centre (+ tiny noise); gan: all on mode 0; bad: raises."""

    def __init__(self):
        self.calls = []

    def __call__(self, spec):
        self.calls.append((spec.dist, spec.model, spec.seed))
        if spec.model == "wgan":
            raise FloatingPointError("training diverged at step 10")
        rng = np.random.default_rng(spec.seed)
        n = 2496
        centre = RING[np.arange(n) % 8] if spec.model == "aeot" else np.repeat(RING[:1], n, axis=0)
        rd = RunDir(spec.out)
        samples = centre + 0.5 * STD * rng.normal(size=(n, 2))
        train = RING[np.arange(400) % 8] + STD * np.random.default_rng(1).normal(size=(400, 2))
        rd.save_array("samples.npy", samples)
        rd.save_array("data.npy", train)
        held = _fake_toy("ring8").sample(None, n)
        rd.write_json("metrics.json", {"model": spec.model, "wall_seconds": 1.0,
                                       **evaluate("toy", samples, toy=_fake_toy("ring8"), train=train,
                                                  held_out=held, seed=spec.seed)})


def _args(tmp_path, **kw):
    base = dict(suite="toy", models="aeot,gan,wgan", dists="ring8", seeds=2, steps=7, n_samples=None,
                preset="quick", gan_steps=None, data_dir=None, runs_dir=str(tmp_path / "runs"),
                report_dir=str(tmp_path / "reports"), report_only=False, quiet=True, report_name=None,
                baselines_dir=None)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture
def fake(monkeypatch):
    runner = FakeRunner()
    monkeypatch.setattr(compare, "get_toy", _fake_toy)
    monkeypatch.setattr(compare, "toy_runner", lambda n_samples, steps: runner)
    return runner


def test_toy_report_numbers_resume_and_failures(tmp_path, fake):
    assert compare.main(_args(tmp_path)) == 0
    assert len(fake.calls) == 6  # 3 models x 2 seeds
    report = (tmp_path / "reports" / "toy.md").read_text()
    assert "- Command: `otgen compare --suite toy --models aeot,gan,wgan --dists ring8 --seeds 2 --steps 7" in report
    assert "- Written: 20" in report and "UTC" in report
    # aeot: every mode, 312 samples each, all HQ; KL to uniform weights exactly 0
    assert "| aeot | 2/2 | 8.0 ± 0.0 | 8.0 ± 0.0 | 100.0 ± 0.0 | 0.0 ± 0.0 | 0.000 ± 0.000 |" in report
    # gan: one mode; strict rule also 1; none between modes; KL = log 8
    assert f"| gan | 2/2 | 1.0 ± 0.0 | 1.0 ± 0.0 | 100.0 ± 0.0 | 0.0 ± 0.0 | {math.log(8):.3f} ± 0.000 |" in report
    assert "| wgan | 0/2 (2 failed) | — |" in report
    # control rows, scored by the same code: the replay copies everything and wins modes / HQ / KL
    assert "| *real* (fresh draws) | 2/2 | 8.0 ± 0.0 |" in report
    replay_row = next(line for line in report.splitlines() if line.startswith("| *replay* (training set) | 2/2 |"))
    assert "| 100.0 ± 0.0 |" in replay_row.split("| 8.0 ± 0.0 | 8.0 ± 0.0 |")[1]  # % copies
    assert "blind to copying here: modes, HQ" in report
    assert "AE-OT on ring8: covers every mode with >= 95% HQ in all seeds (all 8 modes in 2/2 seeds" in report
    assert "gan on ring8 falls short: all 8 modes in 0/2 seeds" in report
    assert "wgan on ring8: no finished run." in report
    assert "FloatingPointError: training diverged at step 10" in report
    assert "PacGAN paper (10 trials): GAN 6.3 modes" in report
    png = tmp_path / "reports" / "toy_samples.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = tmp_path / "runs" / "toy" / "ring8" / "wgan" / "seed0" / compare_runs.ERROR_FILE
    assert err.exists()
    # second call: finished runs are skipped, only the failed ones are retried
    fake.calls.clear()
    assert compare.main(_args(tmp_path)) == 0
    assert sorted(fake.calls) == [("ring8", "wgan", 0), ("ring8", "wgan", 1)]
    # report-only runs nothing
    fake.calls.clear()
    assert compare.main(_args(tmp_path, report_only=True)) == 0
    assert fake.calls == []


def test_published_budget_baselines_join_the_toy_report(tmp_path, fake):
    # an `otgen reproduce` runs directory: one finished job (collapsed on one mode), one still running
    repro = tmp_path / "repro"
    done = RunDir(repro / "ring8_gan_s0")
    samples = np.repeat(RING[:1], 2500, axis=0) + 0.5 * STD * np.random.default_rng(3).normal(size=(2500, 2))
    train = RING[np.arange(400) % 8] + STD * np.random.default_rng(1).normal(size=(400, 2))
    done.save_array("samples.npy", samples)
    done.write_json("metrics.json", {"model": "gan", "steps": 400_000, "wall_seconds": 5400.0,
                                     **evaluate("toy", samples, toy=_fake_toy("ring8"), train=train,
                                                held_out=_fake_toy("ring8").sample(None, 2500), seed=0)})
    RunDir(repro / "ring8_pacgan4_s0").write_json("config.json", {"model": "pacgan4"})  # no metrics yet
    assert compare.main(_args(tmp_path, models="aeot", seeds=1, baselines_dir=str(repro))) == 0
    assert fake.calls == [("ring8", "aeot", 0)]  # the baselines are read, never run
    report = (tmp_path / "reports" / "toy.md").read_text()
    assert f"--baselines-dir {repro}" in report and "Rows *(published budget)*" in report
    assert f"| gan (published budget) | 1/1 | 1.0 | 1.0 | 100.0 | 0.0 | {math.log(8):.3f} |" in report  # one seed
    assert "| 5400.0 |" in report and "pacgan4 (published budget)" not in report
    assert "gan (published budget) on ring8 falls short: all 8 modes in 0/1 seeds" in report


def test_wall_time_comes_from_the_run_directory(tmp_path, fake):
    compare.main(_args(tmp_path, models="aeot", seeds=1))
    out = tmp_path / "runs" / "toy" / "ring8" / "aeot" / "seed0"
    rd = RunDir(out)
    rd.write_json("metrics.json", {**rd.read_json("metrics.json"), "wall_seconds": 12.34})
    compare.main(_args(tmp_path, models="aeot", seeds=1, report_only=True))
    assert "| 12.3 |" in (tmp_path / "reports" / "toy.md").read_text()


def test_bad_inputs_fail_before_any_training(tmp_path, fake):
    with pytest.raises(ValueError, match="unknown model"):
        compare.main(_args(tmp_path, models="aeot,vae"))
    with pytest.raises(ValueError, match="unknown toy"):
        compare.main(_args(tmp_path, dists="ring8,nope"))
    assert fake.calls == []


def _mnist_run(out: Path, hist, fid, seconds, seed=0):
    rd = RunDir(out)
    rd.save_array("samples.npy", np.full((30, 28, 28), 128, np.uint8))
    kl = float(sum(h / sum(hist) * math.log(h / sum(hist) * 10) for h in hist if h))
    rd.write_json("metrics.json", {"classes_covered": sum(h > 0 for h in hist), "classes_covered_strict": 0,
                                   "kl_uniform": kl, "fid": fid, "precision": 0.5, "recall": 0.25,
                                   "fid_train_vs_test": 0.5, "classifier_test_accuracy": 0.9912})
    rd.write_json("stages.json", {"train": {"seconds": seconds}, "generate": {"seconds": 1.0}})
    m = rd.read_json("metrics.json")
    rd.write_json("metrics.json", {**m, "wall_seconds": seconds + 1.0})  # as the evaluate stage records it


def test_mnist_report_from_run_directories(tmp_path):
    specs = compare_runs.plan("mnist", tmp_path / "runs", ["aeot", "gan"], ["quick"], range(2))
    for s in specs:
        hist = [100] * 10 if s.model == "aeot" else [500, 500] + [0] * 8
        _mnist_run(s.out, hist, fid=1.0 + s.seed if s.model == "aeot" else 30.0, seconds=99.0)
    report_images.write_mnist_report(compare_runs.collect_mnist(specs), ["aeot", "gan"], tmp_path,
                                     "otgen compare --suite mnist")
    report = (tmp_path / "mnist.md").read_text()
    assert "test accuracy 0.9912" in report and "FID 0.50 (the floor)" in report
    assert "| aeot | 2/2 | 10.0 ± 0.0 | 0.0 ± 0.0 | 0.0000 ± 0.0000 | 1.50 ± 0.71 |" in report
    assert f"| gan | 2/2 | 2.0 ± 0.0 | 0.0 ± 0.0 | {math.log(5):.4f} ± 0.0000 | 30.00 ± 0.00 |" in report
    assert "| 100 ± 0 |" in report  # wall time = sum of the recorded stage seconds
    assert "AE-OT: all 10 classes in 2/2 seeds, max KL 0.0000 -> meets the target" in report
    assert "gan: all 10 classes in 0/2 seeds" in report and "does NOT meet" in report
    assert (tmp_path / "mnist_samples.png").exists()
    # control rows, and the metrics a replay wins named as blind to copying
    controls = [{"model": "real", "classes_covered": 10, "kl_uniform": 0.001, "fid": 0.6, "precision": 0.7,
                 "recall": 0.7, "feature_copy_fraction": 0.0, "feature_data_copying_ct": 0.1},
                {"model": "replay", "classes_covered": 10, "kl_uniform": 0.0005, "fid": 0.5, "precision": 0.75,
                 "recall": 0.6, "feature_copy_fraction": 1.0, "feature_data_copying_ct": -30.0}]
    records = compare_runs.collect_mnist(specs)
    for r in records:
        if r["model"] == "aeot":
            r.update(feature_data_copying_ct=-1.0, code_data_copying_ct=-2.0, feature_copy_fraction=0.001,
                     interpolated_fraction=0.9, ot_check_chi2=0.0196)
    report_images.write_mnist_report(records, ["aeot", "gan"], tmp_path, "cmd", controls=controls)
    report = (tmp_path / "mnist.md").read_text()
    assert "| *real* (held-out test digits) | 1/1 | 10.0 |" in report
    assert "| *replay* (training digits) | 1/1 | 10.0 | — | 0.0005 | 0.50 | 0.750 | 0.600 | 100.00 | -30.0 |" in report
    assert "blind to copying: classes, KL, FID, precision." in report
    assert "AE-OT novelty: C_T -1.0 in classifier features, -2.0 in code space, 0.10% copies -> not flagged" in report
    assert "| 90.0 ± 0.0 | 0.0196 ± 0.0000 |" in report  # % interpolated, then the map's independent chi2
    # Fashion-MNIST's report says images, not digits
    report_images.write_mnist_report(records, ["aeot", "gan"], tmp_path, "cmd", controls=controls, dataset="fashion")
    report = (tmp_path / "fashion.md").read_text()
    assert "| *real* (held-out test images) | 1/1 | 10.0 |" in report and "digits" not in report
    # --report-name names the report and its figure
    report_images.write_mnist_report(records, ["aeot"], tmp_path, "cmd", name="mnist_flows")
    assert "![generated images](mnist_flows_samples.png)" in (tmp_path / "mnist_flows.md").read_text()
    assert (tmp_path / "mnist_flows_samples.png").exists()


def test_stacked_report_from_run_directories(tmp_path):
    specs = compare_runs.plan("stacked", tmp_path / "runs", ["aeot", "gan"], ["quick"], range(1))
    for s in specs:
        rd = RunDir(s.out)
        rd.save_array("samples.npy", np.zeros((20, 28, 28, 3), np.uint8))
        modes = 1000 if s.model == "aeot" else 99
        rd.write_json("metrics.json", {"modes_covered": modes, "kl_uniform": 0.05 if modes == 1000 else 3.4,
                                       "max_mode_fraction": 0.002, "wall_seconds": 10.0})
        rd.write_json("stages.json", {"train": {"seconds": 10.0}})
    reference = [{"modes_covered": 1000, "kl_uniform": 0.02, "max_mode_fraction": 0.0015,
                  "true_modes_covered": 1000, "true_kl_uniform": 0.019, "wall_seconds": 4.0}]
    records = compare_runs.collect_mnist(specs, metric="modes_covered")
    report_images.write_stacked_report(reference, tmp_path, "otgen compare --suite stacked", records, ["aeot", "gan"])
    report = (tmp_path / "stacked.md").read_text()
    assert "| *real* Stacked MNIST (26,000 draws) | 1/1 | 1000.0 | 0.020 | 0.0015 | — | — | — | — | — |" in report
    assert "| aeot | 1/1 | 1000.0 | 0.050 | 0.0020 | — | — | — | — | 10 |" in report
    assert "| gan | 1/1 | 99.0 | 3.400 |" in report
    assert (tmp_path / "stacked_samples.png").exists()
    # a run without metrics is reported, not silently dropped
    (specs[1].out / "metrics.json").unlink()
    report_images.write_stacked_report(reference, tmp_path, "cmd", compare_runs.collect_mnist(specs, "modes_covered"),
                                       ["aeot", "gan"])
    assert "- gan seed 0: missing" in (tmp_path / "stacked.md").read_text()
    # control rows with code-space novelty
    controls = [{"model": "reconstructions", "modes_covered": 1000, "kl_uniform": 0.03, "max_mode_fraction": 0.002,
                 "code_data_copying_ct": -40.0, "code_copy_fraction": 1.0, "code_nn_distance_ratio": 0.0}]
    for r in records:
        if r["model"] == "aeot":
            r.update(code_copy_fraction=0.99, code_data_copying_ct=-15.0, interpolated_fraction=0.006)
    report_images.write_stacked_report(reference, tmp_path, "cmd", records, ["aeot"], controls=controls)
    assert ("AE-OT novelty (seed 0): 0.6% of its codes interpolated, 99.0% are training codes, code C_T -15.0 -> "
            "flagged as copying") in (tmp_path / "stacked.md").read_text()
    assert ("| *replay* (AE-OT's reconstructions of training images) | 1/1 | 1000.0 | 0.030 | 0.0020 | -40.0 | "
            "100.00 | 0.00 | — | — |") in (tmp_path / "stacked.md").read_text()


def test_mean_std_formatting():
    assert report_common.mean_std_cell([1.0, 3.0], 1) == "2.0 ± 1.4"
    assert report_common.mean_std_cell([0.5], 2, 100.0) == "50.00"
    assert report_common.mean_std_cell([], 1) == "—"
    assert report_common.mean_std_cell([1.0, math.inf], 2) == "inf (1/2 seeds)"


def test_real_toy_runner_and_collected_metrics_agree(tmp_path):
    # compare runs `otgen toy` itself; the report reads the record the run stored.
    spec = compare_runs.plan("toy", tmp_path, ["gan"], ["grid25"], [0])[0]
    compare.toy_runner(n_samples=500, steps=20)(spec)
    stored = json.loads((spec.out / "metrics.json").read_text())
    rec, real, replay = compare_runs.collect_toy([spec])
    assert rec["status"] == "ok" and rec["n_modes"] == 25
    assert (real["model"], replay["model"]) == ("real", "replay") and replay["copy_fraction"] == 1.0
    assert real["copy_fraction"] == 0.0 and real["modes_captured"] == 25
    for k in ("copy_fraction", "data_copying_ct", "w2"):
        assert rec[k] == pytest.approx(stored[k], rel=1e-6)
    for k in ("modes_captured", "high_quality_fraction", "reverse_kl"):
        assert rec[k] == stored[k]


def test_image_flows_decode_through_aeots_autoencoder_of_the_same_seed(tmp_path, monkeypatch):
    """In an image suite a latent flow takes AE-OT's autoencoder (--ae-from) once AE-OT's run has encoded
    its codes; GANs never do, and without a finished AE-OT run the flow trains its own."""
    from otgen.pipelines import mnist

    seen = {}
    monkeypatch.setattr(mnist, "run", lambda cfg: seen.__setitem__(cfg.model, cfg.ae_from))
    specs = compare_runs.plan("mnist", tmp_path, ["aeot", "sdfm", "gan"], ["quick"], [0])
    run_one = compare.mnist_runner("quick", None, 50, None, False)
    for spec in specs:
        run_one(spec)
    assert seen == {"aeot": None, "sdfm": None, "gan": None}  # AE-OT's run has not encoded anything yet
    RunDir(specs[0].out).write_json("stages.json", {"train-ae": {"seconds": 1.0}, "encode": {"seconds": 1.0}})
    for spec in specs:
        run_one(spec)
    assert seen == {"aeot": None, "sdfm": str(specs[0].out), "gan": None}
