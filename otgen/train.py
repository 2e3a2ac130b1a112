"""One training loop for the GAN baselines: GAN, WGAN, WGAN-GP and PacGAN-m.

Usage::

    cfg = GANConfig.for_toy(model="pacgan2", steps=10_000, seed=0)
    result = train_gan(cfg, data, run_dir, resume=False, checkpoint_every=1000)
    samples = result.sample(jax.random.key(1), 2500)

A *step* is one generator update, preceded by ``n_critic`` discriminator updates
(1 for GAN/PacGAN, 5 for the WGANs); ``steps`` is the budget.  ``batch_size``
counts discriminator inputs, so PacGAN-m draws ``m * batch_size`` real and
``m * batch_size`` generated samples per update, as in the PacGAN paper.

Why one module of ~700 lines: the configuration, its preset tables, the jitted
step and the checkpointed loop must agree field by field (a checkpoint is refused
when any field but ``steps`` differs), so they are kept side by side; the networks
and losses live in :mod:`otgen.models`, the generator adapter in
:mod:`otgen.generators.gan`.

Minibatches are drawn *with replacement* from the data array, inside the jitted
step, with a key split off the training state's key.  The whole run is thus a
function of (config, data, seed): resuming from a checkpoint reproduces the
uninterrupted run exactly, because the key is part of the checkpointed state.

Steps run in chunks (``lax.scan`` of ``log_every`` steps under one ``jax.jit``):
per-step Python dispatch costs more than the 2-D networks themselves on CPU
(``scripts/bench_gan.py`` measures this).  Chunk ends fall on multiples of
``log_every`` and ``checkpoint_every``, so checkpoints land on the same steps in
a resumed and an uninterrupted run.

Hyperparameters (read off the authors' public code, see ``GANConfig.for_toy``
and ``GANConfig.for_mnist``):

* GAN / PacGAN on 2-D data (``fjxmlzn/PacGAN``): Adam lr 1e-4, beta1 0.8,
  batch 100, *simultaneous* updates -- both players' gradients are taken at the
  same parameters in one step (the ALI ``ali_algorithm`` the reference uses).
* WGAN (Arjovsky et al., ``martinarjovsky/WassersteinGAN``): RMSProp lr 5e-5
  (PyTorch's: decay 0.99, eps 1e-8 outside the root), every critic parameter
  clipped to [-0.01, 0.01] after each critic update, n_critic 5.  The reference
  code's extra 100-iteration critic bursts (first 25 generator steps, every
  500th) are not reproduced: the paper's Algorithm 1 has a constant n_critic.
* WGAN-GP (Gulrajani et al., ``igul222/improved_wgan_training``): lambda 10,
  Adam lr 1e-4, betas (0.5, 0.9), n_critic 5 (the paper's image setting).
* Preset ``published`` on toys (``TOY_PRESETS``): each model in its own authors'
  2-D setting and budget -- PacGAN's 400 epochs of 100,000 points at batch 100
  (400,000 steps) for GAN/PacGAN, sampled as PacGAN evaluates (batch-norm statistics
  refreshed over 50 fresh batches at the final parameters); ``gan_toy.py``'s nets,
  lambda 0.1, batch 256 and 100,000 steps on unit-scaled data for WGAN-GP and WGAN.
* MNIST (DCGAN-style nets of ``gan_mnist.py``): GAN/PacGAN with DCGAN's Adam
  lr 2e-4, beta1 0.5, alternating updates; the WGANs as above; batch 50,
  128-d noise.
* Preset ``stacked`` on images (``IMAGE_PRESETS``): PacGAN's Stacked-MNIST code
  (carpedm20's DCGAN-tensorflow nets, batch 64, 100-d uniform noise on [-1, 1],
  two generator updates per discriminator update).
"""

from __future__ import annotations

