"""The default Monte-Carlo optimizer: damped Newton on randomised-QMC cell masses, with the facet-area
Hessian estimated from the same samples, solved matrix-free by preconditioned CG, Levenberg-Marquardt
damped, trust-region capped and globalised by a line search (the interface it implements:
:mod:`otgen.ot.optim`).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.sparse.linalg import cg

from otgen.ot.optim import METRICS, Estimate, chi2_noise_at, error_of, noise_of, recentre

__all__ = ["NewtonState", "DampedNewton", "damped_newton", "facet_hessian_matvec"]


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


class NewtonState(NamedTuple):
    """Damped Newton carries nothing from step to step: each step is re-estimated and line-searched."""


@dataclasses.dataclass(frozen=True)
class DampedNewton:
    name: str = "damped_newton"
    sampling: str = "rqmc"  # "rqmc" for box/Gaussian sources, falls back to "iid" otherwise
    init_h: str = "auto"  # "auto": discrete-OT start for K <= discrete_max_k, multiscale above
    #                       (otgen.ot.warm_start); "discrete", "multiscale", "voronoi" or "zero" to force one
    batch_size: int | None = None  # initial samples per step; None: ~256 per target (2^16..2^21)
    max_batch_size: int = 1 << 24
    growth: int = 16  # largest sample-size factor in one step
    noise_ratio: float = 0.3  # grow when noise_l1 > noise_ratio * l1
    stop_noise: float = 1.0 / 3.0  # stop needs noise_l1 <= stop_noise * tol
    max_move: float = 64.0  # trust region, in median score gaps
    band: float = 0.1  # fraction of samples used for the facet-area estimate
    cg_iters: int = 200
    cg_tol: float = 1e-4
    damping: float = 1e-3  # Levenberg-Marquardt: solve (H + damping * diag H) d = -g; the line search globalises
    max_halvings: int = 8  # line search: step sizes 1, 1/2, ..., 2^-max_halvings
    decrease: float = 0.05  # accept step t when L1(h + t d) <= (1 - decrease * t) L1(h) (same samples); small,
    #                         as in Armijo's rule: the Newton direction comes from an estimated Hessian
    mass_floor: float = 0.5  # ... and no cell falls below mass_floor * min(w_i(h), nu_i)
    max_steps: int = 200
    needs_hessian: bool = True
    metric: str = "l1"  # what tol bounds: "l1" = ||w - nu||_1, "chi2" = sum_i (w_i - nu_i)^2 / nu_i
    #                     (certifiable at any K: its noise falls like sqrt(K)/N, L1's like sqrt(K/N))

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")

    def init(self, h0: jax.Array) -> NewtonState:
        return NewtonState()

    def update(self, est: Estimate, state: NewtonState, h: jax.Array, nu: jax.Array, probe, capture=None,
               score_gap=None):
        """One globalised damped Newton step; returns (new h, new state, step size taken).

        The step rule of Kitagawa, Merigot & Thibert (JEMS 2019), with Monte-Carlo masses:
        the Newton direction ``d`` (Levenberg-Marquardt damped, trust-region capped) is
        tried at ``t = 1, 1/2, 1/4, ...``; ``probe(h')`` re-estimates the masses on *the
        same samples* as ``est`` (common random numbers, so the comparison is not drowned
        in Monte-Carlo noise).  ``t`` is accepted when the L1 error falls by the factor
        ``1 - decrease * t`` and no cell loses more than half of ``min(w_i, nu_i)``
        (cells resolved by fewer than 4 samples are exempt).  If no ``t`` passes, ``h``
        is kept (step size 0) and the caller grows the sample (a better Hessian estimate).

        Empty cells have no facet samples, so Newton cannot see how far to raise them.
        First, ``capture(h, idx)`` gives for each empty cell the raise of its height
        alone that gives it its mass ``nu_i`` (an exact coordinate minimisation of the
        convex energy, on a sample); that move is kept when it lowers the error, and the
        Newton step then starts from there (``probe(h', hessian=True)``).
        """
        moved = False
        if capture is not None:
            empty = np.flatnonzero((np.asarray(est.masses) == 0) & (np.asarray(nu) * est.num_samples >= 1.0))
            if empty.size:
                h_try = recentre(h.at[empty].add(capture(h, empty)))
                trial = probe(h_try, hessian=True)
                if error_of(trial, self.metric) < error_of(est, self.metric):
                    h, est, moved = h_try, trial, True
        err = error_of(est, self.metric)
        g = est.masses - nu
        d = _lm_direction(g, est.edges, nu, self.damping, self.cg_iters, self.cg_tol, self.max_move)
        floor = self.mass_floor * jnp.minimum(est.masses, nu)
        floor = jnp.where(floor * est.num_samples >= 2.0, floor, 0.0)
        if bool(jnp.all(jnp.isfinite(d))):
            t = 1.0
            for _ in range(self.max_halvings + 1):
                h_try = recentre(h + t * d)
                trial = probe(h_try)
                if (error_of(trial, self.metric) <= (1.0 - self.decrease * t) * err
                        and bool(jnp.all(trial.masses >= floor))):
                    return h_try, state, t
                t *= 0.5
        return h, state, 1.0 if moved else 0.0  # 1.0: the capture alone lowered the error

    def next_batch_size(self, est: Estimate, state: NewtonState, n: int, tol: float, step_size: float):
        """Returns (state, n).  Grow the sample size when the estimate is noise-dominated, by the factor the
        noise needs if L1 noise falls like 1/sqrt(N) and chi2 noise like 1/N (conservative: RQMC
        noise falls faster), or 4x after a step the line search could not accept (a better Hessian)."""
        if step_size == 0.0:
            return state, int(min(4 * n, self.max_batch_size))
        err, noise = error_of(est, self.metric), noise_of(est, self.metric)
        target = self.noise_ratio * max(err, 0.0)
        if err <= 2 * tol:  # close to the end: aim straight at the certifying noise level
            target = min(target, 0.8 * self.stop_noise * tol)
        if noise <= target:
            return state, n
        ratio = noise / max(target, 1e-30)
        factor = min(max(ratio if self.metric == "chi2" else ratio ** 2, 2.0), float(self.growth))
        return state, int(min(n * 2 ** math.ceil(math.log2(factor)), self.max_batch_size))

    def should_stop(self, est: Estimate, tol: float, state) -> bool:
        return error_of(est, self.metric) <= tol and noise_of(est, self.metric) <= self.stop_noise * tol

    def unreachable(self, est: Estimate, n: int, tol: float) -> bool:
        """The largest sample still leaves the estimate too noisy to certify ``tol``."""
        if self.metric == "chi2":
            return n >= self.max_batch_size and chi2_noise_at(tol, est.masses.shape[0], n) > self.stop_noise * tol
        return n >= self.max_batch_size and noise_of(est, self.metric) > self.stop_noise * tol


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


def damped_newton(**kwargs) -> DampedNewton:
    """The default optimizer (see module docstring); keyword arguments override its fields."""
    return DampedNewton(**kwargs)
