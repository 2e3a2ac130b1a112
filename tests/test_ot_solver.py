"""SemiDiscreteOT: closed forms, symmetry, gradients, independent accuracy checks, bad input.

All randomness is seeded (jax.random.PRNGKey / numpy default_rng / scipy seed), so every run is reproducible.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import qmc

from otgen.checkpoint import CheckpointError, save_pytree
from otgen.ot import BrenierMap, Gaussian, Sampler, SemiDiscreteOT, UniformBox, aeot_recipe, optim_newton


def _independent_masses_box(bmap, n_log2, seed, low=0.0, high=1.0):
    """Cell masses from scipy's Owen-scrambled Sobol (not our sampler), counted by our kernel."""
    d = bmap.dim
    u = qmc.Sobol(d, scramble=True, seed=seed).random_base2(n_log2)
    x = jnp.asarray(low + (high - low) * u, jnp.float32)
    return np.bincount(np.asarray(bmap.assign(x)), minlength=bmap.num_targets) / x.shape[0]


def test_1d_cells_are_the_cumulative_weight_intervals():
    # Uniform source on [0, 1]: whatever the positions, the cell of the i-th smallest
    # target is [c_{i-1}, c_i] with c = cumsum of the weights in target order.
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 1)).astype(np.float32) * 3
    nu = rng.uniform(0.5, 2.0, size=6)
    nu /= nu.sum()
    bmap = SemiDiscreteOT(UniformBox(1), y, nu).fit(jax.random.PRNGKey(0), tol=2e-3, progress=False)
    assert bmap.diagnostics.converged
    order = np.argsort(y[:, 0])
    c = np.cumsum(nu[order])[:-1]
    grid = np.linspace(0, 1, 200_001, dtype=np.float32)[:, None]
    cells = np.asarray(bmap.assign(grid))
    boundaries = grid[1:, 0][np.diff(cells) != 0]
    np.testing.assert_array_equal(cells[np.r_[0, np.flatnonzero(np.diff(cells)) + 1]], order)
    np.testing.assert_allclose(boundaries, c, atol=2e-3)


def test_2d_multimodal_unequal_weights_matches_independent_estimate():
    rng = np.random.default_rng(1)
    centers = np.array([[0.2, 0.2], [0.8, 0.3], [0.5, 0.85]])
    y = np.concatenate([c + 0.04 * rng.normal(size=(20, 2)) for c in centers]).astype(np.float32)
    nu = np.concatenate([np.full(20, 0.5), np.full(20, 0.3), np.full(20, 0.2)]) / 20
    nu = nu / nu.sum()
    bmap = SemiDiscreteOT(UniformBox(2), y, nu).fit(jax.random.PRNGKey(2), tol=0.01, progress=False)
    assert bmap.diagnostics.converged
    w = _independent_masses_box(bmap, 20, seed=7)
    assert np.abs(w - nu).sum() <= 0.01
    # The mass of each cluster is right, too.
    np.testing.assert_allclose([w[i * 20:(i + 1) * 20].sum() for i in range(3)], [0.5, 0.3, 0.2], atol=3e-3)


def test_discrete_warm_start_solves_tight_clusters_with_unequal_weights():
    # 3 tight clusters (std 0.005): from Voronoi heights a cluster's interior cells are tiny and get
    # almost no samples (otgen.ot.warm_start); from the discrete-OT warm start damped Newton converges.
    rng = np.random.default_rng(3)
    centers = np.array([[0.2, 0.2], [0.8, 0.3], [0.5, 0.85]])
    y = np.concatenate([c + 0.005 * rng.normal(size=(100, 2)) for c in centers]).astype(np.float32)
    nu = np.concatenate([np.full(100, 0.5), np.full(100, 0.3), np.full(100, 0.2)]) / 100
    solver = SemiDiscreteOT(UniformBox(2), y, nu)
    bmap = solver.fit(jax.random.PRNGKey(4), tol=0.02, progress=False, optimizer=optim_newton.damped_newton(
        init_h="discrete", max_steps=20))
    assert bmap.diagnostics.converged
    w = _independent_masses_box(bmap, 21, seed=8)
    assert np.abs(w - nu).sum() <= 0.02 + 0.01  # tol + the 2^21-point evaluator's own noise
    # a cluster's mass is off by at most half the L1 error (+ evaluator noise)
    np.testing.assert_allclose([w[i * 100:(i + 1) * 100].sum() for i in range(3)], [0.5, 0.3, 0.2], atol=0.015)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        solver.initial_h("discrete")


