"""The report of ``otgen reproduce``: our numbers beside the published ones, with a verdict per row.

:func:`write_report` writes ``reproduction.md`` with ``reproduction_curves_<toy>.png`` and
``reproduction_samples.png`` from the records of :mod:`experiments.reproduce_collect`: each toy job
beside PacGAN's Table 1 (:data:`PUBLISHED`), judged by :func:`verdict` (*reproduced* when the mean HQ
is >= 90% and the mean mode count is within the published mean +- :data:`MODE_TOLERANCE`), with the
progress of jobs still running; and, once image jobs exist, an images section (published Stacked rows:
:data:`PUBLISHED_IMAGES`; the MNIST bar, :func:`fid_verdict`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from otgen.data import load
from otgen.eval.modes import mode_coverage_for_toy
from experiments.reproduce_collect import (IMAGE_CONTROL_FILES, collect, collect_image_controls,
                                                 collect_images)
from experiments.reproduce_jobs import DISTS, IMAGE_JOBS, IMAGE_REFERENCE_PRESET, image_config

__all__ = ["PUBLISHED", "PUBLISHED_IMAGES", "MODE_TOLERANCE", "FID_BAR", "verdict", "fid_verdict", "write_report"]


# PacGAN (Lin et al., NeurIPS 2018) Table 1, 10 trials each: modes (mean, std), % high quality, reverse KL.
PUBLISHED = {
    ("ring8", "gan"): dict(modes=(6.3, 0.5), hq=98.2, kl=(0.45, 0.09)),
    ("ring8", "pacgan2"): dict(modes=(7.9, 0.1), hq=95.6, kl=(0.07, None)),
    ("ring8", "pacgan3"): dict(modes=(7.8, 0.1), hq=97.7, kl=(0.10, None)),
    ("ring8", "pacgan4"): dict(modes=(7.8, 0.1), hq=95.9, kl=(0.07, None)),
    ("grid25", "gan"): dict(modes=(17.3, 0.8), hq=94.8, kl=(0.70, 0.07)),
    ("grid25", "pacgan2"): dict(modes=(23.8, 0.7), hq=91.3, kl=(0.13, None)),
    ("grid25", "pacgan3"): dict(modes=(24.6, 0.4), hq=94.2, kl=(0.06, None)),
    ("grid25", "pacgan4"): dict(modes=(24.8, 0.2), hq=93.6, kl=(0.04, None)),
}
# PacGAN Table 2 (Stacked MNIST in VEEGAN's setting, 10 trials, 26,000 samples): modes of 1,000, KL to uniform.
PUBLISHED_IMAGES = {
    ("stacked", "gan"): dict(modes=99.0, kl=3.40),
    ("stacked", "pacgan2"): dict(modes=1000.0, kl=0.06),
}
MODE_TOLERANCE = {"ring8": 1.5, "grid25": 3.0}
FID_BAR = 3.0  # MNIST: the GAN's FID within FID_BAR x AE-OT's (issue #14)


# The fields of an image row (a curve point, a reference run's or a control's metrics), in order.
_IMAGE_FIELDS = ("classes_covered", "modes_covered", "kl_uniform", "fid")


def _image_point(m: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {m[k]:.4g}" if isinstance(m[k], float) else f"{k.replace('_', ' ')} {m[k]}"
                     for k in _IMAGE_FIELDS if k in m)


def _reference_status(metrics: dict | None) -> str:
    """A reference run's status: finished, and whether its OT solve met its tolerance (a reference whose
    solve stopped early, e.g. at its time budget, is said to be one)."""
    if not metrics:
        return "running"
    if metrics.get("ot_converged", True):
        return "finished"
    # judged by the metric the solve stopped on (BrenierDiagnostics.as_metrics' ot_metric), as its summary is
    name, key = ("chi2", "ot_chi2") if metrics.get("ot_metric", "chi2") == "chi2" else ("L1", "ot_l1_error")
    return (f"finished; OT not converged ({metrics.get('ot_stop_reason', 'stopped early')}: {name} "
            f"{metrics[key]:.3g} > tol {metrics['ot_tol']:.3g})")


def fid_verdict(records: list[dict]) -> str | None:
    """The MNIST bar: the GAN's FID (final, else its last curve point) over AE-OT's reference FID."""
    gan = next((r for r in records if r["dataset"] == "mnist" and r["model"] == "gan"), None)
    ref = next((r for r in records if r["dataset"] == "mnist" and r["model"] == "aeot" and r["metrics"]), None)
    if gan is None or ref is None or not (gan["metrics"] or gan["curve"]):
        return None
    point = gan["metrics"] or gan["curve"][-1]
    ratio = point["fid"] / ref["metrics"]["fid"]
    at = "its final samples" if gan["metrics"] else f"step {gan['curve'][-1]['step']:,} of {gan['budget']:,}"
    met = ratio <= FID_BAR
    return (f"MNIST bar (the GAN's FID within {FID_BAR:g}x AE-OT's): gan FID {point['fid']:.1f} at {at} is "
            f"{ratio:.1f}x AE-OT's {ref['metrics']['fid']:.1f}: " +
            ("met" if met else "not met" + ("" if gan["metrics"] else " yet (still training; the curve says "
                                            "whether it is still falling)")))


def fid_protocol_note(dataset: str, points: list[dict]) -> str | None:
    """A warning when the FIDs of ``points`` (curve points, reference and control records) were scored
    against different references (``fid_reference``; records written before the test set was split at
    random have none), else None: such FIDs do not compare."""
    refs = {p.get("fid_reference", "all 10,000 test images (old protocol)") for p in points if "fid" in p}
    if len(refs) < 2:
        return None
    return (f"**{dataset}: FIDs on {len(refs)} evaluation protocols** ({'; '.join(sorted(refs))}): points scored "
            "against different references do not compare; read each protocol's points apart")


def _image_lines(records: list[dict], report_dir: Path, runs_dir: Path) -> list[str]:
    """The images section of the report: one row per run and per control, the MNIST bar, the curves."""
    from otgen.plotting import learning_curves  # matplotlib and JAX: loaded only to draw the figures

    lines = ["## Images: the DCGAN-family baselines at their authors' budgets", "",
             "`otgen reproduce --suite images` (`otgen mnist --preset paper`: MNIST `gan_mnist.py`'s 200,000 "
             "generator steps at batch 50; Stacked MNIST PacGAN's 100,000 iterations on its own nets, "
             "carpedm20's DCGAN at batch 64 with uniform 100-d noise and two generator updates per "
             "iteration, `otgen.training.IMAGE_PRESETS['stacked']`). Scored at the curve steps on the run's own "
             "draw (10,000 digits; 26,000 Stacked images): classes covered / modes of 1,000, KL to uniform, FID "
             "on the project's classifier features. AE-OT is the reference row, in `otgen mnist --preset "
             f"{IMAGE_REFERENCE_PRESET}`; the control rows (*real* held-out images, *replay* of the training set, "
             "AE-OT's reconstructions) are scored by the same code: what data itself and a copier score. "
             "Published Stacked rows: PacGAN Table 2 (10 trials). Train time: a GAN's checkpointed training "
             "seconds over all its calls, learning-curve evaluations included (the first one trains the "
             "project's classifier when it is not cached yet); AE-OT's: its stages' (OT solve "
             "included).", "",
             "| dataset | model | steps done / budget | train time | last curve point / final | published | status |",
             "|---|---|---|---|---|---|---|"]
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    controls = {dataset: collect_image_controls(runs_dir, dataset) for dataset in datasets}
    for dataset in datasets:
        for name, m in controls[dataset].items():
            lines.append(f"| {dataset} | *{IMAGE_CONTROL_FILES[dataset][name][0]}* | - | - | {_image_point(m)} | - | "
                         "control |")
        for r in (r for r in records if r["dataset"] == dataset):
            pub = PUBLISHED_IMAGES.get((r["dataset"], r["model"]))
            seconds = r["train_seconds"]
            hours = "-" if seconds is None else f"{seconds / 3600:.1f} h"
            published = "-" if pub is None else f"{pub['modes']:.0f} modes, KL {pub['kl']:.2f}"
            if r["model"] == "aeot":
                point = "-" if not r["metrics"] else "final: " + _image_point(r["metrics"])
                lines.append(f"| {dataset} | aeot (reference, preset {r['preset']}) | - | {hours} | {point} | - | "
                             f"{_reference_status(r['metrics'])} |")
                continue
            last = r["curve"][-1] if r["curve"] else None
            point = "-" if last is None else f"step {last['step']}: " + _image_point(last)
            lines.append(f"| {dataset} | {r['model']} | {r['step']:,} / {r['budget'] or 0:,} | {hours} | {point} | "
                         f"{published} | {'finished' if r['metrics'] else _image_running(r)} |")
        started = {r["model"] for r in records if r["dataset"] == dataset}
        for model in (m for d, m in IMAGE_JOBS if d == dataset and m not in started and m != "aeot"):  # said
            pub = PUBLISHED_IMAGES.get((dataset, model))
            published = "-" if pub is None else f"{pub['modes']:.0f} modes, KL {pub['kl']:.2f}"
            budget = image_config(runs_dir, dataset, model, 0).gan_steps
            lines.append(f"| {dataset} | {model} | 0 / {budget:,} | - | - | {published} | not started |")
    lines.append("")
    bar = fid_verdict(records)
    if bar:
        lines += [bar + ".", ""]
    for dataset in datasets:
        part = {r["model"]: r["curve"] for r in records if r["dataset"] == dataset and r["curve"]}
        note = fid_protocol_note(dataset, [p for c in part.values() for p in c]
                                 + [r["metrics"] for r in records if r["dataset"] == dataset and r["metrics"]]
                                 + list(controls[dataset].values()))
        if note:
            lines += [note + ".", ""]
        if part:
            reference = {f"{r['model']} (reference)": r["metrics"] for r in records
                         if r["dataset"] == dataset and r["model"] == "aeot" and r["metrics"]}
            if "real" in controls[dataset]:
                reference["real"] = controls[dataset]["real"]
            name = f"reproduction_curves_{dataset}.png"
            learning_curves(part, report_dir / name, reference=reference,
                            title=f"{dataset}: learning curves, seed 0 (dashed: AE-OT's reference run, real held-out data)")
            lines += [f"![{dataset} learning curves]({name})", ""]
    return lines


def _sampling(rec: dict) -> str:
    """How a row's generators were sampled: batch-norm running stats as trained, or refreshed first."""
    per_run = rec.get("sampling")
    if not per_run:
        return "-"
    name = {0: "training EMA"}
    labels = {k: name.get(v, f"refreshed ({v})") for k, v in per_run.items()}
    if len(set(labels.values())) == 1:
        return next(iter(labels.values()))
    return "; ".join(f"{k.rsplit('_', 1)[1]}: {v}" for k, v in sorted(labels.items()))


