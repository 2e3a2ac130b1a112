"""Optimizers for the semi-discrete OT energy E(h) = E_mu[u_h] - <nu, h>: their interface, and what
they all read, the Monte-Carlo :class:`Estimate` and its error and noise in each metric.

Each optimizer is a small frozen recipe: how to sample the source, how many
samples per step and when to grow them, how to turn a Monte-Carlo estimate
into a new ``h`` (a pure, jitted update with NamedTuple state), and when to
stop.  :class:`otgen.ot.solver.SemiDiscreteOT.fit` runs any of them.

* :func:`~otgen.ot.optim_newton.damped_newton` (the default) — randomised-QMC cell masses, a Newton
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
* :func:`~otgen.ot.optim_sgd.averaged_sgd` (the default at large K) — Jacobi-preconditioned SGD on
  fresh samples, one cheap step per estimate, returning the polynomial-decay
  average of its iterates (checked on fresh samples); stops on chi2.
* :func:`~otgen.ot.optim_aeot.aeot_recipe` — the AE-OT/pyOMT baseline: the same unscrambled Sobol
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
``candidate(state, K, tol, final) -> (state, h_c, n)``: other points (averages), the rows of
``h_c`` (m, K), that ``fit`` checks on ``n`` fresh samples each and may return, and
``candidate_label(j) -> str`` naming row ``j`` in the fit's notes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Estimate", "METRICS", "error_of", "noise_of", "chi2_noise_at", "certify_samples", "recentre"]


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


METRICS = ("l1", "chi2")


def error_of(est: Estimate, metric: str) -> float:
    """The estimate's error in ``metric``: ``l1`` = ||w - nu||_1, ``chi2`` = the unbiased chi-square."""
    return float(est.chi2 if metric == "chi2" else est.l1)


def noise_of(est: Estimate, metric: str) -> float:
    """The Monte-Carlo noise of :func:`error_of` (what a stop must certify)."""
    return float(est.noise_chi2 if metric == "chi2" else est.noise_l1)


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


@jax.jit
def recentre(h):
    """``h`` less its mean: the energy does not see a constant shift, so every optimizer keeps mean(h) = 0."""
    return h - jnp.mean(h)
