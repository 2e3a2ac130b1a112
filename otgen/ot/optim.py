"""Optimizers for the semi-discrete OT energy E(h) = E_mu[u_h] - <nu, h>.

Each optimizer is a small frozen recipe: how to sample the source, how many
samples per step and when to grow them, how to turn a Monte-Carlo estimate
into a new ``h`` (a pure, jitted update with NamedTuple state), and when to
stop.  :class:`otgen.ot.solver.SemiDiscreteOT.fit` runs any of them.

* :func:`damped_newton` (the default) — randomised-QMC cell masses, a Newton
  step with the facet-area Hessian estimated from the same samples (samples
  within ``delta`` of a facet, ``delta`` a small quantile of the score gaps),
  solved matrix-free by preconditioned CG, with step halving when the
  estimated error grows (Kitagawa–Mérigot–Thibert damping) and a sample size
  that grows only when the estimate becomes noise-dominated.  Stops when the
  estimated ||w - nu||_1 <= tol *and* that estimate's own noise is <= tol/3.
* :func:`aeot_recipe` — the AE-OT/pyOMT baseline: the same unscrambled Sobol
  points every step, Adam without bias correction, h re-centred each step,
  sample count doubled after 30 steps without improvement of ||g||_2,
  stop at ||g||_2 < 2e-3.
"""

from __future__ import annotations

import dataclasses
import math
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
    step_scale: jax.Array  # current damping t in (0, 1]
    prev_h: jax.Array  # h before the last step (to back-track)
    prev_dir: jax.Array  # the last Newton direction
    prev_l1: jax.Array  # estimated error at prev_h
    prev_empty: jax.Array  # empty cells at prev_h


@dataclasses.dataclass(frozen=True)
class DampedNewton:
    name: str = "damped_newton"
    sampling: str = "rqmc"  # "rqmc" for box/Gaussian sources, falls back to "iid" otherwise
    init_h: str = "voronoi"  # h0 = -|y|^2/2: cells start as Voronoi cells, all non-empty
    batch_size: int | None = None  # initial samples per step; None: ~64 per target (2^14..2^22)
    max_batch_size: int = 1 << 24
    growth: int = 16  # largest sample-size factor in one step
    noise_ratio: float = 0.3  # grow when noise_l1 > noise_ratio * l1
    stop_noise: float = 1.0 / 3.0  # stop needs noise_l1 <= stop_noise * tol
    max_move: float = 64.0  # trust region, in median score gaps
    band: float = 0.1  # fraction of samples used for the facet-area estimate
    cg_iters: int = 200
    cg_tol: float = 1e-4
    min_scale: float = 1.0 / 64
    max_steps: int = 200
    needs_hessian: bool = True

    def init(self, h0: jax.Array) -> NewtonState:
        k = h0.shape[0]
        return NewtonState(jnp.float32(1.0), h0, jnp.zeros(k, h0.dtype), jnp.float32(jnp.inf), jnp.int32(k))

    def update(self, est: Estimate, state: NewtonState, h: jax.Array, nu: jax.Array):
        new_h, new_state, accepted = _newton_update(est, state, h, nu, self.cg_iters, self.cg_tol, self.min_scale,
                                                     self.max_move)
        return new_h, new_state, bool(accepted)

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


def _newton_direction(est: Estimate, g: jax.Array, cg_iters: int, cg_tol: float, max_move: float) -> jax.Array:
    k = g.shape[0]
    matvec, diag = facet_hessian_matvec(est.edges, k)
    mean_diag = jnp.maximum(jnp.mean(diag), 1e-30)
    # Cells with (almost) no facet samples — e.g. empty cells — get a gradient step
    # of the typical curvature instead of an unbounded one; a tiny ridge removes the
    # constant null space.
    # The ridge (1e-3) also bounds the step of a facet-graph component that the
    # samples left disconnected from the rest.
    ridge = 1e-3 * mean_diag + jnp.where(diag < 1e-2 * mean_diag, mean_diag, 0.0)
    precond = diag + ridge

    def a(v):
        return matvec(v) + ridge * v

    d, _ = cg(a, -g, maxiter=cg_iters, tol=cg_tol, M=lambda v: v / precond)
    d = d - jnp.mean(d)
    # Trust region: no height moves by more than `max_move` median score gaps (the
    # typical distance of a sample to its nearest facet) in one step.
    cap = max_move * est.edges[3]
    return d * jnp.minimum(1.0, cap / jnp.maximum(jnp.max(jnp.abs(d)), 1e-30))


@jax.jit
def _newton_jit_inner(est, state, h, nu, min_scale, direction):
    # Back-track when the error grew beyond its noise, or cells emptied.
    worse = (est.l1 > state.prev_l1 + 2.0 * est.noise_l1) | (est.num_empty > state.prev_empty)
    can_halve = state.step_scale > min_scale
    reject = worse & can_halve
    half = 0.5 * state.step_scale
    h_back = state.prev_h + half * state.prev_dir
    t_acc = jnp.minimum(1.0, 2.0 * state.step_scale)
    h_acc = h + t_acc * direction
    new_h = jnp.where(reject, h_back, h_acc)
    new_h = new_h - jnp.mean(new_h)
    new_state = NewtonState(
        step_scale=jnp.where(reject, half, t_acc),
        prev_h=jnp.where(reject, state.prev_h, h),
        prev_dir=jnp.where(reject, state.prev_dir, direction),
        prev_l1=jnp.where(reject, state.prev_l1, est.l1),
        prev_empty=jnp.where(reject, state.prev_empty, est.num_empty),
    )
    return new_h, new_state, ~reject


def _direction(est, nu, cg_iters, cg_tol, max_move):
    return _newton_direction(est, est.masses - nu, cg_iters, cg_tol, max_move)


_direction_jit = jax.jit(_direction, static_argnums=(2,))


def _newton_update(est, state, h, nu, cg_iters, cg_tol, min_scale, max_move):
    direction = _direction_jit(est, nu, cg_iters, cg_tol, max_move)
    return _newton_jit_inner(est, state, h, nu, min_scale, direction)


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

    def next_batch_size(self, est: Estimate, n: int, tol: float, accepted: bool, state=None) -> int:
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
