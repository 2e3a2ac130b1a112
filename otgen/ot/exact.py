"""Exact semi-discrete OT in 2-D and 3-D: damped Newton on exact Laguerre cells.

Where the cells can be computed exactly (:mod:`otgen.ot.laguerre`: d = 2, a uniform box or a
Gaussian source; :mod:`otgen.ot.laguerre3`: d = 3, a uniform box) there is no Monte-Carlo noise to fight: the masses ``w(h)`` and the Hessian (the
graph Laplacian with weights ``mu(facet_ij) / |y_i - y_j|``) are exact, and the damped Newton method
of Kitagawa, Mérigot and Thibert (JEMS 2019) converges globally and, near the solution, quadratically:

    solve L(h) d = nu - w(h) (inexactly: see _forcing);  take the largest t in {t0, t0/2, ...} with
    min_i w_i(h + t d) >= eps  and  |w(h + t d) - nu|_1 <= (1 - t/2) |w(h) - nu|_1,

``eps = min(min_i w_i(h_0), min_i nu_i) / 2``, ``t0`` twice the last step taken (at most 1).  Its start is the Voronoi diagram of the targets
brought inside the source's support (a translation and one scale leave the cells unchanged), where
every cell has positive mass.

Frames: an axis-aligned box ``low + D z`` (``z`` in the unit square or cube) or Gaussian ``mean + D z``
(``z`` standard normal) turns ``<x, y_i> + h_i`` into ``<z, D y_i> + h_i + <low or mean, y_i>``, so
the problem is solved for targets ``D y`` under the standard density and the heights moved back.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
from scipy.sparse import coo_matrix, diags
from scipy.sparse.linalg import LinearOperator, cg, splu

from otgen.ot.laguerre import DegenerateTargets, laguerre_cells
from otgen.ot.laguerre3 import laguerre_cells3
from otgen.ot.triangulation import NotRepairable
from otgen.ot.measures import Gaussian, UniformBox
from otgen.ot.output import StopReason

__all__ = ["EXACT_TOL", "ExactResult", "why_not_exact", "solve_exact", "standard_frame", "exact_masses", "cells_of"]

# The exact path runs to L1 <= min(tol, EXACT_TOL): in its quadratic regime a further digit costs
# a fraction of one Newton step, and a user of a 2-D map gets masses right to float64 rounding.
EXACT_TOL = 1e-9
MAX_HALVINGS = 30
T_GROWTH = 2.0  # the first step length tried: 2x the last one taken (capped at 1; 4x: 1.1-1.4x more time)


class ExactResult(NamedTuple):
    """Heights (user frame, float64) and the per-step exact errors of a Newton solve."""

    h: np.ndarray
    converged: bool
    stop_reason: str  # a StopReason value (plain str): "converged", "max_steps", "time_budget", "stalled", "callback"
    l1: tuple[float, ...]  # exact ||w - nu||_1 at each iterate
    chi2: tuple[float, ...]
    max_rel: tuple[float, ...]
    energy: tuple[float, ...]  # E(h) = int u_h dmu - <nu, h>, exact, user frame
    step_size: tuple[float, ...]  # the line search's t after each iterate (0: none found)
    wall_time: tuple[float, ...]
    notes: tuple[str, ...]


def why_not_exact(source, targets) -> str | None:
    """Why the exact path does not apply to this problem (None: it does)."""
    y = np.asarray(targets, np.float64)
    d = y.shape[-1] if y.ndim == 2 else None
    if d not in (2, 3):
        return f"the exact path is for d = 2 or 3 (targets have d = {d})"
    if d == 3 and not isinstance(source, UniformBox):
        return "the exact path in 3-D needs a UniformBox source (Gaussian cells are exact in 2-D only)"
    if not isinstance(source, (UniformBox, Gaussian)):
        return "the exact path needs a UniformBox or Gaussian source (densities it can integrate)"
    if len(y) < d + 2:
        return f"the exact path needs at least {d + 2} targets in {d}-D (got {len(y)})"
    centred = y - y.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    if s[-1] <= 1e-9 * s[0]:
        return ("the targets are collinear (their lifted points span no 3-D hull)" if d == 2 else
                "the targets are coplanar (their lifted points span no 4-D hull)")
    return None


def cells_of(y: np.ndarray, h: np.ndarray, density: str, last=None, repair_only: bool = False):
    """Exact cells in the standard frame, 2-D or 3-D (``last``: the previous iterate's cells, whose
    triangulation a 2-D computation repairs and whose mirror set a 3-D one starts from; ``repair_only``:
    in 2-D, raise NotRepairable instead of building a triangulation from scratch)."""
    if y.shape[1] == 2:
        return laguerre_cells(y, h, density, last, repair_only)
    if density != "uniform":
        raise ValueError(f"3-D exact cells are for the uniform density, not {density!r}")
    return laguerre_cells3(y, h, None if last is None else last.mirrors)


def standard_frame(source, targets) -> tuple[str, np.ndarray, np.ndarray]:
    """``(density, D y, offset)``: the problem in the standard frame; ``h_std = h + offset``."""
    y = np.asarray(targets, np.float64)
    if isinstance(source, UniformBox):
        lo, hi = np.asarray(source.low), np.asarray(source.high)
        return "uniform", y * (hi - lo), y @ lo
    if isinstance(source, Gaussian):
        return "normal", y * np.asarray(source.std), y @ np.asarray(source.mean)
    raise ValueError(f"no standard frame for source {source!r}")


def _inside(y: np.ndarray, density: str) -> tuple[np.ndarray, float, np.ndarray]:
    """Targets moved and scaled (one scale) to the middle of the density's support: ``(y', s, c)``,
    ``y' = (y - c) / s``, so that the cells of ``(y', h')`` are those of ``(y, s h')``."""
    if density == "uniform":
        lo, hi = y.min(axis=0), y.max(axis=0)
        s = float(np.max(hi - lo)) / 0.9
        c = 0.5 * (lo + hi) - 0.5 * s
        return (y - c) / s, s, c
    # Within radius 3 of the mean every Voronoi cell keeps a mass float64 can resolve, an outlier's too
    # (scaled by the RMS radius instead, a target 50 sigma out got a cell of mass ~1e-300).
    c = y.mean(axis=0)
    s = float(np.max(np.linalg.norm(y - c, axis=1))) / 3.0
    return (y - c) / s, s, c


CG_MAXITER = 25  # conjugate gradients preconditioned by an earlier factorisation: beyond this, refactor


def _forcing(rhs: np.ndarray) -> float:
    """The relative residual a Newton direction is solved to (inexact Newton: ~ the error itself keeps the
    convergence quadratic, Eisenstat & Walker).  Capped at 1e-6: at 1e-2 the damped steps on tight
    clusters with Dirichlet weights stalled (L1 0.74 after 100 steps); 1e-4 to 1e-8 ran alike."""
    return min(1e-6, 0.1 * float(np.abs(rhs).sum()))


def _newton_direction(cells, y, rhs, pinned: int, factor=None):
    """Solve L d = rhs (L: the facet-weighted graph Laplacian, singular along constants; rhs sums to
    0, so the system is consistent; d = 0 at ``pinned``) to the relative residual :func:`_forcing`;
    returns ``(d, factor)``, the factorisation to hand to the next call.

    2-D: conjugate gradients preconditioned by ``factor``, an earlier iterate's SuperLU factorisation
    (the Laplacian changes little between iterates: 4-22 iterations of a 13 ms solve at K = 10^5,
    against 0.68 s to factor); a new factorisation when there is none or CG needs more than
    CG_MAXITER.  3-D: the fill makes LU ~10x slower than CG with the diagonal as preconditioner
    (K = 10^4: 0.58 s against 0.06 s to a 1e-12 relative residual)."""
    k = len(y)
    e = y[cells.facet_i] - y[cells.facet_j]
    c = cells.facet_mass / np.sqrt(np.einsum("ij,ij->i", e, e))
    i, j = cells.facet_i, cells.facet_j
    diag = np.bincount(i, c, k) + np.bincount(j, c, k)
    lap = coo_matrix((np.concatenate([-c, -c, diag]), (np.concatenate([i, j, np.arange(k)]),
                                                        np.concatenate([j, i, np.arange(k)]))), shape=(k, k))
    rtol = _forcing(rhs)
    if y.shape[1] == 3 and diag.min() > 0:
        d, info = cg(lap.tocsr(), rhs - rhs.mean(), rtol=rtol, maxiter=20 * k, M=diags(1.0 / diag))
        if info == 0:
            return d - d[pinned], None
    keep = np.flatnonzero(np.arange(k) != pinned)
    pinned_lap = lap.tocsc()[keep][:, keep]
    d = np.zeros(k)
    if factor is not None:
        x, info = cg(pinned_lap.tocsr(), rhs[keep], rtol=rtol, maxiter=CG_MAXITER,
                     M=LinearOperator(pinned_lap.shape, matvec=factor.solve))
        if info == 0:
            d[keep] = x
            return d, factor
    # symmetric positive definite once pinned: SuperLU's symmetric mode, no pivoting, minimum degree on
    # A^T + A (at K = 10^5 faster than its default, COLAMD on the columns)
    factor = splu(pinned_lap, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))
    d[keep] = factor.solve(rhs[keep])
    return d, factor


class _Run(NamedTuple):
    h: np.ndarray
    cells: object
    converged: bool
    reason: str
    hist: dict
    notes: list


def _newton(y, nu, density, h0, *, tol, max_steps, time_budget=None, report=None, t_start=None) -> _Run:
    """The damped Newton iteration in the inside frame.  ``report(step, h, cells) -> stop?`` per iterate."""
    t_start = time.perf_counter() if t_start is None else t_start
    notes, h, cells = [], None, None
    if h0 is not None:
        cells = cells_of(y, h0, density)
        if cells.mass.min() > 0:
            h = h0
            notes.append("start: h0 given by the caller")
        else:
            notes.append(f"the start leaves {int(np.sum(cells.mass <= 0))} cell(s) empty: Voronoi start instead")
    if h is None:
        h = -0.5 * np.sum(y * y, axis=1)
        cells = cells_of(y, h, density)
        notes.append("start: Voronoi cells of the targets brought inside the source's support")
    w = cells.mass
    if w.min() <= 0:  # targets strictly inside the support have cells of positive mass: cannot happen
        raise FloatingPointError(f"exact OT: {int(np.sum(w <= 0))} empty cell(s) at the Voronoi start")
    eps = 0.5 * min(float(w.min()), float(nu.min()))
    pinned = int(np.argmax(nu))
    hist = {k: [] for k in ("l1", "chi2", "max_rel", "step", "time")}
    converged, reason, t_last = False, StopReason.MAX_STEPS, 1.0
    unrepairable, factor = 0, None
    for step in range(max_steps):
        g = w - nu
        err = float(np.abs(g).sum())
        hist["l1"].append(err)
        hist["chi2"].append(float(np.sum(g * g / nu)))
        hist["max_rel"].append(float(np.max(np.abs(g) / nu)))
        hist["time"].append(time.perf_counter() - t_start)
        if report is not None and report(step, h, cells):
            reason = StopReason.CALLBACK
            break
        if err <= tol:
            converged, reason = True, StopReason.CONVERGED
            break
        if step == max_steps - 1:
            break
        if time_budget is not None and hist["time"][-1] >= time_budget:
            reason = StopReason.TIME_BUDGET
            break
        d, factor = _newton_direction(cells, y, -g, pinned, factor)
        if not np.all(np.isfinite(d)):
            reason = StopReason.STALLED
            notes.append(f"step {step}: the Newton system gave a non-finite direction")
            break
        t = min(1.0, T_GROWTH * t_last)  # after a damped step, the next full step usually fails too
        for _ in range(MAX_HALVINGS):
            h_try = h + t * d
            try:
                # a trial point the previous triangulation cannot be flipped to has lost a cell (so far
                # always: it fails the test below); rejected without building its diagram
                cells_try = cells_of(y, h_try, density, cells, repair_only=True)
            except (NotRepairable, DegenerateTargets) as e:  # (or a flat lifted hull): a failed trial point
                unrepairable += isinstance(e, NotRepairable)
                t *= 0.5
                continue
            w_try = cells_try.mass
            if w_try.min() >= eps and np.abs(w_try - nu).sum() <= (1 - t / 2) * err:
                break
            t *= 0.5
        else:
            reason = StopReason.STALLED
            notes.append(f"step {step}: no step length down to 2^-{MAX_HALVINGS} met the Newton line search "
                         f"(L1 {err:.3g}; float64 rounding of the cell masses is the usual cause near 1e-13)")
            break
        hist["step"].append(t)
        t_last = t
        h, cells, w = h_try, cells_try, w_try
    hist["step"].extend([0.0] * (len(hist["l1"]) - len(hist["step"])))
    if unrepairable:
        notes.append(f"{unrepairable} line-search point(s) rejected because flips could not reach their "
                     f"triangulation from the last iterate's (a cell had emptied)")
    return _Run(h, cells, converged, reason, hist, notes)


def solve_exact(source, targets, weights, *, tol: float = EXACT_TOL, max_steps: int = 100,
                time_budget: float | None = None, h0=None, callback=None) -> ExactResult:
    """Damped Newton on exact cells (see the module docstring); heights in the user's frame.

    ``h0``: a start in the user's frame (used if every cell has mass there, else the Voronoi start).
    ``callback(step, h, masses)`` after each iterate (user frame); returning True stops.
    """
    t_start = time.perf_counter()
    density, y_std, offset = standard_frame(source, targets)
    y, s, c = _inside(y_std, density)
    dim = y.shape[1]
    mean_z = np.full(dim, 0.5) if density == "uniform" else np.zeros(dim)
    nu = np.asarray(weights, np.float64)
    nu = nu / nu.sum()  # float32 weights sum to 1 only to ~1e-7: that would be the L1 floor
    energies = []

    def to_user(h_inside):
        return s * h_inside - offset

    def report(step, h, cells):
        # E(h) = int u_h dmu - <nu, h> in the user's frame: s E' + <mean of z, c> + <nu, offset>
        inner = float(np.sum(cells.moment * y) + np.sum(h * (cells.mass - nu)))
        energies.append(s * inner + float(mean_z @ c) + float(nu @ offset))
        return callback is not None and callback(step, to_user(h), cells.mass)

    start = None if h0 is None else (np.asarray(h0, np.float64) + offset) / s
    run = _newton(y, nu, density, start, tol=tol, max_steps=max_steps, time_budget=time_budget, report=report,
                  t_start=t_start)
    notes = [f"exact power-diagram path (d = {dim}, {density} source in its standard frame): Qhull lower hull, "
             f"cells clipped exactly{' by mirror sites' if dim == 3 else ''}, damped Newton "
             f"(Kitagawa-Merigot-Thibert); errors exact to float64 rounding"]
    h_user = to_user(run.h)
    h_user = h_user - h_user.mean()
    hist = run.hist
    return ExactResult(h_user, run.converged, str(run.reason), tuple(hist["l1"]), tuple(hist["chi2"]),
                       tuple(hist["max_rel"]), tuple(energies), tuple(hist["step"]), tuple(hist["time"]),
                       tuple(notes + run.notes))


def exact_masses(source, targets, h) -> np.ndarray:
    """Exact cell masses (K,) of ``argmax_i <x, y_i> + h_i`` under a 2-D box or Gaussian ``source`` or a
    3-D box (float64; an independent check of any solver's heights)."""
    density, y_std, offset = standard_frame(source, targets)
    h_std = np.asarray(h, np.float64) + offset
    if y_std.shape[1] == 3:  # the 3-D cells want the targets inside the cube: same cells, scaled heights
        y_in, s, _ = _inside(y_std, density)  # the cells of (y', h / s) are those of (y, h)
        return laguerre_cells3(y_in, h_std / s).mass
    return laguerre_cells(y_std, h_std, density).mass
