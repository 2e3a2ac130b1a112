"""Losses of the GAN family, as pure functions of discriminator outputs.

* GAN (Goodfellow et al. 2014), with the non-saturating generator loss: the
  discriminator minimises ``softplus(-D(x)) + softplus(D(G(z)))`` (the logistic
  loss on logits), the generator minimises ``softplus(-D(G(z)))`` = -log sigmoid.
* WGAN (Arjovsky et al. 2017): the critic minimises ``mean D(G(z)) - mean D(x)``
  (the negated Wasserstein-1 estimate); the generator minimises ``-mean D(G(z))``.
  The Lipschitz constraint comes from :func:`clip_params` (WGAN) or from
  :func:`gradient_penalty` (WGAN-GP, Gulrajani et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "gan_discriminator_loss", "gan_generator_loss",
    "wgan_critic_loss", "wgan_generator_loss",
    "gradient_penalty", "clip_params",
]


def gan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Binary cross-entropy of D on real (label 1) and fake (label 0) logits, each averaged."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def gan_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss -log D(G(z)); strong gradients even when D wins."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def wgan_critic_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wgan_generator_loss(fake_scores: jax.Array) -> jax.Array:
    return -jnp.mean(fake_scores)


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array,
                     key: jax.Array) -> jax.Array:
    """WGAN-GP penalty ``mean_b (||grad_x critic(x_hat_b)|| - 1)^2``.

    ``x_hat_b = real_b + alpha_b (fake_b - real_b)`` with one ``alpha_b ~ U[0, 1]`` per
    sample.  ``critic`` maps a batch to one score per sample and must treat the
    samples independently (no batch norm), so the gradient of the summed scores
    is the per-sample input gradient.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {real.shape} and fake {fake.shape} differ in shape")
    alpha = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    x_hat = real + alpha * (fake - real)
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
    sq_norm = jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=1)
    # the tiny floor keeps d sqrt finite at a zero gradient; it shifts the norm by < 1e-6
    return jnp.mean((jnp.sqrt(sq_norm + 1e-12) - 1.0) ** 2)


def clip_params(params, bound: float):
    """Clamp every parameter (weights and biases) to [-bound, bound], as WGAN does after each critic step."""
    return jax.tree_util.tree_map(lambda p: jnp.clip(p, -bound, bound), params)
