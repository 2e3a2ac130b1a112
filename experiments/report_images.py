"""The image reports of ``otgen compare``: MNIST / Fashion-MNIST (``mnist.md`` / ``fashion.md``) and Stacked
MNIST (``stacked.md``), with their sample figures, from collected records.

:func:`write_mnist_report` tabulates class coverage, FID, precision / recall and novelty of each model;
:func:`write_stacked_report` the modes and KL of each model's 26,000 samples beside real data (the
ceiling).  Both put the control rows (*real*, *replay*, *replay (reconstructions)*, scored by
:mod:`experiments.controls`) above the models and say in their verdicts which metrics a replay
of the training set wins (blind to copying).  The records come from
:mod:`experiments.compare_runs`; nothing in a report is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments.report_common import WALL_TIME_NOTE, atomic_text, header, mean_std_cell, table_row

__all__ = ["PUBLISHED_STACKED", "write_mnist_report", "write_stacked_report"]


# PacGAN paper (Lin et al. 2018), Stacked MNIST (Table 2); quoted for orientation only.
PUBLISHED_STACKED = ("PacGAN paper, Stacked MNIST (26,000 samples): DCGAN 99 modes / KL 3.40; "
                     "VEEGAN 150 / 2.95; PacDCGAN2 1000 / 0.06")
# control -> its row label (the image writers say "images" for "digits" outside MNIST)
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
    import matplotlib.pyplot as plt  # matplotlib and otgen.plotting (JAX): loaded only to draw a figure

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
    lines = header(f"{title} class coverage: AE-OT vs the GAN family and latent flows", command)
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
              "Mean ± sample std over seeds; wall time = training + generation " + WALL_TIME_NOTE, ""]
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
        lines.append(table_row(_CONTROL_LABELS.get(c["model"], c["model"]).replace("digits", noun), [with_pct(c)],
                                columns))
    verdict = []
    for model in models:
        recs = [with_pct(r) for r in records if r["model"] == model]
        ok = [r for r in recs if r["status"] == "ok"]
        lines.append(table_row(model, recs, columns))
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
    atomic_text(path, "\n".join(lines))
    return path


def write_stacked_report(reference: list[dict], report_dir: Path, command: str, records: list[dict] = (),
                         models: list[str] = (), budget: str = "", controls: list[dict] = ()) -> Path:
    """``stacked.md``: modes and KL of each model's 26,000 samples, beside those of real data (the ceiling)."""
    report_dir = Path(report_dir)
    lines = header("Stacked MNIST (1,000 modes): AE-OT vs the GAN family", command)
    lines += ["Training data: 128,000 images whose R, G, B channels are three MNIST training digits (one fixed "
              "draw for every model and seed). Modes: the digit triple the project's classifier reads in the three "
              "channels of each of 26,000 samples; KL = KL(mode histogram || uniform over 1,000); "
              "max share = the most frequent mode's fraction (uniform: 0.001). Novelty in AE-OT's code space "
              "(`otgen.eval.novelty`, against the 128,000 training codes, with the codes of 5,000 stacked test "
              "images as held-out reference): *code C_T* (~0 like fresh data, << 0 copying), *% code copies*, "
              "*code NN ratio*. Control rows, scored by the same code: *real* (fresh draws of three digits), "
              "*replay* (the training set resampled), *replay (reconstructions)* (training codes decoded by AE-OT's "
              "autoencoder). Mean ± sample std over seeds; wall time = training + generation "
              + WALL_TIME_NOTE, ""]
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
        lines.append(table_row("*real* Stacked MNIST (26,000 draws)",
                                [{k: v for k, v in r.items() if k != "wall_seconds"} for r in reference], columns))
    for c in controls:
        lines.append(table_row(_CONTROL_LABELS.get(c["model"], c["model"]).replace("digits", "images"),
                                [with_pct(c)], columns))
    for model in models:
        lines.append(table_row(model, [with_pct(r) for r in records if r["model"] == model], columns))
    if reference:
        lines += ["", "The real-data row checks the metric itself (true labels: "
                  f"{mean_std_cell([r['true_modes_covered'] for r in reference], 1)} modes, KL "
                  f"{mean_std_cell([r['true_kl_uniform'] for r in reference], 3)}): 26,000 draws over 1,000 equally "
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
    atomic_text(path, "\n".join(lines))
    return path
