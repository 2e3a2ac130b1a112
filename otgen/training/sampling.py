"""A trained GAN generator: :class:`GANResult` and how it samples.

Sampling runs the generator in inference mode, on its batch-norm running statistics, first refreshed
over ``config.eval_bn_refresh`` fresh training-mode batches at the final parameters when the preset asks
for it (:func:`refreshed_batch_stats`, what PacGAN's evaluation does).  The jitted sampler and refresher
are cached per configuration, as the training step is (:func:`otgen.training.steps.compiled_key`).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import numpy as np

from otgen.training.config import GANConfig
from otgen.training.steps import GANState, build_networks, compiled_key, draw_noise, generate_in_training_mode

__all__ = ["GANResult", "refreshed_batch_stats"]


@dataclasses.dataclass(frozen=True)
class GANResult:
    """A trained generator: ``sample(key, n)``, the loss ``history`` and the final ``state``."""

    config: GANConfig
    state: GANState
    history: dict[str, list[float]]
    train_seconds: float = 0.0  # wall time of the steps run by this call (compilation included)
    data_scale: float = 1.0     # the networks see data / data_scale (``config.standardize``)
    curve: tuple[dict, ...] = ()  # learning-curve records {"step": s, **evaluate(result at s)}
    data_digest: str = ""       # fingerprint of the training set (checked on resume)
    total_seconds: float = 0.0  # training wall time summed over every call that trained it (resumes included)

    _CHUNK = 2048  # samples per generator call, bounding memory for the image nets

    def sample(self, key: jax.Array, n: int) -> np.ndarray:
        """``n`` samples, generator in inference mode (batch-norm running statistics, refreshed first
        over ``config.eval_bn_refresh`` batches, see :func:`refreshed_batch_stats`).

        Returns ``(n, d)`` for vectors, ``(n, 28, 28, C)`` floats in [0, 1] for images.
        Deterministic in ``key`` (chunk ``i`` uses ``fold_in(key, i)``).
        """
        n = int(n)
        if n < 0:
            raise ValueError(f"number of samples must be >= 0, got {n}")
        sampler = _sampler_for(self.config)
        stats = refreshed_batch_stats(self.config, self.state) if n else self.state.g_stats
        chunks, done, i = [], 0, 0
        while done < n:
            size = min(n, self._CHUNK)  # static shape: one compilation per distinct size
            chunk = sampler(self.state.g_params, stats, jax.random.fold_in(key, i), size)
            chunks.append(np.asarray(chunk)[: n - done])
            done += chunks[-1].shape[0]
            i += 1
        out = np.concatenate(chunks) if chunks else np.zeros((0,) + self.config.sample_shape, np.float32)
        # images: the data range (dcgan_stacked's tanh reaches [-1, 0) too, which no pixel has)
        return np.clip(out, 0.0, 1.0) if self.config.image else out * np.float32(self.data_scale)


def refreshed_batch_stats(cfg: GANConfig, state: GANState, n_batches: int | None = None):
    """The generator's running statistics after ``n_batches`` (default ``cfg.eval_bn_refresh``) more
    training-mode passes at ``state``'s parameters, as PacGAN's evaluation refreshes them before sampling.

    Each pass draws fresh noise at the training batch (``m`` groups of ``batch_size``) and moves the
    statistics by ``bn_momentum``, as a training step does; the parameters are not touched. The noise key
    is fixed by the run's seed and step, so the refreshed generator is one deterministic map.
    """
    n = cfg.eval_bn_refresh if n_batches is None else int(n_batches)
    if n < 0:
        raise ValueError(f"number of refresh batches must be >= 0, got {n}")
    if n == 0 or not jax.tree_util.tree_leaves(state.g_stats):
        return state.g_stats
    key = jax.random.fold_in(jax.random.key(cfg.seed), int(state.step))
    return _refresher_for(cfg)(state.g_params, state.g_stats, key, n)


_SAMPLERS: dict[GANConfig, Any] = {}
_REFRESHERS: dict[GANConfig, Any] = {}


def _compiled(cache: dict, make, cfg: GANConfig):
    """``make(cfg)``'s jitted function, built once per compiled configuration (``compiled_key``)."""
    key = compiled_key(cfg)
    if key not in cache:
        cache[key] = make(key)
    return cache[key]


def _sampler_for(cfg: GANConfig):
    return _compiled(_SAMPLERS, _make_sampler, cfg)


def _make_sampler(cfg: GANConfig):
    g_net, _ = build_networks(cfg)

    @partial(jax.jit, static_argnums=3)
    def sample(g_params, g_stats, key, n):
        z = draw_noise(cfg, key, (n,))
        return g_net.apply({"params": g_params, "batch_stats": g_stats}, z, train=False)

    return sample


def _refresher_for(cfg: GANConfig):
    return _compiled(_REFRESHERS, _make_refresher, cfg)


def _make_refresher(cfg: GANConfig):
    g_net, _ = build_networks(cfg)

    @partial(jax.jit, static_argnums=3)
    def refresh(g_params, g_stats, key, n):
        def one_batch(stats, k):
            _, stats = generate_in_training_mode(g_net, g_params, stats, draw_noise(cfg, k, (cfg.pack, cfg.batch_size)))
            return stats, None

        return jax.lax.scan(one_batch, g_stats, jax.random.split(key, n))[0]

    return refresh
