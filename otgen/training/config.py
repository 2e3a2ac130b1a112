"""What one GAN-family run is: :class:`GANConfig` and the tables its presets are read from.

Build a configuration with ``GANConfig.for_toy`` (``TOY_PRESETS``) or ``GANConfig.for_mnist``
(``IMAGE_PRESETS``); both start from the model's own optimiser and update rule (``TRAINING``).
Every field but the budget ``steps`` (and the sampling protocol ``eval_bn_refresh``) is part of
:meth:`GANConfig.compatibility_dict`, which a checkpoint must match to be resumed or loaded.

A *step* is one generator update, preceded by ``n_critic`` discriminator updates
(1 for GAN/PacGAN, 5 for the WGANs); ``steps`` is the budget.  ``batch_size``
counts discriminator inputs, so PacGAN-m draws ``m * batch_size`` real and
``m * batch_size`` generated samples per update, as in the PacGAN paper.

Hyperparameters (read off the authors' public code):

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

__all__ = ["GAN_MODELS", "GANConfig", "TOY_PRESETS", "IMAGE_PRESETS", "TRAINING"]

GAN_MODELS = ("gan", "wgan", "wgan-gp", "pacgan2", "pacgan3", "pacgan4")
ARCHS = ("mlp", "relu_mlp", "dcgan", "dcgan_stacked")
IMAGE_ARCHS = ("dcgan", "dcgan_stacked")
NOISES = ("normal", "uniform")
OPTIMIZERS = ("adam", "rmsprop")


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
    same_noise: bool = False               # the critic update sees the generator updates' noise draw too
                                           # (PacGAN's Stacked-MNIST code feeds one z to all three updates)
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
        if self.same_noise and (self.simultaneous or self.n_critic != 1):
            problems.append("same_noise shares one draw between one critic update and the generator's: it needs "
                            "alternating updates with n_critic == 1")
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
    _LATER_FIELDS = {"noise": "normal", "g_updates": 1, "same_noise": False}
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
#   (ali_algorithm).  The training-set size lives in otgen.pipelines.toy.TOY_TRAIN_SIZE.
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
#   and two G updates, all three fed the same z (feed_dict_z), the G update run twice "to make sure that
#   d_loss does not go to zero"; batch-norm decay 0.9).  Only the GAN loss: its discriminator batch-normalises.
IMAGE_PRESETS: dict[str, dict] = {
    "default": dict(models=GAN_MODELS, arch="dcgan", batch_size=50, noise_dim=128),
    "stacked": dict(models=("gan", "pacgan2", "pacgan3", "pacgan4"), arch="dcgan_stacked", batch_size=64,
                    noise_dim=100, noise="uniform", g_updates=2, same_noise=True, bn_momentum=0.9),
}


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
