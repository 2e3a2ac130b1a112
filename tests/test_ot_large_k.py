"""Averaged SGD, the default above DISCRETE_MAX_K targets in d > 4: checked on fresh i.i.d. samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from otgen.ot import Gaussian, SemiDiscreteOT, averaged_sgd
from otgen.ot.brenier import BrenierMap
from otgen.ot.optim import Estimate, chi2_noise_at
from otgen.ot.problems import independent_error
from otgen.ot.solver import DISCRETE_MAX_K


def _targets(k, d, seed=1, spread=1.5):
    return spread * np.random.default_rng(seed).standard_normal((k, d)).astype(np.float32)


def test_default_optimizer_by_size_and_dimension():
    big = SemiDiscreteOT(Gaussian(16), _targets(DISCRETE_MAX_K + 1, 16))
    assert big.default_optimizer().name == "averaged_sgd"
    assert big.default_optimizer("l1").name == "damped_newton"  # an L1 tol keeps damped Newton
    assert SemiDiscreteOT(Gaussian(16), _targets(DISCRETE_MAX_K, 16)).default_optimizer().name == "damped_newton"
    assert SemiDiscreteOT(Gaussian(2), _targets(DISCRETE_MAX_K + 1, 2)).default_optimizer().name == "damped_newton"


@pytest.mark.heavy
def test_large_k_converges_on_chi2_checked_independently():
    # K = 20,000 in d = 16, Gaussian source onto wider Gaussian targets: the default fit stops on the
    # unbiased chi2, and fresh i.i.d. samples from another key agree within the certificate's own noise.
    k, tol = 20_000, 0.05
    bmap = SemiDiscreteOT(Gaussian(16), _targets(k, 16)).fit(jax.random.key(0), tol=tol, progress=False,
                                                            time_budget=240)
    d = bmap.diagnostics
    assert d.convergence.optimizer == "averaged_sgd" and d.convergence.metric == "chi2"
    assert d.converged, d.summary()
    cert = d.as_metrics()
    assert cert["ot_chi2"] <= tol and cert["ot_noise_chi2"] <= tol / 3
    chk = independent_error(bmap, jax.random.key(7), 1 << 19)  # noise 5e-4, far below tol
    noise = 2 * np.sqrt(k) / chk.num_samples  # the check's own chi2 noise
    assert chk.chi2 <= tol + 3 * (cert["ot_noise_chi2"] + noise), chk


@pytest.mark.heavy
def test_the_average_beats_the_last_iterate_and_is_what_a_budgeted_fit_returns():
    # Tiny steps' noise is what averaging removes: after a fixed budget the returned heights are the
    # checked average, and fresh i.i.d. samples find it far closer than the last iterate.
    k = 6000
    problem = SemiDiscreteOT(Gaussian(8), _targets(k, 8, seed=3))
    iterates = []
    bmap = problem.fit(jax.random.key(2), tol=2e-3, max_steps=60, progress=False, warn=False,
                       optimizer=averaged_sgd(batch_size=1 << 14),
                       callback=lambda step, h, est: iterates.append(h) and False)
    d = bmap.diagnostics
    assert d.convergence.optimizer == "averaged_sgd" and not d.converged and d.stop_reason == "max_steps"
    assert d.checks.best >= 0 and d.as_metrics()["ot_returned"] == "average"
    # no check was due (60 x 2^14 samples < 1.5 K / tol): the final one is a comparison on <= a quarter of them
    n_avg = len(averaged_sgd().gamma)  # one average per averaging weight, each checked on its own samples
    assert d.checks.num_samples == (1 << 17,) * n_avg and 1 << 17 <= 60 * (1 << 14) // 4 < averaged_sgd().check_size(k, 2e-3)
    assert d.checks.candidate == tuple(range(n_avg))
    assert any(n.startswith("returned: the average with gamma") for n in d.notes), d.notes
    avg = independent_error(bmap, jax.random.key(9), 1 << 19).chi2
    last_map = BrenierMap(bmap.targets, bmap.weights, iterates[-1], bmap.source)
    last_chi2 = independent_error(last_map, jax.random.key(9), 1 << 19).chi2
    assert avg < 0.5 * last_chi2, (avg, last_chi2)


def _estimate(masses, n=1 << 10):
    z = jnp.float32(0.0)
    return Estimate(masses=jnp.asarray(masses, jnp.float32), l1=z, noise_l1=z, max_rel=z, l2=z, energy=z,
                    num_empty=0, chi2=z, noise_chi2=z, num_samples=n)


def test_step_is_relative_to_the_cell_mass_capped_and_the_average_decays_polynomially():
    opt = averaged_sgd(step=0.5, max_move=1.0, gamma=3.0)
    nu, h0 = jnp.full(4, 0.25), jnp.zeros(4)
    state = opt.init(h0)
    with pytest.raises(ValueError, match="score_gap"):
        opt.update(_estimate([0.25] * 4), state, h0, nu)
    # cell 0 has twice its mass, cell 1 none: moves -0.5 * gap * 1 and +0.5 * gap * 1 (gap 2), then re-centred
    h1, state, eta = opt.update(_estimate([0.5, 0.0, 0.25, 0.25]), state, h0, nu, score_gap=lambda h: 2.0)
    assert eta == 0.5 and state.gap == 2.0
    np.testing.assert_allclose(h1, [-1.0, 1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(state.h_avg, [h1], atol=1e-6)  # a = 1 at t = 1
    # cell 0 at 4x its mass would move -3 (1.5 gaps): capped at max_move = 1 gap; the others +1; re-centred
    h2, state, _ = opt.update(_estimate([1.0, 0.0, 0.0, 0.0]), state, h1, nu)
    np.testing.assert_allclose(h2 - h1, [-2.25, 0.75, 0.75, 0.75], atol=1e-5)
    a = 4.0 / 5.0  # (gamma + 1) / (t + gamma) at t = 2
    np.testing.assert_allclose(state.h_avg, [(1 - a) * h1 + a * h2 - jnp.mean((1 - a) * h1 + a * h2)], atol=1e-6)


def test_one_average_per_gamma_each_with_its_own_weights():
    opt = averaged_sgd(step=0.5, max_move=1.0, gamma=(0.5, 3.0))
    nu, h0 = jnp.full(4, 0.25), jnp.zeros(4)
    state = opt.init(h0)
    assert state.h_avg.shape == (2, 4)
    h1, state, _ = opt.update(_estimate([0.5, 0.0, 0.25, 0.25]), state, h0, nu, score_gap=lambda h: 2.0)
    h2, state, _ = opt.update(_estimate([0.25, 0.0, 0.5, 0.25]), state, h1, nu)
    for row, g in zip(state.h_avg, (0.5, 3.0)):
        a = (g + 1) / (2 + g)  # t = 2
        want = (1 - a) * h1 + a * h2
        np.testing.assert_allclose(row, want - jnp.mean(want), atol=1e-6)
    assert not np.allclose(state.h_avg[0], state.h_avg[1])
    assert averaged_sgd(gamma=2.0).gamma == (2.0,)


def test_the_average_is_checked_once_enough_samples_could_reach_tol_then_geometrically():
    opt = averaged_sgd(check_growth=2.0)
    k, tol = 1000, 0.01
    n_check = opt.check_size(k, tol)
    assert chi2_noise_at(tol, k, n_check) <= tol / 3 < chi2_noise_at(tol, k, n_check // 2)
    state = opt.init(jnp.zeros(k))._replace(steps=1)
    first = max(1.5 * k / tol, 4 * n_check)
    assert opt.candidate(state._replace(n_seen=int(first) - 1), k, tol)[1] is None
    state, h, n = opt.candidate(state._replace(n_seen=int(first)), k, tol)
    assert h is not None and n == n_check and state.last_check == int(first)
    assert opt.candidate(state._replace(n_seen=int(2 * first) - 1), k, tol)[1] is None
    assert opt.candidate(state._replace(n_seen=int(2 * first)), k, tol)[1] is not None
    assert opt.candidate(state, k, tol, final=True)[2] == n_check  # the end of a fit always checks
    # ... on at most a quarter of the samples drawn when no check is due (a comparison, not a certificate)
    early = opt.init(jnp.zeros(k))._replace(steps=2, n_seen=1 << 16)
    assert opt.candidate(early, k, tol, final=True)[2] == min(n_check, 1 << 14)
    # the progress bar's ETA counts to the earliest step whose samples pass the 1.5 K / tol mark
    batch = 1 << 12
    s = opt.first_stop_step(k, tol, batch)
    assert (s - 1) * batch < 1.5 * k / tol <= s * batch


def test_bad_options_are_refused():
    for bad in (dict(step=0.0), dict(max_move=-1.0), dict(gamma=-1.0), dict(gamma=()), dict(gamma=(1.0, -0.5)), dict(first_check=0.0),
                dict(check_growth=1.0), dict(metric="l1")):
        with pytest.raises(ValueError):
            averaged_sgd(**bad)


def test_a_reachable_chi2_tol_draws_no_up_front_warning():
    # averaged SGD's steps are small (2^16), but its checks grow to whatever certifies tol: no "out of reach"
    import warnings

    problem = SemiDiscreteOT(Gaussian(16), _targets(DISCRETE_MAX_K + 1, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bmap = problem.fit(jax.random.key(0), tol=0.0025, max_steps=1, progress=False, warn=False)
    assert not any("out of reach" in n for n in bmap.diagnostics.notes)
    first = averaged_sgd().first_stop_step(DISCRETE_MAX_K + 1, 0.0025, 1 << 16)
    assert any(n.startswith(f"no stop before step ~{first} ") for n in bmap.diagnostics.notes)
