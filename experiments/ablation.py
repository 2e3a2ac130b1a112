"""``otgen ablation``: every latent sampler on one autoencoder's codes, in one table.

Takes a finished ``otgen mnist`` AE-OT run directory (its autoencoder, training codes and
semi-discrete map) and samples new codes from each of:

* ``gaussian``, ``gmm10``, ``gmm100``, ``kde`` -- ex-post densities of the codes
  (:mod:`otgen.generators.latent`; Ghosh et al. 2020); any ``gmm<k>``, ``kde@<scale>``, ``local-iso<share>`` too;
* ``aeot-spacing`` -- AE-OT with the spacing rule (:mod:`otgen.ot.spacing`, the default: noise with the
  codes' local covariance); ``aeot-edges`` the same rule with its earlier noise along the admissible edges;
  ``aeot-spacing@<f>`` / ``aeot-edges@<f>`` with ``f`` times the calibrated jitter;
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

``--decoder gan`` scores the same rows through a decoder fine-tuned as AE-OT-GAN's generator
(:mod:`otgen.training.decoder_gan`, trained in ``decoder_gan/`` on the spacing rule's codes, resumable)
and keeps them apart, in ``ablation_decoder_gan.json``: every sampler and the reconstruction controls see
the same tuned decoder, so the table says what the sampler adds once the decoder is sharpened.
``--decoder gan-own`` is the fair form of that comparison: each sampler row is decoded by a decoder GAN
tuned (same settings) on *its own* sampler's codes (``decoder_gan_own/<row>/``; AE-OT's spacing row reuses
``decoder_gan/``, whose pool is the same draw), the controls by AE-OT's; results in
``ablation_decoder_gan_own.json``.  ``--decoder gan@<row>`` decodes every row with the decoder GAN tuned on
sampler ``<row>``'s codes (cross-decoding: the same decoder for every sampler; ``ablation_decoder_gan@<row>.json``),
and ``--decoder-gan-seed n`` trains the decoder GANs apart (directories and results file suffixed ``_seed<n>``):
their run-to-run spread.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
import zlib

import jax
import numpy as np

from otgen.data.stacked import N_SAMPLES as N_STACKED_SAMPLES, load_stacked
from otgen.eval import evaluate
from otgen.eval.mnist import HELD_OUT, REAL_CONTROL, REFERENCE_NAME, prefixed_novelty
from otgen.data.mnist import to_unit_float
from otgen.pipelines.mnist_aeot import GAN_POOL, POOL_SALT, aeot_pool, decoder_gan_config, load_ae_params, tune_decoder
from otgen.pipelines.mnist_config import MnistConfig, ot_options
from otgen.pipelines.mnist_evaluate import code_reference
from otgen.pipelines.mnist_rundir import DECODER_GAN_DIR, GAN_DIR, LATENTS_FILE, keys, load_images, load_train_images, to_uint8
from experiments.ablation_report import plot_plane, write_report
from experiments.ablation_rows import (CONTROL_ROWS, DECODERS, FLOW_ROWS, SAMPLER_ROWS, check_decoder, check_rows,
                                       jitter_factor, results_file, spacing_noise)
from otgen.checkpoint import load_metadata
from otgen.generators.aeot import AEOT, EXTENSION_FILE, ExtensionOptions
from otgen.generators.latent import is_sampler, make_sampler
from otgen.models.autoencoder import decode_batched
from otgen.rundir import RunDir
from otgen.training import GAN_MODELS
from otgen.training.decoder_gan import DecoderGANConfig
from otgen.training.loop import resume_path

__all__ = ["run", "gan_decoder", "main", "add_arguments"]

FLOWS_DIR = "ablation_flows"
OWN_DECODERS_DIR = "decoder_gan_own"  # --decoder gan-own: one decoder GAN per sampler row, in <row>/
EVAL_DRAW, POOL_DRAW = 2, POOL_SALT  # salts of a sampler's scored codes and of a decoder GAN's pool (the run's)


def _decode(model, params, codes) -> np.ndarray:
    return to_uint8(decode_batched(model, params, np.asarray(codes, np.float32), 1000))


def _codes(name: str, cfg, train_codes: np.ndarray, key, n: int, calibrated: dict,
           draw: int = EVAL_DRAW) -> tuple[np.ndarray, dict]:
    """``n`` new codes from sampler ``name`` and what it reports of itself.  ``calibrated`` holds the run's
    AE-OT with the calibrated spacing rule once it has been set up (one calibration serves every
    ``aeot-spacing@<f>`` row) and each latent sampler once fitted (its scored draw and its decoder GAN's
    pool come from one fit).  ``draw`` salts the draw: :data:`EVAL_DRAW` the scored samples,
    :data:`POOL_DRAW` a decoder GAN's pool (the same fitted sampler, other codes)."""
    if is_sampler(name):
        # one fit per row and key: the scored draw and a decoder GAN's pool share it (a GMM's fit takes minutes)
        fit_key = ("sampler", name, np.asarray(jax.random.key_data(key)).tobytes())
        if fit_key not in calibrated:
            calibrated[fit_key] = make_sampler(name).fit(train_codes, jax.random.fold_in(key, 1))
        sampler = calibrated[fit_key]
        return sampler.sample(jax.random.fold_in(key, draw), n), sampler.info()
    if name in FLOW_ROWS:
        return _flow_codes(name, cfg, train_codes, key, n, draw)
    factor, noise = jitter_factor(name), spacing_noise(name)
    if factor is not None:
        aeot = _spacing_aeot(cfg, calibrated, noise)
        if factor != 1.0:
            jitter = factor * aeot.latent_map.spacing_rule.jitter
            aeot = _load_aeot(cfg, ExtensionOptions(rule="spacing", top_k=cfg.top_k, jitter=jitter, noise=noise))
    else:
        rule = {"aeot-angle": ExtensionOptions(rule="angle", angle_threshold=cfg.angle_threshold, top_k=cfg.top_k),
                "sd-map": ExtensionOptions(rule="angle", angle_threshold=0.0, top_k=cfg.top_k)}[name]
        aeot = _load_aeot(cfg, rule)  # the run's map and barycentres; only the rule is set up anew
    # AE-OT draws as the run's generate stage does; its pool as the run's tune-decoder stage does
    generate = keys(cfg.seed)["generate"]
    codes, moved = aeot.sample_codes(generate if draw == EVAL_DRAW else jax.random.fold_in(generate, draw), n,
                                     return_interpolated=True)
    info = {k: v for k, v in aeot.info().items() if k.startswith("rule") or k in ("angle_threshold",)}
    extra = {"rule_jitter_factor": factor} if factor is not None else {}
    return codes, {**info, **extra, "interpolated_fraction": float(np.mean(moved))}


