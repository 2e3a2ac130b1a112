"""The published toy presets, learning curves, resumability, and the reproduction report.

Presets are checked against the values read off the authors' code (cited in
``otgen.training.config``); the long runs themselves are never run here, only tiny budgets.
"""

import json
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from experiments import reproduce, reproduce_collect, reproduce_jobs, reproduce_report
from otgen.pipelines.toy import TOY_TRAIN_SIZE, ToyRunConfig, run
from otgen.training import TOY_PRESETS, GANConfig, curve_steps, load_gan, make_optimizer, train_gan

TINY = dict(g_hidden=16, g_layers=2, d_hidden=8, batch_size=16, log_every=5)


def test_published_toy_presets_carry_the_authors_values():
    # PacGAN synthetic_data_experiments/*/config.py: 400 epochs x (100,000 / 100) steps
    for model in ("gan", "pacgan2", "pacgan3", "pacgan4"):
        cfg = GANConfig.for_toy(model, preset="published")
        assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.beta1, cfg.simultaneous) == (400_000, 100, 1e-4, 0.8, True)
        assert (cfg.arch, cfg.g_hidden, cfg.g_layers, cfg.d_hidden, cfg.maxout_pieces, cfg.init_std) == \
            ("mlp", 400, 4, 200, 5, 0.02)
        assert cfg.preset == "published" and not cfg.standardize
    # gan_toy.py: DIM 512, LAMBDA .1, CRITIC_ITERS 5, BATCH_SIZE 256, ITERS 100000, data / stdev
    gp = GANConfig.for_toy("wgan-gp", preset="published")
    assert (gp.arch, gp.g_hidden, gp.g_layers, gp.d_hidden, gp.d_layers) == ("relu_mlp", 512, 3, 512, 3)
    assert (gp.gp_lambda, gp.n_critic, gp.batch_size, gp.steps, gp.lr, gp.beta1, gp.beta2) == \
        (0.1, 5, 256, 100_000, 1e-4, 0.5, 0.9)
    assert gp.standardize and not gp.simultaneous
    w = GANConfig.for_toy("wgan", preset="published")
    assert (w.optimizer, w.lr, w.rms_decay, w.eps, w.eps_in_sqrt, w.rms_initial, w.clip, w.steps) == \
        ("rmsprop", 5e-5, 0.9, 1e-10, True, 1.0, 0.01, 100_000)
    assert TOY_TRAIN_SIZE["published"] == 100_000
    # the default preset keeps the old behaviour: PacGAN nets, 10,000 steps, the paper's lambda 10
    assert GANConfig.for_toy("wgan-gp").gp_lambda == 10.0 and GANConfig.for_toy("gan").steps == 10_000
    assert set(TOY_PRESETS["published"]) == set(TOY_PRESETS["default"])
    with pytest.raises(ValueError, match="preset"):
        GANConfig.for_toy("gan", preset="paper")


def test_tensorflow_rmsprop_semantics():
    # TF1 RMSProp: ms starts at 1, ms <- 0.9 ms + 0.1 g^2, step = lr g / sqrt(ms + eps)
    tx = make_optimizer(GANConfig.for_toy("wgan", preset="published"))
    g = {"w": np.array([0.5, -2.0], np.float32)}
    updates, _ = tx.update(g, tx.init(g), g)
    ms = 0.9 + 0.1 * g["w"] ** 2
    np.testing.assert_allclose(np.asarray(updates["w"]), -5e-5 * g["w"] / np.sqrt(ms + 1e-10), rtol=1e-6)
    assert isinstance(tx, optax.GradientTransformation)


def test_curve_steps_are_log_spaced_and_end_at_the_budget():
    assert curve_steps(400_000) == (1000, 2000, 3000, 5000, 10_000, 20_000, 30_000, 50_000, 100_000, 200_000,
                                    300_000, 400_000)
    assert curve_steps(500) == (500,)
    assert curve_steps(0) == ()


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    angle = rng.integers(0, 8, n) * 2 * np.pi / 8
    return (5 * np.stack([np.cos(angle), np.sin(angle)], 1) + 0.05 * rng.standard_normal((n, 2))).astype(np.float32)


def _evaluate(result):
    x = result.sample(jax.random.key(7), 64)
    return {"mean_norm": float(np.linalg.norm(x, axis=1).mean())}


