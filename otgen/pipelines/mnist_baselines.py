"""The baselines of ``otgen mnist``: GAN-family models (``train-gan`` on the images,
:mod:`otgen.generators.gan`, with a learning curve) and latent flows (``train-flow`` on AE-OT's codes,
:mod:`otgen.generators.flow`; sdfm may take AE-OT's semi-discrete map from ``--ae-from``), and
their ``generate`` stages.  Resumable from their checkpoints in ``gan/`` and ``flow/``.
"""

from __future__ import annotations

import numpy as np

from otgen.data.mnist import to_unit_float
from otgen.eval import image_curve_point
from otgen.pipelines.mnist_aeot import load_ae_params
from otgen.pipelines.mnist_config import MnistConfig
from otgen.pipelines.mnist_rundir import (CURVES_FILE, FLOW_DIR, GAN_DIR, GEN_LATENTS_FILE, GENERATION_FILE,
                                            LATENTS_FILE, STAGES_FILE, keys, log, stage_done, to_uint8)
from otgen.generators import make
from otgen.generators.aeot import MAP_FILE, WHITENING_FILE
from otgen.generators.flow import Flow
from otgen.generators.gan import GAN
from otgen.models.autoencoder import decode_batched
from otgen.ot import BrenierMap
from otgen.rundir import RunDir

__all__ = ["gan_config", "gan_curve_point", "stage_train_gan", "stage_generate_gan", "adopt_coupling", "stage_train_flow",
           "stage_generate_flow", "COUPLING_FROM_FILE"]

COUPLING_FROM_FILE = "coupling_from.json"  # in flow/: whose semi-discrete map sdfm took, and its solve time


# ----------------------------------------------------------------------------------------------
# GAN baselines


def gan_config(cfg: MnistConfig):
    """The :class:`~otgen.training.GANConfig` of the run's GAN-family model (what its checkpoints name)."""
    return _gan(cfg).config


def _gan(cfg: MnistConfig, evaluate=None):
    return make(cfg.model, "images", shape=(28, 28, cfg.channels), steps=cfg.gan_steps, seed=cfg.seed,
                preset=cfg.gan_preset, progress=cfg.progress, evaluate=evaluate)


def gan_curve_point(cfg: MnistConfig, result) -> dict:
    """One learning-curve record of a GAN in training: the ``generate`` stage's draw (same key, same
    ``n_samples``) scored by :func:`otgen.eval.image_curve_point`; at the last step it is the run's
    own samples, so the curve ends on the evaluate stage's classes / KL / FID."""
    images = to_uint8(result.sample(keys(cfg.seed)["generate"], cfg.n_samples))
    return image_curve_point(cfg.dataset, images, data_dir=cfg.data_dir)


def stage_train_gan(rd, cfg: MnistConfig, train_u8: np.ndarray) -> float:
    """A GAN-family baseline (:mod:`otgen.generators.gan`), checkpointed in ``gan/`` and resumed from it,
    scored at log-spaced steps unless ``cfg.evaluate`` is off (:func:`gan_curve_point`; ``curves.json`` /
    ``curves.png``; the curve so far travels in the checkpoint); returns its training seconds summed over every call."""
    from otgen.plotting import learning_curves  # matplotlib: loaded only to draw a figure

    gan = _gan(cfg, evaluate=(lambda result: gan_curve_point(cfg, result)) if cfg.evaluate else None)
    gan.fit(to_unit_float(train_u8), keys(cfg.seed)["gan"], rd.file(GAN_DIR))
    if gan.curve:
        rd.write_json(CURVES_FILE, gan.curve)
        learning_curves(gan.curve, rd.file("curves.png"), title=f"{cfg.model} on {cfg.dataset}")
    log(cfg, f"train-gan: {cfg.model} trained for {cfg.gan_steps} steps ({gan.info()['train_seconds']:.0f} s "
             "this call)" + (f"; last curve point {gan.curve[-1]}" if gan.curve else ""))
    return gan.result.total_seconds


def stage_generate_gan(rd, cfg: MnistConfig) -> np.ndarray:
    if not rd.has(STAGES_FILE) or "train-gan" not in rd.read_json(STAGES_FILE):
        raise ValueError(f"no finished GAN training in {rd.path}: run the train-gan stage first")
    gan = GAN.load(rd.file(GAN_DIR), _gan(cfg).config)
    return to_uint8(gan.sample(keys(cfg.seed)["generate"], cfg.n_samples))


# ----------------------------------------------------------------------------------------------
# latent flows


