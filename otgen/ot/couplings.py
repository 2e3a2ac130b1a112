"""Couplings of noise and data for flow matching: which data point each noise draw flows to.

* independent (``fm``): the draws are paired as they come;
* minibatch OT (``otcfm``, Tong et al. 2024): within each batch, the pairing that
  minimises the summed squared distance -- an exact assignment (POT ``ot.emd``);
* semi-discrete OT (``sdfm``, Mousavi-Hosseini et al. 2025): each noise draw goes
  to the target of its power cell under a solved :class:`~otgen.ot.BrenierMap`, i.e.
  the Brenier map from the whole noise measure onto the whole data set.

Each function takes noise ``x0`` (B, d) and returns the (B, d) data points paired with it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["minibatch_ot_permutation", "minibatch_ot_pairs", "semidiscrete_pairs"]


def minibatch_ot_permutation(x0, x1) -> np.ndarray:
    """``perm`` such that ``x1[perm]`` is the optimal assignment of the rows of ``x1`` to those of
    ``x0`` under squared Euclidean cost (equal batch sizes, uniform weights: the plan is a permutation)."""
    import ot

    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"minibatch OT needs two batches of equal shape (B, d), got {a.shape} and {b.shape}")
    w = np.full(len(a), 1.0 / len(a))
    plan = ot.emd(w, w, ot.dist(a, b))
    # An optimal vertex of the assignment polytope is a permutation matrix (times 1/B).
    return np.argmax(plan, axis=1)


def minibatch_ot_pairs(x0, x1) -> np.ndarray:
    """The rows of ``x1`` reordered to their minibatch-OT partners of ``x0``."""
    return np.asarray(x1)[minibatch_ot_permutation(x0, x1)]


def semidiscrete_pairs(bmap, x0):
    """The target of each noise point's power cell: ``bmap(x0)`` (exactly the semi-discrete OT map)."""
    return bmap(x0)
