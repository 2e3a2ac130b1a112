"""AE-OT-GAN's second stage: fine-tune an autoencoder's decoder against a discriminator on AE-OT's codes.

AE-OT's digits are blurry because its decoder is (An et al. 2020, "AE-OT-GAN: Training GANs from data
specific latent distribution").  Their answer keeps AE-OT's latent generation -- the extended
semi-discrete map onto the codes, which fixes the modes -- and trains the decoder as a GAN generator on the
codes it produces, with the training pairs (code ``z_i`` of image ``x_i``) holding it to the data:

    generator (the decoder, started from the autoencoder's):
        softplus(-D(G(z)))  for z from AE-OT's generation           (non-saturating GAN loss)
      + content_weight * BCE(G(z_i), x_i)  for training pairs        (the autoencoder's own loss)
    discriminator: softplus(-D(x)) + softplus(D(G(z)))

The discriminator is :class:`otgen.models.gan.DCGANDiscriminator`.  This is the two losses the paper
names (adversarial and a content term on paired data), not a port of its code: its feature-matching
term, networks and schedule are not reproduced.

Usage::

    cfg = DecoderGANConfig(steps=3000)
    params = finetune_decoder(model, ae_params, codes, images, generated_codes, cfg, run_dir / "decoder_gan")

Resumable: the state is saved atomically every ``checkpoint_every`` steps (``decoder_gan_state.npz``),
batches are drawn from ``fold_in(key, step)``, so a resumed run continues as the uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from otgen.checkpoint import array_fingerprint, check_training_metadata, load_metadata, load_pytree, save_pytree
from otgen.models.autoencoder import Autoencoder, Decoder, image_shape
from otgen.models.gan import DCGANDiscriminator
from otgen.models.gan_losses import gan_discriminator_loss, gan_generator_loss
from otgen.training.driver import drive, kept_checkpoint

__all__ = ["DecoderGANConfig", "DecoderGANState", "finetune_decoder", "load_finetuned", "STATE_FILE", "PARAMS_FILE"]

STATE_FILE = "decoder_gan_state.npz"  # the training state (resumable)
PARAMS_FILE = "decoder_gan.npz"  # the autoencoder's parameters with the fine-tuned decoder (the result)
_KIND = "otgen-decoder-gan"
LOG_EVERY = 100  # steps per row of the loss history


@dataclasses.dataclass(frozen=True)
class DecoderGANConfig:
    steps: int = 3000
    batch_size: int = 64
    content_weight: float = 10.0  # weight of the paired reconstruction loss (mean per-pixel BCE)
    d_dim: int = 32  # discriminator width (DCGAN: dim, 2 dim, 4 dim channels)
    learning_rate: float = 2e-4
    beta1: float = 0.5  # DCGAN's Adam
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "d_dim", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"DecoderGANConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.content_weight < 0:
            raise ValueError(f"DecoderGANConfig.content_weight must be >= 0, got {self.content_weight}")
        if not self.learning_rate > 0 or not 0 <= self.beta1 < 1:
            raise ValueError(f"need learning_rate > 0 and 0 <= beta1 < 1, got {self.learning_rate}, {self.beta1}")


class DecoderGANState(NamedTuple):
    g_params: dict  # the decoder's
    d_params: dict
    g_opt: optax.OptState
    d_opt: optax.OptState
    step: jnp.ndarray  # int32 scalar: steps taken


def _networks(model: Autoencoder, cfg: DecoderGANConfig):
    return Decoder(model.features, model.hidden, model.conv_transpose, model.channels), DCGANDiscriminator(cfg.d_dim)


def _optimizer(cfg: DecoderGANConfig):
    return optax.adam(cfg.learning_rate, b1=cfg.beta1)


def init_state(model: Autoencoder, ae_params: dict, cfg: DecoderGANConfig) -> DecoderGANState:
    _, disc = _networks(model, cfg)
    d_params = disc.init(jax.random.key(cfg.seed), jnp.zeros((1,) + image_shape(model)))["params"]
    opt = _optimizer(cfg)
    g_params = ae_params["decoder"]
    return DecoderGANState(g_params, d_params, opt.init(g_params), opt.init(d_params), jnp.zeros((), jnp.int32))


def make_step(model: Autoencoder, cfg: DecoderGANConfig):
    """A jitted ``step(state, z_gen, z_pair, x_pair, x_real) -> (state, metrics)``: one discriminator
    update, then one decoder update on the same generated codes."""
    dec, disc = _networks(model, cfg)
    opt = _optimizer(cfg)

    def d_loss(d_params, fake, real):
        return gan_discriminator_loss(disc.apply({"params": d_params}, real), disc.apply({"params": d_params}, fake))

    def g_loss(g_params, d_params, z_gen, z_pair, x_pair):
        fake = jax.nn.sigmoid(dec.apply({"params": g_params}, z_gen))
        adv = gan_generator_loss(disc.apply({"params": d_params}, fake))
        content = jnp.mean(optax.sigmoid_binary_cross_entropy(dec.apply({"params": g_params}, z_pair), x_pair))
        return adv + cfg.content_weight * content, (adv, content)

    @jax.jit
    def step(state: DecoderGANState, z_gen, z_pair, x_pair, x_real):
        fake = jax.nn.sigmoid(dec.apply({"params": state.g_params}, z_gen))
        dl, d_grads = jax.value_and_grad(d_loss)(state.d_params, fake, x_real)
        d_updates, d_opt = opt.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)
        (_, (adv, content)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(
            state.g_params, d_params, z_gen, z_pair, x_pair)
        g_updates, g_opt = opt.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)
        return (DecoderGANState(g_params, d_params, g_opt, d_opt, state.step + 1),
                {"d_loss": dl, "g_adv": adv, "content_bce": content})

    return step


def _config_record(cfg: DecoderGANConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("steps", "checkpoint_every")}


def load_finetuned(workdir: str | Path, ae_params: dict, cfg: DecoderGANConfig) -> tuple[dict, dict] | None:
    """``(params, record)`` of a finished :func:`finetune_decoder` run with ``cfg`` in ``workdir``, else None."""
    path = Path(workdir) / PARAMS_FILE
    if not path.exists():
        return None
    rec = load_metadata(path).get("decoder_gan", {})
    if rec.get("steps") != cfg.steps or any(rec.get(k) != v for k, v in _config_record(cfg).items()):
        return None
    params, _ = load_pytree(path, like=ae_params)
    return params, rec


def finetune_decoder(model: Autoencoder, ae_params: dict, codes: np.ndarray, images: np.ndarray,
                     generated: np.ndarray, cfg: DecoderGANConfig, workdir: str | Path | None = None,
                     progress: bool = True) -> tuple[dict, dict]:
    """The autoencoder's parameters with its decoder fine-tuned (``(params, record)``).

    ``codes`` (n, d): the training images' codes, paired with ``images`` (n, 28, 28, C) in [0, 1];
    ``generated`` (m, d): codes from AE-OT's generation (the decoder's GAN input).  With ``workdir`` the state
    is checkpointed there and a later call resumes it (refused if written with another configuration or
    data); the result is also saved there as :data:`PARAMS_FILE`.  ``record``: the loss history (every 100
    steps), steps and training seconds.
    """
    codes, generated = np.asarray(codes, np.float32), np.asarray(generated, np.float32)
    images = np.asarray(images, np.float32)
    d = model.latent_dim
    if codes.ndim != 2 or codes.shape[1] != d or generated.ndim != 2 or generated.shape[1] != d:
        raise ValueError(f"codes and generated codes must be (n, {d}); got {codes.shape} and {generated.shape}")
    if images.shape != (len(codes),) + image_shape(model):
        raise ValueError(f"images must be {(len(codes),) + image_shape(model)} (one per code), got {images.shape}")
    if len(codes) < cfg.batch_size or len(generated) < cfg.batch_size:
        raise ValueError(f"need at least batch_size = {cfg.batch_size} training pairs and generated codes")
    if not (np.all(np.isfinite(codes)) and np.all(np.isfinite(generated))):
        raise ValueError("codes contain NaN or inf")

    state = init_state(model, ae_params, cfg)
    digest = array_fingerprint(codes) + array_fingerprint(generated)
    meta = {"kind": _KIND, "config": _config_record(cfg), "data": digest, "history": {}, "seconds": 0.0}
    path = None if workdir is None else Path(workdir) / STATE_FILE
    if path is not None and path.exists():
        check_training_metadata(path, load_metadata(path), kind=_KIND, what="decoder-GAN", config=_config_record(cfg),
                                data_digest=digest)
        state, meta = load_pytree(path, like=state)
    start = int(state.step)
    if start > cfg.steps:
        raise ValueError(f"{path} is at step {start:,}, past the {cfg.steps:,} asked; ask for more steps or use "
                         "another directory")
    step_fn = make_step(model, cfg)
    key = jax.random.key(cfg.seed)
    b = cfg.batch_size
    t0, before = time.perf_counter(), float(meta["seconds"])
    history = meta["history"]
    if isinstance(history, list):  # states written before the shared loop kept one dict per 100 steps
        history = {k: [r[k] for r in history] for k in (history[0] if history else {})}
    meta["history"] = history

    def advance(state, first, n):
        rows = []
        for t in range(first, first + n):  # each step's batches from its own key: resumable anywhere
            kg, kp, kr = jax.random.split(jax.random.fold_in(key, t), 3)
            gi = np.asarray(jax.random.randint(kg, (b,), 0, len(generated)))
            pi = np.asarray(jax.random.randint(kp, (b,), 0, len(codes)))
            ri = np.asarray(jax.random.randint(kr, (b,), 0, len(codes)))
            state, m = step_fn(state, generated[gi], codes[pi], images[pi], images[ri])
            rows.append(m)
        return state, {k: np.asarray([r[k] for r in rows]) for k in rows[0]}

    def save(st, at):
        if path is not None:
            save_pytree(path, st, {**meta, "seconds": before + time.perf_counter() - t0})

    def diverged(at, metrics, saved):
        return FloatingPointError(f"decoder GAN diverged at step {at} (losses {metrics}); {kept_checkpoint(saved)}")

    state = drive(state, start, cfg.steps, advance, save=save, diverged=diverged, log_every=LOG_EVERY,
                  checkpoint_every=cfg.checkpoint_every, history=history,
                  last_saved=start if path is not None and path.exists() else None, name="decoder GAN",
                  progress=progress)
    params = {**ae_params, "decoder": jax.device_get(state.g_params)}
    record = {"steps": cfg.steps, "seconds": before + time.perf_counter() - t0, "history": history,
              **_config_record(cfg)}
    if workdir is not None:
        save_pytree(Path(workdir) / PARAMS_FILE, params, {"kind": "otgen-autoencoder", "decoder_gan": record})
    return params, record
