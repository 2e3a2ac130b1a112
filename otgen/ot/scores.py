"""Tiled scoring kernels for power diagrams: argmax, top-k and cell histograms.

The score of sample ``x`` against target ``i`` is ``<x, y_i> + h_i``; the cell
of ``x`` is its argmax.  The full ``N x K`` score matrix is never built:
samples are processed in chunks (``lax.map``) and targets in blocks
(``lax.scan``) with a running (max, argmax) or running top-k carry, so memory
is ``O(chunk_size * block_size)`` on top of the inputs.

Ties are broken towards the lowest target index, exactly as ``jnp.argmax`` on
the dense matrix does, so the tiled and dense paths return the same indices
(scores agree to float32 rounding: XLA may contract multiply-adds into FMAs
differently in different fusions).

For small ``d`` the block scores are written as a broadcast sum over the ``d``
coordinates instead of a matmul: XLA then fuses the scores into the reduction
and never writes the tile to memory (a ``d = 2`` matmul is pure memory
traffic).  Both forms use the same expression in the dense reference
:func:`dense_scores`, so "tiled == dense" holds for either.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "TargetBlocks",
    "block_targets",
    "dense_scores",
    "assign_cells",
    "max_and_cells",
    "top2_cells",
    "top_k_cells",
    "cell_counts",
    "cell_masses",
    "default_block_size",
    "default_chunk_size",
]

# Below this dimension the scores are a fused broadcast sum, above it a matmul
# (measured in scripts/bench_ot.py: for d = 2 the fused form is several times faster).
_FUSED_MAX_DIM = 8
# Sub-block of the max-then-locate kernels: the argmax is located among block / _SUB sub-block maxima.
_SUB = 64


class TargetBlocks(NamedTuple):
    """Targets and heights padded to a whole number of blocks.

    Padding rows have height ``-inf`` so they never win an argmax.  Build once
    with :func:`block_targets` and reuse across steps of a solver.
    """

    y: jax.Array  # (n_blocks, block_size, d)
    h: jax.Array  # (n_blocks, block_size)
    num_targets: int  # K, the number of real targets (static)


def default_block_size(num_targets: int, dim: int) -> int:
    # Measured (scripts/bench_ot.py): fused path, a score tile of ~1M floats; matmul path, (512, 512)
    # tiles for its (block, chunk) argmax (0.57 ns/pair at K = 60,000, d = 16, vs 1.05 for 4096 x 256).
    # Fewer targets: one block, padded to whole sub-blocks (-inf heights) for the max-then-locate kernels.
    b = 512 if dim > _FUSED_MAX_DIM else 2048
    return int(max(1, min(-(-num_targets // _SUB) * _SUB, b)))


def default_chunk_size(num_samples: int, dim: int) -> int:
    c = 512
    return int(max(1, min(num_samples, c)))


def _pad_rows(a: jax.Array, multiple: int, value) -> jax.Array:
    pad = (-a.shape[0]) % multiple
    if pad == 0:
        return a
    widths = [(0, pad)] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, widths, constant_values=value)


def block_targets(targets: jax.Array, h: jax.Array, block_size: int | None = None) -> TargetBlocks:
    """Pad ``targets`` (K, d) and ``h`` (K,) to whole blocks of ``block_size`` rows."""
    targets = jnp.asarray(targets)
    h = jnp.asarray(h, dtype=targets.dtype)
    if targets.ndim != 2:
        raise ValueError(f"targets must have shape (K, d), got {targets.shape}")
    k, d = targets.shape
    if k == 0:
        raise ValueError("targets is empty (K = 0)")
    if h.shape != (k,):
        raise ValueError(f"h must have shape ({k},) to match targets, got {h.shape}")
    b = default_block_size(k, d) if block_size is None else int(block_size)
    if b < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    y = _pad_rows(targets, b, 0.0).reshape(-1, b, d)
    hb = _pad_rows(h, b, -jnp.inf).reshape(-1, b)
    return TargetBlocks(y, hb, k)


def with_heights(blocks: TargetBlocks, h: jax.Array) -> TargetBlocks:
    """The same target blocks with new heights ``h`` (K,) — cheap, no copy of the targets."""
    nb, b = blocks.y.shape[:2]
    h = jnp.asarray(h, blocks.y.dtype)
    # Pad to every block row (there may be whole padding blocks, e.g. for target sharding).
    hb = jnp.pad(h, (0, nb * b - h.shape[0]), constant_values=-jnp.inf).reshape(nb, b)
    return blocks._replace(h=hb)


def dense_scores(x: jax.Array, targets: jax.Array, h: jax.Array) -> jax.Array:
    """The full (n, K) score matrix ``x @ targets.T + h`` — reference only; O(nK) memory."""
    return _block_scores(x, targets, h)


def _block_scores(x: jax.Array, y: jax.Array, h: jax.Array) -> jax.Array:
    d = x.shape[-1]
    if d <= _FUSED_MAX_DIM:
        # Unrolled broadcast sum: fuses into the consumer reduction, no tile in memory.
        s = h[None, :]
        for j in range(d):
            s = s + x[:, j, None] * y[None, :, j]
        return s
    return jnp.dot(x, y.T, precision=lax.Precision.HIGHEST) + h[None, :]


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
    """Targets per sub-block: the largest power of two <= _SUB dividing the block."""
    return math.gcd(int(block_size), _SUB)


def _sub_maxima(x: jax.Array, yb: jax.Array, hb: jax.Array, sub: int) -> jax.Array:
    """Each sample's best score in each sub-block of ``sub`` targets: (n, block / sub)."""
    s = _block_scores(x, yb, hb)
    return jnp.max(s.reshape(s.shape[0], -1, sub), axis=2)


