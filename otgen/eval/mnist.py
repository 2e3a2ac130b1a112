"""MNIST (and Fashion-MNIST) sample quality through the project's classifier: class coverage,
KL to uniform, FID.

:func:`digit_metrics` is the pure part (from logits and features);
:func:`evaluate_digits` loads (or trains and caches) the dataset's classifier and the held-out
half of its test set (:data:`HELD_OUT`), which is the FID / precision / recall reference and the
novelty metrics' held-out set; the other half (:data:`REAL_CONTROL`) is the *real* control row of
every report, so that row is scored against images it does not contain.  ``dataset="fashion"``
scores Fashion-MNIST with its own classifier; everything else is the same code.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from otgen.data.mnist import load_mnist
from otgen.eval.classifier import classify, load_or_train
from otgen.eval.fid import fid_from_features, gaussian_stats, frechet_distance, precision_recall
from otgen.eval.modes import kl_divergence
from otgen.eval.novelty import novelty, novelty_reference

__all__ = ["digit_metrics", "evaluate_digits", "reference_features", "load_classifier_cached", "train_features",
           "HELD_OUT", "REAL_CONTROL", "test_split", "REFERENCE_NAME", "feature_novelty_reference", "pixel_novelty_reference", "project_pixels", "prefixed_novelty"]

def test_split(n: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The test set's two halves (sorted indices): (held-out reference, real control), a seeded random
    split.  Halves by position would not be two draws of one distribution: MNIST's first 5,000 test
    digits come from other writers than its last 5,000 (FID ~33 between them in the classifier's
    features, against ~1.5 between two random halves)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


# The held-out half is the FID / precision / recall reference and the novelty metrics' held-out set;
# the other half is the *real* control row of the reports (scored against images it does not contain).
HELD_OUT, REAL_CONTROL = test_split()
REFERENCE_NAME = "a seeded random half of the test set (5,000 images)"


def _softmax_max(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p.max(axis=1) / p.sum(axis=1)


def digit_metrics(logits, features, reference_features, *, strict_fraction: float = 0.25,
                  pr_k: int | None = 3) -> dict[str, Any]:
    """Metrics of generated digits from their classifier ``logits`` (n, 10) and ``features`` (n, d).

    - ``classes_covered``: classes predicted for >= 1 sample
    - ``classes_covered_strict``: classes with >= ``strict_fraction * n / 10`` samples
    - ``kl_uniform``: KL(class histogram || uniform over 10)
    - ``fid``: Fréchet distance of the features to ``reference_features``
    - ``precision`` / ``recall`` (Kynkäänniemi et al., k = ``pr_k``; skipped when None)
    - ``mean_confidence``: mean max-softmax probability (low for unreadable digits)
    """
    logits = np.asarray(logits, np.float64)
    features = np.asarray(features, np.float64)
    if logits.ndim != 2 or logits.shape[1] != 10 or logits.shape[0] < 2:
        raise ValueError(f"logits must have shape (n >= 2, 10), got {logits.shape}")
    if features.shape[0] != logits.shape[0]:
        raise ValueError(f"{features.shape[0]} feature rows for {logits.shape[0]} logits")
    n = logits.shape[0]
    hist = np.bincount(logits.argmax(axis=1), minlength=10)
    out = {
        "n_samples": int(n),
        "classes_covered": int(np.count_nonzero(hist)),
        "classes_covered_strict": int(np.count_nonzero(hist >= strict_fraction * n / 10)),
        "kl_uniform": kl_divergence(hist, np.full(10, 0.1)),
        "class_histogram": [int(c) for c in hist],
        "fid": fid_from_features(features, reference_features),
        "mean_confidence": float(_softmax_max(logits).mean()),
    }
    if pr_k is not None:
        k = min(pr_k, n - 1, len(reference_features) - 1)
        out.update({k_: v for k_, v in precision_recall(reference_features, features, k=k).items()})
        out["pr_k"] = out.pop("k")
    return out


@functools.lru_cache(maxsize=4)
def load_classifier_cached(data_dir=None, cache_dir=None, dataset: str = "mnist"):
    """(params, metadata) of the dataset's cached classifier, training it once if absent; memoised."""
    return load_or_train(data_dir, cache_dir, dataset=dataset)


@functools.lru_cache(maxsize=4)
def reference_features(data_dir=None, cache_dir=None, dataset: str = "mnist") -> tuple[np.ndarray, float]:
    """Classifier features of the held-out test images (:data:`HELD_OUT`, the FID reference), and the
    FID of as many training images to them (what a sampler of the training distribution scores; memoised)."""
    params, _ = load_classifier_cached(data_dir, cache_dir, dataset)
    test_x = load_mnist("test", data_dir, dataset=dataset)[0][HELD_OUT]
    train_x, _ = load_mnist("train", data_dir, dataset=dataset)
    _, test_f = classify(params, test_x)
    # A fixed, seeded subset of the training set: same size as the reference.
    idx = np.random.default_rng(0).choice(len(train_x), size=len(test_x), replace=False)
    _, train_f = classify(params, train_x[np.sort(idx)])
    floor = frechet_distance(gaussian_stats(train_f), gaussian_stats(test_f))
    return test_f, floor