import dataclasses
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from otgen.checkpoint import CheckpointError, array_fingerprint, check_training_metadata, load_pytree, save_pytree
from otgen.models.gan import (DCGANDiscriminator, DCGANGenerator, MaxoutDiscriminator, MLPGenerator, ReLUMLP,
                              StackedDCGANDiscriminator, StackedDCGANGenerator, pack)
from otgen.models.gan_losses import (clip_params, gan_discriminator_loss, gan_generator_loss,
                                     gradient_penalty, wgan_critic_loss, wgan_generator_loss)
from otgen.rundir import RunDir

__all__ = [
    "GAN_MODELS", "GANConfig", "GANState", "GANResult", "TrainingDivergedError",
    "build_networks", "make_optimizer", "init_state", "make_train_step", "make_fit_step",
    "train_gan", "load_gan", "save_gan", "CHECKPOINT_NAME", "LOSS_PLOT_NAME", "TOY_PRESETS", "TRAINING",
    "curve_steps", "refreshed_batch_stats", "generate_in_training_mode",
]

GAN_MODELS = ("gan", "wgan", "wgan-gp", "pacgan2", "pacgan3", "pacgan4")
ARCHS = ("mlp", "relu_mlp", "dcgan", "dcgan_stacked")
IMAGE_ARCHS = ("dcgan", "dcgan_stacked")
NOISES = ("normal", "uniform")
OPTIMIZERS = ("adam", "rmsprop")
CHECKPOINT_NAME = "checkpoint.npz"
LOSS_PLOT_NAME = "loss.png"
_CHECKPOINT_KIND = "otgen-gan-state-v1"