def _flow_codes(name: str, cfg, train_codes: np.ndarray, key, n: int, draw: int = EVAL_DRAW) -> tuple[np.ndarray, dict]:
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
    codes = np.asarray(flow.sample(jax.random.fold_in(key, draw), n), np.float32)
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


def run(run_dir: str, *, data_dir=None, n: int | None = None, rows=SAMPLER_ROWS, seed: int = 0,
        progress: bool = True, rescore=(), decoder: str = "autoencoder", decoder_gan=None, gan_runs=()) -> dict:
    """Score every sampler of ``rows`` and the controls on the AE-OT run in ``run_dir``; results are
    saved row by row in ``ablation.json`` there (a rerun skips the rows already scored with the same
    ``n`` and FID reference, and rescores the others and those named in ``rescore``).  ``n`` defaults
    to the real control's size, so that every row's FID and precision / recall see as many images
    (Stacked MNIST: 26,000, the protocol's, scored by modes and KL; its real control is as many fresh
    stacks of test digits).  ``decoder="gan"``: decode with the decoder fine-tuned by :func:`gan_decoder` (``decoder_gan``: fields of
    its :class:`~otgen.training.decoder_gan.DecoderGANConfig` to change), results in ``ablation_decoder_gan.json``.
    ``gan_runs``: ``otgen mnist --model <gan family>`` run directories whose latest checkpoint (or carry) is
    sampled and scored beside the samplers (:func:`_gan_row`), the baseline a sampler must beat."""
    from otgen.models.autoencoder import encode_batched

    rows = check_rows(rows)
    decoder = check_decoder(decoder)
    gan_seed = int((decoder_gan or {}).get("seed", 0))
    if gan_seed < 0:
        raise ValueError(f"the decoder GAN's seed must be >= 0, got {gan_seed}")
    results_name = results_file(decoder, gan_seed)
    rd = RunDir(run_dir)
    if not rd.has("config.json"):
        raise ValueError(f"{run_dir}: no config.json (not an otgen mnist run directory)")
    cfg = _stored_config(rd, data_dir, progress)
    if cfg.model != "aeot" or not rd.has(EXTENSION_FILE):
        raise ValueError(f"{run_dir}: needs a finished AE-OT fit-ot stage (autoencoder, codes, map)")
    if cfg.dataset not in ("mnist", "fashion", "stacked"):
        raise ValueError(f"the ablation scores mnist, fashion or stacked runs, not {cfg.dataset}")
    stacked = cfg.dataset == "stacked"
    if stacked and (decoder != "autoencoder" or gan_runs):
        raise ValueError("on Stacked MNIST the ablation decodes with the autoencoder only (no decoder GAN, no GAN rows)")
    if n is None:
        n = N_STACKED_SAMPLES if stacked else len(REAL_CONTROL)
    model, params, _ = load_ae_params(rd, cfg)
    train_images = load_train_images(cfg)
    calibrated: dict = {}
    tuning = None
    key = jax.random.key(seed)
    train_codes = rd.load_array(LATENTS_FILE)
    if decoder != "autoencoder":  # gan, gan-own (its controls): AE-OT's tuned decoder; gan@<row>: <row>'s
        pool_row = decoder.partition("@")[2] or "aeot-spacing"
        params, tuning = own_decoder(pool_row, cfg, train_codes, _row_key(key, pool_row), calibrated, decoder_gan,
                                     train_images, progress)
    # which decoder a row was scored with: a decoder GAN trained on (more steps, other weights) rescores them all
    decoder_id = None if tuning is None else {k: v for k, v in tuning.items() if k not in ("history", "seconds")}
    results = rd.read_json(results_name) if rd.has(results_name) else {"rows": {}}
    # the control half itself, and its reconstructions (Stacked: n fresh stacks, like every row)
    fixed_size = set() if stacked else {f"*{CONTROL_ROWS[0]}*", f"*{CONTROL_ROWS[3]}*"}
    stale = [k for k, r in results["rows"].items()
             if k in rescore or r.get("fid_reference") != (None if stacked else REFERENCE_NAME)  # Stacked: no FID
             or r.get("decoder_gan") != decoder_id
             or r.get("n_samples") != (len(REAL_CONTROL) if k in fixed_size else n)]
    if stale and progress:
        print(f"[otgen ablation] rescoring {len(stale)} stored rows (asked, or other n, FID reference or decoder): "
              f"{', '.join(stale)}")
    for k in stale:
        del results["rows"][k]
    test = load_images(cfg, "test")
    code_ref = code_reference(train_codes, encode_batched(model, params, to_unit_float(test[HELD_OUT]), 1000))
    rng = np.random.default_rng(seed)
    real = load_stacked("test", cfg.data_dir, n=n)[0] if stacked else test[REAL_CONTROL]
    idx = rng.integers(0, len(train_codes), n)
    real_codes = encode_batched(model, params, to_unit_float(real), 1000)
    controls = dict(zip(CONTROL_ROWS, [(real, real_codes), (train_images[idx], train_codes[idx]),
                                       (_decode(model, params, train_codes[idx]), train_codes[idx]),
                                       (_decode(model, params, real_codes), real_codes)]))
    for label, make in [*((f"*{k}*", lambda k=k: (*controls[k], {})) for k in controls),
                        *((r, lambda r=r: _sampled(r, cfg, train_codes, key, n, model, params, calibrated,
                                                   own=(decoder_gan, train_images) if decoder == "gan-own" else None))
                          for r in rows),
                        *((_gan_label(g), lambda g=g: _gan_row(g, data_dir, n, model, params)) for g in gan_runs)]:
        if label in results["rows"]:
            continue
        t0 = time.perf_counter()
        images, codes, info = make()
        record = {**evaluate(cfg.dataset, images, data_dir=cfg.data_dir),
                  **prefixed_novelty("code_", codes, code_ref), **info,
                  **({"decoder_gan": decoder_id} if decoder_id else {}), "seconds": time.perf_counter() - t0}
        results["rows"][label] = record
        rd.write_json(results_name, results)
        if progress:
            quality = (f"modes {record['modes_covered']}, KL {record['kl_uniform']:.3f}" if stacked else
                       f"FID {record['fid']:.2f}, feature C_T {record['feature_data_copying_ct']:.1f}")
            print(f"[otgen ablation] {label}: {quality}, code C_T {record['code_data_copying_ct']:.1f}, "
                  f"code z {record['code_nn_global_z']:.1f} ({record['seconds']:.0f} s)", flush=True)
        if label == "aeot-spacing":
            from otgen.plotting import image_grid

            suffix = "" if decoder == "autoencoder" else f"_decoder_{decoder}" + (f"_seed{gan_seed}" if gan_seed else "")
            image_grid(images[:100], rd.file(f"ablation_aeot_spacing_samples{suffix}.png"), nrow=10)
    results["meta"] = {"run_dir": str(rd.path), "dataset": cfg.dataset, "preset": cfg.preset, "n": n,
                       "autoencoder": {**dataclasses.asdict(cfg.ae), "epochs": cfg.ae_epochs},
                       "machine": f"{platform.machine()} {platform.system()}, JAX {jax.default_backend()}",
                       "reconstruction": rd.read_json("reconstruction.json") if rd.has("reconstruction.json") else None,
                       "decoder": decoder,
                       **({"decoder_gan": {k: v for k, v in tuning.items() if k != "history"}} if tuning else {})}
    rd.write_json(results_name, results)
    return results


