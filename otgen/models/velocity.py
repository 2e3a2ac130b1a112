"""The velocity field of the flow-matching generators (Flax linen).

An MLP of ``depth`` hidden layers of ``width`` SELU units on ``[x, t]`` -- the
network of TorchCFM's 2-D examples (``torchcfm.models.models.MLP``, 3 x 64 SELU,
time appended as one input), widened by default for the 25-mode toys and the
16-d autoencoder codes.  The output layer starts at zero, so training starts
from the zero field (the identity flow), not from a random one.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["VelocityMLP"]


class VelocityMLP(nn.Module):
    dim: int
    width: int = 256
    depth: int = 3

    @nn.compact
    def __call__(self, x, t):
        t = jnp.asarray(t, x.dtype)  # a scalar or one time per row
        t = jnp.broadcast_to(t[..., None] if t.ndim else t, x.shape[:-1] + (1,))
        h = jnp.concatenate([x, t], axis=-1)
        for _ in range(self.depth):
            h = nn.selu(nn.Dense(self.width)(h))
        return nn.Dense(self.dim, kernel_init=nn.initializers.zeros)(h)
