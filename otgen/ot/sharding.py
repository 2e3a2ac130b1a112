"""Multi-device Monte Carlo: samples sharded over one mesh axis, targets over another.

A mesh has two axes, ``"samples"`` and ``"targets"``.  Each device draws and
scores its share of the samples (the *same* global sample indices a single
device would use, so results are reproducible and match the single-device
estimate), against its block-shard of the targets.  Per-sample winners are
combined across the target axis with ``pmax``/``pmin`` (argmax, ties to the
lowest global index, exactly as on one device) or an ``all_gather`` merge
(top-2); histograms are summed across the sample axis with ``psum``.

Multi-host: call ``jax.distributed.initialize(...)`` in every process before
building the mesh from ``jax.devices()`` (all processes' devices) and run the
same program everywhere; only ``shard_map`` collectives are used.  On CPU set
``jax.config.update("jax_cpu_collectives_implementation", "gloo")`` first.
Tested with two processes on loopback (tests/test_ot_multihost.py); real
multi-machine networks and GPUs are untested here.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from otgen.ot import score_tiles, scores

__all__ = ["SAMPLES", "TARGETS", "one_device_per_core", "default_mesh", "make_mesh", "shard_blocks", "argmax_cells",
           "top2_cells", "assign_cells_sharded", "cell_counts_sharded"]

SAMPLES = "samples"
TARGETS = "targets"
_BIG = np.iinfo(np.int32).max


def one_device_per_core() -> int:
    """Ask XLA for one CPU device per core this process may use (``XLA_FLAGS``), unless the flags already
    set a count; returns the count asked for (0: left alone).  Only effective before JAX creates its CPU
    client, so the CLI calls it first thing.

    Why: XLA's CPU client spreads one computation over the cores with its own thread pool, which the
    Monte-Carlo step's small (512 x 512) score tiles use poorly; one device per core, each scoring its
    share of the samples (:func:`default_mesh`), is 1.40x faster at K = 60,000, d = 16 on 2 cores
    (``python scripts/bench_ot.py --section devices``), and computations on one device are unaffected.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return 0
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n > 1:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return n if n > 1 else 0


def default_mesh() -> Mesh | None:
    """A mesh with every local device on the sample axis, or None with one device: what a large
    Monte-Carlo fit runs on (the samples, and so the cell counts, are those of one device)."""
    return make_mesh() if jax.local_device_count() > 1 else None


def make_mesh(sample_devices: int | None = None, target_devices: int = 1, devices=None) -> Mesh:
    """A ``(samples, targets)`` mesh; by default all devices on the sample axis."""
    devices = list(jax.devices() if devices is None else devices)
    target_devices = int(target_devices)
    if sample_devices is None:
        sample_devices = len(devices) // max(target_devices, 1)
    sample_devices = int(sample_devices)
    if sample_devices < 1 or target_devices < 1:
        raise ValueError(f"mesh axes must be >= 1, got samples={sample_devices}, targets={target_devices}")
    if sample_devices * target_devices > len(devices):
        raise ValueError(f"mesh {sample_devices} x {target_devices} needs more devices than the {len(devices)} available")
    grid = np.asarray(devices[: sample_devices * target_devices], dtype=object).reshape(sample_devices, target_devices)
    return Mesh(grid, (SAMPLES, TARGETS))


def check_mesh(mesh: Mesh) -> tuple[int, int]:
    if not isinstance(mesh, Mesh) or set(mesh.axis_names) != {SAMPLES, TARGETS}:
        raise ValueError(f"mesh must be a jax.sharding.Mesh with axes ('{SAMPLES}', '{TARGETS}'); use make_mesh()")
    return int(mesh.shape[SAMPLES]), int(mesh.shape[TARGETS])


def shard_blocks(blocks: scores.TargetBlocks, mesh: Mesh) -> scores.TargetBlocks:
    """Pad the block count to a multiple of the target axis and place blocks across it."""
    _, t = check_mesh(mesh)
    nb, b, d = blocks.y.shape
    pad = (-nb) % t
    y = jnp.pad(blocks.y, ((0, pad), (0, 0), (0, 0)))
    h = jnp.pad(blocks.h, ((0, pad), (0, 0)), constant_values=-jnp.inf)
    y = jax.device_put(y, NamedSharding(mesh, P(TARGETS)))
    h = jax.device_put(h, NamedSharding(mesh, P(TARGETS)))
    return scores.TargetBlocks(y, h, blocks.num_targets)


def _target_offset(blocks: scores.TargetBlocks, target_axis):
    if target_axis is None:
        return jnp.int32(0)
    nb_local, b = blocks.y.shape[:2]
    return lax.axis_index(target_axis).astype(jnp.int32) * (nb_local * b)


