"""Optimizers for the semi-discrete OT energy E(h) = E_mu[u_h] - <nu, h>.

Each optimizer is a small frozen recipe: how to sample the source, how many
samples per step and when to grow them, how to turn a Monte-Carlo estimate
into a new ``h`` (a pure, jitted update with NamedTuple state), and when to
stop.  :class:`otgen.ot.solver.SemiDiscreteOT.fit` runs any of them.

* :func:`damped_newton` (the default) — randomised-QMC cell masses, a Newton
  step with the facet-area Hessian estimated from the same samples (samples
  within ``delta`` of a facet, ``delta`` a small quantile of the score gaps),
  solved matrix-free by preconditioned CG, Levenberg–Marquardt damped
  (``H + damping diag(H)``) and capped by a trust region in median score gaps.
  Globalised by the step rule of Kitagawa–Mérigot–Thibert: a backtracking line
  search on the same samples (common random numbers) that demands a decrease
  of the error and keeps every resolved cell above half its mass.  The sample
  size grows when the estimate becomes noise-dominated or a line search fails.
  Stops when the estimated ||w - nu||_1 <= tol *and* that estimate's own
  measured noise is <= tol/3.
* :func:`averaged_sgd` (the default at large K) — Jacobi-preconditioned SGD on
  fresh samples, one cheap step per estimate, returning the polynomial-decay
  average of its iterates (checked on fresh samples); stops on chi2.
* :func:`aeot_recipe` — the AE-OT/pyOMT baseline: the same unscrambled Sobol
  points every step, Adam without bias correction, h re-centred each step,
  sample count doubled after 30 steps without improvement of ||g||_2,
  stop at ||g||_2 < 2e-3.

An optimizer is any object with the fields ``name``, ``sampling`` ("rqmc",
"iid" or "sobol"), ``init_h``, ``batch_size``, ``max_steps``, ``needs_hessian``
and the methods ``init(h0) -> state``, ``update(estimate, state, h, nu, probe, capture, score_gap) ->
(h, state, step_size)`` (``probe(h')`` re-estimates on the same samples; 0 = rejected;
``score_gap(h)`` is the median score gap to the nearest facet),
``next_batch_size(estimate, state, n, tol, step_size) -> (state, n)``,
``should_stop(estimate, tol, state) -> bool`` and ``unreachable(estimate, n, tol) -> bool``
(the requested tol cannot be certified at the largest sample size); optionally
``candidate(state, K, tol, final) -> (state, h_c, n)``: another point (an average) that
``fit`` checks on ``n`` fresh samples and may return.
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

__all__ = ["Estimate", "NewtonState", "AdamState", "DampedNewton", "AEOTRecipe", "AveragedSGD", "AveragedState",
           "damped_newton", "aeot_recipe", "averaged_sgd", "facet_hessian_matvec"]


class Estimate(NamedTuple):
    """A Monte-Carlo look at the energy at one ``h`` (all arrays; scalars are 0-d)."""

    masses: jax.Array  # (K,) estimated w(h)
    l1: jax.Array  # ||w - nu||_1 estimate
    noise_l1: jax.Array  # estimated L1 noise of `masses` (half-sample difference)
    max_rel: jax.Array  # max_i |w_i - nu_i| / nu_i
    l2: jax.Array  # ||w - nu||_2 (the AE-OT stopping quantity)
    energy: jax.Array  # E_mu[u_h] - <nu, h>
    num_empty: jax.Array  # cells with no sample
    edges: tuple | None = None  # (i1, i2, weight, median gap) per sample: facet-area Hessian, or None
    chi2: jax.Array | float = float("nan")  # unbiased sum_i (w_a,i - nu_i)(w_b,i - nu_i) / nu_i
    noise_chi2: jax.Array | float = float("nan")  # its Monte-Carlo standard error, (2/N) sqrt(K + N chi2)
    num_samples: int = 0  # both halves together


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


METRICS = ("l1", "chi2")


def error_of(est: Estimate, metric: str) -> float:
    """The estimate's error in ``metric``: ``l1`` = ||w - nu||_1, ``chi2`` = the unbiased chi-square."""
    return float(est.chi2 if metric == "chi2" else est.l1)


def noise_of(est: Estimate, metric: str) -> float:
    """The Monte-Carlo noise of :func:`error_of` (what a stop must certify)."""
    return float(est.noise_chi2 if metric == "chi2" else est.noise_l1)


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
                h_try = _recentre(h.at[empty].add(capture(h, empty)))
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
                h_try = _recentre(h + t * d)
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
# preconditioned SGD with iterate averaging (large K)


class AveragedState(NamedTuple):
    gap: float  # median score gap at the start: the step's length scale (0 until the first update)
    h_avg: jax.Array  # polynomial-decay average of the iterates (the candidate that is checked and returned)
    steps: int  # iterates averaged
    n_seen: int  # samples drawn by the steps so far
    last_check: int  # n_seen at the last check of the average (0: none yet)


