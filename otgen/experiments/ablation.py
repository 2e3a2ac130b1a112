"""``otgen ablation``: every latent sampler on one autoencoder's codes, in one table.

Takes a finished ``otgen mnist`` AE-OT run directory (its autoencoder, training codes and
semi-discrete map) and samples new codes from each of:

* ``gaussian``, ``gmm10``, ``gmm100``, ``kde`` -- ex-post densities of the codes
  (:mod:`otgen.generators.latent`; Ghosh et al. 2020); any ``gmm<k>`` and ``kde@<scale>`` too;
* ``aeot-spacing`` -- AE-OT with the spacing rule (:mod:`otgen.ot.spacing`, the default);
  ``aeot-spacing@<f>`` with ``f`` times its calibrated jitter;
* ``aeot-angle`` -- AE-OT with the paper's dihedral-angle rule (the run's ``--angle-threshold``);
* ``sd-map`` -- the pure semi-discrete map (every sample a training code: a replay through OT's cells);
* ``fm``, ``sdfm`` -- latent flow matching (:mod:`otgen.generators.flow`, ``otgen mnist``'s settings for
  its ``--model fm`` / ``sdfm`` rows) trained on the same codes in ``ablation_flows/<row>/`` (resumable);
  ``sdfm`` regresses onto the run's own semi-discrete map (its ``brenier.npz``), so it and AE-OT share one map;

decodes them with the same decoder and scores them with :func:`otgen.eval.evaluate` (classes, KL,
FID, precision / recall, novelty in classifier features and in pixel PCA-50) and the code-space
novelty, beside four control rows scored by the same code: real held-out digits, a replay of
training digits, the autoencoder's reconstructions of training images and of held-out digits (what
a sampler that drew the true code distribution would score through this decoder).  Writes
``ablation.json`` in the run directory, a markdown report, and (``--plot``) the quality-novelty
plane: FID against the codes' nearest-training distance ratio, one line per sampler family as its
parameter moves.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
import zlib
from pathlib import Path

import jax
import numpy as np

from otgen.eval import evaluate
from otgen.eval.mnist import HELD_OUT, REAL_CONTROL, REFERENCE_NAME, prefixed_novelty
from otgen.experiments.mnist_aeot import load_ae_params
from otgen.experiments.mnist_config import MnistConfig, ot_options
from otgen.experiments.mnist_evaluate import code_reference
from otgen.experiments.mnist_rundir import LATENTS_FILE, keys, load_images, load_train_images, to_uint8
from otgen.generators.aeot import AEOT, EXTENSION_FILE, ExtensionOptions
from otgen.generators.latent import is_sampler, make_sampler
from otgen.rundir import RunDir

__all__ = ["run", "write_report", "main", "add_arguments", "SAMPLER_ROWS"]

SAMPLER_ROWS = ("gaussian", "gmm10", "gmm100", "kde", "sd-map", "aeot-angle", "aeot-spacing")
FLOW_ROWS = ("fm", "sdfm")  # asked for by name: each trains a network (minutes), see _flow_codes
FLOWS_DIR = "ablation_flows"
CONTROL_ROWS = ("real (held-out test images)", "replay (training images)", "reconstructions of training images",
                "reconstructions of held-out test images")
RESULTS_FILE = "ablation.json"


def _decode(model, params, codes) -> np.ndarray:
    from otgen.models.autoencoder import decode_batched

    return to_uint8(decode_batched(model, params, np.asarray(codes, np.float32), 1000))


def jitter_factor(name: str) -> float | None:
    """``f`` of a row ``aeot-spacing@<f>`` (1 for ``aeot-spacing``), None for other rows."""
    if name == "aeot-spacing":
        return 1.0
    if name.startswith("aeot-spacing@"):
        try:
            f = float(name[len("aeot-spacing@"):])
        except ValueError:
            return None
        return f if f >= 0 else None
    return None


def check_rows(rows) -> tuple[str, ...]:
    """``rows`` if every name is a known row, else a ValueError naming the unknown ones."""
    unknown = [r for r in rows if not (r in SAMPLER_ROWS + FLOW_ROWS or is_sampler(r) or jitter_factor(r) is not None)]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose from {', '.join(SAMPLER_ROWS + FLOW_ROWS)}, gmm<k>, "
                         "kde@<scale>, aeot-spacing@<jitter factor>")
    return tuple(rows)


def _codes(name: str, cfg, train_codes: np.ndarray, key, n: int, calibrated: dict) -> tuple[np.ndarray, dict]:
    """``n`` new codes from sampler ``name`` and what it reports of itself.  ``calibrated`` holds the run's
    AE-OT with the calibrated spacing rule once it has been set up (one calibration serves every
    ``aeot-spacing@<f>`` row)."""
    if is_sampler(name):
        sampler = make_sampler(name).fit(train_codes, jax.random.fold_in(key, 1))
        return sampler.sample(jax.random.fold_in(key, 2), n), sampler.info()
    if name in FLOW_ROWS:
        return _flow_codes(name, cfg, train_codes, key, n)
    factor = jitter_factor(name)
    if factor is not None and "aeot" not in calibrated:
        calibrated["aeot"] = _load_aeot(cfg, ExtensionOptions(rule="spacing", top_k=cfg.top_k))
    if factor == 1.0:
        aeot = calibrated["aeot"]
    else:
        if factor is not None:
            jitter = factor * calibrated["aeot"].latent_map.spacing_rule.jitter
            rule = ExtensionOptions(rule="spacing", top_k=cfg.top_k, jitter=jitter)
        else:
            rule = {"aeot-angle": ExtensionOptions(rule="angle", angle_threshold=cfg.angle_threshold, top_k=cfg.top_k),
                    "sd-map": ExtensionOptions(rule="angle", angle_threshold=0.0, top_k=cfg.top_k)}[name]
        aeot = _load_aeot(cfg, rule)  # the run's map and barycentres; only the rule is set up anew
    codes, moved = aeot.sample_codes(keys(cfg.seed)["generate"], n, return_interpolated=True)
    info = {k: v for k, v in aeot.info().items() if k.startswith("rule") or k in ("angle_threshold",)}
    extra = {"rule_jitter_factor": factor} if factor is not None else {}
    return codes, {**info, **extra, "interpolated_fraction": float(np.mean(moved))}


def _flow_codes(name: str, cfg, train_codes: np.ndarray, key, n: int) -> tuple[np.ndarray, dict]:
    """A latent flow trained on the codes (resumed from ``ablation_flows/<name>/``) and ``n`` codes from it.
    ``sdfm`` takes the run's own whitening and semi-discrete map (N(0, I) onto the whitened codes) as its
    coupling rather than solving the same problem again."""
    import shutil

    from otgen.generators.aeot import MAP_FILE, WHITENING_FILE
    from otgen.generators.flow import make as make_flow

    rd = RunDir(cfg.out)
    workdir = rd.file(f"{FLOWS_DIR}/{name}")
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "sdfm":
        if not (cfg.whiten and cfg.ot_source == "gaussian"):
            raise ValueError(f"{cfg.out}: sdfm shares AE-OT's map only when it maps N(0, I) onto whitened codes "
                             f"(this run: ot_source {cfg.ot_source}, whiten {cfg.whiten})")
        for f in (WHITENING_FILE, MAP_FILE):  # the map last: the flow takes the pair once the map exists
            if not (workdir / f).exists():
                shutil.copyfile(rd.file(f), workdir / f)
    flow = make_flow(name, "images", shape=(train_codes.shape[1],), steps=cfg.flow_steps, seed=cfg.seed,
                     progress=cfg.progress)
    flow.fit(train_codes, jax.random.fold_in(key, 1), workdir)
    info = flow.info()
    codes = np.asarray(flow.sample(jax.random.fold_in(key, 2), n), np.float32)
    return codes, {k: v for k, v in info.items() if k in ("coupling", "steps", "train_seconds", "nfe", "ode_method",
                                                          "ode_steps", "ot_converged", "ot_chi2")}


def _load_aeot(cfg, rule: ExtensionOptions) -> AEOT:
    """The run's fitted AE-OT with ``rule``: map and barycentres from the run directory, the rule set up
    on them in memory (the run directory's own extension file is left as it is)."""
    from otgen.generators.aeot import (EXTENSION_FILE, MAP_FILE, WHITENING_FILE, Whitening, _load_extension,
                                       rule_key, set_rule)
    from otgen.ot import BrenierMap

    rd = RunDir(cfg.out)
    aeot = AEOT(ot=ot_options(cfg), extension=rule)
    aeot.whitening = Whitening.load(rd.file(WHITENING_FILE))
    ext, _ = _load_extension(rd.file(EXTENSION_FILE), BrenierMap.load(rd.file(MAP_FILE)))
    ext = set_rule(ext.with_threshold(rule.angle_threshold), rule, aeot.whitening, rule_key(keys(cfg.seed)["ot"]))
    aeot.latent_map = ext
    return aeot


def run(run_dir: str, *, data_dir=None, n: int = len(REAL_CONTROL), rows=SAMPLER_ROWS, seed: int = 0,
        progress: bool = True, rescore=()) -> dict:
    """Score every sampler of ``rows`` and the controls on the AE-OT run in ``run_dir``; results are
    saved row by row in ``ablation.json`` there (a rerun skips the rows already scored with the same
    ``n`` and FID reference, and rescores the others and those named in ``rescore``).  ``n`` defaults
    to the real control's size, so that every row's FID and precision / recall see as many images."""
    from otgen.data.mnist import to_unit_float
    from otgen.models.autoencoder import encode_batched

    rows = check_rows(rows)
    rd = RunDir(run_dir)
    if not rd.has("config.json"):
        raise ValueError(f"{run_dir}: no config.json (not an otgen mnist run directory)")
    cfg = _stored_config(rd, data_dir, progress)
    if cfg.model != "aeot" or not rd.has(EXTENSION_FILE):
        raise ValueError(f"{run_dir}: needs a finished AE-OT fit-ot stage (autoencoder, codes, map)")
    if cfg.dataset not in ("mnist", "fashion"):
        raise ValueError(f"the ablation scores mnist or fashion runs, not {cfg.dataset}")
    results = rd.read_json(RESULTS_FILE) if rd.has(RESULTS_FILE) else {"rows": {}}
    fixed_size = {f"*{CONTROL_ROWS[0]}*", f"*{CONTROL_ROWS[3]}*"}  # the control half itself, and its reconstructions
    stale = [k for k, r in results["rows"].items()
             if k in rescore or r.get("fid_reference") != REFERENCE_NAME
             or r.get("n_samples") != (len(REAL_CONTROL) if k in fixed_size else n)]
    if stale and progress:
        print(f"[otgen ablation] rescoring {len(stale)} stored rows (asked, or other n or FID reference): "
              f"{', '.join(stale)}")
    for k in stale:
        del results["rows"][k]
    model, params, _ = load_ae_params(rd, cfg)
    train_codes = rd.load_array(LATENTS_FILE)
    test = load_images(cfg, "test")
    train_images = load_train_images(cfg)
    code_ref = code_reference(train_codes, encode_batched(model, params, to_unit_float(test[HELD_OUT]), 1000))
    rng = np.random.default_rng(seed)
    real = test[REAL_CONTROL]
    idx = rng.integers(0, len(train_codes), n)
    real_codes = encode_batched(model, params, to_unit_float(real), 1000)
    controls = dict(zip(CONTROL_ROWS, [(real, real_codes), (train_images[idx], train_codes[idx]),
                                       (_decode(model, params, train_codes[idx]), train_codes[idx]),
                                       (_decode(model, params, real_codes), real_codes)]))
    key = jax.random.key(seed)
    calibrated: dict = {}
    for label, make in [*((f"*{k}*", lambda k=k: (*controls[k], {})) for k in controls),
                        *((r, lambda r=r: _sampled(r, cfg, train_codes, key, n, model, params, calibrated))
                          for r in rows)]:
        if label in results["rows"]:
            continue
        t0 = time.perf_counter()
        images, codes, info = make()
        record = {**evaluate(cfg.dataset, images, data_dir=cfg.data_dir),
                  **prefixed_novelty("code_", codes, code_ref), **info,
                  "seconds": time.perf_counter() - t0}
        results["rows"][label] = record
        rd.write_json(RESULTS_FILE, results)
        if progress:
            print(f"[otgen ablation] {label}: FID {record['fid']:.2f}, feature C_T {record['feature_data_copying_ct']:.1f}, "
                  f"code C_T {record['code_data_copying_ct']:.1f}, code z {record['code_nn_global_z']:.1f} "
                  f"({record['seconds']:.0f} s)", flush=True)
        if label == "aeot-spacing":
            from otgen.plotting import image_grid

            image_grid(images[:100], rd.file("ablation_aeot_spacing_samples.png"), nrow=10)
    results["meta"] = {"run_dir": str(rd.path), "dataset": cfg.dataset, "preset": cfg.preset, "n": n,
                       "autoencoder": {**dataclasses.asdict(cfg.ae), "epochs": cfg.ae_epochs},
                       "machine": f"{platform.machine()} {platform.system()}, JAX {jax.default_backend()}",
                       "reconstruction": rd.read_json("reconstruction.json") if rd.has("reconstruction.json") else None}
    rd.write_json(RESULTS_FILE, results)
    return results


def _stored_config(rd, data_dir, progress: bool):
    """The run's own :class:`~otgen.experiments.mnist.MnistConfig`, as its config.json recorded it."""
    from otgen.models.autoencoder import AEConfig

    stored = rd.read_json("config.json")["config"]
    names = {f.name for f in dataclasses.fields(MnistConfig)}
    fields = {k: v for k, v in stored.items() if k in names and k not in MnistConfig.RUNTIME_FIELDS}
    fields["ae"] = AEConfig(**stored["ae"])
    return MnistConfig(**fields, out=str(rd.path), data_dir=data_dir, progress=progress)


def _sampled(name, cfg, train_codes, key, n, model, params, calibrated):
    salt = SAMPLER_ROWS.index(name) if name in SAMPLER_ROWS else zlib.crc32(name.encode())  # stable across runs
    codes, info = _codes(name, cfg, train_codes, jax.random.fold_in(key, salt), n, calibrated)
    return _decode(model, params, codes), codes, info


COLUMNS = [("classes", "classes_covered", "{:.0f}"), ("KL", "kl_uniform", "{:.4f}"), ("FID", "fid", "{:.2f}"),
           ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
           ("feature C_T", "feature_data_copying_ct", "{:.1f}"), ("feature z", "feature_nn_global_z", "{:.1f}"),
           ("feature NN ratio", "feature_nn_distance_ratio", "{:.2f}"),
           ("pixel C_T", "pixel_data_copying_ct", "{:.1f}"), ("pixel z", "pixel_nn_global_z", "{:.1f}"),
           ("pixel NN ratio", "pixel_nn_distance_ratio", "{:.2f}"),
           ("code C_T", "code_data_copying_ct", "{:.1f}"), ("code z", "code_nn_global_z", "{:.1f}"),
           ("code NN ratio", "code_nn_distance_ratio", "{:.2f}"), ("% code copies", "code_copy_fraction", "{:.2%}")]


def _cell(rec: dict, key: str, fmt: str) -> str:
    v = rec.get(key)
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v).replace("%", "")


