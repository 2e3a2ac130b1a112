"""``otgen toy``: train any generator on a 2-D toy (or a user ``.npy``) and score it.

    otgen toy --dist ring8 --model aeot --out runs/ring8
    otgen toy --dist grid25 --model pacgan4 --steps 10000 --out runs/grid25_pacgan4
    otgen toy --data points.npy --model aeot --out runs/mine

Every model is trained on the same ``--n-train`` points drawn from the toy with
the run's seed (:func:`otgen.data.load`), through the generator interface
(:func:`otgen.generators.make`).  The run directory receives ``config.json``
(every hyperparameter, the seed, package versions), ``data.npy`` (the training
set), ``samples.npy``, ``samples.png`` (samples over the data), ``metrics.json``
and the model's own state (AE-OT: ``whitening.npz``, ``brenier.npz``,
``extension.npz``; GANs: ``checkpoint.npz``, ``loss.png``, ``curves.json/png``).

Running the same command again resumes (a GAN continues from its checkpoint,
AE-OT reloads its solved map); a run directory holding another configuration is
refused, naming what differs, unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import time
from pathlib import Path

import jax
import numpy as np
from scipy.spatial import cKDTree

from otgen.cliargs import add_arguments as _add_config_arguments
from otgen.cliargs import from_args, option
from otgen.data import TOY_SPLITS, draw_toy, toys
from otgen.eval import evaluate
from otgen.eval.modes import mode_coverage_for_toy
from otgen.generators import make
from otgen.generators.gan import GAN
from otgen.ot.exact import standard_frame, why_not_exact
from otgen.ot.laguerre import laguerre_cells
from otgen.plotting import learning_curves, power_diagram, scatter_over_data
from otgen.rundir import RunDir, claim_run_dir

__all__ = ["ToyRunConfig", "MODELS", "run", "checkpoint_samples", "rescore", "add_arguments", "main", "held_out_set"]

MODELS = ("aeot", "gan", "wgan", "wgan-gp", "pacgan2", "pacgan3", "pacgan4", "fm", "otcfm", "sdfm")
FLOWS = ("fm", "otcfm", "sdfm")
PRESETS = ("default", "published")
# Training points drawn from a built-in toy per preset: PacGAN's code trains on 100,000
# (``num_sample``); gan_toy.py's 25gaussians also holds 100,000 (its 8gaussians draws fresh
# batches -- a fixed 100,000-point set stands in for it).
TOY_TRAIN_SIZE = {"default": 2000, "published": 100_000}
CURVE_FIELDS = ("modes_captured", "high_quality_fraction", "reverse_kl", "between_modes_fraction")
ODE_SWEEP = (1, 2, 4, 8, 16, 32, 64)  # a flow's samples are re-scored at these ODE step counts
# Fields that may change between calls on one run directory.
RUNTIME_FIELDS = ("out", "progress", "overwrite")
# In 2-D the spacing rule's noise (fresh data's distances) costs 1.6-3.8 points of HQ and widens the bridge
# mass (docs/generation.md, toy_rules.md): the toys keep the paper's angle rule by default.
TOY_RULE = "angle"
AEOT_ONLY_FIELDS = ("rule", "angle_threshold", "top_k", "ot_tol")  # refused for other models
FLOW_ONLY_FIELDS = ("ode_steps",)


def _toy_names() -> tuple[str, ...]:
    return toys.names()


@dataclasses.dataclass(frozen=True)
class ToyRunConfig:
    """One toy run; every field with a help text is also an ``otgen toy`` flag."""

    model: str = option("aeot", "generator to train", choices=MODELS)
    dist: str | None = option(None, "built-in toy distribution (ring8 when --data is not given)",
                              choices=_toy_names())
    data: str | None = option(None, "user data: a .npy array of shape (n, d), instead of --dist",
                              metavar="FILE.npy")
    out: str = option("runs/toy", "run directory to write", metavar="RUN_DIR", required=True)
    seed: int = option(0, "seed of the data draw, training and sampling")
    preset: str = option("default", "default: PacGAN's nets for every GAN, 10,000 steps, 2,000 training "
                         "points; published: each GAN in its authors' toy setting and budget (400,000 steps "
                         "for GAN/PacGAN, gan_toy.py's 100,000 for the WGANs), 100,000 training points",
                         choices=PRESETS)
    n_train: int | None = option(None, "training points drawn from the toy (2000, or 100000 with "
                                 "--preset published)", preset_default=True)
    n_samples: int = option(2500, "points to generate and score (PacGAN / VEEGAN evaluate 2,500)")
    steps: int | None = option(None, "GANs: generator updates; flows: training steps (20000); AE-OT: maximum "
                               "OT solver steps (30)", preset_default=True)
    overwrite: bool = option(False, "replace a run directory that holds another configuration")
    progress: bool = option(True, "no progress bars")
    # AE-OT
    rule: str | None = option(None, "AE-OT: which neighbouring cells to interpolate with: angle (the paper's "
                              "dihedral angle; the toys' default: docs/generation.md) or spacing (the codes' own "
                              "resolution)",
                              choices=("spacing", "angle"), preset_default=True)
    angle_threshold: float | None = option(None, "AE-OT, angle rule: dihedral-angle threshold in radians on "
                                           "standardised codes (0.1)", preset_default=True)
    top_k: int | None = option(None, "AE-OT: neighbour candidates incl. the own cell (min(d + 2, 20))",
                               preset_default=True)
    ot_tol: float | None = option(None, "AE-OT: stop the OT solver at estimated L1 error <= tol (0.02)",
                                  preset_default=True)
    # flows
    ode_steps: int | None = option(None, "flows (fm, otcfm, sdfm): RK4 steps of the sampling ODE (16; NFE = 4x)",
                                   preset_default=True)

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
        aeot_only = [f"--{k.replace('_', '-')}" for k in AEOT_ONLY_FIELDS if getattr(self, k) is not None]
        if self.model != "aeot" and aeot_only:
            raise ValueError(f"{', '.join(aeot_only)} set(s) AE-OT only, not {self.model}")
        if self.model not in FLOWS and self.ode_steps is not None:
            raise ValueError(f"--ode-steps sets the flows' ODE only, not {self.model}")
        if self.ode_steps is not None and self.ode_steps < 1:
            raise ValueError(f"ode_steps must be >= 1, got {self.ode_steps}")

    def identity(self) -> dict:
        """The fields that define the run's results (compared when a run directory is reused).
        A GAN's or flow's step budget may grow: its checkpoint continues; other models' options
        do not concern it (runs written when ``ot_tol`` defaulted to 0.02 resume)."""
        d = dataclasses.asdict(self)
        drop = RUNTIME_FIELDS
        if self.model != "aeot":
            drop += ("steps",) + AEOT_ONLY_FIELDS
        if self.model not in FLOWS:
            drop += FLOW_ONLY_FIELDS
        for k in drop:
            d.pop(k)
        return d


def _keys(seed: int) -> dict:
    names = ("data", "fit", "sample")  # "data" is otgen.data.load's "train" key
    return dict(zip(names, jax.random.split(jax.random.key(seed), len(names))))


def held_out_set(toy, seed: int, n: int, stream: int = 1) -> np.ndarray | None:
    """``n`` fresh draws of ``toy`` from a key no training step uses; None for user data (no toy).

    ``stream`` 1 is the held-out set every run is scored against; ``otgen compare``'s
    *real* control row draws stream 2 (:data:`otgen.data.TOY_SPLITS`).
    """
    return None if toy is None else draw_toy(toy, TOY_SPLITS[stream], n, seed)


def _training_data(cfg: ToyRunConfig):
    """(toy or None, training points (n, d) float32)."""
    if cfg.data is not None:
        return None, toys.load_npy(cfg.data)
    toy = toys.get(cfg.dist)
    return toy, draw_toy(toy, "train", cfg.n_train, cfg.seed)


def _scores(cfg: ToyRunConfig, toy, data: np.ndarray, samples: np.ndarray) -> dict:
    """Every metric of the toy suite for ``samples`` (one call, shared by :func:`run` and :func:`rescore`)."""
    return evaluate("toy", samples, toy=toy, train=data, held_out=held_out_set(toy, cfg.seed, cfg.n_samples),
                    seed=cfg.seed)


def _plot_samples(cfg: ToyRunConfig, rd, samples: np.ndarray, data: np.ndarray, metrics: dict) -> None:
    if samples.shape[1] != 2:
        return
    title = f"{cfg.model} on {metrics['dist']}"
    if "modes_captured" in metrics:
        title += (f": {metrics['modes_captured']}/{metrics['n_modes']} modes, "
                  f"{100 * metrics['high_quality_fraction']:.1f}% HQ")
    scatter_over_data(samples, data, rd.file("samples.png"), title=title)


def _mode_labels(toy, points: np.ndarray) -> np.ndarray:
    """The toy mode (Gaussian component, or curve piece) nearest each point; 0 for user data."""
    if toy is None:
        return np.zeros(len(points), int)
    ref, lab = (toy.centres, np.arange(len(toy.centres))) if toy.centres is not None else (toy.curve, toy.component)
    return lab[cKDTree(ref).query(points)[1]]


def _plot_power_diagram(rd, gen, toy, data: np.ndarray, samples: np.ndarray, title: str) -> bool:
    """``power_diagram.png``: the exact cells in the source domain, coloured by the mode each maps to,
    the extension's singular facets in black, beside the samples (2-D box or Gaussian sources only)."""
    ext = gen.latent_map
    bmap = ext.bmap
    if why_not_exact(bmap.source, bmap.targets) is not None:
        return False
    density, y_std, offset = standard_frame(bmap.source, bmap.targets)
    h_std = np.asarray(bmap.h, np.float64) + offset
    cells = laguerre_cells(y_std, h_std, density)
    labels = _mode_labels(toy, gen.whitening.invert(np.asarray(bmap.targets)))
    lo, hi = (0.0, 1.0) if density == "uniform" else (-3.0, 3.0)  # the standard frame's window
    g = (np.arange(500) + 0.5) / 500 * (hi - lo) + lo
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    cell = np.concatenate([np.argmax(c @ y_std.T + h_std, axis=1) for c in np.array_split(grid, 50)])
    power_diagram(cells, labels, ~ext.admissible(cells.facet_i, cells.facet_j), labels[cell].reshape(500, 500),
                  (lo, hi, lo, hi), samples, data, rd.file("power_diagram.png"), title=title)
    return True


