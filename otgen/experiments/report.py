"""The markdown reports and figures of ``otgen compare``, written only from collected records.

(~500 lines: three report writers, each with its tables, verdicts and figure; they share the
table, control-row and header helpers at the top, which is why they stay in one module.)

``write_toy_report`` / ``write_mnist_report`` / ``write_stacked_report`` take the
records that :mod:`otgen.experiments.compare` collects from run directories (and
the control rows scored by the same evaluation code) and write ``<suite>.md`` and
its PNG figures; nothing in a report is typed by hand, and its header names the
command, the date and the machine.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["PUBLISHED_TOY", "PUBLISHED_STACKED", "CONTROLS", "write_toy_report", "write_mnist_report",
           "write_stacked_report"]


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _get_toy(name: str):
    from otgen.data import toys

    return toys.get(name)


# PacGAN paper (Lin et al. 2018), Table 1 (10 trials) and Table 3; quoted for orientation only.
PUBLISHED_TOY = {
    "ring8": "PacGAN paper (10 trials): GAN 6.3 modes / 98.2% HQ / KL 0.45; PacGAN2 7.9 / 95.6% / 0.07",
    "grid25": "PacGAN paper (10 trials): GAN 17.3 modes / 94.8% HQ / KL 0.70; PacGAN4 24.8 / 93.6% / 0.04",
}
# The report cannot know whether other jobs shared the cores while the runs trained.
_WALL_TIME_NOTE = "on the machine above (other jobs may have shared its cores: a rough figure)."
PUBLISHED_STACKED = ("PacGAN paper, Stacked MNIST (26,000 samples): DCGAN 99 modes / KL 3.40; "
                     "VEEGAN 150 / 2.95; PacDCGAN2 1000 / 0.06")
CONTROLS = ("real", "replay")

# ----------------------------------------------------------------------------------------------
# formatting


def mean_and_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std (ddof 1, the spread over seeds every report quotes; None for one seed)."""
    vals = np.asarray(values, dtype=float)
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else None