def _rescore(x: jax.Array, blocks: TargetBlocks, sub_ids: jax.Array, sub: int):
    """Scores (n, sub) of each sample against the targets of its own sub-block (``_block_scores``'s
    expression, row by row), and their indices."""
    d = x.shape[-1]
    ys, hs = blocks.y.reshape(-1, sub, d)[sub_ids], blocks.h.reshape(-1, sub)[sub_ids]
    s = jax.vmap(lambda xi, yi, hi: _block_scores(xi[None], yi, hi)[0])(x, ys, hs)
    return s, sub_ids[:, None] * sub + lax.broadcasted_iota(jnp.int32, s.shape, 1)


def _locate(x: jax.Array, blocks: TargetBlocks, sub_ids: jax.Array, sub: int) -> jax.Array:
    """The first best target (n,) inside each sample's sub-block of ``sub`` targets, re-scored."""
    s, idx = _rescore(x, blocks, sub_ids, sub)
    return jnp.take_along_axis(idx, _max_first_index(s)[1][:, None], axis=1)[:, 0]


def _chunk_argmax(x: jax.Array, blocks: TargetBlocks) -> tuple[jax.Array, jax.Array]:
    """Max-then-locate: the block scan keeps each sample's best score and the sub-block holding it.

    A plain max over the fused score tile vectorises (0.18 ns per pair in 2-D on 2 cores)
    where locating the argmax does not, so the first index is only found among the
    ``block / sub`` sub-block maxima, and at the end among the ``sub`` targets of the
    winning sub-block, re-scored.  Ties: the first sub-block, then the first target in it.
    """
    if x.shape[-1] > _FUSED_MAX_DIM:
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


def _chunk_top_k(x: jax.Array, blocks: TargetBlocks, k: int) -> tuple[jax.Array, jax.Array]:
    n = x.shape[0]
    b = blocks.y.shape[1]

    def step(carry, inp):
        vals, idxs = carry
        yb, hb, offset = inp
        s = _block_scores(x, yb, hb)
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


