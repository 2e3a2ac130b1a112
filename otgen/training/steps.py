"""The jitted GAN training step: networks, optimiser, :class:`GANState` and the step built on them.

:func:`make_train_step` is one iteration (``n_critic`` critic updates, then the generator's) on given
real minibatches; :func:`make_fit_step` draws those minibatches *with replacement* from the data
array, inside the jitted step, with a key split off the training state's key.  The whole run is thus
a function of (config, data, seed): resuming from a checkpoint reproduces the uninterrupted run
exactly, because the key is part of the checkpointed state.

Steps run in chunks (:func:`make_chunk_runner`: ``lax.scan`` of up to ``log_every`` steps under one
``jax.jit``): per-step Python dispatch costs more than the 2-D networks themselves on CPU
(``scripts/bench_gan.py`` measures this).  The compiled functions are cached per configuration with
the fields they never read (budget, seed, sampling protocol) fixed, see :func:`compiled_key`.
The networks and losses themselves live in :mod:`otgen.models.gan` and :mod:`otgen.models.gan_losses`.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from otgen.models.gan import (DCGANDiscriminator, DCGANGenerator, MaxoutDiscriminator, MLPGenerator, ReLUMLP,
                              StackedDCGANDiscriminator, StackedDCGANGenerator, pack)
from otgen.models.gan_losses import (clip_params, gan_discriminator_loss, gan_generator_loss,
                                     gradient_penalty, wgan_critic_loss, wgan_generator_loss)
from otgen.training.config import GANConfig

__all__ = ["GANState", "build_networks", "make_optimizer", "init_state", "make_train_step", "make_fit_step",
           "make_chunk_runner", "generate_in_training_mode", "draw_noise", "packed_shape", "compiled_key"]


class GANState(struct.PyTreeNode):
    """Everything that changes during training; a pytree, checkpointed whole."""

    g_params: Any
    g_stats: Any       # generator batch-norm running statistics
    d_params: Any
    g_opt: Any
    d_opt: Any
    step: jax.Array    # generator updates done (int32 scalar)
    key: jax.Array     # typed PRNG key of the run


def build_networks(cfg: GANConfig):
    """(generator, discriminator) Flax modules for ``cfg``."""
    if cfg.arch == "dcgan_stacked":
        return (StackedDCGANGenerator(dim=cfg.conv_dim, channels=cfg.sample_shape[-1], init_std=cfg.init_std,
                                      bn_momentum=cfg.bn_momentum),
                StackedDCGANDiscriminator(dim=cfg.conv_dim))
    if cfg.arch == "relu_mlp":
        g = ReLUMLP(out_dim=cfg.sample_shape[0], hidden=cfg.g_hidden, layers=cfg.g_layers)
        d = ReLUMLP(out_dim=1, hidden=cfg.d_hidden, layers=cfg.d_layers, squeeze=True)
    elif cfg.arch == "mlp":
        g = MLPGenerator(out_dim=cfg.sample_shape[0], hidden=cfg.g_hidden, layers=cfg.g_layers,
                         init_std=cfg.init_std, bn_momentum=cfg.bn_momentum)
        d = MaxoutDiscriminator(hidden=cfg.d_hidden, pieces=cfg.maxout_pieces, layers=cfg.d_layers,
                                init_std=cfg.init_std)
    else:
        g = DCGANGenerator(dim=cfg.conv_dim, channels=cfg.sample_shape[-1], init_std=cfg.init_std,
                           bn_momentum=cfg.bn_momentum)
        d = DCGANDiscriminator(dim=cfg.conv_dim, init_std=cfg.init_std)
    return g, d


def make_optimizer(cfg: GANConfig) -> optax.GradientTransformation:
    if cfg.optimizer == "adam":
        return optax.adam(cfg.lr, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps)
    # PyTorch-style RMSProp (as in the WGAN reference): eps added outside the square root
    return optax.rmsprop(cfg.lr, decay=cfg.rms_decay, eps=cfg.eps, eps_in_sqrt=cfg.eps_in_sqrt,
                         initial_scale=cfg.rms_initial)


def packed_shape(cfg: GANConfig) -> tuple[int, ...]:
    """Shape of one discriminator input: ``m`` samples concatenated along the last axis."""
    return cfg.sample_shape[:-1] + (cfg.pack * cfg.sample_shape[-1],)


def init_state(cfg: GANConfig, key: jax.Array | None = None) -> GANState:
    """Fresh parameters and optimiser states; the key defaults to ``jax.random.key(cfg.seed)``."""
    key = jax.random.key(cfg.seed) if key is None else key
    k_g, k_d, k_run = jax.random.split(key, 3)
    g, d = build_networks(cfg)
    g_vars = g.init(k_g, jnp.zeros((2, cfg.noise_dim)), train=False)
    d_vars = d.init(k_d, jnp.zeros((1,) + packed_shape(cfg)))
    tx = make_optimizer(cfg)
    return GANState(g_params=g_vars["params"], g_stats=g_vars.get("batch_stats", {}), d_params=d_vars["params"],
                    g_opt=tx.init(g_vars["params"]), d_opt=tx.init(d_vars["params"]),
                    step=jnp.zeros((), jnp.int32), key=k_run)


def generate_in_training_mode(g_net, g_params, g_stats, z):
    """Samples from noise ``z`` of shape (m, batch, noise_dim) and the updated running statistics.

    Each of the m groups is its own batch-norm batch, and the m running-stat updates
    are averaged -- what the reference does with its m generator calls.
    """
    def one_group(zi):
        x, upd = g_net.apply({"params": g_params, "batch_stats": g_stats}, zi, train=True, mutable=["batch_stats"])
        return x, upd.get("batch_stats", {})

    x, stats = jax.vmap(one_group)(z)
    return x, jax.tree_util.tree_map(lambda s: jnp.mean(s, axis=0), stats)


def make_train_step(cfg: GANConfig, players: bool = False):
    """The pure train step ``(state, real, key) -> (state, metrics)``.

    ``real`` has shape ``(n_critic, m, batch_size, *sample_shape)``: one minibatch
    of ``m``-packs per critic update.  ``metrics`` holds scalar ``d_loss`` (of the
    last critic update, penalty included), ``g_loss``, and for the WGANs
    ``wasserstein`` (the critic's estimate of W1) and ``gp`` (WGAN-GP).

    With ``players=True`` returns the alternating scheme's two halves instead,
    ``critic_step(state, real_i, key) -> (state, (d_total, base, gp))`` and
    ``generator_step(state, key) -> (state, g_loss)`` (for benchmarks).
    """
    g_net, d_net = build_networks(cfg)
    tx = make_optimizer(cfg)
    m, batch = cfg.pack, cfg.batch_size
    wasserstein = cfg.loss == "wasserstein"

    generate = partial(generate_in_training_mode, g_net)

    def noise(key):
        return draw_noise(cfg, key, (m, batch))

    def critic_objective(d_params, real_in, fake_in, key):
        def score(x):
            return d_net.apply({"params": d_params}, x)

        r, f = score(real_in), score(fake_in)
        base = wgan_critic_loss(r, f) if wasserstein else gan_discriminator_loss(r, f)
        gp = gradient_penalty(score, real_in, fake_in, key) if cfg.gp_lambda > 0 else jnp.zeros(())
        return base + cfg.gp_lambda * gp, (base, gp)

    def generator_objective(d_params, fake):
        f = d_net.apply({"params": d_params}, pack(fake))
        return wgan_generator_loss(f) if wasserstein else gan_generator_loss(f)

    def apply(grads, opt, params):
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    def constrain(d_params):
        return clip_params(d_params, cfg.clip) if cfg.clip > 0 else d_params

    def metrics_of(d_total, g_loss, base, gp):
        out = {"d_loss": d_total, "g_loss": g_loss}
        if wasserstein:
            out["wasserstein"] = -base
        if cfg.gp_lambda > 0:
            out["gp"] = gp
        return out

    def simultaneous_step(state: GANState, real, key):
        k_z, k_gp = jax.random.split(key)
        z = noise(k_z)
        real_in = pack(real[0])

        def joint(g_params, d_params):
            # stop_gradients split one forward pass into the two players' objectives
            fake, stats = generate(g_params, state.g_stats, z)
            d_total, (base, gp) = critic_objective(d_params, real_in, pack(jax.lax.stop_gradient(fake)), k_gp)
            g_loss = generator_objective(jax.lax.stop_gradient(d_params), fake)
            return d_total + g_loss, (d_total, g_loss, base, gp, stats)

        (_, (d_total, g_loss, base, gp, stats)), (g_grads, d_grads) = jax.value_and_grad(
            joint, argnums=(0, 1), has_aux=True)(state.g_params, state.d_params)
        g_params, g_opt = apply(g_grads, state.g_opt, state.g_params)
        d_params, d_opt = apply(d_grads, state.d_opt, state.d_params)
        new = state.replace(g_params=g_params, g_stats=stats, g_opt=g_opt, d_params=constrain(d_params),
                            d_opt=d_opt, step=state.step + 1)
        return new, metrics_of(d_total, g_loss, base, gp)

    def critic_step(state: GANState, real, key, z=None):
        """One discriminator update on ``real`` of shape (m, batch, *sample_shape), on fakes from noise ``z``
        (default: a draw from ``key``)."""
        k_z, k_gp = jax.random.split(key)
        z = noise(k_z) if z is None else z
        fake, _ = generate(state.g_params, state.g_stats, z)  # stats move on G's own update only
        (d_total, (base, gp)), grads = jax.value_and_grad(critic_objective, has_aux=True)(
            state.d_params, pack(real), pack(jax.lax.stop_gradient(fake)), k_gp)
        d_params, d_opt = apply(grads, state.d_opt, state.d_params)
        return state.replace(d_params=constrain(d_params), d_opt=d_opt), (d_total, base, gp)

    def generator_step(state: GANState, key):
        """One generator update against the current discriminator (the step counter is the caller's)."""
        z = noise(key)

        def g_objective(g_params):
            fake, stats = generate(g_params, state.g_stats, z)
            return generator_objective(state.d_params, fake), stats

        (g_loss, stats), g_grads = jax.value_and_grad(g_objective, has_aux=True)(state.g_params)
        g_params, g_opt = apply(g_grads, state.g_opt, state.g_params)
        return state.replace(g_params=g_params, g_stats=stats, g_opt=g_opt), g_loss

    def alternating_step(state: GANState, real, key):
        k_critic, k_g = jax.random.split(key)
        z = noise(k_g) if cfg.same_noise else None  # the generator updates' own draw (generator_step(k_g))
        state, (d_total, base, gp) = jax.lax.scan(
            lambda s, inputs: critic_step(s, *inputs, z=z), state, (real, jax.random.split(k_critic, cfg.n_critic)))
        for _ in range(cfg.g_updates):  # the same key: the repeats see one noise draw, as in carpedm20's loop
            state, g_loss = generator_step(state, k_g)
        return state.replace(step=state.step + 1), metrics_of(d_total[-1], g_loss, base[-1], gp[-1])

    if players:
        return critic_step, generator_step
    return simultaneous_step if cfg.simultaneous else alternating_step


def draw_noise(cfg: GANConfig, key: jax.Array, batch_shape: tuple[int, ...]) -> jax.Array:
    """Generator inputs of shape ``batch_shape + (noise_dim,)``: N(0, I), or U[-1, 1] per coordinate."""
    shape = tuple(batch_shape) + (cfg.noise_dim,)
    if cfg.noise == "uniform":
        return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    return jax.random.normal(key, shape)


def make_fit_step(cfg: GANConfig):
    """``(state, data) -> (state, metrics)``: draw the step's minibatches from ``data``, then train."""
    train_step = make_train_step(cfg)

    def fit_step(state: GANState, data: jax.Array):
        key, k_idx, k_step = jax.random.split(state.key, 3)
        idx = jax.random.randint(k_idx, (cfg.n_critic, cfg.pack, cfg.batch_size), 0, data.shape[0])
        return train_step(state.replace(key=key), data[idx], k_step)

    return fit_step


def make_chunk_runner(cfg: GANConfig):
    """Jitted ``(state, data, length) -> (state, stacked metrics)`` running ``length`` steps in one scan.

    Cached per configuration (seed and budget aside, which the step does not
    read), so repeated and resumed runs reuse the compiled step.
    """
    key = compiled_key(cfg)
    if key not in _RUNNERS:
        _RUNNERS[key] = _make_chunk_runner(key)
    return _RUNNERS[key]


_RUNNERS: dict[GANConfig, Any] = {}


def compiled_key(cfg: GANConfig) -> GANConfig:
    """``cfg`` with the fields no compiled function reads (budget, seed, sampling protocol) at fixed values:
    the cache key of the jitted runners, refreshers and samplers."""
    return dataclasses.replace(cfg, steps=0, seed=0, eval_bn_refresh=0)


def _make_chunk_runner(cfg: GANConfig):
    fit_step = make_fit_step(cfg)

    @partial(jax.jit, static_argnums=2)
    def run(state, data, length):
        return jax.lax.scan(lambda s, _: fit_step(s, data), state, None, length=length)

    return run