def _spacing_aeot(cfg, calibrated: dict, noise: str = "local") -> AEOT:
    """The run's AE-OT with the calibrated spacing rule (its ``noise``), set up once and kept in ``calibrated``."""
    if noise not in calibrated:
        calibrated[noise] = _load_aeot(cfg, ExtensionOptions(rule="spacing", top_k=cfg.top_k, noise=noise))
    return calibrated[noise]


def _tuning(cfg, overrides: dict | None) -> DecoderGANConfig:
    """The run's own tune-decoder settings when it has them, else DecoderGANConfig's; ``overrides`` win."""
    return dataclasses.replace(decoder_gan_config(cfg, cfg.decoder_gan_steps or DecoderGANConfig().steps),
                               **(overrides or {}))


def gan_decoder(cfg, calibrated: dict, overrides: dict | None = None, train_u8=None,
                progress: bool = True) -> tuple[dict, dict]:
    """The run's autoencoder parameters with the decoder fine-tuned as AE-OT-GAN's generator on the
    calibrated spacing rule's codes (:func:`~otgen.pipelines.mnist_aeot.tune_decoder`: read from
    ``decoder_gan/`` (``decoder_gan_seed<n>/`` for a decoder-GAN seed n != 0), else trained or resumed
    there on ``train_u8``), and the training record."""
    rd, tuning = RunDir(cfg.out), _tuning(cfg, overrides)
    return tune_decoder(rd, cfg, lambda: aeot_pool(_spacing_aeot(cfg, calibrated), cfg), tuning, train_u8,
                        progress, workdir=rd.file(_seeded(DECODER_GAN_DIR, tuning.seed)))


