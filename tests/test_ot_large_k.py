"""Stochastic Newton, the default above DISCRETE_MAX_K targets in d > 4: checked on fresh i.i.d. samples."""

import jax
import jax.numpy as jnp
import numpy as np

from otgen.ot import Gaussian, SemiDiscreteOT, stochastic_newton
from otgen.ot.optim import Estimate
from otgen.ot.problems import independent_error
from otgen.ot.solver import DISCRETE_MAX_K


def _targets(k, d, seed=1, spread=1.5):
    return spread * np.random.default_rng(seed).standard_normal((k, d)).astype(np.float32)


def test_default_optimizer_by_size_and_dimension():
    big = SemiDiscreteOT(Gaussian(16), _targets(DISCRETE_MAX_K + 1, 16))
    assert big.default_optimizer().name == "stochastic_newton"
    assert big.default_optimizer("l1").name == "damped_newton"  # an L1 tol keeps damped Newton
    assert SemiDiscreteOT(Gaussian(16), _targets(DISCRETE_MAX_K, 16)).default_optimizer().name == "damped_newton"
    assert SemiDiscreteOT(Gaussian(2), _targets(DISCRETE_MAX_K + 1, 2)).default_optimizer().name == "damped_newton"


def test_large_k_converges_on_chi2_checked_independently():
    # K = 20,000 in d = 16, Gaussian source onto wider Gaussian targets: the default fit stops on the
    # unbiased chi2, and fresh i.i.d. samples from another key agree.
    k, tol = 20_000, 0.05
    bmap = SemiDiscreteOT(Gaussian(16), _targets(k, 16)).fit(jax.random.key(0), tol=tol, progress=False,
                                                            time_budget=240)
    d = bmap.diagnostics
    assert d.optimizer == "stochastic_newton" and d.metric == "chi2"
    assert d.converged, d.summary()
    chk = independent_error(bmap, jax.random.key(7), 1 << 21)
    noise = 2 * np.sqrt(k) / chk.num_samples  # the check's own chi2 noise
    assert chk.chi2 <= tol + 3 * noise, chk


def _estimate(chi2, k=4, n=1 << 10):
    z = jnp.zeros(k)
    edges = (jnp.array([0, 1, 2]), jnp.array([1, 2, 3]), jnp.ones(3), jnp.float32(1.0))
    return Estimate(masses=jnp.full(k, 1.0 / k) + jnp.array([0.1, -0.1, 0.0, 0.0]), l1=z[0], noise_l1=z[0],
                    max_rel=z[0], l2=z[0], energy=z[0], num_empty=0, edges=edges, chi2=chi2, noise_chi2=1e-3,
                    num_samples=n)


def test_a_step_that_raises_the_error_is_undone_and_later_steps_halved():
    opt = stochastic_newton(step=1.0)
    nu, h0 = jnp.full(4, 0.25), jnp.zeros(4)
    h1, state, eta = opt.update(_estimate(0.1), opt.init(h0), h0, nu)
    assert eta == 1.0 and not np.allclose(h1, h0)
    h2, state2, eta2 = opt.update(_estimate(1.0), state, h1, nu)  # the error jumped: back to h0
    assert eta2 == 0.0 and np.allclose(h2, h0) and state2.eta_scale == 0.5


def test_sample_size_doubles_at_the_noise_level_then_averaging_begins():
    opt = stochastic_newton(batch_size=1 << 10, max_batch_size=1 << 11)
    state = opt.init(jnp.zeros(4))
    # error far above the noise level K / n: keep n
    assert opt.next_batch_size(_estimate(1.0), state, 1 << 10, 0.01, 1.0) == (state, 1 << 10)
    # at the noise level: double, then (at the largest n) begin averaging with this batch counted
    assert opt.next_batch_size(_estimate(1e-4), state, 1 << 10, 0.01, 1.0)[1] == 1 << 11
    state, n = opt.next_batch_size(_estimate(1e-4, n=1 << 11), state, 1 << 11, 0.01, 1.0)
    assert state.averaging and state.n_cum == 1 << 11 and n == 1 << 11
    nu, h = jnp.full(4, 0.25), jnp.zeros(4)
    h1, state, eta = opt.update(_estimate(1e-4, n=1 << 11), state._replace(edges=_estimate(0).edges), h, nu)
    assert eta == 0.5 and state.n_cum == 1 << 12  # eta = n / N, N counting the start
