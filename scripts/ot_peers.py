"""The peers' semi-discrete OT solvers, run on our problems and read back as our maps.

Shared by ``scripts/bench_ot.py`` (large K) and ``scripts/peer_sdfm.py`` (flow matching on ring8).
OTT-JAX comes with the optional ``[peers]`` extra; POT is a default dependency.

Both peers maximise the semi-dual in a potential ``g`` for the cost |x - y|^2: the cell of x is
argmax_j g_j - |x - y_j|^2 = argmax_j <x, y_j> + h_j with h_j = (g_j - |y_j|^2) / 2, our heights
(:func:`as_map`).  :func:`pairs_agree` checks that conversion on the peer's own assignment.

Neither peer takes a wall-time budget, so :func:`run_for_budget` sizes the iteration count from a
short timed run of the same setting, then reruns with more iterations while a run fills less than 85%
of the budget (a short probe's fixed costs make the first guess too small); the table prints the
kept run's measured wall time, compile included (ours is timed the same way).
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from otgen.ot import BrenierMap, Gaussian


def as_map(g, targets) -> BrenierMap:
    """A peer's potential g (cost |x - y|^2, uniform target weights) as our heights on a Gaussian source."""
    y = np.asarray(targets, np.float32)
    h = (np.asarray(g, np.float64) - np.sum(y.astype(np.float64) ** 2, axis=1)) / 2
    return BrenierMap(jnp.asarray(y), jnp.full(len(y), 1.0 / len(y)), jnp.asarray(h - h.mean(), jnp.float32),
                      source=Gaussian(y.shape[1]))


def pairs_agree(peer_assign: np.ndarray, x: np.ndarray, bmap: BrenierMap) -> tuple[float, float]:
    """(fraction of the peer's assignments of ``x`` our map reproduces, the largest float64 score gap
    between the two cells chosen where they differ): points within round-off of a facet may fall
    either way (both sides compute in float32); anything more means the conversion is wrong."""
    x = np.asarray(x, np.float64)
    ours = np.asarray(bmap.assign(x.astype(np.float32)))
    y, h = np.asarray(bmap.targets, np.float64), np.asarray(bmap.h, np.float64)
    differ = ours != peer_assign
    score = lambda idx: np.sum(x[differ] * y[idx[differ]], axis=1) + h[idx[differ]]  # noqa: E731
    gap = float(np.max(np.abs(score(ours) - score(peer_assign)))) if differ.any() else 0.0
    return float(np.mean(~differ)), gap


# ------------------------------------------------------------------------------------------------
# OTT-JAX: ott.solvers.linear.semidiscrete.SemidiscreteSolver (SGD / Adam on the semi-dual, one fresh
# batch per step, optionally entropic)


def solve_ott(targets, key, *, iterations: int, batch_size: int, optimizer: str = "sgd", lr: float = 1e-2,
              epsilon: float | None = 0.0):
    """OTT-JAX's solver from g = 0 on a standard-normal source; returns (output, wall seconds).
    ``epsilon=None`` is the geometry's default entropic regularisation.  The call is jit-compiled once
    per setting (as a user would), and its error checks run once, at the end (error_eval_every =
    iterations), so the time is its optimisation's; the first call of a setting includes its compile."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(_ott_solver(iterations, batch_size, optimizer, lr, epsilon)(key, jnp.asarray(targets)))
    return out, time.perf_counter() - t0


@functools.lru_cache(maxsize=None)
def _ott_solver(iterations: int, batch_size: int, optimizer: str, lr: float, epsilon: float | None):
    from ott.geometry.semidiscrete_pointcloud import SemidiscretePointCloud
    from ott.problems.linear.semidiscrete_linear_problem import SemidiscreteLinearProblem
    from ott.solvers.linear.semidiscrete import SemidiscreteSolver

    tx = {"sgd": optax.sgd, "adam": optax.adam}[optimizer](lr)
    solver = SemidiscreteSolver(num_iterations=iterations, batch_size=batch_size, optimizer=tx,
                                error_eval_every=iterations)

    def solve(key, y):
        geom = SemidiscretePointCloud(lambda rng, shape, dtype=None: jax.random.normal(rng, shape), y,
                                      epsilon=epsilon)
        return solver(key, SemidiscreteLinearProblem(geom))

    return jax.jit(solve)


def ott_pairs(out, n: int = 4096, seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    """(source points, their cells) by OTT's own hard assignment."""
    sampled = out.sample(jax.random.key(seed), n)
    return np.asarray(sampled.geom.x), np.asarray(sampled.paired_indices[1])


# ------------------------------------------------------------------------------------------------
# POT: ot.semidiscrete.solve_semidiscrete (projected averaged SGD on the semi-dual, DRAG schedule of
# decreasing entropic regularisation; Genans et al., NeurIPS 2025)


def solve_pot(targets, *, iterations: int, batch_size: int, seed: int = 0, reg: float = 0.0, **kw):
    """POT's solver (numpy backend) on a standard-normal source; returns (g, wall seconds)."""
    from ot.semidiscrete import solve_semidiscrete

    y = np.asarray(targets, np.float64)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    g = solve_semidiscrete(y, sampler_source=lambda n: rng.standard_normal((n, y.shape[1])), reg=reg,
                           max_iter=int(iterations), batch_size=batch_size, **kw)
    return np.asarray(g), time.perf_counter() - t0


def pot_pairs(targets, g, n: int = 4096, seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    """(source points, their cells) by POT's own hard map (each point sent to its cell's atom)."""
    from ot.semidiscrete import semidiscrete_ot_map

    y = np.asarray(targets, np.float64)
    x = np.random.default_rng(seed).standard_normal((n, y.shape[1]))
    moved = semidiscrete_ot_map(y, x, np.asarray(g, np.float64))  # exactly the atoms, so the nearest is the cell
    cells = np.concatenate([np.argmin(((m[:, None, :] - y[None]) ** 2).sum(-1), axis=1)
                            for m in np.array_split(moved, max(1, len(moved) // 256))])
    return x, cells


def iterations_for_budget(run: Callable[[int], float], budget: float, probe: int) -> int:
    """Iterations of ``run`` (iterations -> wall seconds) that fill ``budget`` seconds, timed on ``probe``
    iterations after a first call of the same size has compiled everything."""
    run(probe)
    return max(probe, int(budget * probe / max(run(probe), 1e-9)))


def run_for_budget(run: Callable[[int], tuple], budget: float, probe: int, *, fill: float = 0.85,
                   tries: int = 3) -> tuple:
    """``run(iterations) -> (result, seconds)`` with as many iterations as fill ``budget`` seconds:
    first sized by :func:`iterations_for_budget`, then, while a run took less than ``fill * budget``,
    rescaled by budget / seconds and rerun (at most ``tries`` runs).  Returns (result, seconds,
    iterations) of the last run."""
    n = iterations_for_budget(lambda k: run(k)[1], budget, probe)
    for _ in range(tries):
        result, sec = run(n)
        if sec >= fill * budget:
            break
        n = max(n + 1, int(n * 0.95 * budget / max(sec, 1e-9)))
    return result, sec, n
