"""The ``otgen mnist`` pipeline: configuration, run-directory safety, and a tiny real run with resume.

The end-to-end test uses the first few hundred real MNIST digits (skipped when the data is
absent next to the repo) and a fixed seed, so it is reproducible run to run.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from otgen.generators.aeot import EXTENSION_FILE, MAP_FILE
from otgen.pipelines import mnist as exp
from otgen.pipelines import mnist_aeot, mnist_baselines, mnist_config, mnist_rundir

REAL_MNIST = Path(__file__).resolve().parents[1].parent / "shared/data/mnist"


PLAIN_AEOT = tuple(s for s in exp.AEOT_STAGES if s != "tune-decoder")  # without AE-OT-GAN's decoder stage


def tiny_config(out, **kw):
    from otgen.models.autoencoder import AEConfig

    base = dict(out=str(out), data_dir=str(REAL_MNIST), seed=0, limit=300, n_samples=120, evaluate=False,
                progress=False, ae=AEConfig(latent_dim=4, features=(4, 8), hidden=32), ae_epochs=8, ae_batch=25,
                ot_steps=2, ot_batch=4096, decoder_gan_steps=0)
    base.update(kw)
    return exp.make_config("quick", **base)


def test_presets_and_overrides():
    q, p = exp.make_config("quick"), exp.make_config("paper")
    assert p.ae.latent_dim == 100 and p.top_k == 20 and p.angle_threshold == 0.35  # top-20 as AE-OT public code
    assert q.ae.latent_dim < p.ae.latent_dim and q.ae_epochs < p.ae_epochs
    assert q.ot_time_budget < p.ot_time_budget and q.ot_steps is None  # the OT stage is bounded in time
    c = exp.make_config("quick", latent_dim=8, ot_steps=None, stages=["encode", "train-ae"])
    assert c.ae.latent_dim == 8 and c.ot_steps == q.ot_steps
    assert c.stage_list() == ("train-ae", "encode")  # canonical order, whatever the order asked
    assert exp.make_config("quick", evaluate=False, decoder_gan_steps=0).stage_list() == PLAIN_AEOT[:-1]
    assert exp.make_config("quick", decoder_gan_steps=5).stage_list() == exp.AEOT_STAGES
    # AE-OT-GAN's decoder: on by default in the quick preset (MNIST, Fashion), off where it was not measured
    assert q.decoder_gan_steps == 3000 and exp.make_config("quick", dataset="fashion").decoder_gan_steps == 3000
    assert p.decoder_gan_steps == 0 and exp.make_config("quick", dataset="stacked").decoder_gan_steps == 0
    assert exp.make_config("quick", model="wgan-gp").stage_list() == exp.GAN_STAGES


@pytest.mark.parametrize("kw,msg", [
    ({"stages": ("train-ae", "fly")}, "unknown stage"),
    ({"model": "gan", "stages": ("fit-ot",)}, "unknown stage"),
    ({"limit": 1}, "limit"),
    ({"n_samples": 0}, "n_samples"),
    ({"angle_threshold": 4.0}, "angle_threshold"),
    ({"ot_steps": 0}, "ot_steps"),
    ({"model": "vae"}, "model must be"),
    ({"ot_source": "cauchy"}, "ot_\\* settings: source"),
    ({"ot_init": "random"}, "ot_\\* settings: init_h"),
    ({"ot_sampling": "halton"}, "ot_\\* settings: sampling"),
    ({"ot_optimizer": "sgd"}, "ot_\\* settings: optimizer"),
])
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg):
        exp.make_config("quick", **kw)


def test_stacked_dataset_config():
    c = exp.make_config("quick", dataset="stacked")
    assert c.channels == 3 and c.ae.channels == 3 and c.n_samples == 26000  # the VEEGAN/PacGAN protocol
    assert c.ae.latent_dim == mnist_config.STACKED_PRESETS["quick"]["ae"]["latent_dim"]
    assert c.ae_epochs == mnist_config.STACKED_PRESETS["quick"]["ae_epochs"] != exp.PRESETS["quick"]["ae_epochs"]
    assert exp.make_config("quick", dataset="stacked", ae_epochs=5).ae_epochs == 5  # an override wins
    assert exp.make_config("quick", dataset="stacked", n_samples=50).n_samples == 50
    assert exp.make_config("quick").channels == 1
    with pytest.raises(ValueError, match="dataset must be one of"):
        exp.make_config("quick", dataset="cifar")
    from otgen.models.autoencoder import AEConfig

    with pytest.raises(ValueError, match="3 channel"):
        exp.MnistConfig(dataset="stacked", ae=AEConfig(channels=1))


def test_bad_preset():
    with pytest.raises(ValueError, match="preset"):
        exp.make_config("huge")


def test_to_uint8_rounds_and_clips():
    x = np.array([-0.1, 0.0, 0.5, 1.0, 1.2, 0.499 / 255], np.float32).reshape(1, 1, 6, 1)
    np.testing.assert_array_equal(mnist_rundir.to_uint8(x).ravel(), [0, 0, 128, 255, 255, 0])


def test_run_dir_refuses_another_configuration(tmp_path):
    out = tmp_path / "run"
    mnist_rundir.claim_run_dir(tiny_config(out))
    # Runtime-only fields may change ...
    mnist_rundir.claim_run_dir(tiny_config(out, stages=("encode",), progress=True))
    # ... anything that changes the results may not, unless --overwrite replaces the run.
    (out / "latents.npy").write_bytes(b"stale")
    with pytest.raises(ValueError, match="holds another run.*ot_steps: 2 there, 3 now"):
        mnist_rundir.claim_run_dir(tiny_config(out, ot_steps=3))
    assert (out / "latents.npy").exists()
    mnist_rundir.claim_run_dir(tiny_config(out, ot_steps=3, overwrite=True))
    assert not (out / "latents.npy").exists()
    # a run directory made before the decoder GAN existed is a run without it
    doc = json.loads((out / "config.json").read_text())
    del doc["config"]["decoder_gan_steps"]
    (out / "config.json").write_text(json.dumps(doc))
    mnist_rundir.claim_run_dir(tiny_config(out, ot_steps=3))
    with pytest.raises(ValueError, match="decoder_gan_steps: 0 there, 5 now"):
        mnist_rundir.claim_run_dir(tiny_config(out, ot_steps=3, decoder_gan_steps=5))


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    from otgen.cli import main

    (tmp_path / "f").write_text("x")
    assert main(["mnist", "--out", str(tmp_path / "f"), "--limit", "10"]) == 2
    assert "is an existing file" in capsys.readouterr().err


def test_flags_come_from_the_config_fields(capsys):
    from otgen.cli import main
    from otgen.cliargs import flag_of

    with pytest.raises(SystemExit):
        main(["mnist", "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(exp.MnistConfig):
        if "cli" in f.metadata:
            assert flag_of(f) in text, f.name
    assert "--no-eval" in text and "--quiet" in text and "--ot-optimizer" in text


def test_missing_artefact_names_the_stage(tmp_path):
    cfg = tiny_config(tmp_path, stages=("fit-ot",))
    with pytest.raises(ValueError, match="run the encode stage first"):
        exp.run(cfg)


def test_cli_reports_bad_stage(capsys):
    from otgen.cli import main

    assert main(["mnist", "--stages", "nope", "--out", "unused"]) == 2
    assert "unknown stage" in capsys.readouterr().err


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not present next to the repo")
@pytest.mark.heavy
def test_tiny_end_to_end_and_resume(tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(out)
    res = exp.run(cfg)
    assert res["ran"] == list(PLAIN_AEOT[:-1]) and res["skipped"] == []
    samples = np.load(out / "samples.npy", allow_pickle=False)
    assert samples.shape == (120, 28, 28) and samples.dtype == np.uint8
    assert samples.max() > 100 and samples.min() < 30 and samples.std() > 20  # dark ground, brighter strokes
    latents = np.load(out / "latents.npy")
    assert latents.shape == (300, 4)
    gen = np.load(out / "generated_latents.npy")
    assert gen.shape == (120, 4) and np.isfinite(gen).all()
    # Generated codes stay in the region of the training codes: the piecewise-linear map extrapolates
    # a cell's image a little beyond its neighbours, never far (within 25% of the codes' range).
    span = latents.max(0) - latents.min(0)
    assert (gen.min(0) >= latents.min(0) - 0.25 * span).all() and (gen.max(0) <= latents.max(0) + 0.25 * span).all()
    for name in ("samples.png", "reconstruction.png", "config.json", "autoencoder.npz", MAP_FILE,
                 EXTENSION_FILE):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["seed"] == 0
    # The map's error measured on fresh i.i.d. samples, not by the solver's own estimate.
    chk = json.loads((out / mnist_rundir.OT_CHECK_FILE).read_text())
    assert chk["ot_check_samples"] == mnist_aeot.OT_CHECK_SAMPLES and np.isfinite(chk["ot_check_chi2"])
    assert chk["ot_check_noise_chi2"] == pytest.approx(2 * np.sqrt(300) / mnist_aeot.OT_CHECK_SAMPLES)

    # A second run finds everything done and changes nothing.
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".npy", ".npz")}
    again = exp.run(cfg)
    assert again["ran"] == [] and again["skipped"] == list(PLAIN_AEOT[:-1])
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".npy", ".npz")}

    # Killed during generate: only generate is redone, and (same seed) gives the same digits.
    (out / "samples.npy").unlink()
    third = exp.run(cfg)
    assert third["ran"] == ["generate"]
    np.testing.assert_array_equal(np.load(out / "samples.npy"), samples)

    # AE-OT-GAN on the same autoencoder: the same codes (same map, same seed), decoded by a fine-tuned decoder
    gan_out = tmp_path / "aeot_gan"
    tuned = exp.run(tiny_config(gan_out, decoder_gan_steps=3, ae_from=str(out)))
    assert tuned["ran"] == ["train-ae", "encode", "fit-ot", "tune-decoder", "generate"]
    np.testing.assert_array_equal(np.load(gan_out / "generated_latents.npy"), gen)
    assert not np.array_equal(np.load(gan_out / "samples.npy"), samples)
    assert (gan_out / mnist_aeot.DECODER_GAN_DIR / "decoder_gan.npz").is_file()
    assert exp.run(tiny_config(gan_out, decoder_gan_steps=3, ae_from=str(out)))["ran"] == []

    # A latent flow takes this run's autoencoder and codes (--ae-from) instead of training its own ...
    flow_out = tmp_path / "fm"
    flow = exp.run(tiny_config(flow_out, model="fm", flow_steps=20, n_samples=30, ae_from=str(out)))
    assert flow["ran"] == list(mnist_config.FLOW_STAGES[:-1])
    for name in ("autoencoder.npz", "latents.npy"):
        assert (flow_out / name).read_bytes() == (out / name).read_bytes()
    stages = json.loads((flow_out / mnist_rundir.STAGES_FILE).read_text())
    aeot_stages = json.loads((out / mnist_rundir.STAGES_FILE).read_text())
    assert stages["train-ae"]["reused_from"] == str(out)
    assert stages["train-ae"]["seconds"] == aeot_stages["train-ae"]["seconds"]  # its wall time counts the AE
    # ... and sdfm takes that run's semi-discrete map too (the same problem: Gaussian onto the whitened codes).
    sd_out = tmp_path / "sdfm"
    exp.run(tiny_config(sd_out, model="sdfm", flow_steps=20, n_samples=30, ae_from=str(out)))
    assert (sd_out / "flow" / MAP_FILE).read_bytes() == (out / MAP_FILE).read_bytes()
    taken = json.loads((sd_out / "flow" / mnist_baselines.COUPLING_FROM_FILE).read_text())
    from otgen.ot import BrenierMap

    solve = BrenierMap.load(out / MAP_FILE).diagnostics.history.wall_time[-1]
    assert taken["from"] == str(out) and taken["ot_seconds"] == solve > 0
    sd_stages = json.loads((sd_out / mnist_rundir.STAGES_FILE).read_text())
    assert sd_stages["train-flow"]["seconds"] >= taken["ot_seconds"]  # sdfm's time counts the solve it reused
    # ... only if that run trained the same autoencoder, and says which setting differs.
    with pytest.raises(ValueError, match="seed=0.*seed=1"):
        exp.run(tiny_config(tmp_path / "fm1", model="fm", flow_steps=20, seed=1, ae_from=str(out)))
    with pytest.raises(ValueError, match="no config.json"):
        exp.run(tiny_config(tmp_path / "fm2", model="fm", ae_from=str(tmp_path / "nowhere")))


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not present next to the repo")
@pytest.mark.heavy
def test_tiny_gan_baseline_through_the_same_command(tmp_path):
    out = tmp_path / "gan"
    cfg = exp.make_config("quick", model="pacgan2", out=str(out), data_dir=str(REAL_MNIST), limit=100,
                          gan_steps=3,
                          n_samples=30, evaluate=False, progress=False)
    res = exp.run(cfg)
    assert res["ran"] == ["train-gan", "generate"]
    samples = np.load(out / "samples.npy")
    assert samples.shape == (30, 28, 28) and samples.dtype == np.uint8
    assert (out / "samples.png").is_file() and (out / "gan" / "checkpoint.npz").is_file()
    assert exp.run(cfg)["ran"] == []


@pytest.mark.heavy  # 30 s: the quick preset's full-size DCGAN; the curve mechanism is in test_reproduce
@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not present next to the repo")
def test_gan_learning_curve_ends_on_the_runs_own_samples(tmp_path, monkeypatch):
    """The curve's records score the generate stage's draw: at the last step, samples.npy itself."""

    def score(suite, images, data_dir=None):  # stands in for the classifier (not trained in CI)
        images = np.asarray(images)
        return {"n": len(images), "mean_pixel": float(images.mean()), "first": int(images.reshape(-1)[123])}

    monkeypatch.setattr(mnist_baselines, "image_curve_point", score)
    out = tmp_path / "gan"
    cfg = exp.make_config("quick", model="gan", out=str(out), data_dir=str(REAL_MNIST), limit=100, gan_steps=3,
                          n_samples=30, evaluate=True, stages=("train-gan", "generate"), progress=False)
    assert exp.run(cfg)["ran"] == ["train-gan", "generate"]
    curve = json.loads((out / mnist_rundir.CURVES_FILE).read_text())
    assert [r["step"] for r in curve] == [3] and (out / "curves.png").exists()
    assert curve[-1] == {"step": 3, **score("mnist", np.load(out / "samples.npy"))}
    # the curve travels in the checkpoint (a resumed run keeps it)
    from otgen.checkpoint import load_pytree

    assert load_pytree(out / "gan" / "checkpoint.npz")[1]["curve"] == curve


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not present next to the repo")
@pytest.mark.heavy
def test_tiny_stacked_mnist_aeot(tmp_path):
    """Stacked MNIST through the same stages: RGB training images, RGB samples."""
    from otgen.models.autoencoder import AEConfig

    out = tmp_path / "stacked"
    cfg = tiny_config(out, dataset="stacked", ae=AEConfig(latent_dim=6, features=(4, 8), hidden=32),
                      ae_epochs=2, n_samples=40)
    assert cfg.ae.channels == 3
    res = exp.run(cfg)
    assert res["ran"] == list(PLAIN_AEOT[:-1])
    samples = np.load(out / "samples.npy", allow_pickle=False)
    assert samples.shape == (40, 28, 28, 3) and samples.dtype == np.uint8
    assert np.load(out / "latents.npy").shape == (300, 6)
    # the stacked training set is a fixed draw: the same images whatever the run's seed
    a = mnist_rundir.load_train_images(cfg)
    b = mnist_rundir.load_train_images(tiny_config(tmp_path / "other", dataset="stacked", seed=5))
    assert a.shape == (300, 28, 28, 3) and np.array_equal(a, b)


REAL_FASHION = REAL_MNIST.parent / "fashion-mnist"


@pytest.mark.heavy  # 20 s; flows: test_flow, test_generators
@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="real Fashion-MNIST not present next to the repo")
@pytest.mark.parametrize("model", ["sdfm"])  # the flow with the most parts: an OT solve, then the flow
def test_tiny_latent_flow_on_fashion_mnist(tmp_path, model):
    """A latent flow shares AE-OT's autoencoder stages, then trains on the codes and decodes its samples."""
    out = tmp_path / model
    cfg = tiny_config(out, model=model, dataset="fashion", data_dir=str(REAL_FASHION), ae_epochs=1, flow_steps=60,
                      n_samples=50)
    assert cfg.stage_list() == mnist_config.FLOW_STAGES[:-1]
    res = exp.run(cfg)
    assert res["ran"] == list(mnist_config.FLOW_STAGES[:-1])
    samples = np.load(out / "samples.npy", allow_pickle=False)
    assert samples.shape == (50, 28, 28) and samples.dtype == np.uint8
    assert np.load(out / "generated_latents.npy").shape == (50, 4)
    assert (out / "flow" / "checkpoint.npz").is_file()
    assert json.loads((out / mnist_rundir.GENERATION_FILE).read_text())["coupling"] == model
    assert ((out / "flow" / MAP_FILE).is_file()) == (model == "sdfm")
    # the training images are Fashion-MNIST's, not MNIST's
    from otgen.data.mnist import load_mnist

    np.testing.assert_array_equal(mnist_rundir.load_train_images(cfg),
                                  load_mnist("train", REAL_FASHION, dataset="fashion")[0][:300])
    assert exp.run(cfg)["ran"] == []


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not present next to the repo")
def test_ablation_end_to_end_on_a_tiny_run(tmp_path):
    """otgen ablation on a tiny AE-OT run: every control and two samplers scored, resumable row by row
    (slow: trains the evaluation classifier when it is not cached)."""
    from experiments import ablation

    out = tmp_path / "run"
    exp.run(tiny_config(out, stages=("train-ae", "encode", "fit-ot"), flow_steps=300))
    rows = ("gaussian", "aeot-spacing", "aeot-spacing@0.5", "sdfm")
    with pytest.raises(ValueError, match="unknown rows"):
        ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=("aeot-spacing@x",), progress=False)
    res = ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=rows, progress=False)
    assert set(res["rows"]) == {f"*{c}*" for c in ablation.CONTROL_ROWS} | set(rows)
    spacing, half = res["rows"]["aeot-spacing"], res["rows"]["aeot-spacing@0.5"]
    assert spacing["interpolated_fraction"] == 1.0 and spacing["code_copy_fraction"] == 0.0
    assert half["rule_jitter"] == pytest.approx(0.5 * spacing["rule_jitter"]) and half["rule_jitter_factor"] == 0.5
    # every row sees as many images as the real control, or n; FID against the held-out half
    assert res["rows"]["*real (held-out test images)*"]["n_samples"] == 5000 and spacing["n_samples"] == 200
    assert ablation.plot_plane(res, tmp_path / "plane.png").stat().st_size > 0
    # sdfm trains on the run's codes with the run's own map as its coupling (one map for AE-OT and sdfm)
    assert res["rows"]["sdfm"]["coupling"] == "sdfm" and res["rows"]["sdfm"]["steps"] == 300
    assert (out / "ablation_flows" / "sdfm" / "brenier.npz").read_bytes() == (out / "brenier.npz").read_bytes()
    assert res["rows"]["*replay (training images)*"]["feature_copy_fraction"] == 1.0
    # a second call finds every row scored (their recorded seconds unchanged: nothing recomputed)
    again = ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=rows, progress=False)
    assert {k: r["seconds"] for k, r in again["rows"].items()} == {k: r["seconds"] for k, r in res["rows"].items()}
    # the fine-tuned decoder (AE-OT-GAN) scores the same rows apart: same codes, other images, other file
    tuned = ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=("aeot-spacing",), progress=False,
                         decoder="gan", decoder_gan={"steps": 3, "batch_size": 16})
    assert (out / "ablation_decoder_gan.json").is_file() and tuned["meta"]["decoder_gan"]["steps"] == 3
    plain_rec, tuned_rec = (r["rows"]["*reconstructions of held-out test images*"] for r in (res, tuned))
    assert tuned_rec["code_nn_distance_ratio"] == plain_rec["code_nn_distance_ratio"]  # the codes are the same
    assert tuned_rec["fid"] != plain_rec["fid"]  # their images are not
    # gan-own: each sampler row its own decoder GAN on its own codes; AE-OT's row is the shared decoder_gan/
    tuned = ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=("gaussian", "aeot-spacing"),
                         progress=False, decoder="gan", decoder_gan={"steps": 3, "batch_size": 16})
    own = ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=("gaussian", "aeot-spacing"),
                       progress=False, decoder="gan-own", decoder_gan={"steps": 3, "batch_size": 16})
    assert (out / "ablation_decoder_gan_own.json").is_file()
    assert (out / "decoder_gan_own" / "gaussian" / "decoder_gan.npz").is_file()
    assert not (out / "decoder_gan_own" / "aeot-spacing").exists()
    assert own["rows"]["aeot-spacing"]["fid"] == tuned["rows"]["aeot-spacing"]["fid"]
    assert own["rows"]["gaussian"]["fid"] != tuned["rows"]["gaussian"]["fid"]  # same codes, its own decoder
    assert own["rows"]["gaussian"]["code_nn_distance_ratio"] == tuned["rows"]["gaussian"]["code_nn_distance_ratio"]
    assert "own decoder GAN" in ablation.write_report(own, tmp_path / "own.md", "cmd")
    # gan@gaussian: the decoder tuned on the Gaussian's codes (reused, not retrained) decodes every row
    cross = ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=("gaussian", "aeot-spacing"),
                         progress=False, decoder="gan@gaussian", decoder_gan={"steps": 3, "batch_size": 16})
    assert (out / "ablation_decoder_gan@gaussian.json").is_file()
    assert cross["rows"]["gaussian"]["fid"] == own["rows"]["gaussian"]["fid"]  # same codes, same decoder
    assert cross["rows"]["aeot-spacing"]["fid"] != own["rows"]["aeot-spacing"]["fid"]
    assert "on the codes of sampler `gaussian`" in ablation.write_report(cross, tmp_path / "cross.md", "cmd")
    # another decoder-GAN seed trains apart and leaves seed 0's decoder and results as they were
    before = (out / "decoder_gan" / "decoder_gan.npz").read_bytes()
    seed1 = ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=("aeot-spacing",), progress=False,
                         decoder="gan", decoder_gan={"steps": 3, "batch_size": 16, "seed": 1})
    assert (out / "decoder_gan_seed1" / "decoder_gan.npz").is_file()
    assert (out / "decoder_gan" / "decoder_gan.npz").read_bytes() == before
    assert seed1["rows"]["aeot-spacing"]["fid"] != tuned["rows"]["aeot-spacing"]["fid"]
    assert json.loads((out / "ablation_decoder_gan.json").read_text())["rows"]["aeot-spacing"]["fid"] == \
        tuned["rows"]["aeot-spacing"]["fid"]
    for bad in ("vae", "gan@nope", "gan@fm"):
        with pytest.raises(ValueError, match="decoder must be"):
            ablation.run(str(out), data_dir=str(REAL_MNIST), n=200, rows=rows, progress=False, decoder=bad)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not present next to the repo")
