"""A warm start for clustered targets: heights from an exact discrete OT problem.

Starting the solver at the Voronoi heights ``h = -|y|^2/2`` works when the
targets are spread like the source.  For clustered targets (the 2-D toys,
latent codes of a multi-modal data set) the Voronoi cells of a cluster's
interior points are tiny and its boundary points take the whole space: almost
all mass starts in the wrong cells, Monte-Carlo samples never reach the tiny
cells, and neither damped Newton nor Adam makes progress (measured on ring8
with 2,000 points: ||w - nu||_1 stays ~1.8 for 60 steps).

Semi-discrete OT is the limit of discrete OT between many source samples and
the targets, so the target-side dual potentials of an *exact* discrete problem
(POT's network simplex, cost ``-<x, y>``) are consistent heights: with the
constraint ``u_s + v_i <= -<x_s, y_i>``, optimality gives
``-u_s = max_i <x_s, y_i> + v_i``, i.e. ``h = v``.  On 4 QMC samples per target
every cell starts with mass of the right order (||w - nu||_1 ~ 0.25 on ring8 and
grid25, measured) and damped Newton then converges in a few steps.  The cost
matrix is ``N x K``, so this is only for moderate ``K`` (see ``max_entries``).

For larger ``K``, :func:`multiscale_heights` is the coarse-to-fine start of
Mérigot (2011, "A multiscale approach to optimal transport"): cluster the targets
(weighted k-means), solve the coarse problem (recursively, with the same solver
and start), and split each coarse cell among the cluster's members by a small exact discrete
OT problem between the cell's own source samples and the members (Mérigot's rule,
``h_i = h_c + (|c|^2 - |y_i|^2) / 2``, splits the cell as the members' Voronoi
diagram, which starves the members that face away from the source's mass: measured
on 8 Gaussian clusters, K = 2,000, 1,682 of 2,000 cells started empty).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import ot  # POT: the exact discrete OT problems

from otgen.ot import scores
from otgen.ot.measures import sample_batches

__all__ = ["discrete_ot_heights", "weighted_kmeans", "multiscale_heights"]


def discrete_ot_heights(source, targets, weights, key: jax.Array, *, samples_per_target: int = 4,
                        max_entries: int = 40_000_000) -> jax.Array | None:
    """Heights (K,) from exact discrete OT of ``N = samples_per_target * K`` source samples onto the targets.

    Returns ``None`` when even one sample per target would need a cost matrix of
    more than ``max_entries`` entries (the caller then keeps its default start).
    Deterministic in ``key`` (randomised QMC samples where the source offers them).
    """
    y = np.asarray(targets, np.float64)
    nu = np.asarray(weights, np.float64)
    k = y.shape[0]
    per = min(int(samples_per_target), max_entries // max(k * k, 1))
    if per < 1:
        return None
    n = per * k
    x = source.qmc_sample(key, n) if hasattr(source, "qmc_sample") else source.sample(key, n)
    x = np.asarray(x, np.float64)
    cost = -(x @ y.T)
    cost -= cost.min()  # the network simplex wants non-negative costs; a constant does not change v up to a shift
    _, log = ot.emd(np.full(n, 1.0 / n), nu / nu.sum(), cost, numItermax=max(10**6, 50 * n), log=True)
    h = np.asarray(log["v"], np.float64)
    if log.get("warning") or not np.all(np.isfinite(h)):
        return None
    return jnp.asarray(h - h.mean(), jnp.float32)


def weighted_kmeans(y, weights, m: int, key: jax.Array, *, iters: int = 8):
    """Lloyd's algorithm on weighted points: returns (centres (m', d) f32, labels (K,), cluster weights (m',)).

    Starts from ``m`` distinct targets drawn uniformly; assignment by the tiled
    argmax kernel (nearest centre = argmax <y, c> - |c|^2 / 2).  Empty clusters are
    dropped and coinciding centres merged, so ``m' <= m`` and the centres are distinct.
    """
    y = jnp.asarray(y, jnp.float32)
    nu = jnp.asarray(weights, jnp.float32)
    k = y.shape[0]
    m = int(min(max(m, 1), k))
    centres = y[jax.random.choice(key, k, (m,), replace=False)]
    for _ in range(iters):
        labels = scores.assign_cells(y, centres, -0.5 * jnp.sum(centres * centres, axis=1))
        mass = jax.ops.segment_sum(nu, labels, m)
        sums = jax.ops.segment_sum(y * nu[:, None], labels, m)
        centres = jnp.where(mass[:, None] > 0, sums / jnp.maximum(mass, 1e-30)[:, None], centres)
    labels = np.asarray(scores.assign_cells(y, centres, -0.5 * jnp.sum(centres * centres, axis=1)))
    used = np.unique(labels)
    c, inverse = np.unique(np.asarray(centres)[used], axis=0, return_inverse=True)
    remap = np.zeros(m, np.int64)
    remap[used] = inverse.reshape(-1)
    labels = remap[labels]
    cw = np.bincount(labels, weights=np.asarray(weights, np.float64), minlength=c.shape[0])
    return c.astype(np.float32), labels, cw / cw.sum()


def multiscale_heights(source, targets, weights, key: jax.Array, solve_coarse, *, ratio: int = 8):
    """Heights (K,) from a coarse problem on ``K / ratio`` k-means centres; returns (h, note).

    ``solve_coarse(centres, weights, key) -> BrenierMap`` solves the coarse problem (the solver
    passes its own fit with its default start, loosely: a start needs the right mass per
    cluster, not a certified fit), so this module does not import the solver back.
    """
    k_means, k_fit, k_cells = jax.random.split(key, 3)
    y = np.asarray(targets, np.float64)
    nu = np.asarray(weights, np.float64)
    centres, labels, cw = weighted_kmeans(y.astype(np.float32), weights, max(2, y.shape[0] // ratio), k_means)
    cmap = solve_coarse(centres, cw, k_fit)
    # Split every coarse cell among its cluster by a small exact discrete OT problem between the
    # cell's own source samples (16 per member, RQMC) and the members, with cost -<x, y_i - c>:
    # its duals v_i are the members' relative heights.  The shift kappa_c = mean of the sample
    # duals keeps the cluster's outer envelope where the coarse cell's was, on average.
    m = centres.shape[0]
    xs, cells = [], []
    for x in sample_batches(source, k_cells, 16 * y.shape[0], 1 << 16, qmc=hasattr(source, "qmc_sample")):
        cells.append(np.asarray(cmap.assign(x)))
        xs.append(np.asarray(x, np.float64))
    xs, cells = np.concatenate(xs), np.concatenate(cells)
    by_cell = np.split(np.argsort(cells, kind="stable"), np.cumsum(np.bincount(cells, minlength=m))[:-1])
    members = np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels, minlength=m))[:-1])
    hc = np.asarray(cmap.h, np.float64)
    c64 = centres.astype(np.float64)
    h = np.empty(y.shape[0])
    starved = 0
    for c in range(m):
        idx, delta = members[c], y[members[c]] - c64[c]
        pts = xs[by_cell[c]]
        if idx.size == 1:
            h[idx] = hc[c]
            continue
        if pts.shape[0] < 2 * idx.size:  # the coarse cell got too few samples: Merigot's rule
            starved += 1
            h[idx] = hc[c] - delta @ c64[c] - 0.5 * np.sum(delta ** 2, axis=1)
            continue
        cost = -(pts @ delta.T)
        cost -= cost.min()
        _, log = ot.emd(np.full(pts.shape[0], 1.0 / pts.shape[0]), nu[idx] / nu[idx].sum(), cost, log=True)
        v = np.asarray(log["v"])
        kappa = np.mean(np.max(pts @ delta.T + v, axis=1))  # the cluster's envelope above u_c, on average
        h[idx] = hc[c] + v - kappa
    note = (f"multiscale start: {y.shape[0]} targets -> {m} k-means centres, "
            f"coarse fit {cmap.diagnostics.summary()}"
            + (f"; {starved} coarse cells with too few samples split by Merigot's rule" if starved else ""))
    return jnp.asarray(h - h.mean(), jnp.float32), note