def verdict(rec: dict) -> str:
    pub = PUBLISHED.get((rec["dist"], rec["model"]))
    if "modes_captured" not in rec:
        return "not finished"
    if pub is None:
        return "no published row"
    modes, hq = rec["modes_captured"][0], 100 * rec["high_quality_fraction"][0]
    tol = MODE_TOLERANCE[rec["dist"]]
    reasons = []
    if hq < 90:
        reasons.append(f"HQ {hq:.1f}% < 90%")
    if abs(modes - pub["modes"][0]) > tol:
        reasons.append(f"modes {modes:.1f} outside {pub['modes'][0]} +- {tol}")
    return "reproduced" if not reasons else "not reproduced: " + "; ".join(reasons)


def _image_running(r: dict) -> str:
    """'running: 1.10 it/s over its calls, ~23 h to go at that rate; carried at 12,000': the rate is the
    checkpoint's steps over its summed training seconds (curve evaluations included, every call on whatever
    shared the cores), so the time to go is what the same machine would need."""
    step, seconds, budget = r["step"], r["train_seconds"], r["budget"] or 0
    text = "running"
    if step and seconds:
        rate = step / seconds
        text += f": {rate:.2f} it/s over its calls, ~{(budget - step) / rate / 3600:.0f} h to go at that rate"
    if r.get("carried"):
        text += "; resumed from a carry checkpoint at " + ", ".join(f"{s:,}" for s in r["carried"])
    return text


