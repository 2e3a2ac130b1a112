"""Fréchet distance between Gaussians fitted to feature sets (FID), and k-NN precision/recall.

FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2}).

The trace term is computed from symmetric eigendecompositions (scipy.linalg.eigh)
rather than ``sqrtm(S_1 @ S_2)``: S_1 S_2 is not symmetric, and sqrtm of it can
return spurious imaginary parts for nearly singular covariances, whereas
S_1^{1/2} S_2 S_1^{1/2} is symmetric PSD and has the same eigenvalues.

Precision / recall follow Kynkäänniemi et al. (NeurIPS 2019): each set's manifold
is the union of balls around its points with radius the distance to the k-th
nearest neighbour within the set; precision is the fraction of generated points
inside the real manifold, recall the fraction of real points inside the
generated one.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

__all__ = ["GaussianStats", "gaussian_stats", "frechet_distance", "fid_from_features",
           "precision_recall"]


class GaussianStats(NamedTuple):
    mean: np.ndarray  # (d,)
    cov: np.ndarray  # (d, d), unbiased


def _features(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) feature array, got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows to estimate a covariance, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def gaussian_stats(features) -> GaussianStats:
    """Mean and (unbiased) covariance of an (n, d) feature array."""
    x = _features(features, "features")
    return GaussianStats(x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False)))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = scipy.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Squared 2-Wasserstein distance between N(a.mean, a.cov) and N(b.mean, b.cov)."""
    mu1, s1 = np.asarray(a.mean, np.float64), np.asarray(a.cov, np.float64)
    mu2, s2 = np.asarray(b.mean, np.float64), np.asarray(b.cov, np.float64)
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"incompatible statistics: means {mu1.shape} {mu2.shape}, covs {s1.shape} {s2.shape}")
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    m = 0.5 * (m + m.T)  # symmetrise against round-off
    cross = np.sum(np.sqrt(np.clip(scipy.linalg.eigvalsh(m), 0.0, None)))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross)
    return max(value, 0.0)  # tiny negatives are round-off


def fid_from_features(features_a, features_b) -> float:
    """FID between two (n, d) feature sets."""
    return frechet_distance(gaussian_stats(features_a), gaussian_stats(features_b))


def _kth_nn_radius(x: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    n = x.shape[0]
    sq = np.sum(x**2, axis=1)
    out = np.empty(n)
    for s in range(0, n, block):
        d2 = np.maximum(sq[s:s + block, None] - 2.0 * x[s:s + block] @ x.T + sq[None], 0.0)
        # column k of the sorted row is the k-th neighbour (column 0 is the point itself)
        out[s:s + block] = np.sqrt(np.partition(d2, k, axis=1)[:, k])
    return out


def _inside(query: np.ndarray, ref: np.ndarray, radius: np.ndarray, block: int = 2048) -> np.ndarray:
    sq_r = np.sum(ref**2, axis=1)
    hit = np.empty(query.shape[0], bool)
    for s in range(0, query.shape[0], block):
        q = query[s:s + block]
        d2 = np.maximum(np.sum(q**2, axis=1)[:, None] - 2.0 * q @ ref.T + sq_r[None], 0.0)
        hit[s:s + block] = np.any(d2 <= radius[None] ** 2, axis=1)
    return hit


def precision_recall(real_features, fake_features, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls."""
    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if not (1 <= k < min(len(real), len(fake))):
        raise ValueError(f"k must be in [1, {min(len(real), len(fake)) - 1}], got {k}")
    precision = _inside(fake, real, _kth_nn_radius(real, k)).mean()
    recall = _inside(real, fake, _kth_nn_radius(fake, k)).mean()
    return {"precision": float(precision), "recall": float(recall), "k": int(k)}
