"""Stacked MNIST (1,000 modes): three MNIST digits as the R, G, B channels of one image.

As in VEEGAN and PacGAN: the training set is 128,000 images, each built from
three uniformly drawn MNIST training digits; a generated image's mode is the
triple of digits the project's classifier reads in its three channels
(``100 * r + 10 * g + b``); metrics are the number of distinct modes among
26,000 generated samples and KL(mode histogram || uniform over 1,000).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from otgen.eval.modes import kl_divergence

__all__ = ["N_MODES", "make_stacked_mnist", "mode_ids", "stacked_mode_metrics", "evaluate_stacked"]

N_MODES = 1000


def make_stacked_mnist(images, labels, n: int, key) -> tuple[np.ndarray, np.ndarray]:
    """``n`` stacked images uint8 (n, 28, 28, 3) and their modes int64 (n,) in 0..999.

    Digits are drawn independently and uniformly (with replacement) from
    ``images``/``labels`` using the PRNG ``key``, so the data are reproducible.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (m, 28, 28), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    idx = np.asarray(jax.random.randint(key, (n, 3), 0, images.shape[0]))
    stacked = np.stack([images[idx[:, c]] for c in range(3)], axis=-1)
    return stacked, mode_ids(labels[idx])


def mode_ids(digits) -> np.ndarray:
    """(n, 3) digits (r, g, b) -> mode 100 r + 10 g + b."""
    d = np.asarray(digits, np.int64)
    if d.ndim != 2 or d.shape[1] != 3 or (d.size and (d.min() < 0 or d.max() > 9)):
        raise ValueError(f"digits must be (n, 3) integers in 0..9, got shape {d.shape}")
    return d @ np.array([100, 10, 1])


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