def test_reference_problem_reduced():
    """K = 1000 uniform targets in [0,1]^2: ||w - nu||_1 <= 0.01 on an independent 2^22-point RQMC estimate.

    (The 10^8 fresh i.i.d. sample check is test_reference_problem_1e8_iid, marked slow.)
    """
    y = jax.random.uniform(jax.random.PRNGKey(0), (1000, 2))
    bmap = SemiDiscreteOT(UniformBox(2), y).fit(jax.random.PRNGKey(1), tol=0.01, progress=False)
    assert bmap.diagnostics.converged
    assert bmap.diagnostics.final_l1 <= 0.01
    w = _independent_masses_box(bmap, 22, seed=11)
    assert np.abs(w - 1e-3).sum() <= 0.01


@pytest.mark.slow
def test_reference_problem_1e8_iid():
    y = jax.random.uniform(jax.random.PRNGKey(0), (1000, 2))
    bmap = SemiDiscreteOT(UniformBox(2), y).fit(jax.random.PRNGKey(1), tol=0.01, progress=False)
    w = np.asarray(bmap.cell_masses(jax.random.PRNGKey(123), 10**8))
    # Plain MC noise at 1e8 samples is ~sqrt(2K/(pi N)) = 0.0025; the bound includes it.
    assert np.abs(w - 1e-3).sum() <= 0.01


def test_symmetric_configuration_gives_symmetric_heights():
    # Source and targets invariant under x -> -x and (x1, x2) -> (x2, x1); weights too.
    base = np.array([[0.5, 0.1], [0.2, 0.7], [0.9, 0.4]], np.float32)
    y = np.concatenate([base, -base, base[:, ::-1], -base[:, ::-1]])
    nu = np.tile([0.4, 0.35, 0.25], 4) / 4
    for src in (UniformBox(2, -1.0, 1.0), Gaussian(2)):
        bmap = SemiDiscreteOT(src, y, nu).fit(jax.random.PRNGKey(3), tol=2e-3, progress=False)
        h = np.asarray(bmap.h)
        # The images of each base point under the symmetry group share one height.
        np.testing.assert_allclose(h[0:3], h[3:6], atol=2e-3)
        np.testing.assert_allclose(h[0:3], h[6:9], atol=2e-3)
        np.testing.assert_allclose(h[0:3], h[9:12], atol=2e-3)
        assert abs(h.mean()) < 1e-5  # normalised


def test_mc_gradient_matches_finite_differences_of_energy():
    y = jax.random.uniform(jax.random.PRNGKey(4), (12, 2))
    problem = SemiDiscreteOT(UniformBox(2), y)
    h = 0.05 * jax.random.normal(jax.random.PRNGKey(5), (12,))
    grad = problem.estimate(jax.random.PRNGKey(6), h, 2**18).masses - problem.weights
    eps = 2e-3
    fd = []
    for j in range(12):
        e = jnp.zeros(12).at[j].set(eps)
        # Independent key, many samples; common random numbers for the two sides.
        ep = problem.estimate(jax.random.PRNGKey(7), h + e, 2**21).energy
        em = problem.estimate(jax.random.PRNGKey(7), h - e, 2**21).energy
        fd.append((ep - em) / (2 * eps))
    np.testing.assert_allclose(np.asarray(fd), np.asarray(grad), atol=2e-3)


def test_facet_hessian_matches_finite_differences_of_masses():
    y = jax.random.uniform(jax.random.PRNGKey(8), (10, 2))
    problem = SemiDiscreteOT(UniformBox(2), y)
    h = problem.initial_h()
    est = problem.estimate(jax.random.PRNGKey(9), h, 2**20, hessian=True, band=0.02)
    matvec, diag = optim_newton.facet_hessian_matvec(est.edges, 10)
    hess = np.stack([np.asarray(matvec(jnp.eye(10)[j])) for j in range(10)], axis=1)
    np.testing.assert_allclose(hess, hess.T, atol=1e-6)  # symmetric by construction
    np.testing.assert_allclose(hess.sum(0), 0, atol=1e-4)  # Laplacian: masses sum to 1
    eps = 5e-3
    for j in range(10):
        e = jnp.zeros(10).at[j].set(eps)
        dw = (problem.estimate(jax.random.PRNGKey(10), h + e, 2**21).masses
              - problem.estimate(jax.random.PRNGKey(10), h - e, 2**21).masses) / (2 * eps)
        np.testing.assert_allclose(hess[:, j], np.asarray(dw), atol=0.12 * np.abs(hess).max())