def _mean_std(values: list[float], digits: int, scale: float = 1.0) -> str:
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "—"
    if any(math.isinf(v) for v in vals):
        return f"inf ({sum(math.isinf(v) for v in vals)}/{len(vals)} seeds)"
    mean, std = mean_and_std(vals)
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


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
            f"- Written: {utc_now()} by `otgen compare` from the run directories (nothing typed by hand)",
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
                     get_toy: Callable[[str], Any] = _get_toy, budget: str = "", name: str = "toy") -> Path:
    """``<name>.md`` (and its figures ``<name>_*.png``) from the runs' records."""
    report_dir = Path(report_dir)
    flows = [m for m in models if m in FLOW_MODELS]
    lines = _header("Toy mode coverage: AE-OT vs " + ("the GAN family" if not flows else
                                                      "flow matching" if len(flows) == len(models) - 1
                                                      else "the GAN family and flow matching"), command)
    lines += ["Protocol (PacGAN / VEEGAN): each generated sample goes to its nearest mode by std-normalised "
              "distance; it is *high quality* (HQ) within 3 sigma. A mode is *captured* when it receives "
              ">= 1 HQ sample (PacGAN's rule); *strict*: >= 1/4 of its expected share. KL = KL(HQ mode "
              "histogram || true mode weights) (PacGAN's \"reverse KL\"). *spread*: per-mode std of the HQ "
              "samples / true std (1 for real data). *W2*: exact 2-Wasserstein distance to a held-out draw of "
              "the toy (POT, 2,500 vs 2,500 points). *% between*: samples farther than 3 sigma from every mode "
              "(100 - HQ - non-finite): the mass a continuous generator leaves between disconnected modes. "
              "Novelty (`otgen.eval.novelty`): *% copies* = samples "
              "within 1% of the training set's median nearest-neighbour spacing of a training point; *C_T* = "
              "Meehan et al.'s data-copying statistic (~0 for fresh data, << 0 for copying, > 0 for blur); "
              "*NN ratio* = median distance to the nearest training point, generated / held-out. "
              "Two control rows are scored by the same code: *real* (fresh draws of the toy, as many as a model "
              "generates) and *replay* (the training set resampled). Each run's metrics are its own record "
              "(`otgen.eval.evaluate`, stored in its `metrics.json` when it ran); mean ± sample std over seeds; "
              "wall time is training + sampling of the run's last call " + _WALL_TIME_NOTE, ""]
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
        lines += ["| model | seeds ok | modes captured | strict | % high quality | % between | KL | spread | W2 | "
                  "% copies | C_T | NN ratio | wall time (s) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for model in [c for c in CONTROLS if by.get((dist, c))] + list(models):
            recs = by.get((dist, model), [])
            if not recs:  # e.g. a published-budget baseline that never ran on this toy (planned runs have records)
                continue
            ok = [r for r in recs if r["status"] == "ok" and "high_quality_fraction" in r]
            failed = [r for r in recs if r["status"] == "failed"]
            seeds = f"{len(ok)}/{len(recs)}" + (f" ({len(failed)} failed)" if failed else "")
            modes = _mean_std([r.get("modes_captured") for r in ok], 1) if n_modes else "—"
            strict = _mean_std([r.get("modes_captured_strict") for r in ok], 1) if n_modes else "—"
            hq = _mean_std([r.get("high_quality_fraction") for r in ok], 1, 100.0)
            hq += " | " + _mean_std([r.get("between_modes_fraction") for r in ok], 1, 100.0)
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
    if flows:
        lines += _flow_bridges(records, flows, dists, report_dir / f"{name}_bridges.png")
    fig_name = f"{name}_samples.png"
    _toy_figure(records, models, dists, report_dir / fig_name, get_toy)
    lines += ["## Samples", "", f"![samples over data]({fig_name})", ""]
    path = report_dir / f"{name}.md"
    _atomic_text(path, "\n".join(lines))
    return path


FLOW_MODELS = ("fm", "otcfm", "sdfm")


def _flow_bridges(records: list[dict], flows: list[str], dists: list[str], fig_path: Path) -> list[str]:
    """The flows' between-modes fraction against ODE steps (their ``ode_sweep``) and against training
    steps (their learning curves), beside AE-OT's: a table per toy and one figure."""
    import matplotlib.pyplot as plt

    from otgen.plotting import save_figure

    ok = [r for r in records if r["status"] == "ok"]
    lines = ["## Flows: the bridge between modes", "",
             "A flow is a homeomorphism, so its samples cannot leave the noise's connected support without a "
             "bridge between disconnected modes. Below, *% between* of each flow's samples against the ODE "
             "solver's steps (RK4: NFE = 4 x steps; the same noise for every column), mean over seeds, "
             "with AE-OT's (no ODE) in the last column.", ""]
    sweep_steps = sorted({row["ode_steps"] for r in ok for row in r.get("ode_sweep", [])})
    fig, axes = plt.subplots(2, len(dists), figsize=(3.2 * len(dists), 5.6), squeeze=False)
    for j, dist in enumerate(dists):
        aeot = [r["between_modes_fraction"] for r in ok if r["model"] == "aeot" and r["dist"] == dist
                and "between_modes_fraction" in r]
        lines += [f"### {dist}", "", "| flow | " + " | ".join(f"{s} steps" for s in sweep_steps) + " | AE-OT |",
                  "|---" * (len(sweep_steps) + 2) + "|"]
        for i, flow in enumerate(flows):
            recs = [r for r in ok if r["model"] == flow and r["dist"] == dist and r.get("ode_sweep")]
            cells = []
            for s in sweep_steps:
                vals = [row["between_modes_fraction"] for r in recs for row in r["ode_sweep"] if row["ode_steps"] == s]
                cells.append(f"{100 * np.mean(vals):.1f}" if vals else "—")
            lines.append(f"| {flow} | " + " | ".join(cells) + f" | {100 * np.mean(aeot):.1f} |" if aeot else
                         f"| {flow} | " + " | ".join(cells) + " | — |")
            if recs:
                nfe = [row["nfe"] for row in recs[0]["ode_sweep"]]
                between = [np.mean([r["ode_sweep"][k]["between_modes_fraction"] for r in recs]) for k in range(len(nfe))]
                axes[0, j].plot(nfe, 100 * np.asarray(between), marker="o", ms=3, label=flow, color=f"C{i}")
            for r in recs:  # learning curves, one line per seed
                curve = _read_curve(r)
                pts = [(c["step"], 100 * c["between_modes_fraction"]) for c in curve if "between_modes_fraction" in c]
                if pts:
                    axes[1, j].plot(*zip(*pts), marker="o", ms=2, lw=0.8, color=f"C{i}",
                                    label=flow if r is recs[0] else None)
        for ax in axes[:, j]:
            if aeot:
                ax.axhline(100 * np.mean(aeot), ls="--", color="k", lw=0.8, label="AE-OT")
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
        axes[0, j].set_title(dist, fontsize=10)
        axes[0, j].set_xlabel("velocity evaluations (NFE)", fontsize=8)
        axes[1, j].set_xlabel("training step", fontsize=8)
        lines.append("")
    axes[0, 0].set_ylabel("% between modes", fontsize=9)
    axes[1, 0].set_ylabel("% between modes", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("flows: samples between modes against ODE resolution (top) and training (bottom)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure(fig, fig_path, dpi=90)
    lines += [f"![bridges]({fig_path.name})", ""]
    return lines


def _read_curve(record: dict) -> list[dict]:
    path = Path(record.get("out", "")) / "curves.json"
    return json.loads(path.read_text()) if path.is_file() else []


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


_CONTROL_LABELS = {"real": "*real* (held-out test digits)", "replay": "*replay* (training digits)",
                   "reconstructions": "*replay* (AE-OT's reconstructions of training digits)"}


def _with_pct(record: dict, pairs) -> dict:
    """A copy of ``record`` with each fraction ``src`` also as a percentage ``dst`` (for the tables)."""
    r = dict(record)
    for src, dst in pairs:
        if r.get(src) is not None:
            r[dst] = 100 * r[src]
    return r


def _control_beats_real(controls: list[dict], key: str, better: int) -> bool:
    """Does any replay control score ``key`` at least as well as the real control (``better`` = +1: higher)?"""
    real = next((c.get(key) for c in controls if c["model"] == "real"), None)
    if real is None:
        return False
    return any(c.get(key) is not None and better * (c[key] - real) >= 0
               for c in controls if c["model"] != "real")


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
                       budget: str = "", controls: list[dict] = (), dataset: str = "mnist",
                       name: str | None = None) -> Path:
    """``mnist.md`` (or ``fashion.md``, or ``name``.md): class coverage, FID, novelty of each model beside the
    controls."""
    name = name or dataset
    report_dir = Path(report_dir)
    title = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}[dataset]
    lines = _header(f"{title} class coverage: AE-OT vs the GAN family and latent flows", command)
    acc = next((r.get("classifier_test_accuracy") for r in records if r["status"] == "ok"), None)
    floor = next((r.get("fid_train_vs_test") for r in records if r["status"] == "ok"), None)
    lines += [f"Each model generates {title} images that the project's CNN classifier of that dataset "
              f"(`scripts/train_mnist_classifier.py --dataset {dataset}`, test accuracy {acc:.4f})" if acc is not None
              else f"Each model generates {title} images that the project's CNN classifier "
                   f"(`scripts/train_mnist_classifier.py --dataset {dataset}`)",
              "labels. Classes covered: classes predicted at least once (strict: >= 1/4 of the expected share); "
              "KL = KL(class histogram || uniform); FID on the classifier's 128-d penultimate features against "
              "the held-out test digits, a seeded random half of the test set (not comparable with Inception FIDs)"
              + (f"; 5,000 real training digits score FID {floor:.2f} (the floor)" if floor is not None else "")
              + ". Precision/recall: Kynkäänniemi et al. (k = 3) in the same features. Novelty "
              "(`otgen.eval.novelty`) in the classifier's features against the 60,000 training digits, with the "
              "held-out test digits as reference: *% copies* (within 1% of the training set's median "
              "nearest-neighbour spacing), *C_T* (Meehan et al.: ~0 like fresh data, << 0 copying, > 0 farther "
              "than fresh data), *NN ratio* (median nearest-training distance, generated / held-out); *code C_T* "
              "is the same test in AE-OT's code space. Control rows, scored by the same code: *real* (the test set's "
              "other half), *replay* (training digits "
              "resampled), *replay (reconstructions)* (training codes decoded by AE-OT's autoencoder: what "
              "\"decode the training codes\" scores). Latent flows (fm: independent coupling, otcfm: minibatch OT, "
              "sdfm: semi-discrete OT onto all training codes) train in the code space of the same autoencoder as "
              "AE-OT and are decoded by it; *NFE* = velocity evaluations of their fixed-step ODE sampler. "
              "*OT chi2*: the marginal chi-square error of AE-OT's semi-discrete map, measured by its fit-ot stage "
              "on 2^20 fresh i.i.d. samples (`ot_check.json`; sqrt(chi2) is the RMS relative error of a cell's "
              "mass). "
              "Mean ± sample std over seeds; wall time = training + generation " + _WALL_TIME_NOTE, ""]
    noun = "digits" if dataset == "mnist" else "images"  # Fashion-MNIST holds clothes, not digits
    lines = [line.replace("digits", noun) for line in lines]
    if budget:
        lines += [f"Budget: {budget}", ""]
    lines += ["| model | seeds ok | classes | strict | KL to uniform | FID | precision | recall | % copies | C_T | "
              "NN ratio | code C_T | % interpolated | OT chi2 | NFE | wall time (s) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    columns = [("classes_covered", 1), ("classes_covered_strict", 1), ("kl_uniform", 4), ("fid", 2),
               ("precision", 3), ("recall", 3), ("feature_copy_fraction_pct", 2), ("feature_data_copying_ct", 1),
               ("feature_nn_distance_ratio", 2), ("code_data_copying_ct", 1), ("interpolated_pct", 1),
               ("ot_check_chi2", 4), ("nfe", 0),
               ("wall_seconds", 0)]

    def with_pct(r):
        return _with_pct(r, (("feature_copy_fraction", "feature_copy_fraction_pct"),
                             ("interpolated_fraction", "interpolated_pct")))

    for c in controls:
        lines.append(_table_row(_CONTROL_LABELS.get(c["model"], c["model"]).replace("digits", noun), [with_pct(c)],
                                columns))
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
        verdict.append("Scored at least as well by a replay of the training set as by real held-out " + noun + ", so "
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
    _mnist_figure(records, models, report_dir / f"{name}_samples.png",
                  title=f"first 20 generated {'digits' if dataset == 'mnist' else 'images'} of each model (first seed)")
    lines += ["## Samples", "", f"![generated images]({name}_samples.png)", ""]
    path = report_dir / f"{name}.md"
    _atomic_text(path, "\n".join(lines))
    return path


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
        return _with_pct(r, (("code_copy_fraction", "code_copy_pct"), ("interpolated_fraction", "interpolated_pct")))

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
    aeot = [r for r in records if r["model"] == "aeot" and r.get("status") == "ok" and "code_copy_fraction" in r]
    if aeot:
        r = aeot[0]
        copying = r["code_data_copying_ct"] <= -3 or r["code_copy_fraction"] >= 0.01
        lines += [f"AE-OT novelty (seed {r['seed']}): {100 * r.get('interpolated_fraction', float('nan')):.1f}% of its "
                  f"codes interpolated, {100 * r['code_copy_fraction']:.1f}% are training codes, code C_T "
                  f"{r['code_data_copying_ct']:.1f} -> " + ("flagged as copying: its modes and KL are what decoding "
                                                             "the training codes earns (the reconstruction row)"
                                                             if copying else "not flagged as copying") + ".", ""]
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


