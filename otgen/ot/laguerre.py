"""Exact Laguerre (power) cells in 2-D: cell masses and facet integrals, in float64.

Cell i of ``u_h(x) = max_i <x, y_i> + h_i`` is a convex polygon.  Two cells are neighbours exactly
when ``(i, j)`` is an edge of the lower convex hull of the lifted points ``(y_i, -h_i)`` (the graph of
the Legendre dual of ``u_h``), which Qhull (``scipy.spatial.ConvexHull``) builds in O(K log K), or
which flips repair from the cells at nearby heights (:mod:`otgen.ot.triangulation`).  The
facet between neighbours is the segment joining the power centres of the two lower triangles on that
edge (a ray on the hull's boundary), clipped here to a box.  A cell's boundary is its clipped facets
plus the pieces of the box's sides it owns; its mass is the sum, over its boundary edges ``p -> q``
oriented counter-clockwise, of the measure of the triangle ``(o, p, q)`` -- the shoelace formula for
the uniform density, Owen's T function for the standard Gaussian.  Everything is vectorised numpy.

Two densities, each in a standard frame (the solver brings a problem there, :mod:`otgen.ot.exact`):
``"uniform"`` on the unit square and ``"normal"``, the standard normal, whose cells are clipped to
``[-GAUSS_BOX, GAUSS_BOX]^2`` (the mass outside is ~1e-32).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import special

from otgen.ot import triangulation
from otgen.ot.triangulation import QHULL_OPTIONS, DegenerateTargets, Triangulation

__all__ = ["Cells", "DENSITIES", "GAUSS_BOX", "QHULL_OPTIONS", "laguerre_cells", "DegenerateTargets"]

DENSITIES = ("uniform", "normal")
GAUSS_BOX = 12.0
_SIDES = ((1, "low"), (0, "high"), (1, "high"), (0, "low"))  # bottom, right, top, left: (fixed axis, bound)


class Cells(NamedTuple):
    """The Laguerre cells of ``(y, h)`` clipped to the density's box.

    ``mass`` (K,): each cell's measure; ``moment`` (K, 2): the integral of ``x`` over it (the
    barycentre times the mass), by the divergence theorem.  Facets with a positive clipped length, one row per
    neighbouring pair: ``facet_i``, ``facet_j`` (F,) the two cells, ``facet_mass`` (F,) the
    density integrated along the facet (its length for the uniform density), ``facet_p``,
    ``facet_q`` (F, 2) its clipped end points.
    """

    mass: np.ndarray
    moment: np.ndarray
    facet_i: np.ndarray
    facet_j: np.ndarray
    facet_mass: np.ndarray
    facet_p: np.ndarray
    facet_q: np.ndarray
    mirrors: np.ndarray | None = None  # 3-D only (otgen.ot.laguerre3): the mirror sites used, (K, 6)
    triangulation: Triangulation | None = None  # 2-D only: the dual triangulation, to repair for nearby heights
    flipped: bool = False  # 2-D: the triangulation was repaired by flips (False: built by Qhull)


def _box(density: str) -> tuple[float, float]:
    if density == "uniform":
        return 0.0, 1.0
    if density == "normal":
        return -GAUSS_BOX, GAUSS_BOX
    raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise dot products of (N, 2) arrays (np.sum(u * v, 1) is ~7x slower over a length-2 axis)."""
    return u[:, 0] * v[:, 0] + u[:, 1] * v[:, 1]


def _norm(u: np.ndarray) -> np.ndarray:
    return np.sqrt(_dot(u, u))


def _rot(v: np.ndarray) -> np.ndarray:
    """v turned by +90 degrees."""
    return np.stack([-v[:, 1], v[:, 0]], axis=1)


def _facets(y: np.ndarray, h: np.ndarray, tr: Triangulation):
    """Every facet of the (unclipped) power diagram: cells ``a``, ``b``, a start point ``p``, a
    direction ``d`` and the end parameter ``tmax`` (1 for a segment ``p -> p + d``, inf for a ray)."""
    tri, nbr = tr.tri, tr.nbr
    if tr.centre is not None:
        return _facet_lines(y, tri, nbr, tr.centre)
    # The power centre of a triangle: where its three affine pieces tie, <x, y_a - y_j> = h_j - h_a.
    ya, yb, yc = y[tri[:, 0]], y[tri[:, 1]], y[tri[:, 2]]
    u, v = ya - yb, ya - yc
    ru, rv = h[tri[:, 1]] - h[tri[:, 0]], h[tri[:, 2]] - h[tri[:, 0]]
    det = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    centre = np.stack([ru * v[:, 1] - rv * u[:, 1], u[:, 0] * rv - v[:, 0] * ru], axis=1) / det[:, None]
    return _facet_lines(y, tri, nbr, centre)