@functools.lru_cache(maxsize=4)
def train_features(data_dir=None, cache_dir=None, dataset: str = "mnist") -> np.ndarray:
    """Classifier features of all 60,000 training images (memoised)."""
    params, _ = load_classifier_cached(data_dir, cache_dir, dataset)
    return classify(params, load_mnist("train", data_dir, dataset=dataset)[0])[1]


@functools.lru_cache(maxsize=4)
def feature_novelty_reference(data_dir=None, cache_dir=None, dataset: str = "mnist"):
    """:func:`otgen.eval.novelty.novelty_reference` of the training images' features with test images
    of :data:`HELD_OUT` held out (memoised: every generator of a suite is scored against it)."""
    return novelty_reference(train_features(data_dir, cache_dir, dataset),
                             reference_features(data_dir, cache_dir, dataset)[0])


PIXEL_COMPONENTS = 50  # the pixel-space projection of the novelty metrics: PCA-50 of the training images


@functools.lru_cache(maxsize=4)
def pixel_projection(data_dir=None, dataset: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """(mean (784,), components (784, 50)) of the training images' PCA, pixels in [0, 1] (memoised)."""
    x = load_mnist("train", data_dir, dataset=dataset)[0].reshape(-1, 784).astype(np.float64) / 255.0
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:PIXEL_COMPONENTS].T


def project_pixels(images, data_dir=None, dataset: str = "mnist") -> np.ndarray:
    """Images (n, 28, 28) uint8 (or float in [0, 1]) -> their PCA-50 coordinates (n, 50)."""
    x = np.asarray(images)
    x = x.reshape(len(x), -1).astype(np.float64) / (255.0 if x.dtype == np.uint8 else 1.0)
    mean, comps = pixel_projection(data_dir, dataset)
    return (x - mean) @ comps


@functools.lru_cache(maxsize=4)
def pixel_novelty_reference(data_dir=None, cache_dir=None, dataset: str = "mnist"):
    """The novelty reference in pixel space (PCA-50 of the training images; the test images of
    :data:`HELD_OUT` held out)."""
    train = load_mnist("train", data_dir, dataset=dataset)[0]
    test = load_mnist("test", data_dir, dataset=dataset)[0][HELD_OUT]
    return novelty_reference(project_pixels(train, data_dir, dataset), project_pixels(test, data_dir, dataset))


def prefixed_novelty(prefix: str, samples, reference) -> dict[str, float]:
    """:func:`otgen.eval.novelty.novelty` against ``reference`` (a
    :class:`~otgen.eval.novelty.NoveltyReference`), every key prefixed (``feature_``, ``code_``)."""
    return {prefix + k: v for k, v in novelty(samples, reference).items()}


def evaluate_digits(images, data_dir=None, cache_dir=None, *, pr_k: int | None = 3,
                    dataset: str = "mnist", novelty: bool = True) -> dict[str, Any]:
    """Class coverage, KL to uniform, FID (vs the held-out test half), and novelty of generated digits.

    ``images``: uint8 (n, 28, 28) (or float in [0, 1]).  The classifier is loaded
    from ``cache_dir`` (default ``$OTGEN_CACHE_DIR/classifier`` or
    ``~/.cache/otgen/classifier``) or trained there on first use.  ``pr_k=None`` and
    ``novelty=False`` skip the costly parts (precision / recall, nearest training features).
    """
    data_dir = None if data_dir is None else str(data_dir)
    cache_dir = None if cache_dir is None else str(cache_dir)
    params, meta = load_classifier_cached(data_dir, cache_dir, dataset)
    logits, feats = classify(params, images)
    ref, floor = reference_features(data_dir, cache_dir, dataset)
    out = digit_metrics(logits, feats, ref, pr_k=pr_k)
    # novelty in the classifier's feature space: against the 60,000 training images, with the
    # held-out test half as the reference
    if novelty:
        out.update(prefixed_novelty("feature_", feats, feature_novelty_reference(data_dir, cache_dir, dataset)))
        out.update(prefixed_novelty("pixel_", project_pixels(images, data_dir, dataset),
                                    pixel_novelty_reference(data_dir, cache_dir, dataset)))
    out["fid_train_vs_test"] = floor
    out["fid_reference"] = REFERENCE_NAME
    out["classifier_test_accuracy"] = float(meta["test_accuracy"])
    return out