@pytest.mark.parametrize("model", ["wgan-gp", "gan"])
def test_resumed_run_with_curve_equals_uninterrupted_run(tmp_path, model):
    data = _data()
    cfg = GANConfig.for_toy(model, preset="published", steps=20, **TINY)
    steps = (5, 10, 20)
    full = train_gan(cfg, data, tmp_path / "full", progress=False, evaluate=_evaluate, eval_steps=steps)
    half = GANConfig.for_toy(model, preset="published", steps=10, **TINY)
    train_gan(half, data, tmp_path / "split", progress=False, evaluate=_evaluate, eval_steps=steps)
    resumed = train_gan(cfg, data, tmp_path / "split", resume=True, progress=False, evaluate=_evaluate,
                        eval_steps=steps)
    assert [r["step"] for r in full.curve] == [5, 10, 20]
    assert resumed.curve == full.curve
    for a, b in zip(jax.tree_util.tree_leaves(full.state.g_params), jax.tree_util.tree_leaves(resumed.state.g_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the curve's last record is the evaluation of what the checkpoint holds
    loaded = load_gan(tmp_path / "split", cfg)
    assert {"step": 20, **_evaluate(loaded)} == full.curve[-1]
    assert loaded.curve == full.curve and loaded.data_scale == full.data_scale


def test_standardised_training_samples_in_the_data_scale(tmp_path):
    data = _data()
    cfg = GANConfig.for_toy("wgan-gp", preset="published", steps=5, **TINY)
    result = train_gan(cfg, data, tmp_path, progress=False)
    assert result.data_scale == pytest.approx(float(np.sqrt(np.var(data, axis=0).mean())), rel=1e-6)
    assert result.data_scale > 3  # ring of radius 5
    raw = GANConfig.for_toy("gan", preset="published", steps=5, **TINY)
    assert train_gan(raw, data, tmp_path / "raw", progress=False).data_scale == 1.0
    with pytest.raises(ValueError, match="zero variance"):
        train_gan(cfg, np.ones((10, 2), np.float32), tmp_path / "flat", progress=False)


def test_toy_run_with_the_published_preset_records_it_and_its_curve(tmp_path):
    out = tmp_path / "run"
    metrics = run(ToyRunConfig(model="wgan-gp", dist="ring8", out=str(out), preset="published", steps=20,
                               n_train=500, progress=False))
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["run"]["preset"] == "published" and config["gan"]["preset"] == "published"
    assert config["gan"]["gp_lambda"] == 0.1 and config["gan"]["arch"] == "relu_mlp"
    curve = json.loads((out / "curves.json").read_text())
    assert [r["step"] for r in curve] == [20]
    # the last curve point is the final evaluation: same generator, same sampling key
    assert curve[-1]["modes_captured"] == metrics["modes_captured"]
    assert curve[-1]["high_quality_fraction"] == metrics["high_quality_fraction"]
    assert (out / "curves.png").exists()


def test_a_running_job_is_sampled_from_its_checkpoint_as_the_run_samples(tmp_path):
    from otgen.pipelines.toy import checkpoint_samples

    runs = tmp_path / "runs"
    cfg = ToyRunConfig(model="wgan-gp", dist="grid25", out=str(runs / "grid25_wgan-gp_s0"), preset="published",
                       steps=20, n_train=500, progress=False)
    metrics = run(cfg)
    (runs / "grid25_wgan-gp_s0" / "metrics.json").unlink()  # as if still training at step 20
    samples, step = checkpoint_samples(cfg)
    assert step == 20
    np.testing.assert_array_equal(samples, np.load(runs / "grid25_wgan-gp_s0" / "samples.npy"))
    (rec,) = [r for r in reproduce_collect.collect(runs) if r["model"] == "wgan-gp" and r["dist"] == "grid25"]
    (panel,) = reproduce_report._sample_panels([rec])
    assert panel[1] == (f"grid25 wgan-gp, running: step 20\n{metrics['modes_captured']} modes, "
                        f"{100 * metrics['high_quality_fraction']:.1f}% HQ")
    np.testing.assert_array_equal(panel[2], samples)
    text = reproduce_report.write_report(runs, tmp_path / "report", "otgen reproduce --report-only").read_text()
    assert "not finished (running: grid25_wgan-gp_s0 at step 20 of 100000 (" in text and "steps/s over its" in text
    with pytest.raises(ValueError, match="no training checkpoint"):
        checkpoint_samples(ToyRunConfig(model="aeot", dist="ring8", out=str(tmp_path / "x")))


def test_published_gans_are_sampled_after_pacgans_batch_norm_refresh():
    # pacgan_task.py / extensions.py: 50 training-mode batches update the population stats before sampling
    for model in ("gan", "pacgan2", "pacgan3", "pacgan4"):
        assert GANConfig.for_toy(model, preset="published").eval_bn_refresh == 50
        assert GANConfig.for_toy(model).eval_bn_refresh == 0  # the default preset samples the training EMA
    assert GANConfig.for_toy("wgan-gp", preset="published").eval_bn_refresh == 0  # no batch norm


@pytest.mark.heavy  # 11 s
def test_rescore_resamples_an_old_run_under_the_refresh_and_keeps_its_scores(tmp_path):
    from otgen.pipelines.toy import checkpoint_samples, rescore

    runs = tmp_path / "runs"
    out = runs / "ring8_pacgan2_s0"
    cfg = ToyRunConfig(model="pacgan2", dist="ring8", out=str(out), preset="published", steps=30, n_train=500,
                       progress=False)
    fresh = run(cfg)
    assert fresh["eval_bn_refresh"] == 50
    assert json.loads((out / "curves.json").read_text())[-1]["eval_bn_refresh"] == 50  # curve points name it
    assert rescore(out) is None  # already sampled under its preset's protocol
    # make it a run finished before the refresh: scored on the training EMA's samples, no field recorded
    doc = json.loads((out / "config.json").read_text())
    del doc["config"]["gan"]["eval_bn_refresh"]
    (out / "config.json").write_text(json.dumps(doc))
    old = {k: v for k, v in fresh.items() if k != "eval_bn_refresh"}
    old["modes_captured"], old["reverse_kl"] = -1, 99.0  # sentinels: must move to rescored.previous
    (out / "metrics.json").write_text(json.dumps(old))
    before = np.load(out / "samples.npy")

    m = rescore(out)
    assert m["rescored"]["previous"]["modes_captured"] == -1 and m["rescored"]["previous"]["reverse_kl"] == 99.0
    assert m["rescored"]["previous_eval_bn_refresh"] == 0 and m["eval_bn_refresh"] == 50
    # the new scores are those of a fresh run's samples (same checkpoint, key, protocol)
    assert (m["modes_captured"], m["reverse_kl"]) == (fresh["modes_captured"], fresh["reverse_kl"])
    samples, _ = checkpoint_samples(cfg)
    np.testing.assert_array_equal(np.load(out / "samples.npy"), samples)
    np.testing.assert_array_equal(samples, before)
    assert json.loads((out / "config.json").read_text())["config"]["gan"]["eval_bn_refresh"] == 50
    assert json.loads((out / "metrics.json").read_text())["rescored"]["previous"]["modes_captured"] == -1
    assert rescore(out) is None  # idempotent
    (rec,) = [r for r in reproduce_collect.collect(runs) if r["model"] == "pacgan2" and r["dist"] == "ring8"]
    assert reproduce_report._sampling(rec) == "refreshed (50)"
    (out / "checkpoint.npz").unlink()
    del old["modes_captured"]
    (out / "metrics.json").write_text(json.dumps(old))
    logged = []
    reproduce.rescore_jobs(runs, [("ring8", "pacgan2", 0)], log=logged.append)
    assert "not re-scored" in logged[0] and "checkpoint.npz is missing" in logged[0]
    (rec,) = [r for r in reproduce_collect.collect(runs) if r["model"] == "pacgan2" and r["dist"] == "ring8"]
    assert reproduce_report._sampling(rec) == "training EMA"


def test_jobs_run_the_published_preset_and_aeot_its_default(tmp_path, monkeypatch):
    import otgen.pipelines.toy as toy

    seen = []
    monkeypatch.setattr(toy, "run", lambda cfg: seen.append(cfg) or {})
    for model in ("gan", "wgan-gp", "aeot"):
        reproduce.run_job(tmp_path, "ring8", model, 0)
    assert [(c.model, c.preset, c.n_train) for c in seen] == \
        [("gan", "published", 100_000), ("wgan-gp", "published", 100_000), ("aeot", "default", 2000)]


def test_a_finished_job_without_its_checkpoint_is_skipped_not_restarted(tmp_path, monkeypatch):
    """Committed finished runs keep metrics, samples and curves but no checkpoint: a worker skips them."""
    import otgen.pipelines.toy as toy

    monkeypatch.setattr(toy, "run", lambda cfg: pytest.fail(f"{cfg.out} was trained again"))
    _fake_run(tmp_path / "ring8_gan_s1", modes=5, hq=0.99)
    assert not (tmp_path / "ring8_gan_s1" / "checkpoint.npz").exists()
    assert reproduce.run_job(tmp_path, "ring8", "gan", 1)["modes_captured"] == 5
    (rec,) = reproduce_collect.collect(tmp_path, models=("gan",), dists=("ring8",))
    assert rec["seeds"] == 1 and not rec["running"]


def _fake_run(path, modes, hq, kl=0.1, steps=400_000, curve=True):
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(path / "samples.npy", rng.standard_normal((50, 2)).astype(np.float32))
    np.save(path / "data.npy", rng.standard_normal((50, 2)).astype(np.float32))
    (path / "metrics.json").write_text(json.dumps({"modes_captured": modes, "high_quality_fraction": hq,
                                                   "reverse_kl": kl, "n_modes": 8, "steps": steps,
                                                   "train_seconds": 600.0}))
    if curve:
        (path / "curves.json").write_text(json.dumps([{"step": 1000, "modes_captured": modes,
                                                       "high_quality_fraction": hq, "reverse_kl": kl}]))


def test_verdicts_and_report(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs / "ring8_gan_s0", modes=6, hq=0.97)        # sharp samples on too few modes, as published
    _fake_run(runs / "ring8_gan_s1", modes=7, hq=0.95)
    _fake_run(runs / "ring8_pacgan2_s0", modes=8, hq=0.40)    # not sharp: not reproduced
    _fake_run(runs / "grid25_gan_s0", modes=25, hq=0.93)      # 25 vs 17.3 +- 3: not reproduced
    recs = {(r["dist"], r["model"]): r for r in reproduce_collect.collect(runs)}
    assert recs[("ring8", "gan")]["seeds"] == 2
    assert recs[("ring8", "gan")]["modes_captured"] == pytest.approx((6.5, 2 ** -0.5))  # sample std, ddof 1
    assert reproduce_report.verdict(recs[("ring8", "gan")]) == "reproduced"
    assert reproduce_report.verdict(recs[("ring8", "pacgan2")]).startswith("not reproduced: HQ 40.0%")
    assert "modes 25.0 outside 17.3" in reproduce_report.verdict(recs[("grid25", "gan")])
    assert reproduce_report.verdict(recs[("ring8", "pacgan4")]) == "not finished"
    # a curve point scored before between_modes_fraction was recorded: the same quantity, 1 - HQ
    assert recs[("ring8", "gan")]["curves"]["ring8_gan_s0"][0]["between_modes_fraction"] == pytest.approx(0.03)
    path = reproduce_report.write_report(runs, tmp_path / "report", "otgen reproduce --report-only")
    text = path.read_text()
    assert "| ring8 | gan | 400000 | 2 | 6.5 +- 0.7 | 96.0 +- 1.4 |" in text
    assert (tmp_path / "report" / "reproduction_samples.png").exists()
    assert (tmp_path / "report" / "reproduction_curves_ring8.png").exists()


def test_train_time_sums_every_call(tmp_path):
    from otgen.checkpoint import save_pytree

    runs = tmp_path / "runs"
    _fake_run(runs / "ring8_gan_s0", modes=7, hq=0.95)              # last call only: marked
    _fake_run(runs / "ring8_pacgan2_s0", modes=8, hq=0.95)          # the sum, from its checkpoint
    save_pytree(runs / "ring8_pacgan2_s0" / "checkpoint.npz", {"w": np.zeros(2)}, metadata={"step": 400_000,
                                                                                           "seconds": 5400.0})
    _fake_run(runs / "ring8_pacgan4_s0", modes=8, hq=0.95)          # the sum, from its metrics
    m = json.loads((runs / "ring8_pacgan4_s0" / "metrics.json").read_text())
    (runs / "ring8_pacgan4_s0" / "metrics.json").write_text(json.dumps({**m, "total_train_seconds": 7200.0}))
    recs = {r["model"]: r
            for r in reproduce_collect.collect(runs, models=("gan", "pacgan2", "pacgan4"), dists=("ring8",))}
    assert [(recs[k]["train_seconds"][0], recs[k]["train_seconds_last_call"]) for k in ("gan", "pacgan2", "pacgan4")] \
        == [(600.0, True), (5400.0, False), (7200.0, False)]
    text = reproduce_report.write_report(runs, tmp_path / "report", "otgen reproduce --report-only").read_text()
    assert "| 10 min (last call) | training EMA | reproduced |" in text
    assert "| 90 min | training EMA | reproduced |" in text and "| 120 min | training EMA | reproduced |" in text


def test_cli_refuses_bad_shards_and_names(tmp_path, capsys):
    from otgen.cli import main

    assert main(["reproduce", "--runs-dir", str(tmp_path), "--shard", "2/2", "--report-only"]) == 2
    assert main(["reproduce", "--runs-dir", str(tmp_path), "--models", "vae"]) == 2
    assert "unknown model or toy for --suite toy: vae" in capsys.readouterr().err
    assert main(["reproduce", "--runs-dir", str(tmp_path), "--suite", "images", "--dists", "ring8"]) == 2
    assert "unknown model or dataset for --suite images: ring8" in capsys.readouterr().err
    assert main(["reproduce", "--runs-dir", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err
    # MNIST pacgan2 is not an image job: refused, not an empty queue that writes a report
    assert main(["reproduce", "--runs-dir", str(tmp_path), "--suite", "images", "--dists", "mnist",
                 "--models", "pacgan2"]) == 2
    assert "no job matches --models pacgan2 --dists mnist" in capsys.readouterr().err
    assert main(["reproduce", "--runs-dir", str(tmp_path), "--threads", "2", "--report-only"]) == 2
    assert "--threads takes 1" in capsys.readouterr().err
    assert main(["reproduce", "--runs-dir", str(tmp_path), "--core", "1", "--report-only"]) == 2
    assert "--core goes with --threads 1" in capsys.readouterr().err
    assert not (tmp_path / "reproduction.md").exists()


def test_one_core_worker_is_pinned_to_its_shards_core():
    import os
    import subprocess
    import sys

    code = ("import os; from experiments.reproduce import pin_to_one_core; "
            "c = pin_to_one_core(1); print(c, sorted(os.sched_getaffinity(0)))")
    root = str(Path(__file__).resolve().parents[1])  # the harness is imported from the repository root
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root).stdout.split(" ", 1)
    cores = sorted(os.sched_getaffinity(0))
    assert int(out[0]) == cores[1 % len(cores)] and out[1].strip() == f"[{cores[1 % len(cores)]}]"


def test_image_presets_carry_the_authors_budgets(tmp_path):
    from otgen.pipelines.mnist import make_config
    from otgen.generators import make

    # gan_mnist.py: ITERS 200000 at BATCH_SIZE 50; PacGAN VEEGAN_experiment/config.py: 50 epochs x 128,000 / 64
    assert make_config("paper").gan_steps == 200_000
    assert make_config("paper", dataset="stacked").gan_steps == 100_000
    assert make_config("quick").gan_steps == 600 and make_config("quick", dataset="stacked").gan_steps == 2000
    cfg = reproduce_jobs.image_config(tmp_path, "stacked", "pacgan2", 0, data_dir="somewhere")
    assert (cfg.preset, cfg.model, cfg.dataset, cfg.gan_steps, cfg.n_samples, cfg.data_dir) == \
        ("paper", "pacgan2", "stacked", 100_000, 26_000, "somewhere")
    assert cfg.out == str(tmp_path / "stacked_pacgan2_s0") and cfg.evaluate  # the curve is on
    ref = reproduce_jobs.image_config(tmp_path, "mnist", "aeot", 0)  # the reference row: AE-OT's quick preset
    assert (ref.preset, ref.model, ref.n_samples, ref.out) == ("quick", "aeot", 10_000, str(tmp_path / "mnist_aeot_s0"))
    assert reproduce_jobs.IMAGE_JOBS[:2] == (("mnist", "aeot"), ("mnist", "gan"))  # the yardstick first
    gan = make("gan", "images", shape=(28, 28, 1), steps=200_000)
    assert (gan.config.batch_size, gan.config.steps, gan.checkpoint_every) == (50, 200_000, 500)
    # Stacked MNIST trains PacGAN's own nets (VEEGAN_experiment/config.py and model.py)
    assert (make_config("paper", dataset="stacked").gan_preset, make_config("paper").gan_preset) == ("stacked", "default")
    assert make_config("quick", dataset="stacked").gan_preset == "default"
    st = make("pacgan2", "images", shape=(28, 28, 3), steps=100_000, preset=cfg.gan_preset).config
    assert (st.arch, st.batch_size, st.noise_dim, st.noise, st.g_updates, st.same_noise, st.n_critic, st.conv_dim) == \
        ("dcgan_stacked", 64, 100, "uniform", 2, True, 1, 64)
    assert (st.optimizer, st.lr, st.beta1, st.bn_momentum, st.steps, st.preset) == \
        ("adam", 2e-4, 0.5, 0.9, 100_000, "stacked")
    assert make("gan", "toy", shape=(2,), preset="published").checkpoint_every == 1000


def test_image_jobs_in_the_report(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs / "ring8_gan_s0", modes=6, hq=0.97)
    for model, curve in (("gan", [{"step": 1000, "modes_covered": 40, "kl_uniform": 3.9},
                                   {"step": 2000, "modes_covered": 95, "kl_uniform": 3.1}]),
                         ("pacgan2", [])):
        out = runs / f"stacked_{model}_s0"
        out.mkdir(parents=True)
        (out / "config.json").write_text(json.dumps({"config": {"gan_steps": 100_000}}))
        if curve:
            (out / "curves.json").write_text(json.dumps(curve))
    # MNIST: AE-OT's reference run, the controls as controls.py caches them, the GAN's curve so far
    ref = runs / "mnist_aeot_s0"
    ref.mkdir(parents=True)
    (ref / "config.json").write_text(json.dumps({"config": {"preset": "quick"}}))
    (ref / "metrics.json").write_text(json.dumps({"classes_covered": 10, "kl_uniform": 0.003, "fid": 11.5}))
    (ref / "stages.json").write_text(json.dumps({"train-ae": {"seconds": 200.0}, "fit-ot": {"seconds": 160.0}}))
    for name, fid in (("real", 8.4), ("replay", 1.6)):
        (runs / "mnist" / "controls" / name).mkdir(parents=True)
        (runs / "mnist" / "controls" / name / "metrics.json").write_text(
            json.dumps({"classes_covered": 10, "kl_uniform": 0.002, "fid": fid, "precision": 0.9}))
    gan = runs / "mnist_gan_s0"
    gan.mkdir()
    (gan / "config.json").write_text(json.dumps({"config": {"gan_steps": 200_000, "preset": "paper"}}))
    (gan / "curves.json").write_text(json.dumps([{"step": 1000, "classes_covered": 6, "kl_uniform": 1.6, "fid": 611.7},
                                                 {"step": 2000, "classes_covered": 10, "kl_uniform": 0.1, "fid": 101.7}]))
    recs = reproduce_collect.collect_images(runs)
    assert [(r["dataset"], r["model"], r["budget"], r["step"]) for r in recs] == \
        [("mnist", "aeot", None, None), ("mnist", "gan", 200_000, 0), ("stacked", "gan", 100_000, 0),
         ("stacked", "pacgan2", 100_000, 0)]
    assert recs[0]["train_seconds"] == 360.0
    assert reproduce_report.fid_verdict(recs).startswith(
        "MNIST bar (the GAN's FID within 3x AE-OT's): gan FID 101.7 at step 2,000 of 200,000 is 8.8x AE-OT's 11.5: "
        "not met yet")
    finished = [dict(r, metrics={"fid": 30.0}) if r["model"] == "gan" else r for r in recs]
    assert reproduce_report.fid_verdict(finished).endswith(
        "gan FID 30.0 at its final samples is 2.6x AE-OT's 11.5: met")
    assert reproduce_report.fid_verdict(recs[1:]) is None  # no reference run yet: no verdict
    text = reproduce_report.write_report(runs, tmp_path / "report", "otgen reproduce --report-only").read_text()
    assert "| stacked | gan | 0 / 100,000 | - | step 2000: modes covered 95, kl uniform 3.1 | 99 modes, KL 3.40 | " \
           "running |" in text
    assert "| stacked | pacgan2 | 0 / 100,000 | - | - | 1000 modes, KL 0.06 | running |" in text
    import shutil

    shutil.rmtree(runs / "stacked_pacgan2_s0")  # a job not started is a row that says so
    again = reproduce_report.write_report(runs, tmp_path / "report2", "otgen reproduce --report-only").read_text()
    assert "| stacked | pacgan2 | 0 / 100,000 | - | - | 1000 modes, KL 0.06 | not started |" in again
    assert "| mnist | *real (held-out test digits)* | - | - | classes covered 10, kl uniform 0.002, fid 8.4 | - | " \
           "control |" in text
    assert "| mnist | *replay (training digits)* | - | - | classes covered 10, kl uniform 0.002, fid 1.6 |" in text
    assert "| mnist | aeot (reference, preset quick) | - | 0.1 h | final: classes covered 10, kl uniform 0.003, " \
           "fid 11.5 | - | finished |" in text
    assert "is 8.8x AE-OT's 11.5: not met yet" in text
    assert (tmp_path / "report" / "reproduction_curves_mnist.png").exists()
    assert (tmp_path / "report" / "reproduction_curves_stacked.png").exists()
    # a reference whose OT solve stopped before its tolerance says so instead of a plain "finished"
    (ref / "metrics.json").write_text(json.dumps({"classes_covered": 10, "kl_uniform": 0.003, "fid": 11.5,
                                                  "ot_converged": False, "ot_stop_reason": "time_budget",
                                                  "ot_chi2": 0.065, "ot_tol": 0.0025}))
    text = reproduce_report.write_report(runs, tmp_path / "report", "otgen reproduce --report-only").read_text()
    assert "fid 11.5 | - | finished; OT not converged (time_budget: chi2 0.065 > tol 0.0025) |" in text
    assert reproduce_report._reference_status({"ot_converged": False, "ot_stop_reason": "max_steps", "ot_metric": "l1",
                                        "ot_l1_error": 0.04, "ot_chi2": 0.5, "ot_tol": 0.01}) == \
        "finished; OT not converged (max_steps: L1 0.04 > tol 0.01)"


def test_fid_protocol_note_names_mixed_references():
    old = {"step": 1000, "fid": 9.0}
    new = {"step": 2000, "fid": 8.0, "fid_reference": "a seeded random half of the test set (5,000 images)"}
    assert reproduce_report.fid_protocol_note("mnist", [old, {"step": 3000, "fid": 7.0}]) is None
    assert reproduce_report.fid_protocol_note("mnist", [new, {"modes_covered": 3}]) is None
    note = reproduce_report.fid_protocol_note("mnist", [old, new])
    assert "2 evaluation protocols" in note and "old protocol" in note and "random half" in note


def test_a_running_image_job_read_from_its_carry_shows_rate_eta_and_where_it_was_carried(tmp_path):
    from otgen.checkpoint import save_pytree

    runs = tmp_path / "runs"
    out = runs / "stacked_gan_s0"
    (out / "gan").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"config": {"gan_steps": 100_000}}))
    meta = {"step": 20_000, "seconds": 20_000 / 1.25, "carried": [{"step": 12_000}],
            "curve": [{"step": 10_000, "modes_covered": 990, "kl_uniform": 0.2}]}
    save_pytree(out / "gan" / "checkpoint.npz", {"w": np.zeros(3, np.float32)}, metadata={**meta, "step": 15_000})
    save_pytree(out / "gan" / "carry.npz", {"w": np.zeros(3, np.float32)}, metadata=meta,
                codecs=lambda p, a: "bf16")
    [rec] = reproduce_collect.collect_images(runs, jobs=(("stacked", "gan"),))
    assert rec["step"] == 20_000 and rec["carried"] == [12_000]  # the carry is further on than the checkpoint
    assert reproduce_report._image_running(rec) == ("running: 1.25 it/s over its calls, ~18 h to go at that rate; "
                                                    "resumed from a carry checkpoint at 12,000")