def test_same_key_same_result_and_different_key_differs():
    # (the Monte-Carlo path; the exact 2-D path draws nothing: tests/test_exact_ot.py)
    y = jax.random.uniform(jax.random.PRNGKey(0), (40, 2))
    p = SemiDiscreteOT(UniformBox(2), y)
    a = p.fit(jax.random.PRNGKey(5), tol=0.01, progress=False, exact=False)
    b = p.fit(jax.random.PRNGKey(5), tol=0.01, progress=False, exact=False)
    c = p.fit(jax.random.PRNGKey(6), tol=0.01, progress=False, exact=False)
    np.testing.assert_array_equal(a.h, b.h)
    assert a.diagnostics.history.l1 == b.diagnostics.history.l1
    assert not np.array_equal(a.h, c.h)


def test_user_sampler_source_and_aeot_baseline_converge():
    y = jax.random.normal(jax.random.PRNGKey(0), (20, 2))
    gauss = Sampler(lambda k, n: jax.random.normal(k, (n, 2)), dim=2, name="normal")
    a = SemiDiscreteOT(gauss, y).fit(jax.random.PRNGKey(1), tol=0.03, progress=False)
    assert a.diagnostics.converged
    b = SemiDiscreteOT(Gaussian(2), y).fit(jax.random.PRNGKey(1), tol=0.03, optimizer=aeot_recipe(lr=2e-2),
                                           batch_size=4096, max_steps=400, progress=False)
    # The recipe's own stop (||g||_2 < 2e-3) or enough progress; both maps agree on most points.
    assert b.diagnostics.history.l1[-1] < 0.1
    x = jax.random.normal(jax.random.PRNGKey(2), (4000, 2))
    assert np.mean(np.asarray(a.assign(x)) == np.asarray(b.assign(x))) > 0.9


def test_fit_diagnostics_and_map():
    y = jax.random.uniform(jax.random.PRNGKey(0), (30, 2))
    bmap = SemiDiscreteOT(UniformBox(2), y).fit(jax.random.PRNGKey(1), tol=0.01, progress=False, exact=False)
    d = bmap.diagnostics.history
    assert len({len(seq) for seq in d}) == 1 and len(d.l1) >= 1  # every per-step field, one entry a step
    assert all(t2 >= t1 for t1, t2 in zip(d.wall_time, d.wall_time[1:]))
    # The energy is convex with minimum at the solution: the first (Voronoi) iterate is not lower.
    assert d.energy[0] >= d.energy[-1] - 1e-4
    x = jax.random.uniform(jax.random.PRNGKey(2), (100, 2))
    np.testing.assert_array_equal(bmap(x), np.asarray(y)[np.asarray(bmap.assign(x))])
    np.testing.assert_allclose(bmap.potential(x), jnp.max(x @ y.T + bmap.h, axis=1), rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_and_corruption(tmp_path: Path):
    y = jax.random.uniform(jax.random.PRNGKey(0), (25, 3))
    src = UniformBox(3, low=-1.0, high=2.0)
    bmap = SemiDiscreteOT(src, y).fit(jax.random.PRNGKey(1), tol=0.02, progress=False)
    path = tmp_path / "map.npz"
    bmap.save(path)
    back = BrenierMap.load(path)
    np.testing.assert_array_equal(back.h, bmap.h)
    np.testing.assert_array_equal(back.targets, bmap.targets)
    np.testing.assert_array_equal(back.weights, bmap.weights)
    assert back.source == src
    assert back.diagnostics == bmap.diagnostics
    x = jax.random.uniform(jax.random.PRNGKey(2), (50, 3))
    np.testing.assert_array_equal(back.assign(x), bmap.assign(x))

    bad = tmp_path / "truncated.npz"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        BrenierMap.load(bad)
    other = tmp_path / "other.npz"
    save_pytree(other, {"w": np.zeros(3)}, {"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a saved BrenierMap"):
        BrenierMap.load(other)
    with pytest.raises(CheckpointError, match="dimension"):
        BrenierMap.load(path, source=UniformBox(2))
    with pytest.raises(ValueError):
        BrenierMap.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("targets,weights,match", [
    (np.array([[0.1, 0.2], [np.nan, 0.3]]), None, "NaN or inf"),
    (np.array([[0.1, 0.2], [np.inf, 0.3]]), None, "NaN or inf"),
    (np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0.5, np.nan]), "weights contain NaN"),
    (np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([1.5, -0.5]), "negative"),
    (np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([1.0, 0.0]), "zero weight"),
    (np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0.5, 0.6]), "sum to 1.1"),
    (np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0.5, 0.3, 0.2]), "shape"),
    (np.array([[0.1, 0.2, 0.3]]), None, "dimension mismatch"),
    (np.zeros((0, 2)), None, "K = 0"),
    (np.array([0.1, 0.2]), None, "2-D"),
    (np.array([[0.1, 0.2], [0.3, 0.4], [0.1, 0.2]]), None, "duplicate targets: rows 0 and 2"),
])
def test_bad_input_raises(targets, weights, match):
    with pytest.raises(ValueError, match=match):
        SemiDiscreteOT(UniformBox(2), targets, weights)


