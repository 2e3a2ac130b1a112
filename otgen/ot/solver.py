"""SemiDiscreteOT: validate a problem, estimate the energy by tiled Monte Carlo, run an optimizer.

(~580 lines: validation, the jitted estimate and the fit loop with its stopping, time-budget and
diagnostics rules belong to one object; the optimizers are :mod:`otgen.ot.optim`.)

``SemiDiscreteOT(source, targets, weights).fit(key, tol=...)`` minimises
E(h) = E_mu[max_i <x, y_i> + h_i] - <nu, h> and returns a :class:`BrenierMap`.
The estimate of the gradient w(h) - nu is computed in batches of samples
(``lax.scan``) through the tiled kernels of :mod:`otgen.ot.scores`; each
estimate uses two independent half-samples so that its own noise is measured,
not guessed, and the stopping test accounts for it.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jax import lax
from jax.sharding import PartitionSpec as P

from otgen.ot import scores, sharding
from otgen.ot.brenier import BrenierMap, Diagnostics
from otgen.ot.exact import EXACT_TOL, solve_exact, why_not_exact
from otgen.ot.warm_start import discrete_ot_heights, multiscale_heights
from otgen.ot.measures import as_measure, moments
from otgen.ot.optim import (METRICS, Estimate, averaged_sgd, certify_samples, chi2_noise_at, damped_newton,
                             error_of, noise_of)

__all__ = ["SemiDiscreteOT", "validate_problem", "NotConvergedWarning", "NotConvergedError", "DISCRETE_MAX_K"]

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


def _draw(source, sampling: str, key, n: int, start):
    if sampling == "iid":
        return source.sample(jax.random.fold_in(key, start), n)
    if sampling == "rqmc":
        return source.qmc_sample(key, n, start=start)
    if sampling == "sobol":  # deterministic, unshifted (AE-OT baseline)
        return source.qmc_sample(None, n, start=start)
    raise ValueError(f"unknown sampling {sampling!r}")


def _accumulate(blocks: scores.TargetBlocks, key, n_batches, *, source, sampling, batch, hess_batches, num_targets,
                chunk_size, shards=1, sample_axis=None, target_axis=None):
    """Counts of both half-samples, sum of u_h, and per-sample (i1, i2, gap) for the Hessian batches.

    Global batch ``b`` always holds the same samples (sample indices ``b*batch ...``),
    whichever device draws it: with ``shards`` sample devices, shard ``s`` takes
    batches ``s, s + shards, ...``; histograms are then summed with ``psum``.
    """
    key_a, key_b = jax.random.split(key)
    n_batches = jnp.asarray(n_batches, jnp.uint32)
    shard = jnp.uint32(0) if sample_axis is None else lax.axis_index(sample_axis).astype(jnp.uint32)
    # "sobol": one fixed point set, the halves are consecutive index ranges.
    start_b = n_batches * batch if sampling == "sobol" else jnp.uint32(0)

    def draw(b):
        start = b * batch
        return (_draw(source, sampling, key_a, batch, start), _draw(source, sampling, key_b, batch, start + start_b))

    def hess_body(carry, j):
        counts_a, counts_b, sum_u = carry
        xa, xb = draw(j * shards + shard)
        ua, ia, va, ja = sharding.top2_cells(xa, blocks, chunk_size, target_axis)
        ub, ib, vb, jb = sharding.top2_cells(xb, blocks, chunk_size, target_axis)
        carry = (counts_a + jnp.bincount(ia, length=num_targets), counts_b + jnp.bincount(ib, length=num_targets),
                 sum_u + jnp.sum(ua) + jnp.sum(ub))
        return carry, (jnp.concatenate([ia, ib]), jnp.concatenate([ja, jb]), jnp.concatenate([ua - va, ub - vb]))

    def mass_body(j, carry):
        counts_a, counts_b, sum_u = carry
        xa, xb = draw(jnp.uint32(hess_batches) + j * shards + shard)
        ua, ia = sharding.argmax_cells(xa, blocks, chunk_size, target_axis)
        ub, ib = sharding.argmax_cells(xb, blocks, chunk_size, target_axis)
        return (counts_a + jnp.bincount(ia, length=num_targets), counts_b + jnp.bincount(ib, length=num_targets),
                sum_u + jnp.sum(ua) + jnp.sum(ub))

    zeros = jnp.zeros(num_targets, jnp.int32)
    carry = (zeros, zeros, jnp.float32(0.0))
    per_sample = None
    if hess_batches:
        carry, per_sample = lax.scan(hess_body, carry, jnp.arange(hess_batches // shards, dtype=jnp.uint32))
        per_sample = tuple(a.reshape(-1) for a in per_sample)
    remaining = n_batches - jnp.uint32(hess_batches)
    n_local = (remaining + jnp.uint32(shards - 1) - shard) // jnp.uint32(shards)
    counts_a, counts_b, sum_u = lax.fori_loop(jnp.uint32(0), n_local, mass_body, carry)
    if sample_axis is not None:
        counts_a, counts_b, sum_u = (lax.psum(a, sample_axis) for a in (counts_a, counts_b, sum_u))
    return counts_a, counts_b, sum_u, per_sample


@partial(jax.jit, static_argnames=("source", "sampling", "batch", "hess_batches", "num_targets", "chunk_size",
                                   "band", "mesh"))
def _estimate(blocks: scores.TargetBlocks, nu, h, key, n_batches, *, source, sampling, batch, hess_batches,
              num_targets, chunk_size, band, mesh=None):
    """Two independent half-samples of ``batch * n_batches`` points each; see :class:`Estimate`.

    ``n_batches`` is traced (growing the sample size does not recompile); the
    first ``hess_batches`` batches (static) also record each sample's two best
    cells and score gap for the facet-area Hessian.  With a ``mesh``, batches
    are spread over its sample axis and target blocks over its target axis.
    """
    blocks = scores.with_heights(blocks, h)
    kw = dict(source=source, sampling=sampling, batch=batch, hess_batches=hess_batches, num_targets=num_targets,
              chunk_size=chunk_size)
    if mesh is None:
        counts_a, counts_b, sum_u, per_sample = _accumulate(blocks, key, n_batches, **kw)
    else:
        shards = int(mesh.shape[sharding.SAMPLES])
        fn = partial(_accumulate, shards=shards, sample_axis=sharding.SAMPLES, target_axis=sharding.TARGETS, **kw)
        spec_blocks = scores.TargetBlocks(P(sharding.TARGETS), P(sharding.TARGETS), None)
        per_spec = (P(sharding.SAMPLES),) * 3 if hess_batches else None
        counts_a, counts_b, sum_u, per_sample = jax.shard_map(
            fn, mesh=mesh, in_specs=(spec_blocks, P(), P()), out_specs=(P(), P(), P(), per_spec),
            check_vma=False)(blocks, key, n_batches)
        if per_sample is not None:  # shard-major -> batch-major: the single-device order
            per_sample = tuple(a.reshape(shards, hess_batches // shards, -1).transpose(1, 0, 2).reshape(-1)
                               for a in per_sample)
    n_half = batch * n_batches
    w_a = counts_a.astype(jnp.float32) / n_half
    w_b = counts_b.astype(jnp.float32) / n_half
    w = 0.5 * (w_a + w_b)
    g = w - nu
    edges = None
    if per_sample is not None:
        i1, i2, gap = per_sample
        # The band is taken in distance to the facet, r = gap / |y_i - y_j|, not in score gap:
        # facets between far-apart targets then get their share of band samples too.
        y_flat = blocks.y.reshape(-1, blocks.y.shape[-1])
        dist = jnp.maximum(jnp.linalg.norm(y_flat[i1] - y_flat[i2], axis=1), 1e-30)
        r = gap / dist
        sub = min(gap.shape[0], 1 << 16)
        delta = jnp.maximum(jnp.quantile(r[:sub], band), 1e-12)
        median = jnp.quantile(gap[:sub], 0.5)
        c = jnp.where(r < delta, 1.0 / (2.0 * gap.shape[0] * delta * dist), 0.0).astype(jnp.float32)
        edges = (i1, i2, c, median)
    chi2 = jnp.sum((w_a - nu) * (w_b - nu) / nu)
    n_total = 2.0 * n_half
    return Estimate(
        masses=w,
        chi2=chi2,
        # Monte-Carlo standard error of the unbiased chi2 (independent half-samples, each cell's
        # count binomial): Var = 4 K / N^2 + 4 chi2 / N; conservative for RQMC
        noise_chi2=(2.0 / n_total) * jnp.sqrt(jnp.sum(nu > 0) + n_total * jnp.maximum(chi2, 0.0)),
        l1=jnp.sum(jnp.abs(g)),
        noise_l1=0.5 * jnp.sum(jnp.abs(w_a - w_b)),
        max_rel=jnp.max(jnp.abs(g) / nu),
        l2=jnp.sqrt(jnp.sum(g * g)),
        energy=sum_u / (2 * n_half) - jnp.dot(nu, h),
        num_empty=jnp.sum((counts_a + counts_b) == 0).astype(jnp.int32),
        edges=edges,
    )


class NotConvergedWarning(UserWarning):
    """``fit`` stopped before its stopping test passed (the message names the error reached)."""


class NotConvergedError(RuntimeError):
    """Raised by ``fit(..., strict=True)`` when the stopping test did not pass."""

    def __init__(self, message: str, bmap: BrenierMap):
        super().__init__(message)
        self.bmap = bmap  # the best map found, for inspection


# Above this many targets the default start is multiscale instead of one exact discrete OT problem
# (its 4K x K cost matrix and network simplex: ~6 s at K = 2,000, ~12 s at 3,000 on 2 cores).  Measured
# on 8 Gaussian clusters, K = 2,000: the discrete start begins at L1 0.24 and converges in 3 steps
# (15 s); the multiscale start begins at 0.68 and takes 10 steps (46 s).
DISCRETE_MAX_K = 3000
# Up to this dimension damped Newton stays the default at every K (a cell has few facets, so the
# band samples estimate the facet Hessian well); see SemiDiscreteOT.default_optimizer.
NEWTON_MAX_DIM = 4


class SemiDiscreteOT:
    """Semi-discrete OT from a source measure onto weighted targets (Gu–Luo–Sun–Yau variational form).

    Args:
      source: ``UniformBox``, ``Gaussian``, ``Sampler`` or a function ``(key, n) -> (n, d)``.
      targets: (K, d) array of target points (distinct rows).
      weights: (K,) positive weights summing to 1 (default uniform).
      normalize_weights: rescale ``weights`` to sum 1 instead of raising.
      block_size, chunk_size: tile sizes of the scoring kernel (targets per block, samples per chunk).
      mesh: optional ``jax.sharding.Mesh`` with axes ("samples", "targets") (see
        :func:`otgen.ot.sharding.make_mesh`): Monte-Carlo batches are spread over the
        sample axis, target blocks over the target axis.  The samples drawn are the
        same as on one device, so cell counts are identical.
      normalise: solve in the normalised frame below (default).  ``False`` keeps the user's
        frame, for baselines whose step sizes are tuned in it (``aeot_recipe``'s learning rate).

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

    # -- starts ---------------------------------------------------------------
    def _initial_h(self, kind: str, key: jax.Array | None) -> tuple[jax.Array, str]:
        """(h in the solver's frame, note saying which start ran)."""
        k = self.num_targets
        if kind == "auto":
            kind = "discrete" if k <= DISCRETE_MAX_K else "multiscale"
        if kind in ("discrete", "multiscale") and key is None:
            raise ValueError(f"the {kind!r} initial h needs a PRNG key")
        if kind == "discrete":
            h = discrete_ot_heights(self.source, self._y, self.weights, key)
            if h is not None:
                return h, f"discrete-OT start ({4 * k} source samples, exact network simplex)"
            h, _ = self._initial_h("voronoi", None)
            return h, "discrete-OT start skipped (K too large for its cost matrix or simplex failed): Voronoi start"
        if kind == "multiscale":
            if k <= 16:  # nothing to coarsen
                return self._initial_h("discrete", key)
            def solve_coarse(centres, weights, k):
                return SemiDiscreteOT(self.source, centres, weights, normalize_weights=True).fit(
                    k, tol=0.05, max_steps=10, progress=False, warn=False)

            return multiscale_heights(self.source, self._y, self.weights, key, solve_coarse)
        if kind == "zero":
            return jnp.zeros(k, jnp.float32), "zero start"
        if kind == "voronoi":
            h = -0.5 * jnp.sum(self._y * self._y, axis=1)
            return h - jnp.mean(h), "Voronoi start (of the normalised targets)"
        raise ValueError(f"unknown initial h {kind!r}; use 'auto', 'discrete', 'multiscale', 'voronoi' or 'zero'")

    def initial_h(self, kind: str = "voronoi", key: jax.Array | None = None) -> jax.Array:
        """A start in the user's frame.  ``"voronoi"``: the Voronoi cells of the normalised
        targets; ``"zero"``: h = 0 in the solver's frame; ``"discrete"``: target duals of an exact
        discrete OT problem (:mod:`otgen.ot.warm_start`; needs ``key``); ``"multiscale"``: a
        coarse problem on k-means centres, solved first (needs ``key``); ``"auto"``: discrete
        for K <= ``DISCRETE_MAX_K``, else multiscale.
        """
        return self._initial_h(kind, key)[0] * self.scale

    def default_optimizer(self, metric: str | None = None):
        """What ``fit`` runs when no optimizer is given.

        :func:`~otgen.ot.optim.damped_newton` where its facet Hessian is good and the exact
        discrete start applies: K <= ``DISCRETE_MAX_K`` or d <= ``NEWTON_MAX_DIM`` (or an L1
        tol is asked for).  Above, :func:`~otgen.ot.optim.averaged_sgd`, which stops on chi2:
        at K = 10,000, d = 16 damped Newton went from chi2 0.58 to 0.46 in 240 s (its facet
        Hessian, a few band samples per cell, is too rough there); on MNIST codes (K = 60,000)
        the averaged SGD's map reached chi2 0.0116 on 160 steps of 2^16 samples.
        """
        large = self.num_targets > DISCRETE_MAX_K and self.dim > NEWTON_MAX_DIM
        return averaged_sgd() if large and metric in (None, "chi2") else damped_newton()

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
        est = _estimate(self._blocks, self.weights, h, key, n_batches, source=self.source, sampling=sampling,
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
        x = _draw(self.source, self._sampling(sampling), key, int(num_samples), jnp.uint32(0))
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

    # -- the solve ------------------------------------------------------------
    def _fit_exact(self, tol, max_steps, h0, time_budget, callback, strict, warn, metric) -> BrenierMap:
        """The exact 2-D path (:func:`otgen.ot.exact.solve_exact`), wrapped in the usual outputs."""
        if h0 is not None:
            h0 = np.asarray(h0, np.float64)
            if h0.shape != (self.num_targets,) or not np.all(np.isfinite(h0)):
                raise ValueError(f"h0 must be a finite array of shape ({self.num_targets},)")
        cb = None if callback is None else (lambda step, h, w: callback(step, h, None))
        res = solve_exact(self.source, np.asarray(self.targets, np.float64), np.asarray(self.weights, np.float64),
                          tol=min(float(tol), EXACT_TOL), max_steps=100 if max_steps is None else int(max_steps),
                          time_budget=time_budget, h0=h0, callback=cb)
        n = len(res.l1)
        zeros = (0.0,) * n
        # converged: the user's tol is met (the Newton runs on to EXACT_TOL, where float64 rounding may stall it)
        converged = (res.chi2 if metric == "chi2" else res.l1)[-1] <= tol
        reason = "converged" if converged else res.stop_reason
        diag = Diagnostics(res.l1, zeros, res.max_rel, res.energy, res.wall_time, (0,) * n, converged, "exact-newton",
                           res.chi2, res.step_size, n - 1, reason, float(tol), res.notes, metric or "l1", zeros)
        bmap = BrenierMap(self.targets, self.weights, res.h, self.source, diag, self.block_size, self.chunk_size)
        if not converged:
            msg = f"semi-discrete OT {diag.summary()}"
            if strict:
                raise NotConvergedError(msg, bmap)
            if warn:
                warnings.warn(msg, NotConvergedWarning, stacklevel=3)
        return bmap

    def _score_gap(self, key, h, num_samples: int = 1 << 12) -> float:
        """Median score gap between each sample's best and second-best cell (solver frame): how far,
        in height, a typical sample lies from the nearest facet."""
        x = self.source.sample(key, num_samples)
        s1, _, s2, _ = scores.top2_cells(x, scores.with_heights(self._blocks, h), chunk_size=min(
            self.chunk_size, num_samples))
        return float(jnp.median(s1 - s2))

    def fit(self, key: jax.Array, *, tol: float = 0.01, max_steps: int | None = None,
            batch_size: int | None = None, optimizer=None, h0=None, progress: bool | None = None,
            callback=None, time_budget: float | None = None, strict: bool = False,
            warn: bool = True, metric: str | None = None, exact: bool | None = None) -> BrenierMap:
        """Minimise the energy; stop when the optimizer's test passes (the estimated error
        <= tol with noise <= tol/3), after ``max_steps``, after ``time_budget`` seconds, or
        when ``tol`` cannot be certified even at the optimizer's largest sample.

        ``optimizer``: default :meth:`default_optimizer` -- damped Newton on L1 for small K or
        d <= 4, averaged SGD on chi2 above (``metric="l1"`` keeps damped Newton).

        ``metric``: what ``tol`` bounds -- ``"l1"`` (the optimizer's default) or ``"chi2"``,
        the marginal chi-square error sum_i (w_i - nu_i)^2 / nu_i (sqrt(chi2) is the RMS
        relative error of a cell's mass, and L1 <= sqrt(chi2)).  L1 needs ~K / tol^2 samples
        merely to be measured; chi2's unbiased estimate has noise ~2 sqrt(K) / N, so it can
        be certified at any K.  When the L1 tol looks out of reach at the largest sample,
        a note (and a warning) says so before the first step.

        ``batch_size``: initial samples per step (optimizer default otherwise);
        ``callback(step, h, estimate)`` is called after each estimate (``h`` in the user's
        frame; benchmarks use it to snapshot iterates); returning True stops the fit there.
        Returns the :class:`BrenierMap` of the converged heights or, when the test never
        passed, of the step with the lowest estimated error; ``.diagnostics`` has the
        per-step history, the stop reason and every fallback taken.  Not converged: a
        :class:`NotConvergedWarning` names the error reached (``warn=False`` silences it,
        the diagnostics still say so), and ``strict=True`` raises :class:`NotConvergedError`.
        Heights are never NaN: a non-finite step is rejected and noted.

        ``exact``: in 2-D, with a ``UniformBox`` or ``Gaussian`` source, at least 4 non-collinear
        targets and no ``optimizer`` or ``mesh`` given, ``fit`` computes the cells exactly
        (:mod:`otgen.ot.exact`: power diagram + damped Newton) and runs to exact L1 <=
        ``min(tol, EXACT_TOL)``; its diagnostics say so.  ``exact=False`` forces Monte Carlo,
        ``exact=True`` raises where the exact path does not apply.
        """
        if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
            raise ValueError(f"tol must be a positive number, got {tol!r}")
        if time_budget is not None and not (time_budget > 0):
            raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
        if metric is not None and metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        why = why_not_exact(self.source, self.targets)
        if optimizer is not None or self.mesh is not None:
            why = "an optimizer or a mesh was given (Monte-Carlo path)"
        if exact and why is not None:
            raise ValueError(f"fit(exact=True) does not apply: {why}")
        if exact is not False and why is None:
            return self._fit_exact(tol, max_steps, h0, time_budget, callback, strict, warn, metric)
        opt = self.default_optimizer(metric) if optimizer is None else optimizer
        if metric is not None:
            if metric not in METRICS:
                raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
            if not hasattr(opt, "metric"):
                raise ValueError(f"optimizer {opt.name!r} has no metric option (its stopping rule is its own)")
            import dataclasses

            opt = dataclasses.replace(opt, metric=metric)
        metric = getattr(opt, "metric", "l1")
        max_steps = opt.max_steps if max_steps is None else int(max_steps)
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        n = batch_size if batch_size is not None else opt.batch_size
        if n is None:  # enough samples per cell for a usable facet-area estimate, within the optimizer's cap
            n = min(self.hessian_samples, getattr(opt, "max_batch_size", self.hessian_samples))
        n = int(n)
        if n < 2:
            raise ValueError(f"batch_size must be >= 2, got {n}")
        t0 = time.perf_counter()
        notes = []
        # the largest estimate the optimizer makes: its steps' largest sample, or its checks' (averaged SGD)
        largest = getattr(opt, "max_check_samples", getattr(opt, "max_batch_size", n))
        floor = self._noise_floor(metric, largest)
        if floor > tol:  # Monte-Carlo noise alone exceeds tol (RQMC does better, but not 3x in high d)
            note = (f"tol {tol:g} on {metric} is likely out of reach: at the largest sample "
                    f"({largest}) the Monte-Carlo noise of the estimate is ~{floor:.3g} "
                    f"(RQMC may do better); fit(metric='chi2') can be certified at any K")
            notes.append(note)
            if warn:
                warnings.warn(note, NotConvergedWarning, stacklevel=2)
        if h0 is None:
            key, k_init = jax.random.split(key)
            h, note = self._initial_h(opt.init_h, k_init)
            notes.append(note)
        else:
            h = jnp.asarray(h0, jnp.float32)
            if h.shape != (self.num_targets,) or not bool(jnp.all(jnp.isfinite(h))):
                raise ValueError(f"h0 must be a finite array of shape ({self.num_targets},)")
            h = h / self.scale
            notes.append("start: h0 given by the caller")
        h = h - jnp.mean(h)
        state = opt.init(h)
        sampling = opt.sampling
        # chi2's noise (2 / N) sqrt(K + N chi2) holds for i.i.d. samples.  Digitally shifted Sobol points make
        # the two-halves chi2 estimate *noisier* than that (measured at one h, 2^15-2^16 points: std 3.9x the
        # formula in 4-d, 1.6x in 8-d, 3x in 16-d), so a chi2 stop reached on RQMC samples is confirmed on
        # fresh i.i.d. samples before it counts (RQMC still drives the steps: far better in low d).
        confirm_iid = metric == "chi2" and self._sampling(sampling) == "rqmc"
        hist = {k: [] for k in ("l1", "noise", "max_rel", "energy", "time", "n", "chi2", "step", "noise_chi2")}
        converged, reason = False, "max_steps"
        # candidates are ranked by a pessimistic estimate, error + 2 noise: the lowest of many noisy estimates is
        # biased low, and a lucky iterate on one step's samples must not beat an average checked on many more
        # (K = 6,000, d = 100: an iterate picked that way scored chi2 0.057 independently)
        best_h, best_step, best_rank, best_check = h, 0, float("inf"), -1

        def rank_of(est) -> float:
            return error_of(est, metric) + 2 * noise_of(est, metric)

        checks = {k: [] for k in ("step", "l1", "noise_l1", "chi2", "noise_chi2", "n", "time")}
        show = sys.stderr.isatty() if progress is None else bool(progress)
        from tqdm.auto import tqdm

        # a step cap far above what a fit runs (averaged SGD's 100,000) would make tqdm's ETA meaningless;
        # an optimizer that knows its earliest stop (averaged SGD: 2 K / tol samples) counts to that
        total, desc = (max_steps if max_steps <= 10_000 else None), f"semi-discrete OT ({opt.name})"
        if hasattr(opt, "first_stop_step"):
            first = opt.first_stop_step(self.num_targets, tol, n)
            notes.append(f"no stop before step ~{first} ({opt.first_check_samples(self.num_targets, tol):.3g} samples drawn; "
                         f"expect 1-2.5x that)")
            if first < max_steps:
                total, desc = first, desc + ", ETA to the earliest stop"
        bar = tqdm(total=total, disable=not show, desc=desc, leave=False)
        rejected = stalled = 0
        candidate = getattr(opt, "candidate", None)  # optimizers whose output is not their iterate (an average)

        def check(final: bool) -> bool:
            """Estimate the optimizer's candidate (if it offers one now) on fresh samples; keep it if best.
            Returns whether it passes the stopping test."""
            nonlocal state, key, best_h, best_step, best_rank, best_check
            state, h_c, n_c = candidate(state, self.num_targets, tol, final)
            if h_c is None:
                return False
            key, k_c = jax.random.split(key)
            est_c = self._estimate(k_c, h_c, n_c, sampling=sampling)
            for name, v in (("step", step), ("l1", float(est_c.l1)), ("noise_l1", float(est_c.noise_l1)),
                            ("chi2", float(est_c.chi2)),
                            ("noise_chi2", float(est_c.noise_chi2)), ("n", est_c.num_samples),
                            ("time", time.perf_counter() - t0)):
                checks[name].append(v)
            bar.set_postfix({f"{metric} (average)": f"{error_of(est_c, metric):.4g}", "n": n_c})
            if rank_of(est_c) < best_rank:
                best_h, best_step, best_rank, best_check = h_c, step, rank_of(est_c), len(checks["n"]) - 1
            return opt.should_stop(est_c, tol, state)

        def confirmed(h_now, n_now: int) -> bool:
            """The stopping test on fresh i.i.d. samples (at least enough to certify tol)."""
            nonlocal key
            key, k_c = jax.random.split(key)
            n_c = max(n_now, certify_samples(tol, self.num_targets, getattr(opt, "stop_noise", 1 / 3)))
            est_c = self._estimate(k_c, h_now, n_c, sampling="iid")
            ok = opt.should_stop(est_c, tol, state)
            notes.append(f"step {step}: chi2 stop on RQMC samples {'confirmed' if ok else 'NOT confirmed'} on "
                         f"{est_c.num_samples} i.i.d. samples (chi2 {float(est_c.chi2):.4g} +- "
                         f"{float(est_c.noise_chi2):.2g})")
            return ok

        step = 0
        try:
            for step in range(max_steps):
                key, sub = jax.random.split(key)
                est = self._estimate(sub, h, n, sampling=sampling, hessian=opt.needs_hessian,
                                     band=getattr(opt, "band", 0.1))
                l1 = float(est.l1)
                for name, v in (("l1", l1), ("noise", float(est.noise_l1)), ("max_rel", float(est.max_rel)),
                                ("energy", self._user_energy(float(est.energy))),
                                ("time", time.perf_counter() - t0), ("n", est.num_samples),
                                ("chi2", float(est.chi2)), ("noise_chi2", float(est.noise_chi2))):
                    hist[name].append(v)
                err, rank = error_of(est, metric), rank_of(est)
                if rank < best_rank:
                    best_h, best_step, best_rank, best_check = h, step, rank, -1
                bar.update(1)
                bar.set_postfix({metric: f"{err:.4g}", "noise": f"{noise_of(est, metric):.3g}", "n": n})
                if callback is not None and callback(step, h * self.scale, est):
                    reason = "callback"
                    break
                if opt.should_stop(est, tol, state) and (not confirm_iid or confirmed(h, n)):
                    converged, reason, best_h, best_step, best_check = True, "converged", h, step, -1
                    break
                if step == max_steps - 1:
                    break
                if time_budget is not None and hist["time"][-1] >= time_budget:
                    reason = "time_budget"
                    break
                if opt.unreachable(est, n, tol):
                    reason = "noise_floor"
                    notes.append(f"tol {tol:g} cannot be certified: at the largest sample ({n}) the {metric} "
                                 f"estimate's noise is {noise_of(est, metric):.4g} > "
                                 f"{getattr(opt, 'stop_noise', 1):.3g} x tol")
                    break

                def probe(h_try, hessian=False, sub=sub, n=n):
                    return self._estimate(sub, h_try, n, sampling=sampling, hessian=hessian,
                                          band=getattr(opt, "band", 0.1))

                def capture(h_now, idx, sub=sub):
                    return self._capture_raise(sub, h_now, idx, sampling=sampling)

                def score_gap(h_now, sub=sub):
                    return self._score_gap(jax.random.fold_in(sub, 1), h_now)

                h_new, state, step_size = opt.update(est, state, h, self.weights, probe, capture, score_gap)
                if not bool(jnp.all(jnp.isfinite(h_new))):
                    notes.append(f"step {step}: non-finite heights proposed; step rejected")
                    h_new, step_size = h, 0.0
                if step_size == 0.0:
                    rejected += 1
                    stalled += 1
                    if stalled >= 3 and n >= getattr(opt, "max_batch_size", n):
                        reason = "stalled"
                        notes.append(f"stalled: 3 line searches in a row failed at the largest sample ({n})")
                        break
                else:
                    stalled = 0
                hist["step"].append(float(step_size))
                h = h_new
                state, n = opt.next_batch_size(est, state, n, tol, step_size)
                if candidate is not None and check(final=False):
                    converged, reason = True, "converged"
                    break
            if candidate is not None and not converged and check(final=True):
                converged = True
        finally:
            bar.close()
        if rejected:
            notes.append(f"{rejected} step(s) found no acceptable line-search point (h kept, samples grown)")
        hist["step"].extend([0.0] * (len(hist["l1"]) - len(hist["step"])))
        h_out = (best_h - jnp.mean(best_h)) * self.scale
        if not bool(jnp.all(jnp.isfinite(h_out))):  # unreachable by construction; never hand out NaN heights
            raise FloatingPointError("semi-discrete OT produced non-finite heights; please report this problem")
        diag = Diagnostics(tuple(hist["l1"]), tuple(hist["noise"]), tuple(hist["max_rel"]), tuple(hist["energy"]),
                           tuple(hist["time"]), tuple(hist["n"]), converged, opt.name, tuple(hist["chi2"]),
                           tuple(hist["step"]), best_step, reason, float(tol), tuple(notes), metric,
                           tuple(hist["noise_chi2"]), best_check=best_check,
                           **{f"check_{'samples' if k == 'n' else k}": tuple(v) for k, v in checks.items()})
        bmap = BrenierMap(self.targets, self.weights, h_out, self.source, diag, self.block_size, self.chunk_size)
        if self.mesh is None and self._y is self.targets:  # same frame: hand over the padded blocks, no copy
            bmap._blocks = (h_out, self.targets, scores.with_heights(self._blocks, h_out))
        if not converged:
            msg = f"semi-discrete OT {diag.summary()}"
            if strict:
                raise NotConvergedError(msg, bmap)
            if warn:
                warnings.warn(msg, NotConvergedWarning, stacklevel=2)
        return bmap
