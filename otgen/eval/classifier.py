"""The project's own classifiers of MNIST digits and Fashion-MNIST clothes: one small CNN
(flax.linen) per dataset, trained and cached.

It labels generated images (class coverage, Stacked-MNIST modes) and its
128-d penultimate activations are the feature space of the project's FID.
Nothing is downloaded: ``train_classifier`` trains it from the IDX files, and
``load_or_train`` caches the weights with :mod:`otgen.checkpoint` under
``$OTGEN_CACHE_DIR/classifier`` (default ``~/.cache/otgen/classifier``), one file per
dataset (``mnist_cnn.npz``, ``fashion_cnn.npz``).
``scripts/train_mnist_classifier.py`` and :func:`otgen.eval.mnist.evaluate_digits`
go through the same :func:`load_or_train`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from otgen.checkpoint import CheckpointError, load_pytree, save_pytree

__all__ = ["DigitCNN", "ClassifierConfig", "to_input", "init_params", "train_classifier", "classify",
           "accuracy", "random_shift", "default_cache_dir", "checkpoint_path", "load_classifier", "load_or_train", "ARCH"]

# Bumped whenever DigitCNN or its default training recipe changes, so an old cached
# checkpoint is never silently reused.
ARCH = "digitcnn-v2"
CHECKPOINT_NAME = "mnist_cnn.npz"


class DigitCNN(nn.Module):
    """conv3x3(32)-pool-conv3x3(64)-pool-dense(128)-dense(10); ReLU throughout."""

    width: int = 32
    feature_dim: int = 128
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, return_features: bool = False):
        x = nn.max_pool(nn.relu(nn.Conv(self.width, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(2 * self.width, (3, 3))(x)), (2, 2), (2, 2))
        h = nn.relu(nn.Dense(self.feature_dim)(x.reshape(x.shape[0], -1)))
        logits = nn.Dense(self.num_classes)(h)
        return (logits, h) if return_features else logits


class ClassifierConfig(NamedTuple):
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    max_shift: int = 2  # random translations of up to this many pixels (augmentation)
    seed: int = 0


def to_input(images) -> jnp.ndarray:
    """uint8 (n, 28, 28[, 1]) in [0, 255] or float in [0, 1] -> float32 (n, 28, 28, 1)."""
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"digit images must have shape (n, 28, 28) or (n, 28, 28, 1), got {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise ValueError("digit images contain NaN or inf")
        if x.size and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
            raise ValueError(f"float digit images must lie in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        x = np.clip(x, 0.0, 1.0).astype(np.float32)
    else:
        raise ValueError(f"digit images must be uint8 or float, got dtype {x.dtype}")
    return jnp.asarray(x[..., None])


def init_params(key) -> Any:
    return DigitCNN().init(key, jnp.zeros((1, 28, 28, 1), jnp.float32))["params"]


class _TrainState(NamedTuple):
    params: Any
    opt_state: Any


def random_shift(key, x, max_shift: int):
    """Translate each image (n, H, W, C) by independent integer offsets in [-max_shift, max_shift]."""
    if max_shift == 0:
        return x
    n, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * max_shift + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))  # noqa: E731
    return jax.vmap(crop)(padded, offsets)


def _make_step(tx, max_shift: int):
    model = DigitCNN()

    @jax.jit
    def step(state: _TrainState, key, x, y):
        x = random_shift(key, x, max_shift)

        def loss_fn(params):
            logits = model.apply({"params": params}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return _TrainState(optax.apply_updates(state.params, updates), opt_state), loss

    return step


def train_classifier(images, labels, config: ClassifierConfig = ClassifierConfig(),
                     log: Callable[[str], None] | None = print) -> Any:
    """Adam with a cosine-decayed learning rate, shuffled mini-batches, random shifts; returns params.

    Deterministic given ``config.seed`` (shuffling and init come from one PRNG key).
    """
    x = to_input(images)
    y = np.asarray(labels)
    if y.shape != (x.shape[0],) or y.min() < 0 or y.max() > 9:
        raise ValueError(f"labels must be integers 0..9 of shape ({x.shape[0]},), got shape {y.shape}")
    if config.epochs < 1 or config.batch_size < 1 or config.learning_rate <= 0 or not 0 <= config.max_shift < 14:
        raise ValueError(f"invalid classifier config {config}")
    y = jnp.asarray(y, jnp.int32)
    n = x.shape[0]
    steps_per_epoch = n // config.batch_size
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)
    tx = optax.adam(schedule)
    key, init_key = jax.random.split(jax.random.key(config.seed))
    params = init_params(init_key)
    state = _TrainState(params, tx.init(params))
    step = _make_step(tx, config.max_shift)
    for epoch in range(config.epochs):
        key, perm_key, shift_key = jax.random.split(key, 3)
        order = np.asarray(jax.random.permutation(perm_key, n))
        shift_keys = jax.random.split(shift_key, steps_per_epoch)
        t0, losses = time.perf_counter(), []
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            state, loss = step(state, shift_keys[b], x[idx], y[idx])
            losses.append(loss)
        if log:
            log(f"classifier epoch {epoch + 1}/{config.epochs}: loss {float(jnp.mean(jnp.stack(losses))):.4f} "
                f"({time.perf_counter() - t0:.0f} s)")
    return state.params


@jax.jit
def _apply(params, x):
    return DigitCNN().apply({"params": params}, x, return_features=True)


def classify(params, images, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, 10) and penultimate features (n, 128) of digit images, in batches.

    The last batch is padded to ``batch_size`` so the jitted function compiles once.
    """
    x = to_input(images)
    n = x.shape[0]
    logits, feats = [], []
    for s in range(0, n, batch_size):
        xb = x[s:s + batch_size]
        m = xb.shape[0]
        if m < batch_size:
            xb = jnp.concatenate([xb, jnp.zeros((batch_size - m,) + xb.shape[1:], xb.dtype)])
        lo, fe = _apply(params, xb)
        logits.append(np.asarray(lo[:m]))
        feats.append(np.asarray(fe[:m]))
    if not logits:
        return np.zeros((0, 10), np.float32), np.zeros((0, DigitCNN.feature_dim), np.float32)
    return np.concatenate(logits), np.concatenate(feats)


