"""Training the autoencoder: :func:`fit_autoencoder`, epochs of its jitted step
(:func:`otgen.models.autoencoder.make_train_step`) in the one training loop, :func:`otgen.training.driver.drive`."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import optax

from otgen.models.autoencoder import AEConfig, Autoencoder, AETrainState, check_images, make_train_step
from otgen.training.driver import drive

__all__ = ["fit_autoencoder"]


def fit_autoencoder(key, x: np.ndarray, model: Autoencoder, optimizer: optax.GradientTransformation,
                    cfg: AEConfig, state: AETrainState, epochs: int, batch_size: int, start_epoch: int = 0,
                    on_epoch_end: Callable[[int, AETrainState, dict], None] | None = None,
                    progress: bool = True) -> tuple[AETrainState, list[dict]]:
    """Train epochs ``start_epoch .. epochs-1`` on ``x`` (n, 28, 28, C) float32 in [0, 1].

    Epoch ``e`` shuffles with ``fold_in(key, e)``, so a run resumed from the state saved
    after epoch ``e`` continues exactly as the uninterrupted run would.  The last partial
    batch of each epoch is dropped (one compiled shape).  ``on_epoch_end(epoch, state,
    metrics)`` is where the caller checkpoints.
    """
    x = check_images(model, np.asarray(x, np.float32))
    n = len(x)
    batch_size = min(batch_size, n)
    if batch_size < 1:
        raise ValueError("need at least one training image")
    steps_per_epoch = n // batch_size
    step = make_train_step(model, optimizer, cfg)
    history, rows = [], {}

    def advance(state, first, count):  # one epoch: the driver's chunks end on epochs
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, first // steps_per_epoch), n))
        ms = []
        for i in range(count):
            state, m = step(state, x[perm[i * batch_size:(i + 1) * batch_size]])
            ms.append(m)
        return state, {k: np.asarray([m[k] for m in ms]) for k in ("loss", "mse")}

    def end_of_epoch(state, at):
        metrics = {"epoch": at // steps_per_epoch, "loss": rows["loss"][-1], "mse": rows["mse"][-1]}
        history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(metrics["epoch"] - 1, state, metrics)

    def diverged(at, metrics, saved):
        return FloatingPointError(f"autoencoder training: non-finite loss at step {at} ({metrics}); "
                                  f"the state after epoch {(saved or 0) // steps_per_epoch} is the last saved")

    start = start_epoch * steps_per_epoch
    state = drive(state, start, epochs * steps_per_epoch, advance, save=end_of_epoch, diverged=diverged,
                  log_every=steps_per_epoch, checkpoint_every=steps_per_epoch, history=rows,
                  last_saved=start if start else None, name="train-ae", progress=progress)
    return state, history