def _seeded(workdir: str, seed: int) -> str:
    """A decoder GAN's directory: seed 0's is the plain one (what the runs have always used)."""
    return workdir if not seed else f"{workdir}_seed{seed}"


def _gan_label(run_dir) -> str:
    """``gan (paper preset, step 30,200)``: the model, its preset and the step of its latest checkpoint."""
    cfg = _stored_config(RunDir(run_dir), None, False)
    step = load_metadata(resume_path(RunDir(RunDir(run_dir).file(GAN_DIR))))["step"]
    return f"{cfg.model} ({cfg.preset} preset, step {step:,})"


def _gan_row(run_dir, data_dir, n: int, model, params) -> tuple[np.ndarray, np.ndarray, dict]:
    """``n`` images of the GAN-family run in ``run_dir`` at its latest checkpoint, drawn as its ``generate``
    stage draws them; their codes are this autoencoder's encodings of them (a GAN has no codes)."""
    from otgen.pipelines.mnist_baselines import gan_config
    from otgen.generators.gan import GAN
    from otgen.models.autoencoder import encode_batched

    rd = RunDir(run_dir)
    cfg = _stored_config(rd, data_dir, False)
    if cfg.model not in GAN_MODELS:
        raise ValueError(f"{run_dir}: not a GAN-family otgen mnist run (model {cfg.model})")
    gan = GAN.load(rd.file(GAN_DIR), gan_config(cfg))
    images = to_uint8(gan.sample(keys(cfg.seed)["generate"], n))
    codes = encode_batched(model, params, to_unit_float(images), 1000)
    return images, codes, {"gan_run": str(rd.path), "gan_step": int(gan.result.state.step), "codes": "encoded images"}