def _progress(name: str, meta: dict, budget: int | None = None) -> str:
    """'ring8_gan_s0 at step 30000 of 400000 (12.0 steps/s over its calls; last curve point: step 30000,
    8 modes, 94.8% HQ)': the rate is the checkpoint's steps over its summed training time, every call on
    whatever shared the cores then, so it is a lower bound on what a worker does alone."""
    step, seconds = int(meta.get("step", 0)), float(meta.get("seconds", 0.0))
    text = f"{name} at step {step}" + (f" of {budget}" if budget else "")
    notes = []
    if step and seconds > 0:
        notes.append(f"{step / seconds:.1f} steps/s over its calls")
    if meta.get("curve"):
        c = meta["curve"][-1]
        notes.append(f"last curve point: step {c['step']}, {c['modes_captured']} modes, "
                     f"{100 * c['high_quality_fraction']:.1f}% HQ")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _budget(model: str) -> int | None:
    """A toy job's step budget at its published preset (None for AE-OT, whose steps are the solver's)."""
    from otgen.training import GANConfig  # imports JAX: loaded on use (see experiments.reproduce)

    return None if model == "aeot" else GANConfig.for_toy(model, preset="published").steps


def _pm(value, scale=1.0, fmt="{:.1f}") -> str:
    if value is None:
        return "-"
    mean, std = value
    text = fmt.format(mean * scale)
    return text if std is None else f"{text} +- {fmt.format(std * scale)}"


