"""Optimizers for the semi-discrete OT energy E(h) = E_mu[u_h] - <nu, h>.

Each optimizer is a small frozen recipe: how to sample the source, how many
samples per step and when to grow them, how to turn a Monte-Carlo estimate
into a new ``h`` (a pure, jitted update with NamedTuple state), and when to
stop.  :class:`otgen.ot.solver.SemiDiscreteOT.fit` runs any of them.

* :func:`damped_newton` (the default) — randomised-QMC cell masses, a Newton
  step with the facet-area Hessian estimated from the same samples (samples
  within ``delta`` of a facet, ``delta`` a small quantile of the score gaps),
  solved matrix-free by preconditioned CG.  Damping is Levenberg–Marquardt
  (``H + lam diag(H)``) with back-tracking to the last accepted iterate when
  the estimated error grows beyond its noise or a cell empties (in the spirit
  of Kitagawa–Mérigot–Thibert), plus a trust region in units of the median
  score gap.  The sample size grows only when the estimate becomes
  noise-dominated.  Stops when the estimated ||w - nu||_1 <= tol *and* that
  estimate's own measured noise is <= tol/3.
* :func:`aeot_recipe` — the AE-OT/pyOMT baseline: the same unscrambled Sobol
  points every step, Adam without bias correction, h re-centred each step,
  sample count doubled after 30 steps without improvement of ||g||_2,
  stop at ||g||_2 < 2e-3.

An optimizer is any object with the fields ``name``, ``sampling`` ("rqmc",
"iid" or "sobol"), ``init_h``, ``batch_size``, ``max_steps``, ``needs_hessian``
and the methods ``init(h0) -> state``, ``update(estimate, state, h, nu) ->
(h, state, accepted)``, ``grow(state, n) -> (state, n)``,
``next_batch_size(estimate, n, tol, accepted) -> n`` and
``should_stop(estimate, tol, state) -> bool``.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import cg

__all__ = ["Estimate", "NewtonState", "AdamState", "DampedNewton", "AEOTRecipe", "damped_newton", "aeot_recipe",
           "facet_hessian_matvec"]


class Estimate(NamedTuple):
    """A Monte-Carlo look at the energy at one ``h`` (all arrays; scalars are 0-d)."""

    masses: jax.Array  # (K,) estimated w(h)
    l1: jax.Array  # ||w - nu||_1 estimate
    noise_l1: jax.Array  # estimated L1 noise of `masses` (half-sample difference)
    max_rel: jax.Array  # max_i |w_i - nu_i| / nu_i
    l2: jax.Array  # ||w - nu||_2 (the AE-OT stopping quantity)
    energy: jax.Array  # E_mu[u_h] - <nu, h>
    num_empty: jax.Array  # cells with no sample
    edges: tuple | None = None  # (i1, i2, weight) per sample: facet-area Hessian, or None


def facet_hessian_matvec(edges, num_targets: int):
    """v -> H v for the facet-area Hessian estimated from per-sample edges.

    H is the weighted graph Laplacian with edge weight mu(facet_ij)/|y_i - y_j|,
    estimated as (1 / (2 N delta)) * #{samples whose best two cells are i, j and
    whose score gap is < delta}: raising h_j by t moves exactly the samples of
    cell i with gap < t into cell j.
    """
    i1, i2, c = edges[:3]

    def matvec(v):
        diff = c * (v[i1] - v[i2])
        return jax.ops.segment_sum(diff, i1, num_targets) - jax.ops.segment_sum(diff, i2, num_targets)

    diag = jax.ops.segment_sum(c, i1, num_targets) + jax.ops.segment_sum(c, i2, num_targets)
    return matvec, diag


# ---------------------------------------------------------------------------
# damped Newton (default)


class NewtonState(NamedTuple):
    lam: float  # Levenberg-Marquardt damping: solve (H + lam * diag(H)) d = -g
    prev_h: jax.Array | None  # last accepted iterate (to back-track to)
    prev_g: jax.Array | None  # its gradient estimate
    prev_edges: tuple | None  # its facet-area Hessian estimate
    prev_l1: float
    prev_empty: int


@dataclasses.dataclass(frozen=True)
class DampedNewton:
    name: str = "damped_newton"
    sampling: str = "rqmc"  # "rqmc" for box/Gaussian sources, falls back to "iid" otherwise
    init_h: str = "voronoi"  # h0 = -|y|^2/2 (Voronoi cells); "discrete": exact discrete-OT warm start,
    #                          for clustered targets or a source far from the targets (otgen.ot.warm_start)
    batch_size: int | None = None  # initial samples per step; None: ~256 per target (2^16..2^21)
    max_batch_size: int = 1 << 24
    growth: int = 16  # largest sample-size factor in one step
    noise_ratio: float = 0.3  # grow when noise_l1 > noise_ratio * l1
    stop_noise: float = 1.0 / 3.0  # stop needs noise_l1 <= stop_noise * tol
    max_move: float = 64.0  # trust region, in median score gaps
    band: float = 0.1  # fraction of samples used for the facet-area estimate
    cg_iters: int = 200
    cg_tol: float = 1e-4
    lam0: float = 0.1  # initial Levenberg-Marquardt damping
    lam_min: float = 1e-3
    lam_max: float = 1e3
    max_steps: int = 200
    needs_hessian: bool = True

    def init(self, h0: jax.Array) -> NewtonState:
        return NewtonState(self.lam0, None, None, None, float("inf"), h0.shape[0])

    def update(self, est: Estimate, state: NewtonState, h: jax.Array, nu: jax.Array):
        """One damped Newton step; returns (new h, new state, accepted).

        If the estimated error at ``h`` grew by more than twice its noise, or a
        cell emptied, ``h`` is rejected: back to the last accepted iterate with
        the damping ``lam`` raised 8x (towards a diagonally preconditioned
        gradient step).  Accepted steps lower ``lam`` 4x, down to ``lam_min``.
        """
        l1, empty = float(est.l1), int(est.num_empty)
        worse = l1 > state.prev_l1 + 2.0 * float(est.noise_l1) or empty > state.prev_empty
        if worse and state.prev_h is not None and state.lam < self.lam_max:
            lam = state.lam * 8.0
            d = _lm_direction(state.prev_g, state.prev_edges, nu, lam, self.cg_iters, self.cg_tol, self.max_move)
            return _recentre(state.prev_h + d), state._replace(lam=lam), False
        lam = max(state.lam / 4.0, self.lam_min)
        g = est.masses - nu
        d = _lm_direction(g, est.edges, nu, lam, self.cg_iters, self.cg_tol, self.max_move)
        return _recentre(h + d), NewtonState(lam, h, g, est.edges, l1, empty), True

    def grow(self, state, n: int):
        return state, n

    def next_batch_size(self, est: Estimate, n: int, tol: float, accepted: bool) -> int:
        """Grow the sample size only when the estimate is noise-dominated, by the factor
        the noise needs if it falls like 1/sqrt(N) (conservative: RQMC noise falls faster)."""
        l1, noise = float(est.l1), float(est.noise_l1)
        target = self.noise_ratio * l1
        if l1 <= 2 * tol:  # close to the end: aim straight at the certifying noise level
            target = min(target, 0.8 * self.stop_noise * tol)
        if not accepted or noise <= target:
            return n
        factor = min(max((noise / target) ** 2, 2.0), float(self.growth))
        return int(min(n * 2 ** math.ceil(math.log2(factor)), self.max_batch_size))

    def should_stop(self, est: Estimate, tol: float, state) -> bool:
        return float(est.l1) <= tol and float(est.noise_l1) <= self.stop_noise * tol


@jax.jit
def _recentre(h):
    return h - jnp.mean(h)


@partial(jax.jit, static_argnames=("cg_iters",))
def _lm_direction(g, edges, nu, lam, cg_iters, cg_tol, max_move):
    """Solve (H + lam diag(H) + ridge) d = -g by Jacobi-preconditioned CG; mean-zero, trust-region capped."""
    k = g.shape[0]
    matvec, diag = facet_hessian_matvec(edges, k)
    mean_diag = jnp.maximum(jnp.mean(diag), 1e-30)
    # A cell of mass ~nu_i whose samples sit ~median_gap from its facets has
    # curvature ~nu_i / median_gap.  Cells whose sampled curvature is far below
    # that (few or no samples in the band: small or empty cells, high d) are
    # floored at a tenth of it, so a noisy diagonal cannot produce a huge step.
    # The 1e-3 ridge removes the constant null space and bounds a facet-graph
    # component the samples left disconnected.
    floor = 0.1 * nu / jnp.maximum(edges[3], 1e-30)
    ridge = 1e-3 * mean_diag + jnp.maximum(floor - diag, 0.0)
    shift = lam * diag + ridge
    precond = diag + shift

    d, _ = cg(lambda v: matvec(v) + shift * v, -g, maxiter=cg_iters, tol=cg_tol, M=lambda v: v / precond)
    d = d - jnp.mean(d)
    # Trust region: no height moves by more than `max_move` median score gaps (the
    # typical distance of a sample to its nearest facet) in one step.
    cap = max_move * edges[3]
    return d * jnp.minimum(1.0, cap / jnp.maximum(jnp.max(jnp.abs(d)), 1e-30))


# ---------------------------------------------------------------------------
# AE-OT / pyOMT baseline


class AdamState(NamedTuple):
    m: jax.Array
    v: jax.Array
    best_l2: float
    bad_steps: int


@dataclasses.dataclass(frozen=True)
class AEOTRecipe:
    name: str = "aeot"
    lr: float = 1e-4
    sampling: str = "sobol"  # the same unscrambled Sobol points every step
    init_h: str = "zero"
    batch_size: int = 1000  # bat_size_n; the step uses num_bat * bat_size_n points
    max_batch_size: int = 1 << 26
    patience: int = 30  # steps without a new best ||g||_2 before doubling the samples
    gtol: float = 2e-3  # stop at ||w - nu||_2 < gtol
    max_steps: int = 100_000
    needs_hessian: bool = False

    def init(self, h0: jax.Array) -> AdamState:
        return AdamState(jnp.zeros_like(h0), jnp.zeros_like(h0), float("inf"), 0)

    def update(self, est: Estimate, state: AdamState, h: jax.Array, nu: jax.Array):
        m, v, new_h = _adam_no_bias_correction(est.masses - nu, state.m, state.v, h, self.lr)
        l2 = float(est.l2)
        if l2 <= state.best_l2:
            best, bad = l2, 0
        else:
            best, bad = state.best_l2, state.bad_steps + 1
        return new_h, AdamState(m, v, best, bad), True

    def next_batch_size(self, est: Estimate, n: int, tol: float, accepted: bool) -> int:
        return n

    def grow(self, state: AdamState, n: int) -> tuple[AdamState, int]:
        if state.bad_steps > self.patience:
            return state._replace(best_l2=float("inf"), bad_steps=0), min(2 * n, self.max_batch_size)
        return state, n

    def should_stop(self, est: Estimate, tol: float, state) -> bool:
        return float(est.l2) < self.gtol


@jax.jit
def _adam_no_bias_correction(g, m, v, h, lr):
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    h = h - lr * m / (jnp.sqrt(v) + 1e-8)
    return m, v, h - jnp.mean(h)


def damped_newton(**kwargs) -> DampedNewton:
    """The default optimizer (see module docstring); keyword arguments override its fields."""
    return DampedNewton(**kwargs)


def aeot_recipe(lr: float = 1e-4, batch_size: int = 1000, **kwargs) -> AEOTRecipe:
    """The AE-OT (pyOMT) recipe as a baseline; ``lr`` 5e-2 for 100-d latents, 1e-4 / 2e-5 for 2-D toys."""
    return AEOTRecipe(lr=lr, batch_size=batch_size, **kwargs)
