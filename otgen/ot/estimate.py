"""The Monte-Carlo estimate of the cell masses w(h) (and the energy, the facet-area Hessian's samples),
jitted: two independent half-samples, drawn in batches through the tiled kernels of :mod:`otgen.ot.scores`,
optionally spread over a device mesh (:mod:`otgen.ot.sharding`).  :class:`~otgen.ot.solver.SemiDiscreteOT`
sizes the batches and calls :func:`estimate`."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from otgen.ot import scores, sharding
from otgen.ot.optim import Estimate

__all__ = ["estimate", "draw_samples"]


def draw_samples(source, sampling: str, key, n: int, start):
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
        return (draw_samples(source, sampling, key_a, batch, start),
                draw_samples(source, sampling, key_b, batch, start + start_b))

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
def estimate(blocks: scores.TargetBlocks, nu, h, key, n_batches, *, source, sampling, batch, hess_batches,
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
