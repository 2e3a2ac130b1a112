"""The exact 2-D path: Laguerre cells (otgen.ot.laguerre) and damped Newton on them (otgen.ot.exact).

Every check is against something the geometry code did not compute: closed forms (rectangles,
quadrants, a regular grid), fresh Monte-Carlo samples sized so their noise is known, and the
Monte-Carlo solver's own energy estimate for the energy.
"""

import math
from pathlib import Path

import jax
import numpy as np
import pytest

from otgen.ot import BrenierMap, Gaussian, SemiDiscreteOT, UniformBox
from otgen.ot.exact import EXACT_TOL, exact_masses, solve_exact, why_not_exact
from otgen.ot.laguerre import DegenerateTargets, laguerre_cells
from otgen.ot.laguerre3 import laguerre_cells3
from otgen.ot.problems import independent_error


def _mc_masses(y, h, density, n, seed, moments=False):
    rng = np.random.default_rng(seed)
    d = y.shape[1]
    counts, first = np.zeros(len(y)), np.zeros((len(y), d))
    for _ in range(n // 1_000_000):
        x = rng.random((1_000_000, d)) if density == "uniform" else rng.standard_normal((1_000_000, d))
        idx = np.argmax(x @ y.T + h, axis=1)
        counts += np.bincount(idx, minlength=len(y))
        if moments:
            first += np.stack([np.bincount(idx, weights=x[:, c], minlength=len(y)) for c in range(d)], axis=1)
    total = n // 1_000_000 * 1_000_000
    return (counts / total, first / total) if moments else counts / total


def _assert_quadratic(errors, start, floor):
    """Between ``start`` and the rounding ``floor``, each error about the square of the last (log ratio ~2;
    linear convergence would give ~1)."""
    tail = errors[(errors < start) & (errors > floor)]
    assert len(tail) >= 2
    ratios = np.log(tail[1:]) / np.log(tail[:-1])
    assert np.all(ratios > 1.6), (errors, ratios)


def test_rectangles_known_areas():
    # Corner targets with h = -(a s + b t): the cells are the four rectangles cut at x = a, y = b.
    # A fifth target far below the others' lifted plane keeps the hull 3-D; its cell is empty.
    a, b = 0.3, 0.65
    y = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    h = -(a * y[:, 0] + b * y[:, 1])
    h[4] = -10.0
    m = laguerre_cells(y, h, "uniform").mass
    np.testing.assert_allclose(m, [a * b, (1 - a) * b, a * (1 - b), (1 - a) * (1 - b), 0], rtol=0, atol=1e-14)


def test_gaussian_quadrants_and_half_planes():
    # Symmetric targets: quadrants (1/4 each); shifted cut x = c: Phi(c) on the left.
    # (a fifth target with an empty cell keeps the lifted hull 3-D, as above)
    y = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [0.0, 0.0]])
    m = laguerre_cells(y, np.array([0, 0, 0, 0, -50.0]), "normal").mass
    np.testing.assert_allclose(m, [0.25] * 4 + [0], rtol=0, atol=1e-13)
    c, d = 0.7, -0.4
    y = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    h = -(c * y[:, 0] + d * y[:, 1])
    h[4] = -50.0
    m = laguerre_cells(y, h, "normal").mass
    from scipy.stats import norm

    pa, pb = norm.cdf(c), norm.cdf(d)
    np.testing.assert_allclose(m, [pa * pb, (1 - pa) * pb, pa * (1 - pb), (1 - pa) * (1 - pb), 0], atol=1e-13)


def test_regular_grid_voronoi_cells_are_equal():
    side = 7
    g = (np.arange(side) + 0.5) / side
    y = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    m = laguerre_cells(y, -0.5 * np.sum(y * y, 1), "uniform").mass  # cocircular quadruples everywhere
    np.testing.assert_allclose(m, 1 / side**2, atol=1e-14)


@pytest.mark.parametrize("density", ["uniform", "normal"])
def test_masses_and_moments_match_fresh_monte_carlo(density):
    rng = np.random.default_rng(3)
    k = 40
    y = rng.random((k, 2)) if density == "uniform" else 1.5 * rng.standard_normal((k, 2))
    h = 0.05 * rng.standard_normal(k) - 0.5 * np.sum(y * y, 1)
    cells = laguerre_cells(y, h, density)
    assert abs(cells.mass.sum() - 1) < 1e-12
    n = 10_000_000
    w = _mc_masses(y, h, density, n, seed=11)
    z = (cells.mass - w) / np.sqrt(np.maximum(cells.mass * (1 - cells.mass), 1e-12) / n)
    assert np.max(np.abs(z)) < 4.5, z  # 40 cells: |z| > 4.5 has probability ~3e-4
    # the L1 gap is at the i.i.d. noise floor sqrt(2K / (pi N)), not above it
    assert np.abs(cells.mass - w).sum() < 2 * math.sqrt(2 * k / (math.pi * n))


