"""Stacked-MNIST metrics (the data: :mod:`otgen.data.stacked`).

A generated image's mode is the triple of digits the project's classifier reads
in its three channels (``100 * r + 10 * g + b``); metrics are the number of
distinct modes among 26,000 generated samples and KL(mode histogram || uniform
over 1,000).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from otgen.data.stacked import N_MODES, mode_ids
from otgen.eval.modes import kl_divergence

__all__ = ["stacked_mode_metrics", "evaluate_stacked"]


def stacked_mode_metrics(modes) -> dict[str, Any]:
    """Distinct modes and KL(mode histogram || uniform over 1,000) from mode ids."""
    modes = np.asarray(modes, np.int64)
    if modes.ndim != 1 or modes.size == 0 or modes.min() < 0 or modes.max() >= N_MODES:
        raise ValueError("modes must be a non-empty 1-D array of integers in 0..999")
    hist = np.bincount(modes, minlength=N_MODES)
    return {"n_samples": int(modes.size), "modes_covered": int(np.count_nonzero(hist)),
            "kl_uniform": kl_divergence(hist, np.full(N_MODES, 1.0 / N_MODES)),
            "max_mode_fraction": float(hist.max() / modes.size)}


def evaluate_stacked(images, data_dir=None, cache_dir=None) -> dict[str, Any]:
    """Stacked-MNIST metrics of generated images (n, 28, 28, 3), uint8 or float in [0, 1]."""
    from otgen.eval.classifier import classify
    from otgen.eval.mnist import load_classifier_cached

    x = np.asarray(images)
    if x.ndim != 4 or x.shape[1:] != (28, 28, 3):
        raise ValueError(f"stacked images must have shape (n, 28, 28, 3), got {x.shape}")
    params, meta = load_classifier_cached(None if data_dir is None else str(data_dir),
                                          None if cache_dir is None else str(cache_dir))
    digits = np.stack([classify(params, x[..., c])[0].argmax(axis=1) for c in range(3)], axis=1)
    out = stacked_mode_metrics(mode_ids(digits))
    out["classifier_test_accuracy"] = float(meta["test_accuracy"])
    return out
