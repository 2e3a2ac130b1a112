"""What an ``otgen mnist`` run depends on: :class:`MnistConfig`, the ``quick`` / ``paper`` presets (and
what they change on Stacked MNIST), :func:`make_config`, the config's translation into the AE-OT
generator's options, and the command-line arguments generated from its fields.

The stages that consume a config are :mod:`otgen.pipelines.mnist_aeot` (AE-OT),
:mod:`otgen.pipelines.mnist_baselines` (GANs and latent flows) and
:mod:`otgen.pipelines.mnist_evaluate`; :mod:`otgen.pipelines.mnist` runs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import numpy as np

from otgen.cliargs import add_arguments as _add_config_arguments
from otgen.cliargs import option, values_from_args
from otgen.data.stacked import N_SAMPLES as N_STACKED_SAMPLES
from otgen.generators.aeot import ExtensionOptions, OTOptions
from otgen.models.autoencoder import AEConfig

__all__ = ["MnistConfig", "PRESETS", "STACKED_PRESETS", "AEOT_STAGES", "GAN_STAGES", "FLOW_STAGES", "FLOWS",
           "MODELS", "DATASETS", "make_config", "ot_options", "extension_options", "add_arguments",
           "config_from_args"]

AEOT_STAGES = ("train-ae", "encode", "fit-ot", "tune-decoder", "generate", "evaluate")  # tune-decoder: AE-OT-GAN
GAN_STAGES = ("train-gan", "generate", "evaluate")
FLOW_STAGES = ("train-ae", "encode", "train-flow", "generate", "evaluate")
FLOWS = ("fm", "otcfm", "sdfm")


MODELS = ("aeot", "gan", "wgan", "wgan-gp", "pacgan2", "pacgan3", "pacgan4", "fm", "otcfm", "sdfm")  # the registry


@dataclasses.dataclass(frozen=True)
class MnistConfig:
    """Everything one image run depends on.  ``make_config(preset, ...)`` fills the preset values;
    every field with a help text is also an ``otgen mnist`` flag (default: the preset's)."""

    preset: str = option("quick", "quick: small AE and a 3,000-step decoder GAN (~30 min on one CPU core with the evaluation classifier cached); paper: AE-OT's autoencoder and generation, our OT solver",
                         choices=("quick", "paper"))
    model: str = option("aeot", "aeot, a GAN baseline, or a latent flow (fm, otcfm, sdfm)", choices=MODELS)
    dataset: str = option("mnist", "mnist (10 classes), fashion (Fashion-MNIST, 10 classes) or stacked (Stacked "
                          "MNIST: 3 digits as RGB, 1,000 modes)", choices=("mnist", "fashion", "stacked"))
    out: str | None = option(None, "run directory (default runs/<dataset>_<model>_<preset>)", preset_default=True)
    data_dir: str | None = option(None, "directory with the dataset's IDX files (else $OTGEN_DATA_DIR, else "
                                  "~/.cache/otgen/mnist; Fashion-MNIST: $OTGEN_FASHION_DIR, "
                                  "~/.cache/otgen/fashion-mnist)", preset_default=True)
    seed: int = option(0, "seed of initialisation, OT and sampling")
    stages: tuple[str, ...] | None = option(None, f"comma-separated subset of {','.join(AEOT_STAGES)} "
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
    decoder_gan_steps: int = option(0, "AE-OT-GAN: fine-tune the decoder against a discriminator on AE-OT's codes "
                                    "for N steps (the tune-decoder stage, otgen.training.decoder_gan; 0: off)",
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
    # Fields added after run directories existed, with the value an older run had (it did not have the stage).
    LATER_FIELDS = {"decoder_gan_steps": 0}
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
        if self.decoder_gan_steps < 0:
            raise ValueError(f"decoder_gan_steps must be >= 0 (0: off), got {self.decoder_gan_steps}")
        for name in ("ae_epochs", "ae_batch", "ot_steps", "ot_batch", "top_k", "gan_steps", "flow_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        try:  # the ot_* fields are otgen.generators.aeot.OTOptions: one place checks them
            ot_options(self)
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
        return tuple(s for s in chosen if (s != "evaluate" or self.evaluate)
                     and (s != "tune-decoder" or self.decoder_gan_steps))

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
                  top_k=20, angle_threshold=0.35, gan_steps=600, flow_steps=10_000,
                  # AE-OT-GAN's decoder: 3,000 steps (~10 min of one core) took the held-out reconstructions'
                  # FID from 9.68 to 3.14 on MNIST and 36 to 7.4 on Fashion-MNIST (docs/generation.md)
                  decoder_gan_steps=3000),
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
                  top_k=20, angle_threshold=0.35, gan_steps=200_000, decoder_gan_steps=0),  # not measured here
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
                  ot_time_budget=300.0, gan_steps=2000, decoder_gan_steps=0),  # the decoder GAN: not measured here
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


def ot_options(cfg: MnistConfig) -> OTOptions:
    """The ``ot_*`` fields as the AE-OT generator's :class:`~otgen.generators.aeot.OTOptions` (which checks them)."""
    return OTOptions(source=cfg.ot_source, whiten=cfg.whiten, optimizer=cfg.ot_optimizer, tol=cfg.ot_tol,
                     max_steps=cfg.ot_steps, batch_size=cfg.ot_batch, lr=cfg.ot_lr, init_h=cfg.ot_init,
                     sampling=cfg.ot_sampling, time_budget=cfg.ot_time_budget)


def extension_options(cfg: MnistConfig) -> ExtensionOptions:
    """The extension's fields (rule, angle threshold, top-k) as :class:`~otgen.generators.aeot.ExtensionOptions`."""
    return ExtensionOptions(rule=cfg.rule, angle_threshold=cfg.angle_threshold, top_k=cfg.top_k)


# ----------------------------------------------------------------------------------------------
# command line


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
