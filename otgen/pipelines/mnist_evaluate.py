"""The ``evaluate`` stage of ``otgen mnist`` and the code-space measures beside it: the samples scored by
:func:`otgen.eval.evaluate` (classes / modes, KL, FID, novelty), the novelty of the generated codes in
the autoencoder's code space, the nearest-training-digit figure, and AE-OT's replay control (decoded
training codes, for ``otgen compare``'s controls).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from otgen.data.mnist import load_mnist, to_unit_float
from otgen.eval import evaluate
from otgen.eval.classifier import classify
from otgen.eval.mnist import HELD_OUT, load_classifier_cached, prefixed_novelty, train_features
from otgen.eval.novelty import novelty_reference
from otgen.pipelines.mnist_aeot import load_ae_params, load_decoder_params
from otgen.pipelines.mnist_config import MnistConfig
from otgen.pipelines.mnist_rundir import (GEN_LATENTS_FILE, GENERATION_FILE, LATENTS_FILE, METRICS_FILE,
                                            NEIGHBOURS_FIGURE, OT_CHECK_FILE, SAMPLES_FILE, STAGES_FILE, load_images,
                                            log, to_uint8)
from otgen.generators.aeot import MAP_FILE
from otgen.models.autoencoder import decode_batched, encode_batched
from otgen.ot import BrenierMap
from otgen.rundir import RunDir

__all__ = ["stage_evaluate", "code_reference", "replay_reconstructions"]


def stage_evaluate(rd, cfg: MnistConfig) -> dict:
    """Score ``samples.npy`` and gather what the run measured of itself into ``metrics.json``."""
    samples = rd.load_array(SAMPLES_FILE)
    metrics: dict[str, Any] = {"model": cfg.model, "preset": cfg.preset, "dataset": cfg.dataset,
                               "n_samples": int(len(samples))}
    if rd.has("reconstruction.json"):
        metrics["reconstruction"] = rd.read_json("reconstruction.json")
    metrics.update(evaluate(cfg.dataset, samples, data_dir=cfg.data_dir))
    if rd.has(GENERATION_FILE):
        metrics.update(rd.read_json(GENERATION_FILE))
    if rd.has(GEN_LATENTS_FILE) and rd.has(LATENTS_FILE):
        metrics.update(_code_novelty(rd, cfg, rd.load_array(GEN_LATENTS_FILE)))
    if cfg.dataset in ("mnist", "fashion"):
        _nearest_neighbour_figure(rd, cfg, samples)
    if rd.has(MAP_FILE):  # the map's own verdict: converged or not, its error, every fallback taken
        metrics.update(BrenierMap.load(rd.file(MAP_FILE)).diagnostics.as_metrics())
    if rd.has(OT_CHECK_FILE):
        metrics.update(rd.read_json(OT_CHECK_FILE))
    if rd.has(STAGES_FILE):  # every stage, across resumed calls: the run's wall time
        metrics["stage_seconds"] = {k: v["seconds"] for k, v in rd.read_json(STAGES_FILE).items()}
        metrics["wall_seconds"] = float(sum(metrics["stage_seconds"].values()))
    rd.write_json(METRICS_FILE, metrics)
    summary = {k: metrics[k] for k in ("classes_covered", "modes_covered", "kl_uniform", "fid") if k in metrics}
    log(cfg, f"evaluate: {summary}")
    return metrics


def _code_novelty(rd, cfg: MnistConfig, codes: np.ndarray) -> dict:
    """Novelty of ``codes`` in the autoencoder's code space: against the training codes, with the
    codes of the held-out test images (the first half of the test set) as reference."""
    model, params, _ = load_ae_params(rd, cfg)
    held = encode_batched(model, params, to_unit_float(load_images(cfg, "test")[HELD_OUT]), 1000)
    return prefixed_novelty("code_", codes, code_reference(rd.load_array(LATENTS_FILE), held))


_CODE_REFERENCES: dict[tuple[str, str], Any] = {}


def code_reference(train_codes: np.ndarray, held_codes: np.ndarray):
    """The code-space :func:`~otgen.eval.novelty.novelty_reference`, kept for the process by content:
    a suite's AE-OT run, its latent flows and its replay control share one autoencoder's codes."""
    key = tuple(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in (train_codes, held_codes))
    if key not in _CODE_REFERENCES:
        if len(_CODE_REFERENCES) >= 2:
            _CODE_REFERENCES.pop(next(iter(_CODE_REFERENCES)))
        _CODE_REFERENCES[key] = novelty_reference(train_codes, held_codes)
    return _CODE_REFERENCES[key]


def replay_reconstructions(cfg: MnistConfig, n: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """AE-OT's replay control: ``n`` training codes drawn with replacement from the run ``cfg.out``,
    decoded (i.e. reconstructions of training images), and the code-space novelty of those codes."""
    rd = RunDir(cfg.out)
    codes = rd.load_array(LATENTS_FILE)
    codes = codes[np.random.default_rng(seed).integers(0, len(codes), n)]
    model, params, _ = load_decoder_params(rd, cfg)  # the decoder that made the run's samples
    return to_uint8(decode_batched(model, params, codes, 1000)), _code_novelty(rd, cfg, codes)


def _nearest_neighbour_figure(rd, cfg: MnistConfig, samples: np.ndarray, n: int = 12) -> None:
    """Generated digits (top row) over their nearest training digits in the classifier's features."""
    from otgen.plotting import nearest_neighbour_grid  # matplotlib: loaded only to draw a figure

    data_dir = None if cfg.data_dir is None else str(cfg.data_dir)
    params, _ = load_classifier_cached(data_dir, None, cfg.dataset)
    feats = classify(params, samples[:n])[1]
    train_f = train_features(data_dir, None, cfg.dataset)
    d2 = (feats ** 2).sum(1)[:, None] - 2 * feats @ train_f.T + (train_f ** 2).sum(1)[None]
    idx = np.argmin(d2, axis=1)
    dist = np.sqrt(np.maximum(d2[np.arange(len(idx)), idx], 0.0))
    train_images = load_mnist("train", cfg.data_dir, dataset=cfg.dataset)[0]
    nearest_neighbour_grid(samples[:n], train_images[idx], dist, rd.file(NEIGHBOURS_FIGURE),
                           title=f"{cfg.model}: generated (top) and nearest training digit in classifier features "
                                 "(bottom), with the feature distance")
