"""Mode coverage of samples from a mixture of Gaussians (the PacGAN / VEEGAN protocol).

Each sample is assigned to the mode whose centre is nearest in std-normalised
distance ``|x - c_k| / sigma_k``; it is *high quality* (HQ) when that distance is
below ``hq_radius`` (3 sigma in PacGAN and VEEGAN).  A mode is *captured* when it
receives at least one HQ sample (PacGAN's rule) and *strictly captured* when it
receives at least ``strict_fraction`` of its expected share ``n * w_k``.

``reverse_kl`` is KL(p_hq || w): p_hq is the histogram of HQ samples over modes,
normalised, and w the true mode weights.  This is the direction the PacGAN paper
calls "reverse KL" (the model's distribution first); modes the model misses
contribute nothing, so it penalises over-represented modes, while missing modes
show up in ``modes_captured``.  With no HQ sample at all it is ``inf``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["mode_coverage", "mode_coverage_for_toy", "support_coverage", "assign_to_modes", "kl_divergence",
           "with_between_modes_fraction"]

# Distance computations are done in blocks of this many samples so that
# (n, M) matrices stay small even for 10^5 samples and 10^3 modes.
_BLOCK = 8192


def _as_centres_std_weights(centres, std, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[0] == 0:
        raise ValueError(f"centres must have shape (M, d) with M >= 1, got {centres.shape}")
    if not np.all(np.isfinite(centres)):
        raise ValueError("centres contain NaN or inf")
    m = centres.shape[0]
    std = np.asarray(std, dtype=np.float64)
    if std.ndim == 0:
        std = np.full(m, float(std))
    if std.shape != (m,):
        raise ValueError(f"std must be a scalar or have shape ({m},), got {std.shape}")
    if not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise ValueError(f"std must be finite and > 0, got {std}")
    if weights is None:
        weights = np.full(m, 1.0 / m)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (m,):
        raise ValueError(f"weights must have shape ({m},) to match the centres, got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    if abs(weights.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1, got {weights.sum():.6g}")
    return centres, std, weights


def assign_to_modes(samples, centres, std) -> tuple[np.ndarray, np.ndarray]:
    """Nearest mode (by std-normalised distance) of every sample, and that distance.

    Returns ``(index (n,), distance (n,))``.  Non-finite samples get index -1 and
    distance ``inf``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    centres, std, _ = _as_centres_std_weights(centres, std, None)
    if samples.ndim != 2 or samples.shape[1] != centres.shape[1]:
        raise ValueError(f"samples must have shape (n, {centres.shape[1]}), got {samples.shape}")
    n = samples.shape[0]
    index = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.inf)
    finite = np.all(np.isfinite(samples), axis=1)
    c_sq = np.sum(centres**2, axis=1)
    for start in range(0, n, _BLOCK):
        block = slice(start, min(start + _BLOCK, n))
        ok = finite[block]
        x = samples[block][ok]
        # |x - c|^2 expanded, clipped at 0 against round-off, then scaled per mode.
        d2 = np.maximum(np.sum(x**2, axis=1, keepdims=True) - 2.0 * x @ centres.T + c_sq, 0.0)
        d2 = d2 / std**2
        k = np.argmin(d2, axis=1)
        idx = np.flatnonzero(ok) + start
        index[idx] = k
        dist[idx] = np.sqrt(d2[np.arange(len(k)), k])
    return index, dist