def _flow(cfg: MnistConfig):
    return make(cfg.model, "images", shape=(cfg.ae.latent_dim,), steps=cfg.flow_steps, seed=cfg.seed,
                progress=cfg.progress)


def adopt_coupling(rd, cfg: MnistConfig) -> float:
    """sdfm with ``--ae-from``: when that run (same autoencoder and codes) has solved OT from a Gaussian
    onto its whitened codes -- the very problem sdfm's coupling solves -- copy its map into ``flow/``
    instead of solving again: AE-OT and sdfm then share one map, and their rows differ only in what is
    built on it.  Returns the seconds of that solve (counted in sdfm's wall time), 0 if nothing taken."""
    marker, flow_map = f"{FLOW_DIR}/{COUPLING_FROM_FILE}", f"{FLOW_DIR}/{MAP_FILE}"

    def copy(src):  # the map last: Flow takes the pair once the map exists
        for name in (WHITENING_FILE, MAP_FILE):
            rd.copy_from(src.file(name), f"{FLOW_DIR}/{name}")

    if rd.has(marker):  # taken by an earlier call of this run (which may have died before the map's copy)
        taken = rd.read_json(marker)
        if not rd.has(flow_map):
            copy(RunDir(taken["from"]))
        return float(taken["ot_seconds"])
    if cfg.model != "sdfm" or cfg.ae_from is None or rd.has(flow_map):
        return 0.0
    src = RunDir(cfg.ae_from)
    theirs = src.read_json("config.json").get("config", {})
    if not (stage_done(src, cfg, "fit-ot") and src.has(WHITENING_FILE) and theirs.get("ot_source") == "gaussian"
            and theirs.get("whiten")):
        log(cfg, f"train-flow: {cfg.ae_from} has no Gaussian-source map of its codes; sdfm solves its own")
        return 0.0
    seconds = float(BrenierMap.load(src.file(MAP_FILE)).diagnostics.history.wall_time[-1])
    rd.file(FLOW_DIR).mkdir(parents=True, exist_ok=True)
    rd.write_json(marker, {"from": str(cfg.ae_from), "ot_seconds": seconds})
    copy(src)
    log(cfg, f"train-flow: semi-discrete coupling taken from {cfg.ae_from} (its fit-ot map, solved in {seconds:.0f} s)")
    return seconds


def stage_train_flow(rd, cfg: MnistConfig) -> float:
    """A flow-matching model on the cached codes (:mod:`otgen.generators.flow`), checkpointed in
    ``flow/`` and resumed from it; returns its training seconds summed over every call (sdfm's OT
    solve included, or the solve of the map it took from ``--ae-from``: :func:`adopt_coupling`)."""
    if not rd.has(LATENTS_FILE):
        raise ValueError(f"{rd.file(LATENTS_FILE)} is missing: run the encode stage first")
    adopted = adopt_coupling(rd, cfg)
    flow = _flow(cfg).fit(rd.load_array(LATENTS_FILE), keys(cfg.seed)["gan"], rd.file(FLOW_DIR))
    info = flow.info()
    # the flow's sampler and, for sdfm, its coupling's own verdict (converged or not, chi2, stop reason)
    rd.write_json(GENERATION_FILE, {k: v for k, v in info.items() if k in ("coupling", "ode_method", "ode_steps", "nfe")
                                    or k.startswith("ot_") and k != "ot_notes"})
    log(cfg, f"train-flow: {cfg.model} trained for {info['steps']} steps ({info['train_seconds']:.0f} s)"
             + (f"; semi-discrete coupling: {flow.bmap.diagnostics.summary()}" if flow.bmap is not None else ""))
    return info["train_seconds"] + info.get("ot_seconds", 0.0) + adopted


def stage_generate_flow(rd, cfg: MnistConfig) -> np.ndarray:
    """Flow samples in code space (N(0, I) noise through the ODE), decoded."""
    if not rd.has(STAGES_FILE) or "train-flow" not in rd.read_json(STAGES_FILE):
        raise ValueError(f"no finished flow training in {rd.path}: run the train-flow stage first")
    model, params, _ = load_ae_params(rd, cfg)
    flow = Flow.load(rd.file(FLOW_DIR), _flow(cfg).config)
    z = flow.sample(keys(cfg.seed)["generate"], cfg.n_samples)
    rd.save_array(GEN_LATENTS_FILE, z.astype(np.float32))
    return to_uint8(decode_batched(model, params, z, 1000, progress=cfg.progress))
