"""AE-OT's stages of ``otgen mnist``: ``train-ae`` (or its adoption from ``--ae-from``) and ``encode``,
which the latent flows share, then ``fit-ot`` (semi-discrete OT onto the codes and the extension,
:class:`otgen.generators.aeot.AEOT`, with an independent check of the map) and ``generate`` (new codes
by the extension, decoded).  Each stage reads and writes the run directory
(:mod:`otgen.pipelines.mnist_rundir`).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import optax

from otgen.checkpoint import load_pytree, save_pytree
from otgen.data.mnist import to_unit_float
from otgen.pipelines.mnist_config import MnistConfig, extension_options, ot_options
from otgen.pipelines.mnist_rundir import (AE_FILE, AE_STATE_FILE, DECODER_GAN_DIR, GEN_LATENTS_FILE,
                                            GENERATION_FILE, LATENTS_FILE, OT_CHECK_FILE, STAGES_FILE, keys,
                                            load_images, load_train_images, log, stage_done, to_uint8)
from otgen.generators.aeot import AEOT, EXTENSION_FILE
from otgen.models.autoencoder import (decode_batched, encode_batched, init_train_state,
                                      make_autoencoder, reconstruction_mse)
from otgen.ot.optim import chi2_noise_at
from otgen.ot.problems import independent_error
from otgen.rundir import RunDir
from otgen.training.autoencoder import fit_autoencoder
from otgen.training.decoder_gan import DecoderGANConfig, finetune_decoder, load_finetuned

__all__ = ["load_ae_params", "load_decoder_params", "stage_train_ae", "adopt_ae_stage", "stage_encode",
           "stage_fit_ot", "fitted_aeot", "tune_decoder", "stage_tune_decoder", "stage_generate_aeot", "AE_ARTEFACTS",
           "aeot_pool", "OT_CHECK_SAMPLES", "DECODER_GAN_DIR", "GAN_POOL", "POOL_SALT"]

OT_CHECK_SAMPLES = 1 << 20  # chi2 noise 2 sqrt(K) / N: 4.7e-4 at K = 60,000
GAN_POOL = 60_000  # generated codes the decoder GAN draws its batches from
POOL_SALT = 7  # the pool's draw: fold_in(generate key, POOL_SALT), apart from the generate stage's own


# ----------------------------------------------------------------------------------------------
# the autoencoder


def _ae_parts(cfg: MnistConfig):
    model = make_autoencoder(cfg.ae)
    optimizer = optax.adam(cfg.ae_lr)
    template = init_train_state(keys(cfg.seed)["ae_init"], model, optimizer)
    return model, optimizer, template


def load_ae_params(rd, cfg: MnistConfig):
    model, _, template = _ae_parts(cfg)
    if not rd.has(AE_FILE):
        raise ValueError(f"{rd.file(AE_FILE)} is missing: run the train-ae stage first")
    params, meta = load_pytree(rd.file(AE_FILE), like=template.params)
    return model, params, meta


def stage_train_ae(rd, cfg: MnistConfig, train_u8: np.ndarray) -> float:
    """Train (or resume) the autoencoder; returns its training seconds summed over every call."""
    from otgen.plotting import image_grid, loss_curves  # matplotlib: loaded only to draw a figure

    model, optimizer, state = _ae_parts(cfg)
    start, history, before = 0, [], 0.0
    if rd.has(AE_STATE_FILE):  # resume mid-training from the last finished epoch
        state, meta = load_pytree(rd.file(AE_STATE_FILE), like=state)
        start, history = int(meta["epoch"]), list(meta["history"])
        before = float(meta.get("seconds", 0.0))  # the earlier calls' training time
        log(cfg, f"train-ae: resuming after epoch {start}/{cfg.ae_epochs}")
    t0 = time.perf_counter()

    def checkpoint(epoch, st, metrics):
        history.append(metrics)
        save_pytree(rd.file(AE_STATE_FILE), st, {"epoch": epoch + 1, "history": history,
                                                 "seconds": before + time.perf_counter() - t0})
        log(cfg, f"train-ae: epoch {epoch + 1}/{cfg.ae_epochs} loss {metrics['loss']:.4f} mse {metrics['mse']:.4f}")

    x = to_unit_float(train_u8)
    state, _ = fit_autoencoder(keys(cfg.seed)["ae_shuffle"], x, model, optimizer, cfg.ae, state,
                               epochs=cfg.ae_epochs, batch_size=cfg.ae_batch, start_epoch=start,
                               on_epoch_end=checkpoint, progress=cfg.progress)
    # Held-out reconstruction error and figure (test split; fall back to training images if absent).
    try:
        test_u8 = load_images(cfg, "test")
        held_out = "test"
    except (FileNotFoundError, ValueError):
        test_u8, held_out = train_u8, "train"
    test_mse = reconstruction_mse(model, state.params, to_unit_float(test_u8))
    shown = to_unit_float(test_u8[:50])
    recon = decode_batched(model, state.params, encode_batched(model, state.params, shown))
    pairs = np.concatenate([np.stack([shown[r * 10:(r + 1) * 10], recon[r * 10:(r + 1) * 10]]) for r in range(5)])
    image_grid(pairs.reshape((-1,) + shown.shape[1:]), rd.file("reconstruction.png"), nrow=10,
               title=f"{held_out} digits (odd rows) and reconstructions (even rows), MSE {test_mse:.4f}")
    if history:
        loss_curves({"step": [h["epoch"] for h in history], "loss": [h["loss"] for h in history],
                     "mse": [h["mse"] for h in history]}, rd.file("ae_loss.png"), title="autoencoder (per epoch)")
    rd.write_json("reconstruction.json", {"split": held_out, "mse_per_pixel": test_mse, "n": int(len(test_u8))})
    save_pytree(rd.file(AE_FILE), state.params,
                {"ae": dataclasses.asdict(cfg.ae), "epochs": cfg.ae_epochs, "recon_mse": test_mse,
                 "recon_split": held_out})
    log(cfg, f"train-ae: done, {held_out} reconstruction MSE per pixel {test_mse:.5f}")
    return before + time.perf_counter() - t0


AE_ARTEFACTS = {"train-ae": (AE_FILE, "reconstruction.json", "reconstruction.png", "ae_loss.png"),
                "encode": (LATENTS_FILE,)}


def adopt_ae_stage(rd, cfg: MnistConfig, stage: str) -> float:
    """Copy ``stage``'s artefacts (train-ae or encode) from the run directory ``cfg.ae_from``, after
    checking that it trained the same autoencoder; returns the seconds that run spent on the stage (so a
    model's wall time still counts its autoencoder)."""
    src = RunDir(cfg.ae_from)
    if not src.has("config.json"):
        raise ValueError(f"--ae-from {cfg.ae_from}: no config.json there")
    theirs = src.read_json("config.json").get("config", {})
    ours = cfg.identity()
    differ = [k for k in MnistConfig.AE_FIELDS if theirs.get(k) != ours[k]]
    if differ:
        raise ValueError(f"--ae-from {cfg.ae_from} trained another autoencoder: its "
                         + ", ".join(f"{k}={theirs.get(k)!r}" for k in differ) + " differ from this run's "
                         + ", ".join(f"{k}={ours[k]!r}" for k in differ))
    if not stage_done(src, cfg, stage):
        raise ValueError(f"--ae-from {cfg.ae_from} has not finished its {stage} stage")
    for name in AE_ARTEFACTS[stage]:
        if src.has(name):
            rd.copy_from(src.file(name), name)
    log(cfg, f"{stage}: taken from {cfg.ae_from}")
    return float(src.read_json(STAGES_FILE)[stage]["seconds"])


def stage_encode(rd, cfg: MnistConfig, train_u8: np.ndarray) -> None:
    model, params, _ = load_ae_params(rd, cfg)
    # Batches of 1000 images: memory stays O(batch), whatever the number of images.
    z = np.concatenate([encode_batched(model, params, to_unit_float(train_u8[i:i + 5000]), 1000)
                        for i in range(0, len(train_u8), 5000)])
    rd.save_array(LATENTS_FILE, z.astype(np.float32))
    log(cfg, f"encode: {z.shape[0]} codes of dimension {z.shape[1]}")


# ----------------------------------------------------------------------------------------------
# the latent map


def stage_fit_ot(rd, cfg: MnistConfig) -> None:
    """AE-OT's latent map (:class:`otgen.generators.aeot.AEOT` on the cached codes): semi-discrete
    OT onto the codes and the extension, saved in the run directory as they are made."""
    if not rd.has(LATENTS_FILE):
        raise ValueError(f"{rd.file(LATENTS_FILE)} is missing: run the encode stage first")
    z = rd.load_array(LATENTS_FILE)
    model = AEOT(ot=ot_options(cfg), extension=extension_options(cfg))
    log(cfg, f"fit-ot: semi-discrete OT onto {len(z)} codes, then the extension's cell barycentres")
    model.fit_codes(z, keys(cfg.seed)["ot"], rd.path, progress=None if cfg.progress else False)
    bmap = model.latent_map.bmap
    diag = bmap.diagnostics
    if not rd.has(OT_CHECK_FILE):
        t0 = time.perf_counter()
        chk = independent_error(bmap, jax.random.fold_in(keys(cfg.seed)["ot"], 1), OT_CHECK_SAMPLES)
        rd.write_json(OT_CHECK_FILE, {"ot_check_chi2": chk.chi2,
                                      "ot_check_noise_chi2": chi2_noise_at(0.0, bmap.num_targets, chk.num_samples),
                                      "ot_check_l1": chk.l1, "ot_check_noise_l1": chk.noise_l1,
                                      "ot_check_samples": chk.num_samples,
                                      "ot_check_seconds": time.perf_counter() - t0})
    chk = rd.read_json(OT_CHECK_FILE)
    log(cfg, f"fit-ot: independent check on {chk['ot_check_samples']} fresh i.i.d. samples: chi2 "
             f"{chk['ot_check_chi2']:.4g} +- {chk['ot_check_noise_chi2']:.2g} (RMS relative cell-mass error "
             f"{np.sqrt(max(chk['ot_check_chi2'], 0)):.1%})")
    if diag.history.l1:
        verdict = diag.as_metrics()
        log(cfg, f"fit-ot: {len(z)} codes, {diag.summary()}; estimated chi2 "
                 f"{verdict['ot_chi2']:.3g}, noise {verdict['ot_noise_chi2']:.2g} (of the {verdict['ot_returned']})"
                 + "".join(f"\n  note: {n}" for n in diag.notes))


def fitted_aeot(rd, cfg: MnistConfig) -> AEOT:
    """The run's fitted :class:`AEOT`: every stage of the fit is found in the run directory; only a rule
    other than the saved one is set up anew."""
    if not rd.has(EXTENSION_FILE):
        raise ValueError(f"{rd.file(EXTENSION_FILE)} is missing: run the fit-ot stage first")
    return AEOT(ot=ot_options(cfg), extension=extension_options(cfg)).fit_codes(
        rd.load_array(LATENTS_FILE), keys(cfg.seed)["ot"], rd.path, progress=None if cfg.progress else False)


# ----------------------------------------------------------------------------------------------
# the decoder GAN (AE-OT-GAN)


def decoder_gan_config(cfg: MnistConfig, steps: int | None = None) -> DecoderGANConfig:
    return DecoderGANConfig(steps=steps or cfg.decoder_gan_steps, seed=cfg.seed)


def aeot_pool(aeot: AEOT, cfg: MnistConfig) -> np.ndarray:
    """:data:`GAN_POOL` codes of ``aeot``'s generation, the decoder GAN's pool (a draw apart from ``generate``'s)."""
    return aeot.sample_codes(jax.random.fold_in(keys(cfg.seed)["generate"], POOL_SALT), GAN_POOL)


def tune_decoder(rd, cfg: MnistConfig, make_pool, tuning: DecoderGANConfig, train_u8=None,
                 progress: bool = True, workdir=None) -> tuple[dict, dict]:
    """``(params, record)``: the run's autoencoder with its decoder fine-tuned by ``tuning`` on the codes
    ``make_pool()`` returns (AE-OT's: :func:`aeot_pool`), read from ``workdir`` (default ``decoder_gan/``)
    when finished there, else trained (or resumed) there."""
    workdir = rd.file(DECODER_GAN_DIR) if workdir is None else workdir
    model, params, _ = load_ae_params(rd, cfg)
    done = load_finetuned(workdir, params, tuning)
    if done is not None:
        return done
    pool = make_pool()
    images = to_unit_float(load_train_images(cfg) if train_u8 is None else train_u8)
    return finetune_decoder(model, params, rd.load_array(LATENTS_FILE), images, pool, tuning, workdir,
                            progress=progress)


def stage_tune_decoder(rd, cfg: MnistConfig, train_u8: np.ndarray) -> float:
    """AE-OT-GAN's decoder: fine-tuned for ``cfg.decoder_gan_steps`` on the run's own generation; returns its
    training seconds summed over every call."""
    _, record = tune_decoder(rd, cfg, lambda: aeot_pool(fitted_aeot(rd, cfg), cfg), decoder_gan_config(cfg), train_u8,
                             cfg.progress)
    hist = record["history"]
    log(cfg, f"tune-decoder: {record['steps']} decoder GAN steps ({record['seconds']:.0f} s); last 100 steps: "
             + ", ".join(f"{k} {v[-1]:.3f}" for k, v in hist.items() if k != "step" and v))
    return float(record["seconds"])


def load_decoder_params(rd, cfg: MnistConfig):
    """``(model, params, meta)`` that decode the run's codes: the autoencoder's, with the decoder the
    ``tune-decoder`` stage fine-tuned when the run has one."""
    model, params, meta = load_ae_params(rd, cfg)
    if not cfg.decoder_gan_steps:
        return model, params, meta
    done = load_finetuned(rd.file(DECODER_GAN_DIR), params, decoder_gan_config(cfg))
    if done is None:
        raise ValueError(f"{rd.file(DECODER_GAN_DIR)} holds no finished {cfg.decoder_gan_steps}-step decoder GAN: "
                         "run the tune-decoder stage first")
    return model, done[0], meta


def stage_generate_aeot(rd, cfg: MnistConfig) -> np.ndarray:
    """AE-OT's extended generation of new codes (the fitted :class:`AEOT`), decoded to digits (by the tuned
    decoder when the run has one)."""
    aeot = fitted_aeot(rd, cfg)
    model, params, _ = load_decoder_params(rd, cfg)
    z, moved = aeot.sample_codes(keys(cfg.seed)["generate"], cfg.n_samples, return_interpolated=True)
    rd.save_array(GEN_LATENTS_FILE, z)
    interpolated = float(np.mean(moved))
    info = {k: v for k, v in aeot.info().items() if k in ("rule", "angle_threshold", "top_k") or k.startswith("rule_")}
    rd.write_json(GENERATION_FILE, {"interpolated_fraction": interpolated, **info})
    log(cfg, f"generate: {100 * interpolated:.1f}% of codes interpolated between neighbouring cells ({info})")
    return to_uint8(decode_batched(model, params, z, 1000, progress=cfg.progress))
