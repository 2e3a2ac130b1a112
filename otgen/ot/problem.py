"""A semi-discrete OT problem checked and converted: targets (K, d) float32, weights (K,) summing to 1
(:func:`validate_problem`), and :class:`SemiDiscreteProblem`: the problem in the solver's frame with
its Monte-Carlo estimates, on which :class:`~otgen.ot.solver.SemiDiscreteOT` runs its ``fit``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from otgen.ot import scores, sharding
from otgen.ot.estimate import draw_samples, estimate
from otgen.ot.measures import as_measure, moments
from otgen.ot.optim import Estimate, chi2_noise_at

__all__ = ["validate_problem", "SemiDiscreteProblem"]

_WEIGHT_SUM_TOL = 1e-5


def _find_duplicate_rows(y: np.ndarray) -> tuple[int, int] | None:
    """First pair of identical rows, or None.

    Rows are hashed by a random projection (O(K) extra memory, no sorted copy of
    the targets); only rows with equal hashes are compared exactly.
    """
    proj = np.random.default_rng(0).standard_normal(y.shape[1])
    key = y @ proj.astype(y.dtype)  # no float64 copy of the targets
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order[1:]] == key[order[:-1]])
    for j in same:
        a, b = sorted((int(order[j]), int(order[j + 1])))
        if np.array_equal(y[a], y[b]):
            return a, b
    # Groups of 3+ equal hashes: compare every pair inside a group (rare).
    for j in same:
        group = order[j:][key[order[j:]] == key[order[j]]]
        for u in range(len(group)):
            for v in range(u + 1, len(group)):
                if np.array_equal(y[group[u]], y[group[v]]):
                    return tuple(sorted((int(group[u]), int(group[v]))))
    return None


def validate_problem(source, targets, weights=None, *, normalize_weights: bool = False):
    """Check and convert ``(targets, weights)``; returns (measure, targets f32 (K, d), weights f32 (K,)).

    Raises ``ValueError`` naming the problem for: non-2-D or empty targets,
    NaN/inf, dimension mismatch with the source, duplicate target rows
    (rejected: merge them yourself, summing their weights), weights of the
    wrong shape, non-finite, non-positive, or not summing to 1 (unless
    ``normalize_weights=True``).
    """
    y = np.asarray(targets)
    if y.ndim != 2:
        raise ValueError(f"targets must be a 2-D array (K, d), got shape {y.shape}")
    if y.shape[0] == 0:
        raise ValueError("targets is empty (K = 0): need at least one target")
    if y.shape[1] == 0:
        raise ValueError("targets have dimension 0")
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"targets must be numeric, got dtype {y.dtype}")
    y = y.astype(np.float32, copy=False)
    if not np.all(np.isfinite(y)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(y), axis=1))[0])
        raise ValueError(f"targets contain NaN or inf (first at row {bad})")
    measure = as_measure(source, dim_hint=y.shape[1])
    if measure.dim != y.shape[1]:
        raise ValueError(f"dimension mismatch: source has dim {measure.dim} but targets have dim {y.shape[1]}")
    dup = _find_duplicate_rows(y)
    if dup is not None:
        raise ValueError(f"duplicate targets: rows {dup[0]} and {dup[1]} are identical; merge them "
                         "(summing their weights) before solving")
    k = y.shape[0]
    if weights is None:
        nu = np.full(k, 1.0 / k, np.float64)
    else:
        nu = np.asarray(weights, dtype=np.float64)
        if nu.shape != (k,):
            raise ValueError(f"weights must have shape ({k},) to match {k} targets, got {nu.shape}")
        if not np.all(np.isfinite(nu)):
            raise ValueError("weights contain NaN or inf")
        if np.any(nu < 0):
            raise ValueError(f"weights must be positive; found a negative weight at index {int(np.argmin(nu))}")
        if np.any(nu == 0):
            raise ValueError(f"weights must be positive; found a zero weight at index {int(np.argmin(nu))} "
                             "(drop that target instead)")
        total = nu.sum()
        if normalize_weights:
            nu = nu / total
        elif abs(total - 1.0) > _WEIGHT_SUM_TOL:
            raise ValueError(f"weights sum to {total:.8g}, not 1; pass normalize_weights=True to rescale them")
    return measure, jnp.asarray(y), jnp.asarray(nu, jnp.float32)


class SemiDiscreteProblem:
    """A checked semi-discrete OT problem in the solver's frame, and its Monte-Carlo estimates
    (:mod:`otgen.ot.estimate`); :class:`~otgen.ot.solver.SemiDiscreteOT` adds the starts and ``fit``.

    The solver works on targets moved to the source's location and spread,
    ``y' = (y - c) / s`` (the weighted mean and RMS radius of the targets matched to the
    source's): the cells of ``(y', h / s)`` are those of ``(y, h)``, and in this frame
    the scores are O(1) whatever the units of the targets.  Heights going in and out
    (``h0``, ``initial_h``, ``estimate``, the returned map) are in the user's frame.
    """

    def __init__(self, source, targets, weights=None, *, normalize_weights: bool = False,
                 block_size: int | None = None, chunk_size: int | None = None, mesh=None, normalise: bool = True):
        self.source, self.targets, self.weights = validate_problem(
            source, targets, weights, normalize_weights=normalize_weights)
        k, d = self.targets.shape
        self.block_size = scores.default_block_size(k, d) if block_size is None else int(block_size)
        self.chunk_size = scores.default_chunk_size(1 << 30, d) if chunk_size is None else int(chunk_size)
        if self.block_size < 1 or self.chunk_size < 1:
            raise ValueError("block_size and chunk_size must be positive")
        # Samples per facet-area Hessian estimate (and the default initial sample
        # size): ~256 per target, so that most facets see a few samples in the band.
        self.hessian_samples = 1 << int(np.clip(math.ceil(math.log2(256 * k)), 16, 21))
        src_mean, src_rms = moments(self.source)
        y = np.asarray(self.targets, np.float64)
        nu = np.asarray(self.weights, np.float64)
        t_mean = nu @ y
        t_rms = float(np.sqrt(nu @ np.sum((y - t_mean) ** 2, axis=1)))
        self.scale = t_rms / src_rms if t_rms > 0 and normalise else 1.0
        self.center = t_mean - self.scale * src_mean if normalise else np.zeros(d)
        self._src_mean = src_mean
        # The solver's frame (without normalisation it is the user's: no second copy of the targets).
        self._y = jnp.asarray((y - self.center) / self.scale, jnp.float32) if normalise else self.targets
        self._blocks = scores.block_targets(self._y, jnp.zeros(k, jnp.float32), self.block_size)
        self.mesh = mesh
        self._shards = 1
        if mesh is not None:
            self._shards, _ = sharding.check_mesh(mesh)
            self._blocks = sharding.shard_blocks(self._blocks, mesh)

    @property
    def num_targets(self) -> int:
        return int(self.targets.shape[0])

    @property
    def dim(self) -> int:
        return int(self.targets.shape[1])

    def _sampling(self, wanted: str) -> str:
        if wanted in ("rqmc", "sobol") and not hasattr(self.source, "qmc_sample"):
            return "iid"
        return wanted

    # -- estimates ------------------------------------------------------------
    def _estimate(self, key, h, num_samples: int, *, sampling: str = "rqmc", hessian: bool = False,
                  band: float = 0.05) -> Estimate:
        """Estimate in the solver's frame (``h`` and the result's energy and Hessian)."""
        sampling = self._sampling(sampling)
        half = max(1, int(num_samples) // 2)
        batch = min(max(1, half // self._shards), 1 << 14)
        batch = max(self.chunk_size, batch - batch % self.chunk_size) if batch >= self.chunk_size else batch
        n_batches = max(1, math.ceil(half / batch))
        # The facet-area Hessian uses every sample up to 2^22 (its per-sample records cost 12 bytes each):
        # a larger sample, asked for after a failed line search, also sharpens the Newton direction.
        hess_n = max(self.hessian_samples, min(2 * half, 1 << 22))
        hess_batches = min(n_batches, max(1, hess_n // (2 * batch))) if hessian else 0
        if hessian:  # a whole number of Hessian batches per sample shard
            hess_batches = max(self._shards, hess_batches - hess_batches % self._shards)
        n_batches = max(n_batches, hess_batches)
        est = estimate(self._blocks, self.weights, h, key, n_batches, source=self.source, sampling=sampling,
                        batch=batch, hess_batches=hess_batches, num_targets=self.num_targets,
                        chunk_size=min(self.chunk_size, batch), band=float(band), mesh=self.mesh)
        return est._replace(num_samples=2 * batch * n_batches)

    def estimate(self, key: jax.Array, h: jax.Array, num_samples: int, *, sampling: str = "rqmc",
                 hessian: bool = False, band: float = 0.05) -> Estimate:
        """Estimate w(h), its error and noise from ``num_samples`` source points (two halves).

        ``h`` and the returned energy and facet Hessian are in the user's frame.
        """
        h = jnp.asarray(h, jnp.float32)
        if h.shape != (self.num_targets,):
            raise ValueError(f"h must have shape ({self.num_targets},), got {h.shape}")
        est = self._estimate(key, h / self.scale, num_samples, sampling=sampling, hessian=hessian, band=band)
        s = self.scale  # score gaps scale by s
        edges = None if est.edges is None else (est.edges[0], est.edges[1], est.edges[2] / s, est.edges[3] * s)
        return est._replace(energy=self._user_energy(est.energy), edges=edges)

    def _noise_floor(self, metric: str, num_samples: int) -> float:
        """Monte-Carlo noise of the ``metric`` estimate at ``num_samples`` when the error is small:
        L1 (half the distance of two half-sample estimates) sqrt(2 / (pi N)) sum_i sqrt(nu_i);
        chi2 2 sqrt(K) / N."""
        nu = np.asarray(self.weights, np.float64)
        if metric == "chi2":
            return chi2_noise_at(0.0, np.count_nonzero(nu), num_samples)
        return math.sqrt(2.0 / (math.pi * num_samples)) * float(np.sum(np.sqrt(nu)))

    def _user_energy(self, energy):
        """The solver frame's energy E' in the user's frame: u_h(x) = s u'(x) + <x, c>, so
        E = s E' + <mean of the source, c>."""
        return self.scale * energy + float(self._src_mean @ self.center)

    def _capture_raise(self, key, h, idx, *, sampling: str = "rqmc", num_samples: int = 1 << 16) -> jax.Array:
        """For cells ``idx``: how far to raise each height alone for the cell to take its mass nu_i.

        On ``num_samples`` source points, cell i would win sample x once h_i rises by
        u_h(x) - <x, y_i> - h_i; the raise is the ceil(nu_i N)-th smallest of these gaps.
        """
        idx = jnp.asarray(idx, jnp.int32)
        x = draw_samples(self.source, self._sampling(sampling), key, int(num_samples), jnp.uint32(0))
        blocks = (scores.with_heights(self._blocks, h) if self.mesh is None
                  else scores.block_targets(self._y, h, self.block_size))
        u = scores.max_and_cells(x, blocks, chunk_size=self.chunk_size)[0]
        q = jnp.clip(jnp.ceil(self.weights[idx] * x.shape[0]).astype(jnp.int32), 1, x.shape[0]) - 1
        out = []
        for j in range(0, idx.shape[0], 256):  # (N, 256) gap matrices at a time
            sel = idx[j:j + 256]
            gaps = jnp.sort(u[:, None] - (x @ self._y[sel].T + h[sel]), axis=0)
            out.append(gaps[q[j:j + 256], jnp.arange(sel.shape[0])])
        return jnp.concatenate(out)

    def _score_gap(self, key, h, num_samples: int = 1 << 12) -> float:
        """Median score gap between each sample's best and second-best cell (solver frame): how far,
        in height, a typical sample lies from the nearest facet."""
        x = self.source.sample(key, num_samples)
        s1, _, s2, _ = scores.top2_cells(x, scores.with_heights(self._blocks, h), chunk_size=min(
            self.chunk_size, num_samples))
        return float(jnp.median(s1 - s2))