def run(cfg: ToyRunConfig) -> dict:
    """Train, sample, score; write the run directory; return the metrics."""
    toy, data = _training_data(cfg)  # bad data fails here, before any directory is made
    rd = claim_run_dir(cfg.out, cfg.identity(), lambda doc: doc.get("config", {}).get("run", {}), cfg.overwrite)
    keys = _keys(cfg.seed)
    rd.save_array("data.npy", data)
    n_distinct = int(len(np.unique(data, axis=0)))
    base = {"run": dataclasses.asdict(cfg), "n_train_used": int(data.shape[0]), "n_distinct_train": n_distinct}
    rd.write_config(base, seed=cfg.seed)  # first: a crashed run still says what it was

    curve_record = None
    if toy is not None:  # a GAN's learning curve: the run's own metrics at log-spaced steps
        def curve_record(result):
            scores = mode_coverage_for_toy(result.sample(keys["sample"], cfg.n_samples), toy)
            record = {k: scores[k] for k in CURVE_FIELDS}
            # a GAN's sampling protocol travels with each point: a resumed run may have changed it
            refresh = getattr(result.config, "eval_bn_refresh", None)
            return record if refresh is None else {**record, "eval_bn_refresh": refresh}

    own = ({"ode_steps": cfg.ode_steps} if cfg.model in FLOWS else
           {"ot_tol": cfg.ot_tol, "rule": cfg.rule or (TOY_RULE if cfg.model == "aeot" else None), "angle_threshold": cfg.angle_threshold, "top_k": cfg.top_k})
    gen = make(cfg.model, "toy", shape=data.shape[1:], preset=cfg.preset, steps=cfg.steps, seed=cfg.seed,
               progress=cfg.progress, evaluate=curve_record, **own)
    t0 = time.perf_counter()
    gen.fit(data, keys["fit"], rd.path)
    train_seconds = time.perf_counter() - t0
    info = {"train_seconds": train_seconds, **gen.info()}
    if cfg.model == "aeot":
        samples, interpolated = gen.sample_codes(keys["sample"], cfg.n_samples, return_interpolated=True)
        info["interpolated_fraction"] = float(np.mean(interpolated))
        rd.write_config({**base, "ot": dataclasses.asdict(gen.ot), "extension": dataclasses.asdict(gen.extension)},
                        seed=cfg.seed)
    else:
        samples = gen.sample(keys["sample"], cfg.n_samples)
        rd.write_config({**base, "flow" if cfg.model in FLOWS else "gan": dataclasses.asdict(gen.config)},
                        seed=cfg.seed)
        if cfg.model in FLOWS and toy is not None:  # the bridge against the ODE's resolution
            info["ode_sweep"] = ode_sweep(gen, toy, keys["sample"], cfg.n_samples)
        if gen.curve:
            rd.write_json("curves.json", gen.curve)
            learning_curves(gen.curve, rd.file("curves.png"), title=f"{cfg.model} on {cfg.dist}")
    samples = np.asarray(samples, np.float32)
    rd.save_array("samples.npy", samples)
    metrics = {"model": cfg.model, "dist": cfg.dist or Path(cfg.data).name, "seed": cfg.seed,
               "wall_seconds": time.perf_counter() - t0, "n_train_used": int(data.shape[0]),
               "n_distinct_train": n_distinct, **info, **_scores(cfg, toy, data, samples)}
    _plot_samples(cfg, rd, samples, data, metrics)
    if cfg.model == "aeot" and data.shape[1] == 2:
        metrics["power_diagram_png"] = _plot_power_diagram(rd, gen, toy, data, samples,
                                                           f"aeot on {metrics['dist']} ({gen.extension.rule} rule)")
    rd.write_json("metrics.json", metrics)  # last: its presence marks the run as finished
    return metrics


