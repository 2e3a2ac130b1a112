"""The tiles under :mod:`otgen.ot.scores`: one chunk of samples scanned against every target block.

A tile's scores are ``<x, y_i> + h_i`` for a chunk of samples and a block of targets.  For small ``d``
they are written as a broadcast sum over the ``d`` coordinates instead of a matmul: XLA then fuses the
scores into the reduction and never writes the tile to memory (a ``d = 2`` matmul is pure memory
traffic).  Both forms use the same expression as the dense reference
:func:`otgen.ot.scores.dense_scores`, so "tiled == dense" holds for either.

The block scans keep a running carry per sample: the best score and where it is (argmax), the two
best (top-2) or the ``k`` best (top-k).  The argmax and top-2 scans are max-then-locate: a plain max
over the fused tile vectorises where locating the argmax does not, so the scan only keeps the best
sub-block (or block, on the matmul path), and the winners are re-scored at the end.  Ties go to the
lowest target index, as in the dense ``jnp.argmax`` / ``lax.top_k``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax import lax

if TYPE_CHECKING:  # annotations only: otgen.ot.scores imports this module
    from otgen.ot.scores import TargetBlocks

__all__ = ["FUSED_MAX_DIM", "SUB_BLOCK", "pad_rows", "block_scores", "map_chunks", "chunk_argmax", "chunk_top2",
           "chunk_top_k"]

# Below this dimension the scores are a fused broadcast sum, above it a matmul
# (measured in scripts/bench_ot.py: for d = 2 the fused form is several times faster).
FUSED_MAX_DIM = 8
# Sub-block of the max-then-locate kernels: the argmax is located among block / SUB_BLOCK sub-block maxima.
SUB_BLOCK = 64


def pad_rows(a: jax.Array, multiple: int, value) -> jax.Array:
    """``a`` with rows of ``value`` appended up to a multiple of ``multiple`` rows."""
    pad = (-a.shape[0]) % multiple
    if pad == 0:
        return a
    widths = [(0, pad)] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, widths, constant_values=value)


def block_scores(x: jax.Array, y: jax.Array, h: jax.Array) -> jax.Array:
    """The (n, b) scores ``<x, y_i> + h_i`` of a chunk against a block: fused for d <= FUSED_MAX_DIM, else a matmul."""
    d = x.shape[-1]
    if d <= FUSED_MAX_DIM:
        # Unrolled broadcast sum: fuses into the consumer reduction, no tile in memory.
        s = h[None, :]
        for j in range(d):
            s = s + x[:, j, None] * y[None, :, j]
        return s
    return jnp.dot(x, y.T, precision=lax.Precision.HIGHEST) + h[None, :]


def map_chunks(fn, x: jax.Array, chunk_size: int):
    """Apply ``fn`` to row chunks of ``x`` with ``lax.map`` and concatenate the results."""
    n, d = x.shape
    c = int(chunk_size)
    if c < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    xp = pad_rows(x, c, 0.0).reshape(-1, c, d)
    out = lax.map(fn, xp)
    return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[:n], out)


# ---------------------------------------------------------------------------
# chunk-level kernels: one chunk of samples against all target blocks


def _max_first_index(s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Row max and the first column attaining it.

    Two plain reductions (max, then min of matching column indices) vectorise on
    CPU; ``jnp.argmax``'s variadic (value, index) reduce does not, and measured
    ~8x slower here (scripts/bench_ot.py).
    """
    m = jnp.max(s, axis=1)
    cols = lax.broadcasted_iota(jnp.int32, s.shape, 1)
    a = jnp.min(jnp.where(s == m[:, None], cols, s.shape[1]), axis=1)
    return m, a


def _sub_size(block_size: int) -> int:
    """Targets per sub-block: the largest power of two <= SUB_BLOCK dividing the block."""
    return math.gcd(int(block_size), SUB_BLOCK)


def _sub_maxima(x: jax.Array, yb: jax.Array, hb: jax.Array, sub: int) -> jax.Array:
    """Each sample's best score in each sub-block of ``sub`` targets: (n, block / sub)."""
    s = block_scores(x, yb, hb)
    return jnp.max(s.reshape(s.shape[0], -1, sub), axis=2)


