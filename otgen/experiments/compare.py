"""``otgen compare``: AE-OT against the GAN family on mode coverage, with a generated report.

    otgen compare --suite toy   [--models ...] [--dists ...] [--seeds 3] [--steps N]
    otgen compare --suite mnist [--preset quick|paper] [--models ...] [--seeds 1] --data-dir DIR
    otgen compare --suite stacked [--preset quick|paper] [--models ...] [--seeds 1] --data-dir DIR

Every (model, distribution, seed) run gets its own run directory under
``--runs-dir``; a run whose ``metrics.json`` exists is skipped, so an interrupted
comparison resumes where it stopped.  The report (``<report-dir>/<suite>.md`` and
PNG figures) is then written only from what the run directories hold: the toy
metrics are recomputed from each run's ``samples.npy`` with
:func:`otgen.eval.modes.mode_coverage`, so every model is scored by one protocol.
Nothing in a report is typed by hand; its header names the command and the date.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import shlex
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["RunSpec", "TOY_MODELS", "DEFAULT_TOY_DISTS", "PUBLISHED_TOY", "PUBLISHED_STACKED",
           "plan", "execute", "collect_toy", "write_toy_report", "collect_mnist", "write_mnist_report",
           "write_stacked_report", "add_arguments", "main"]

TOY_MODELS = ("aeot", "gan", "wgan", "wgan-gp", "pacgan2", "pacgan3", "pacgan4")
DEFAULT_TOY_DISTS = ("ring8", "grid25", "ring8_unequal", "nested_rings")
MNIST_QUICK_MODELS = ("aeot", "gan", "pacgan2")  # wgan-gp (1.4 steps/s) would not fit the 30 min
TIMING_FILE = "compare.json"  # written by this command into each run directory it ran
ERROR_FILE = "compare_error.json"

# PacGAN paper (Lin et al. 2018), Table 1 (10 trials) and Table 3; quoted for orientation only.
PUBLISHED_TOY = {
    "ring8": "PacGAN paper (10 trials): GAN 6.3 modes / 98.2% HQ / KL 0.45; PacGAN2 7.9 / 95.6% / 0.07",
    "grid25": "PacGAN paper (10 trials): GAN 17.3 modes / 94.8% HQ / KL 0.70; PacGAN4 24.8 / 93.6% / 0.04",
}
# The report cannot know whether other jobs shared the cores while the runs trained.
_WALL_TIME_NOTE = "on the machine above (other jobs may have shared its cores: a rough figure)."
PUBLISHED_STACKED = ("PacGAN paper, Stacked MNIST (26,000 samples): DCGAN 99 modes / KL 3.40; "
                     "VEEGAN 150 / 2.95; PacDCGAN2 1000 / 0.06")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    suite: str
    model: str
    dist: str  # toy name; "mnist" / "stacked" for the image suites
    seed: int
    out: Path


# ----------------------------------------------------------------------------------------------
# planning and running


def plan(suite: str, runs_dir: Path, models: Iterable[str], dists: Iterable[str], seeds: Iterable[int],
         tag: str = "") -> list[RunSpec]:
    """One RunSpec per (distribution, model, seed), each with its own run directory.

    Ordered seed-major, so a comparison cut short still has every (model, distribution)
    cell for the first seeds.
    """
    base = Path(runs_dir) / (suite + (f"_{tag}" if tag else ""))
    return [RunSpec(suite, m, d, s, base / d / m / f"seed{s}") for s in seeds for d in dists for m in models]


def is_done(spec: RunSpec) -> bool:
    return (spec.out / "metrics.json").exists()


def execute(specs: list[RunSpec], runner: Callable[[RunSpec], Any], log: Callable[[str], None] = print,
            ) -> dict[str, int]:
    """Run every spec that has no ``metrics.json`` yet; record wall time or the error in its run dir.

    A failing run (a diverged GAN, a missing module) does not stop the others:
    its traceback goes to ``compare_error.json`` and it is retried next time.
    """
    from otgen.rundir import RunDir

    counts = {"ran": 0, "skipped": 0, "failed": 0}
    total = len(specs)
    t_start = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        label = f"[{i}/{total}] {spec.dist} {spec.model} seed {spec.seed}"
        if is_done(spec):
            counts["skipped"] += 1
            log(f"{label}: metrics.json exists, skipped")
            continue
        rd = RunDir(spec.out)
        log(f"{label}: running ...")
        t0 = time.perf_counter()
        try:
            runner(spec)
        except Exception as e:  # noqa: BLE001 - one failed run must not sink the comparison
            counts["failed"] += 1
            rd.write_json(ERROR_FILE, {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                                       "seconds": round(time.perf_counter() - t0, 2)})
            log(f"{label}: FAILED after {time.perf_counter() - t0:.1f} s: {type(e).__name__}: {e}")
            continue
        seconds = time.perf_counter() - t0
        rd.write_json(TIMING_FILE, {"wall_seconds": round(seconds, 3), "finished": _now()})
        if rd.has(ERROR_FILE):
            rd.file(ERROR_FILE).unlink()
        counts["ran"] += 1
        elapsed = time.perf_counter() - t_start
        log(f"{label}: done in {seconds:.1f} s ({elapsed / 60:.1f} min elapsed)")
    return counts


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _filtered_kwargs(cls, **kwargs) -> dict:
    """Keep the keyword arguments ``cls`` (a dataclass) accepts; ``None`` values are dropped."""
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set(kwargs)
    return {k: v for k, v in kwargs.items() if k in names and v is not None}


def toy_runner(n_samples: int, steps: int | None) -> Callable[[RunSpec], Any]:
    """Each toy run is ``otgen toy`` (:func:`otgen.experiments.toy.run`) with the spec's model, toy and seed."""

    def run_one(spec: RunSpec):
        from otgen.experiments.toy import ToyRunConfig, run

        return run(ToyRunConfig(**_filtered_kwargs(ToyRunConfig, model=spec.model, dist=spec.dist, out=str(spec.out),
                                                   seed=spec.seed, n_samples=n_samples, steps=steps,
                                                   progress=False)))

    return run_one