def _stored_config(rd, data_dir, progress: bool):
    """The run's own :class:`~otgen.pipelines.mnist.MnistConfig`, as its config.json recorded it."""
    from otgen.models.autoencoder import AEConfig

    stored = rd.read_json("config.json")["config"]
    names = {f.name for f in dataclasses.fields(MnistConfig)}
    fields = {k: v for k, v in stored.items() if k in names and k not in MnistConfig.RUNTIME_FIELDS}
    fields["ae"] = AEConfig(**stored["ae"])
    return MnistConfig(**fields, out=str(rd.path), data_dir=data_dir, progress=progress)


def _sampled(name, cfg, train_codes, key, n, model, params, calibrated, own=None):
    """Row ``name``'s codes, decoded by ``params``; with ``own = (decoder_gan overrides, training images)`` by
    a decoder GAN tuned on the row's own codes instead (:func:`own_decoder`)."""
    row_key = _row_key(key, name)
    codes, info = _codes(name, cfg, train_codes, row_key, n, calibrated)
    if own is not None:
        params, record = own_decoder(name, cfg, train_codes, row_key, calibrated, *own)
        info = {**info, "decoder_pool": name, "decoder_gan_seconds": record["seconds"]}
    return _decode(model, params, codes), codes, info


def _row_key(key, name: str):
    """Row ``name``'s key: salted by its place in SAMPLER_ROWS, else by its name (stable across runs)."""
    return jax.random.fold_in(key, SAMPLER_ROWS.index(name) if name in SAMPLER_ROWS else zlib.crc32(name.encode()))


