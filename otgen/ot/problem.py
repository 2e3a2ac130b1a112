"""A semi-discrete OT problem checked and converted: targets (K, d) float32, weights (K,) summing to 1."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from otgen.ot.measures import as_measure

__all__ = ["validate_problem"]

_WEIGHT_SUM_TOL = 1e-5


def _find_duplicate_rows(y: np.ndarray) -> tuple[int, int] | None:
    """First pair of identical rows, or None.

    Rows are hashed by a random projection (O(K) extra memory, no sorted copy of
    the targets); only rows with equal hashes are compared exactly.
    """
    proj = np.random.default_rng(0).standard_normal(y.shape[1])
    key = y @ proj.astype(y.dtype)  # no float64 copy of the targets
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order[1:]] == key[order[:-1]])
    for j in same:
        a, b = sorted((int(order[j]), int(order[j + 1])))
        if np.array_equal(y[a], y[b]):
            return a, b
    # Groups of 3+ equal hashes: compare every pair inside a group (rare).
    for j in same:
        group = order[j:][key[order[j:]] == key[order[j]]]
        for u in range(len(group)):
            for v in range(u + 1, len(group)):
                if np.array_equal(y[group[u]], y[group[v]]):
                    return tuple(sorted((int(group[u]), int(group[v]))))
    return None


def validate_problem(source, targets, weights=None, *, normalize_weights: bool = False):
    """Check and convert ``(targets, weights)``; returns (measure, targets f32 (K, d), weights f32 (K,)).

    Raises ``ValueError`` naming the problem for: non-2-D or empty targets,
    NaN/inf, dimension mismatch with the source, duplicate target rows
    (rejected: merge them yourself, summing their weights), weights of the
    wrong shape, non-finite, non-positive, or not summing to 1 (unless
    ``normalize_weights=True``).
    """
    y = np.asarray(targets)
    if y.ndim != 2:
        raise ValueError(f"targets must be a 2-D array (K, d), got shape {y.shape}")
    if y.shape[0] == 0:
        raise ValueError("targets is empty (K = 0): need at least one target")
    if y.shape[1] == 0:
        raise ValueError("targets have dimension 0")
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"targets must be numeric, got dtype {y.dtype}")
    y = y.astype(np.float32, copy=False)
    if not np.all(np.isfinite(y)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(y), axis=1))[0])
        raise ValueError(f"targets contain NaN or inf (first at row {bad})")
    measure = as_measure(source, dim_hint=y.shape[1])
    if measure.dim != y.shape[1]:
        raise ValueError(f"dimension mismatch: source has dim {measure.dim} but targets have dim {y.shape[1]}")
    dup = _find_duplicate_rows(y)
    if dup is not None:
        raise ValueError(f"duplicate targets: rows {dup[0]} and {dup[1]} are identical; merge them "
                         "(summing their weights) before solving")
    k = y.shape[0]
    if weights is None:
        nu = np.full(k, 1.0 / k, np.float64)
    else:
        nu = np.asarray(weights, dtype=np.float64)
        if nu.shape != (k,):
            raise ValueError(f"weights must have shape ({k},) to match {k} targets, got {nu.shape}")
        if not np.all(np.isfinite(nu)):
            raise ValueError("weights contain NaN or inf")
        if np.any(nu < 0):
            raise ValueError(f"weights must be positive; found a negative weight at index {int(np.argmin(nu))}")
        if np.any(nu == 0):
            raise ValueError(f"weights must be positive; found a zero weight at index {int(np.argmin(nu))} "
                             "(drop that target instead)")
        total = nu.sum()
        if normalize_weights:
            nu = nu / total
        elif abs(total - 1.0) > _WEIGHT_SUM_TOL:
            raise ValueError(f"weights sum to {total:.8g}, not 1; pass normalize_weights=True to rescale them")
    return measure, jnp.asarray(y), jnp.asarray(nu, jnp.float32)
