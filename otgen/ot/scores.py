"""Tiled scoring kernels for power diagrams: argmax, top-k and cell histograms.

The score of sample ``x`` against target ``i`` is ``<x, y_i> + h_i``; the cell
of ``x`` is its argmax.  The full ``N x K`` score matrix is never built:
samples are processed in chunks (``lax.map``) and targets in blocks
(``lax.scan``) with a running (max, argmax) or running top-k carry, so memory
is ``O(chunk_size * block_size)`` on top of the inputs.  This module holds the
targets' block layout (:class:`TargetBlocks`) and the public kernels; the
per-chunk scans (fused or matmul tile scores, max-then-locate) are
:mod:`otgen.ot.score_tiles`.

Ties are broken towards the lowest target index, exactly as ``jnp.argmax`` on
the dense matrix does, so the tiled and dense paths return the same indices
(scores agree to float32 rounding: XLA may contract multiply-adds into FMAs
differently in different fusions).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from otgen.ot.score_tiles import (FUSED_MAX_DIM, SUB_BLOCK, block_scores, chunk_argmax, chunk_top2, chunk_top_k,
                                  map_chunks, pad_rows)

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
    "with_heights",
    "as_blocks",
    "check_samples",
]


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
    b = 512 if dim > FUSED_MAX_DIM else 2048
    return int(max(1, min(-(-num_targets // SUB_BLOCK) * SUB_BLOCK, b)))


def default_chunk_size(num_samples: int, dim: int) -> int:
    c = 512
    return int(max(1, min(num_samples, c)))


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
    y = pad_rows(targets, b, 0.0).reshape(-1, b, d)
    hb = pad_rows(h, b, -jnp.inf).reshape(-1, b)
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
    return block_scores(x, targets, h)


def check_samples(x, targets_dim):
    """A ValueError unless ``x`` is (n, d) with the targets' ``d``."""
    if x.ndim != 2:
        raise ValueError(f"samples must have shape (n, d), got {x.shape}")
    if x.shape[1] != targets_dim:
        raise ValueError(f"samples have dimension {x.shape[1]} but targets have dimension {targets_dim}")


def as_blocks(targets, h, block_size) -> TargetBlocks:
    """``targets`` as :class:`TargetBlocks`: built from (K, d) targets, or prebuilt (then ``h``, if given,
    replaces its heights)."""
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
    return map_chunks(lambda xc: chunk_argmax(xc, blocks), x, chunk_size)


def max_and_cells(x, targets, h=None, *, block_size=None, chunk_size=None):
    """``(u_h(x), cell(x))``: the max score (n,) and its argmax (n,) int32, tiled.

    ``targets`` is a (K, d) array with heights ``h`` (K,), or a prebuilt
    :class:`TargetBlocks` (then ``h``, if given, replaces its heights).
    """
    x = jnp.asarray(x)
    blocks = as_blocks(targets, h, block_size)
    check_samples(x, blocks.y.shape[2])
    x = x.astype(blocks.y.dtype)
    return _max_and_cells_blocks(x, blocks, _sizes(x, blocks, chunk_size))


def assign_cells(x, targets, h=None, *, block_size=None, chunk_size=None) -> jax.Array:
    """Index (n,) int32 of the power cell of each row of ``x``: argmax_i <x, y_i> + h_i."""
    return max_and_cells(x, targets, h, block_size=block_size, chunk_size=chunk_size)[1]


@partial(jax.jit, static_argnames=("chunk_size",))
def _top2_blocks(x, blocks: TargetBlocks, chunk_size: int):
    return map_chunks(lambda xc: chunk_top2(xc, blocks), x, chunk_size)


def top2_cells(x, targets, h=None, *, block_size=None, chunk_size=None):
    """Best and runner-up cells: ``(s1, i1, s2, i2)``, each (n,); tiled like :func:`assign_cells`.

    ``s1 - s2`` is the distance (in score) to the nearest facet; the solver's
    facet-area Hessian is estimated from it.
    """
    x = jnp.asarray(x)
    blocks = as_blocks(targets, h, block_size)
    if blocks.num_targets < 2:
        raise ValueError("top2_cells needs at least 2 targets")
    check_samples(x, blocks.y.shape[2])
    x = x.astype(blocks.y.dtype)
    return _top2_blocks(x, blocks, _sizes(x, blocks, chunk_size))


@partial(jax.jit, static_argnames=("k", "chunk_size"))
def _top_k_blocks(x, blocks: TargetBlocks, k: int, chunk_size: int):
    return map_chunks(lambda xc: chunk_top_k(xc, blocks, k), x, chunk_size)


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
    blocks = as_blocks(targets, h, block_size)
    if blocks.y.shape[1] < k:  # a block must hold at least k candidates
        blocks = block_targets(blocks.y.reshape(-1, blocks.y.shape[2])[: blocks.num_targets],
                               blocks.h.reshape(-1)[: blocks.num_targets], k)
    check_samples(x, blocks.y.shape[2])
    x = x.astype(blocks.y.dtype)
    return _top_k_blocks(x, blocks, k, _sizes(x, blocks, chunk_size))


@partial(jax.jit, static_argnames=("chunk_size", "num_targets"))
def _counts_blocks(x, blocks: TargetBlocks, chunk_size: int, num_targets: int):
    _, idx = map_chunks(lambda xc: chunk_argmax(xc, blocks), x, chunk_size)
    return jnp.bincount(idx, length=num_targets)


def cell_counts(x, targets, h=None, *, block_size=None, chunk_size=None) -> jax.Array:
    """Number of samples (K,) int32 falling in each power cell; never builds N x K."""
    x = jnp.asarray(x)
    blocks = as_blocks(targets, h, block_size)
    check_samples(x, blocks.y.shape[2])
    x = x.astype(blocks.y.dtype)
    return _counts_blocks(x, blocks, _sizes(x, blocks, chunk_size), blocks.num_targets)


def cell_masses(x, targets, h=None, *, block_size=None, chunk_size=None) -> jax.Array:
    """Empirical mass (K,) of each cell under the samples ``x`` (counts / n)."""
    counts = cell_counts(x, targets, h, block_size=block_size, chunk_size=chunk_size)
    return counts.astype(jnp.float32) / jnp.asarray(x).shape[0]