def own_decoder(name: str, cfg, train_codes, row_key, calibrated: dict, overrides: dict | None = None,
                train_u8=None, progress: bool = True) -> tuple[dict, dict]:
    """The run's autoencoder with its decoder fine-tuned as a GAN generator on codes of sampler ``name``
    itself (a draw apart from the scored one, as many as the run's tune-decoder pool), in
    ``decoder_gan_own/<name>/`` (resumable); AE-OT's spacing row is the run's own ``decoder_gan/``."""
    if name == "aeot-spacing":
        return gan_decoder(cfg, calibrated, overrides, train_u8, progress)
    rd, tuning = RunDir(cfg.out), _tuning(cfg, overrides)
    return tune_decoder(rd, cfg, lambda: _codes(name, cfg, train_codes, row_key, GAN_POOL, calibrated, draw=POOL_DRAW)[0],
                        tuning, train_u8, progress, workdir=rd.file(_seeded(f"{OWN_DECODERS_DIR}/{name}", tuning.seed)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished otgen mnist AE-OT run directory (autoencoder, codes, map)")
    parser.add_argument("--data-dir", default=None, help="the dataset's IDX files (as otgen mnist)")
    parser.add_argument("--n", type=int, default=None,
                        help=f"samples per row (default {len(REAL_CONTROL):,}: the real control's size; Stacked "
                             f"MNIST {N_STACKED_SAMPLES:,})")
    parser.add_argument("--rows", default=",".join(SAMPLER_ROWS), help="comma-separated samplers "
                        f"(default {','.join(SAMPLER_ROWS)}; also {','.join(FLOW_ROWS)}, gmm<k>, kde@<scale>, local-iso<share>, "
                        "aeot-spacing@<f>)")
    parser.add_argument("--report", default=None, help="markdown report to write (default: none)")
    parser.add_argument("--plot", default=None, help="PNG of the quality-novelty plane to write (default: none)")
    parser.add_argument("--rescore", default="", help="comma-separated rows to score anew although stored "
                        "(e.g. after a change of the sampler's code)")
    parser.add_argument("--decoder", default="autoencoder", metavar="{" + ",".join(sorted(DECODERS)) + ",gan@ROW}",
                        help="decode with the autoencoder's decoder; gan: with it fine-tuned as AE-OT-GAN's generator "
                             "on AE-OT's codes (RUN/decoder_gan/, resumable; results in ablation_decoder_gan.json); "
                             "gan-own: each sampler row with a decoder GAN tuned on its own codes "
                             "(RUN/decoder_gan_own/<row>/; results in ablation_decoder_gan_own.json); gan@ROW: every "
                             "row with the decoder GAN tuned on sampler ROW's codes (cross-decoding; results in "
                             "ablation_decoder_gan@ROW.json)")
    parser.add_argument("--decoder-gan-steps", "--gan-steps", dest="gan_steps", type=int, default=None,
                        help="decoder GAN steps (default: the run's own tune-decoder setting, else "
                             "otgen.training.decoder_gan.DecoderGANConfig's)")
    parser.add_argument("--decoder-gan-content-weight", "--gan-content-weight", dest="gan_content_weight",
                        type=float, default=None,
                        help="weight of the paired reconstruction loss (default: DecoderGANConfig's)")
    parser.add_argument("--decoder-gan-seed", dest="gan_seed", type=int, default=None,
                        help="the decoder GANs' seed (default 0); another seed trains them apart (directories and "
                             "results file suffixed _seed<n>): the run-to-run spread of a decoder GAN")
    parser.add_argument("--gan-runs", default="", help="comma-separated otgen mnist GAN-family run directories, "
                        "each scored at its latest checkpoint (or carry) as a baseline row")
    parser.add_argument("--quiet", action="store_true")


def main(args: argparse.Namespace) -> int:
    rows = check_rows([r for r in args.rows.split(",") if r])
    if args.n is not None and args.n < 100:
        raise ValueError(f"--n must be >= 100, got {args.n}")
    tuning, gan_flags = None, ""
    if args.decoder != "autoencoder":
        tuning = {k: v for k, v in (("steps", args.gan_steps), ("content_weight", args.gan_content_weight),
                                    ("seed", args.gan_seed)) if v is not None}
        gan_flags = f" --decoder {args.decoder}" + "".join(f" --decoder-gan-{k.replace('_', '-')} {v:g}" for k, v in tuning.items())
    results = run(args.run_dir, data_dir=args.data_dir, n=args.n, rows=rows, progress=not args.quiet,
                  rescore=tuple(r for r in args.rescore.split(",") if r), decoder=args.decoder, decoder_gan=tuning,
                  gan_runs=tuple(g for g in args.gan_runs.split(",") if g))
    if args.report:
        cmd = (f"otgen ablation {args.run_dir} --data-dir DATA_DIR" + (f" --n {args.n}" if args.n else "")
               + f" --rows {','.join(rows)}{gan_flags}"
               + (f" --gan-runs {args.gan_runs}" if args.gan_runs else "")
               + f" --report {args.report}" + (f" --plot {args.plot}" if args.plot else ""))
        print(write_report(results, args.report, cmd))
    if args.plot:
        meta = results.get("meta", {})
        plot_plane(results, args.plot, title=f"{meta.get('dataset')}: latent samplers on one autoencoder "
                                             f"({meta.get('n')} samples per point)",
                   quality="kl_uniform" if meta.get("dataset") == "stacked" else "fid")
    return 0
