"""The regular triangulation of 2-D targets with heights (the dual of their power diagram), kept up to date by flips.

The cells of ``argmax_i <x, y_i> + h_i`` are dual to the lower convex hull of the lifted points
``(y_i, -h_i)``, a triangulation of the targets' convex hull.  Qhull builds it from scratch in
O(K log K) (~0.6 s at K = 10^5).  Between two Newton iterates of the exact solver (and its line
search's trial points) only a few per cent of its edges change, so :func:`update` repairs the previous
triangulation with edge flips instead (Lawson's algorithm on the lifted points, vectorised: every round
flips a set of non-regular edges whose quadrilaterals share no triangle).  A locally regular
triangulation of every target over their convex hull is the lower hull, so the answer is Qhull's up
to ties (edges whose two sides are equally regular carry facets of zero length).  Flips cannot remove
a target whose cell has become empty, nor change which targets lie on the hull's boundary; then
:func:`update` says why it stopped and the caller builds the triangulation with Qhull (or, in a line
search, rejects the point: an emptied cell fails the search's test anyway).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.spatial import ConvexHull, QhullError

__all__ = ["Triangulation", "DegenerateTargets", "NotRepairable", "QHULL_OPTIONS", "from_hull", "update",
           "interior_edges", "MAX_ROUNDS"]

# scipy's hull default (Qt: triangulated output) plus Q5 Q8, which skip bookkeeping of outer planes and
# near-inside points that nothing here reads: 25-35% less time at K = 10^5
QHULL_OPTIONS = "Qt Q5 Q8"
MAX_ROUNDS = 400  # a repair needing more rounds is a large change: Qhull is as fast
_TIE = 1e-11  # an edge is flipped only when its violation exceeds this share of the determinant's scale


class DegenerateTargets(ValueError):
    """The lifted points span no 3-D hull (fewer than 4 targets, or all on one line)."""


class NotRepairable(RuntimeError):
    """Flips cannot reach the triangulation for these heights (see :func:`update`)."""


class Triangulation(NamedTuple):
    """Triangles ``tri`` (T, 3), counter-clockwise in the plane; ``nbr`` (T, 3) the triangle across the
    edge opposite each vertex (-1 on the convex hull's boundary).  ``flippable``: False when some
    boundary vertex lies on a straight piece of the boundary (its presence would need more than flips)
    or some triangle is too flat for its power centre to be computed from its three targets."""

    tri: np.ndarray
    nbr: np.ndarray
    flippable: bool
    centre: np.ndarray | None = None  # (T, 2) power centres, from Qhull's planes (None: compute from y, h)


def _orient(y, a, b, c):
    """Twice the signed area of the triangles (a, b, c) (positive counter-clockwise)."""
    u, v = y[b] - y[a], y[c] - y[a]
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def from_hull(y: np.ndarray, h: np.ndarray) -> Triangulation:
    """The lower hull of ``(y, -h)`` from Qhull, oriented, with its adjacency."""
    try:
        hull = ConvexHull(np.column_stack([y, -h]), qhull_options=QHULL_OPTIONS)
    except QhullError as e:
        raise DegenerateTargets(f"no 3-D hull of the lifted targets (fewer than 4, or collinear): {e}") from None
    eq = hull.equations
    lower = eq[:, 2] < 0
    index = np.full(len(lower) + 1, -1)  # hull facet -> lower triangle (-1: not lower; the extra slot for -1)
    index[np.flatnonzero(lower)] = np.arange(lower.sum())
    tri = hull.simplices[lower].copy()
    nbr = index[hull.neighbors[lower]]
    cw = _orient(y, tri[:, 0], tri[:, 1], tri[:, 2]) < 0
    tri[cw] = tri[cw][:, [0, 2, 1]]  # the neighbour opposite a vertex moves with it
    nbr[cw] = nbr[cw][:, [0, 2, 1]]
    # boundary vertices on a straight piece of the boundary: their presence depends on h along the
    # boundary, which no interior flip checks
    t, k = np.nonzero(nbr < 0)
    a, b = tri[t, (k + 1) % 3], tri[t, (k + 2) % 3]  # the boundary edge a -> b, counter-clockwise
    nxt = np.full(len(y), -1)
    nxt[a] = b
    turn = _orient(y, a, b, nxt[b])
    scale = np.abs(y[b] - y[a]).sum(axis=1) * np.abs(y[nxt[b]] - y[b]).sum(axis=1)
    # (Qt's triangles of a merged flat facet may have zero area: their centres need Qhull's planes)
    flippable = bool(np.all(turn > 1e-9 * scale)) and not _slivers(y, tri).any()
    centre = -eq[lower, :2] / eq[lower, 2:3]  # the plane n . (y, -h) + c = 0 gives x = -grad h
    return Triangulation(tri, nbr, flippable, centre)


def _slivers(y, tri):
    """Triangles too thin for their power centres to be computed from three points."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    size = np.abs(y[b] - y[a]).sum(axis=1) * np.abs(y[c] - y[a]).sum(axis=1)
    return _orient(y, a, b, c) <= 1e-12 * size


def interior_edges(nbr) -> tuple[np.ndarray, np.ndarray]:
    """Every interior edge once, as (triangle, slot) pairs from its lower-numbered triangle."""
    return np.nonzero(nbr > np.arange(len(nbr))[:, None])


def _slot(nbr, t, other):
    """The slot of each triangle ``t`` whose neighbour is ``other``."""
    return np.argmax(nbr[t] == other[:, None], axis=1)


def _edges(nbr, t):
    """The interior edges of triangles ``t`` as canonical (triangle, slot) pairs, the lower triangle first."""
    t = np.repeat(t, 3)
    k = np.tile(np.arange(3), len(t) // 3)
    t2 = nbr[t, k]
    inner = t2 >= 0
    t, k, t2 = t[inner], k[inner], t2[inner]
    swap = t2 < t
    k2 = _slot(nbr, t2, t)
    t, k = np.where(swap, t2, t), np.where(swap, k2, k)
    code = np.unique(t * 3 + k)
    return code // 3, code % 3


def update(prev: Triangulation, y: np.ndarray, h: np.ndarray, rng=None) -> tuple[Triangulation | None, str]:
    """The regular triangulation for heights ``h``, repaired from ``prev`` by flips, and ``""``; or None
    and why flips did not reach it: ``"stuck"`` (no non-regular edge can be flipped: a target's cell has
    emptied, so far always), ``"rounds"`` (more than MAX_ROUNDS), ``"slivers"`` (near-flat triangles,
    whose centres need Qhull's planes), ``"boundary"`` (``prev`` is not flippable)."""
    if not prev.flippable:
        return None, "boundary"
    rng = np.random.default_rng(0) if rng is None else rng
    tri, nbr = prev.tri.copy(), prev.nbr.copy()
    z = -h
    t, k = interior_edges(nbr)
    touched = np.zeros(len(tri), bool)
    for _ in range(MAX_ROUNDS):
        t2 = nbr[t, k]
        k2 = _slot(nbr, t2, t)
        a, b, c, d = tri[t, (k + 1) % 3], tri[t, (k + 2) % 3], tri[t, k], tri[t2, k2]
        # d below the plane through the lifted a, b, c (a, b, c counter-clockwise): the edge ab is not regular
        yd, zd = y[d], z[d]
        (px, py), (qx, qy), (rx, ry) = ((y[v] - yd).T for v in (a, b, c))
        pz, qz, rz = z[a] - zd, z[b] - zd, z[c] - zd
        m0 = px * (qy * rz - qz * ry)
        m1 = py * (qx * rz - qz * rx)
        m2 = pz * (qx * ry - qy * rx)
        det = m0 - m1 + m2
        bad = det > _TIE * (np.abs(m0) + np.abs(m1) + np.abs(m2))
        if not bad.any():
            if _slivers(y, tri[touched]).any():
                return None, "slivers"
            return Triangulation(tri, nbr, True), ""
        t, k, t2, k2, a, b, c, d = (v[bad] for v in (t, k, t2, k2, a, b, c, d))
        convex = (_orient(y, a, d, c) > 0) & (_orient(y, d, b, c) > 0)
        if not convex.any():
            return None, "stuck"  # a cell emptied (a target to remove) or a non-convex dead end
        # flips whose neighbourhoods (both triangles and their four outer neighbours) are disjoint
        na, nb = nbr[t, (k + 1) % 3], nbr[t, (k + 2) % 3]
        mb, ma = nbr[t2, (k2 + 1) % 3], nbr[t2, (k2 + 2) % 3]
        hood = np.stack([t, t2, na, nb, ma, mb], axis=1)
        prio = np.where(convex, rng.random(len(t)) + 1.0, 0.0)
        top = np.zeros(len(tri) + 1)  # slot -1 (no neighbour) lands in the last entry
        np.maximum.at(top, hood.ravel(), np.repeat(prio, 6))
        go = convex & np.all((top[hood] == prio[:, None]) | (hood < 0), axis=1)
        rest_t, rest_t2, rest_k = t[~go], t2[~go], k[~go]
        t, k, t2, k2, a, b, c, d, na, nb, ma, mb = (v[go] for v in (t, k, t2, k2, a, b, c, d, na, nb, ma, mb))
        # (c, a, b) + (d, b, a) -> (a, d, c) at t and (d, b, c) at t2
        tri[t] = np.stack([a, d, c], axis=1)
        nbr[t] = np.stack([t2, nb, mb], axis=1)
        tri[t2] = np.stack([d, b, c], axis=1)
        nbr[t2] = np.stack([na, t, ma], axis=1)
        for outer, old, new in ((na, t, t2), (mb, t2, t)):
            has = outer >= 0
            o = outer[has]
            nbr[o, _slot(nbr, o, old[has])] = new[has]
        # next round's candidates: the edges of the changed triangles (only they can have changed status)
        # and the non-regular edges left for a later round whose triangles did not change
        changed = np.zeros(len(tri), bool)
        changed[t] = changed[t2] = True
        touched |= changed
        left = ~changed[rest_t] & ~changed[rest_t2]
        t, k = _edges(nbr, np.flatnonzero(changed))
        code = np.union1d(t * 3 + k, rest_t[left] * 3 + rest_k[left])
        t, k = code // 3, code % 3
    return None, "rounds"
