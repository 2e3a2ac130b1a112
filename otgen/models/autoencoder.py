"""A convolutional autoencoder for 28x28 images (Flax linen), and its optax training loop.

Architecture (the InfoGAN-style MNIST networks that AE-OT's comparison uses, without
batch norm so that encoding is a pure function of the parameters):

    encoder: [Conv 4x4 stride 2 -> leaky ReLU] x len(features)  (28 -> 14 -> 7)
             -> Dense(hidden) -> leaky ReLU -> Dense(latent_dim)
    decoder: Dense(hidden) -> ReLU -> Dense(7*7*features[-1]) -> ReLU
             -> [ConvTranspose 4x4 stride 2 -> ReLU] ... -> ConvTranspose to `channels` (logits)

The strided convolutions are ``otgen.models.layers``' matrix-product forms of
Flax's ``Conv``/``ConvTranspose`` (same function, much faster gradients on CPU).

The decoder returns logits; :meth:`Autoencoder.decode` applies the sigmoid, giving images
in [0, 1].  Training minimises per-pixel binary cross-entropy (sharper digits than MSE)
or MSE, plus an optional L1 penalty on the codes (AE-OT's public code uses 1e-5).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from otgen.models.layers import StridedConv, StridedConvTranspose

__all__ = ["AEConfig", "Encoder", "Decoder", "Autoencoder", "AETrainState", "make_autoencoder",
           "init_train_state", "ae_loss", "make_train_step", "encode_batched",
           "decode_batched", "reconstruction_mse", "image_shape"]

IMAGE_SIDE = 28


@dataclasses.dataclass(frozen=True)
class AEConfig:
    latent_dim: int = 16
    features: tuple[int, ...] = (32, 64)  # conv channels; each conv halves the side: 28 -> 14 -> 7
    hidden: int = 256  # dense width between the conv stack and the code
    loss: str = "bce"  # "bce" (sigmoid cross-entropy) or "mse"
    l1: float = 0.0  # weight of the mean |z| penalty
    channels: int = 1  # image channels: 1 for MNIST, 3 for Stacked MNIST

    def __post_init__(self):
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if len(self.features) not in (1, 2) or min(self.features) < 1:
            raise ValueError(f"features must be 1 or 2 positive channel counts (28 -> 14 [-> 7]), got {self.features}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if self.loss not in ("bce", "mse"):
            raise ValueError(f"loss must be 'bce' or 'mse', got {self.loss!r}")
        if self.l1 < 0:
            raise ValueError(f"l1 must be >= 0, got {self.l1}")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")


class Encoder(nn.Module):
    latent_dim: int
    features: tuple[int, ...]
    hidden: int
    conv: Any = StridedConv  # or nn.Conv: the same function (scripts/bench_gan.py times both)

    @nn.compact
    def __call__(self, x):
        for f in self.features:
            x = nn.leaky_relu(self.conv(f, (4, 4), (2, 2))(x), 0.2)
        x = x.reshape(x.shape[0], -1)
        x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
        return nn.Dense(self.latent_dim)(x)


class Decoder(nn.Module):
    features: tuple[int, ...]
    hidden: int
    conv_transpose: Any = StridedConvTranspose  # or nn.ConvTranspose
    channels: int = 1

    @nn.compact
    def __call__(self, z):
        side = 28 >> len(self.features)
        x = nn.relu(nn.Dense(self.hidden)(z))
        x = nn.relu(nn.Dense(side * side * self.features[-1])(x))
        x = x.reshape(x.shape[0], side, side, self.features[-1])
        for f in reversed(self.features[:-1]):
            x = nn.relu(self.conv_transpose(f, (4, 4), (2, 2))(x))
        return self.conv_transpose(self.channels, (4, 4), (2, 2))(x)  # logits


class Autoencoder(nn.Module):
    latent_dim: int
    features: tuple[int, ...]
    hidden: int
    conv: Any = StridedConv
    conv_transpose: Any = StridedConvTranspose
    channels: int = 1

    def setup(self):
        self.encoder = Encoder(self.latent_dim, self.features, self.hidden, self.conv)
        self.decoder = Decoder(self.features, self.hidden, self.conv_transpose, self.channels)

    def __call__(self, x):
        """(reconstruction logits, codes) of images ``x`` (n, 28, 28, channels) in [0, 1]."""
        z = self.encoder(x)
        return self.decoder(z), z

    def encode(self, x):
        return self.encoder(x)

    def decode_logits(self, z):
        return self.decoder(z)

    def decode(self, z):
        return nn.sigmoid(self.decoder(z))


def make_autoencoder(cfg: AEConfig) -> Autoencoder:
    return Autoencoder(cfg.latent_dim, cfg.features, cfg.hidden, channels=cfg.channels)


class AETrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    step: jnp.ndarray  # int32 scalar: optimiser steps taken


def init_train_state(key, model: Autoencoder, optimizer: optax.GradientTransformation) -> AETrainState:
    # jitted: one compile instead of one per primitive (2x faster); the same parameters bit for bit on
    # every preset's autoencoder (checked for seeds 0, 1, 7 on MNIST, Fashion and Stacked)
    params = jax.jit(model.init)(key, jnp.zeros((1,) + image_shape(model), jnp.float32))["params"]
    return AETrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def ae_loss(params, model: Autoencoder, x, cfg: AEConfig):
    """(loss, per-pixel MSE of the reconstruction) on a batch ``x`` (n, 28, 28, C) in [0, 1]."""
    logits, z = model.apply({"params": params}, x)
    recon = nn.sigmoid(logits)
    mse = jnp.mean((recon - x) ** 2)
    if cfg.loss == "bce":
        data_term = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, x))
    else:
        data_term = mse
    return data_term + cfg.l1 * jnp.mean(jnp.abs(z)), mse


def make_train_step(model: Autoencoder, optimizer: optax.GradientTransformation, cfg: AEConfig) -> Callable:
    """A jitted ``step(state, x) -> (state, {"loss", "mse"})``."""

    @jax.jit
    def step(state: AETrainState, x):
        (loss, mse), grads = jax.value_and_grad(ae_loss, has_aux=True)(state.params, model, x, cfg)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return AETrainState(params, opt_state, state.step + 1), {"loss": loss, "mse": mse}

    return step


def image_shape(model: Autoencoder) -> tuple[int, int, int]:
    return IMAGE_SIDE, IMAGE_SIDE, model.channels


def check_images(model: Autoencoder, images: np.ndarray) -> np.ndarray:
    """``images`` itself, if it is a batch (n, 28, 28, C) of the model's image shape; else a clear error."""
    if images.ndim != 4 or images.shape[1:] != image_shape(model):
        raise ValueError(f"expected images (n, {', '.join(map(str, image_shape(model)))}), got {images.shape}")
    return images


