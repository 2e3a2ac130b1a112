"""Does a generator generate, or replay its training set?  Nearest-neighbour evidence.

Every quantity compares the generated samples ``Q`` with *held-out* real samples
``P`` (drawn like the training set ``T`` but not in it), so a number means
something only next to its controls: fresh real data scores the held-out value
by construction, a replay of ``T`` scores what a copier scores.

* :func:`nearest_distances` -- distance from each row to its nearest point of a
  reference set (a k-d tree in low dimension, blocked exact products above).
* :func:`copy_fraction` -- fraction of samples closer to a training point than
  ``rel`` (1%) of the training set's own median nearest-neighbour spacing.
  Scale-aware: a float round trip (~1e-7) does not make a copy new.
* :func:`data_copying_test` -- the C_T statistic of Meehan, Chaudhuri & Dasgupta,
  "A non-parametric test to detect data-copying in generative models" (AISTATS
  2020): partition the space by k-means on ``T``; in each cell compare the
  distances to the cell's nearest training point of ``Q`` and of ``P`` by a
  Mann-Whitney U test, z-scored under the null; average the z-scores weighted by
  ``P``'s share of each cell, over the cells holding more than ``tau`` of ``Q``.
  Strongly negative: ``Q`` sits closer to ``T`` than fresh data does (copying);
  ~0: like held-out data; positive: farther (underfitting, blur).
* ``nn_global_z`` -- the global form of the same test: Mann-Whitney z of every
  sample's nearest-training distance against every held-out point's, over the
  whole space (no cells).  ~0 (|z| < 3) like fresh data; << 0 closer to the
  training set than fresh data (copying or bunching near training points).
* :func:`novelty` -- all of the above in one flat dict, the fields every suite
  stores in ``metrics.json``.
* :func:`novelty_reference` -- the part of :func:`novelty` that depends on the
  training and held-out sets only (the training set's spacing, the held-out
  distances, the k-means cells), computed once and shared by every generator
  scored against the same data (on MNIST it is ~90% of the cost).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from otgen.stats import mann_whitney_z

__all__ = ["nearest_distances", "training_spacing", "copy_fraction", "mann_whitney_z", "data_copying_test",
           "NoveltyReference", "novelty_reference", "novelty", "NOVELTY_FIELDS"]

NOVELTY_FIELDS = ("copy_fraction", "data_copying_ct", "nn_global_z", "nn_distance_ratio", "median_nn_distance",
                  "median_nn_distance_held_out")


def _as_rows(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x.reshape(len(x), -1)
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return x


def nearest_distances(x, reference, *, exclude_self: bool = False, block: int = 2048) -> np.ndarray:
    """Euclidean distance (n,) from each row of ``x`` to its nearest row of ``reference``.

    Non-finite rows get ``inf``.  ``exclude_self``: ``x`` *is* ``reference`` and a
    row's own zero distance does not count (its second neighbour is returned).
    """
    x, ref = _as_rows(x, "x"), _as_rows(reference, "reference")
    if x.shape[1] != ref.shape[1]:
        raise ValueError(f"x has dimension {x.shape[1]} but the reference {ref.shape[1]}")
    ok = np.all(np.isfinite(x), axis=1)
    out = np.full(len(x), np.inf)
    if exclude_self and x.shape != ref.shape:
        raise ValueError("exclude_self: x must be the reference itself")
    if x.shape[1] <= 8:  # k-d trees pay off in low dimension only
        from scipy.spatial import cKDTree

        d, _ = cKDTree(ref).query(x[ok], k=2 if exclude_self else 1)
        out[ok] = d[:, -1] if exclude_self else d
        return out
    # |x - y|^2 = |x|^2 + (|y|^2 - 2 x.y): the nearest y minimises the bracket, computed in place (one
    # (block, n) buffer) and reduced by min; |x|^2 is added to the minimum only.
    ref_sq = np.sum(ref * ref, axis=1)
    x_sq = np.sum(x * x, axis=1)
    rows = np.flatnonzero(ok)
    for s in range(0, len(rows), block):
        r = rows[s:s + block]
        g = x[r] @ ref.T
        g *= -2.0
        g += ref_sq[None, :]
        if exclude_self:  # x is reference: row i's own column is i (a duplicate elsewhere still counts)
            g[np.arange(len(r)), r] = np.inf
        out[r] = np.sqrt(np.maximum(g.min(axis=1) + x_sq[r], 0.0))
    return out


def training_spacing(train) -> float:
    """Median distance from a training point to its nearest *other* training point."""
    return float(np.median(nearest_distances(train, train, exclude_self=True)))


def copy_fraction(samples, train, rel: float = 0.01, spacing: float | None = None) -> float:
    """Fraction of samples within ``rel * training_spacing(train)`` of a training point."""
    spacing = training_spacing(train) if spacing is None else spacing
    return float(np.mean(nearest_distances(samples, train) <= rel * spacing))


def _partition(t: np.ndarray, n_held_out: int, cells: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means cells of the training set: (centres, each training point's cell)."""
    from scipy.cluster.vq import kmeans2

    k = int(cells) if cells is not None else int(np.clip(n_held_out // 40, 1, 50))
    return kmeans2(t, min(k, len(t)), minit="++", seed=seed)


def data_copying_test(train, held_out, generated, *, cells: int | None = None, tau: float | None = None,
                      seed: int = 0, partition: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Meehan et al.'s C_T statistic (see the module docstring) with its per-cell details.

    ``cells``: k-means cells on the training set (default ``min(50, len(held_out) // 40)``,
    so a cell holds ~40 held-out points or more); ``tau``: minimum share of
    ``generated`` for a cell to count (default 20 samples); ``partition``: those
    cells, (centres, training points' cells), if already computed.  Returns
    ``{"ct": C_T, "cells": k, "cells_used": ..., "z": per-cell z (nan where unused)}``.
    """
    from scipy.cluster.vq import vq

    t, p, q = _as_rows(train, "train"), _as_rows(held_out, "held_out"), _as_rows(generated, "generated")
    q = q[np.all(np.isfinite(q), axis=1)]
    if len(q) == 0:
        raise ValueError("no finite generated sample")
    tau = 20 / len(q) if tau is None else float(tau)
    centres, t_cell = _partition(t, len(p), cells, seed) if partition is None else partition
    k = len(centres)
    p_cell, q_cell = vq(p, centres)[0], vq(q, centres)[0]
    z = np.full(k, np.nan)
    weight = np.zeros(k)
    for c in range(k):
        tc, pc, qc = t[t_cell == c], p[p_cell == c], q[q_cell == c]
        if len(tc) == 0 or len(pc) == 0 or len(qc) / len(q) <= tau:
            continue
        z[c] = mann_whitney_z(nearest_distances(qc, tc), nearest_distances(pc, tc))
        weight[c] = len(pc) / len(p)
    used = weight > 0
    ct = float(np.dot(weight[used], z[used]) / weight[used].sum()) if used.any() else float("nan")
    return {"ct": ct, "cells": k, "cells_used": int(used.sum()), "z": z}


class NoveltyReference(NamedTuple):
    """What :func:`novelty` needs of the training and held-out sets alone."""

    train: np.ndarray  # (n, d) float64
    held_out: np.ndarray  # (m, d) float64
    spacing: float  # training_spacing(train)
    held_out_distances: np.ndarray  # (m,) distance of each held-out point to the training set
    partition: tuple[np.ndarray, np.ndarray]  # C_T's k-means cells: (centres, training points' cells)


def novelty_reference(train, held_out, *, seed: int = 0) -> NoveltyReference:
    """The training/held-out half of :func:`novelty`, to score many generators against one dataset."""
    t, p = _as_rows(train, "train"), _as_rows(held_out, "held_out")
    if t.shape[1] != p.shape[1]:
        raise ValueError(f"train has dimension {t.shape[1]} but held_out {p.shape[1]}")
    return NoveltyReference(t, p, training_spacing(t), nearest_distances(p, t), _partition(t, len(p), None, seed))


def novelty(samples, train, held_out=None, *, seed: int | None = None, rel: float = 0.01) -> dict:
    """The novelty fields of ``metrics.json`` for ``samples`` given the training and held-out sets
    (or, as ``train``, their :func:`novelty_reference`, which fixed C_T's cells).  ``seed``: of
    C_T's k-means cells (default 0).

    ``copy_fraction`` (see :func:`copy_fraction`), ``data_copying_ct`` (C_T),
    ``nn_distance_ratio`` = median distance of a sample to its nearest training
    point over the same for held-out points (1 for fresh data, 0 for a copier),
    and both medians.
    """
    if isinstance(train, NoveltyReference):
        if held_out is not None or seed is not None:
            raise ValueError("a novelty_reference already holds the held-out set and C_T's cells (its seed); "
                             "give the sets or the reference, not both")
        ref = train
    elif held_out is None:
        raise ValueError("novelty needs a held-out set (or a novelty_reference)")
    else:
        ref = novelty_reference(train, held_out, seed=0 if seed is None else seed)
    d_gen = nearest_distances(samples, ref.train)
    finite = np.isfinite(d_gen)
    med_gen = float(np.median(d_gen[finite])) if finite.any() else float("nan")
    med_held = float(np.median(ref.held_out_distances))
    return {"copy_fraction": float(np.mean(d_gen <= rel * ref.spacing)),
            "data_copying_ct": data_copying_test(ref.train, ref.held_out, samples, partition=ref.partition)["ct"],
            "nn_global_z": mann_whitney_z(d_gen, ref.held_out_distances),
            "nn_distance_ratio": med_gen / med_held if med_held > 0 else float("nan"),
            "median_nn_distance": med_gen, "median_nn_distance_held_out": med_held}
