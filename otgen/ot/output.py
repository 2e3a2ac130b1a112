"""What a finished fit reports: :class:`Diagnostics`, the stop reasons, and the verdict on convergence.

:meth:`otgen.ot.solver.SemiDiscreteOT.fit` records its fit in a :class:`Diagnostics` (carried by the
returned :class:`~otgen.ot.brenier.BrenierMap` and saved with it), grouped by what each part is about:
:class:`Convergence` (did the stopping test pass, why the fit stopped, which step was returned),
:class:`History` (per step: the estimated errors, their noise, energy, step size, samples, time),
:class:`Checks` (checks of a point other than the iterate on fresh samples) and the ``notes``.
The fit then hands the map to :func:`verdict`, which warns (:class:`NotConvergedWarning`) or raises
(:class:`NotConvergedError`) when the stopping test did not pass.
"""

from __future__ import annotations

import warnings
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from otgen.ot.brenier import BrenierMap

__all__ = ["Diagnostics", "Convergence", "History", "Checks", "StopReason", "NotConvergedWarning",
           "NotConvergedError", "verdict"]


class StopReason(StrEnum):
    """Why a fit stopped.  ``Diagnostics.convergence.stop_reason`` (and so saved maps and
    ``as_metrics``) holds the plain string value."""

    CONVERGED = "converged"
    MAX_STEPS = "max_steps"
    TIME_BUDGET = "time_budget"
    NOISE_FLOOR = "noise_floor"
    STALLED = "stalled"
    CALLBACK = "callback"


class Convergence(NamedTuple):
    """The verdict of a fit.

    ``converged``: the optimizer's stopping test passed at step ``best_step`` (the returned
    heights); otherwise ``best_step`` is the step of lowest estimated error (-1: none).
    ``stop_reason``: a :class:`StopReason` value, stored as the plain string ("converged",
    "max_steps", "time_budget", "noise_floor", "stalled" or "callback"); ``tol``: the tolerance
    asked for; ``metric``: what ``tol`` bounds ("l1" or "chi2"); ``optimizer``: its name.
    """

    converged: bool = False
    stop_reason: str = ""
    tol: float | None = None
    metric: str = "l1"
    optimizer: str = ""
    best_step: int = -1


class History(NamedTuple):
    """One entry per fit step (tuples, so the map stays hashable as static pytree data).

    ``l1``: estimated ||w - nu||_1 at the step's h (fresh samples); ``noise_l1``: the estimated
    Monte-Carlo noise of that estimate (half the L1 distance between two independent half-sample
    estimates); ``chi2``: the unbiased marginal chi-square error
    sum_i (w_a,i - nu_i)(w_b,i - nu_i) / nu_i of the two halves; ``noise_chi2``: its noise;
    ``max_rel``: max_i |w_i - nu_i| / nu_i; ``energy``: estimate of E(h) = E_mu[u_h] - <nu, h>;
    ``step_size``: the line-search step taken after the step's estimate (0: rejected);
    ``num_samples``: samples used at the step; ``wall_time``: seconds since the fit started.
    """

    l1: tuple[float, ...] = ()
    noise_l1: tuple[float, ...] = ()
    chi2: tuple[float, ...] = ()
    noise_chi2: tuple[float, ...] = ()
    max_rel: tuple[float, ...] = ()
    energy: tuple[float, ...] = ()
    step_size: tuple[float, ...] = ()
    num_samples: tuple[int, ...] = ()
    wall_time: tuple[float, ...] = ()


class Checks(NamedTuple):
    """Checks of a point other than the iterate (the averaged SGD's average) on fresh samples, one
    entry per check, made after fit step ``step``; the figures as in :class:`History`.
    ``best`` >= 0: the returned heights are that check's point (its figures are the returned
    heights' estimated error); -1: the returned heights are an iterate.
    """

    step: tuple[int, ...] = ()
    l1: tuple[float, ...] = ()
    noise_l1: tuple[float, ...] = ()
    chi2: tuple[float, ...] = ()
    noise_chi2: tuple[float, ...] = ()
    num_samples: tuple[int, ...] = ()
    wall_time: tuple[float, ...] = ()
    candidate: tuple[int, ...] = ()  # which of the optimizer's candidates (averaged SGD: its gamma's index)
    best: int = -1


# the flat field names of maps saved before the grouping -> (group, field)
_FLAT_NAMES = {
    **{k: ("convergence", k) for k in Convergence._fields},
    "l1_error": ("history", "l1"), "noise_l1": ("history", "noise_l1"), "chi2": ("history", "chi2"),
    "noise_chi2": ("history", "noise_chi2"), "max_rel_error": ("history", "max_rel"),
    "energy": ("history", "energy"), "step_size": ("history", "step_size"),
    "num_samples": ("history", "num_samples"), "wall_time": ("history", "wall_time"),
    "check_step": ("checks", "step"), "check_l1": ("checks", "l1"), "check_noise_l1": ("checks", "noise_l1"),
    "check_chi2": ("checks", "chi2"), "check_noise_chi2": ("checks", "noise_chi2"),
    "check_samples": ("checks", "num_samples"), "check_time": ("checks", "wall_time"),
    "best_check": ("checks", "best"),
}


