"""``otgen ablation``'s outputs: the markdown table and the quality-novelty plane of its results."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from otgen.eval.mnist import REFERENCE_NAME
from experiments.ablation_rows import CONTROL_ROWS, FLOW_ROWS, REPORT_ORDER, jitter_factor, results_file, spacing_noise

__all__ = ["write_report", "plot_plane", "COLUMNS", "STACKED_COLUMNS"]

COLUMNS = [("classes", "classes_covered", "{:.0f}"), ("KL", "kl_uniform", "{:.4f}"), ("FID", "fid", "{:.2f}"),
           ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
           ("feature C_T", "feature_data_copying_ct", "{:.1f}"), ("feature z", "feature_nn_global_z", "{:.1f}"),
           ("feature NN ratio", "feature_nn_distance_ratio", "{:.2f}"),
           ("pixel C_T", "pixel_data_copying_ct", "{:.1f}"), ("pixel z", "pixel_nn_global_z", "{:.1f}"),
           ("pixel NN ratio", "pixel_nn_distance_ratio", "{:.2f}"),
           ("code C_T", "code_data_copying_ct", "{:.1f}"), ("code z", "code_nn_global_z", "{:.1f}"),
           ("code NN ratio", "code_nn_distance_ratio", "{:.2f}"), ("% code copies", "code_copy_fraction", "{:.2%}")]
# Stacked MNIST is scored by its 1,000 modes (otgen.eval.stacked) and in code space
STACKED_COLUMNS = [("modes", "modes_covered", "{:.0f}"), ("KL", "kl_uniform", "{:.3f}"),
                   ("max share", "max_mode_fraction", "{:.4f}"), *COLUMNS[-4:]]


def _cell(rec: dict, key: str, fmt: str) -> str:
    v = rec.get(key)
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v).replace("%", "")


def _describe_ae(ae: dict | None) -> str:
    if not ae:
        return "(not recorded)"
    return (f"{ae['latent_dim']}-d codes, conv channels {tuple(ae['features'])}, dense {ae['hidden']}, "
            f"{ae['loss']} loss, {ae['epochs']} epochs")


def _describe_gan(rec: dict, decoder: str = "gan") -> str:
    settings = (f"{rec['steps']:,} steps of batch {rec['batch_size']}, content weight {rec['content_weight']:g}, "
                f"discriminator width {rec['d_dim']}" + (f", seed {rec['seed']}" if rec.get("seed") else ""))
    pool = decoder.partition("@")[2]
    if pool:
        return (f", its decoder then fine-tuned as a GAN generator *on the codes of sampler `{pool}`* "
                f"(`otgen ablation --decoder {decoder}`, `otgen.training.decoder_gan`: {settings}; "
                f"{rec['seconds']:.0f} s); every row below, the reconstructions included, is decoded by that one "
                "decoder (cross-decoding: the same decoder for every sampler).")
    if decoder == "gan-own":
        return (f", its decoder then fine-tuned as a GAN generator *once per sampler row, on that sampler's own "
                f"codes* (`otgen ablation --decoder gan-own`, `otgen.training.decoder_gan`: {settings}; a pool of "
                "60,000 codes drawn apart from the scored ones; seconds in the notes); the controls are decoded "
                f"by the decoder tuned on the spacing rule's codes ({rec['seconds']:.0f} s).")
    return (f", its decoder then fine-tuned as AE-OT-GAN's generator (`otgen.training.decoder_gan`: "
            f"{settings}, on the spacing rule's codes, {rec['seconds']:.0f} s); every row "
            "below, the reconstructions included, is decoded by the fine-tuned decoder.")


def _metrics_text(dataset: str | None) -> str:
    if dataset == "stacked":
        return ("Metrics: *modes* (distinct digit triples the project's classifier reads in the three channels) / *KL* "
                "(mode histogram vs uniform over 1,000) / *max share* (most frequent mode's fraction; uniform 0.001) "
                "(`otgen.eval.stacked`), and novelty in the autoencoder's codes against the 128,000 training codes with "
                "the codes of 5,000 stacked test images as held-out reference: *C_T* (Meehan et al., cell-wise; ~0 "
                "like fresh data, << 0 copying), *z* (global Mann-Whitney z of nearest-training distances, generated vs "
                "held-out), *NN ratio* (median nearest-training distance over the held-out one), *% code copies*. "
                "Italic rows are controls scored by the same code: *real* is as many fresh stacks of MNIST *test* "
                "digits as every row, *reconstructions of held-out test images* those stacks encoded and decoded.")
    return ("Metrics (`otgen.eval`): classes / KL to uniform / FID / precision / recall in the project's classifier's "
            f"features against {REFERENCE_NAME}, the *held-out* images; novelty against the 60,000 training images "
            "with the held-out images as reference, in three spaces (classifier features, PCA-50 of pixels, the autoencoder's codes): "
            "*C_T* (Meehan et al., cell-wise; ~0 like fresh data, << 0 copying), *z* (the global Mann-Whitney z of "
            "nearest-training distances, generated vs held-out; |z| < 3 like fresh data), *NN ratio* (median "
            "nearest-training distance over the held-out one), *% code copies* (codes within 1% of the training "
            "spacing of a training code).  Italic rows are controls scored by the same code: *real* is the test "
            "set's other half (as many images as every row), *reconstructions of held-out test images* that half "
            "encoded and decoded (what a sampler of the true code distribution scores through this decoder).")


def write_report(results: dict, path, command: str) -> str:
    """The markdown table of ``results`` (:func:`run`'s), written to ``path``."""
    meta = results.get("meta", {})
    columns = STACKED_COLUMNS if meta.get("dataset") == "stacked" else COLUMNS
    lines = [f"# Latent samplers on one autoencoder: {meta.get('dataset')} ({meta.get('preset')} preset)", "",
             f"- Command: `{command}`",
             f"- Written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `otgen ablation` from "
             f"`{Path(meta.get('run_dir', '')).name}/{results_file(meta.get('decoder', 'autoencoder'), (meta.get('decoder_gan') or {}).get('seed', 0))}` (nothing typed by hand); machine: {meta.get('machine')}",
             f"- Autoencoder: {_describe_ae(meta.get('autoencoder'))}",
             f"- {meta.get('n')} samples per row, decoded by the run's autoencoder (test reconstruction MSE per pixel "
             f"{(meta.get('reconstruction') or {}).get('mse_per_pixel', float('nan')):.4f})"
             + (_describe_gan(meta["decoder_gan"], meta.get("decoder")) if meta.get("decoder_gan")
                else ".") , "",
             _metrics_text(meta.get("dataset")), "",
             "| row | " + " | ".join(c[0] for c in columns) + " | notes |",
             "|---" * (len(columns) + 2) + "|"]
    order = [f"*{c}*" for c in CONTROL_ROWS] + list(REPORT_ORDER) + list(FLOW_ROWS)
    for label, rec in sorted(results["rows"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        notes = []
        if "rule_kappa" in rec:
            noise = f"{rec['rule_noise']} noise, " if rec.get("rule_jitter") and "rule_noise" in rec else ""
            notes.append(f"kappa {rec['rule_kappa']:.2f}, {noise}jitter {rec['rule_jitter']:.2f}, "
                         f"acceptance {rec['rule_acceptance']:.0%}")
        if "local_scale" in rec:
            iso = f", {rec['local_iso']:.0%} isotropic" if rec.get("local_iso") else ""
            notes.append(f"local covariance of {rec['local_k']} codes x {rec['local_scale']:.2f}{iso}")
        if "interpolated_fraction" in rec:
            notes.append(f"{rec['interpolated_fraction']:.0%} interpolated")
        if "bandwidth" in rec:
            notes.append(f"bandwidth {rec['bandwidth']:.3f}")
        if "nfe" in rec:
            notes.append(f"{rec['steps']:,} training steps, NFE {rec['nfe']}")
        if "decoder_pool" in rec:
            notes.append(f"own decoder GAN ({rec['decoder_gan_seconds']:.0f} s)")
        lines.append(f"| {label} | " + " | ".join(_cell(rec, k, f) for _, k, f in columns) + f" | {'; '.join(notes)} |")
    text = "\n".join(lines) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return text


def _family(row: str) -> tuple[str, str]:
    """(family, point label) of a sampler row, for the quality-novelty plane."""
    if row.startswith("gmm"):
        return "GMM (components)", row[3:]
    if row.startswith("kde"):
        return "KDE (bandwidth x)", row[4:] or "1"
    if row == "local" or row.startswith("local-iso"):
        return "manifold Parzen windows (isotropic share)", row[len("local-iso"):] or "0"
    if jitter_factor(row) is not None:
        noise = "local covariance" if spacing_noise(row) == "local" else "edge noise"
        return f"AE-OT spacing rule, {noise} (jitter x)", f"{jitter_factor(row):g}"
    return row, ""


def plot_plane(results: dict, path, title: str = "", quality: str = "fid") -> Path:
    """``quality`` (FID; Stacked MNIST: ``kl_uniform``) against the code NN ratio (median nearest-training-code
    distance over held-out codes'; 0 a replay, ~1 fresh data) of every row in ``results``; controls as black
    markers.  Rows over 4x the decoder's ceiling (the held-out reconstructions) are named in the legend, not drawn."""
    from otgen.plotting import quality_novelty

    x_key, y_key = "code_nn_distance_ratio", quality
    rows = {k: r for k, r in results["rows"].items()
            if np.isfinite(r.get(x_key, np.nan)) and np.isfinite(r.get(y_key, np.nan))}
    ceiling = next((r[y_key] for k, r in rows.items() if k == f"*{CONTROL_ROWS[3]}*"), np.inf)
    families: dict[str, list] = {}
    controls, off = {}, []
    for label, rec in rows.items():
        if label.startswith("*"):
            if "held-out" in label:  # the replays sit at x = 0 and say nothing a line does not
                controls[label.strip("*")] = (rec[x_key], rec[y_key])
            continue
        if rec[y_key] > 4 * ceiling:
            off.append(f"{label} ({'FID' if y_key == 'fid' else y_key} {rec[y_key]:.3g})")
            continue
        fam, lab = _family(label)
        families.setdefault(fam, []).append((rec[x_key], rec[y_key], lab))
    names = {"sd-map": "sd-map (the semi-discrete map: a replay)", "aeot-angle": "AE-OT, angle rule",
             "fm": "flow matching (fm)", "sdfm": "semi-discrete flow matching (sdfm)"}
    families = {names.get(k, k): v for k, v in families.items()}
    return quality_novelty(families, controls, path, title=title + (f"\noff scale: {', '.join(off)}" if off else ""),
                           xlabel="code NN ratio: median nearest-training-code distance / held-out codes' "
                                  "(0 = replay, ~1 = like fresh data)",
                           ylabel="FID" if y_key == "fid" else "KL of the modes to uniform")