class TrainingDivergedError(FloatingPointError):
    """A loss (or a parameter) became NaN or infinite; training stopped without writing a checkpoint."""


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Every hyperparameter of one GAN-family run (serialise with ``dataclasses.asdict``).

    Build one with :meth:`for_toy` or :meth:`for_mnist` (published values) and
    override fields with ``dataclasses.replace`` or keyword arguments there.
    """

    model: str = "gan"
    preset: str = "default"                # which table row built it (recorded in config.json)
    arch: str = "mlp"                      # "mlp" (PacGAN nets), "relu_mlp" (gan_toy.py nets), 28x28: "dcgan"
                                           # (gan_mnist.py nets), "dcgan_stacked" (PacGAN's Stacked-MNIST nets)
    steps: int = 10_000                    # iterations (the budget): n_critic critic + g_updates generator updates
    seed: int = 0
    batch_size: int = 100                  # discriminator inputs (packs) per update
    sample_shape: tuple[int, ...] = (2,)   # shape of one data sample
    noise_dim: int = 2                     # z ~ N(0, I_noise_dim), or U[-1, 1]^noise_dim
    noise: str = "normal"                  # "normal" or "uniform" (carpedm20's DCGAN)
    n_critic: int = 1                      # discriminator updates per iteration
    g_updates: int = 1                     # generator updates per iteration, on one noise draw (carpedm20: 2)
    simultaneous: bool = True              # both gradients at the same parameters (needs n_critic == 1)
    clip: float = 0.0                      # WGAN weight clipping bound; 0 = none
    gp_lambda: float = 0.0                 # WGAN-GP penalty weight; 0 = none
    optimizer: str = "adam"                # for both players
    lr: float = 1e-4
    beta1: float = 0.8                     # Adam
    beta2: float = 0.999                   # Adam
    rms_decay: float = 0.99                # RMSProp
    rms_initial: float = 0.0               # RMSProp's initial mean square (TensorFlow 1 starts at 1)
    eps_in_sqrt: bool = False              # RMSProp: g / sqrt(ms + eps) (TensorFlow) vs / (sqrt(ms) + eps)
    eps: float = 1e-8
    standardize: bool = False              # train on data / its standard deviation, sample back (gan_toy.py)
    g_hidden: int = 400                    # mlp generator width
    g_layers: int = 4
    d_hidden: int = 200                    # maxout units per layer (kept for every packing degree)
    d_layers: int = 3
    maxout_pieces: int = 5
    conv_dim: int = 64                     # dcgan base width
    init_std: float = 0.02
    bn_momentum: float = 0.95              # running stats <- 0.95 old + 0.05 batch (PacGAN reference)
    eval_bn_refresh: int = 0               # sampling: first refresh the running stats over this many fresh
                                           # training-mode batches at the final parameters (PacGAN: 50)
    log_every: int = 100                   # steps per history entry (and per jitted chunk)

    def __post_init__(self):
        object.__setattr__(self, "sample_shape", tuple(int(s) for s in self.sample_shape))
        problems = []
        if self.model not in GAN_MODELS:
            problems.append(f"model must be one of {GAN_MODELS}, got {self.model!r}")
        if self.arch not in ARCHS:
            problems.append(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.noise not in NOISES:
            problems.append(f"noise must be one of {NOISES}, got {self.noise!r}")
        for name in ("batch_size", "noise_dim", "n_critic", "g_updates", "log_every", "g_hidden", "g_layers",
                     "d_hidden", "d_layers", "maxout_pieces", "conv_dim"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0:
            problems.append(f"steps must be >= 0, got {self.steps}")
        if int(self.eval_bn_refresh) < 0:
            problems.append(f"eval_bn_refresh must be >= 0, got {self.eval_bn_refresh}")
        for name in ("lr", "init_std", "eps"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.clip < 0 or self.gp_lambda < 0:
            problems.append("clip and gp_lambda must be >= 0")
        if self.simultaneous and (self.n_critic != 1 or self.g_updates != 1):
            problems.append("simultaneous updates need n_critic == 1 and g_updates == 1")
        if self.model == "wgan" and self.clip <= 0:
            problems.append("wgan needs clip > 0 (its Lipschitz constraint)")
        if self.model == "wgan-gp" and self.gp_lambda <= 0:
            problems.append("wgan-gp needs gp_lambda > 0 (its Lipschitz constraint)")
        if self.gp_lambda > 0 and self.loss != "wasserstein":
            problems.append("a gradient penalty belongs to the Wasserstein critic (wgan-gp)")
        if self.arch == "dcgan_stacked" and self.gp_lambda > 0:
            # its discriminator batch-normalises, coupling the samples the per-sample penalty treats apart
            problems.append("the dcgan_stacked discriminator has batch norm: no gradient penalty")
        if self.image and (len(self.sample_shape) != 3 or self.sample_shape[:2] != (28, 28)):
            problems.append(f"the {self.arch} nets need 28x28xC images, got sample_shape {self.sample_shape}")
        if not self.image and len(self.sample_shape) != 1:
            problems.append(f"the mlp nets need vector samples, got sample_shape {self.sample_shape}")
        if problems:
            raise ValueError("invalid GANConfig: " + "; ".join(problems))

    @property
    def pack(self) -> int:
        """PacGAN packing degree m (1 for the unpacked models)."""
        return int(self.model[-1]) if self.model.startswith("pacgan") else 1

    @property
    def image(self) -> bool:
        return self.arch in IMAGE_ARCHS

    @property
    def loss(self) -> str:
        return "wasserstein" if self.model in ("wgan", "wgan-gp") else "gan"

    @classmethod
    def for_toy(cls, model: str = "gan", steps: int | None = None, seed: int = 0, dim: int = 2,
                preset: str = "default", **overrides) -> GANConfig:
        """A 2-D configuration from ``TOY_PRESETS[preset]``; ``steps=None`` keeps the preset's budget.

        ``default``: PacGAN's networks for every model with each model's published
        optimiser (10,000 steps); ``published``: each model in its authors' own toy
        setting and budget.
        """
        if preset not in TOY_PRESETS:
            raise ValueError(f"preset must be one of {tuple(TOY_PRESETS)}, got {preset!r}")
        row = TOY_PRESETS[preset]
        if model not in row:
            raise ValueError(f"model must be one of {GAN_MODELS}, got {model!r}")
        base = dict(model=model, preset=preset, seed=seed, sample_shape=(dim,), noise_dim=2)
        if steps is not None:
            base["steps"] = steps
        return cls(**{**_published_training(model, images=False), **row[model], **base, **overrides})

    @classmethod
    def for_mnist(cls, model: str = "gan", steps: int = 20_000, seed: int = 0, preset: str = "default",
                  **overrides) -> GANConfig:
        """28x28 networks from ``IMAGE_PRESETS[preset]``; data (n, 28, 28, C) float32 in [0, 1]."""
        if preset not in IMAGE_PRESETS:
            raise ValueError(f"image preset must be one of {tuple(IMAGE_PRESETS)}, got {preset!r}")
        row = IMAGE_PRESETS[preset]
        if model not in row["models"]:
            raise ValueError(f"image preset {preset!r} trains {row['models']}, not {model!r}")
        base = dict(model=model, preset=preset, steps=steps, seed=seed, sample_shape=(28, 28, 1))
        nets = {k: v for k, v in row.items() if k != "models"}
        return cls(**{**base, **_published_training(model, images=True), **nets, **overrides})

    # Fields added after checkpoints were committed: left out of the comparison at their defaults,
    # so those checkpoints (which do not name them) still resume.
    _LATER_FIELDS = {"noise": "normal", "g_updates": 1}
    # Fields training never reads: a checkpoint may be sampled (and resumed) under any value of them.
    _EVALUATION_FIELDS = ("eval_bn_refresh",)

    def compatibility_dict(self) -> dict:
        """Everything a checkpoint must agree on: all fields but the budget ``steps`` and the sampling protocol."""
        d = dataclasses.asdict(self)
        for name in ("steps",) + self._EVALUATION_FIELDS:
            d.pop(name)
        for name, default in self._LATER_FIELDS.items():
            if d[name] == default:
                d.pop(name)
        return json.loads(json.dumps(d))  # tuples -> lists, as stored in checkpoint metadata


# Toy presets: one row per model.  ``published`` is each model's own authors' 2-D
# setting, read off their public code:
# * GAN / PacGAN-m: fjxmlzn/PacGAN, synthetic_data_experiments/2DRing_GAN&PacGAN/config.py
#   and 2DGrid_GAN&PacGAN/config.py: num_epoch 400, num_sample 100000, batch_size 100
#   (so 400 x 1000 = 400,000 generator steps), learning_rate 1e-4, beta1 0.8, nets 4 x 400
#   (batch-norm ReLU) / 3 maxout x 200 x 5 pieces, N(0, 0.02^2) init; updates simultaneous
#   (ali_algorithm).  The training-set size lives in otgen.experiments.toy.TOY_TRAIN_SIZE.
#   Evaluation (pacgan_task.py, pacgan/extensions.py): after each epoch a DataStreamMonitoring
#   pass over the train stream's first 50 batches of 100 updates the generator's batch-norm
#   population statistics at the current parameters, then the samples are drawn with them:
#   eval_bn_refresh 50.
# * WGAN-GP / WGAN: igul222/improved_wgan_training, gan_toy.py: DIM 512 (3 ReLU layers, He
#   init, no batch norm), LAMBDA .1, CRITIC_ITERS 5, BATCH_SIZE 256, ITERS 100000, data
#   divided by its standard deviation ("dataset /= 2.828 # stdev"); wgan-gp: Adam 1e-4,
#   betas (0.5, 0.9); wgan: tf.train.RMSPropOptimizer(5e-5) (TensorFlow 1 defaults: decay 0.9,
#   epsilon 1e-10 inside the root, mean square initialised to 1), clip [-0.01, 0.01].
_PACGAN_TOY = dict(arch="mlp", batch_size=100, g_hidden=400, g_layers=4, d_hidden=200, d_layers=3)
_GAN_TOY_PY = dict(arch="relu_mlp", steps=100_000, batch_size=256, n_critic=5, simultaneous=False,
                   g_hidden=512, g_layers=3, d_hidden=512, d_layers=3, standardize=True)
TOY_PRESETS: dict[str, dict[str, dict]] = {
    "default": {m: dict(_PACGAN_TOY, steps=10_000) for m in GAN_MODELS},
    "published": {
        **{m: dict(_PACGAN_TOY, steps=400_000, eval_bn_refresh=50) for m in ("gan", "pacgan2", "pacgan3", "pacgan4")},
        "wgan-gp": dict(_GAN_TOY_PY, gp_lambda=0.1, optimizer="adam", lr=1e-4, beta1=0.5, beta2=0.9),
        "wgan": dict(_GAN_TOY_PY, optimizer="rmsprop", lr=5e-5, rms_decay=0.9, eps=1e-10, eps_in_sqrt=True,
                     rms_initial=1.0, clip=0.01),
    },
}


# Image presets: the nets and batch of each image setting (training from TRAINING["images"]).
# * default: igul222/improved_wgan_training gan_mnist.py (DIM 64, BATCH_SIZE 50, 128-d noise).
# * stacked: fjxmlzn/PacGAN stacked_MNIST_experiments/VEEGAN_experiment: config.py (batch_size 64,
#   z_dim 100, learning_rate 2e-4, beta1 0.5, 50 epochs of 128,000 images = 100,000 iterations) and
#   model.py (carpedm20's DCGAN with gf_dim = df_dim = 64; z ~ U[-1, 1]; per iteration one D update
#   and two G updates on the same z, "to make sure that d_loss does not go to zero"; batch-norm decay
#   0.9).  Only the GAN loss: its discriminator batch-normalises.
IMAGE_PRESETS: dict[str, dict] = {
    "default": dict(models=GAN_MODELS, arch="dcgan", batch_size=50, noise_dim=128),
    "stacked": dict(models=("gan", "pacgan2", "pacgan3", "pacgan4"), arch="dcgan_stacked", batch_size=64,
                    noise_dim=100, noise="uniform", g_updates=2, bn_momentum=0.9),
}


def curve_steps(total: int) -> tuple[int, ...]:
    """Log-spaced evaluation steps 1k, 3k, 10k, 30k, ... below ``total``, and ``total`` itself."""
    marks = [m * 10 ** e for e in range(3, 9) for m in (1, 2, 3, 5)]
    return tuple(s for s in marks if s < total) + ((int(total),) if total > 0 else ())


# Each model's own optimiser and update rule, as its authors' code trains it (cited in the README's
# table of published hyperparameters): the toy row below it and the image setting start from these.
_PACGAN_ADAM = dict(optimizer="adam", lr=1e-4, beta1=0.8, beta2=0.999, n_critic=1, simultaneous=True)
_DCGAN_ADAM = dict(optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999, n_critic=1, simultaneous=False)
TRAINING: dict[str, dict[str, dict]] = {
    "toy": {
        "wgan": dict(optimizer="rmsprop", lr=5e-5, rms_decay=0.99, eps=1e-8, n_critic=5, clip=0.01,
                     gp_lambda=0.0, simultaneous=False),
        "wgan-gp": dict(optimizer="adam", lr=1e-4, beta1=0.5, beta2=0.9, n_critic=5, clip=0.0,
                        gp_lambda=10.0, simultaneous=False),
        **{m: _PACGAN_ADAM for m in ("gan", "pacgan2", "pacgan3", "pacgan4")},
    },
}
TRAINING["images"] = {**TRAINING["toy"], **{m: _DCGAN_ADAM for m in ("gan", "pacgan2", "pacgan3", "pacgan4")}}


def _published_training(model: str, images: bool) -> dict:
    row = TRAINING["images" if images else "toy"]
    if model not in row:
        raise ValueError(f"model must be one of {GAN_MODELS}, got {model!r}")
    return dict(row[model])


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

    def critic_step(state: GANState, real, key):
        """One discriminator update on ``real`` of shape (m, batch, *sample_shape)."""
        k_z, k_gp = jax.random.split(key)
        fake, _ = generate(state.g_params, state.g_stats, noise(k_z))  # stats move on G's own update only
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
        state, (d_total, base, gp) = jax.lax.scan(
            lambda s, inputs: critic_step(s, *inputs), state, (real, jax.random.split(k_critic, cfg.n_critic)))
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
    key = _compiled_key(cfg)
    if key not in _RUNNERS:
        _RUNNERS[key] = _make_chunk_runner(key)
    return _RUNNERS[key]


_RUNNERS: dict[GANConfig, Any] = {}


def _compiled_key(cfg: GANConfig) -> GANConfig:
    """``cfg`` with the fields no compiled function reads (budget, seed, sampling protocol) at fixed values:
    the cache key of the jitted runners, refreshers and samplers."""
    return dataclasses.replace(cfg, steps=0, seed=0, eval_bn_refresh=0)


def _make_chunk_runner(cfg: GANConfig):
    fit_step = make_fit_step(cfg)

    @partial(jax.jit, static_argnums=2)
    def run(state, data, length):
        return jax.lax.scan(lambda s, _: fit_step(s, data), state, None, length=length)

    return run


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves))


def _make_sampler(cfg: GANConfig):
    g_net, _ = build_networks(cfg)

    @partial(jax.jit, static_argnums=3)
    def sample(g_params, g_stats, key, n):
        z = draw_noise(cfg, key, (n,))
        return g_net.apply({"params": g_params, "batch_stats": g_stats}, z, train=False)

    return sample


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


def _make_refresher(cfg: GANConfig):
    g_net, _ = build_networks(cfg)

    @partial(jax.jit, static_argnums=3)
    def refresh(g_params, g_stats, key, n):
        def one_batch(stats, k):
            _, stats = generate_in_training_mode(g_net, g_params, stats, draw_noise(cfg, k, (cfg.pack, cfg.batch_size)))
            return stats, None

        return jax.lax.scan(one_batch, g_stats, jax.random.split(key, n))[0]

    return refresh


_REFRESHERS: dict[GANConfig, Any] = {}


def _refresher_for(cfg: GANConfig):
    key = _compiled_key(cfg)
    if key not in _REFRESHERS:
        _REFRESHERS[key] = _make_refresher(key)
    return _REFRESHERS[key]


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


_SAMPLERS: dict[GANConfig, Any] = {}


def _sampler_for(cfg: GANConfig):
    key = _compiled_key(cfg)
    if key not in _SAMPLERS:
        _SAMPLERS[key] = _make_sampler(key)
    return _SAMPLERS[key]


def _validate_data(cfg: GANConfig, data) -> np.ndarray:
    x = np.asarray(data)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"training data must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if cfg.image and x.ndim == 3:
        x = x[..., None]
    if x.ndim < 2 or tuple(x.shape[1:]) != cfg.sample_shape:
        raise ValueError(f"training data must have shape (n, {', '.join(map(str, cfg.sample_shape))}), "
                         f"got {x.shape}")
    if x.shape[0] < 1:
        raise ValueError("training data is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("training data contains NaN or infinite values")
    if cfg.image and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"image data must lie in [0, 1] (the range the generators' samples are clipped to), "
                         f"got range [{x.min():g}, {x.max():g}]")
    return x


def _data_scale(cfg: GANConfig, x: np.ndarray) -> float:
    """The standard deviation the data is divided by (1 unless ``cfg.standardize``)."""
    if not cfg.standardize:
        return 1.0
    scale = float(np.sqrt(np.mean(np.var(x.reshape(len(x), -1), axis=0, dtype=np.float64))))
    if not scale > 0:
        raise ValueError("cannot standardise training data with zero variance")
    return scale


def _metadata(cfg: GANConfig, step: int, data_digest: str, history: dict, curve: list, scale: float,
              seconds: float = 0.0) -> dict:
    return {"kind": _CHECKPOINT_KIND, "model": cfg.model, "config": cfg.compatibility_dict(),
            "step": int(step), "data": data_digest, "history": history, "curve": curve, "data_scale": scale,
            "seconds": float(seconds)}


def _check_compatible(path: Path, meta: dict, cfg: GANConfig, data_digest: str | None) -> None:
    if meta.get("kind") == _CHECKPOINT_KIND and meta.get("model") != cfg.model:
        raise CheckpointError(f"{path} was written by model {meta.get('model')!r}, not {cfg.model!r}; "
                              "use another run directory (otgen toy: --overwrite)")
    check_training_metadata(path, meta, kind=_CHECKPOINT_KIND, what="GAN training", config=cfg.compatibility_dict(),
                            data_digest=data_digest)


def _restore(path: Path, cfg: GANConfig, data_digest: str | None) -> tuple[GANState, dict, dict]:
    _, meta = load_pytree(path)
    _check_compatible(path, meta, cfg, data_digest)
    state, _ = load_pytree(path, like=init_state(cfg))
    state = jax.tree_util.tree_map(jnp.asarray, state)
    history = {k: [int(v) if k == "step" else float(v) for v in vals]
               for k, vals in meta.get("history", {}).items()}
    return state, history, meta


def load_gan(run_dir: str | Path, cfg: GANConfig) -> GANResult:
    """The :class:`GANResult` stored in ``run_dir``'s checkpoint (refused if ``cfg`` differs)."""
    state, history, meta = _restore(RunDir(run_dir).file(CHECKPOINT_NAME), cfg, None)
    return GANResult(cfg, state, history, data_scale=float(meta.get("data_scale", 1.0)),
                     curve=tuple(meta.get("curve", ())), data_digest=str(meta.get("data", "")),
                     total_seconds=float(meta.get("seconds", 0.0)))


