"""Fixed-step ODE integrators for sampling flows: x' = v(x, t) from t = 0 to t = 1.

    x1 = integrate(v, x0, steps=32, method="rk4")   # v(x, t) with t a scalar array

A fixed step keeps the cost known in advance and the sampler jit-compiled: the
number of velocity evaluations is ``steps * STAGES[method]`` (:func:`nfe`), which
reports quote next to every flow's figures.  Orders: Euler 1, midpoint 2, RK4 4.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["METHODS", "STAGES", "integrate", "nfe"]

STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}  # velocity evaluations per step
METHODS = tuple(STAGES)


def _step(method: str, v: Callable, x, t, dt):
    if method == "euler":
        return x + dt * v(x, t)
    if method == "midpoint":
        return x + dt * v(x + 0.5 * dt * v(x, t), t + 0.5 * dt)
    k1 = v(x, t)
    k2 = v(x + 0.5 * dt * k1, t + 0.5 * dt)
    k3 = v(x + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = v(x + dt * k3, t + dt)
    return x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def integrate(v: Callable, x0, *, steps: int, method: str = "rk4", t0: float = 0.0, t1: float = 1.0):
    """``x(t1)`` for ``x(t0) = x0`` under ``x' = v(x, t)``, by ``steps`` equal steps of ``method``."""
    if method not in STAGES:
        raise ValueError(f"ODE method must be one of {', '.join(METHODS)}, got {method!r}")
    if int(steps) < 1:
        raise ValueError(f"ODE steps must be >= 1, got {steps}")
    dt = (t1 - t0) / int(steps)

    def body(i, x):
        return _step(method, v, x, t0 + i * dt, dt)

    return jax.lax.fori_loop(0, int(steps), body, jnp.asarray(x0))


def nfe(steps: int, method: str) -> int:
    """Velocity evaluations of one :func:`integrate` call."""
    return int(steps) * STAGES[method]