def _gan_config(cfg: ToyRunConfig):
    """The GANConfig a GAN-family toy run trains with (from its preset, as :func:`run` builds it)."""
    dim = 2 if cfg.data is None else int(np.load(cfg.data, mmap_mode="r").shape[1])
    return make(cfg.model, "toy", shape=(dim,), preset=cfg.preset, steps=cfg.steps, seed=cfg.seed).config


def checkpoint_samples(cfg: ToyRunConfig) -> tuple[np.ndarray, int]:
    """A GAN run's samples at its latest checkpoint, drawn as :func:`run` draws them (same key, same count),
    so a job still training can be looked at -- and scored -- as its learning curve is; and the step reached.

    Refused (``ValueError`` / ``CheckpointError``) for a model without a checkpoint or one written by another
    configuration.
    """
    if cfg.model in FLOWS or cfg.model == "aeot":
        raise ValueError(f"{cfg.model} keeps no training checkpoint to sample (only the GAN family does)")
    gan = GAN.load(cfg.out, _gan_config(cfg))
    return np.asarray(gan.sample(_keys(cfg.seed)["sample"], cfg.n_samples), np.float32), int(gan.result.state.step)


def rescore(out) -> dict | None:
    """Re-sample and re-score a finished GAN run whose generator was sampled under another protocol than its
    preset's now (``GANConfig.eval_bn_refresh``); returns the new metrics, or None if the run is current.

    The checkpoint's generator is sampled with the run's own key and count, as :func:`run` samples it; the
    metrics, ``samples.npy`` / ``samples.png`` and the ``gan`` block of ``config.json`` are replaced, and the
    old scores kept under ``metrics["rescored"]["previous"]``.  Training state and curves are not touched
    (the curve's points keep the protocol they were scored under).  Refused for a run that is not finished
    or has no checkpoint.
    """
    rd = RunDir(out)
    if not rd.has("metrics.json") or not rd.has("config.json"):
        raise ValueError(f"{rd.path} holds no finished run (metrics.json / config.json missing)")
    doc = rd.read_json("config.json")
    known = {f.name for f in dataclasses.fields(ToyRunConfig)}  # fields of older versions dropped
    stored = {k: v for k, v in doc["config"]["run"].items() if k in known}
    stored.update({k: None for k in AEOT_ONLY_FIELDS + FLOW_ONLY_FIELDS})  # older runs stored AE-OT defaults
    cfg = ToyRunConfig(**{**stored, "out": str(rd.path), "progress": False})
    if cfg.model in FLOWS or cfg.model == "aeot":
        raise ValueError(f"{cfg.model} has no GAN sampling protocol to re-score under")
    now = _gan_config(cfg)
    gan_doc = dataclasses.asdict(dataclasses.replace(now, steps=doc["config"]["gan"]["steps"]))
    updated_doc = {**doc, "config": {**doc["config"], "gan": gan_doc}}
    old = rd.read_json("metrics.json")
    then = old.get("eval_bn_refresh", 0)  # runs finished before the field sampled without a refresh
    if then == now.eval_bn_refresh:
        if doc["config"]["gan"].get("eval_bn_refresh", 0) != now.eval_bn_refresh:  # a rescore cut off
            rd.write_json("config.json", updated_doc)
        return None
    samples, step = checkpoint_samples(cfg)
    if step != old.get("steps"):
        raise ValueError(f"{rd.path}: checkpoint at step {step}, metrics at step {old.get('steps')}")
    toy, data = _training_data(cfg)
    scores = _scores(cfg, toy, data, samples)
    previous = {k: old[k] for k in scores if k in old}
    metrics = {**old, **scores, "eval_bn_refresh": now.eval_bn_refresh, "rescored": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "previous_eval_bn_refresh": then, "previous": previous}}
    rd.save_array("samples.npy", samples)
    _plot_samples(cfg, rd, samples, data, metrics)
    rd.write_json("metrics.json", metrics)  # first: it names the protocol its scores were taken under
    rd.write_json("config.json", updated_doc)
    return metrics


