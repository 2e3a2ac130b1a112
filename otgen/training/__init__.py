"""Training: the one training loop every model trained by steps runs in, and the GAN baselines (GAN,
WGAN, WGAN-GP, PacGAN-m).

* :mod:`otgen.training.driver`: :func:`~otgen.training.driver.drive`, the loop (chunks, checkpoints on
  fixed steps, divergence, loss history, learning curve, progress, Ctrl-C) the GANs, the latent flows
  and the decoder GAN run in; :func:`curve_steps`;
* :mod:`otgen.training.config`: :class:`GANConfig` and the preset tables it is built from
  (``TOY_PRESETS``, ``IMAGE_PRESETS``, ``TRAINING``: each model's published optimiser);
* :mod:`otgen.training.steps`: networks, optimiser, :class:`GANState` and the jitted train step;
* :mod:`otgen.training.sampling`: :class:`GANResult`, a trained generator, and how it samples;
* :mod:`otgen.training.loop`: :func:`train_gan` (the GANs' steps in the driver) and its checkpoints (:func:`save_gan`, :func:`load_gan`,
  and the compact :func:`save_carry` a long run commits to continue on another machine);
* :mod:`otgen.training.decoder_gan`: AE-OT-GAN's decoder fine-tuning.

Usage::

    cfg = GANConfig.for_toy(model="pacgan2", steps=10_000, seed=0)
    result = train_gan(cfg, data, run_dir, resume=False, checkpoint_every=1000)
    samples = result.sample(jax.random.key(1), 2500)

The networks and losses live in :mod:`otgen.models`, the generator adapter in :mod:`otgen.generators.gan`.
"""

from otgen.training.config import GAN_MODELS, IMAGE_PRESETS, TOY_PRESETS, TRAINING, GANConfig
from otgen.training.loop import (CARRY_NAME, CHECKPOINT_NAME, LOSS_PLOT_NAME, TrainingDivergedError, load_gan, save_carry,
                                 save_gan, train_gan)
from otgen.training.driver import curve_steps, drive
from otgen.training.sampling import GANResult, refreshed_batch_stats
from otgen.training.steps import (GANState, build_networks, generate_in_training_mode, init_state, make_fit_step,
                                  make_optimizer, make_train_step)

__all__ = [
    "GAN_MODELS", "GANConfig", "GANState", "GANResult", "TrainingDivergedError",
    "build_networks", "make_optimizer", "init_state", "make_train_step", "make_fit_step",
    "train_gan", "load_gan", "save_gan", "save_carry", "CHECKPOINT_NAME", "CARRY_NAME", "LOSS_PLOT_NAME", "TOY_PRESETS", "IMAGE_PRESETS",
    "TRAINING", "curve_steps", "drive", "refreshed_batch_stats", "generate_in_training_mode",
]
