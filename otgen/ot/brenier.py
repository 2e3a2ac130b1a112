"""BrenierMap: the fitted semi-discrete OT map ``x -> y_{argmax_i <x, y_i> + h_i}``.

A pytree whose leaves are ``targets`` (K, d), ``weights`` (K,) and ``h`` (K,);
the source measure and the fit diagnostics (:class:`otgen.ot.output.Diagnostics`) ride
along as static data.  All evaluations go through the tiled kernels of
:mod:`otgen.ot.scores`, so a map with a million targets is evaluated in bounded memory.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from otgen.checkpoint import CheckpointError, load_pytree, save_pytree
from otgen.ot import scores
from otgen.ot.measures import measure_from_description, sample_batches
from otgen.ot.output import Diagnostics

__all__ = ["BrenierMap"]

_FORMAT = "otgen-brenier-map-v1"


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
