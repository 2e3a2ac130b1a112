"""The GAN family (GAN, WGAN, WGAN-GP, PacGAN-m) as generators, on top of :mod:`otgen.training`.

The training loop, networks and preset tables live in :mod:`otgen.training`; this
file adapts one trained :class:`~otgen.training.GANResult` to the generator protocol.
With a ``workdir`` the fit checkpoints there (atomic, pickle-free) and a later fit
continues from the checkpoint, refusing one written by another configuration or
on other data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import jax
import numpy as np

from otgen.training import CARRY_NAME, CHECKPOINT_NAME, GANConfig, GANResult, curve_steps, load_gan, save_gan, train_gan

__all__ = ["GAN", "make"]


class GAN:
    """One GAN-family model.  ``evaluate(result) -> dict``, if given, is the learning curve's
    record at :func:`~otgen.training.curve_steps` (stored in the checkpoint and in ``.curve``)."""

    def __init__(self, config: GANConfig, *, progress: bool = True, evaluate: Callable | None = None,
                 checkpoint_every: int | None = None):
        self.config = config
        self.progress, self.evaluate = progress, evaluate
        # 1,000 steps: ~1 min of a toy GAN, ~5 min of gan_toy.py's WGAN-GP (3-4 steps/s beside another worker)
        self.checkpoint_every = checkpoint_every or min(1000, max(100, config.steps // 10))
        self.result: GANResult | None = None

    @property
    def name(self) -> str:
        return self.config.model

    def fit(self, data, key: jax.Array | None = None, workdir=None) -> "GAN":
        """Train for ``config.steps`` generator updates (continuing ``workdir``'s checkpoint if any).

        ``key`` seeds a fresh start (default ``jax.random.key(config.seed)``).
        """
        self.result = train_gan(self.config, data, workdir, resume=True, progress=self.progress,
                                checkpoint_every=self.checkpoint_every, evaluate=self.evaluate,
                                eval_steps=curve_steps(self.config.steps) if self.evaluate else (), key=key)
        return self

    def _require_fit(self) -> GANResult:
        if self.result is None:
            raise ValueError(f"this {self.name} model is not trained: call fit(data, key) first")
        return self.result

    def sample(self, key: jax.Array, n: int) -> np.ndarray:
        return self._require_fit().sample(key, n)

    @property
    def curve(self) -> list[dict]:
        return list(self._require_fit().curve)

    def save(self, directory) -> None:
        save_gan(self._require_fit(), directory)

    @classmethod
    def load(cls, directory, config: GANConfig) -> "GAN":
        """The model trained into ``directory``, from its checkpoint or its carry checkpoint (refused if it has
        another configuration)."""
        if not any((Path(directory) / name).exists() for name in (CHECKPOINT_NAME, CARRY_NAME)):
            raise ValueError(f"{Path(directory) / CHECKPOINT_NAME} is missing: no trained {config.model} there")
        model = cls(config)
        model.result = load_gan(directory, config)
        return model

    def info(self) -> dict:
        r = self._require_fit()
        return {"train_seconds": r.train_seconds, "total_train_seconds": r.total_seconds, "steps": int(r.state.step),
                "preset": self.config.preset, "eval_bn_refresh": self.config.eval_bn_refresh}


def make(model: str, suite: str, *, shape: tuple[int, ...], preset: str = "default", steps: int | None = None,
         seed: int = 0, progress: bool = True, evaluate: Callable | None = None, **options) -> GAN:
    """``model`` with the nets and training of :data:`otgen.training.TOY_PRESETS` ``[preset]`` (toys) or
    :data:`otgen.training.IMAGE_PRESETS` ``[preset]`` (images, whose suite presets give ``steps``)."""
    if options:
        raise ValueError(f"{model} takes no option {', '.join(sorted(options))} (AE-OT options?)")
    if suite == "toy":
        if len(shape) != 1:
            raise ValueError(f"toy data must be vectors, got sample shape {shape}")
        config = GANConfig.for_toy(model, steps=steps, seed=seed, dim=shape[0], preset=preset)
    else:
        if steps is None:
            raise ValueError("image GANs need their step budget (the suite's preset gives it)")
        config = GANConfig.for_mnist(model, steps=steps, seed=seed, sample_shape=tuple(shape), preset=preset)
    # an image step takes ~0.3-0.5 s on a 2-core CPU: checkpoint every few minutes, not every 10,000 steps
    return GAN(config, progress=progress, evaluate=evaluate, checkpoint_every=None if suite == "toy" else 500)