def argmax_cells(x, blocks: scores.TargetBlocks, chunk_size: int, target_axis=None):
    """(max score, global argmax) per row of ``x``; inside shard_map, combined across ``target_axis``."""
    m, i = score_tiles.map_chunks(lambda xc: score_tiles.chunk_argmax(xc, blocks), x, chunk_size)
    if target_axis is None:
        return m, i
    i = i + _target_offset(blocks, target_axis)
    gm = lax.pmax(m, target_axis)
    gi = lax.pmin(jnp.where(m == gm, i, _BIG), target_axis)  # ties: lowest global index, as on one device
    return gm, gi


def _merge_top2(a, b):
    """Merge two (s1, i1, s2, i2) candidates where every index of ``a`` is below those of ``b``."""
    m1, i1, m2, i2 = a
    v1, j1, v2, j2 = b
    take = v1 > m1
    n1, k1 = jnp.where(take, v1, m1), jnp.where(take, j1, i1)
    c_v, c_i = jnp.where(take, m1, v1), jnp.where(take, i1, j1)
    d_v, d_i = jnp.where(take, v2, m2), jnp.where(take, j2, i2)
    take2 = jnp.where(take, c_v >= d_v, c_v > d_v)
    return n1, k1, jnp.where(take2, c_v, d_v), jnp.where(take2, c_i, d_i)


def top2_cells(x, blocks: scores.TargetBlocks, chunk_size: int, target_axis=None):
    """(s1, i1, s2, i2) per row of ``x``; inside shard_map, merged across ``target_axis``."""
    s1, i1, s2, i2 = score_tiles.map_chunks(lambda xc: score_tiles.chunk_top2(xc, blocks), x, chunk_size)
    if target_axis is None:
        return s1, i1, s2, i2
    off = _target_offset(blocks, target_axis)
    parts = [lax.all_gather(a, target_axis) for a in (s1, i1 + off, s2, i2 + off)]
    out = tuple(p[0] for p in parts)
    for t in range(1, parts[0].shape[0]):  # shards hold increasing index ranges
        out = _merge_top2(out, tuple(p[t] for p in parts))
    return out


def _pad_samples(x, multiple):
    pad = (-x.shape[0]) % multiple
    return jnp.pad(x, ((0, pad), (0, 0))) if pad else x


def assign_cells_sharded(x, targets, h, mesh: Mesh, *, block_size=None, chunk_size=None):
    """Cell index of each row of ``x`` with samples and targets sharded over ``mesh``; equals
    :func:`otgen.ot.scores.assign_cells` exactly."""
    s, _ = check_mesh(mesh)
    x = jnp.asarray(x, jnp.float32)
    blocks = scores.as_blocks(targets, h, block_size)
    scores.check_samples(x, blocks.y.shape[2])
    blocks = shard_blocks(blocks, mesh)
    n = x.shape[0]
    xp = _pad_samples(x, s)
    chunk = scores.default_chunk_size(xp.shape[0] // s, x.shape[1]) if chunk_size is None else int(chunk_size)
    fn = jax.jit(jax.shard_map(lambda xs, bl: argmax_cells(xs, bl, chunk, TARGETS)[1], mesh=mesh,
                               in_specs=(P(SAMPLES), scores.TargetBlocks(P(TARGETS), P(TARGETS), None)),
                               out_specs=P(SAMPLES), check_vma=False))
    return fn(xp, blocks)[:n]


def cell_counts_sharded(x, targets, h, mesh: Mesh, *, block_size=None, chunk_size=None):
    """Per-cell sample counts (K,), histograms reduced across the sample axis with psum."""
    s, _ = check_mesh(mesh)
    x = jnp.asarray(x, jnp.float32)
    blocks = scores.as_blocks(targets, h, block_size)
    scores.check_samples(x, blocks.y.shape[2])
    k = blocks.num_targets
    blocks = shard_blocks(blocks, mesh)
    n = x.shape[0]
    xp = _pad_samples(x, s)
    n_local = xp.shape[0] // s
    chunk = scores.default_chunk_size(n_local, x.shape[1]) if chunk_size is None else int(chunk_size)

    def local(xs, bl):
        _, idx = argmax_cells(xs, bl, chunk, TARGETS)
        # padding rows (global index >= n) are not counted
        rows = lax.axis_index(SAMPLES) * n_local + jnp.arange(n_local)
        return lax.psum(jnp.bincount(jnp.where(rows < n, idx, k), length=k + 1)[:k], SAMPLES)

    fn = jax.jit(jax.shard_map(local, mesh=mesh,
                               in_specs=(P(SAMPLES), scores.TargetBlocks(P(TARGETS), P(TARGETS), None)),
                               out_specs=P(), check_vma=False))
    return fn(xp, blocks)