def test_normalize_weights_opt_in_and_other_errors():
    y = np.array([[0.1, 0.2], [0.3, 0.4]])
    p = SemiDiscreteOT(UniformBox(2), y, np.array([2.0, 6.0]), normalize_weights=True)
    np.testing.assert_allclose(p.weights, [0.25, 0.75])
    with pytest.raises(ValueError, match="tol"):
        p.fit(jax.random.PRNGKey(0), tol=-1)
    with pytest.raises(ValueError, match="max_steps"):
        p.fit(jax.random.PRNGKey(0), max_steps=0)
    with pytest.raises(ValueError, match="dim"):
        UniformBox(0)
    with pytest.raises(ValueError, match="high > low"):
        UniformBox(2, low=1.0, high=0.0)
    with pytest.raises(ValueError, match="std"):
        Gaussian(2, std=0.0)
    with pytest.raises(ValueError, match="returned shape"):
        Sampler(lambda k, n: jnp.zeros((n, 3)), dim=2).sample(jax.random.PRNGKey(0), 4)


@pytest.mark.heavy
def test_d32_small_converges():
    """Reduced high-dimensional case (default run): K = 200 in d = 32, tol 0.05, checked independently."""
    y = jax.random.uniform(jax.random.PRNGKey(0), (200, 32))
    bmap = SemiDiscreteOT(UniformBox(32), y).fit(jax.random.PRNGKey(1), tol=0.05, progress=False)
    assert bmap.diagnostics.converged
    w = _independent_masses_box(bmap, 20, seed=3)
    # Owen-scrambled Sobol noise in d = 32 is close to plain MC: sqrt(2K / (pi N)) ~ 0.011 here (N = 2^20).
    assert np.abs(w - 1 / 200).sum() <= 0.05 + 0.011


@pytest.mark.slow
def test_d32_k10000_converges():
    """The stated high-dimensional case: K = 10,000 uniform targets in [0,1]^32.  The default there is
    averaged SGD on chi2 (tol 0.01: a 10% RMS relative cell-mass error, L1 <= 0.1)."""
    from otgen.ot.problems import independent_error

    y = jax.random.uniform(jax.random.PRNGKey(0), (10_000, 32))
    bmap = SemiDiscreteOT(UniformBox(32), y).fit(jax.random.PRNGKey(1), tol=0.01, progress=False)
    assert bmap.diagnostics.converged and bmap.diagnostics.convergence.metric == "chi2"
    chk = independent_error(bmap, jax.random.PRNGKey(2), 1 << 23)
    cert = bmap.diagnostics.as_metrics()
    # within the certificate's own noise and 3 x the check's
    assert chk.chi2 <= 0.01 + 3 * (cert["ot_noise_chi2"] + 2 * np.sqrt(10_000) / chk.num_samples)