def _facet_lines(y, tri, nbr, centre):
    ts = np.arange(len(tri))
    starts, dirs, tmax, aa, bb = [], [], [], [], []
    for k in range(3):  # the edge opposite vertex k of each triangle
        a, b, c = tri[:, (k + 1) % 3], tri[:, (k + 2) % 3], tri[:, k]
        other = nbr[:, k]
        keep = other > ts  # an interior edge once, from its lower-numbered triangle
        starts.append(centre[keep])
        dirs.append(centre[other[keep]] - centre[keep])
        tmax.append(np.ones(keep.sum()))
        aa.append(a[keep])
        bb.append(b[keep])
        ray = other < 0  # a hull edge of the projected targets: the facet runs away from the third vertex
        ra, rb, rc = a[ray], b[ray], c[ray]
        d = _rot(y[rb] - y[ra])
        d *= np.where(_dot(d, y[rc] - y[ra]) > 0, -1.0, 1.0)[:, None]
        starts.append(centre[ray])
        dirs.append(d / _norm(d)[:, None])
        tmax.append(np.full(ray.sum(), np.inf))
        aa.append(ra)
        bb.append(rb)
    cat = np.concatenate
    return cat(aa), cat(bb), cat(starts), cat(dirs), cat(tmax)


def _clip(p, d, tmax, lo, hi):
    """Liang-Barsky: the parameter range [t0, t1] of ``p + t d`` inside the box (empty: t0 > t1)."""
    t0, t1 = np.zeros(len(p)), tmax.copy()
    for k in range(2):
        dk, pk = d[:, k], p[:, k]
        flat = dk == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ta, tb = (lo - pk) / dk, (hi - pk) / dk
        inside = (pk >= lo) & (pk <= hi)
        t0 = np.maximum(t0, np.where(flat, np.where(inside, -np.inf, np.inf), np.minimum(ta, tb)))
        t1 = np.minimum(t1, np.where(flat, np.where(inside, np.inf, -np.inf), np.maximum(ta, tb)))
    return t0, t1


def _side_pieces(y, h, a, b, p, q, lo, hi, tol):
    """The pieces of the box's sides each cell owns, as counter-clockwise edges (cell, start, end).

    On a side, a cell owns an interval whose ends are facet end points on that side or corners it
    owns; so its piece runs from the least to the greatest of those points (min/max per cell).
    """
    k = len(y)
    corners = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])
    score = corners @ y.T + h  # (4, K)
    owners = [np.flatnonzero(s >= s.max() - tol * (1 + abs(s.max()))) for s in score]  # ties: all of them
    cells, starts, ends = [], [], []
    for side, (axis, bound) in enumerate(_SIDES):
        value = lo if bound == "low" else hi
        along = 1 - axis
        ids, pos = [], []
        for end in (p, q):
            on = np.abs(end[:, axis] - value) <= tol
            ids += [a[on], b[on]]
            pos += [end[on, along], end[on, along]]
        c0, c1 = corners[side], corners[(side + 1) % 4]  # the side runs c0 -> c1 counter-clockwise
        for corner in (side, (side + 1) % 4):
            ids.append(owners[corner])
            pos.append(np.full(len(owners[corner]), corners[corner, along]))
        ids, pos = np.concatenate(ids), np.concatenate(pos)
        least, most = np.full(k, np.inf), np.full(k, -np.inf)
        np.minimum.at(least, ids, pos)
        np.maximum.at(most, ids, pos)
        has = np.flatnonzero(most > least)
        ascending = c1[along] > c0[along]
        first, last = (least[has], most[has]) if ascending else (most[has], least[has])
        s, e = np.empty((len(has), 2)), np.empty((len(has), 2))
        s[:, axis], e[:, axis] = value, value
        s[:, along], e[:, along] = first, last
        cells.append(has)
        starts.append(s)
        ends.append(e)
    return np.concatenate(cells), np.concatenate(starts), np.concatenate(ends)


def _owen_wedge(hd, s):
    """Standard-normal measure of the right triangle (0, f, f + s u), f the foot at distance hd > 0
    of a line with unit direction u; odd in s.  (Owen: T(h, a) = P(X > h, 0 < Y < a X).)"""
    return np.arctan2(s, hd) / (2 * np.pi) - special.owens_t(hd, s / hd)


def _normal_triangles(p, q):
    """Signed standard-normal measure of the triangles (0, p, q) (positive counter-clockwise)."""
    d = q - p
    length = _norm(d)
    u = d / np.maximum(length, 1e-300)[:, None]
    hd = p[:, 0] * u[:, 1] - p[:, 1] * u[:, 0]  # distance of the line along its right normal
    sp = _dot(p, u)
    h = np.maximum(np.abs(hd), 1e-12)  # the triangle's measure -> 0 with hd; no 0/0
    out = np.sign(hd) * (_owen_wedge(h, sp + length) - _owen_wedge(h, sp))
    return np.where(length > 0, out, 0.0)