def accuracy(params, images, labels) -> float:
    logits, _ = classify(params, images)
    return float(np.mean(logits.argmax(axis=1) == np.asarray(labels)))


def default_cache_dir() -> Path:
    root = os.environ.get("OTGEN_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "otgen"
    return base / "classifier"


def checkpoint_path(cache_dir=None, dataset: str = "mnist") -> Path:
    name = CHECKPOINT_NAME if dataset == "mnist" else f"{dataset}_cnn.npz"
    return (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / name


def load_classifier(cache_dir=None, dataset: str = "mnist") -> tuple[Any, dict]:
    """Load cached params and metadata; :class:`CheckpointError` if absent, corrupt or stale."""
    path = checkpoint_path(cache_dir, dataset)
    params, meta = load_pytree(path, like=init_params(jax.random.key(0)))
    if meta.get("arch") != ARCH:
        raise CheckpointError(f"{path} holds classifier {meta.get('arch')!r}, expected {ARCH!r}")
    return params, meta


def load_or_train(data_dir=None, cache_dir=None, config: ClassifierConfig = ClassifierConfig(),
                  retrain: bool = False, log: Callable[[str], None] | None = print,
                  dataset: str = "mnist") -> tuple[Any, dict]:
    """The cached classifier of ``dataset`` ("mnist" or "fashion"), or train one on its train split,
    test it on its test split, and cache it."""
    path = checkpoint_path(cache_dir, dataset)
    if not retrain and path.exists():
        try:
            return load_classifier(cache_dir, dataset)
        except CheckpointError as e:
            if log:
                log(f"cached classifier unusable ({e}); retraining")
    from otgen.data.mnist import load_mnist

    train_x, train_y = load_mnist("train", data_dir, dataset=dataset)
    test_x, test_y = load_mnist("test", data_dir, dataset=dataset)
    t0 = time.perf_counter()
    params = train_classifier(train_x, train_y, config, log=log)
    train_seconds = time.perf_counter() - t0
    acc = accuracy(params, test_x, test_y)
    meta = {"arch": ARCH, "dataset": dataset, "config": config._asdict(), "test_accuracy": acc,
            "train_seconds": round(train_seconds, 1), "n_train": int(len(train_y)), "n_test": int(len(test_y))}
    if log:
        log(f"classifier test accuracy {acc:.4f} after {train_seconds:.0f} s; caching at {path}")
    save_pytree(path, params, meta)
    return params, meta
