"""The toy report of ``otgen compare --suite toy``: ``<name>.md`` and its figures, from collected records.

:func:`write_toy_report` takes the records :mod:`experiments.compare_runs` collects from the run
directories (each run's own ``metrics.json``) and the *real* / *replay* control rows
(:data:`CONTROLS`, scored by :func:`experiments.controls.toy_controls`), and writes one table
per toy, the verdicts ("What the numbers say"), the metrics a replay of the training set scores as
well as real data (blind to copying), PacGAN's published rows for orientation, and the figures:
samples over data, and, when flows ran, their between-modes fraction against ODE and training steps.
Nothing in a report is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from experiments.report_common import WALL_TIME_NOTE, atomic_text, header, mean_std_cell

__all__ = ["PUBLISHED_TOY", "CONTROLS", "FLOW_MODELS", "write_toy_report"]


# PacGAN paper (Lin et al. 2018), Table 1 (10 trials) and Table 3; quoted for orientation only.
PUBLISHED_TOY = {
    "ring8": "PacGAN paper (10 trials): GAN 6.3 modes / 98.2% HQ / KL 0.45; PacGAN2 7.9 / 95.6% / 0.07",
    "grid25": "PacGAN paper (10 trials): GAN 17.3 modes / 94.8% HQ / KL 0.70; PacGAN4 24.8 / 93.6% / 0.04",
}
# The toys' control rows, in table order (scored by experiments.controls.toy_controls).
CONTROLS = ("real", "replay")
# The flow models (otgen compare's runners know them too): the toy report gains a bridges section for them.
FLOW_MODELS = ("fm", "otcfm", "sdfm")


def _get_toy(name: str):
    from otgen.data import toys  # imports JAX: loaded on first use

    return toys.get(name)


def _toy_figure(records: list[dict], models: list[str], dists: list[str], path: Path,
                get_toy: Callable[[str], Any]) -> None:
    import matplotlib.pyplot as plt  # matplotlib and otgen.plotting (JAX): loaded only to draw a figure

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
        import jax  # heavy: only for a fresh draw when no run kept its data

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
    lines = header("Toy mode coverage: AE-OT vs " + ("the GAN family" if not flows else
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
              "wall time is training + sampling of the run's last call " + WALL_TIME_NOTE, ""]
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
            modes = mean_std_cell([r.get("modes_captured") for r in ok], 1) if n_modes else "—"
            strict = mean_std_cell([r.get("modes_captured_strict") for r in ok], 1) if n_modes else "—"
            hq = mean_std_cell([r.get("high_quality_fraction") for r in ok], 1, 100.0)
            hq += " | " + mean_std_cell([r.get("between_modes_fraction") for r in ok], 1, 100.0)
            kl = mean_std_cell([r.get("reverse_kl") for r in ok], 3) if n_modes else "—"
            wall = mean_std_cell([r.get("wall_seconds") for r in ok], 1) if model not in CONTROLS else "—"
            extra = " | ".join(mean_std_cell([r.get(k) for r in ok], d, sc) for k, d, sc in
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
    atomic_text(path, "\n".join(lines))
    return path


def _flow_bridges(records: list[dict], flows: list[str], dists: list[str], fig_path: Path) -> list[str]:
    """The flows' between-modes fraction against ODE steps (their ``ode_sweep``) and against training
    steps (their learning curves), beside AE-OT's: a table per toy and one figure."""
    import matplotlib.pyplot as plt  # matplotlib and otgen.plotting (JAX): loaded only to draw a figure

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
