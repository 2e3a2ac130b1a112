"""MNIST and Stacked-MNIST metrics: hand-built logits/modes with known answers, plus the
real classifier on real digits when both are available (skipped otherwise).

Random inputs come from seeded numpy generators / PRNG keys.
"""

import math
from pathlib import Path

import jax
import numpy as np
import pytest

from otgen.checkpoint import CheckpointError
from otgen.eval.mnist import digit_metrics
from otgen.data.stacked import N_MODES, make_stacked_mnist, mode_ids
from otgen.eval.stacked import stacked_mode_metrics

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/mnist"


def _one_hot_logits(classes):
    logits = np.full((len(classes), 10), -10.0)
    logits[np.arange(len(classes)), classes] = 10.0
    return logits


def test_uniform_class_histogram_gives_kl_zero_and_all_classes():
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(10), 30)
    feats = rng.normal(size=(300, 8))
    out = digit_metrics(_one_hot_logits(classes), feats, feats, pr_k=3)
    assert out["classes_covered"] == 10 and out["classes_covered_strict"] == 10
    assert out["kl_uniform"] == pytest.approx(0.0, abs=1e-15)
    assert out["class_histogram"] == [30] * 10
    assert out["fid"] == pytest.approx(0.0, abs=1e-8)  # same features as the reference
    assert out["precision"] == 1.0 and out["recall"] == 1.0
    assert out["mean_confidence"] == pytest.approx(1.0, abs=1e-6)


def test_collapsed_generator_closed_forms():
    rng = np.random.default_rng(1)
    classes = np.array([3] * 90 + [7] * 10)  # two classes, 90/10
    out = digit_metrics(_one_hot_logits(classes), rng.normal(size=(100, 4)), rng.normal(size=(200, 4)), pr_k=None)
    assert out["classes_covered"] == 2
    assert out["classes_covered_strict"] == 2  # 10 >= 0.25 * 100 / 10
    expected = 0.9 * math.log(0.9 / 0.1) + 0.1 * math.log(0.1 / 0.1)
    assert out["kl_uniform"] == pytest.approx(expected, rel=1e-12)
    assert "precision" not in out


def test_digit_metrics_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        digit_metrics(np.zeros((5, 9)), np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="feature rows"):
        digit_metrics(np.zeros((5, 10)), np.zeros((4, 2)), np.zeros((5, 2)))


def test_stacked_modes_and_kl_closed_forms():
    assert mode_ids([[1, 2, 3], [0, 0, 9], [9, 9, 9]]).tolist() == [123, 9, 999]
    every = stacked_mode_metrics(np.arange(N_MODES).repeat(26))
    assert every["modes_covered"] == 1000 and every["kl_uniform"] == pytest.approx(0.0, abs=1e-12)
    # 99 equally used modes out of 1000: KL = log(1000 / 99)
    few = stacked_mode_metrics(np.arange(99).repeat(10))
    assert few["modes_covered"] == 99 and few["kl_uniform"] == pytest.approx(math.log(1000 / 99), rel=1e-12)
    with pytest.raises(ValueError, match="0..999"):
        stacked_mode_metrics(np.array([1000]))


def test_make_stacked_mnist_channels_carry_the_labelled_digits():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (50, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 50)
    x, modes = make_stacked_mnist(images, labels, 400, jax.random.key(0))
    assert x.shape == (400, 28, 28, 3) and x.dtype == np.uint8
    # recover each channel's source image, and check the mode is built from those labels
    for i in range(0, 400, 37):
        src = [int(np.flatnonzero((images == x[i, ..., c]).all(axis=(1, 2)))[0]) for c in range(3)]
        assert modes[i] == 100 * labels[src[0]] + 10 * labels[src[1]] + labels[src[2]]
    x2, m2 = make_stacked_mnist(images, labels, 400, jax.random.key(0))
    np.testing.assert_array_equal(x, x2)  # reproducible from the key
    # roughly uniform over the 1000 possible triples given uniform-ish labels
    assert stacked_mode_metrics(modes)["modes_covered"] > 250


def _real_setup():
    if not MNIST_DIR.exists():
        pytest.skip("MNIST files not available")
    from otgen.eval.classifier import load_classifier

    try:
        load_classifier()
    except CheckpointError:
        pytest.skip("no cached classifier (run scripts/train_mnist_classifier.py)")
    from otgen.data.mnist import load_mnist

    return load_mnist("test", MNIST_DIR)


def test_real_digits_score_like_real_digits():
    from otgen.eval.mnist import HELD_OUT, REAL_CONTROL, evaluate_digits

    x, y = _real_setup()
    # the held-out half against itself (it is the reference): FID 0
    assert evaluate_digits(x[HELD_OUT], data_dir=MNIST_DIR, pr_k=None, novelty=False)["fid"] == pytest.approx(0.0, abs=1e-6)
    # the control half: a fresh draw of the same distribution scores like training digits (the floor),
    # not like another writer population (MNIST's halves by position: FID ~33); all classes; KL of its labels
    out = evaluate_digits(x[REAL_CONTROL], data_dir=MNIST_DIR, pr_k=3, novelty=False)
    assert 0 < out["fid"] < 2 * out["fid_train_vs_test"] < 6
    assert 0.8 < out["precision"] < 0.99  # not 1: the control's images are not in the reference
    assert out["classes_covered"] == 10
    yc = y[REAL_CONTROL]
    true_kl = float(np.sum(np.bincount(yc) / len(yc) * np.log(np.bincount(yc) / len(yc) * 10)))
    assert out["kl_uniform"] == pytest.approx(true_kl, abs=2e-3)
    # a "generator" that only makes ones: one class (>= 99% of them read as 1), large FID
    ones = evaluate_digits(x[y == 1], data_dir=MNIST_DIR, pr_k=None, novelty=False)
    assert ones["class_histogram"][1] >= 0.99 * (y == 1).sum()
    assert ones["kl_uniform"] > 2.0 and ones["fid"] > 10 * out["fid_train_vs_test"]


def test_test_split_is_a_random_partition():
    from otgen.eval.mnist import HELD_OUT, REAL_CONTROL, test_split

    assert len(HELD_OUT) == len(REAL_CONTROL) == 5000
    assert np.array_equal(np.sort(np.concatenate([HELD_OUT, REAL_CONTROL])), np.arange(10_000))
    # random, not by position: both halves reach into both halves of the file
    assert 2000 < np.sum(HELD_OUT < 5000) < 3000
    a, b = test_split(10, seed=1)
    assert len(a) == len(b) == 5 and not set(a) & set(b)


def test_real_stacked_mnist_modes_are_read_back():
    from otgen.eval.stacked import evaluate_stacked

    x, y = _real_setup()
    stacked, modes = make_stacked_mnist(x, y, 2000, jax.random.key(1))
    out = evaluate_stacked(stacked, data_dir=MNIST_DIR)
    truth = stacked_mode_metrics(modes)
    # ~99% per-digit accuracy -> ~97% of triples right; coverage agrees closely with the truth
    assert abs(out["modes_covered"] - truth["modes_covered"]) <= 0.03 * truth["modes_covered"]