def _normal_segments(p, q):
    """Standard-normal density integrated along the segments p -> q."""
    d = q - p
    length = _norm(d)
    u = d / np.maximum(length, 1e-300)[:, None]
    hd = p[:, 0] * u[:, 1] - p[:, 1] * u[:, 0]
    sp = _dot(p, u)
    sq = sp + length
    # Phi(sq) - Phi(sp) without cancellation in either tail
    upper = np.where(sp > 0, special.ndtr(-sp) - special.ndtr(-sq), special.ndtr(sq) - special.ndtr(sp))
    return np.exp(-0.5 * hd * hd) / np.sqrt(2 * np.pi) * upper


def laguerre_cells(y: np.ndarray, h: np.ndarray, density: str = "uniform", near: Cells | None = None,
                   repair_only: bool = False) -> Cells:
    """The exact cells of ``argmax_i <x, y_i> + h_i`` under ``density`` (see the module docstring).

    ``y`` (K, 2) distinct targets, ``h`` (K,) heights, both float64.  Empty cells get mass 0.
    ``near``: the cells of the same targets at nearby heights, whose triangulation is repaired by flips
    (:mod:`otgen.ot.triangulation`; Qhull when flips cannot reach the new one, except that with
    ``repair_only`` flips that get stuck, the sign of an emptied cell, raise
    :class:`~otgen.ot.triangulation.NotRepairable`).
    Raises :class:`DegenerateTargets` when the lifted points have no 3-D hull.
    """
    lo, hi = _box(density)
    y = np.asarray(y, np.float64)
    h = np.asarray(h, np.float64)
    if y.ndim != 2 or y.shape[1] != 2 or h.shape != (len(y),):
        raise ValueError(f"need y of shape (K, 2) and h of shape (K,), got {y.shape} and {h.shape}")
    k = len(y)
    tr = None
    if near is not None and near.triangulation is not None and len(near.mass) == k:
        tr, why = triangulation.update(near.triangulation, y, h)
        if repair_only and why == "stuck":
            raise triangulation.NotRepairable("no flip reaches the triangulation for these heights (a cell emptied)")
    flipped = tr is not None
    tr = triangulation.from_hull(y, h) if tr is None else tr
    a, b, p, d, tmax = _facets(y, h, tr)
    t0, t1 = _clip(p, d, tmax, lo, hi)
    tol = 1e-12 * (hi - lo)
    keep = t1 - t0 > 0
    a, b = a[keep], b[keep]
    p0 = p[keep] + t0[keep, None] * d[keep]
    p1 = p[keep] + t1[keep, None] * d[keep]
    # Snap end points the clip put on a side exactly onto it (rounding in t0 * d).
    for end in (p0, p1):
        np.copyto(end, np.where(np.abs(end - lo) <= tol, lo, np.where(np.abs(end - hi) <= tol, hi, end)))
    # Orient each facet with cell a on its left: a's side is the direction y_a - y_b.
    flip = _dot(_rot(p1 - p0), y[a] - y[b]) < 0
    pa = np.where(flip[:, None], p1, p0)
    qa = np.where(flip[:, None], p0, p1)
    sc, ss, se = _side_pieces(y, h, a, b, p0, p1, lo, hi, tol)
    cell = np.concatenate([a, b, sc])
    start = np.concatenate([pa, qa, ss])
    end = np.concatenate([qa, pa, se])
    outward = np.stack([end[:, 1] - start[:, 1], start[:, 0] - end[:, 0]], axis=1)  # |edge| x outer normal
    if density == "uniform":
        o = y[cell]  # around each cell's own target the sums stay O(cell size)
        ps, pe = start - o, end - o
        tri = 0.5 * (ps[:, 0] * pe[:, 1] - ps[:, 1] * pe[:, 0])
        # int_P (x - o) dx = oint |x - o|^2 / 2 n ds; on a segment |x - o|^2 averages (|p|^2 + p.q + |q|^2) / 3
        quad = (_dot(ps, ps) + _dot(ps, pe) + _dot(pe, pe)) / 6.0
        first = outward * quad[:, None] + tri[:, None] * o
        facet_mass = _norm(p1 - p0)
    else:
        # one Owen's T evaluation per facet: seen from cell b it is the same triangle reversed
        tri_f, tri_s = _normal_triangles(pa, qa), _normal_triangles(ss, se)
        facet_mass, seg_s = _normal_segments(pa, qa), _normal_segments(ss, se)
        tri = np.concatenate([tri_f, -tri_f, tri_s])
        # x phi(x) = -grad phi, so int_P x phi = -oint phi n ds
        length = _norm(outward)
        seg = np.concatenate([facet_mass, facet_mass, seg_s])
        first = -outward / np.maximum(length, 1e-300)[:, None] * seg[:, None]
    mass = np.bincount(cell, weights=tri, minlength=k)
    moment = np.stack([np.bincount(cell, weights=first[:, 0], minlength=k),
                       np.bincount(cell, weights=first[:, 1], minlength=k)], axis=1)
    return Cells(mass, moment, a, b, facet_mass, p0, p1, triangulation=tr, flipped=flipped)
