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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["discrete_ot_heights"]


def discrete_ot_heights(source, targets, weights, key: jax.Array, *, samples_per_target: int = 4,
                        max_entries: int = 40_000_000) -> jax.Array | None:
    """Heights (K,) from exact discrete OT of ``N = samples_per_target * K`` source samples onto the targets.

    Returns ``None`` when even one sample per target would need a cost matrix of
    more than ``max_entries`` entries (the caller then keeps its default start).
    Deterministic in ``key`` (randomised QMC samples where the source offers them).
    """
    import ot  # POT

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