def _describe_ae(ae: dict | None) -> str:
    if not ae:
        return "(not recorded)"
    return (f"{ae['latent_dim']}-d codes, conv channels {tuple(ae['features'])}, dense {ae['hidden']}, "
            f"{ae['loss']} loss, {ae['epochs']} epochs")


def write_report(results: dict, path, command: str) -> str:
    """The markdown table of ``results`` (:func:`run`'s), written to ``path``."""
    meta = results.get("meta", {})
    lines = [f"# Latent samplers on one autoencoder: {meta.get('dataset')} ({meta.get('preset')} preset)", "",
             f"- Command: `{command}`",
             f"- Written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `otgen ablation` from "
             f"`{Path(meta.get('run_dir', '')).name}/{RESULTS_FILE}` (nothing typed by hand); machine: {meta.get('machine')}",
             f"- Autoencoder: {_describe_ae(meta.get('autoencoder'))}",
             f"- {meta.get('n')} samples per row, decoded by the run's autoencoder (test reconstruction MSE per pixel "
             f"{(meta.get('reconstruction') or {}).get('mse_per_pixel', float('nan')):.4f}).", "",
             "Metrics (`otgen.eval`): classes / KL to uniform / FID / precision / recall in the project's classifier's "
             f"features against {REFERENCE_NAME}, the *held-out* images; novelty against the 60,000 training images "
             "with the held-out images as reference, in three spaces (classifier features, PCA-50 of pixels, the autoencoder's codes): "
             "*C_T* (Meehan et al., cell-wise; ~0 like fresh data, << 0 copying), *z* (the global Mann-Whitney z of "
             "nearest-training distances, generated vs held-out; |z| < 3 like fresh data), *NN ratio* (median "
             "nearest-training distance over the held-out one), *% code copies* (codes within 1% of the training "
             "spacing of a training code).  Italic rows are controls scored by the same code: *real* is the test "
             "set's other half (as many images as every row), *reconstructions of held-out test images* that half "
             "encoded and decoded (what a sampler of the true code distribution scores through this decoder).", "",
             "| row | " + " | ".join(c[0] for c in COLUMNS) + " | notes |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    order = [f"*{c}*" for c in CONTROL_ROWS] + list(SAMPLER_ROWS) + list(FLOW_ROWS)
    for label, rec in sorted(results["rows"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        notes = []
        if "rule_kappa" in rec:
            notes.append(f"kappa {rec['rule_kappa']:.2f}, jitter {rec['rule_jitter']:.2f}, "
                         f"acceptance {rec['rule_acceptance']:.0%}")
        if "interpolated_fraction" in rec:
            notes.append(f"{rec['interpolated_fraction']:.0%} interpolated")
        if "bandwidth" in rec:
            notes.append(f"bandwidth {rec['bandwidth']:.3f}")
        if "nfe" in rec:
            notes.append(f"{rec['steps']:,} training steps, NFE {rec['nfe']}")
        lines.append(f"| {label} | " + " | ".join(_cell(rec, k, f) for _, k, f in COLUMNS) + f" | {'; '.join(notes)} |")
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
    if jitter_factor(row) is not None:
        return "AE-OT spacing rule (jitter x)", f"{jitter_factor(row):g}"
    return row, ""


def plot_plane(results: dict, path, title: str = "") -> Path:
    """FID against the code NN ratio (median nearest-training-code distance over held-out codes'; 0 a
    replay, ~1 fresh data) of every row in ``results``; controls as black markers.  Rows with an FID
    over 4x the decoder's ceiling (the held-out reconstructions) are named in the legend, not drawn."""
    from otgen.plotting import quality_novelty

    x_key, y_key = "code_nn_distance_ratio", "fid"
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
            off.append(f"{label} (FID {rec[y_key]:.0f})")
            continue
        fam, lab = _family(label)
        families.setdefault(fam, []).append((rec[x_key], rec[y_key], lab))
    names = {"sd-map": "sd-map (the semi-discrete map: a replay)", "aeot-angle": "AE-OT, angle rule",
             "fm": "flow matching (fm)", "sdfm": "semi-discrete flow matching (sdfm)"}
    families = {names.get(k, k): v for k, v in families.items()}
    return quality_novelty(families, controls, path, title=title + (f"\noff scale: {', '.join(off)}" if off else ""),
                           xlabel="code NN ratio: median nearest-training-code distance / held-out codes' "
                                  "(0 = replay, ~1 = like fresh data)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished otgen mnist AE-OT run directory (autoencoder, codes, map)")
    parser.add_argument("--data-dir", default=None, help="the dataset's IDX files (as otgen mnist)")
    parser.add_argument("--n", type=int, default=len(REAL_CONTROL),
                        help=f"samples per row (default {len(REAL_CONTROL):,}: the real control's size)")
    parser.add_argument("--rows", default=",".join(SAMPLER_ROWS), help="comma-separated samplers "
                        f"(default {','.join(SAMPLER_ROWS)}; also {','.join(FLOW_ROWS)}, gmm<k>, kde@<scale>, "
                        "aeot-spacing@<f>)")
    parser.add_argument("--report", default=None, help="markdown report to write (default: none)")
    parser.add_argument("--plot", default=None, help="PNG of the quality-novelty plane to write (default: none)")
    parser.add_argument("--rescore", default="", help="comma-separated rows to score anew although stored "
                        "(e.g. after a change of the sampler's code)")
    parser.add_argument("--quiet", action="store_true")


def main(args: argparse.Namespace) -> int:
    rows = check_rows([r for r in args.rows.split(",") if r])
    if args.n < 100:
        raise ValueError(f"--n must be >= 100, got {args.n}")
    results = run(args.run_dir, data_dir=args.data_dir, n=args.n, rows=rows, progress=not args.quiet,
                  rescore=tuple(r for r in args.rescore.split(",") if r))
    if args.report:
        cmd = (f"otgen ablation {args.run_dir} --data-dir DATA_DIR --n {args.n} --rows {','.join(rows)} "
               f"--report {args.report}" + (f" --plot {args.plot}" if args.plot else ""))
        print(write_report(results, args.report, cmd))
    if args.plot:
        meta = results.get("meta", {})
        plot_plane(results, args.plot, title=f"{meta.get('dataset')}: latent samplers on one autoencoder "
                                             f"({meta.get('n')} samples per point)")
    return 0
