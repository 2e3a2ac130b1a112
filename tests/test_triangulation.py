"""Flip repair of the regular triangulation (otgen.ot.triangulation): checked against Qhull building it
from scratch, on targets and heights the repair was not written around."""

import numpy as np
import pytest

from otgen.ot import Gaussian, UniformBox, triangulation
from otgen.ot.exact import solve_exact
from otgen.ot.laguerre import laguerre_cells


def _edge_set(tr):
    t, k = triangulation.interior_edges(tr.nbr)
    a, b = tr.tri[t, (k + 1) % 3], tr.tri[t, (k + 2) % 3]
    return set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))


def _check_repair(y, h_from, h_to, density):
    start = laguerre_cells(y, h_from, density)
    fresh = laguerre_cells(y, h_to, density)
    repaired = laguerre_cells(y, h_to, density, near=start)
    assert repaired.flipped
    edges = _edge_set(repaired.triangulation)
    assert edges == _edge_set(fresh.triangulation)
    np.testing.assert_allclose(repaired.mass, fresh.mass, rtol=0, atol=1e-15)
    np.testing.assert_allclose(repaired.moment, fresh.moment, rtol=0, atol=1e-15)
    # a valid triangulation: counter-clockwise triangles, reciprocal neighbours
    tr = repaired.triangulation
    assert np.all(triangulation._orient(y, tr.tri[:, 0], tr.tri[:, 1], tr.tri[:, 2]) > 0)
    t, k = np.nonzero(tr.nbr >= 0)
    assert np.all(np.any(tr.nbr[tr.nbr[t, k]] == t[:, None], axis=1))
    return len(edges - _edge_set(start.triangulation)) / len(edges)


@pytest.mark.parametrize("source", [UniformBox(2), Gaussian(2)])
def test_flips_follow_a_newton_path(source):
    # consecutive iterates of the exact solver (the repair's use) on clustered targets, Dirichlet weights
    rng = np.random.default_rng(3)
    centres = rng.random((6, 2)) * 0.8 + 0.1
    y = centres[rng.integers(0, 6, 2000)] + 0.04 * rng.standard_normal((2000, 2))
    if isinstance(source, Gaussian):
        y = (y - 0.5) * 4
    hs = []
    solve_exact(source, y, rng.dirichlet(np.ones(len(y))), callback=lambda s, h, m: hs.append(h) and False)
    density = "uniform" if isinstance(source, UniformBox) else "normal"
    changed = [_check_repair(y, a, b, density) for a, b in zip(hs[:-1], hs[1:])]
    assert max(changed) > 0.01, changed  # some repairs were not trivial


def test_an_emptied_cell_falls_back_to_qhull():
    rng = np.random.default_rng(4)
    y = rng.random((500, 2)) * 0.8 + 0.1
    h0 = -0.5 * np.sum(y * y, 1)
    start = laguerre_cells(y, h0)
    inner = int(np.argmin(np.sum((y - 0.5) ** 2, 1)))
    h = h0.copy()
    h[inner] -= 1.0  # far below its neighbours: its cell is empty, its vertex leaves the triangulation
    assert triangulation.update(start.triangulation, y, h) == (None, "stuck")
    with pytest.raises(triangulation.NotRepairable):
        laguerre_cells(y, h, near=start, repair_only=True)
    cells = laguerre_cells(y, h, near=start)
    assert not cells.flipped and cells.mass[inner] == 0
    np.testing.assert_allclose(cells.mass, laguerre_cells(y, h).mass, atol=1e-15)


def test_straight_boundary_pieces_are_never_flipped():
    # a lattice: targets on straight pieces of the hull's boundary, whose presence no flip checks
    g = np.linspace(0.1, 0.9, 6)
    y = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    h = -0.5 * np.sum(y * y, 1) + 1e-3 * np.random.default_rng(5).standard_normal(len(y))
    start = laguerre_cells(y, h)
    assert not start.triangulation.flippable
    assert not laguerre_cells(y, h * 1.01, near=start, repair_only=True).flipped  # Qhull, no error


def test_newton_direction_preconditioned_by_an_earlier_factor_solves_the_new_system():
    # the inexact Newton step: CG on this iterate's Laplacian, preconditioned by the last iterate's LU
    from otgen.ot.exact import _newton_direction

    rng = np.random.default_rng(6)
    y = rng.random((2000, 2)) * 0.8 + 0.1
    h0 = -0.5 * np.sum(y * y, 1)
    old = laguerre_cells(y, h0)
    new = laguerre_cells(y, h0 + 3e-3 * np.sin(5 * y[:, 0]) * np.cos(3 * y[:, 1]), near=old)
    assert new.mass.min() > 0 and new.flipped and len(_edge_set(new.triangulation) - _edge_set(old.triangulation))
    rhs = rng.dirichlet(np.ones(len(y))) - new.mass
    _, factor = _newton_direction(old, y, rhs, 0)
    assert factor is not None
    d_cg, kept = _newton_direction(new, y, rhs, 0, factor)
    assert kept is factor  # solved by CG with the old factor, not refactored
    d_lu, _ = _newton_direction(new, y, rhs, 0)
    assert d_cg[0] == 0 and d_lu[0] == 0
    np.testing.assert_allclose(d_cg, d_lu, rtol=0, atol=1e-4 * np.abs(d_lu).max())