def write_report(runs_dir: Path, report_dir: Path, command: str) -> Path:
    """``reproduction.md`` and its figures in ``report_dir``, from the run directories in ``runs_dir``."""
    # matplotlib and otgen.plotting (JAX): loaded only to draw the figures
    from otgen.plotting import learning_curves, save_figure, scatter_panel

    import matplotlib.pyplot as plt

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    records = collect(runs_dir)
    lines = ["# Reproduction: the GAN baselines at their authors' toy budgets", "",
             f"Generated by `{command}`. Each GAN runs in its own authors' 2-D setting "
             "(`otgen.training.TOY_PRESETS['published']`: PacGAN's code for GAN/PacGAN, 400,000 generator steps "
             "at batch 100 on 100,000 training points; `gan_toy.py` for WGAN-GP/WGAN, 100,000 steps at batch 256, "
             "lambda 0.1) and is scored on 2,500 samples (modes with a sample within 3 std, % of samples within "
             "3 std of a mode, reverse KL); ours: mean +- sample std over seeds. Published: PacGAN Table 1, "
             "mean +- std over 10 trials. Verdict: "
             "reproduced when HQ >= 90% and the mode count is within the published mean +- 1.5 (ring8) / +- 3 "
             "(grid25).", "",
             "| toy | model | steps | seeds | modes | HQ % | reverse KL | published modes | published HQ % | "
             "published KL | train time | BN stats at sampling | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        pub = PUBLISHED.get((rec["dist"], rec["model"]))
        if not rec["seeds"] and not rec["running"]:
            continue
        running = ", ".join(_progress(Path(k).name, m, _budget(rec["model"])) for k, m in rec["running"].items())
        train = rec.get("train_seconds")
        lines.append(
            f"| {rec['dist']} | {rec['model']} | {rec.get('steps') or '-'} | {rec['seeds']} | "
            f"{_pm(rec.get('modes_captured'))} | {_pm(rec.get('high_quality_fraction'), 100)} | "
            f"{_pm(rec.get('reverse_kl'), fmt='{:.2f}')} | "
            f"{'-' if pub is None else _pm(pub['modes'])} | {'-' if pub is None else pub['hq']} | "
            f"{'-' if pub is None else _pm(pub['kl'], fmt='{:.2f}')} | "
            f"{'-' if train is None else f'{train[0] / 60:.0f} min'}"
            f"{' (last call)' if rec.get('train_seconds_last_call') else ''} | {_sampling(rec)} | "
            f"{verdict(rec)}{' (running: ' + running + ')' if running else ''} |")
    lines += ["", "*BN stats at sampling*: PacGAN's evaluation (`pacgan_task.py` with `pacgan/extensions.py`) first "
              "runs the generator over 50 fresh batches in training mode at the final parameters, updating the "
              "batch-norm population statistics, and samples with those (*refreshed (50)*, "
              "`GANConfig.eval_bn_refresh`); *training EMA* samples with the running averages as training left them "
              "(runs finished before the refresh was implemented and kept without a checkpoint to re-score). "
              "Re-scored runs keep their earlier scores in `metrics.json` (`rescored.previous`).", "",
              "Train time is the wall time of a job's training steps summed over all its calls, resumes "
              "included (2 CPU cores, shared with other work; learning-curve evaluations included); *(last call)* "
              "marks a job whose earlier calls were not recorded (finished before the sum was kept, its checkpoint "
              "not committed): the time of its last call only. AE-OT's steps are OT solver steps; AE-OT, the "
              "reference row, trains in `otgen toy`'s default setting, on 2,000 points of the same toy (not the GANs' 100,000: its 2-D "
              "solve onto 100,000 targets does not converge in hours on this machine, see "
              "`experiments.reproduce.AEOT_PRESET`), and its train time includes the OT solve.", ""]

    curves = {f"{r['dist']} {r['model']}": next(iter(c for c in r["curves"].values() if c), [])
              for r in records if any(r["curves"].values())}
    if curves:
        for dist in DISTS:
            part = {k.split(" ", 1)[1]: v for k, v in curves.items() if k.startswith(dist + " ")}
            if part:
                ref = {m: {"modes_captured": PUBLISHED[(dist, m)]["modes"][0],
                           "high_quality_fraction": PUBLISHED[(dist, m)]["hq"] / 100}
                       for m in part if (dist, m) in PUBLISHED}
                learning_curves(part, report_dir / f"reproduction_curves_{dist}.png",
                                title=f"{dist}: learning curves, seed 0 (dashed: PacGAN Table 1)", reference=ref)
                lines += [f"![{dist} learning curves](reproduction_curves_{dist}.png)", ""]

    panels = _sample_panels(records)
    if panels:
        cols = max(1, max(sum(p[0] == d for p in panels) for d in DISTS))
        fig, axes = plt.subplots(len(DISTS), cols, figsize=(3.2 * cols, 6.4), squeeze=False)
        for row, dist in enumerate(DISTS):
            cells = [p for p in panels if p[0] == dist]
            for col, ax in enumerate(axes[row]):
                if col >= len(cells):
                    ax.axis("off")
                    continue
                _, title, samples, data = cells[col]
                scatter_panel(ax, samples, data, title=title)
        fig.tight_layout()
        save_figure(fig, report_dir / "reproduction_samples.png")
        lines += ["![samples over the training data](reproduction_samples.png)", "",
                  "A panel marked *running* shows a job still training: its latest checkpoint's generator, "
                  "sampled with the run's own key and scored as its learning curve is.", ""]
    images = collect_images(runs_dir)
    if images:
        lines += _image_lines(images, report_dir, runs_dir)
    path = report_dir / "reproduction.md"
    path.write_text("\n".join(lines))
    return path


def _sample_panels(records: list[dict]) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(toy, title, samples, training data) per (toy, model): the first finished seed's samples, else the
    first running seed's samples at its latest checkpoint."""
    from otgen.data import toys  # these import JAX: loaded on use (see experiments.reproduce)
    from otgen.pipelines.toy import ToyRunConfig, checkpoint_samples

    panels = []
    for rec in records:
        name = f"{rec['dist']} {rec['model']}"
        if rec["dirs"]:
            d = Path(rec["dirs"][0])
            title = (f"{name}\n{rec['modes_captured'][0]:.0f} modes, "
                     f"{100 * rec['high_quality_fraction'][0]:.1f}% HQ")
            panels.append((rec["dist"], title, np.load(d / "samples.npy"), _training_set(d, rec["dist"])))
        elif rec["running"] and rec["model"] != "aeot":
            d = Path(next(iter(rec["running"])))
            cfg = ToyRunConfig(**{**json.loads((d / "config.json").read_text())["config"]["run"], "out": str(d)})
            samples, step = checkpoint_samples(cfg)
            scores = mode_coverage_for_toy(samples, toys.get(rec["dist"]))
            title = (f"{name}, running: step {step:,}\n{scores['modes_captured']} modes, "
                     f"{100 * scores['high_quality_fraction']:.1f}% HQ")
            panels.append((rec["dist"], title, samples, _training_set(d, rec["dist"])))
    return panels


def _training_set(run: Path, dist: str) -> np.ndarray:
    """The job's ``data.npy``, or (committed copies keep no data) the same draw redone from its config."""
    if (run / "data.npy").exists():
        return np.load(run / "data.npy")
    cfg = json.loads((run / "config.json").read_text())["config"]["run"]
    return load(dist, "train", n=int(cfg["n_train"]), seed=int(cfg["seed"]))