def _rescore(x: jax.Array, blocks: TargetBlocks, sub_ids: jax.Array, sub: int):
    """Scores (n, sub) of each sample against the targets of its own sub-block (``block_scores``'s
    expression, row by row), and their indices."""
    d = x.shape[-1]
    ys, hs = blocks.y.reshape(-1, sub, d)[sub_ids], blocks.h.reshape(-1, sub)[sub_ids]
    s = jax.vmap(lambda xi, yi, hi: block_scores(xi[None], yi, hi)[0])(x, ys, hs)
    return s, sub_ids[:, None] * sub + lax.broadcasted_iota(jnp.int32, s.shape, 1)


def _locate(x: jax.Array, blocks: TargetBlocks, sub_ids: jax.Array, sub: int) -> jax.Array:
    """The first best target (n,) inside each sample's sub-block of ``sub`` targets, re-scored."""
    s, idx = _rescore(x, blocks, sub_ids, sub)
    return jnp.take_along_axis(idx, _max_first_index(s)[1][:, None], axis=1)[:, 0]


def chunk_argmax(x: jax.Array, blocks: TargetBlocks) -> tuple[jax.Array, jax.Array]:
    """Max-then-locate: the block scan keeps each sample's best score and the sub-block holding it.

    A plain max over the fused score tile vectorises (0.18 ns per pair in 2-D on 2 cores)
    where locating the argmax does not, so the first index is only found among the
    ``block / sub`` sub-block maxima, and at the end among the ``sub`` targets of the
    winning sub-block, re-scored.  Ties: the first sub-block, then the first target in it.
    """
    if x.shape[-1] > FUSED_MAX_DIM:
        return _chunk_argmax_matmul(x, blocks)
    n, b = x.shape[0], blocks.y.shape[1]
    sub = _sub_size(b)

    def step(carry, inp):
        best, idx = carry
        yb, hb, first_sub = inp
        m, a = _max_first_index(_sub_maxima(x, yb, hb, sub))
        take = m > best  # strict: ties keep the earlier (lower) sub-block, like dense argmax
        return (jnp.where(take, m, best), jnp.where(take, a + first_sub, idx)), None

    first_subs = jnp.arange(blocks.y.shape[0], dtype=jnp.int32) * (b // sub)
    init = (jnp.full((n,), -jnp.inf, x.dtype), jnp.zeros((n,), jnp.int32))
    (best, sub_id), _ = lax.scan(step, init, (blocks.y, blocks.h, first_subs))
    return best, _locate(x, blocks, sub_id, sub)


def _chunk_argmax_matmul(x: jax.Array, blocks: TargetBlocks) -> tuple[jax.Array, jax.Array]:
    """Argmax for the matmul path: the block scan keeps only each sample's best score and block.

    The tile is laid out (block, chunk) and reduced over its first axis, and no index is
    tracked inside the scan; the winning block is re-scored per sample afterwards (a
    gather of 1 / n_blocks of the work).  Measured at K = 60,000, d = 16 on 2 cores
    (scripts/bench_ot.py's kernel rows): ~2x faster than the (chunk, block) tile with a
    first-index pass per block.  Ties: the first block attaining the max, then the first
    row in it -- the lowest index, as in the dense argmax.
    """
    b = blocks.y.shape[1]

    def step(carry, inp):
        best, blk = carry
        yb, hb, j = inp
        m = jnp.max(jnp.dot(yb, x.T, precision=lax.Precision.HIGHEST) + hb[:, None], axis=0)
        take = m > best  # strict: ties keep the earlier block
        return (jnp.where(take, m, best), jnp.where(take, j, blk)), None

    n_blocks = blocks.y.shape[0]
    init = (jnp.full((x.shape[0],), -jnp.inf, x.dtype), jnp.zeros((x.shape[0],), jnp.int32))
    (best, blk), _ = lax.scan(step, init, (blocks.y, blocks.h, jnp.arange(n_blocks, dtype=jnp.int32)))
    return best, _locate(x, blocks, blk, b)  # the winning block as one sub-block


def _merge_top_k(vals, idxs, k):
    # lax.top_k is stable (earlier position wins ties) and the carry is concatenated
    # first, so lower target indices win ties exactly as in the dense top_k.
    v, pos = lax.top_k(vals, k)
    return v, jnp.take_along_axis(idxs, pos, axis=1)


def chunk_top_k(x: jax.Array, blocks: TargetBlocks, k: int) -> tuple[jax.Array, jax.Array]:
    n = x.shape[0]
    b = blocks.y.shape[1]

    def step(carry, inp):
        vals, idxs = carry
        yb, hb, offset = inp
        s = block_scores(x, yb, hb)
        bv, bi = lax.top_k(s, k)
        v = jnp.concatenate([vals, bv], axis=1)
        i = jnp.concatenate([idxs, bi.astype(jnp.int32) + offset], axis=1)
        return _merge_top_k(v, i, k), None

    offsets = jnp.arange(blocks.y.shape[0], dtype=jnp.int32) * b
    init = (jnp.full((n, k), -jnp.inf, x.dtype), jnp.zeros((n, k), jnp.int32))
    (vals, idxs), _ = lax.scan(step, init, (blocks.y, blocks.h, offsets))
    return vals, idxs


def _first_two(s: jax.Array, idx: jax.Array):
    """Best and second-best of each row of ``s`` with their ``idx``; ties go to the lower idx."""
    big = jnp.iinfo(jnp.int32).max
    m1 = jnp.max(s, axis=1)
    i1 = jnp.min(jnp.where(s == m1[:, None], idx, big), axis=1)
    s2 = jnp.where(idx == i1[:, None], -jnp.inf, s)
    m2 = jnp.max(s2, axis=1)
    i2 = jnp.min(jnp.where(s2 == m2[:, None], idx, big), axis=1)
    return m1, i1, m2, i2


def chunk_top2(x: jax.Array, blocks: TargetBlocks):
    """Best and second-best score and index, max-then-locate as in :func:`chunk_argmax`.

    The scan keeps the two best sub-blocks by their maxima; the best target is the first of
    the first, the runner-up either the second-best in it or the best of the other, so the
    two are re-scored at the end.
    """
    n, b = x.shape[0], blocks.y.shape[1]
    sub = _sub_size(b)

    def step(carry, inp):
        m1, i1, m2, i2 = carry
        yb, hb, first_sub = inp
        ms = _sub_maxima(x, yb, hb, sub)
        v1, a1, v2, a2 = _first_two(ms, lax.broadcasted_iota(jnp.int32, ms.shape, 1) + first_sub)
        # merge (m1, m2) with (v1, v2): new best is the larger first; second is the
        # largest of the remaining three.
        take = v1 > m1
        n1 = jnp.where(take, v1, m1)
        j1 = jnp.where(take, a1, i1)
        c_v = jnp.where(take, m1, v1)  # loser of the first comparison
        c_i = jnp.where(take, i1, a1)
        d_v = jnp.where(take, v2, m2)  # runner-up of the winner's side
        d_i = jnp.where(take, a2, i2)
        take2 = jnp.where(take, c_v >= d_v, c_v > d_v)  # ties: carry (lower index) wins
        n2 = jnp.where(take2, c_v, d_v)
        j2 = jnp.where(take2, c_i, d_i)
        return (n1, j1, n2, j2), None

    first_subs = jnp.arange(blocks.y.shape[0], dtype=jnp.int32) * (b // sub)
    neg = jnp.full((n,), -jnp.inf, x.dtype)
    zero = jnp.zeros((n,), jnp.int32)
    (_, sub1, _, sub2), _ = lax.scan(step, (neg, zero, neg, zero), (blocks.y, blocks.h, first_subs))
    s1, idx1 = _rescore(x, blocks, sub1, sub)
    s2, idx2 = _rescore(x, blocks, sub2, sub)
    s2 = jnp.where((sub2 == sub1)[:, None], -jnp.inf, s2)  # one sub-block in all: do not count it twice
    return _first_two(jnp.concatenate([s1, s2], axis=1), jnp.concatenate([idx1, idx2], axis=1))