def mnist_runner(preset: str, data_dir, n_samples: int | None, gan_steps: int | None,
                 progress: bool, dataset: str = "mnist") -> Callable[[RunSpec], Any]:
    """Each image run is ``otgen mnist`` (:func:`otgen.experiments.mnist.run`) on ``dataset``."""

    def run_one(spec: RunSpec):
        from otgen.experiments.mnist import make_config, run

        # --gan-steps is the GANs' budget only: AE-OT's configuration (and run directory) stays the preset's.
        steps = gan_steps if spec.model != "aeot" else None
        return run(make_config(preset, model=spec.model, dataset=dataset, out=str(spec.out), data_dir=data_dir,
                               seed=spec.seed, n_samples=n_samples, gan_steps=steps, progress=progress))

    return run_one


# ----------------------------------------------------------------------------------------------
# reading run directories


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _wall_seconds(out: Path) -> float | None:
    # A staged pipeline's own record (MNIST) sums every stage across resumed calls; compare.json
    # only times the last call of this command.
    stages = _read_json(out / "stages.json")
    if stages:
        return float(sum(v.get("seconds", 0.0) for v in stages.values()))
    t = _read_json(out / TIMING_FILE)
    if t and "wall_seconds" in t:
        return float(t["wall_seconds"])
    return None


def _get_toy(name: str):
    from otgen.data import toys

    return toys.get(name)


CONTROLS = ("real", "replay")


def toy_controls(dist: str, seed: int, train: np.ndarray, n: int, get_toy: Callable[[str], Any] = _get_toy) -> list[dict]:
    """The two control rows of a (toy, seed), scored by the models' own function:
    *real* (fresh draws of the toy) and *replay* (the training set resampled with replacement)."""
    from otgen.eval.toy import evaluate_toy
    from otgen.experiments.toy import held_out_set

    toy = get_toy(dist)
    held = held_out_set(toy, seed, n)
    real = held_out_set(toy, seed, n, stream=2)
    replay = train[np.random.default_rng(seed).integers(0, len(train), n)]
    return [{"model": name, "dist": dist, "seed": seed, "status": "ok", **evaluate_toy(x, toy, train, held, seed=seed)}
            for name, x in zip(CONTROLS, (real, replay))]


def collect_toy(specs: list[RunSpec], get_toy: Callable[[str], Any] = _get_toy) -> list[dict]:
    """One record per spec, every metric recomputed from ``samples.npy`` against the run's training
    set (``data.npy``) and held-out draw by :func:`otgen.eval.toy.evaluate_toy`; then the control
    rows (:func:`toy_controls`) of every (toy, seed) with a finished run."""
    from otgen.eval.toy import evaluate_toy
    from otgen.experiments.toy import held_out_set

    records, trains = [], {}
    for spec in specs:
        rec: dict[str, Any] = {"model": spec.model, "dist": spec.dist, "seed": spec.seed, "out": str(spec.out)}
        err = _read_json(spec.out / ERROR_FILE)
        if not is_done(spec):
            rec["status"] = "failed" if err else "missing"
            rec["error"] = (err or {}).get("error")
            records.append(rec)
            continue
        rec["status"] = "ok"
        rec["wall_seconds"] = _wall_seconds(spec.out)
        samples_path = spec.out / "samples.npy"
        if not samples_path.exists():
            rec.update(status="failed", error="metrics.json but no samples.npy")
            records.append(rec)
            continue
        samples = np.load(samples_path, allow_pickle=False).astype(np.float32)
        train = np.load(spec.out / "data.npy", allow_pickle=False)
        toy = get_toy(spec.dist)
        rec.update(evaluate_toy(samples, toy, train, held_out_set(toy, spec.seed, len(samples)), seed=spec.seed))
        trains.setdefault((spec.dist, spec.seed), (train, len(samples)))
        records.append(rec)
    for (dist, seed), (train, n) in trains.items():
        records += toy_controls(dist, seed, train, n, get_toy)
    return records


# ----------------------------------------------------------------------------------------------
# formatting


def _mean_std(values: list[float], digits: int, scale: float = 1.0) -> str:
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "—"
    if any(math.isinf(v) for v in vals):
        return f"inf ({sum(math.isinf(v) for v in vals)}/{len(vals)} seeds)"
    mean = float(np.mean(vals))
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(vals, ddof=1)):.{digits}f}"


def _table_row(label: str, recs: list[dict], columns: list[tuple[str, int]]) -> str:
    """A markdown row: label, seeds ok / planned, then mean ± std over the ok records of each (key, digits)."""
    ok = [r for r in recs if r.get("status", "ok") == "ok"]
    cells = [label, f"{len(ok)}/{len(recs)}"] + [_mean_std([r.get(k) for r in ok], d) for k, d in columns]
    return "| " + " | ".join(cells) + " |"


def _machine() -> str:
    try:
        import jax

        backend = jax.default_backend()
    except Exception:  # noqa: BLE001
        backend = "unknown"
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores visible, JAX backend {backend}"


def _versions() -> str:
    from otgen.rundir import package_versions

    v = package_versions()
    return ", ".join(f"{k} {v[k]}" for k in ("otgen", "jax", "flax", "optax", "numpy"))


def _header(title: str, command: str) -> list[str]:
    return [f"# {title}", "",
            f"- Command: `{command}`",
            f"- Written: {_now()} by `otgen compare` from the run directories (nothing typed by hand)",
            f"- Machine: {_machine()}",
            f"- Versions: {_versions()}", ""]