def save_gan(result: GANResult, run_dir: str | Path) -> Path:
    """``result`` as ``run_dir``'s checkpoint (what :func:`load_gan` and a resumed training read)."""
    path = RunDir(run_dir).file(CHECKPOINT_NAME)
    meta = _metadata(result.config, int(result.state.step), result.data_digest, result.history,
                     list(result.curve), result.data_scale, result.total_seconds)
    return save_pytree(path, result.state, metadata=meta)


def _diverged(cfg: GANConfig, step: int, metrics: dict, last_saved: int | None) -> TrainingDivergedError:
    losses = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    kept = (f"the last checkpoint (step {last_saved}) is kept" if last_saved is not None
            else "no checkpoint was written")
    return TrainingDivergedError(
        f"{cfg.model}: non-finite loss at step {step} ({losses}); training stopped and {kept}. "
        f"Try a smaller learning rate (lr={cfg.lr:g}) or check the data scale.")


def train_gan(cfg: GANConfig, data, run_dir: str | Path | None, resume: bool = False,
              checkpoint_every: int = 1000, progress: bool = True, evaluate=None,
              eval_steps: tuple[int, ...] = (), key: jax.Array | None = None) -> GANResult:
    """Train ``cfg.model`` on ``data`` for ``cfg.steps`` generator updates.

    Writes ``checkpoint.npz`` into ``run_dir`` every ``checkpoint_every`` steps and
    at the end (atomic, pickle-free, with the config in its metadata), and
    ``loss.png``.  With ``resume=True`` an existing checkpoint is continued --
    refused (:class:`~otgen.checkpoint.CheckpointError`) if it comes from another
    model, configuration (``steps`` aside: the budget may be extended) or data
    set.  A non-finite loss raises :class:`TrainingDivergedError` before any
    checkpoint of the bad state is written.  Ctrl-C saves the last completed chunk.

    Learning curve: at every step of ``eval_steps`` (e.g. :func:`curve_steps`)
    ``evaluate(result) -> dict`` is called on the :class:`GANResult` of that
    moment and ``{"step": s, **record}`` is appended to ``result.curve``; a
    checkpoint is written at the same step, so the record can be recomputed from
    it.  The curve travels in the checkpoint and survives a resume.

    ``key`` seeds a fresh start (default ``jax.random.key(cfg.seed)``); ``run_dir=None`` trains
    in memory (no checkpoint, no figure).
    """
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    from otgen.plotting import loss_curves  # matplotlib only when training

    x = _validate_data(cfg, data)
    digest = array_fingerprint(x)
    scale = _data_scale(cfg, x)
    run = None if run_dir is None else RunDir(run_dir)
    ckpt = None if run is None else run.file(CHECKPOINT_NAME)
    eval_steps = sorted({int(s) for s in eval_steps if 0 < int(s) <= cfg.steps})

    state, history, curve, last_saved, before = None, {}, [], None, 0.0
    if resume and ckpt is not None and ckpt.exists():
        state, history, meta = _restore(ckpt, cfg, digest)
        curve = [dict(r) for r in meta.get("curve", [])]
        last_saved = int(state.step)
        before = float(meta.get("seconds", 0.0))  # training time of the earlier calls
    if state is None:
        state = init_state(cfg, key)
    step = int(state.step)

    def save(s, at):
        nonlocal last_saved
        if not bool(_all_finite((s.g_params, s.g_stats, s.d_params))):
            raise _diverged(cfg, at, {"parameters": float("nan")}, last_saved)
        if ckpt is None:
            return
        save_pytree(ckpt, s, metadata=_metadata(cfg, at, digest, history, curve, scale,
                                                before + time.perf_counter() - t0))
        last_saved = at

    def result(s, seconds=0.0):
        return GANResult(cfg, s, history, seconds, data_scale=scale, curve=tuple(curve), data_digest=digest,
                         total_seconds=before + seconds)

    run_chunk = make_chunk_runner(cfg)
    data_dev = jnp.asarray(x / np.float32(scale) if scale != 1.0 else x)
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=min(step, cfg.steps), desc=cfg.model, disable=None if progress else True,
               dynamic_ncols=True, leave=False)
    try:
        while step < cfg.steps:
            next_eval = next((e for e in eval_steps if e > step), cfg.steps)
            end = min(_next_multiple(step, cfg.log_every), _next_multiple(step, checkpoint_every), next_eval,
                      cfg.steps)
            new_state, metrics = run_chunk(state, data_dev, end - step)
            metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
            finite = np.all([np.isfinite(v) for v in metrics.values()], axis=0)
            if not finite.all():
                first = int(np.argmin(finite))
                raise _diverged(cfg, step + first + 1, {k: float(v[first]) for k, v in metrics.items()},
                                last_saved)
            state, step = new_state, end
            history.setdefault("step", []).append(step)
            for k, v in metrics.items():
                history.setdefault(k, []).append(float(v.mean()))
            bar.update(end - bar.n)
            bar.set_postfix({k: f"{history[k][-1]:.3f}" for k in metrics})
            if evaluate is not None and step in eval_steps and all(r["step"] != step for r in curve):
                curve.append({"step": step, **evaluate(result(state))})
                save(state, step)
            elif step % checkpoint_every == 0:
                save(state, step)
    except KeyboardInterrupt:
        if step > (last_saved or 0):
            save(state, step)
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if last_saved != step:
        save(state, step)
    if history and run is not None:
        loss_curves({k: v for k, v in history.items()}, run.file(LOSS_PLOT_NAME),
                    title=f"{cfg.model} losses (mean per {cfg.log_every} steps)")
    return result(state, seconds)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every