def test_ablation_on_a_tiny_stacked_run(tmp_path):
    """Stacked MNIST in the ablation: rows scored by modes / KL and code novelty, the real control n fresh
    stacks of test digits; no decoder GAN there (slow: the evaluation classifier, when not cached)."""
    from experiments import ablation
    from otgen.models.autoencoder import AEConfig

    out = tmp_path / "stacked"
    exp.run(tiny_config(out, dataset="stacked", ae=AEConfig(latent_dim=6, features=(4, 8), hidden=32), ae_epochs=1,
                        stages=("train-ae", "encode", "fit-ot")))
    res = ablation.run(str(out), data_dir=str(REAL_MNIST), n=300, rows=("gaussian", "aeot-spacing"), progress=False)
    real, spacing = res["rows"]["*real (held-out test images)*"], res["rows"]["aeot-spacing"]
    assert real["n_samples"] == spacing["n_samples"] == 300 and "fid" not in spacing
    assert 0 < spacing["modes_covered"] <= 300 and spacing["code_copy_fraction"] == 0.0
    assert res["rows"]["*replay (training images)*"]["code_copy_fraction"] == 1.0
    text = ablation.write_report(res, tmp_path / "s.md", "cmd")
    assert "| modes | KL | max share |" in text
    again = ablation.run(str(out), data_dir=str(REAL_MNIST), n=300, rows=("gaussian", "aeot-spacing"), progress=False)
    assert {k: r["seconds"] for k, r in again["rows"].items()} == {k: r["seconds"] for k, r in res["rows"].items()}
    assert ablation.plot_plane(res, tmp_path / "plane.png", quality="kl_uniform").stat().st_size > 0
    with pytest.raises(ValueError, match="autoencoder only"):
        ablation.run(str(out), data_dir=str(REAL_MNIST), n=300, rows=("gaussian",), progress=False, decoder="gan")


def test_autoencoder_width_flags():
    import argparse

    parser = argparse.ArgumentParser()
    exp.add_arguments(parser)
    cfg = mnist_config.config_from_args(parser.parse_args(["--ae-features", "32,64", "--ae-hidden", "512",
                                                           "--latent-dim", "8"]))
    assert (cfg.ae.features, cfg.ae.hidden, cfg.ae.latent_dim) == ((32, 64), 512, 8)
    assert cfg.ae.loss == exp.PRESETS["quick"]["ae"].loss  # the rest stays the preset's
    with pytest.raises(ValueError):
        mnist_config.config_from_args(parser.parse_args(["--ae-features", "32,x"]))
    with pytest.raises(ValueError, match="features"):
        mnist_config.config_from_args(parser.parse_args(["--ae-features", "8,8,8"]))