def kl_divergence(p, q) -> float:
    """KL(p || q) = sum p log(p / q) for histograms (normalised here); 0 log 0 = 0.

    ``inf`` when p puts mass where q has none, or when p is empty.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p and q must be 1-D of the same length, got {p.shape} and {q.shape}")
    if np.any(p < 0) or np.any(q < 0):
        raise ValueError("histograms must be non-negative")
    if p.sum() <= 0:
        return math.inf
    if q.sum() <= 0:
        raise ValueError("q is all zero")
    p = p / p.sum()
    q = q / q.sum()
    support = p > 0
    if np.any(q[support] == 0):
        return math.inf
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def mode_coverage(samples, centres, std, weights=None, *, strict_fraction: float = 0.25,
                  hq_radius: float = 3.0) -> dict[str, Any]:
    """Mode-coverage metrics of ``samples`` (n, d) against a Gaussian mixture.

    ``centres`` (M, d); ``std`` a scalar or (M,) per-mode isotropic std;
    ``weights`` (M,) summing to 1 (uniform when None).  Returns a JSON-friendly dict:

    - ``modes_captured``: modes with >= 1 HQ sample (PacGAN rule)
    - ``modes_captured_strict``: modes with >= ``strict_fraction * n * w_k`` HQ samples
    - ``high_quality_fraction``: fraction of all samples within ``hq_radius`` sigma
    - ``between_modes_fraction``: fraction of all samples farther than ``hq_radius`` sigma from
      every mode (finite ones: with HQ and non-finite it sums to 1) -- the bridges a continuous
      generator must leave between disconnected modes
    - ``reverse_kl``: KL(HQ mode histogram || weights)
    - ``mode_histogram``: HQ samples per mode (list of int)
    - ``n_modes``, ``n_samples``, ``nonfinite_fraction``

    Non-finite samples (a diverged generator) count as low quality, not as errors.
    """
    centres, std, weights = _as_centres_std_weights(centres, std, weights)
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"samples must have shape (n, d) with n >= 1, got {samples.shape}")
    index, dist = assign_to_modes(samples, centres, std)
    return _summary(index, dist, weights, strict_fraction, hq_radius)


def _summary(mode: np.ndarray, dist: np.ndarray, weights: np.ndarray, strict_fraction: float,
             hq_radius: float) -> dict[str, Any]:
    """The coverage metrics from each sample's mode (-1: non-finite) and std-normalised distance."""
    if not (0.0 < strict_fraction <= 1.0):
        raise ValueError(f"strict_fraction must be in (0, 1], got {strict_fraction}")
    if not hq_radius > 0:
        raise ValueError(f"hq_radius must be > 0, got {hq_radius}")
    n, m = mode.shape[0], weights.shape[0]
    hq = dist < hq_radius
    hist = np.bincount(mode[hq], minlength=m)
    expected = n * weights
    return {
        "n_samples": int(n),
        "n_modes": int(m),
        "modes_captured": int(np.count_nonzero(hist)),
        "modes_captured_strict": int(np.count_nonzero((hist >= strict_fraction * expected) & (weights > 0))),
        "high_quality_fraction": float(hq.mean()),
        "between_modes_fraction": float(np.mean(np.isfinite(dist) & ~hq)),
        "reverse_kl": kl_divergence(hist, weights),
        "mode_histogram": [int(c) for c in hist],
        "nonfinite_fraction": float(np.mean(mode < 0)),
        "strict_fraction": float(strict_fraction),
        "hq_radius": float(hq_radius),
    }


def support_coverage(samples, curve, component, noise: float, weights, *, strict_fraction: float = 0.25,
                     hq_radius: float = 3.0) -> dict[str, Any]:
    """Coverage of a toy made of noisy curves (no Gaussian modes): each piece counts as a mode.

    A sample is HQ when its distance to the nearest point of the dense ``curve``
    (P, d) is below ``hq_radius * noise``; it belongs to that point's piece
    (``component`` (P,) int).  Returns the same keys as :func:`mode_coverage`.
    """
    curve = np.asarray(curve, dtype=np.float64)
    component = np.asarray(component)
    weights = np.asarray(weights, dtype=np.float64)
    if component.shape != (curve.shape[0],):
        raise ValueError(f"component must have shape ({curve.shape[0]},), got {component.shape}")
    if weights.ndim != 1 or component.min() < 0 or component.max() >= weights.shape[0]:
        raise ValueError(f"component indices must index the {weights.shape[0]} piece weights")
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"samples must have shape (n, d) with n >= 1, got {samples.shape}")
    # Each curve point is a zero-width "mode" of std ``noise``: reuse the nearest-mode assignment.
    index, dist = assign_to_modes(samples, curve, noise)
    piece = np.where(index >= 0, component[np.maximum(index, 0)], -1)
    return _summary(piece, dist, weights, strict_fraction, hq_radius)


def mode_coverage_for_toy(samples, toy, **kwargs) -> dict[str, Any]:
    """:func:`mode_coverage` for a toy with ``.centres``, ``.std`` and ``.weights``, or
    :func:`support_coverage` for a curve toy (``.curve``, ``.component``, ``.noise``, ``.weights``).

    Raises ``ValueError`` for a toy with neither (mode coverage is undefined for it).
    """
    centres = getattr(toy, "centres", None)
    if centres is not None:
        return mode_coverage(samples, centres, toy.std, getattr(toy, "weights", None), **kwargs)
    if getattr(toy, "curve", None) is not None:
        return support_coverage(samples, toy.curve, toy.component, toy.noise, toy.weights, **kwargs)
    name = getattr(toy, "name", type(toy).__name__)
    raise ValueError(f"toy {name!r} has no Gaussian modes and no curves; mode coverage is undefined for it")


def with_between_modes_fraction(scores: dict) -> dict:
    """``scores`` (a :func:`mode_coverage` result, or a learning-curve point) with
    ``between_modes_fraction`` filled in where it was scored before that field existed: the finite
    samples that are not high quality, ``1 - HQ - non-finite``. Updates ``scores`` in place and returns it;
    records without ``high_quality_fraction`` are left alone."""
    if "high_quality_fraction" in scores:
        scores.setdefault("between_modes_fraction",
                          1.0 - scores["high_quality_fraction"] - scores.get("nonfinite_fraction", 0.0))
    return scores