def test_degenerate_targets_are_named():
    with pytest.raises(DegenerateTargets):
        laguerre_cells(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]), np.zeros(4))
    assert "collinear" in why_not_exact(UniformBox(2), np.array([[0, 0], [1, 1], [2, 2], [3, 3.0]]))
    assert "d = 2 or 3" in why_not_exact(UniformBox(4), np.eye(6, 4))
    assert "coplanar" in why_not_exact(UniformBox(3), np.column_stack([np.eye(5, 2), np.zeros(5)]))
    assert "UniformBox" in why_not_exact(Gaussian(3), np.random.default_rng(0).random((10, 3)))
    assert "4 targets" in why_not_exact(UniformBox(2), np.eye(2))
    assert "5 targets" in why_not_exact(UniformBox(3), np.eye(4, 3))


def test_newton_converges_quadratically():
    rng = np.random.default_rng(0)
    y = rng.random((200, 2))
    nu = rng.dirichlet(np.full(200, 5.0))
    res = solve_exact(UniformBox(2), y, nu, tol=1e-12)
    assert res.converged
    e = np.array(res.l1)
    _assert_quadratic(e, 1e-2, 1e-11)
    assert np.all(np.array(res.step_size[:-1])[e[:-1] < 1e-2] == 1.0)  # full steps once close


@pytest.mark.parametrize("source", [UniformBox(2, low=[-1.0, 0.0], high=[2.0, 0.5]), Gaussian(2, mean=[1.0, -2.0],
                                                                                                std=[0.5, 2.0])])
def test_default_fit_takes_the_exact_path_and_fresh_samples_agree(source):
    # Eight tight clusters, Dirichlet weights (smallest ~1e-4): a problem not designed for the method.
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(8, 2)) * 2
    y = (centres[rng.integers(0, 8, 300)] + 0.05 * rng.normal(size=(300, 2))).astype(np.float32)
    nu = rng.dirichlet(np.ones(300))
    bmap = SemiDiscreteOT(source, y, nu, normalize_weights=True).fit(jax.random.PRNGKey(0), progress=False)
    d = bmap.diagnostics
    assert d.converged and d.convergence.optimizer == "exact-newton" and d.stop_reason == "converged"
    assert d.final_l1 <= EXACT_TOL and "exact power-diagram path" in d.notes[0]
    assert bmap.h.dtype == np.float64
    # independent: 2^24 fresh i.i.d. samples through the float32 scoring kernels
    chk = independent_error(bmap, jax.random.PRNGKey(99), 1 << 24)
    assert chk.l1 <= 3 * chk.noise_l1 + 1e-3, chk
    # energies decrease to the minimum; the Monte-Carlo estimate of the last one agrees
    assert all(b <= a + 1e-12 for a, b in zip(d.history.energy, d.history.energy[1:]))
    est = SemiDiscreteOT(source, y, nu, normalize_weights=True).estimate(jax.random.PRNGKey(7), bmap.h, 1 << 22)
    assert abs(float(est.energy) - d.history.energy[-1]) < 1e-3 * max(1.0, abs(d.history.energy[-1]))


def test_exact_flag_and_fallbacks():
    y = jax.random.uniform(jax.random.PRNGKey(0), (30, 4))
    with pytest.raises(ValueError, match="d = 2 or 3"):
        SemiDiscreteOT(UniformBox(4), y).fit(jax.random.PRNGKey(1), exact=True)
    y2 = jax.random.uniform(jax.random.PRNGKey(0), (30, 2))
    mc = SemiDiscreteOT(UniformBox(2), y2).fit(jax.random.PRNGKey(1), tol=0.02, exact=False, progress=False)
    assert mc.diagnostics.convergence.optimizer != "exact-newton" and sum(mc.diagnostics.history.num_samples) > 0
    # the exact answer, scored on the Monte-Carlo map's heights: within the MC fit's tol (+ its noise)
    m = exact_masses(UniformBox(2), np.asarray(y2, np.float64), np.asarray(mc.h, np.float64))
    assert np.abs(m - 1 / 30).sum() < 0.02 + 3 * mc.diagnostics.history.noise_l1[mc.diagnostics.convergence.best_step]


def test_h0_time_budget_and_save_load(tmp_path: Path):
    rng = np.random.default_rng(1)
    y = rng.random((500, 2)).astype(np.float32)
    p = SemiDiscreteOT(UniformBox(2), y)
    a = p.fit(jax.random.PRNGKey(0), progress=False)
    again = p.fit(jax.random.PRNGKey(0), h0=a.h, progress=False)
    assert len(again.diagnostics.history.l1) == 1 and "h0 given" in " ".join(again.diagnostics.notes)
    with pytest.warns(UserWarning, match="not converged"):
        short = p.fit(jax.random.PRNGKey(0), max_steps=2, progress=False)
    assert not short.diagnostics.converged and short.diagnostics.stop_reason == "max_steps"
    path = tmp_path / "map.npz"
    a.save(path)
    back = BrenierMap.load(path)
    assert back.h.dtype == np.float64
    np.testing.assert_array_equal(back.h, a.h)
    with pytest.raises(ValueError, match="h0"):
        p.fit(jax.random.PRNGKey(0), h0=np.full(500, np.nan))


