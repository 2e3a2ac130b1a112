"""The large-K optimizer: Jacobi-preconditioned SGD on fresh samples, returning the best of a few
polynomial-decay averages of its iterates, checked on fresh samples and stopped on chi2 (:class:`AveragedSGD`; the
interface it implements: :mod:`otgen.ot.optim`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from otgen.ot.optim import Estimate, certify_samples, chi2_noise_at, recentre

__all__ = ["AveragedState", "AveragedSGD", "averaged_sgd"]


class AveragedState(NamedTuple):
    gap: float  # median score gap at the start: the step's length scale (0 until the first update)
    h_avg: jax.Array  # (len(gamma), K): one polynomial-decay average of the iterates per averaging weight
    # (the candidates that are checked; the best is returned)
    steps: int  # iterates averaged
    n_seen: int  # samples drawn by the steps so far
    last_check: int  # n_seen at the last check of the average (0: none yet)


@dataclasses.dataclass(frozen=True)
class AveragedSGD:
    """Jacobi-preconditioned SGD on fresh samples, returning the average of its iterates: for large K.

    At K = 60,000, d = 16 one pass over 2^16 samples costs ~1 s on 2 cores, and a
    step's masses carry chi2 noise ~K / n (0.9 there): every estimate is mostly noise,
    so the map has to be an average.  Each step draws ``batch_size`` fresh i.i.d. samples
    and moves

        h_i <- h_i - step * gap * (w_i - nu_i) / nu_i

    (``gap``: the median score gap to the nearest facet at the start, the distance over
    which a cell's mass responds to its own height; a cell of mass ~nu_i has
    ``dw_i/dh_i ~ nu_i / gap``, so this is a damped Jacobi-Newton step.  In d >= 5 each cell
    has hundreds of facets and the facet Laplacian is close to its diagonal.)  The iterates
    are averaged with polynomial decay, ``h_avg <- (1 - a) h_avg + a h``,
    ``a = (gamma + 1) / (t + gamma)`` (Shamir & Zhang, ICML 2013): iterate t weighs ~t^gamma, so
    the average forgets the transient and its chi2 falls like K / N with N the samples drawn.
    Which ``gamma`` is best depends on the problem (a low one averages more samples, a high one
    forgets a slow transient faster), so one average per ``gamma`` is kept (a K-vector each) and
    the checks pick.  Measured (``scripts/tune_averaged_sgd.py``, K = 6,000, 344 steps of 8,192:
    the N / K of a 10-minute K = 60,000 fit), chi2 x N / K of gamma 0.5 / 1 / 3: MNIST codes
    1.24 / 1.45 / 2.43, Fashion codes 1.80 / 1.55 / 2.28, Gaussian d = 32 1.13 / 1.34 / 2.28,
    100-d codes with a decaying spectrum 1.15 / 1.36 / 2.27; on the 100-d paper codes at 250
    steps with the earlier step 0.3 a slow transient made gamma 1 2.7x worse than gamma 7.

    The per-step estimates speak about the iterate ``h``, not the averages, so each average is
    *checked* on fresh samples of its own (enough to certify ``tol``) once the samples drawn could
    bring one to ``tol`` (N >= ``first_check`` K / tol), then each time N grew by half (and by at least
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
    gamma: tuple[float, ...] = (0.5, 1.0, 3.0)  # polynomial-decay averaging weights, one average each
    # The first check, in units of K / tol samples drawn: the best average's chi2 x N / K measured 1.13-1.80
    # (the table above), so a check before 1.5 K / tol would mostly spend samples on an average not there yet.
    first_check: float = 1.5
    check_growth: float = 1.5  # the averages are re-checked when the samples drawn grew by this factor
    max_check_samples: int = 1 << 24
    stop_noise: float = 1.0 / 3.0
    max_steps: int = 100_000
    needs_hessian: bool = False
    metric: str = "chi2"

    def __post_init__(self):
        if self.metric != "chi2":
            raise ValueError("averaged_sgd stops on chi2 (its estimates cannot certify L1 at large K)")
        gamma = (self.gamma,) if isinstance(self.gamma, (int, float)) else tuple(self.gamma)
        object.__setattr__(self, "gamma", tuple(float(g) for g in gamma))
        if not (self.step > 0 and self.max_move > 0 and self.gamma and min(self.gamma) >= 0 and self.check_growth > 1
                and self.first_check > 0):
            raise ValueError("averaged_sgd needs step > 0, max_move > 0, gamma >= 0 (one or more), first_check > 0 "
                             "and check_growth > 1")

    def init(self, h0: jax.Array) -> AveragedState:
        return AveragedState(0.0, jnp.tile(jnp.asarray(h0)[None], (len(self.gamma), 1)), 0, 0, 0)

    def update(self, est: Estimate, state: AveragedState, h: jax.Array, nu: jax.Array, probe=None,
               capture=None, score_gap=None):
        if state.steps == 0:  # the length scale, measured once at the start
            if score_gap is None:
                raise ValueError("averaged_sgd needs the problem's score_gap (SemiDiscreteOT.fit passes it)")
            state = state._replace(gap=float(score_gap(h)))
        h_new = _jacobi_step(h, est.masses, nu, self.step * state.gap, self.max_move * state.gap)
        t = state.steps + 1
        g = jnp.asarray(self.gamma, jnp.float32)[:, None]
        a = (g + 1.0) / (t + g)
        h_avg = jax.vmap(recentre)((1.0 - a) * state.h_avg + a * h_new[None])
        return h_new, state._replace(h_avg=h_avg, steps=t, n_seen=state.n_seen + est.num_samples), self.step

    def check_size(self, k: int, tol: float) -> int:
        """Samples of a check: enough to certify ``tol`` (:func:`certify_samples`), at most max_check_samples."""
        return certify_samples(tol, k, self.stop_noise, self.max_check_samples)

    def first_check_samples(self, k: int, tol: float) -> float:
        """Samples drawn before the first check: N >= ``first_check`` K / tol, when an average could have
        reached ``tol``."""
        return self.first_check * k / tol

    def first_stop_step(self, k: int, tol: float, batch: int) -> int:
        """The earliest step a stop can happen: the first check, once :meth:`first_check_samples` are drawn
        (what ``fit``'s progress bar counts to, for an ETA).  Measured: the best average reaches chi2
        ~1.1-1.8 K / N (the class docstring's table), so expect 1-1.5x this."""
        return max(1, math.ceil(self.first_check_samples(k, tol) / batch))

    def candidate(self, state: AveragedState, k: int, tol: float, final: bool = False):
        """(state, h, samples): the averages (one row per ``gamma``) to check on fresh samples now, each
        on ``samples`` of its own, or (state, None, 0)."""
        n_check = self.check_size(k, tol)
        due = state.n_seen >= max(self.first_check_samples(k, tol), self.check_growth * state.last_check,
                                  state.last_check + 4 * n_check)
        if state.steps and (final or due):
            if not due:  # an end-of-fit comparison, not a certificate: at most a quarter of the samples drawn
                # (at K = 10^6 a certifying check is 2^21 samples, ~17 min on 2 cores after 2 steps of 2^16)
                n_check = min(n_check, 1 << max(12, (state.n_seen // 4).bit_length() - 1))
            return state._replace(last_check=state.n_seen), state.h_avg, n_check
        return state, None, 0

    def candidate_label(self, j: int) -> str:
        return f"the average with gamma {self.gamma[j]:g}"

    def next_batch_size(self, est: Estimate, state: AveragedState, n: int, tol: float, step_size: float):
        return state, n

    def should_stop(self, est: Estimate, tol: float, state) -> bool:
        return float(est.chi2) <= tol and float(est.noise_chi2) <= self.stop_noise * tol

    def unreachable(self, est: Estimate, n: int, tol: float) -> bool:
        return chi2_noise_at(tol, est.masses.shape[0], self.max_check_samples) > self.stop_noise * tol


@jax.jit
def _jacobi_step(h, w, nu, length, max_move):
    d = jnp.clip(-length * (w - nu) / nu, -max_move, max_move)
    return recentre(h + d)


def averaged_sgd(**kwargs) -> AveragedSGD:
    """Preconditioned SGD with iterate averaging, stopping on chi2 (see :class:`AveragedSGD`)."""
    return AveragedSGD(**kwargs)
