"""``otgen toy``: train AE-OT or a GAN baseline on a 2-D toy (or a user ``.npy``) and score it.

    otgen toy --dist ring8 --model aeot --out runs/ring8
    otgen toy --dist grid25 --model pacgan4 --steps 10000 --out runs/grid25_pacgan4
    otgen toy --data points.npy --model aeot --out runs/mine

Every model is trained on the same ``--n-train`` points drawn from the toy with
the run's seed.  The run directory receives ``config.json`` (every
hyperparameter, the seed, package versions), ``data.npy`` (the training set),
``samples.npy`` (``--n-samples`` generated points), ``samples.png`` (samples over
the data), ``metrics.json`` (mode coverage for the built-in toys) and the
model's own state: ``brenier.npz`` for AE-OT, ``checkpoint.npz`` + ``loss.png``
for the GANs (``--resume`` continues a GAN from its checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from functools import partial
from pathlib import Path

import numpy as np

__all__ = ["ToyRunConfig", "MODELS", "run", "add_arguments", "main"]

MODELS = ("aeot", "gan", "wgan", "wgan-gp", "pacgan2", "pacgan3", "pacgan4")
PRESETS = ("default", "published")
# Training points drawn from a built-in toy per preset: PacGAN's code trains on 100,000
# (``num_sample``); gan_toy.py's 25gaussians also holds 100,000 (its 8gaussians draws fresh
# batches -- a fixed 100,000-point set stands in for it).
TOY_TRAIN_SIZE = {"default": 2000, "published": 100_000}
CURVE_FIELDS = ("modes_captured", "high_quality_fraction", "reverse_kl")


@dataclasses.dataclass(frozen=True)
class ToyRunConfig:
    """One toy run.  ``steps``: generator updates for a GAN, maximum OT steps for AE-OT (None: defaults)."""

    model: str = "aeot"
    dist: str | None = None  # a built-in toy (otgen.data.toys.names()); ring8 when neither dist nor data is given
    data: str | None = None  # path of a user .npy (n, d) array, used instead of ``dist``
    out: str = "runs/toy"
    seed: int = 0
    preset: str = "default"  # GAN budget and setting: TOY_PRESETS in otgen.train, TOY_TRAIN_SIZE here
    n_train: int | None = None  # None: TOY_TRAIN_SIZE[preset]
    n_samples: int = 2500  # PacGAN / VEEGAN evaluate 2,500 samples
    steps: int | None = None
    resume: bool = False
    progress: bool = True
    # AE-OT
    angle_threshold: float | None = None  # None: otgen.ot.extension.DEFAULT_ANGLE_THRESHOLD
    top_k: int | None = None
    ot_tol: float = 0.02

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.dist is not None and self.data is not None:
            raise ValueError("give a toy distribution (--dist) or a data file (--data), not both")
        if self.dist is None and self.data is None:
            object.__setattr__(self, "dist", "ring8")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.n_train is None:
            object.__setattr__(self, "n_train", TOY_TRAIN_SIZE[self.preset])
        if self.n_train < 2 or self.n_samples < 1:
            raise ValueError(f"need n_train >= 2 and n_samples >= 1, got {self.n_train}, {self.n_samples}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def _keys(seed: int) -> dict:
    import jax

    names = ("data", "fit", "sample")
    return dict(zip(names, jax.random.split(jax.random.key(seed), len(names))))


def held_out_set(toy, seed: int, n: int, stream: int = 1) -> np.ndarray | None:
    """``n`` fresh draws of the toy from a key no training step uses; None for user data (no toy).

    ``stream`` 1 is the held-out set every run is scored against; ``otgen compare``'s
    *real* control row draws stream 2.
    """
    import jax

    if toy is None:
        return None
    return toy.sample(jax.random.fold_in(jax.random.key(seed), stream), n)


def _training_data(cfg: ToyRunConfig, key):
    """(toy or None, training points (n, d) float32)."""
    from otgen.data import toys

    if cfg.data is not None:
        return None, toys.load_npy(cfg.data)
    toy = toys.get(cfg.dist)
    return toy, toy.sample(key, cfg.n_train)


def _aeot(cfg: ToyRunConfig, data: np.ndarray, keys: dict, rd) -> tuple[np.ndarray, dict, dict]:
    from otgen.aeot import AEOT, ExtensionOptions, OTOptions
    from otgen.ot.extension import DEFAULT_ANGLE_THRESHOLD

    ot = OTOptions(tol=cfg.ot_tol, **({"max_steps": cfg.steps} if cfg.steps else {}))
    ext = ExtensionOptions(angle_threshold=DEFAULT_ANGLE_THRESHOLD if cfg.angle_threshold is None
                           else cfg.angle_threshold, top_k=cfg.top_k)
    t0 = time.perf_counter()
    model = AEOT(ot=ot, extension=ext).fit(data, keys["fit"], progress=cfg.progress)
    train_seconds = time.perf_counter() - t0
    model.latent_map.bmap.save(rd.file("brenier.npz"))
    codes, interpolated = model.sample_codes(keys["sample"], cfg.n_samples, return_interpolated=True)
    samples = model.decoder(codes)
    diag = model.latent_map.bmap.diagnostics
    info = {"train_seconds": train_seconds, **diag.as_metrics(), "ot_summary": diag.summary(),
            "interpolated_fraction": float(np.mean(interpolated)),
            "top_k": model.latent_map.top_k, "angle_threshold": model.latent_map.angle_threshold}
    return samples, info, {"ot": dataclasses.asdict(ot), "extension": dataclasses.asdict(ext)}


def _gan(cfg: ToyRunConfig, data: np.ndarray, keys: dict, rd, toy=None) -> tuple[np.ndarray, dict, dict]:
    from otgen.train import GANConfig, curve_steps, train_gan

    gcfg = GANConfig.for_toy(cfg.model, steps=cfg.steps, seed=cfg.seed, dim=data.shape[1], preset=cfg.preset)
    evaluate = None
    if toy is not None:  # learning curve: the run's own metrics at log-spaced steps
        from otgen.eval.modes import mode_coverage_for_toy

        def evaluate(result):
            scores = mode_coverage_for_toy(result.sample(keys["sample"], cfg.n_samples), toy)
            return {k: scores[k] for k in CURVE_FIELDS}

    # checkpoints every ~1-2 minutes at the published budgets' speeds
    result = train_gan(gcfg, data, rd.path, resume=cfg.resume, progress=cfg.progress,
                       checkpoint_every=min(10_000, max(1000, gcfg.steps // 10)), evaluate=evaluate,
                       eval_steps=curve_steps(gcfg.steps))
    samples = result.sample(keys["sample"], cfg.n_samples)
    if result.curve:
        from otgen.plotting import learning_curves

        rd.write_json("curves.json", list(result.curve))
        learning_curves(list(result.curve), rd.file("curves.png"), title=f"{cfg.model} on {cfg.dist}")
    return samples, {"train_seconds": result.train_seconds, "steps": gcfg.steps}, {"gan": dataclasses.asdict(gcfg)}


def run(cfg: ToyRunConfig) -> dict:
    """Train, sample, score; write the run directory; return the metrics."""
    from otgen.eval.toy import evaluate_toy
    from otgen.plotting import scatter_over_data
    from otgen.rundir import RunDir

    rd = RunDir(cfg.out)
    keys = _keys(cfg.seed)
    toy, data = _training_data(cfg, keys["data"])
    rd.save_array("data.npy", data)
    train = _aeot if cfg.model == "aeot" else partial(_gan, toy=toy)
    # config.json first: a crashed run still says what it was.
    rd.write_config({"run": dataclasses.asdict(cfg), "n_train_used": int(data.shape[0])}, seed=cfg.seed)
    t0 = time.perf_counter()
    samples, info, model_config = train(cfg, data, keys, rd)
    samples = np.asarray(samples, np.float32)
    rd.write_config({"run": dataclasses.asdict(cfg), "n_train_used": int(data.shape[0]), **model_config},
                    seed=cfg.seed)
    rd.save_array("samples.npy", samples)
    metrics = {"model": cfg.model, "dist": cfg.dist or Path(cfg.data).name, "seed": cfg.seed,
               "wall_seconds": time.perf_counter() - t0, **info,
               **evaluate_toy(samples, toy, data, held_out_set(toy, cfg.seed, cfg.n_samples), seed=cfg.seed)}
    if samples.shape[1] == 2:
        title = f"{cfg.model} on {metrics['dist']}"
        if "modes_captured" in metrics:
            title += (f": {metrics['modes_captured']}/{metrics['n_modes']} modes, "
                      f"{100 * metrics['high_quality_fraction']:.1f}% HQ")
        scatter_over_data(samples, data, rd.file("samples.png"), title=title)
    rd.write_json("metrics.json", metrics)  # last: its presence marks the run as finished
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from otgen.data import toys

    src = parser.add_mutually_exclusive_group()
    src.add_argument("--dist", choices=toys.names(), default=None,
                     help="built-in toy distribution (default ring8 when --data is not given)")
    src.add_argument("--data", default=None, metavar="FILE.npy", help="user data: a .npy array of shape (n, d)")
    parser.add_argument("--model", choices=MODELS, default="aeot", help="generator to train (default aeot)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data draw, training and sampling")
    parser.add_argument("--preset", choices=PRESETS, default="default",
                        help="default: PacGAN's nets for every GAN, 10,000 steps, 2,000 training points; "
                             "published: each GAN in its authors' toy setting and budget (400,000 steps "
                             "for GAN/PacGAN, gan_toy.py's 100,000 for the WGANs), 100,000 training points")
    parser.add_argument("--n-train", type=int, default=None,
                        help="training points drawn from the toy (default: 2000, or 100000 with --preset published)")
    parser.add_argument("--n-samples", type=int, default=2500, help="points to generate and score (2500)")
    parser.add_argument("--steps", type=int, default=None,
                        help="GANs: generator updates (default: the preset's); AE-OT: max OT solver steps (default 30)")
    parser.add_argument("--resume", action="store_true", help="GANs: continue from the run's checkpoint.npz")
    parser.add_argument("--angle-threshold", type=float, default=None,
                        help="AE-OT: dihedral-angle threshold in radians on standardised codes (default 0.1)")
    parser.add_argument("--top-k", type=int, default=None, help="AE-OT: neighbour candidates incl. the own cell (default min(d + 1, 20))")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    cfg = ToyRunConfig(model=args.model, dist=args.dist, data=args.data, out=args.out, seed=args.seed,
                       preset=args.preset, n_train=args.n_train, n_samples=args.n_samples, steps=args.steps, resume=args.resume,
                       progress=not args.no_progress, angle_threshold=args.angle_threshold, top_k=args.top_k)
    metrics = run(cfg)
    summary = [f"{cfg.model} on {metrics['dist']}: {metrics['wall_seconds']:.1f} s"]
    if "modes_captured" in metrics:
        summary.append(f"modes {metrics['modes_captured']}/{metrics['n_modes']}, "
                       f"{100 * metrics['high_quality_fraction']:.1f}% high quality, KL {metrics['reverse_kl']:.3f}")
    novelty = f"{100 * metrics['copy_fraction']:.1f}% copies of training points"
    if "data_copying_ct" in metrics:
        novelty += (f", data-copying C_T {metrics['data_copying_ct']:.1f} (fresh data ~0, a replay << 0), "
                    f"W2 to fresh data {metrics['w2']:.3f}")
    summary.append(novelty)
    if "ot_converged" in metrics:
        verdict = (f"yes (L1 {metrics['ot_l1_error']:.4f} <= tol {metrics['ot_tol']:g})" if metrics["ot_converged"]
                   else f"no (L1 {metrics['ot_l1_error']:.4f} > tol {metrics['ot_tol']:g}, "
                        f"stopped by {metrics['ot_stop_reason']})")
        summary.append(f"{100 * metrics['interpolated_fraction']:.1f}% interpolated; OT converged: {verdict}")
    print("; ".join(summary) + f"\nwrote {cfg.out}/ (samples.npy, samples.png, metrics.json, config.json)")
    return 0