def _as_batch(model: Autoencoder, images) -> np.ndarray:
    """float32 (n, 28, 28, C); grey (n, 28, 28) gets its channel axis (training input must carry it)."""
    images = np.asarray(images, np.float32)
    if images.ndim == 3 and model.channels == 1:
        images = images[..., None]
    return check_images(model, images)


def _batched(fn, inputs: np.ndarray, batch_size: int, progress: bool, desc: str) -> np.ndarray:
    """Apply a jitted ``fn`` to fixed-size batches (last one zero-padded), so it compiles once."""
    from tqdm.auto import tqdm

    n = len(inputs)
    outs = []
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=None if progress else True, leave=False):
        chunk = inputs[start:start + batch_size]
        m = len(chunk)
        if m < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - m,) + chunk.shape[1:], chunk.dtype)])
        outs.append(np.asarray(fn(chunk))[:m])
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def encode_batched(model: Autoencoder, params, images, batch_size: int = 1000, progress: bool = False) -> np.ndarray:
    """Codes (n, latent_dim) float32 of images (n, 28, 28, C) (grey: also (n, 28, 28)) in [0, 1]; memory O(batch_size)."""
    images = _as_batch(model, images)
    fn = jax.jit(lambda b: model.apply({"params": params}, b, method=Autoencoder.encode))
    out = _batched(fn, images, batch_size, progress, "encode")
    return out.reshape(len(images), model.latent_dim).astype(np.float32)


def decode_batched(model: Autoencoder, params, codes, batch_size: int = 1000, progress: bool = False) -> np.ndarray:
    """Images (n, 28, 28, C) float32 in [0, 1] decoded from codes (n, latent_dim)."""
    codes = np.asarray(codes, np.float32)
    if codes.ndim != 2 or codes.shape[1] != model.latent_dim:
        raise ValueError(f"expected codes (n, {model.latent_dim}), got {codes.shape}")
    fn = jax.jit(lambda b: model.apply({"params": params}, b, method=Autoencoder.decode))
    out = _batched(fn, codes, batch_size, progress, "decode")
    return out.reshape((len(codes),) + image_shape(model)).astype(np.float32)


def reconstruction_mse(model: Autoencoder, params, images, batch_size: int = 1000) -> float:
    """Mean per-pixel squared error of decode(encode(x)) on images in [0, 1]."""
    images = _as_batch(model, images)
    recon = decode_batched(model, params, encode_batched(model, params, images, batch_size), batch_size)
    return float(np.mean((recon - images) ** 2))
