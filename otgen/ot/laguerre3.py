"""Exact Laguerre (power) cells in 3-D under the uniform density of the unit cube, in float64.

As in 2-D (:mod:`otgen.ot.laguerre`), neighbouring cells are the edges of the lower convex hull of
the lifted points ``(y_i, -h_i)`` (Qhull, here in 4-D): its facets are the tetrahedra of the regular
triangulation, and each tetrahedron's power centre (where its four affine pieces tie) is a vertex of
the diagram.  A triangle ``(a, b, c)`` shared by two lower tetrahedra is dual to the segment joining
their power centres, an edge of the facets between each pair of ``a, b, c``.  So every facet is the
union, over the triangles on its pair, of the triangles (a fixed vertex of the facet, that segment):
areas, volumes (cones from the own target) and first moments come out of one pass over the
triangles, with no polygon ever put in order.

**Mirror sites close the cells at the cube's faces.**  Reflect target ``i`` across a face plane and
give it the same power radius (``|y|^2 + 2 h``): the two tie exactly on the plane, and inside the
cube a mirror never beats its original (nor any target on the cube's side of the plane), so the
cells of the original targets become exactly ``cell_i`` intersected with the cube, with the face
pieces as ordinary facets -- no clipping.  Only cells that reach past a face need that face's
mirror; which ones is read off the diagram itself (a vertex of an original cell outside the cube,
or an unbounded cell) and mirrors are added until none is missing; the set is handed on from one
Newton iterate to the next (``Cells.mirrors``), where it rarely changes.  The targets must lie
strictly inside the cube (the solver's inside frame puts them in [0.05, 0.95]^3).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from otgen.ot.laguerre import QHULL_OPTIONS, Cells, DegenerateTargets

__all__ = ["laguerre_cells3"]

_FACES = tuple((axis, bound) for axis in range(3) for bound in (0.0, 1.0))  # face f = 2 axis + (bound == 1)
_MAX_ROUNDS = 6


def _sites(y, h, mirrors):
    """Targets followed by their mirrors (face by face): positions and heights."""
    r2 = np.sum(y * y, axis=1) + 2.0 * h  # the power radius, kept by a reflection
    pos, hts = [y], [h]
    for f, (axis, bound) in enumerate(_FACES):
        ids = np.flatnonzero(mirrors[:, f])
        m = y[ids].copy()
        m[:, axis] = 2.0 * bound - m[:, axis]
        pos.append(m)
        hts.append(0.5 * (r2[ids] - np.sum(m * m, axis=1)))
    return np.concatenate(pos), np.concatenate(hts)


def _triangulate(sites, heights):
    """Lower tetrahedra ``(T, 4)``, their power centres ``(T, 3)`` and the neighbour table (-1: not lower)."""
    try:
        hull = ConvexHull(np.column_stack([sites, -heights]), qhull_options=QHULL_OPTIONS)
    except QhullError as e:
        raise DegenerateTargets(f"no 4-D hull of the lifted targets (fewer than 5, or coplanar): {e}") from None
    eq = hull.equations
    lower = eq[:, 3] < -1e-12 * np.linalg.norm(eq[:, :3], axis=1)
    index = np.full(len(eq), -1)
    index[lower] = np.arange(lower.sum())
    centre = -eq[lower, :3] / eq[lower, 3:4]
    return hull.simplices[lower], centre, index[hull.neighbors[lower]]


def _missing_mirrors(k, tets, centre, nbr, mirrors, tol, margin):
    """(K, 6) mirrors the diagram shows are missing -- an original cell with a vertex past a face, or
    unbounded (on a boundary triangle of the triangulation: all six) -- and (K, 6) those of cells with
    a vertex within ``margin`` of a face, likely to reach it at the next Newton iterate."""
    need, near = np.zeros((k, 6), bool), np.zeros((k, 6), bool)
    orig = tets < k
    for f, (axis, bound) in enumerate(_FACES):
        gap = centre[:, axis] - 1.0 if bound else -centre[:, axis]  # > 0: past the face
        for mask, out in ((gap > tol, need), (gap > -margin, near)):
            out[tets[mask][orig[mask]], f] = True
    open_side = nbr < 0  # the triangle opposite vertex m faces no lower tetrahedron
    for m in range(4):
        rows = np.flatnonzero(open_side[:, m])
        verts = np.delete(tets[rows], m, axis=1).ravel()
        need[verts[verts < k]] = True
    return need & ~mirrors, near | need


def laguerre_cells3(y: np.ndarray, h: np.ndarray, mirrors: np.ndarray | None = None) -> Cells:
    """The exact cells of ``argmax_i <x, y_i> + h_i`` in the unit cube, uniform density.

    ``y`` (K, 3) distinct targets strictly inside the cube, ``h`` (K,), float64.  ``mirrors``: a
    (K, 6) start for the mirror set (e.g. the last iterate's ``Cells.mirrors``); the one used is
    returned.  Empty cells get mass 0; ``facet_p`` / ``facet_q`` are empty (no segments in 3-D).
    Raises :class:`~otgen.ot.laguerre.DegenerateTargets` when the lifted points have no 4-D hull.
    """
    y = np.asarray(y, np.float64)
    h = np.asarray(h, np.float64)
    if y.ndim != 2 or y.shape[1] != 3 or h.shape != (len(y),):
        raise ValueError(f"need y of shape (K, 3) and h of shape (K,), got {y.shape} and {h.shape}")
    if not (np.all(y > 0) and np.all(y < 1)):
        raise ValueError("laguerre_cells3 needs the targets strictly inside the unit cube")
    k = len(y)
    mirrors = np.zeros((k, 6), bool) if mirrors is None else np.array(mirrors, bool)
    margin = 2.0 * k ** (-1 / 3)  # about a cell
    for _ in range(_MAX_ROUNDS):
        sites, heights = _sites(y, h, mirrors)
        tets, centre, nbr = _triangulate(sites, heights)
        need, near = _missing_mirrors(k, tets, centre, nbr, mirrors, 1e-12, margin)
        if not need.any():
            break
        mirrors |= near  # the missing ones, and those about to be: fewer rounds over a Newton solve
    else:
        raise FloatingPointError(f"laguerre_cells3: the mirror set did not settle in {_MAX_ROUNDS} rounds")
    return _integrate(k, sites, tets, centre, nbr, mirrors | near)


def _integrate(k, sites, tets, centre, nbr, mirrors) -> Cells:
    # every triangle shared by two lower tetrahedra, once: its vertices and its dual segment a -> b
    tri, seg_a, seg_b = [], [], []
    rows = np.arange(len(tets))
    for m in range(4):
        other = nbr[:, m]
        keep = (other > rows)
        tri.append(np.delete(tets[keep], m, axis=1))
        seg_a.append(centre[keep])
        seg_b.append(centre[other[keep]])
    tri, seg_a, seg_b = np.concatenate(tri), np.concatenate(seg_a), np.concatenate(seg_b)
    # each triangle's three pairs (p, r) with its third vertex t, p < r; pairs of two mirrors do not matter
    p = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 0]])
    r = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 2]])
    t = np.concatenate([tri[:, 2], tri[:, 0], tri[:, 1]])
    a, b = np.tile(seg_a, (3, 1)), np.tile(seg_b, (3, 1))
    p, r = np.minimum(p, r), np.maximum(p, r)
    keep = p < k
    p, r, t, a, b = p[keep], r[keep], t[keep], a[keep], b[keep]
    e = sites[r] - sites[p]
    # the dual segment is normal to the triangle; running it along (y_r - y_p) x (y_t - y_p) goes round
    # the facet (p, r) counter-clockwise seen from r's side
    flip = np.sum((b - a) * np.cross(e, sites[t] - sites[p]), axis=1) < 0
    a, b = np.where(flip[:, None], b, a), np.where(flip[:, None], a, b)
    key = p.astype(np.int64) * len(sites) + r
    facets, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    q = a[first][inverse]  # a fixed vertex of each facet: the fan's apex
    fan = np.cross(a - q, b - q)  # 2 x area x unit normal (towards r), per fan triangle
    both = r < k
    cells = np.concatenate([p, r[both]])
    apex = np.concatenate([q, q[both]])
    normal = np.concatenate([fan, -fan[both]])  # outward from each cell
    tip_a, tip_b = np.concatenate([a, a[both]]), np.concatenate([b, b[both]])
    o = sites[cells]  # cones from each cell's own target keep the sums O(cell size)
    vol = np.sum((apex - o) * normal, axis=1) / 6.0
    centroid = 0.25 * (o + apex + tip_a + tip_b)
    mass = np.bincount(cells, weights=vol, minlength=k)
    moment = np.stack([np.bincount(cells, weights=vol * centroid[:, c], minlength=k) for c in range(3)], axis=1)
    # facets between two targets (the Hessian's): area = half the fan's normal along the unit pair direction
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    area = 0.5 * np.sum(fan * unit, axis=1)
    fkey = key[both]
    fac, finv = np.unique(fkey, return_inverse=True)
    facet_area = np.bincount(finv, weights=area[both], minlength=len(fac))
    fi, fj = (fac // len(sites)).astype(np.int64), (fac % len(sites)).astype(np.int64)
    pos = facet_area > 0
    empty = np.zeros((0, 3))
    return Cells(mass, moment, fi[pos], fj[pos], facet_area[pos], empty, empty, mirrors)
