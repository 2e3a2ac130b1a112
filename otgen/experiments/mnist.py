"""``otgen mnist``: AE-OT (or a GAN or latent-flow baseline) on MNIST, Fashion-MNIST or Stacked MNIST,
stage by stage, resumable.

(~600 lines: the config and its presets, five stages and their artefacts, the evaluate stage's
novelty and nearest-neighbour figure; the AE-OT pipeline itself is :mod:`otgen.generators.aeot`.)

AE-OT stages, each skipped when its artefact already exists in the run directory:

    train-ae  -> autoencoder.npz   (per-epoch ae_train_state.npz lets a killed run resume mid-training)
    encode    -> latents.npy       (codes of every training image)
    fit-ot    -> whitening.npz, brenier.npz, extension.npz (otgen.generators.aeot.AEOT on the codes:
                 semi-discrete OT, then the extension's cell barycentres)
    generate  -> generated_latents.npy, samples.npy (uint8 (n, 28, 28)), samples.png
    evaluate  -> metrics.json      (classifier-judged class coverage / KL / FID; --no-eval skips it)

GAN baselines (``--model gan|wgan|wgan-gp|pacgan2|...``) run ``train-gan`` (otgen.generators.gan, resumable)
then ``generate`` and ``evaluate``.  Latent flows (``--model fm|otcfm|sdfm``, otgen.generators.flow)
share AE-OT's first two stages -- the same autoencoder, so the comparison isolates the latent
generator -- then ``train-flow`` (on the codes, checkpointed in ``flow/``), ``generate`` (flow
samples decoded) and ``evaluate``.  Every file is written atomically, so killing the command at any
point and re-running it with the same ``--out`` redoes only the unfinished stage.

``--dataset fashion`` runs on Fashion-MNIST (``--data-dir`` holding its IDX files), scored by the
project's Fashion-MNIST classifier.

``--dataset stacked`` trains on Stacked MNIST (1,000 modes; ``otgen.data.stacked``): 128,000 RGB
images whose channels are three MNIST training digits, drawn once with a fixed key so that every
model and seed sees the same data; 26,000 samples are generated and scored by digit triples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import numpy as np

from otgen.cliargs import add_arguments as _add_config_arguments
from otgen.cliargs import option, values_from_args
from otgen.data.stacked import N_SAMPLES as N_STACKED_SAMPLES
from otgen.generators.aeot import EXTENSION_FILE, MAP_FILE
from otgen.models.autoencoder import AEConfig

__all__ = ["MnistConfig", "PRESETS", "AEOT_STAGES", "GAN_STAGES", "make_config", "run", "add_arguments", "main",
           "replay_reconstructions"]

AEOT_STAGES = ("train-ae", "encode", "fit-ot", "generate", "evaluate")
GAN_STAGES = ("train-gan", "generate", "evaluate")
FLOW_STAGES = ("train-ae", "encode", "train-flow", "generate", "evaluate")
FLOWS = ("fm", "otcfm", "sdfm")

# Files that mark a stage as done (each written atomically, last thing the stage does).
AE_FILE, AE_STATE_FILE, LATENTS_FILE = "autoencoder.npz", "ae_train_state.npz", "latents.npy"
GEN_LATENTS_FILE, SAMPLES_FILE = "generated_latents.npy", "samples.npy"
GAN_DIR, FLOW_DIR = "gan", "flow"
CURVES_FILE = "curves.json"  # a GAN's learning curve: records {"step": s, classes / modes, KL, FID}
METRICS_FILE, STAGES_FILE = "metrics.json", "stages.json"
OT_CHECK_FILE = "ot_check.json"  # the latent map's error measured on fresh i.i.d. samples (not the solver's)
OT_CHECK_SAMPLES = 1 << 20  # chi2 noise 2 sqrt(K) / N: 4.7e-4 at K = 60,000
GENERATION_FILE, NEIGHBOURS_FIGURE = "generation.json", "nearest_neighbours.png"


MODELS = ("aeot", "gan", "wgan", "wgan-gp", "pacgan2", "pacgan3", "pacgan4", "fm", "otcfm", "sdfm")  # the registry


@dataclasses.dataclass(frozen=True)
class MnistConfig:
    """Everything one image run depends on.  ``make_config(preset, ...)`` fills the preset values;
    every field with a help text is also an ``otgen mnist`` flag (default: the preset's)."""

    preset: str = option("quick", "quick: small AE (< 15 min on 2 CPU cores); paper: AE-OT's autoencoder and generation, our OT solver",
                         choices=("quick", "paper"))
    model: str = option("aeot", "aeot, a GAN baseline, or a latent flow (fm, otcfm, sdfm)", choices=MODELS)
    dataset: str = option("mnist", "mnist (10 classes), fashion (Fashion-MNIST, 10 classes) or stacked (Stacked "
                          "MNIST: 3 digits as RGB, 1,000 modes)", choices=("mnist", "fashion", "stacked"))
    out: str | None = option(None, "run directory (default runs/<dataset>_<model>_<preset>)", preset_default=True)
    data_dir: str | None = option(None, "directory with the dataset's IDX files (else $OTGEN_DATA_DIR, else "
                                  "~/.cache/otgen/mnist; Fashion-MNIST: $OTGEN_FASHION_DIR, "
                                  "~/.cache/otgen/fashion-mnist)", preset_default=True)
    seed: int = option(0, "seed of initialisation, OT and sampling")
    stages: tuple[str, ...] | None = option(None, f"comma-separated subset of {','.join(('train-ae', 'encode', 'fit-ot', 'generate', 'evaluate'))} "
                                            f"(GANs: train-gan,generate,evaluate; flows: train-ae,encode,train-flow,"
                                            f"generate,evaluate; default all)", preset_default=True)
    limit: int | None = option(None, "use only the first N training images (default all)", preset_default=True)
    n_samples: int = option(10000, "images to generate (default 10,000; Stacked 26,000)", preset_default=True)
    evaluate: bool = option(True, "skip the classifier evaluation (metrics.json; a GAN's learning curve too)",
                            flag="--no-eval")
    progress: bool = option(True, "no progress bars or log lines", flag="--quiet")
    overwrite: bool = option(False, "replace a run directory that holds another configuration")
    ae_from: str | None = option(None, "take the autoencoder and codes from this run directory instead of training "
                                 "them (it must hold the same dataset, seed and autoencoder settings; checked)",
                                 preset_default=True)
    # autoencoder
    ae: AEConfig = AEConfig()
    ae_epochs: int = option(6, "autoencoder epochs", preset_default=True)
    ae_batch: int = option(128, "autoencoder batch size", preset_default=True)
    ae_lr: float = option(2e-3, "autoencoder Adam learning rate", preset_default=True)
    # semi-discrete OT from the source onto the codes (otgen.generators.aeot.OTOptions)
    whiten: bool = True  # OT on PCA-whitened codes (an invertible affine change of latent coordinates)
    ot_source: str = option("gaussian", "OT source: gaussian (standard normal) or uniform (unit cube, as pyOMT)",
                            choices=("gaussian", "uniform"), preset_default=True)
    ot_optimizer: str = option("auto", "auto (the solver's default: averaged SGD on chi2 at these sizes), "
                               "averaged, newton (otgen's damped Newton) or aeot (pyOMT's Adam recipe)",
                               choices=("auto", "averaged", "newton", "aeot"), preset_default=True)
    ot_init: str = option("auto", "the solver's start: auto (the optimizer's), discrete, multiscale, voronoi or zero",
                          preset_default=True)
    ot_sampling: str = option("rqmc", "aeot recipe: rqmc (fresh randomised Sobol each step), sobol (pyOMT) or iid",
                              preset_default=True)
    ot_steps: int | None = option(None, "maximum OT steps (default: the optimizer's)", preset_default=True)
    ot_batch: int | None = option(None, "Monte-Carlo source samples per OT step (initial; default: the "
                                  "optimizer's)", preset_default=True)
    ot_lr: float = option(2e-2, "aeot recipe's learning rate", preset_default=True)
    ot_tol: float = option(2.5e-3, "stop OT at estimated error <= tol (chi2 for auto/averaged, L1 for newton)",
                           preset_default=True)
    ot_time_budget: float | None = option(None, "stop OT after this many seconds (said in metrics.json)",
                                          preset_default=True)
    # extended generation (otgen.ot.extension: top-k neighbouring cells, dihedral-angle threshold in radians
    # on standardised codes; 0.35 measured by scripts/mnist_angle_study.py: 81% of samples interpolated,
    # 0.5% of the regular neighbour pairs of another digit class)
    top_k: int = option(20, "neighbour cells considered by the extension", preset_default=True)
    rule: str = option("spacing", "extension's rule: spacing (the codes' own resolution; otgen.ot.spacing) or "
                       "angle (the paper's dihedral angle, --angle-threshold)", choices=("spacing", "angle"))
    angle_threshold: float = option(0.35, "angle rule: dihedral-angle threshold, radians on standardised codes",
                                    preset_default=True)
    # GAN baselines
    gan_steps: int = option(2000, "GAN iterations (one discriminator and the preset's generator updates)",
                            preset_default=True)
    gan_preset: str = option("default", "GAN nets and batch (otgen.training.IMAGE_PRESETS): default (gan_mnist.py's "
                             "DCGAN) or stacked (PacGAN's Stacked-MNIST DCGAN)", choices=("default", "stacked"),
                             preset_default=True)
    # latent flows
    flow_steps: int | None = option(None, "latent flows: training steps (default otgen.generators.flow's "
                                    "images preset, 20,000)", preset_default=True)

    # Fields that may change between runs in one run directory without invalidating it.
    RUNTIME_FIELDS = ("stages", "evaluate", "progress", "data_dir", "out", "overwrite", "ae_from")
    # The fields the autoencoder and codes depend on: ae_from must agree on every one.
    AE_FIELDS = ("dataset", "seed", "limit", "ae", "ae_epochs", "ae_batch", "ae_lr")

    def __post_init__(self):
        if self.out is None:
            prefix = {"stacked": "stacked_mnist"}.get(self.dataset, self.dataset)
            object.__setattr__(self, "out", f"runs/{prefix}_{self.model}_{self.preset}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.ae.channels != self.channels:
            raise ValueError(f"the {self.dataset} images have {self.channels} channel(s), "
                             f"the autoencoder {self.ae.channels}")
        if self.limit is not None and self.limit < 2:
            raise ValueError(f"limit must be >= 2 training images, got {self.limit}")
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        for name in ("ae_epochs", "ae_batch", "ot_steps", "ot_batch", "top_k", "gan_steps", "flow_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        try:  # the ot_* fields are otgen.generators.aeot.OTOptions: one place checks them
            _ot_options(self)
        except ValueError as e:
            raise ValueError(f"invalid ot_* settings: {e}") from None
        if not 0.0 <= self.angle_threshold <= np.pi:
            raise ValueError(f"angle_threshold must be in [0, pi] radians, got {self.angle_threshold}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        known = self.all_stages()
        for s in self.stages or ():
            if s not in known:
                raise ValueError(f"unknown stage {s!r} for model {self.model!r}; stages are {', '.join(known)}")

    @property
    def channels(self) -> int:
        return 3 if self.dataset == "stacked" else 1

    def all_stages(self) -> tuple[str, ...]:
        return AEOT_STAGES if self.model == "aeot" else FLOW_STAGES if self.model in FLOWS else GAN_STAGES

    def stage_list(self) -> tuple[str, ...]:
        allowed = self.all_stages()
        chosen = allowed if self.stages is None else tuple(s for s in allowed if s in self.stages)
        return tuple(s for s in chosen if s != "evaluate" or self.evaluate)

    def identity(self) -> dict:
        """The fields that define the run's results (compared when a run directory is reused)."""
        d = dataclasses.asdict(self)
        for k in self.RUNTIME_FIELDS:
            d.pop(k)
        return json.loads(json.dumps(d))  # tuples -> lists, as read back from config.json


PRESETS: dict[str, dict[str, Any]] = {
    # Small AE; OT on whitened codes from a Gaussian by the solver's default at K = 60,000 (averaged SGD from
    # the Voronoi potential, 2^16 fresh samples per step): scripts/bench_ot.py --section large measured it
    # well ahead of pyOMT's Adam recipe from the same start (README, benchmarks).  The budgets (150 s of OT,
    # 10,000 latent-flow steps, 600 GAN steps) are sized so that the whole quick suite (aeot, sdfm, fm,
    # gan, pacgan2 and the control rows) fits 30 min on 2 CPU cores (README, "Quick image suites"): a
    # smoke test of every model, not the published budgets (GANs: `otgen reproduce`).  Measured at
    # 200 s / 1,000 steps: 32-33 min (a DCGAN step took 0.33-0.35 s on that machine).
    "quick": dict(ae=AEConfig(latent_dim=16, features=(16, 32), hidden=256, loss="bce"),
                  ae_epochs=6, ae_batch=128, ae_lr=2e-3,
                  whiten=True, ot_source="gaussian", ot_optimizer="auto", ot_init="auto", ot_sampling="rqmc",
                  ot_steps=None, ot_batch=None, ot_lr=2e-2, ot_tol=2.5e-3, ot_time_budget=150.0,
                  top_k=20, angle_threshold=0.35, gan_steps=600, flow_steps=10_000),
    # AE-OT's public code (pyOMT): 100-d codes, Adam 1e-3, batch 512, MSE + 1e-5 L1 on the codes.  Its OT
    # (Adam lr 5e-2 on h from h = 0, 20 x 1000 quasi-Monte-Carlo samples per step, up to 20000 steps, ~19 h
    # here) is replaced by the project's solver as in "quick" (whitened codes, Gaussian source, averaged SGD
    # on chi2) with a 60-minute budget: `--ot-optimizer aeot --ot-init zero --ot-source uniform
    # --ot-sampling sobol --ot-steps 20000 --ot-batch 20000` with make_config(whiten=False) is pyOMT's recipe.
    # Generation from the top-20 cells (pyOMT's threshold 0.7 is on raw codes; otgen's threshold is on
    # standardised codes and keeps the value measured on the quick preset).  The networks are the InfoGAN MNIST
    # pair (64/128 conv channels, 1024 dense).  AE epochs: our choice (the code caps them at 500).
    # GANs at their authors' budget: igul222/improved_wgan_training gan_mnist.py, ITERS = 200000 generator
    # steps at BATCH_SIZE 50 (its DCGAN-style nets, otgen.models.gan); ~18 h of a 2-core CPU (README).
    "paper": dict(ae=AEConfig(latent_dim=100, features=(64, 128), hidden=1024, loss="mse", l1=1e-5),
                  ae_epochs=50, ae_batch=512, ae_lr=1e-3,
                  whiten=True, ot_source="gaussian", ot_optimizer="auto", ot_init="auto", ot_sampling="rqmc",
                  ot_steps=None, ot_batch=None, ot_lr=5e-2, ot_tol=1e-2, ot_time_budget=3600.0,
                  top_k=20, angle_threshold=0.35, gan_steps=200_000),
}


DATASETS = ("mnist", "fashion", "stacked")
# What each preset changes on Stacked MNIST (a field given to make_config wins).  "ae": three digits per
# image want a wider code and conv stack than one digit (our choice).  Quick: 3 AE epochs of the 128,000
# images (as many image steps as MNIST's 6 epochs of 60,000), so the quick comparison fits 30 min on
# 2 cores.  Measured (otgen mnist --dataset stacked): 3 epochs 1,000 modes / KL 0.051 in 582 s;
# 6 epochs 1,000 / KL 0.043.
# Stacked quick keeps the OT and GAN budgets its committed report was measured with.
STACKED_PRESETS = {
    "quick": dict(ae=dict(latent_dim=32, features=(32, 64)), ae_epochs=3, n_samples=N_STACKED_SAMPLES,
                  ot_time_budget=300.0, gan_steps=2000),
    # PacGAN's Stacked-MNIST code (stacked_MNIST_experiments/VEEGAN_experiment/config.py): 50 epochs of
    # 128,000 images at batch 64 = 100,000 iterations, on its own nets (carpedm20's DCGAN, uniform z_dim
    # 100, two generator updates per iteration): otgen.training.IMAGE_PRESETS["stacked"].
    "paper": dict(ae={}, n_samples=N_STACKED_SAMPLES, gan_steps=100_000, gan_preset="stacked"),
}


def make_config(preset: str = "quick", **overrides) -> MnistConfig:
    """The preset's settings with ``overrides`` (``None`` values are ignored) applied."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    ae_over = {k: overrides.pop(k) for k in ("latent_dim", "ae_features", "ae_hidden") if k in overrides}
    given = {k: v for k, v in overrides.items() if v is not None}
    fields = {**PRESETS[preset], **given}
    if fields.get("dataset") == "stacked":
        stacked = {k: v for k, v in STACKED_PRESETS[preset].items() if k not in given}
        ae_fields = stacked.pop("ae", {})
        fields.update(stacked)
        fields["ae"] = dataclasses.replace(fields["ae"], channels=3, **ae_fields)
    given_ae = {name: ae_over.get(k) for k, name in (("latent_dim", "latent_dim"), ("ae_features", "features"),
                                                      ("ae_hidden", "hidden")) if ae_over.get(k) is not None}
    if given_ae:
        fields["ae"] = dataclasses.replace(fields["ae"], **given_ae)
    if fields.get("stages") is not None:
        fields["stages"] = tuple(fields["stages"])
    return MnistConfig(preset=preset, **fields)


# ----------------------------------------------------------------------------------------------
# helpers


def _log(cfg: MnistConfig, msg: str) -> None:
    if cfg.progress:
        print(f"[otgen mnist] {msg}", flush=True)


def _to_uint8(images) -> np.ndarray:
    """float images in [0, 1], (n, 28, 28[, C]) -> uint8 (n, 28, 28) for grey, (n, 28, 28, C) otherwise."""
    x = np.asarray(images, np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _claim_run_dir(cfg: MnistConfig):
    """A run directory belongs to one configuration: resume it, or refuse to mix artefacts of two
    (``--overwrite`` replaces the other run)."""
    from otgen.rundir import claim_run_dir

    def stored(doc):
        return {k: v for k, v in doc.get("config", {}).items() if k not in MnistConfig.RUNTIME_FIELDS}

    rd = claim_run_dir(cfg.out, cfg.identity(), stored, cfg.overwrite)
    if not rd.has("config.json"):
        rd.write_config(dataclasses.asdict(cfg), seed=cfg.seed)
    return rd


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _record_stage(rd, name: str, seconds: float, **extra) -> None:
    """stages.json: wall seconds per stage and the process's peak memory so far (the 4 GB budget)."""
    done = rd.read_json(STAGES_FILE) if rd.has(STAGES_FILE) else {}
    done[name] = {"seconds": round(seconds, 2), "peak_rss_mb_so_far": _peak_rss_mb(),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
    rd.write_json(STAGES_FILE, done)


def _keys(seed: int):
    import jax

    k = jax.random.split(jax.random.key(seed), 5)
    return {"ae_init": k[0], "ae_shuffle": k[1], "ot": k[2], "generate": k[3], "gan": k[4]}


def _load_images(cfg: MnistConfig, split: str) -> np.ndarray:
    """uint8 images of ``split`` (:func:`otgen.data.load`): (n, 28, 28) MNIST, (n, 28, 28, 3) Stacked."""
    from otgen.data import load

    return load(cfg.dataset, split, cfg.data_dir)


def _load_train_images(cfg: MnistConfig) -> np.ndarray:
    from otgen.data import load

    return load(cfg.dataset, "train", cfg.data_dir, n=cfg.limit)


# ----------------------------------------------------------------------------------------------
# AE-OT stages


def _ae_parts(cfg: MnistConfig):
    import optax

    from otgen.models.autoencoder import init_train_state, make_autoencoder

    model = make_autoencoder(cfg.ae)
    optimizer = optax.adam(cfg.ae_lr)
    template = init_train_state(_keys(cfg.seed)["ae_init"], model, optimizer)
    return model, optimizer, template


def _load_ae_params(rd, cfg: MnistConfig):
    from otgen.checkpoint import load_pytree

    model, _, template = _ae_parts(cfg)
    if not rd.has(AE_FILE):
        raise ValueError(f"{rd.file(AE_FILE)} is missing: run the train-ae stage first")
    params, meta = load_pytree(rd.file(AE_FILE), like=template.params)
    return model, params, meta


def stage_train_ae(rd, cfg: MnistConfig, train_u8: np.ndarray) -> float:
    """Train (or resume) the autoencoder; returns its training seconds summed over every call."""
    from otgen.checkpoint import load_pytree, save_pytree
    from otgen.data.mnist import to_unit_float
    from otgen.models.autoencoder import fit_autoencoder, reconstruction_mse, decode_batched, encode_batched
    from otgen.plotting import image_grid, loss_curves

    model, optimizer, state = _ae_parts(cfg)
    start, history, before = 0, [], 0.0
    if rd.has(AE_STATE_FILE):  # resume mid-training from the last finished epoch
        state, meta = load_pytree(rd.file(AE_STATE_FILE), like=state)
        start, history = int(meta["epoch"]), list(meta["history"])
        before = float(meta.get("seconds", 0.0))  # the earlier calls' training time
        _log(cfg, f"train-ae: resuming after epoch {start}/{cfg.ae_epochs}")
    t0 = time.perf_counter()

    def checkpoint(epoch, st, metrics):
        history.append(metrics)
        save_pytree(rd.file(AE_STATE_FILE), st, {"epoch": epoch + 1, "history": history,
                                                 "seconds": before + time.perf_counter() - t0})
        _log(cfg, f"train-ae: epoch {epoch + 1}/{cfg.ae_epochs} loss {metrics['loss']:.4f} mse {metrics['mse']:.4f}")

    x = to_unit_float(train_u8)
    state, _ = fit_autoencoder(_keys(cfg.seed)["ae_shuffle"], x, model, optimizer, cfg.ae, state,
                               epochs=cfg.ae_epochs, batch_size=cfg.ae_batch, start_epoch=start,
                               on_epoch_end=checkpoint, progress=cfg.progress)
    # Held-out reconstruction error and figure (test split; fall back to training images if absent).
    try:
        test_u8 = _load_images(cfg, "test")
        held_out = "test"
    except (FileNotFoundError, ValueError):
        test_u8, held_out = train_u8, "train"
    test_mse = reconstruction_mse(model, state.params, to_unit_float(test_u8))
    shown = to_unit_float(test_u8[:50])
    recon = decode_batched(model, state.params, encode_batched(model, state.params, shown))
    pairs = np.concatenate([np.stack([shown[r * 10:(r + 1) * 10], recon[r * 10:(r + 1) * 10]]) for r in range(5)])
    image_grid(pairs.reshape((-1,) + shown.shape[1:]), rd.file("reconstruction.png"), nrow=10,
               title=f"{held_out} digits (odd rows) and reconstructions (even rows), MSE {test_mse:.4f}")
    if history:
        loss_curves({"step": [h["epoch"] for h in history], "loss": [h["loss"] for h in history],
                     "mse": [h["mse"] for h in history]}, rd.file("ae_loss.png"), title="autoencoder (per epoch)")
    rd.write_json("reconstruction.json", {"split": held_out, "mse_per_pixel": test_mse, "n": int(len(test_u8))})
    save_pytree(rd.file(AE_FILE), state.params,
                {"ae": dataclasses.asdict(cfg.ae), "epochs": cfg.ae_epochs, "recon_mse": test_mse,
                 "recon_split": held_out})
    _log(cfg, f"train-ae: done, {held_out} reconstruction MSE per pixel {test_mse:.5f}")
    return before + time.perf_counter() - t0


AE_ARTEFACTS = {"train-ae": (AE_FILE, "reconstruction.json", "reconstruction.png", "ae_loss.png"),
                "encode": (LATENTS_FILE,)}


def adopt_ae_stage(rd, cfg: MnistConfig, stage: str) -> float:
    """Copy ``stage``'s artefacts (train-ae or encode) from the run directory ``cfg.ae_from``, after
    checking that it trained the same autoencoder; returns the seconds that run spent on the stage (so a
    model's wall time still counts its autoencoder)."""
    from otgen.rundir import RunDir

    src = RunDir(cfg.ae_from)
    if not src.has("config.json"):
        raise ValueError(f"--ae-from {cfg.ae_from}: no config.json there")
    theirs = src.read_json("config.json").get("config", {})
    ours = cfg.identity()
    differ = [k for k in MnistConfig.AE_FIELDS if theirs.get(k) != ours[k]]
    if differ:
        raise ValueError(f"--ae-from {cfg.ae_from} trained another autoencoder: its "
                         + ", ".join(f"{k}={theirs.get(k)!r}" for k in differ) + " differ from this run's "
                         + ", ".join(f"{k}={ours[k]!r}" for k in differ))
    if not _stage_done(src, cfg, stage):
        raise ValueError(f"--ae-from {cfg.ae_from} has not finished its {stage} stage")
    for name in AE_ARTEFACTS[stage]:
        if src.has(name):
            rd.copy_from(src.file(name), name)
    _log(cfg, f"{stage}: taken from {cfg.ae_from}")
    return float(src.read_json(STAGES_FILE)[stage]["seconds"])


def stage_encode(rd, cfg: MnistConfig, train_u8: np.ndarray) -> None:
    from otgen.data.mnist import to_unit_float
    from otgen.models.autoencoder import encode_batched

    model, params, _ = _load_ae_params(rd, cfg)
    # Batches of 1000 images: memory stays O(batch), whatever the number of images.
    z = np.concatenate([encode_batched(model, params, to_unit_float(train_u8[i:i + 5000]), 1000)
                        for i in range(0, len(train_u8), 5000)])
    rd.save_array(LATENTS_FILE, z.astype(np.float32))
    _log(cfg, f"encode: {z.shape[0]} codes of dimension {z.shape[1]}")


def _ot_options(cfg: MnistConfig):
    from otgen.generators.aeot import OTOptions

    return OTOptions(source=cfg.ot_source, whiten=cfg.whiten, optimizer=cfg.ot_optimizer, tol=cfg.ot_tol,
                     max_steps=cfg.ot_steps, batch_size=cfg.ot_batch, lr=cfg.ot_lr, init_h=cfg.ot_init,
                     sampling=cfg.ot_sampling, time_budget=cfg.ot_time_budget)


def _extension_options(cfg: MnistConfig):
    from otgen.generators.aeot import ExtensionOptions

    return ExtensionOptions(rule=cfg.rule, angle_threshold=cfg.angle_threshold, top_k=cfg.top_k)


def stage_fit_ot(rd, cfg: MnistConfig) -> None:
    """AE-OT's latent map (:class:`otgen.generators.aeot.AEOT` on the cached codes): semi-discrete
    OT onto the codes and the extension, saved in the run directory as they are made."""
    from otgen.generators.aeot import AEOT

    if not rd.has(LATENTS_FILE):
        raise ValueError(f"{rd.file(LATENTS_FILE)} is missing: run the encode stage first")
    z = rd.load_array(LATENTS_FILE)
    model = AEOT(ot=_ot_options(cfg), extension=_extension_options(cfg))
    _log(cfg, f"fit-ot: semi-discrete OT onto {len(z)} codes, then the extension's cell barycentres")
    model.fit_codes(z, _keys(cfg.seed)["ot"], rd.path, progress=None if cfg.progress else False)
    bmap = model.latent_map.bmap
    diag = bmap.diagnostics
    if not rd.has(OT_CHECK_FILE):
        import jax

        from otgen.ot.optim import chi2_noise_at
        from otgen.ot.problems import independent_error

        t0 = time.perf_counter()
        chk = independent_error(bmap, jax.random.fold_in(_keys(cfg.seed)["ot"], 1), OT_CHECK_SAMPLES)
        rd.write_json(OT_CHECK_FILE, {"ot_check_chi2": chk.chi2,
                                      "ot_check_noise_chi2": chi2_noise_at(0.0, bmap.num_targets, chk.num_samples),
                                      "ot_check_l1": chk.l1, "ot_check_noise_l1": chk.noise_l1,
                                      "ot_check_samples": chk.num_samples,
                                      "ot_check_seconds": time.perf_counter() - t0})
    chk = rd.read_json(OT_CHECK_FILE)
    _log(cfg, f"fit-ot: independent check on {chk['ot_check_samples']} fresh i.i.d. samples: chi2 "
              f"{chk['ot_check_chi2']:.4g} +- {chk['ot_check_noise_chi2']:.2g} (RMS relative cell-mass error "
              f"{np.sqrt(max(chk['ot_check_chi2'], 0)):.1%})")
    if diag.l1_error:
        verdict = diag.as_metrics()
        _log(cfg, f"fit-ot: {len(z)} codes, {diag.summary()}; estimated chi2 "
                  f"{verdict['ot_chi2']:.3g}, noise {verdict['ot_noise_chi2']:.2g} (of the {verdict['ot_returned']})"
                  + "".join(f"\n  note: {n}" for n in diag.notes))


def stage_generate_aeot(rd, cfg: MnistConfig) -> np.ndarray:
    """AE-OT's extended generation of new codes (the fitted :class:`AEOT`), decoded to digits."""
    from otgen.generators.aeot import AEOT
    from otgen.models.autoencoder import decode_batched

    if not rd.has(EXTENSION_FILE):
        raise ValueError(f"{rd.file(EXTENSION_FILE)} is missing: run the fit-ot stage first")
    model, params, _ = _load_ae_params(rd, cfg)
    # every stage of the fit is found in the run directory; only a rule other than the saved one is set up anew
    aeot = AEOT(ot=_ot_options(cfg), extension=_extension_options(cfg)).fit_codes(
        rd.load_array(LATENTS_FILE), _keys(cfg.seed)["ot"], rd.path, progress=None if cfg.progress else False)
    z, moved = aeot.sample_codes(_keys(cfg.seed)["generate"], cfg.n_samples, return_interpolated=True)
    rd.save_array(GEN_LATENTS_FILE, z)
    interpolated = float(np.mean(moved))
    info = {k: v for k, v in aeot.info().items() if k in ("rule", "angle_threshold", "top_k") or k.startswith("rule_")}
    rd.write_json(GENERATION_FILE, {"interpolated_fraction": interpolated, **info})
    _log(cfg, f"generate: {100 * interpolated:.1f}% of codes interpolated between neighbouring cells ({info})")
    return _to_uint8(decode_batched(model, params, z, 1000, progress=cfg.progress))


# ----------------------------------------------------------------------------------------------
# GAN baselines


def _gan(cfg: MnistConfig, evaluate=None):
    from otgen.generators import make

    return make(cfg.model, "images", shape=(28, 28, cfg.channels), steps=cfg.gan_steps, seed=cfg.seed,
                preset=cfg.gan_preset, progress=cfg.progress, evaluate=evaluate)


def gan_curve_point(cfg: MnistConfig, result) -> dict:
    """One learning-curve record of a GAN in training: the ``generate`` stage's draw (same key, same
    ``n_samples``) scored by :func:`otgen.eval.image_curve_point`; at the last step it is the run's
    own samples, so the curve ends on the evaluate stage's classes / KL / FID."""
    from otgen.eval import image_curve_point

    images = _to_uint8(result.sample(_keys(cfg.seed)["generate"], cfg.n_samples))
    return image_curve_point(cfg.dataset, images, data_dir=cfg.data_dir)


def stage_train_gan(rd, cfg: MnistConfig, train_u8: np.ndarray) -> float:
    """A GAN-family baseline (:mod:`otgen.generators.gan`), checkpointed in ``gan/`` and resumed from it,
    scored at log-spaced steps unless ``cfg.evaluate`` is off (:func:`gan_curve_point`; ``curves.json`` /
    ``curves.png``; the curve so far travels in the checkpoint); returns its training seconds summed over every call."""
    from otgen.data.mnist import to_unit_float
    from otgen.plotting import learning_curves

    gan = _gan(cfg, evaluate=(lambda result: gan_curve_point(cfg, result)) if cfg.evaluate else None)
    gan.fit(to_unit_float(train_u8), _keys(cfg.seed)["gan"], rd.file(GAN_DIR))
    if gan.curve:
        rd.write_json(CURVES_FILE, gan.curve)
        learning_curves(gan.curve, rd.file("curves.png"), title=f"{cfg.model} on {cfg.dataset}")
    _log(cfg, f"train-gan: {cfg.model} trained for {cfg.gan_steps} steps ({gan.info()['train_seconds']:.0f} s "
              "this call)" + (f"; last curve point {gan.curve[-1]}" if gan.curve else ""))
    return gan.result.total_seconds


def stage_generate_gan(rd, cfg: MnistConfig) -> np.ndarray:
    from otgen.generators.gan import GAN

    if not rd.has(STAGES_FILE) or "train-gan" not in rd.read_json(STAGES_FILE):
        raise ValueError(f"no finished GAN training in {rd.path}: run the train-gan stage first")
    gan = GAN.load(rd.file(GAN_DIR), _gan(cfg).config)
    return _to_uint8(gan.sample(_keys(cfg.seed)["generate"], cfg.n_samples))


# ----------------------------------------------------------------------------------------------
# latent flows


def _flow(cfg: MnistConfig):
    from otgen.generators import make

    return make(cfg.model, "images", shape=(cfg.ae.latent_dim,), steps=cfg.flow_steps, seed=cfg.seed,
                progress=cfg.progress)


COUPLING_FROM_FILE = "coupling_from.json"  # in flow/: whose semi-discrete map sdfm took, and its solve time


def adopt_coupling(rd, cfg: MnistConfig) -> float:
    """sdfm with ``--ae-from``: when that run (same autoencoder and codes) has solved OT from a Gaussian
    onto its whitened codes -- the very problem sdfm's coupling solves -- copy its map into ``flow/``
    instead of solving again: AE-OT and sdfm then share one map, and their rows differ only in what is
    built on it.  Returns the seconds of that solve (counted in sdfm's wall time), 0 if nothing taken."""
    from otgen.generators.aeot import WHITENING_FILE
    from otgen.ot import BrenierMap
    from otgen.rundir import RunDir

    marker, flow_map = f"{FLOW_DIR}/{COUPLING_FROM_FILE}", f"{FLOW_DIR}/{MAP_FILE}"

    def copy(src):  # the map last: Flow takes the pair once the map exists
        for name in (WHITENING_FILE, MAP_FILE):
            rd.copy_from(src.file(name), f"{FLOW_DIR}/{name}")

    if rd.has(marker):  # taken by an earlier call of this run (which may have died before the map's copy)
        taken = rd.read_json(marker)
        if not rd.has(flow_map):
            copy(RunDir(taken["from"]))
        return float(taken["ot_seconds"])
    if cfg.model != "sdfm" or cfg.ae_from is None or rd.has(flow_map):
        return 0.0
    src = RunDir(cfg.ae_from)
    theirs = src.read_json("config.json").get("config", {})
    if not (_stage_done(src, cfg, "fit-ot") and src.has(WHITENING_FILE) and theirs.get("ot_source") == "gaussian"
            and theirs.get("whiten")):
        _log(cfg, f"train-flow: {cfg.ae_from} has no Gaussian-source map of its codes; sdfm solves its own")
        return 0.0
    seconds = float(BrenierMap.load(src.file(MAP_FILE)).diagnostics.wall_time[-1])
    rd.file(FLOW_DIR).mkdir(parents=True, exist_ok=True)
    rd.write_json(marker, {"from": str(cfg.ae_from), "ot_seconds": seconds})
    copy(src)
    _log(cfg, f"train-flow: semi-discrete coupling taken from {cfg.ae_from} (its fit-ot map, solved in {seconds:.0f} s)")
    return seconds


def stage_train_flow(rd, cfg: MnistConfig) -> float:
    """A flow-matching model on the cached codes (:mod:`otgen.generators.flow`), checkpointed in
    ``flow/`` and resumed from it; returns its training seconds summed over every call (sdfm's OT
    solve included, or the solve of the map it took from ``--ae-from``: :func:`adopt_coupling`)."""
    if not rd.has(LATENTS_FILE):
        raise ValueError(f"{rd.file(LATENTS_FILE)} is missing: run the encode stage first")
    adopted = adopt_coupling(rd, cfg)
    flow = _flow(cfg).fit(rd.load_array(LATENTS_FILE), _keys(cfg.seed)["gan"], rd.file(FLOW_DIR))
    info = flow.info()
    # the flow's sampler and, for sdfm, its coupling's own verdict (converged or not, chi2, stop reason)
    rd.write_json(GENERATION_FILE, {k: v for k, v in info.items() if k in ("coupling", "ode_method", "ode_steps", "nfe")
                                    or k.startswith("ot_") and k != "ot_notes"})
    _log(cfg, f"train-flow: {cfg.model} trained for {info['steps']} steps ({info['train_seconds']:.0f} s)"
              + (f"; semi-discrete coupling: {flow.bmap.diagnostics.summary()}" if flow.bmap is not None else ""))
    return info["train_seconds"] + info.get("ot_seconds", 0.0) + adopted


def stage_generate_flow(rd, cfg: MnistConfig) -> np.ndarray:
    """Flow samples in code space (N(0, I) noise through the ODE), decoded."""
    from otgen.generators.flow import Flow
    from otgen.models.autoencoder import decode_batched

    if not rd.has(STAGES_FILE) or "train-flow" not in rd.read_json(STAGES_FILE):
        raise ValueError(f"no finished flow training in {rd.path}: run the train-flow stage first")
    model, params, _ = _load_ae_params(rd, cfg)
    flow = Flow.load(rd.file(FLOW_DIR), _flow(cfg).config)
    z = flow.sample(_keys(cfg.seed)["generate"], cfg.n_samples)
    rd.save_array(GEN_LATENTS_FILE, z.astype(np.float32))
    return _to_uint8(decode_batched(model, params, z, 1000, progress=cfg.progress))


# ----------------------------------------------------------------------------------------------
# driver


def _write_samples(rd, cfg: MnistConfig, samples_u8: np.ndarray) -> None:
    from otgen.plotting import image_grid

    rd.save_array(SAMPLES_FILE, samples_u8)
    image_grid(samples_u8[:100], rd.file("samples.png"), nrow=10)
    _log(cfg, f"generate: {len(samples_u8)} digits -> {SAMPLES_FILE}, samples.png")


def stage_evaluate(rd, cfg: MnistConfig) -> dict:
    samples = rd.load_array(SAMPLES_FILE)
    metrics: dict[str, Any] = {"model": cfg.model, "preset": cfg.preset, "dataset": cfg.dataset,
                               "n_samples": int(len(samples))}
    if rd.has("reconstruction.json"):
        metrics["reconstruction"] = rd.read_json("reconstruction.json")
    from otgen.eval import evaluate

    metrics.update(evaluate(cfg.dataset, samples, data_dir=cfg.data_dir))
    if rd.has(GENERATION_FILE):
        metrics.update(rd.read_json(GENERATION_FILE))
    if rd.has(GEN_LATENTS_FILE) and rd.has(LATENTS_FILE):
        metrics.update(_code_novelty(rd, cfg, rd.load_array(GEN_LATENTS_FILE)))
    if cfg.dataset in ("mnist", "fashion"):
        _nearest_neighbour_figure(rd, cfg, samples)
    if rd.has(MAP_FILE):  # the map's own verdict: converged or not, its error, every fallback taken
        from otgen.ot import BrenierMap

        metrics.update(BrenierMap.load(rd.file(MAP_FILE)).diagnostics.as_metrics())
    if rd.has(OT_CHECK_FILE):
        metrics.update(rd.read_json(OT_CHECK_FILE))
    if rd.has(STAGES_FILE):  # every stage, across resumed calls: the run's wall time
        metrics["stage_seconds"] = {k: v["seconds"] for k, v in rd.read_json(STAGES_FILE).items()}
        metrics["wall_seconds"] = float(sum(metrics["stage_seconds"].values()))
    rd.write_json(METRICS_FILE, metrics)
    summary = {k: metrics[k] for k in ("classes_covered", "modes_covered", "kl_uniform", "fid") if k in metrics}
    _log(cfg, f"evaluate: {summary}")
    return metrics


def _code_novelty(rd, cfg: MnistConfig, codes: np.ndarray) -> dict:
    """Novelty of ``codes`` in the autoencoder's code space: against the training codes, with the
    codes of the held-out test images (the first half of the test set) as reference."""
    from otgen.data.mnist import to_unit_float
    from otgen.eval.mnist import HELD_OUT, prefixed_novelty
    from otgen.models.autoencoder import encode_batched

    model, params, _ = _load_ae_params(rd, cfg)
    held = encode_batched(model, params, to_unit_float(_load_images(cfg, "test")[HELD_OUT]), 1000)
    return prefixed_novelty("code_", codes, _code_reference(rd.load_array(LATENTS_FILE), held))


_CODE_REFERENCES: dict[tuple[str, str], Any] = {}


def _code_reference(train_codes: np.ndarray, held_codes: np.ndarray):
    """The code-space :func:`~otgen.eval.novelty.novelty_reference`, kept for the process by content:
    a suite's AE-OT run, its latent flows and its replay control share one autoencoder's codes."""
    import hashlib

    from otgen.eval.novelty import novelty_reference

    key = tuple(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in (train_codes, held_codes))
    if key not in _CODE_REFERENCES:
        if len(_CODE_REFERENCES) >= 2:
            _CODE_REFERENCES.pop(next(iter(_CODE_REFERENCES)))
        _CODE_REFERENCES[key] = novelty_reference(train_codes, held_codes)
    return _CODE_REFERENCES[key]


def replay_reconstructions(cfg: MnistConfig, n: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """AE-OT's replay control: ``n`` training codes drawn with replacement from the run ``cfg.out``,
    decoded (i.e. reconstructions of training images), and the code-space novelty of those codes."""
    from otgen.models.autoencoder import decode_batched
    from otgen.rundir import RunDir

    rd = RunDir(cfg.out)
    codes = rd.load_array(LATENTS_FILE)
    codes = codes[np.random.default_rng(seed).integers(0, len(codes), n)]
    model, params, _ = _load_ae_params(rd, cfg)
    return _to_uint8(decode_batched(model, params, codes, 1000)), _code_novelty(rd, cfg, codes)


def _nearest_neighbour_figure(rd, cfg: MnistConfig, samples: np.ndarray, n: int = 12) -> None:
    """Generated digits (top row) over their nearest training digits in the classifier's features."""
    from otgen.data.mnist import load_mnist
    from otgen.eval.classifier import classify
    from otgen.eval.mnist import load_classifier_cached, train_features
    from otgen.plotting import nearest_neighbour_grid

    data_dir = None if cfg.data_dir is None else str(cfg.data_dir)
    params, _ = load_classifier_cached(data_dir, None, cfg.dataset)
    feats = classify(params, samples[:n])[1]
    train_f = train_features(data_dir, None, cfg.dataset)
    d2 = (feats ** 2).sum(1)[:, None] - 2 * feats @ train_f.T + (train_f ** 2).sum(1)[None]
    idx = np.argmin(d2, axis=1)
    dist = np.sqrt(np.maximum(d2[np.arange(len(idx)), idx], 0.0))
    train_images = load_mnist("train", cfg.data_dir, dataset=cfg.dataset)[0]
    nearest_neighbour_grid(samples[:n], train_images[idx], dist, rd.file(NEIGHBOURS_FIGURE),
                           title=f"{cfg.model}: generated (top) and nearest training digit in classifier features "
                                 "(bottom), with the feature distance")


def _stage_done(rd, cfg: MnistConfig, stage: str) -> bool:
    """Done = its artefact exists *and* stages.json records it: a crash between the two (the artefact
    is written first) redoes the stage rather than leave it without its time."""
    if stage == "evaluate":
        return rd.has(METRICS_FILE)
    marker = {"train-ae": AE_FILE, "encode": LATENTS_FILE, "fit-ot": EXTENSION_FILE, "generate": SAMPLES_FILE,
              "train-gan": None, "train-flow": None}[stage]
    recorded = rd.has(STAGES_FILE) and stage in rd.read_json(STAGES_FILE)
    return recorded and (marker is None or rd.has(marker))


def run(cfg: MnistConfig) -> dict:
    """Run (or resume) every requested stage; returns paths, per-stage seconds and metrics."""
    rd = _claim_run_dir(cfg)
    train_u8 = None
    ran, skipped = [], []
    for stage in cfg.stage_list():
        if not ran and _stage_done(rd, cfg, stage):  # once a stage has run, the ones after it are stale
            skipped.append(stage)
            _log(cfg, f"{stage}: already done, skipped")
            continue
        t0 = time.perf_counter()
        if stage in ("train-ae", "encode") and cfg.ae_from is not None:
            _record_stage(rd, stage, adopt_ae_stage(rd, cfg, stage), reused_from=str(cfg.ae_from))
            ran.append(stage)
            continue
        if stage in ("train-ae", "encode", "train-gan") and train_u8 is None:
            train_u8 = _load_train_images(cfg)
        seconds = None  # the training stages report their time summed over resumed calls
        if stage == "train-ae":
            seconds = stage_train_ae(rd, cfg, train_u8)
        elif stage == "encode":
            stage_encode(rd, cfg, train_u8)
        elif stage == "fit-ot":
            stage_fit_ot(rd, cfg)
        elif stage == "train-gan":
            seconds = stage_train_gan(rd, cfg, train_u8)
        elif stage == "train-flow":
            seconds = stage_train_flow(rd, cfg)
        elif stage == "generate":
            samples = (stage_generate_aeot(rd, cfg) if cfg.model == "aeot" else
                       stage_generate_flow(rd, cfg) if cfg.model in FLOWS else stage_generate_gan(rd, cfg))
            _write_samples(rd, cfg, samples)
        elif stage == "evaluate":
            if not rd.has(SAMPLES_FILE):
                raise ValueError(f"{rd.file(SAMPLES_FILE)} is missing: run the generate stage first")
        if stage != "evaluate":
            _record_stage(rd, stage, time.perf_counter() - t0 if seconds is None else seconds)
        else:
            stage_evaluate(rd, cfg)
        ran.append(stage)
    out = {"run_dir": str(rd.path), "ran": ran, "skipped": skipped,
           "samples": str(rd.file(SAMPLES_FILE)) if rd.has(SAMPLES_FILE) else None,
           "stage_seconds": ({k: v["seconds"] for k, v in rd.read_json(STAGES_FILE).items()}
                             if rd.has(STAGES_FILE) else {})}
    if rd.has(METRICS_FILE):
        out["metrics"] = rd.read_json(METRICS_FILE)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_arguments(parser, MnistConfig)
    parser.add_argument("--latent-dim", type=int, default=None,
                        help="the autoencoder's code dimension (default: the preset's, 16 quick / 100 paper; "
                             "32 quick on Stacked)")
    parser.add_argument("--ae-features", default=None, metavar="C1,C2",
                        help="the autoencoder's conv channels (default: the preset's, 16,32 quick / 64,128 paper)")
    parser.add_argument("--ae-hidden", type=int, default=None,
                        help="the autoencoder's dense width (default: the preset's, 256 quick / 1024 paper)")


def config_from_args(args: argparse.Namespace) -> MnistConfig:
    values = values_from_args(MnistConfig, args)
    features = None if args.ae_features is None else tuple(int(f) for f in args.ae_features.split(","))
    return make_config(values.pop("preset"), latent_dim=args.latent_dim, ae_features=features,
                       ae_hidden=args.ae_hidden, **values)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    result = run(cfg)
    if cfg.progress:
        print(f"[otgen mnist] finished in {time.perf_counter() - t0:.1f} s; run directory {result['run_dir']}")
    return 0
