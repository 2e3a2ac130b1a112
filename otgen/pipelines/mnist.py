"""``otgen mnist``: AE-OT (or a GAN or latent-flow baseline) on MNIST, Fashion-MNIST or Stacked MNIST,
stage by stage, resumable.

(The command's parts: :mod:`~otgen.pipelines.mnist_config`, the config, its presets and flags;
:mod:`~otgen.pipelines.mnist_rundir`, the run directory's files, the stage ledger, keys and images;
:mod:`~otgen.pipelines.mnist_aeot`, AE-OT's stages; :mod:`~otgen.pipelines.mnist_baselines`, the GANs'
and latent flows' stages; :mod:`~otgen.pipelines.mnist_evaluate`, the evaluate stage and its novelty and
nearest-neighbour figure.  This module runs the stages in order.  The AE-OT pipeline itself is
:mod:`otgen.generators.aeot`.)

AE-OT stages, each skipped when its artefact already exists in the run directory:

    train-ae  -> autoencoder.npz   (per-epoch ae_train_state.npz lets a killed run resume mid-training)
    encode    -> latents.npy       (codes of every training image)
    fit-ot    -> whitening.npz, brenier.npz, extension.npz (otgen.generators.aeot.AEOT on the codes:
                 semi-discrete OT, then the extension's cell barycentres)
    generate  -> generated_latents.npy, samples.npy (uint8 (n, 28, 28)), samples.png
    evaluate  -> metrics.json      (classifier-judged class coverage / KL / FID; --no-eval skips it)

GAN baselines (``--model gan|wgan|wgan-gp|pacgan2|...``) run ``train-gan`` (otgen.generators.gan, resumable)
then ``generate`` and ``evaluate``.  Latent flows (``--model fm|otcfm|sdfm``, otgen.generators.flow)
share AE-OT's first two stages -- the same autoencoder, so the comparison isolates the latent
generator -- then ``train-flow`` (on the codes, checkpointed in ``flow/``), ``generate`` (flow
samples decoded) and ``evaluate``.  Every file is written atomically, so killing the command at any
point and re-running it with the same ``--out`` redoes only the unfinished stage.

``--dataset fashion`` runs on Fashion-MNIST (``--data-dir`` holding its IDX files), scored by the
project's Fashion-MNIST classifier.

``--dataset stacked`` trains on Stacked MNIST (1,000 modes; ``otgen.data.stacked``): 128,000 RGB
images whose channels are three MNIST training digits, drawn once with a fixed key so that every
model and seed sees the same data; 26,000 samples are generated and scored by digit triples.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from otgen.pipelines.mnist_aeot import (adopt_ae_stage, stage_encode, stage_fit_ot, stage_generate_aeot,
                                          stage_train_ae, stage_tune_decoder)
from otgen.pipelines.mnist_baselines import (stage_generate_flow, stage_generate_gan, stage_train_flow,
                                               stage_train_gan)
from otgen.pipelines.mnist_config import (AEOT_STAGES, FLOWS, GAN_STAGES, PRESETS, MnistConfig, add_arguments,
                                            config_from_args, make_config)
from otgen.pipelines.mnist_evaluate import replay_reconstructions, stage_evaluate
from otgen.pipelines.mnist_rundir import (METRICS_FILE, SAMPLES_FILE, STAGES_FILE, claim_run_dir,
                                            load_train_images, log, record_stage, stage_done)

# run and main are this module's (with add_arguments, the ``otgen mnist`` subcommand); the other names are
# re-exported from the modules that own them, as the documented API of ``otgen.pipelines.mnist``.
__all__ = ["MnistConfig", "PRESETS", "AEOT_STAGES", "GAN_STAGES", "make_config", "run", "add_arguments", "main",
           "replay_reconstructions"]


def _write_samples(rd, cfg: MnistConfig, samples_u8: np.ndarray) -> None:
    from otgen.plotting import image_grid  # matplotlib: loaded only to draw a figure

    rd.save_array(SAMPLES_FILE, samples_u8)
    image_grid(samples_u8[:100], rd.file("samples.png"), nrow=10)
    log(cfg, f"generate: {len(samples_u8)} digits -> {SAMPLES_FILE}, samples.png")


def run(cfg: MnistConfig) -> dict:
    """Run (or resume) every requested stage; returns paths, per-stage seconds and metrics."""
    rd = claim_run_dir(cfg)
    train_u8 = None
    ran, skipped = [], []
    for stage in cfg.stage_list():
        if not ran and stage_done(rd, cfg, stage):  # once a stage has run, the ones after it are stale
            skipped.append(stage)
            log(cfg, f"{stage}: already done, skipped")
            continue
        t0 = time.perf_counter()
        if stage in ("train-ae", "encode") and cfg.ae_from is not None:
            record_stage(rd, stage, adopt_ae_stage(rd, cfg, stage), reused_from=str(cfg.ae_from))
            ran.append(stage)
            continue
        if stage in ("train-ae", "encode", "train-gan", "tune-decoder") and train_u8 is None:
            train_u8 = load_train_images(cfg)
        seconds = None  # the training stages report their time summed over resumed calls
        if stage == "train-ae":
            seconds = stage_train_ae(rd, cfg, train_u8)
        elif stage == "encode":
            stage_encode(rd, cfg, train_u8)
        elif stage == "fit-ot":
            stage_fit_ot(rd, cfg)
        elif stage == "tune-decoder":
            seconds = stage_tune_decoder(rd, cfg, train_u8)
        elif stage == "train-gan":
            seconds = stage_train_gan(rd, cfg, train_u8)
        elif stage == "train-flow":
            seconds = stage_train_flow(rd, cfg)
        elif stage == "generate":
            samples = (stage_generate_aeot(rd, cfg) if cfg.model == "aeot" else
                       stage_generate_flow(rd, cfg) if cfg.model in FLOWS else stage_generate_gan(rd, cfg))
            _write_samples(rd, cfg, samples)
        elif stage == "evaluate":
            if not rd.has(SAMPLES_FILE):
                raise ValueError(f"{rd.file(SAMPLES_FILE)} is missing: run the generate stage first")
        if stage != "evaluate":
            record_stage(rd, stage, time.perf_counter() - t0 if seconds is None else seconds)
        else:
            stage_evaluate(rd, cfg)
        ran.append(stage)
    out = {"run_dir": str(rd.path), "ran": ran, "skipped": skipped,
           "samples": str(rd.file(SAMPLES_FILE)) if rd.has(SAMPLES_FILE) else None,
           "stage_seconds": ({k: v["seconds"] for k, v in rd.read_json(STAGES_FILE).items()}
                             if rd.has(STAGES_FILE) else {})}
    if rd.has(METRICS_FILE):
        out["metrics"] = rd.read_json(METRICS_FILE)
    return out


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    result = run(cfg)
    if cfg.progress:
        print(f"[otgen mnist] finished in {time.perf_counter() - t0:.1f} s; run directory {result['run_dir']}")
    return 0
