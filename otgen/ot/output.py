"""What a finished fit reports: :class:`Diagnostics`, the stop reasons, and the verdict on convergence.

:meth:`otgen.ot.solver.SemiDiscreteOT.fit` records its per-step history in a :class:`Diagnostics`
(carried by the returned :class:`~otgen.ot.brenier.BrenierMap` and saved with it), then hands the
map to :func:`verdict`, which warns (:class:`NotConvergedWarning`) or raises
(:class:`NotConvergedError`) when the stopping test did not pass.
"""

from __future__ import annotations

import warnings
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from otgen.ot.brenier import BrenierMap

__all__ = ["Diagnostics", "StopReason", "NotConvergedWarning", "NotConvergedError", "verdict"]


class StopReason(StrEnum):
    """Why a fit stopped.  ``Diagnostics.stop_reason`` (and so saved maps and ``as_metrics``) holds
    the plain string value."""

    CONVERGED = "converged"
    MAX_STEPS = "max_steps"
    TIME_BUDGET = "time_budget"
    NOISE_FLOOR = "noise_floor"
    STALLED = "stalled"
    CALLBACK = "callback"


class Diagnostics(NamedTuple):
    """Per-step history of a fit (tuples, so the map stays hashable as static pytree data).

    ``l1_error``: estimated ||w - nu||_1 at the step's h (fresh samples); ``noise_l1``: the
    estimated Monte-Carlo noise of that estimate (half the L1 distance between
    two independent half-sample estimates); ``chi2``: the unbiased marginal chi-square
    error sum_i (w_a,i - nu_i)(w_b,i - nu_i) / nu_i of the two halves; ``max_rel_error``:
    max_i |w_i - nu_i| / nu_i; ``energy``: estimate of E(h) = E_mu[u_h] - <nu, h>;
    ``wall_time``: seconds since the fit started; ``num_samples``: samples used at the step;
    ``step_size``: the line-search step taken after the step's estimate (0: rejected).
    ``converged``: the optimizer's stopping test passed at step ``best_step`` (the
    returned heights); otherwise ``best_step`` is the step of lowest estimated error.
    ``stop_reason``: a :class:`StopReason` value, stored as the plain string ("converged",
    "max_steps", "time_budget", "noise_floor", "stalled" or "callback");
    ``notes``: every fallback and safeguard that fired (start chosen, steps rejected...).
    ``metric``: what ``tol`` bounds ("l1" or "chi2"); ``noise_chi2``: the chi2 estimate's noise.
    ``check_*``: checks of a point other than the iterate (the averaged SGD's average) on fresh
    samples, made after step ``check_step``; ``best_check`` >= 0: the returned heights are that
    check's point (its figures are the returned heights' estimated error).
    """

    l1_error: tuple[float, ...] = ()
    noise_l1: tuple[float, ...] = ()
    max_rel_error: tuple[float, ...] = ()
    energy: tuple[float, ...] = ()
    wall_time: tuple[float, ...] = ()
    num_samples: tuple[int, ...] = ()
    converged: bool = False
    optimizer: str = ""
    chi2: tuple[float, ...] = ()
    step_size: tuple[float, ...] = ()
    best_step: int = -1
    stop_reason: str = ""
    tol: float | None = None
    notes: tuple[str, ...] = ()
    metric: str = "l1"
    noise_chi2: tuple[float, ...] = ()
    check_step: tuple[int, ...] = ()
    check_l1: tuple[float, ...] = ()
    check_noise_l1: tuple[float, ...] = ()
    check_chi2: tuple[float, ...] = ()
    check_noise_chi2: tuple[float, ...] = ()
    check_samples: tuple[int, ...] = ()
    check_time: tuple[float, ...] = ()
    best_check: int = -1

    @property
    def final_l1(self) -> float:
        """Estimated L1 error of the returned heights (``nan`` for an empty history)."""
        if self.best_check >= 0:
            return self.check_l1[self.best_check]
        if not self.l1_error:
            return float("nan")
        return self.l1_error[self.best_step if self.best_step >= 0 else -1]

    @property
    def final_error(self) -> float:
        """The returned heights' estimated error in the fit's ``metric``."""
        if self.best_check >= 0:
            return (self.check_chi2 if self.metric == "chi2" else self.check_l1)[self.best_check]
        seq = self.chi2 if self.metric == "chi2" else self.l1_error
        if not seq:
            return float("nan")
        return seq[self.best_step if self.best_step >= 0 else -1]

    def as_metrics(self, prefix: str = "ot_") -> dict[str, Any]:
        """The fit's verdict for a ``metrics.json``: converged, the returned heights' estimated
        error and noise, chi2, steps, stop reason and every fallback note."""
        i = self.best_step if self.best_step >= 0 else -1
        pick = (lambda seq: seq[i] if seq else None)
        c = self.best_check
        seconds = max(self.wall_time[-1:] + self.check_time[-1:], default=None)
        return {f"{prefix}converged": bool(self.converged),
                f"{prefix}l1_error": self.check_l1[c] if c >= 0 else pick(self.l1_error),
                # (maps saved before check_noise_l1 existed lack it)
                f"{prefix}noise_l1": (self.check_noise_l1[c] if c < len(self.check_noise_l1) else None) if c >= 0
                else pick(self.noise_l1),
                f"{prefix}chi2": self.check_chi2[c] if c >= 0 else pick(self.chi2),
                f"{prefix}noise_chi2": self.check_noise_chi2[c] if c >= 0 else pick(self.noise_chi2),
                f"{prefix}returned": "average" if c >= 0 else "iterate",
                f"{prefix}metric": self.metric, f"{prefix}optimizer": self.optimizer, f"{prefix}tol": self.tol, f"{prefix}steps": len(self.l1_error),
                f"{prefix}seconds": seconds,
                f"{prefix}stop_reason": self.stop_reason, f"{prefix}notes": list(self.notes)}

    def summary(self) -> str:
        """One line: "converged (L1 0.0081 <= tol 0.01, 7 steps)" or why not."""
        n, tol = len(self.l1_error), "?" if self.tol is None else f"{self.tol:g}"
        name = "chi2" if self.metric == "chi2" else "L1"
        if self.best_check >= 0:
            name += " of the average"
        if self.converged:
            return f"converged ({name} {self.final_error:.4g} <= tol {tol}, {n} steps)"
        return (f"not converged ({name} {self.final_error:.4g} > tol {tol} after {n} steps; "
                f"stopped by {self.stop_reason or 'unknown'})")

    def as_dict(self) -> dict[str, Any]:
        d = self._asdict()
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Diagnostics":
        fields = {}
        for name in cls._fields:
            if name not in d:
                continue
            v = d[name]
            fields[name] = tuple(v) if isinstance(v, list) else v
        return cls(**fields)


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
