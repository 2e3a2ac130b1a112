"""The MNIST classifier's plumbing on tiny synthetic digits (fast), and the real one when cached.

Synthetic data come from seeded numpy generators and training is seeded, so runs are identical.
"""

from pathlib import Path

import jax
import numpy as np
import pytest

import otgen.data.mnist as mnist_data
from otgen.checkpoint import CheckpointError, save_pytree
from otgen.eval import classifier as clf

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/mnist"


def _bars(n, seed):
    """Class 0: a bright horizontal bar; class 1: a vertical bar; random positions and noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    pos = rng.integers(4, 24, n)
    for i in range(n):
        if y[i] == 0:
            x[i, pos[i]:pos[i] + 3, 4:24] = 255
        else:
            x[i, 4:24, pos[i]:pos[i] + 3] = 255
    return x, y


def test_to_input_accepts_uint8_and_unit_floats_and_rejects_the_rest():
    u = np.full((2, 28, 28), 255, np.uint8)
    np.testing.assert_allclose(clf.to_input(u), np.ones((2, 28, 28, 1)))
    np.testing.assert_allclose(clf.to_input(np.full((2, 28, 28, 1), 0.5)), 0.5)
    with pytest.raises(ValueError, match="shape"):
        clf.to_input(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clf.to_input(np.full((1, 28, 28), 3.0))
    with pytest.raises(ValueError, match="NaN"):
        clf.to_input(np.full((1, 28, 28), np.nan))


def test_training_learns_a_separable_task_deterministically_and_batching_is_exact():
    x, y = _bars(512, seed=0)
    cfg = clf.ClassifierConfig(epochs=2, batch_size=64, learning_rate=3e-3, seed=1)
    params = clf.train_classifier(x, y, cfg, log=None)
    xt, yt = _bars(200, seed=1)
    assert clf.accuracy(params, xt, yt) >= 0.97
    again = clf.train_classifier(x, y, cfg, log=None)  # same seed -> same weights
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, again)
    # padded batching (batch 7 -> padding in the last batch) equals one big batch
    a_logits, a_feat = clf.classify(params, xt[:23], batch_size=7)
    b_logits, b_feat = clf.classify(params, xt[:23], batch_size=1000)
    np.testing.assert_allclose(a_logits, b_logits, rtol=1e-5, atol=1e-5)
    assert a_feat.shape == (23, 128)


def test_load_or_train_caches_and_reloads_without_training(tmp_path, monkeypatch):
    x, y = _bars(256, seed=2)
    monkeypatch.setattr(mnist_data, "load_mnist", lambda split, data_dir=None, dataset="mnist": (x, y))
    cfg = clf.ClassifierConfig(epochs=1, batch_size=64, learning_rate=3e-3, seed=0)
    params, meta = clf.load_or_train(cache_dir=tmp_path, config=cfg, log=None)
    assert (tmp_path / clf.CHECKPOINT_NAME).exists()
    assert meta["arch"] == clf.ARCH and meta["test_accuracy"] == clf.accuracy(params, x, y)

    def no_training(*a, **k):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(clf, "train_classifier", no_training)
    loaded, meta2 = clf.load_or_train(cache_dir=tmp_path, config=cfg, log=None)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, loaded)
    assert meta2 == meta


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OTGEN_CACHE_DIR", str(tmp_path))
    assert clf.default_cache_dir() == tmp_path / "classifier"
    monkeypatch.delenv("OTGEN_CACHE_DIR")
    assert clf.default_cache_dir() == Path.home() / ".cache" / "otgen" / "classifier"


def test_stale_or_foreign_checkpoint_is_refused(tmp_path):
    params = clf.init_params(jax.random.key(0))
    save_pytree(tmp_path / clf.CHECKPOINT_NAME, params, {"arch": "something-else"})
    with pytest.raises(CheckpointError, match="expected"):
        clf.load_classifier(tmp_path)
    save_pytree(tmp_path / clf.CHECKPOINT_NAME, {"w": np.zeros(3)}, {"arch": clf.ARCH})
    with pytest.raises(CheckpointError):
        clf.load_classifier(tmp_path)


def test_cached_real_classifier_reaches_99_percent():
    """Uses the classifier cached by scripts/train_mnist_classifier.py; skipped if absent."""
    if not MNIST_DIR.exists():
        pytest.skip("MNIST files not available")
    try:
        params, meta = clf.load_classifier()
    except CheckpointError:
        pytest.skip("no cached classifier (run scripts/train_mnist_classifier.py)")
    x, y = mnist_data.load_mnist("test", MNIST_DIR)
    acc = clf.accuracy(params, x, y)
    assert acc >= 0.99
    assert acc == pytest.approx(meta["test_accuracy"], abs=1e-6)


def test_random_shift_moves_each_image_by_its_own_bounded_offset():
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 14, 10, 0] = 1.0
    out = np.asarray(clf.random_shift(jax.random.key(0), x, 2))
    assert out.shape == x.shape
    pos = np.array([np.argwhere(o[..., 0] == 1.0)[0] for o in out])
    assert np.all(np.abs(pos - [14, 10]) <= 2)  # never further than max_shift
    assert len({tuple(p) for p in pos}) > 10  # offsets differ between images
    np.testing.assert_array_equal(clf.random_shift(jax.random.key(0), x, 0), x)