def _group(cls, d: dict):
    """``cls`` from a dict of its fields (lists, as JSON has them, back to tuples; unknown keys ignored)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in cls._fields})


class Diagnostics(NamedTuple):
    """What a fit reports, grouped: ``convergence`` (:class:`Convergence`), ``history``
    (:class:`History`, per step), ``checks`` (:class:`Checks`) and ``notes`` (every fallback and
    safeguard that fired: start chosen, steps rejected...).  ``converged`` and ``stop_reason`` are
    shortcuts to ``convergence``'s."""

    convergence: Convergence = Convergence()
    history: History = History()
    checks: Checks = Checks()
    notes: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return self.convergence.converged

    @property
    def stop_reason(self) -> str:
        return self.convergence.stop_reason

    def _returned(self, field: str):
        """``field`` (of :class:`History` / :class:`Checks`) at the returned heights, or None."""
        c = self.checks.best
        if c >= 0:
            seq = getattr(self.checks, field)
            return seq[c] if c < len(seq) else None  # (maps saved before check_noise_l1 existed lack it)
        seq = getattr(self.history, field)
        return seq[self.convergence.best_step if self.convergence.best_step >= 0 else -1] if seq else None

    @property
    def final_l1(self) -> float:
        """Estimated L1 error of the returned heights (``nan`` for an empty history)."""
        v = self._returned("l1")
        return float("nan") if v is None else v

    @property
    def final_error(self) -> float:
        """The returned heights' estimated error in the fit's ``metric``."""
        v = self._returned("chi2" if self.convergence.metric == "chi2" else "l1")
        return float("nan") if v is None else v

    def as_metrics(self, prefix: str = "ot_") -> dict[str, Any]:
        """The fit's verdict for a ``metrics.json``: converged, the returned heights' estimated
        error and noise, chi2, steps, stop reason and every fallback note."""
        cv, hist = self.convergence, self.history
        seconds = max(hist.wall_time[-1:] + self.checks.wall_time[-1:], default=None)
        return {f"{prefix}converged": bool(cv.converged),
                f"{prefix}l1_error": self._returned("l1"),
                f"{prefix}noise_l1": self._returned("noise_l1"),
                f"{prefix}chi2": self._returned("chi2"),
                f"{prefix}noise_chi2": self._returned("noise_chi2"),
                f"{prefix}returned": "average" if self.checks.best >= 0 else "iterate",
                f"{prefix}metric": cv.metric, f"{prefix}optimizer": cv.optimizer, f"{prefix}tol": cv.tol,
                f"{prefix}steps": len(hist.l1),
                f"{prefix}seconds": seconds,
                f"{prefix}stop_reason": cv.stop_reason, f"{prefix}notes": list(self.notes)}

    def summary(self) -> str:
        """One line: "converged (L1 0.0081 <= tol 0.01, 7 steps)" or why not."""
        cv = self.convergence
        n, tol = len(self.history.l1), "?" if cv.tol is None else f"{cv.tol:g}"
        name = "chi2" if cv.metric == "chi2" else "L1"
        if self.checks.best >= 0:
            name += " of the average"
        if cv.converged:
            return f"converged ({name} {self.final_error:.4g} <= tol {tol}, {n} steps)"
        return (f"not converged ({name} {self.final_error:.4g} > tol {tol} after {n} steps; "
                f"stopped by {cv.stop_reason or 'unknown'})")

    def as_dict(self) -> dict[str, Any]:
        """The grouped form, JSON-ready (tuples as lists): {"convergence": {...}, "history": {...},
        "checks": {...}, "notes": [...]}."""
        def plain(group: NamedTuple) -> dict[str, Any]:
            return {k: list(v) if isinstance(v, tuple) else v for k, v in group._asdict().items()}
        return {"convergence": plain(self.convergence), "history": plain(self.history),
                "checks": plain(self.checks), "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict) -> "Diagnostics":
        """Read :meth:`as_dict`'s grouped form, or the flat form of maps saved before the grouping
        (``l1_error``, ``best_check``, ``check_l1``, ...); missing fields take their defaults."""
        if not any(k in d for k in ("convergence", "history", "checks")):
            groups: dict[str, dict] = {"convergence": {}, "history": {}, "checks": {}}
            for name, v in d.items():
                if name in _FLAT_NAMES:
                    group, field = _FLAT_NAMES[name]
                    groups[group][field] = v
            d = {**groups, "notes": d.get("notes", ())}
        return cls(_group(Convergence, d.get("convergence") or {}), _group(History, d.get("history") or {}),
                   _group(Checks, d.get("checks") or {}), tuple(d.get("notes") or ()))


class NotConvergedWarning(UserWarning):
    """``fit`` stopped before its stopping test passed (the message names the error reached)."""


class NotConvergedError(RuntimeError):
    """Raised by ``fit(..., strict=True)`` when the stopping test did not pass."""

    def __init__(self, message: str, bmap: BrenierMap):
        super().__init__(message)
        self.bmap = bmap  # the best map found, for inspection


def verdict(bmap: BrenierMap, strict: bool, warn: bool, stacklevel: int) -> BrenierMap:
    """``bmap`` if its fit converged; otherwise raise :class:`NotConvergedError` (``strict``) or warn
    (``warn``) with the fit's summary.  ``stacklevel`` points the warning at the caller of ``fit``."""
    diag = bmap.diagnostics
    if not diag.converged:
        msg = f"semi-discrete OT {diag.summary()}"
        if strict:
            raise NotConvergedError(msg, bmap)
        if warn:
            warnings.warn(msg, NotConvergedWarning, stacklevel=stacklevel)
    return bmap
