"""The default ``fit`` on problems it was not tuned on, each checked by fresh i.i.d. samples.

The families (``otgen.ot.problems.FAMILIES``) move, shrink, widen and cluster the targets
relative to the source, put them on a line or a sphere, give them Dirichlet(0.5) weights
(smallest weights ~1e-9) and use box, Gaussian and user-sampler sources.  The default suite
runs every box / Gaussian family once at a small size in 2-D (the exact path); ``-m heavy`` adds the
user-sampler families and higher dimensions (Monte Carlo), ``-m slow`` the whole sweep (3 seeds, d = 2, 5, 16).
The check never uses the solver's own estimate: ``independent_error`` draws i.i.d. samples
from another PRNG stream and sizes them so that its own L1 noise is ~tol/4.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from otgen.ot import BrenierMap, Gaussian, NotConvergedError, NotConvergedWarning, SemiDiscreteOT, UniformBox
from otgen.ot.measures import bits_to_unit
from otgen.ot.problems import FAMILIES, independent_error, make_problem
from otgen.ot.solver import DISCRETE_MAX_K

TOL = 0.02


def _check_samples(k: int, tol: float) -> int:
    # i.i.d. L1 noise ~ sqrt(2K / (pi N)); ask for <= tol / 4, rounded up to a power of two
    n = 2 * k / (math.pi * (tol / 4) ** 2)
    return 1 << max(20, math.ceil(math.log2(n)))


def _solve_and_check(family: str, k: int, d: int, seed: int, tol: float = TOL):
    source, y, nu = make_problem(family, k, d, seed)
    bmap = SemiDiscreteOT(source, y, nu).fit(jax.random.PRNGKey(seed), tol=tol, progress=False)
    diag = bmap.diagnostics
    assert np.all(np.isfinite(np.asarray(bmap.h)))
    assert diag.converged, f"{family} K={k} d={d} seed={seed}: {diag.summary()} {diag.notes}"
    chk = independent_error(bmap, jax.random.PRNGKey(10_000 + seed), _check_samples(y.shape[0], tol))
    assert chk.l1 <= tol + 2 * chk.noise_l1, (family, chk)
    return bmap, chk


# 2-D box and Gaussian sources take the exact path (milliseconds); user samplers need Monte Carlo (minutes)
@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.heavy) if f.startswith("sampler") else f
                                    for f in sorted(FAMILIES)])
def test_every_family_is_solved_by_the_default_fit(family):
    _solve_and_check(family, 120, 2, seed=0)


@pytest.mark.parametrize("family,d", [("gauss_to_narrow", 5), ("gauss_to_wide", 8), ("clusters8_dirichlet", 5),
                                      ("dirichlet_half_wide", 8), ("anisotropic", 16), ("gauss_to_far_huge", 16)])
@pytest.mark.heavy
def test_higher_dimensions(family, d):
    _solve_and_check(family, 150, d, seed=1)


@pytest.mark.heavy
def test_multiscale_start_converges():
    # The start used above DISCRETE_MAX_K targets, forced here on a small clustered problem.
    from otgen.ot import damped_newton

    source, y, nu = make_problem("clusters8", 400, 2, 2)
    bmap = SemiDiscreteOT(source, y, nu).fit(jax.random.PRNGKey(2), tol=0.03, progress=False,
                                             optimizer=damped_newton(init_h="multiscale"))
    assert bmap.diagnostics.converged, bmap.diagnostics.summary()
    assert bmap.diagnostics.notes[0].startswith("multiscale start: 400 targets -> 50 k-means centres")
    chk = independent_error(bmap, jax.random.PRNGKey(5), _check_samples(400, 0.03))
    assert chk.l1 <= 0.03 + 2 * chk.noise_l1


@pytest.mark.slow
def test_above_the_discrete_start_limit_the_default_is_multiscale():
    bmap, _ = _solve_and_check("clusters8", DISCRETE_MAX_K + 1000, 2, seed=2, tol=0.03)
    assert bmap.diagnostics.notes[0].startswith("multiscale start")


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 5, 16])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_full_sweep(family, d):
    for seed in range(3):
        _solve_and_check(family, 400, d, seed)


def test_unbiased_chi2_matches_the_exact_value_in_1d():
    # Uniform source on [0, 1], heights chosen at random: the cells are intervals whose
    # ends are where neighbouring lines of the upper envelope cross, computed exactly here.
    rng = np.random.default_rng(0)
    k = 6
    y = np.sort(rng.normal(size=k)).astype(np.float32)[:, None]
    nu = rng.uniform(0.5, 2.0, k)
    nu /= nu.sum()
    problem = SemiDiscreteOT(UniformBox(1), y, nu)
    h = 0.3 * rng.normal(size=k).astype(np.float32)
    grid = np.linspace(0, 1, 2_000_001)
    cells = np.argmax(grid[:, None] * y[:, 0].astype(np.float64) + h, axis=1)
    w = np.bincount(cells, minlength=k) / grid.size
    exact = float(np.sum((w - nu) ** 2 / nu))
    est = [float(problem.estimate(jax.random.PRNGKey(s), h, 1 << 12, sampling="iid").chi2) for s in range(200)]
    # Unbiased: the mean of 200 small-sample estimates is within 3 standard errors of the exact value,
    # while the plug-in sum (w_hat - nu)^2 / nu at this size is biased up by ~(K - 1) / N_half = 0.0024.
    mean, se = np.mean(est), np.std(est) / np.sqrt(len(est))
    assert exact > 0.01
    assert abs(mean - exact) <= 3 * se + 1e-4, (mean, exact, se)


def test_unconverged_fit_warns_raises_when_strict_and_never_returns_nan(tmp_path):
    source, y, nu = make_problem("clusters8_dirichlet", 300, 2, 0)
    problem = SemiDiscreteOT(source, y, nu)
    with pytest.warns(NotConvergedWarning, match=r"not converged \(L1 [0-9.]+ > tol 0.001"):
        bmap = problem.fit(jax.random.PRNGKey(0), tol=1e-3, max_steps=2, progress=False)
    d = bmap.diagnostics
    assert not d.converged and d.stop_reason == "max_steps"
    assert np.all(np.isfinite(np.asarray(bmap.h)))
    assert d.final_l1 == min(d.history.l1)  # the best iterate is returned, not the last
    assert any("start" in n for n in d.notes)
    bmap.save(tmp_path / "map.npz")
    again = BrenierMap.load(tmp_path / "map.npz")  # a saved map always loads
    assert again.diagnostics.stop_reason == "max_steps" and again.diagnostics.notes == d.notes
    with pytest.raises(NotConvergedError, match="not converged") as err:
        problem.fit(jax.random.PRNGKey(0), tol=1e-3, max_steps=2, progress=False, strict=True)
    assert np.all(np.isfinite(np.asarray(err.value.bmap.h)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warn=False: silent, the diagnostics still say it
        quiet = problem.fit(jax.random.PRNGKey(0), tol=1e-3, max_steps=2, progress=False, warn=False)
    assert not quiet.diagnostics.converged


def test_time_budget_and_unreachable_tol_stop_with_a_reason():
    source, y, nu = make_problem("gauss_to_wide", 2000, 8, 0)
    problem = SemiDiscreteOT(source, y, nu)
    h0 = np.zeros(2000, np.float32)  # skip the discrete start (20 s here): the stops are under test
    bmap = problem.fit(jax.random.PRNGKey(0), tol=1e-4, time_budget=1.0, progress=False, warn=False, h0=h0,
                       batch_size=1 << 14)  # small steps: the budget is checked between steps
    assert bmap.diagnostics.stop_reason in ("time_budget", "noise_floor")
    assert bmap.diagnostics.history.wall_time[-1] < 60
    from otgen.ot import damped_newton

    small = damped_newton(max_batch_size=1 << 16)
    b = problem.fit(jax.random.PRNGKey(0), tol=1e-3, optimizer=small, progress=False, warn=False, h0=h0)
    assert b.diagnostics.stop_reason == "noise_floor"
    assert max(b.diagnostics.history.num_samples) == 1 << 16  # the optimizer's cap holds from the first step
    assert any("cannot be certified" in n for n in b.diagnostics.notes)


def test_chi2_metric_is_certified_and_checked_independently():
    # Gaussian source onto wider Gaussian targets in 4-d; the stop certifies the unbiased chi2,
    # and fresh i.i.d. samples (another stream, 2^21 of them: noise ~3e-5) confirm it.
    y = 1.5 * np.random.default_rng(0).standard_normal((1000, 4)).astype(np.float32)
    bmap = SemiDiscreteOT(Gaussian(dim=4), y).fit(jax.random.PRNGKey(0), tol=0.01, metric="chi2", progress=False)
    d = bmap.diagnostics
    assert d.converged and d.convergence.metric == "chi2" and d.summary().startswith("converged (chi2 ")
    assert d.final_error == d.history.chi2[d.convergence.best_step] <= 0.01
    assert d.history.noise_chi2[d.convergence.best_step] <= 0.01 / 3
    check = independent_error(bmap, jax.random.PRNGKey(123), 1 << 21)
    assert check.chi2 <= 0.01, check
    assert bmap.diagnostics.as_metrics()["ot_metric"] == "chi2"
    with pytest.raises(ValueError, match="metric must be one of"):
        SemiDiscreteOT(Gaussian(dim=4), y).fit(jax.random.PRNGKey(0), metric="l2")


def test_an_l1_tol_out_of_reach_is_said_before_the_first_step():
    # K = 10,000 in 16-d: the L1 estimate's Monte-Carlo noise at the largest sample (2^24) is ~0.02,
    # so tol 0.01 cannot be certified; the fit says so up front (here it is stopped after one step).
    y = 1.5 * np.random.default_rng(0).standard_normal((10_000, 16)).astype(np.float32)
    problem = SemiDiscreteOT(Gaussian(dim=16), y)
    with pytest.warns(NotConvergedWarning, match="likely out of reach.*metric='chi2'"):
        b = problem.fit(jax.random.PRNGKey(0), tol=0.01, h0=np.zeros(10_000, np.float32), progress=False,
                        batch_size=1 << 12,  # the note comes before the first step: keep that step cheap
                        callback=lambda step, h, est: True, metric="l1")  # L1: damped Newton at this size
    assert "likely out of reach" in b.diagnostics.notes[0]
    assert problem._noise_floor("l1", 1 << 24) > 0.01 > 10 * problem._noise_floor("chi2", 1 << 24)


def test_sobol_points_stay_inside_the_open_cube():
    # The extreme words map strictly inside (0, 1) in float32, so the Gaussian's inverse CDF is finite.
    u = np.asarray(bits_to_unit(jnp.array([0, 0xFFFFFFFF], jnp.uint32)))
    assert 0.0 < u[0] and u[1] < 1.0
    assert np.all(np.isfinite(np.asarray(jax.scipy.special.ndtri(u))))
    x = np.asarray(Gaussian(2).qmc_sample(jax.random.PRNGKey(0), 1 << 16))
    assert np.all(np.isfinite(x))
