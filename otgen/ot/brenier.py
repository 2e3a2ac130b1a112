"""BrenierMap: the fitted semi-discrete OT map ``x -> y_{argmax_i <x, y_i> + h_i}``.

A pytree whose leaves are ``targets`` (K, d), ``weights`` (K,) and ``h`` (K,);
the source measure and the fit diagnostics ride along as static data.  All
evaluations go through the tiled kernels of :mod:`otgen.ot.scores`, so a map
with a million targets is evaluated in bounded memory.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from otgen.checkpoint import CheckpointError, load_pytree, save_pytree
from otgen.ot import scores
from otgen.ot.measures import measure_from_description, sample_batches

__all__ = ["BrenierMap", "Diagnostics"]

_FORMAT = "otgen-brenier-map-v1"


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
    ``stop_reason``: "converged", "max_steps", "time_budget", "noise_floor" or "callback";
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


@jax.tree_util.register_pytree_node_class
class BrenierMap:
    """The semi-discrete Brenier map of a source measure onto weighted targets."""

    def __init__(self, targets, weights, h, source=None, diagnostics: Diagnostics | None = None,
                 block_size: int | None = None, chunk_size: int | None = None):
        self.targets = targets
        self.weights = weights
        self.h = h
        self.source = source
        self.diagnostics = Diagnostics() if diagnostics is None else diagnostics
        self.block_size = block_size
        self.chunk_size = chunk_size
        self._blocks = None  # (h, targets, padded blocks), built on first use; not part of the pytree

    # -- pytree protocol ----------------------------------------------------
    def tree_flatten(self):
        return (self.targets, self.weights, self.h), (self.source, self.diagnostics, self.block_size,
                                                      self.chunk_size)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)

    # -- properties -----------------------------------------------------------
    @property
    def num_targets(self) -> int:
        return int(self.targets.shape[0])

    @property
    def dim(self) -> int:
        return int(self.targets.shape[1])

    def __repr__(self) -> str:
        src = self.source.describe()["kind"] if self.source is not None else None
        return f"BrenierMap(K={self.num_targets}, d={self.dim}, source={src})"

    # -- evaluation -----------------------------------------------------------
    def _kw(self, block_size, chunk_size):
        return dict(block_size=block_size or self.block_size, chunk_size=chunk_size or self.chunk_size)

    def _target_blocks(self, block_size=None):
        """Targets padded into blocks, cached: a million-target map is not re-padded on every call."""
        if block_size is not None and block_size != self.block_size:
            return scores.block_targets(self.targets, self.h, block_size)
        if self._blocks is None or self._blocks[0] is not self.h or self._blocks[1] is not self.targets:
            self._blocks = (self.h, self.targets, scores.block_targets(self.targets, self.h, self.block_size))
        return self._blocks[2]

    def assign(self, x, *, block_size=None, chunk_size=None, mesh=None) -> jax.Array:
        """Cell index (n,) int32 of each row of ``x``; with a ``mesh`` (see
        :func:`otgen.ot.sharding.make_mesh`) samples and targets are sharded, same result."""
        if mesh is not None:
            from otgen.ot.sharding import assign_cells_sharded

            return assign_cells_sharded(x, self.targets, self.h, mesh, **self._kw(block_size, chunk_size))
        return scores.assign_cells(x, self._target_blocks(block_size), chunk_size=chunk_size or self.chunk_size)

    def __call__(self, x, *, block_size=None, chunk_size=None, mesh=None) -> jax.Array:
        """The (discontinuous) OT map: ``targets[assign(x)]``, shape (n, d)."""
        idx = self.assign(x, block_size=block_size, chunk_size=chunk_size, mesh=mesh)
        return jnp.take(jnp.asarray(self.targets), idx, axis=0)

    def potential(self, x, *, block_size=None, chunk_size=None) -> jax.Array:
        """Brenier potential u_h(x) = max_i <x, y_i> + h_i, shape (n,)."""
        return scores.max_and_cells(x, self._target_blocks(block_size), chunk_size=chunk_size or self.chunk_size)[0]

    def top_k(self, x, k: int, *, block_size=None, chunk_size=None):
        """The ``k`` best (scores, indices) of each row of ``x``; see :func:`scores.top_k_cells`."""
        return scores.top_k_cells(x, self.targets, self.h, k, **self._kw(block_size, chunk_size))

    def _require_source(self):
        if self.source is None:
            raise ValueError("this BrenierMap has no source measure (it was fitted with a user sampler "
                             "and reloaded); pass source= to BrenierMap.load")
        return self.source

    def cell_masses(self, key: jax.Array, n_samples: int, *, qmc: bool = False,
                    max_batch: int = 1 << 20) -> jax.Array:
        """Monte-Carlo estimate (K,) of the source mass of each cell, from ``n_samples`` fresh samples.

        Samples are drawn and counted in batches of at most ``max_batch``, so
        memory stays bounded for any ``n_samples``.  ``qmc=True`` uses a randomised
        Sobol net (box and Gaussian sources) instead of i.i.d. draws.
        """
        src = self._require_source()
        n_samples = int(n_samples)
        if n_samples < 1:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        blocks = self._target_blocks()
        counts = np.zeros(self.num_targets, np.int64)
        for x in sample_batches(src, key, n_samples, max_batch, qmc=qmc):
            counts += np.asarray(scores.cell_counts(x, blocks, chunk_size=self.chunk_size))
        return jnp.asarray(counts / n_samples, jnp.float32)

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Atomic, pickle-free ``.npz`` (via :mod:`otgen.checkpoint`)."""
        tree = {"targets": np.asarray(self.targets), "weights": np.asarray(self.weights), "h": np.asarray(self.h)}
        meta = {
            "format": _FORMAT,
            "source": None if self.source is None else self.source.describe(),
            "diagnostics": self.diagnostics.as_dict(),
            "block_size": self.block_size,
            "chunk_size": self.chunk_size,
        }
        save_pytree(path, tree, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, source=None) -> "BrenierMap":
        """Load a map written by :meth:`save`; raises ``CheckpointError`` (a ValueError) if corrupt or mismatched.

        ``source`` overrides the stored source description (needed for user samplers).
        """
        flat, meta = load_pytree(path)
        if meta.get("format") != _FORMAT:
            raise CheckpointError(f"{path} is not a saved BrenierMap (format {meta.get('format')!r})")
        want = {"['targets']", "['weights']", "['h']"}
        if set(flat) != want:
            raise CheckpointError(f"{path}: expected arrays {sorted(want)}, found {sorted(flat)}")
        y, w, h = (np.asarray(flat[k]) for k in ("['targets']", "['weights']", "['h']"))
        if y.ndim != 2 or w.shape != (y.shape[0],) or h.shape != (y.shape[0],):
            raise CheckpointError(f"{path}: inconsistent shapes targets {y.shape}, weights {w.shape}, h {h.shape}")
        if not (np.all(np.isfinite(y)) and np.all(np.isfinite(w)) and np.all(np.isfinite(h))):
            raise CheckpointError(f"{path}: stored arrays contain NaN or inf")
        if source is None and meta.get("source") is not None:
            source = measure_from_description(meta["source"])
        if source is not None and source.dim != y.shape[1]:
            raise CheckpointError(f"{path}: source dimension {source.dim} does not match targets dimension {y.shape[1]}")
        diag = Diagnostics.from_dict(meta.get("diagnostics") or {})
        # float64 heights (the exact 2-D path's) stay float64: float32 would cost their accuracy
        return cls(jnp.asarray(y), jnp.asarray(w), h if h.dtype == np.float64 else jnp.asarray(h), source, diag,
                   meta.get("block_size"), meta.get("chunk_size"))