def ode_sweep(flow, toy, key, n: int) -> list[dict]:
    """A flow's mode coverage and between-modes fraction at each ODE step count of :data:`ODE_SWEEP`
    (same noise for every count)."""
    rows = []
    for steps in ODE_SWEEP:
        scores = mode_coverage_for_toy(flow.sample(key, n, ode_steps=steps), toy)
        rows.append({"ode_steps": steps, "nfe": steps * flow.config.nfe // flow.config.ode_steps,
                     **{k: scores[k] for k in CURVE_FIELDS}})
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_arguments(parser, ToyRunConfig)


def summary(cfg: ToyRunConfig, metrics: dict) -> str:
    """The lines ``otgen toy`` prints after a run."""
    lines = [f"{cfg.model} on {metrics['dist']}: {metrics['wall_seconds']:.1f} s"]
    if "modes_captured" in metrics:
        lines.append(f"modes {metrics['modes_captured']}/{metrics['n_modes']}, "
                     f"{100 * metrics['high_quality_fraction']:.1f}% high quality, KL {metrics['reverse_kl']:.3f}")
    novelty = f"{100 * metrics['copy_fraction']:.1f}% copies of training points"
    if "data_copying_ct" in metrics:
        novelty += (f", data-copying C_T {metrics['data_copying_ct']:.1f} (fresh data ~0, a replay << 0), "
                    f"W2 to fresh data {metrics['w2']:.3f}")
    lines.append(novelty)
    if "nfe" in metrics:
        lines.append(f"{100 * metrics['between_modes_fraction']:.1f}% between modes at {metrics['nfe']} velocity "
                     f"evaluations ({metrics['ode_method']}, {metrics['ode_steps']} steps)")
    if "ot_converged" in metrics and cfg.model == "aeot":
        exact = " (exact 2-D path)" if metrics.get("ot_optimizer") == "exact-newton" else ""
        verdict = (f"yes (L1 {metrics['ot_l1_error']:.3g} <= tol {metrics['ot_tol']:g}{exact})" if metrics["ot_converged"]
                   else f"no (L1 {metrics['ot_l1_error']:.3g} > tol {metrics['ot_tol']:g}, "
                        f"stopped by {metrics['ot_stop_reason']})")
        lines.append(f"{100 * metrics['interpolated_fraction']:.1f}% interpolated; OT converged: {verdict}")
    return "; ".join(lines)


def main(args: argparse.Namespace) -> int:
    cfg = from_args(ToyRunConfig, args)
    metrics = run(cfg)
    n_used = metrics["n_train_used"]
    if metrics["n_distinct_train"] < n_used:
        print(f"note: {n_used - metrics['n_distinct_train']} of the {n_used} training points repeat an earlier "
              f"one; " + ("AE-OT merged each repeated point into one target carrying the summed weight"
                          if cfg.model == "aeot" else f"{cfg.model} samples them as given"))
    files = sorted(p.name for p in Path(cfg.out).iterdir() if not p.name.startswith("."))
    print(summary(cfg, metrics) + f"\nwrote {cfg.out}/: {', '.join(files)}")
    return 0