@dataclasses.dataclass(frozen=True)
class AveragedSGD:
    """Jacobi-preconditioned SGD on fresh samples, returning the average of its iterates: for large K.

    At K = 60,000, d = 16 one pass over 2^16 samples costs ~2.5 s on 2 cores, and a
    step's masses carry chi2 noise ~K / n (0.9 there): every estimate is mostly noise,
    so the map has to be an average.  Each step draws ``batch_size`` fresh i.i.d. samples
    and moves

        h_i <- h_i - step * gap * (w_i - nu_i) / nu_i

    (``gap``: the median score gap to the nearest facet at the start, the distance over
    which a cell's mass responds to its own height; a cell of mass ~nu_i has
    ``dw_i/dh_i ~ nu_i / gap``, so this is a damped Jacobi-Newton step.  In d >= 5 each cell
    has hundreds of facets and the facet Laplacian is close to its diagonal.)  The iterates
    are averaged with polynomial decay, ``h_avg <- (1 - a) h_avg + a h``,
    ``a = (gamma + 1) / (t + gamma)`` (Shamir & Zhang, ICML 2013): the average forgets the
    transient and keeps ~ the last 1 / (gamma + 1) of the run, so its chi2 falls like
    K / N with N the samples drawn.  Measured on MNIST codes (K = 60,000, d = 16) after
    160 steps of 2^16 samples: last iterate chi2 0.145, average 0.0116 (K / N = 0.0057).

    The per-step estimates speak about the iterate ``h``, not the average, so the average is
    *checked* on fresh samples (enough to certify ``tol``) once the samples drawn could
    bring it to ``tol`` (N >= 2 K / tol), then each time N grew by half (and by at least
    four checks' worth), and at the end (when no check was due, on at most a quarter of the
    samples drawn: a comparison, not a certificate): the fit returns whichever of the checked averages
    and the iterates has the lowest estimated error, and stops when a check certifies ``tol``.
    """

    name: str = "averaged_sgd"
    sampling: str = "iid"  # chi2's noise bound, which certifies a stop, holds for i.i.d. samples
    init_h: str = "voronoi"  # the multiscale start costs several steps' worth at K = 60,000
    batch_size: int | None = 1 << 16
    # In units of the median score gap.  Minimax over five K = 6,000 copies (scripts/tune_averaged_sgd.py,
    # chi2 x N / K of the returned map): 0.45 is within 11% of the best step on each of them, 0.3 was 1.8x
    # off on 100-d paper codes (a slow transient) and 0.6 1.16x off on 16-d MNIST codes.
    step: float = 0.45
    max_move: float = 4.0  # no height moves by more than this many gaps in one step (tiny or empty cells)
    gamma: float = 3.0  # polynomial-decay averaging
    check_growth: float = 1.5  # the average is re-checked when the samples drawn grew by this factor
    max_check_samples: int = 1 << 24
    stop_noise: float = 1.0 / 3.0
    max_steps: int = 100_000
    needs_hessian: bool = False
    metric: str = "chi2"

    def __post_init__(self):
        if self.metric != "chi2":
            raise ValueError("averaged_sgd stops on chi2 (its estimates cannot certify L1 at large K)")
        if not (self.step > 0 and self.max_move > 0 and self.gamma >= 0 and self.check_growth > 1):
            raise ValueError("averaged_sgd needs step > 0, max_move > 0, gamma >= 0 and check_growth > 1")

    def init(self, h0: jax.Array) -> AveragedState:
        return AveragedState(0.0, h0, 0, 0, 0)

    def update(self, est: Estimate, state: AveragedState, h: jax.Array, nu: jax.Array, probe=None,
               capture=None, score_gap=None):
        if state.steps == 0:  # the length scale, measured once at the start
            if score_gap is None:
                raise ValueError("averaged_sgd needs the problem's score_gap (SemiDiscreteOT.fit passes it)")
            state = state._replace(gap=float(score_gap(h)))
        h_new = _jacobi_step(h, est.masses, nu, self.step * state.gap, self.max_move * state.gap)
        t = state.steps + 1
        a = (self.gamma + 1.0) / (t + self.gamma)
        h_avg = _recentre((1.0 - a) * state.h_avg + a * h_new)
        return h_new, state._replace(h_avg=h_avg, steps=t, n_seen=state.n_seen + est.num_samples), self.step

    def check_size(self, k: int, tol: float) -> int:
        """Samples of a check: enough to certify ``tol`` (:func:`certify_samples`), at most max_check_samples."""
        return certify_samples(tol, k, self.stop_noise, self.max_check_samples)

    @staticmethod
    def first_check_samples(k: int, tol: float) -> float:
        """Samples drawn before the first check: N >= 2 K / tol, when the average could have reached ``tol``."""
        return 2.0 * k / tol

    def first_stop_step(self, k: int, tol: float, batch: int) -> int:
        """The earliest step a stop can happen: the first check, once :meth:`first_check_samples` are drawn
        (what ``fit``'s progress bar counts to, for an ETA).  Measured: the average reaches chi2
        ~2-4.5 K / N (MNIST codes, d = 16 and d = 100), so expect 1-2.5x this."""
        return max(1, math.ceil(self.first_check_samples(k, tol) / batch))

    def candidate(self, state: AveragedState, k: int, tol: float, final: bool = False):
        """(state, h, samples): the average to check on fresh samples now, or (state, None, 0)."""
        n_check = self.check_size(k, tol)
        due = state.n_seen >= max(self.first_check_samples(k, tol), self.check_growth * state.last_check,
                                  state.last_check + 4 * n_check)
        if state.steps and (final or due):
            if not due:  # an end-of-fit comparison, not a certificate: at most a quarter of the samples drawn
                # (at K = 10^6 a certifying check is 2^21 samples, ~17 min on 2 cores after 2 steps of 2^16)
                n_check = min(n_check, 1 << max(12, (state.n_seen // 4).bit_length() - 1))
            return state._replace(last_check=state.n_seen), state.h_avg, n_check
        return state, None, 0

    def next_batch_size(self, est: Estimate, state: AveragedState, n: int, tol: float, step_size: float):
        return state, n

    def should_stop(self, est: Estimate, tol: float, state) -> bool:
        return float(est.chi2) <= tol and float(est.noise_chi2) <= self.stop_noise * tol

    def unreachable(self, est: Estimate, n: int, tol: float) -> bool:
        return chi2_noise_at(tol, est.masses.shape[0], self.max_check_samples) > self.stop_noise * tol


@jax.jit
def _jacobi_step(h, w, nu, length, max_move):
    d = jnp.clip(-length * (w - nu) / nu, -max_move, max_move)
    return _recentre(h + d)


def certify_samples(tol: float, k: int, stop_noise: float = 1.0 / 3.0, cap: int = 1 << 24) -> int:
    """The smallest power of two (>= 2^12, <= cap) of i.i.d. samples whose chi2 noise at ``tol`` is
    <= stop_noise * tol: what a check that certifies ``tol`` needs."""
    n = 1 << 12
    while n < cap and chi2_noise_at(tol, k, n) > stop_noise * tol:
        n *= 2
    return n


def chi2_noise_at(chi2: float, k: int, n: int) -> float:
    """Standard error of the unbiased chi2 estimate from n samples (two halves) when the error is ``chi2``:
    (2 / n) sqrt(K + n chi2).  At a large error the estimate is noisier, so whether a tol can be
    certified is judged at the tol, not at the current error."""
    return 2.0 / n * math.sqrt(k + n * max(chi2, 0.0))


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

    def update(self, est: Estimate, state: AdamState, h: jax.Array, nu: jax.Array, probe=None, capture=None,
               score_gap=None):
        m, v, new_h = _adam_no_bias_correction(est.masses - nu, state.m, state.v, h, self.lr)
        l2 = float(est.l2)
        if l2 <= state.best_l2:
            best, bad = l2, 0
        else:
            best, bad = state.best_l2, state.bad_steps + 1
        return new_h, AdamState(m, v, best, bad), self.lr

    def next_batch_size(self, est: Estimate, state: AdamState, n: int, tol: float, step_size: float):
        if state.bad_steps > self.patience:
            return state._replace(best_l2=float("inf"), bad_steps=0), min(2 * n, self.max_batch_size)
        return state, n

    def should_stop(self, est: Estimate, tol: float, state) -> bool:
        return float(est.l2) < self.gtol

    def unreachable(self, est: Estimate, n: int, tol: float) -> bool:
        return False


@jax.jit
def _adam_no_bias_correction(g, m, v, h, lr):
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    h = h - lr * m / (jnp.sqrt(v) + 1e-8)
    return m, v, h - jnp.mean(h)


def damped_newton(**kwargs) -> DampedNewton:
    """The default optimizer (see module docstring); keyword arguments override its fields."""
    return DampedNewton(**kwargs)


def averaged_sgd(**kwargs) -> AveragedSGD:
    """Preconditioned SGD with iterate averaging, stopping on chi2 (see :class:`AveragedSGD`)."""
    return AveragedSGD(**kwargs)


def aeot_recipe(lr: float = 1e-4, batch_size: int = 1000, **kwargs) -> AEOTRecipe:
    """The AE-OT (pyOMT) recipe as a baseline; ``lr`` 5e-2 for 100-d latents, 1e-4 / 2e-5 for 2-D toys."""
    return AEOTRecipe(lr=lr, batch_size=batch_size, **kwargs)