# -- 3-D (otgen.ot.laguerre3: mirror sites at the cube's faces) --------------------------------------

def test_3d_boxes_known_volumes_and_grid_facets():
    # Corner targets with h = -(a s + b t + c u): the cells are the eight boxes cut at (a, b, c); a ninth
    # target far below the lifted hyperplane keeps the hull 4-D (empty cell).  Through exact_masses,
    # which brings the targets inside the cube first.
    a, b, c = 0.3, 0.65, 0.2
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], np.float64)
    y = np.vstack([corners, [0.5, 0.5, 0.5]])
    h = -(y @ [a, b, c])
    h[8] = -10.0
    side = lambda v, t: t if v == 0 else 1 - t  # noqa: E731
    want = [side(i, a) * side(j, b) * side(k, c) for i, j, k in corners] + [0.0]
    np.testing.assert_allclose(exact_masses(UniformBox(3), y, h), want, rtol=0, atol=1e-13)
    # a regular grid (cospherical octuples everywhere): equal cubes, every facet a square of side 1/n
    n = 4
    g = (np.arange(n) + 0.5) / n
    y = np.stack(np.meshgrid(g, g, g), -1).reshape(-1, 3)
    cells = laguerre_cells3(y, -0.5 * np.sum(y * y, 1))
    np.testing.assert_allclose(cells.mass, 1 / n**3, atol=1e-14)
    assert len(cells.facet_i) == 3 * n * n * (n - 1)
    np.testing.assert_allclose(cells.facet_mass, 1 / n**2, atol=1e-14)
    with pytest.raises(ValueError, match="inside the unit cube"):
        laguerre_cells3(np.vstack([y, [[1.0, 0.5, 0.5]]]), np.zeros(len(y) + 1))


def test_3d_masses_and_moments_match_fresh_monte_carlo():
    rng = np.random.default_rng(4)
    k = 40
    y = rng.uniform(0.1, 0.9, (k, 3))
    h = 0.03 * rng.standard_normal(k) - 0.5 * np.sum(y * y, 1)
    cells = laguerre_cells3(y, h)
    assert abs(cells.mass.sum() - 1) < 1e-12 and cells.mirrors.any()
    n = 10_000_000
    w, first = _mc_masses(y, h, "uniform", n, seed=12, moments=True)
    z = (cells.mass - w) / np.sqrt(np.maximum(cells.mass * (1 - cells.mass), 1e-12) / n)
    assert np.max(np.abs(z)) < 4.5, z
    assert np.abs(cells.mass - w).sum() < 2 * math.sqrt(2 * k / (math.pi * n))
    # first moments: x in [0, 1], so each coordinate's sum has variance <= mass / n
    zm = (cells.moment - first) / np.sqrt(np.maximum(cells.mass, 1e-12) / n)[:, None]
    assert np.max(np.abs(zm)) < 4.5, zm
    # the mirror set handed on gives the same cells
    again = laguerre_cells3(y, h, cells.mirrors)
    np.testing.assert_allclose(again.mass, cells.mass, atol=1e-15)


def test_3d_newton_quadratic_and_default_fit_on_a_box():
    rng = np.random.default_rng(2)
    y = rng.random((300, 3))
    nu = rng.dirichlet(np.full(300, 3.0))
    res = solve_exact(UniformBox(3), y, nu, tol=1e-11)
    assert res.converged
    # quadratic in the largest relative error of a cell's mass (the L1 error's constant grows with K)
    _assert_quadratic(np.array(res.max_rel), 1e-1, 1e-11)
    # the default fit on another box and clustered targets: exact path, checked with fresh i.i.d. samples
    source = UniformBox(3, low=[-1.0, 0.0, 2.0], high=[1.0, 0.5, 2.5])
    centres = rng.normal(size=(6, 3))
    yc = (centres[rng.integers(0, 6, 400)] + 0.1 * rng.normal(size=(400, 3))).astype(np.float32)
    bmap = SemiDiscreteOT(source, yc).fit(jax.random.PRNGKey(0), progress=False)
    d = bmap.diagnostics
    assert d.converged and d.convergence.optimizer == "exact-newton" and "d = 3" in d.notes[0]
    assert d.final_l1 <= EXACT_TOL
    chk = independent_error(bmap, jax.random.PRNGKey(5), 1 << 23)
    assert chk.l1 <= 3 * chk.noise_l1 + 1e-3, chk
