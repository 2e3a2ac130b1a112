"""FID and precision/recall against closed forms and an independent method (scipy sqrtm).

Seeded numpy generators make every run identical.
"""

import numpy as np
import pytest
import scipy.linalg

from otgen.eval.fid import GaussianStats, fid_from_features, frechet_distance, gaussian_stats, precision_recall


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_shifted_gaussians_closed_form():
    # Same covariance, means differ by delta: FID = |delta|^2 exactly.
    rng = np.random.default_rng(1)
    s = _random_spd(rng, 5)
    mu = rng.normal(size=5)
    delta = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance(GaussianStats(mu, s), GaussianStats(mu + delta, s)) == pytest.approx(
        float(delta @ delta), rel=1e-9)


def test_diagonal_covariances_closed_form():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 1.0, 1.0])
    expected = 3.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(GaussianStats(mu1, np.diag(a)), GaussianStats(mu2, np.diag(b)))
    assert got == pytest.approx(expected, rel=1e-12)


def test_matches_scipy_sqrtm_formula_on_random_covariances():
    rng = np.random.default_rng(2)
    for d in (2, 7, 20):
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
        assert frechet_distance(GaussianStats(mu1, s1), GaussianStats(mu2, s2)) == pytest.approx(ref, rel=1e-8)


def test_fid_is_symmetric_and_handles_singular_covariance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3)) @ np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 0]])  # rank 2
    y = rng.normal(size=(60, 3)) + 1.0
    assert fid_from_features(x, y) == pytest.approx(fid_from_features(y, x), rel=1e-8)
    assert np.isfinite(fid_from_features(x, x)) and fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_sample_fid_converges_to_population_value():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20000, 2))
    y = 2.0 * rng.normal(size=(20000, 2)) + np.array([1.0, 0.0])
    # N(0, I) vs N((1,0), 4I): 1 + 2 * (2 - 1)^2 = 3
    assert fid_from_features(x, y) == pytest.approx(3.0, abs=0.1)
    s = gaussian_stats(y)
    np.testing.assert_allclose(s.cov, 4 * np.eye(2), atol=0.15)


def test_precision_recall_identical_sets_and_disjoint_sets():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4))
    pr = precision_recall(x, x, k=3)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0
    far = precision_recall(x, x + 100.0, k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    # generator collapsed onto a quarter of the real data: precise, low recall
    half = x[x[:, 0] > 0.67]
    pr = precision_recall(x, half, k=3)
    assert pr["precision"] == 1.0 and pr["recall"] < 0.6


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="2-D"):
        gaussian_stats(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="incompatible"):
        frechet_distance(GaussianStats(np.zeros(2), np.eye(2)), GaussianStats(np.zeros(3), np.eye(3)))
