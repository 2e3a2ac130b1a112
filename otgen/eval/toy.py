"""One scoring function for 2-D toy samples, used for every model and for the control rows.

``evaluate_toy(samples, toy, train, held_out)`` returns a flat dict:

* mode coverage of the PacGAN protocol (:mod:`otgen.eval.modes`) where the toy
  has known modes or curves;
* ``spread_ratio``: per-mode standard deviation of the high-quality samples over
  the true one, averaged over modes with >= 2 such samples (1 for real data;
  < 1 when samples are contracted toward the modes -- which HQ rewards);
* ``w2``: exact 2-Wasserstein distance (POT ``ot.emd2``, squared Euclidean cost)
  between the samples and the held-out real set -- real-vs-real is its floor;
* the novelty fields of :func:`otgen.eval.novelty.novelty`.
"""

from __future__ import annotations

import numpy as np

from otgen.eval.modes import assign_to_modes, mode_coverage_for_toy
from otgen.eval.novelty import copy_fraction, novelty

__all__ = ["evaluate_toy", "w2_distance", "spread_ratio"]


def w2_distance(a, b) -> float:
    """Exact W2 between two point clouds with uniform weights (network simplex, POT)."""
    import ot

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a = a[np.all(np.isfinite(a), axis=1)]
    if len(a) == 0:
        return float("inf")
    cost = ot.dist(a, b)  # squared Euclidean
    return float(np.sqrt(max(ot.emd2(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost,
                                     numItermax=10_000_000), 0.0)))


def spread_ratio(samples, centres, std, hq_radius: float = 3.0) -> float:
    """Mean over modes of (std of the mode's HQ samples) / (true std); nan if no mode has 2 samples."""
    idx, dist = assign_to_modes(samples, centres, std)
    x = np.asarray(samples, np.float64)
    ratios = []
    for k, c in enumerate(np.asarray(centres, np.float64)):
        pts = x[(idx == k) & (dist <= hq_radius)]
        if len(pts) >= 2:
            # per-coordinate RMS deviation from the true centre, over the true per-coordinate std
            ratios.append(np.sqrt(np.mean((pts - c) ** 2)) / float(np.broadcast_to(std, len(centres))[k]))
    return float(np.mean(ratios)) if ratios else float("nan")


def evaluate_toy(samples, toy, train, held_out=None, seed: int = 0) -> dict:
    """Every toy metric of ``samples`` (see the module docstring).

    ``toy`` may be None (user data: no modes); without ``held_out`` only the copy
    fraction is computed (W2 and C_T need fresh real data).
    """
    samples = np.asarray(samples, np.float32)
    out = {}
    if toy is not None:
        out.update(mode_coverage_for_toy(samples, toy))
        if toy.centres is not None:
            out["spread_ratio"] = spread_ratio(samples, toy.centres, toy.std)
    if held_out is None:
        out["copy_fraction"] = copy_fraction(samples, train)
        return out
    out["w2"] = w2_distance(samples, held_out)
    out.update(novelty(samples, train, held_out, seed=seed))
    return out