def _atomic_text(path: Path, text: str) -> None:
    from otgen.checkpoint import atomic_write

    atomic_write(path, lambda f: f.write(text.encode()))


# ----------------------------------------------------------------------------------------------
# toy report


def _toy_figure(records: list[dict], models: list[str], dists: list[str], path: Path,
                get_toy: Callable[[str], Any]) -> None:
    import matplotlib.pyplot as plt

    from otgen.plotting import save_figure, scatter_panel

    first = {}
    for r in records:  # the lowest finished seed of each (model, dist)
        key = (r["model"], r["dist"])
        if r["status"] == "ok" and (key not in first or r["seed"] < first[key]["seed"]):
            first[key] = r
    fig, axes = plt.subplots(len(models), len(dists), figsize=(2.3 * len(dists), 2.3 * len(models)), squeeze=False)
    for j, dist in enumerate(dists):
        data = _toy_data(dist, get_toy, [first.get((m, dist)) for m in models])
        lim = None
        if data is not None and len(data):
            lo, hi = np.percentile(data, 0.5, axis=0), np.percentile(data, 99.5, axis=0)
            pad = 0.15 * float(np.max(hi - lo))
            lim = (float(np.min(lo)) - pad, float(np.max(hi)) + pad)
        for i, model in enumerate(models):
            ax = axes[i, j]
            rec = first.get((model, dist))
            if rec is None:
                ax.text(0.5, 0.5, "no run", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([]), ax.set_yticks([])
            else:
                s = np.load(Path(rec["out"]) / "samples.npy", allow_pickle=False)
                s = s[np.all(np.isfinite(s), axis=1)]
                scatter_panel(ax, s, data, max_points=2500)
                if lim is not None:
                    ax.set_aspect("equal", adjustable="box")
                    ax.set_xlim(lim), ax.set_ylim(lim)
                ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(dist, fontsize=10)
            if j == 0:
                ax.set_ylabel(model, fontsize=10)
    fig.suptitle("generated samples (orange) over training data (grey); first seed of each", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    save_figure(fig, path, dpi=90)


def _toy_data(dist: str, get_toy, recs) -> np.ndarray | None:
    """Training data for the figure: a run's saved data.npy, else a fresh draw from the toy."""
    for rec in recs:
        if rec is not None and (Path(rec["out"]) / "data.npy").exists():
            return np.load(Path(rec["out"]) / "data.npy", allow_pickle=False)
    try:
        toy = get_toy(dist)
        import jax

        for name in ("sample", "sampler"):
            if hasattr(toy, name):
                return np.asarray(getattr(toy, name)(jax.random.key(0), 2500))
    except Exception:  # noqa: BLE001 - the figure is still useful without the data layer
        return None
    return None


def write_toy_report(records: list[dict], models: list[str], dists: list[str], report_dir: Path, command: str,
                     get_toy: Callable[[str], Any] = _get_toy, budget: str = "") -> Path:
    report_dir = Path(report_dir)
    lines = _header("Toy mode coverage: AE-OT vs the GAN family", command)
    lines += ["Protocol (PacGAN / VEEGAN): each generated sample goes to its nearest mode by std-normalised "
              "distance; it is *high quality* (HQ) within 3 sigma. A mode is *captured* when it receives "
              ">= 1 HQ sample (PacGAN's rule); *strict*: >= 1/4 of its expected share. KL = KL(HQ mode "
              "histogram || true mode weights) (PacGAN's \"reverse KL\"). *spread*: per-mode std of the HQ "
              "samples / true std (1 for real data). *W2*: exact 2-Wasserstein distance to a held-out draw of "
              "the toy (POT, 2,500 vs 2,500 points). Novelty (`otgen.eval.novelty`): *% copies* = samples "
              "within 1% of the training set's median nearest-neighbour spacing of a training point; *C_T* = "
              "Meehan et al.'s data-copying statistic (~0 for fresh data, << 0 for copying, > 0 for blur); "
              "*NN ratio* = median distance to the nearest training point, generated / held-out. "
              "Two control rows are scored by the same code: *real* (fresh draws of the toy, as many as a model "
              "generates) and *replay* (the training set resampled). Metrics are recomputed from each "
              "run's `samples.npy` and `data.npy`; mean ± sample std over seeds; wall time is the whole run "
              "(training + sampling) " + _WALL_TIME_NOTE, ""]
    if budget:
        lines += [f"Budget: {budget}", ""]
    by = {}
    for r in records:
        by.setdefault((r["dist"], r["model"]), []).append(r)
    verdict = []
    for dist in dists:
        toy = _safe_toy(get_toy, dist)
        if toy is not None and getattr(toy, "centres", None) is not None:
            desc = f"{len(toy.centres)} modes"
        elif toy is not None and getattr(toy, "curve", None) is not None:
            desc = (f"{len(toy.weights)} noisy curve(s), each counted as a mode; HQ = within 3 noise std "
                    "of the curve")
        else:
            desc = "no Gaussian modes: only a support-distance HQ rule"
        n_modes = len(toy.weights) if toy is not None and getattr(toy, "weights", None) is not None else None
        lines += [f"## {dist} ({desc})", ""]
        lines += ["| model | seeds ok | modes captured | strict | % high quality | KL | spread | W2 | "
                  "% copies | C_T | NN ratio | wall time (s) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for model in [c for c in CONTROLS if by.get((dist, c))] + list(models):
            recs = by.get((dist, model), [])
            ok = [r for r in recs if r["status"] == "ok" and "high_quality_fraction" in r]
            failed = [r for r in recs if r["status"] == "failed"]
            seeds = f"{len(ok)}/{len(recs)}" + (f" ({len(failed)} failed)" if failed else "")
            modes = _mean_std([r.get("modes_captured") for r in ok], 1) if n_modes else "—"
            strict = _mean_std([r.get("modes_captured_strict") for r in ok], 1) if n_modes else "—"
            hq = _mean_std([r.get("high_quality_fraction") for r in ok], 1, 100.0)
            kl = _mean_std([r.get("reverse_kl") for r in ok], 3) if n_modes else "—"
            wall = _mean_std([r.get("wall_seconds") for r in ok], 1) if model not in CONTROLS else "—"
            extra = " | ".join(_mean_std([r.get(k) for r in ok], d, sc) for k, d, sc in
                               (("spread_ratio", 2, 1.0), ("w2", 3, 1.0), ("copy_fraction", 1, 100.0),
                                ("data_copying_ct", 1, 1.0), ("nn_distance_ratio", 2, 1.0)))
            label = {"real": "*real* (fresh draws)", "replay": "*replay* (training set)"}.get(model, model)
            lines.append(f"| {label} | {seeds} | {modes} | {strict} | {hq} | {kl} | {extra} | {wall} |")
            if model not in CONTROLS:
                verdict += _toy_verdict(model, dist, ok, recs, n_modes)
        blind = _replay_blind_metrics(by.get((dist, "real"), []), by.get((dist, "replay"), []))
        if blind:
            lines += ["", f"Scored as well by the replay as by fresh real data, so blind to copying here: "
                          f"{', '.join(blind)}."]
        if dist in PUBLISHED_TOY:
            lines += ["", f"Published, for orientation: {PUBLISHED_TOY[dist]}. PacGAN's runs train for 400 "
                      "epochs of 100,000 points at batch 100 (400,000 generator steps)."]
        lines.append("")
    fails = [r for r in records if r["status"] == "failed"]
    lines += ["## What the numbers say", ""] + [f"- {v}" for v in verdict] + [""]
    if fails:
        lines += ["## Failed runs", ""] + [f"- {r['dist']} {r['model']} seed {r['seed']}: {r.get('error')}"
                                           for r in fails] + [""]
    missing = [r for r in records if r["status"] == "missing"]
    if missing:
        lines += [f"{len(missing)} planned runs have no results yet (not run or interrupted).", ""]
    fig_name = "toy_samples.png"
    _toy_figure(records, models, dists, report_dir / fig_name, get_toy)
    lines += ["## Samples", "", f"![samples over data]({fig_name})", ""]
    path = report_dir / "toy.md"
    _atomic_text(path, "\n".join(lines))
    return path


# metric -> (label, tolerance): the replay "does as well" when within this of the real row
# (W2's tolerance is 10% of the real row's value, set below)
_HIGHER_IS_BETTER = {"modes_captured": ("modes", 0.5), "high_quality_fraction": ("HQ", 0.01)}
_LOWER_IS_BETTER = {"reverse_kl": ("KL", 0.02), "w2": ("W2", 0.0)}


def _replay_blind_metrics(real: list[dict], replay: list[dict]) -> list[str]:
    """Metrics on which the replay control does as well as fresh real data (means over seeds, within
    half a mode, 1 HQ point, 0.02 KL or 10% of W2)."""
    if not real or not replay:
        return []

    def mean(recs, key):
        vals = [r[key] for r in recs if r.get(key) is not None and np.isfinite(r[key])]
        return float(np.mean(vals)) if vals else None

    blind = []
    for key, (name, tol) in {**_HIGHER_IS_BETTER, **_LOWER_IS_BETTER}.items():
        a, b = mean(real, key), mean(replay, key)
        if a is None or b is None:
            continue
        if key == "w2":
            tol = 0.1 * a
        if (key in _HIGHER_IS_BETTER and b >= a - tol) or (key in _LOWER_IS_BETTER and b <= a + tol):
            blind.append(name)
    return blind


def _safe_toy(get_toy, dist):
    try:
        return get_toy(dist)
    except Exception:  # noqa: BLE001
        return None


def _toy_verdict(model: str, dist: str, ok: list[dict], recs: list[dict], n_modes: int | None) -> list[str]:
    if not recs:
        return []
    if not ok:
        if model == "aeot":
            return [f"AE-OT on {dist}: no finished run, so this report does NOT show AE-OT covering its modes."]
        return [f"{model} on {dist}: no finished run."]
    hq_all = all(r["high_quality_fraction"] >= 0.95 for r in ok)
    hq_min = min(r["high_quality_fraction"] for r in ok) * 100
    if n_modes is None:
        return [f"{model} on {dist}: HQ >= 95% in {'every' if hq_all else 'not every'} seed (min {hq_min:.1f}%)."]
    full = sum(r["modes_captured"] == n_modes for r in ok)
    good = full == len(ok) and hq_all
    if model == "aeot":
        word = "covers" if good else "does NOT cover"
        ct = float(np.mean([r.get("data_copying_ct", np.nan) for r in ok]))
        copies = 100 * float(np.mean([r.get("copy_fraction", np.nan) for r in ok]))
        copying = ("is NOT flagged as copying" if ct > -3 and copies < 1 else
                   "sits closer to its training points than fresh data does (flagged: C_T <= -3 or >= 1% copies)")
        return [f"AE-OT on {dist}: {word} every mode with >= 95% HQ in all seeds "
                f"(all {n_modes} modes in {full}/{len(ok)} seeds; min HQ {hq_min:.1f}%); "
                f"it {copying}: mean C_T {ct:.1f}, {copies:.2f}% copies (replay: ~-9 and 100%)."]
    if good:
        return []
    return [f"{model} on {dist} falls short: all {n_modes} modes in {full}/{len(ok)} seeds, "
            f"min HQ {hq_min:.1f}%."]


# ----------------------------------------------------------------------------------------------
# MNIST report


MNIST_CONTROLS = ("real", "replay", "reconstructions")
_CONTROL_LABELS = {"real": "*real* (test digits 5,001-10,000)", "replay": "*replay* (training digits)",
                   "reconstructions": "*replay* (AE-OT's reconstructions of training digits)"}


def run_mnist_controls(runs_dir: Path, data_dir, n: int, aeot_cfg=None, log=print,
                       dataset: str = "mnist") -> list[dict]:
    """The control rows of an image report, scored by the models' own evaluation; cached under
    ``<runs_dir>/<dataset>/controls/<name>/metrics.json``.

    *real* (MNIST only; Stacked's real row is :func:`run_stacked_reference`): the second half of the
    test set (the first half is the novelty metrics' held-out set); *replay*: ``n`` training images
    drawn with replacement; *reconstructions*: ``n`` training codes of the AE-OT run ``aeot_cfg``
    decoded by its autoencoder (what decoding the training codes scores), with their code-space novelty.
    """
    from otgen.rundir import RunDir

    if dataset == "stacked":
        from otgen.eval.stacked import evaluate_stacked as evaluate
    else:
        from otgen.eval.mnist import evaluate_digits as evaluate
    out = []
    for name in MNIST_CONTROLS:
        if name == "real" and dataset == "stacked":
            continue
        if name == "reconstructions" and (aeot_cfg is None or not (Path(aeot_cfg.out) / "latents.npy").exists()):
            continue
        rd = RunDir(Path(runs_dir) / dataset / "controls" / name)
        if not rd.has("metrics.json"):
            log(f"{dataset}: scoring the {name} control ...")
            extra = {}
            if name == "real":
                from otgen.data.mnist import load_mnist
                from otgen.eval.mnist import HELD_OUT

                images = load_mnist("test", data_dir)[0][HELD_OUT.stop:]
            elif name == "replay":
                from otgen.experiments.mnist import _load_images, make_config

                train = _load_images(make_config("quick", dataset=dataset, data_dir=data_dir), "train")
                images = train[np.random.default_rng(0).integers(0, len(train), n)]
            else:
                from otgen.experiments.mnist import replay_reconstructions

                images, extra = replay_reconstructions(aeot_cfg, n)
            rd.write_json("metrics.json", {**evaluate(images, data_dir=data_dir), **extra})
        out.append({"model": name, "seed": 0, "status": "ok", **rd.read_json("metrics.json")})
    return out


def _control_beats_real(controls: list[dict], key: str, better: int) -> bool:
    """Does any replay control score ``key`` at least as well as the real control (``better`` = +1: higher)?"""
    real = next((c.get(key) for c in controls if c["model"] == "real"), None)
    if real is None:
        return False
    return any(c.get(key) is not None and better * (c[key] - real) >= 0
               for c in controls if c["model"] != "real")


def collect_mnist(specs: list[RunSpec], metric: str = "classes_covered") -> list[dict]:
    """One record per image run: its metrics.json (which must hold ``metric``), status and wall time."""
    records = []
    for spec in specs:
        rec: dict[str, Any] = {"model": spec.model, "seed": spec.seed, "out": str(spec.out)}
        err = _read_json(spec.out / ERROR_FILE)
        m = _read_json(spec.out / "metrics.json") if is_done(spec) else None
        if m is None:
            rec.update(status="failed" if err else "missing", error=(err or {}).get("error"))
        elif metric not in m:
            rec.update(status="failed", error=f"metrics.json has no {metric!r}")
        else:
            rec.update(status="ok", wall_seconds=_wall_seconds(spec.out), **m)
            rec["created"] = (_read_json(spec.out / "config.json") or {}).get("created")
        records.append(rec)
    return records


def _mnist_figure(records: list[dict], models: list[str], path: Path,
                  title: str = "first 20 generated digits of each model (first seed)") -> None:
    import matplotlib.pyplot as plt

    from otgen.plotting import save_figure, tile_images

    rows = []
    for model in models:
        ok = sorted((r for r in records if r["model"] == model and r["status"] == "ok"), key=lambda r: r["seed"])
        f = Path(ok[0]["out"]) / "samples.npy" if ok else None
        rows.append((model, np.load(f, allow_pickle=False)[:20] if f and f.exists() else None))
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.2 * len(rows)), squeeze=False)
    for ax, (model, imgs) in zip(axes[:, 0], rows):
        if imgs is not None:
            ax.imshow(tile_images(imgs, nrow=20), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(model, rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=100)


def write_mnist_report(records: list[dict], models: list[str], report_dir: Path, command: str,
                       budget: str = "", controls: list[dict] = ()) -> Path:
    report_dir = Path(report_dir)
    lines = _header("MNIST class coverage: AE-OT vs the GAN family", command)
    acc = next((r.get("classifier_test_accuracy") for r in records if r["status"] == "ok"), None)
    floor = next((r.get("fid_train_vs_test") for r in records if r["status"] == "ok"), None)
    lines += ["Each model generates digits that the project's CNN classifier "
              f"(`scripts/train_mnist_classifier.py`, test accuracy {acc:.4f})" if acc is not None else
              "Each model generates digits that the project's CNN classifier (`scripts/train_mnist_classifier.py`)",
              "labels. Classes covered: classes predicted at least once (strict: >= 1/4 of the expected share); "
              "KL = KL(class histogram || uniform); FID on the classifier's 128-d penultimate features against "
              "the 10,000 test images (not comparable with Inception FIDs)"
              + (f"; 10,000 real training digits score FID {floor:.2f} (the floor)" if floor is not None else "")
              + ". Precision/recall: Kynkäänniemi et al. (k = 3) in the same features. Novelty "
              "(`otgen.eval.novelty`) in the classifier's features against the 60,000 training digits, with test "
              "digits 1-5,000 as the held-out reference: *% copies* (within 1% of the training set's median "
              "nearest-neighbour spacing), *C_T* (Meehan et al.: ~0 like fresh data, << 0 copying, > 0 farther "
              "than fresh data), *NN ratio* (median nearest-training distance, generated / held-out); *code C_T* "
              "is the same test in AE-OT's code space. Control rows, scored by the same code: *real* (test digits "
              "5,001-10,000; its FID is against a reference that contains it), *replay* (training digits "
              "resampled), *replay (reconstructions)* (training codes decoded by AE-OT's autoencoder: what "
              "\"decode the training codes\" scores). Mean ± sample std over seeds; wall time = training + "
              "generation " + _WALL_TIME_NOTE, ""]
    if budget:
        lines += [f"Budget: {budget}", ""]
    lines += ["| model | seeds ok | classes | strict | KL to uniform | FID | precision | recall | % copies | C_T | "
              "NN ratio | code C_T | % interpolated | wall time (s) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    columns = [("classes_covered", 1), ("classes_covered_strict", 1), ("kl_uniform", 4), ("fid", 2),
               ("precision", 3), ("recall", 3), ("feature_copy_fraction_pct", 2), ("feature_data_copying_ct", 1),
               ("feature_nn_distance_ratio", 2), ("code_data_copying_ct", 1), ("interpolated_pct", 1),
               ("wall_seconds", 0)]

    def with_pct(r):
        r = dict(r)
        for src, dst in (("feature_copy_fraction", "feature_copy_fraction_pct"),
                         ("interpolated_fraction", "interpolated_pct")):
            if r.get(src) is not None:
                r[dst] = 100 * r[src]
        return r

    for c in controls:
        lines.append(_table_row(_CONTROL_LABELS.get(c["model"], c["model"]), [with_pct(c)], columns))
    verdict = []
    for model in models:
        recs = [with_pct(r) for r in records if r["model"] == model]
        ok = [r for r in recs if r["status"] == "ok"]
        lines.append(_table_row(model, recs, columns))
        if ok:
            all10 = sum(r["classes_covered"] == 10 for r in ok)
            kl_max = max(r["kl_uniform"] for r in ok)
            good = all10 == len(ok) and kl_max <= 0.01
            who = "AE-OT" if model == "aeot" else model
            if model == "aeot" or not good:
                verdict.append(f"{who}: all 10 classes in {all10}/{len(ok)} seeds, max KL {kl_max:.4f} -> "
                               + ("meets" if good else "does NOT meet") + " the target (10 classes, KL <= 0.01).")
            if model == "aeot" and "feature_data_copying_ct" in ok[0]:
                ct = float(np.mean([r["feature_data_copying_ct"] for r in ok]))
                code_ct = float(np.mean([r.get("code_data_copying_ct", np.nan) for r in ok]))
                copies = float(np.mean([r["feature_copy_fraction_pct"] for r in ok]))
                flagged = ct <= -3 or code_ct <= -3 or copies >= 1
                verdict.append(f"AE-OT novelty: C_T {ct:.1f} in classifier features, {code_ct:.1f} in code space, "
                               f"{copies:.2f}% copies -> " + ("flagged as copying (C_T <= -3 or >= 1% copies)"
                                                              if flagged else "not flagged as copying")
                               + "; compare the replay rows above.")
        elif recs:
            verdict.append(f"{model}: no finished run.")
    blind = [name for key, name, better in (("classes_covered", "classes", 1), ("kl_uniform", "KL", -1),
                                            ("fid", "FID", -1), ("precision", "precision", 1),
                                            ("recall", "recall", 1))
             if _control_beats_real(controls, key, better)]
    if blind:
        verdict.append("Scored at least as well by a replay of the training set as by real held-out digits, so "
                       f"blind to copying: {', '.join(blind)}.")
    lines += ["", "## What the numbers say", ""] + [f"- {v}" for v in verdict] + [""]
    fails = [r for r in records if r["status"] == "failed"]
    if fails:
        lines += ["## Failed runs", ""] + [f"- {r['model']} seed {r['seed']}: {r.get('error')}" for r in fails] + [""]
    missing = [r for r in records if r["status"] == "missing"]
    if missing:
        lines += [f"{len(missing)} planned runs have no results yet (not run or interrupted): "
                  + ", ".join(f"{r['model']} seed {r['seed']}" for r in missing) + ".", ""]
    lines += ["## Runs", ""] + [
        f"- {r['model']} seed {r['seed']}: `{r['out']}` (configured {r.get('created')}; stage seconds "
        f"{json.dumps(r.get('stage_seconds', {}))})" for r in records if r["status"] == "ok"] + [""]
    _mnist_figure(records, models, report_dir / "mnist_samples.png")
    lines += ["## Samples", "", "![generated digits](mnist_samples.png)", ""]
    path = report_dir / "mnist.md"
    _atomic_text(path, "\n".join(lines))
    return path


# ----------------------------------------------------------------------------------------------
# Stacked MNIST


def run_stacked_reference(runs_dir: Path, data_dir, seeds: list[int], log=print) -> list[dict]:
    """Score 26,000 real Stacked-MNIST images per seed (the metric's ceiling); cached in run dirs."""
    import jax

    from otgen.data.mnist import load_mnist
    from otgen.eval.stacked import evaluate_stacked, make_stacked_mnist, stacked_mode_metrics
    from otgen.rundir import RunDir

    out = []
    for seed in seeds:
        rd = RunDir(Path(runs_dir) / "stacked" / "data" / f"seed{seed}")
        if not rd.has("metrics.json"):
            log(f"stacked: scoring 26,000 real stacked digits (seed {seed}) ...")
            t0 = time.perf_counter()
            x, y = load_mnist("train", data_dir)
            imgs, modes = make_stacked_mnist(x, y, 26000, jax.random.key(seed))
            m = evaluate_stacked(imgs, data_dir=data_dir)
            truth = stacked_mode_metrics(modes)
            m.update(true_modes_covered=truth["modes_covered"], true_kl_uniform=truth["kl_uniform"],
                     wall_seconds=round(time.perf_counter() - t0, 2))
            rd.write_json("metrics.json", m)
        out.append({"seed": seed, **rd.read_json("metrics.json")})
    return out


def write_stacked_report(reference: list[dict], report_dir: Path, command: str, records: list[dict] = (),
                         models: list[str] = (), budget: str = "", controls: list[dict] = ()) -> Path:
    """``stacked.md``: modes and KL of each model's 26,000 samples, beside those of real data (the ceiling)."""
    report_dir = Path(report_dir)
    lines = _header("Stacked MNIST (1,000 modes): AE-OT vs the GAN family", command)
    lines += ["Training data: 128,000 images whose R, G, B channels are three MNIST training digits (one fixed "
              "draw for every model and seed). Modes: the digit triple the project's classifier reads in the three "
              "channels of each of 26,000 samples; KL = KL(mode histogram || uniform over 1,000); "
              "max share = the most frequent mode's fraction (uniform: 0.001). Novelty in AE-OT's code space "
              "(`otgen.eval.novelty`, against the 128,000 training codes, with the codes of 5,000 stacked test "
              "images as held-out reference): *code C_T* (~0 like fresh data, << 0 copying), *% code copies*, "
              "*code NN ratio*. Control rows, scored by the same code: *real* (fresh draws of three digits), "
              "*replay* (the training set resampled), *replay (reconstructions)* (training codes decoded by AE-OT's "
              "autoencoder). Mean ± sample std over seeds; wall time = training + generation "
              + _WALL_TIME_NOTE, ""]
    if budget:
        lines += [f"Budget: {budget}", ""]
    lines += ["| samples | seeds ok | modes | KL to uniform | max share | code C_T | % code copies | code NN ratio | "
              "% interpolated | wall time (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    columns = [("modes_covered", 1), ("kl_uniform", 3), ("max_mode_fraction", 4), ("code_data_copying_ct", 1),
               ("code_copy_pct", 2), ("code_nn_distance_ratio", 2), ("interpolated_pct", 1), ("wall_seconds", 0)]

    def with_pct(r):
        r = dict(r)
        for src, dst in (("code_copy_fraction", "code_copy_pct"), ("interpolated_fraction", "interpolated_pct")):
            if r.get(src) is not None:
                r[dst] = 100 * r[src]
        return r

    if reference:
        # real data is drawn, not trained: no wall time (its record's wall_seconds is the scoring time)
        lines.append(_table_row("*real* Stacked MNIST (26,000 draws)",
                                [{k: v for k, v in r.items() if k != "wall_seconds"} for r in reference], columns))
    for c in controls:
        lines.append(_table_row(_CONTROL_LABELS.get(c["model"], c["model"]).replace("digits", "images"),
                                [with_pct(c)], columns))
    for model in models:
        lines.append(_table_row(model, [with_pct(r) for r in records if r["model"] == model], columns))
    if reference:
        lines += ["", "The real-data row checks the metric itself (true labels: "
                  f"{_mean_std([r['true_modes_covered'] for r in reference], 1)} modes, KL "
                  f"{_mean_std([r['true_kl_uniform'] for r in reference], 3)}): 26,000 draws over 1,000 equally "
                  "likely modes, read by a classifier of finite accuracy."]
    lines += ["", f"Published, for orientation (other networks and budgets): {PUBLISHED_STACKED}.", ""]
    fails = [r for r in records if r["status"] != "ok"]
    if fails:
        lines += ["## Runs without results", ""] + [
            f"- {r['model']} seed {r['seed']}: {r['status']} {r.get('error') or ''}" for r in fails] + [""]
    if any(r["status"] == "ok" for r in records):
        _mnist_figure(records, list(models), report_dir / "stacked_samples.png",
                      title="first 20 generated Stacked-MNIST images of each model (first seed)")
        lines += ["## Samples", "", "![generated stacked digits](stacked_samples.png)", ""]
        lines += ["## Runs", ""] + [f"- {r['model']} seed {r['seed']}: `{r['out']}` (stage seconds "
                                     f"{json.dumps(r.get('stage_seconds', {}))})"
                                     for r in records if r["status"] == "ok"] + [""]
    path = report_dir / "stacked.md"
    _atomic_text(path, "\n".join(lines))
    return path


# ----------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", choices=("toy", "mnist", "stacked"), required=True)
    parser.add_argument("--models", default=None,
                        help=f"comma-separated (toy default: all of {','.join(TOY_MODELS)}; "
                             f"mnist quick default: {','.join(MNIST_QUICK_MODELS)})")
    parser.add_argument("--dists", default=None, help=f"toy distributions (default {','.join(DEFAULT_TOY_DISTS)})")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (toy 3, mnist 1)")
    parser.add_argument("--steps", type=int, default=None, help="toy: training steps per run (runner default)")
    parser.add_argument("--n-samples", type=int, default=None, help="toy: 2500 (PacGAN); mnist: 10000; stacked: 26000")
    parser.add_argument("--preset", choices=("quick", "paper"), default="quick", help="mnist / stacked preset")
    parser.add_argument("--gan-steps", type=int, default=None, help="mnist / stacked: override the preset GAN steps")
    parser.add_argument("--data-dir", default=None, help="MNIST IDX directory (mnist / stacked suites)")
    parser.add_argument("--runs-dir", default="runs/compare", help="where the run directories go (git-ignored)")
    parser.add_argument("--report-dir", default="experiments/reports", help="where the report .md/.png go")
    parser.add_argument("--report-only", action="store_true", help="write the report from existing runs only")
    parser.add_argument("--quiet", action="store_true")


def _aeot_config(specs: list[RunSpec], args: argparse.Namespace, dataset: str):
    """The MnistConfig of the suite's first AE-OT run (for its reconstructions control), or None."""
    aeot = next((sp for sp in specs if sp.model == "aeot"), None)
    if aeot is None:
        return None
    from otgen.experiments.mnist import make_config

    return make_config(args.preset, model="aeot", dataset=dataset, out=str(aeot.out), data_dir=args.data_dir)


def _csv(value: str | None, default: Iterable[str]) -> list[str]:
    return list(default) if not value else [v.strip() for v in value.split(",") if v.strip()]


def _command(args: argparse.Namespace, models, dists, seeds: int) -> str:
    parts = ["otgen", "compare", "--suite", args.suite]
    if args.suite == "toy":
        parts += ["--models", ",".join(models), "--dists", ",".join(dists), "--seeds", str(seeds)]
        if args.steps is not None:
            parts += ["--steps", str(args.steps)]
        if args.n_samples is not None:
            parts += ["--n-samples", str(args.n_samples)]
    elif args.suite in ("mnist", "stacked"):
        parts += ["--preset", args.preset, "--models", ",".join(models), "--seeds", str(seeds)]
        if args.gan_steps is not None:
            parts += ["--gan-steps", str(args.gan_steps)]
        if args.n_samples is not None:
            parts += ["--n-samples", str(args.n_samples)]
    else:
        parts += ["--seeds", str(seeds)]
    if args.data_dir:
        parts += ["--data-dir", "DATA_DIR"]  # the local path says nothing about the results
    parts += ["--runs-dir", args.runs_dir, "--report-dir", args.report_dir]
    return shlex.join(parts)


def main(args: argparse.Namespace) -> int:
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"[otgen compare] {msg}", flush=True))
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.suite == "toy":
        models = _csv(args.models, TOY_MODELS)
        dists = _csv(args.dists, DEFAULT_TOY_DISTS)
        for m in models:
            if m not in TOY_MODELS:
                raise ValueError(f"unknown model {m!r}; models are {', '.join(TOY_MODELS)}")
        seeds = args.seeds if args.seeds is not None else 3
        n_samples = args.n_samples or 2500
        if seeds < 1 or n_samples < 1:
            raise ValueError("--seeds and --n-samples must be >= 1")
        for d in dists:
            _get_toy(d)  # unknown names fail now, not after an hour of training
        specs = plan("toy", Path(args.runs_dir), models, dists, range(seeds))
        if not args.report_only:
            counts = execute(specs, toy_runner(n_samples, args.steps), log)
            log(f"runs: {counts}")
        budget = (f"{seeds} seeds x {len(models)} models x {len(dists)} distributions, "
                  f"{n_samples} samples per run, steps {args.steps if args.steps else 'runner default'}")
        path = write_toy_report(collect_toy(specs, _get_toy), models, dists, report_dir,
                                _command(args, models, dists, seeds), get_toy=_get_toy, budget=budget)
    elif args.suite == "mnist":
        models = _csv(args.models, MNIST_QUICK_MODELS if args.preset == "quick" else TOY_MODELS)
        seeds = args.seeds if args.seeds is not None else 1
        if seeds < 1:
            raise ValueError("--seeds must be >= 1")
        specs = plan("mnist", Path(args.runs_dir), models, [args.preset], range(seeds))
        if not args.report_only:
            runner = mnist_runner(args.preset, args.data_dir, args.n_samples, args.gan_steps, not args.quiet)
            counts = execute(specs, runner, log)
            log(f"runs: {counts}")
        budget = f"preset {args.preset}, {seeds} seed(s) x {len(models)} models" + (
            f", GAN steps {args.gan_steps}" if args.gan_steps else "")
        controls = run_mnist_controls(Path(args.runs_dir), args.data_dir, args.n_samples or 10_000,
                                      _aeot_config(specs, args, "mnist"), log)
        path = write_mnist_report(collect_mnist(specs), models, report_dir, _command(args, models, [], seeds),
                                  controls=controls,
                                  budget=budget)
    else:
        models = _csv(args.models, MNIST_QUICK_MODELS if args.preset == "quick" else TOY_MODELS)
        seeds = args.seeds if args.seeds is not None else 1
        if seeds < 1:
            raise ValueError("--seeds must be >= 1")
        specs = plan("stacked", Path(args.runs_dir), models, [args.preset], range(seeds))
        if not args.report_only:
            runner = mnist_runner(args.preset, args.data_dir, args.n_samples, args.gan_steps, not args.quiet,
                                  dataset="stacked")
            counts = execute(specs, runner, log)
            log(f"runs: {counts}")
        reference = run_stacked_reference(Path(args.runs_dir), args.data_dir, list(range(seeds)), log)
        controls = run_mnist_controls(Path(args.runs_dir), args.data_dir, args.n_samples or 26_000,
                                      _aeot_config(specs, args, "stacked"), log, dataset="stacked")
        budget = f"preset {args.preset}, {seeds} seed(s) x {len(models)} models" + (
            f", GAN steps {args.gan_steps}" if args.gan_steps else "")
        path = write_stacked_report(reference, report_dir, _command(args, models, [], seeds),
                                    collect_mnist(specs, metric="modes_covered"), models, budget, controls)
    log(f"report {path} written ({time.perf_counter() - t0:.1f} s)")
    return 0
