"""Stacked MNIST (1,000 modes): three MNIST digits as the R, G, B channels of one image.

As in VEEGAN and PacGAN: the training set is 128,000 images, each built from
three uniformly drawn MNIST training digits; an image's mode is its digit
triple ``100 * r + 10 * g + b``.  The test split (10,000 images) is built the
same way from the MNIST test digits.  Each split is drawn with a fixed key (not
a run's seed), so every model and seed sees the same data.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["N_MODES", "SIZES", "N_SAMPLES", "make_stacked_mnist", "mode_ids", "load_stacked"]

N_MODES = 1000
SIZES = {"train": 128_000, "test": 10_000}  # VEEGAN / PacGAN protocol
N_SAMPLES = 26_000  # samples generated and scored per model (the same protocol)
_SPLIT_KEYS = {"train": 0, "test": 1}


def mode_ids(digits) -> np.ndarray:
    """(n, 3) digits (r, g, b) -> mode 100 r + 10 g + b."""
    d = np.asarray(digits, np.int64)
    if d.ndim != 2 or d.shape[1] != 3 or (d.size and (d.min() < 0 or d.max() > 9)):
        raise ValueError(f"digits must be (n, 3) integers in 0..9, got shape {d.shape}")
    return d @ np.array([100, 10, 1])


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


def load_stacked(split: str, data_dir=None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` of Stacked MNIST: (images uint8 (n, 28, 28, 3), modes (n,)).

    ``n`` (default :data:`SIZES`) draws fewer images; the first ``n`` are the same whatever ``n``
    is only up to the draw, so a smaller ``n`` is a different (equally valid) draw.
    """
    from otgen.data.mnist import load_mnist

    if split not in SIZES:
        raise ValueError(f"split must be one of {', '.join(SIZES)}, got {split!r}")
    images, labels = load_mnist(split, data_dir)
    return make_stacked_mnist(images, labels, SIZES[split] if n is None else n, jax.random.key(_SPLIT_KEYS[split]))