def _chunk_top2(x: jax.Array, blocks: TargetBlocks):
    """Best and second-best score and index, max-then-locate as in :func:`_chunk_argmax`.

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


def _map_chunks(fn, x: jax.Array, chunk_size: int):
    """Apply ``fn`` to row chunks of ``x`` with ``lax.map`` and concatenate the results."""
    n, d = x.shape
    c = int(chunk_size)
    if c < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    xp = _pad_rows(x, c, 0.0).reshape(-1, c, d)
    out = lax.map(fn, xp)
    return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[:n], out)


def _check(x, targets_dim):
    if x.ndim != 2:
        raise ValueError(f"samples must have shape (n, d), got {x.shape}")
    if x.shape[1] != targets_dim:
        raise ValueError(f"samples have dimension {x.shape[1]} but targets have dimension {targets_dim}")


def _as_blocks(targets, h, block_size) -> TargetBlocks:
    if isinstance(targets, TargetBlocks):
        return targets if h is None else with_heights(targets, h)
    return block_targets(targets, h, block_size)


def _sizes(x, blocks, chunk_size):
    n, d = x.shape
    return default_chunk_size(n, d) if chunk_size is None else int(chunk_size)


# ---------------------------------------------------------------------------
# public kernels


@partial(jax.jit, static_argnames=("chunk_size",))
def _max_and_cells_blocks(x, blocks: TargetBlocks, chunk_size: int):
    return _map_chunks(lambda xc: _chunk_argmax(xc, blocks), x, chunk_size)


def max_and_cells(x, targets, h=None, *, block_size=None, chunk_size=None):
    """``(u_h(x), cell(x))``: the max score (n,) and its argmax (n,) int32, tiled.

    ``targets`` is a (K, d) array with heights ``h`` (K,), or a prebuilt
    :class:`TargetBlocks` (then ``h``, if given, replaces its heights).
    """
    x = jnp.asarray(x)
    blocks = _as_blocks(targets, h, block_size)
    _check(x, blocks.y.shape[2])
    x = x.astype(blocks.y.dtype)
    return _max_and_cells_blocks(x, blocks, _sizes(x, blocks, chunk_size))


def assign_cells(x, targets, h=None, *, block_size=None, chunk_size=None) -> jax.Array:
    """Index (n,) int32 of the power cell of each row of ``x``: argmax_i <x, y_i> + h_i."""
    return max_and_cells(x, targets, h, block_size=block_size, chunk_size=chunk_size)[1]


@partial(jax.jit, static_argnames=("chunk_size",))
def _top2_blocks(x, blocks: TargetBlocks, chunk_size: int):
    return _map_chunks(lambda xc: _chunk_top2(xc, blocks), x, chunk_size)


def top2_cells(x, targets, h=None, *, block_size=None, chunk_size=None):
    """Best and runner-up cells: ``(s1, i1, s2, i2)``, each (n,); tiled like :func:`assign_cells`.

    ``s1 - s2`` is the distance (in score) to the nearest facet; the solver's
    facet-area Hessian is estimated from it.
    """
    x = jnp.asarray(x)
    blocks = _as_blocks(targets, h, block_size)
    if blocks.num_targets < 2:
        raise ValueError("top2_cells needs at least 2 targets")
    _check(x, blocks.y.shape[2])
    x = x.astype(blocks.y.dtype)
    return _top2_blocks(x, blocks, _sizes(x, blocks, chunk_size))


@partial(jax.jit, static_argnames=("k", "chunk_size"))
def _top_k_blocks(x, blocks: TargetBlocks, k: int, chunk_size: int):
    return _map_chunks(lambda xc: _chunk_top_k(xc, blocks, k), x, chunk_size)


def top_k_cells(x, targets, h=None, k: int = 2, *, block_size=None, chunk_size=None):
    """The ``k`` best scores (n, k), descending, and their target indices (n, k) int32.

    Tiled with a running top-k merge across target blocks; ties go to the lower index.
    """
    x = jnp.asarray(x)
    k = int(k)
    if isinstance(targets, TargetBlocks):
        num = targets.num_targets
    else:
        num = jnp.shape(targets)[0]
    if not 1 <= k <= num:
        raise ValueError(f"k must be between 1 and the number of targets ({num}), got {k}")
    if block_size is not None:
        block_size = max(int(block_size), k)
    blocks = _as_blocks(targets, h, block_size)
    if blocks.y.shape[1] < k:  # a block must hold at least k candidates
        blocks = block_targets(blocks.y.reshape(-1, blocks.y.shape[2])[: blocks.num_targets],
                               blocks.h.reshape(-1)[: blocks.num_targets], k)
    _check(x, blocks.y.shape[2])
    x = x.astype(blocks.y.dtype)
    return _top_k_blocks(x, blocks, k, _sizes(x, blocks, chunk_size))


@partial(jax.jit, static_argnames=("chunk_size", "num_targets"))
def _counts_blocks(x, blocks: TargetBlocks, chunk_size: int, num_targets: int):
    _, idx = _map_chunks(lambda xc: _chunk_argmax(xc, blocks), x, chunk_size)
    return jnp.bincount(idx, length=num_targets)


def cell_counts(x, targets, h=None, *, block_size=None, chunk_size=None) -> jax.Array:
    """Number of samples (K,) int32 falling in each power cell; never builds N x K."""
    x = jnp.asarray(x)
    blocks = _as_blocks(targets, h, block_size)
    _check(x, blocks.y.shape[2])
    x = x.astype(blocks.y.dtype)
    return _counts_blocks(x, blocks, _sizes(x, blocks, chunk_size), blocks.num_targets)


def cell_masses(x, targets, h=None, *, block_size=None, chunk_size=None) -> jax.Array:
    """Empirical mass (K,) of each cell under the samples ``x`` (counts / n)."""
    counts = cell_counts(x, targets, h, block_size=block_size, chunk_size=chunk_size)
    return counts.astype(jnp.float32) / jnp.asarray(x).shape[0]
