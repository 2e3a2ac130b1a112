"""The AE-OT (pyOMT) recipe as a baseline optimizer: the same unscrambled Sobol points every step, Adam
without bias correction, h re-centred each step, the sample count doubled after 30 steps without a
new best ||g||_2, stop at ||g||_2 < 2e-3 (the interface it implements: :mod:`otgen.ot.optim`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from otgen.ot.optim import Estimate

__all__ = ["AdamState", "AEOTRecipe", "aeot_recipe"]


class AdamState(NamedTuple):
    m: jax.Array
    v: jax.Array
    best_l2: float
    bad_steps: int


@dataclasses.dataclass(frozen=True)
class AEOTRecipe:
    name: str = "aeot"
    lr: float = 1e-4
    sampling: str = "sobol"  # the same unscrambled Sobol points every step
    init_h: str = "zero"
    batch_size: int = 1000  # bat_size_n; the step uses num_bat * bat_size_n points
    max_batch_size: int = 1 << 26
    patience: int = 30  # steps without a new best ||g||_2 before doubling the samples
    gtol: float = 2e-3  # stop at ||w - nu||_2 < gtol
    max_steps: int = 100_000
    needs_hessian: bool = False

    def init(self, h0: jax.Array) -> AdamState:
        return AdamState(jnp.zeros_like(h0), jnp.zeros_like(h0), float("inf"), 0)

    def update(self, est: Estimate, state: AdamState, h: jax.Array, nu: jax.Array, probe=None, capture=None,
               score_gap=None):
        m, v, new_h = _adam_no_bias_correction(est.masses - nu, state.m, state.v, h, self.lr)
        l2 = float(est.l2)
        if l2 <= state.best_l2:
            best, bad = l2, 0
        else:
            best, bad = state.best_l2, state.bad_steps + 1
        return new_h, AdamState(m, v, best, bad), self.lr

    def next_batch_size(self, est: Estimate, state: AdamState, n: int, tol: float, step_size: float):
        if state.bad_steps > self.patience:
            return state._replace(best_l2=float("inf"), bad_steps=0), min(2 * n, self.max_batch_size)
        return state, n

    def should_stop(self, est: Estimate, tol: float, state) -> bool:
        return float(est.l2) < self.gtol

    def unreachable(self, est: Estimate, n: int, tol: float) -> bool:
        return False


@jax.jit
def _adam_no_bias_correction(g, m, v, h, lr):
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    h = h - lr * m / (jnp.sqrt(v) + 1e-8)
    return m, v, h - jnp.mean(h)


def aeot_recipe(lr: float = 1e-4, batch_size: int = 1000, **kwargs) -> AEOTRecipe:
    """The AE-OT (pyOMT) recipe as a baseline; ``lr`` 5e-2 for 100-d latents, 1e-4 / 2e-5 for 2-D toys."""
    return AEOTRecipe(lr=lr, batch_size=batch_size, **kwargs)
