"""Novelty and data-copying metrics on cases of known answer, and the toy scoring they feed.

The three reference generators of Meehan et al. (2020): a copier (the training
set replayed), the truth (fresh draws of the training distribution) and a
blurred generator (the truth plus extra noise).  Seeds are fixed.
"""

import jax
import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from otgen.data import toys
from otgen.eval.novelty import (copy_fraction, data_copying_test, mann_whitney_z, nearest_distances, novelty,
                                novelty_reference, training_spacing)
from otgen.eval.toy import evaluate_toy, spread_ratio, w2_distance


def _sets(name, seed):
    toy = toys.get(name)
    k = jax.random.split(jax.random.key(100 + seed), 3)
    return toy, toy.sample(k[0], 2000), toy.sample(k[1], 2500), toy.sample(k[2], 2500)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_copier_truth_and_blur_get_their_known_verdicts(name):
    cts = []
    for seed in range(3):
        toy, train, held, fresh = _sets(name, seed)
        rng = np.random.default_rng(seed)
        replay = train[rng.integers(0, len(train), 2500)] + 1e-7 * rng.standard_normal((2500, 2))
        blur = fresh + toy.std * rng.standard_normal(fresh.shape)
        r_copy, r_true, r_blur = (novelty(s, train, held) for s in (replay, fresh, blur))
        assert r_copy["copy_fraction"] > 0.99 and r_copy["data_copying_ct"] < -5
        assert r_copy["nn_distance_ratio"] < 0.01
        assert r_true["copy_fraction"] < 0.005 and 0.85 < r_true["nn_distance_ratio"] < 1.15
        assert r_blur["data_copying_ct"] > 1 and r_blur["nn_distance_ratio"] > 1.2
        cts.append(r_true["data_copying_ct"])
    assert abs(np.mean(cts)) < 2


@pytest.mark.heavy
def test_threshold_zero_aeot_is_flagged_as_a_copier(tmp_path):
    from otgen.generators.aeot import AEOT, ExtensionOptions

    toy, train, held, _ = _sets("ring8", 0)
    pure = AEOT(extension=ExtensionOptions(rule="angle", angle_threshold=0.0)).fit(
        train, jax.random.key(1), tmp_path, progress=False)
    r = novelty(pure.sample(jax.random.key(2), 2500), train, held)
    assert r["copy_fraction"] > 0.99 and r["data_copying_ct"] < -5
    # the same map and barycentres (saved in tmp_path) under the angle rule's default threshold, then
    # the default (spacing) rule, set up anew on them
    angle = AEOT(extension=ExtensionOptions(rule="angle")).fit(train, jax.random.key(1), tmp_path, progress=False)
    assert angle.resumed == ("fit-ot", "extend")
    r_angle = novelty(angle.sample(jax.random.key(2), 2500), train, held)
    assert r_angle["copy_fraction"] < 0.01  # the piecewise-linear extension makes new points
    assert r_angle["data_copying_ct"] > -4.5  # measured -3.3 (fresh data ~0): closer than fresh data, not a replay
    default = AEOT().fit(train, jax.random.key(1), tmp_path, progress=False)
    assert default.resumed == ("fit-ot",)
    r = novelty(default.sample(jax.random.key(2), 2500), train, held)
    assert r["copy_fraction"] < 0.01 and r["nn_global_z"] > r_angle["nn_global_z"] + 3


def test_nearest_distances_both_paths_and_self_exclusion():
    rng = np.random.default_rng(0)
    ref, x = rng.normal(size=(300, 12)), rng.normal(size=(50, 12))
    brute = np.sqrt(((x[:, None] - ref[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distances(x, ref, block=7), brute, rtol=1e-6)  # blocked product path
    np.testing.assert_allclose(nearest_distances(x[:, :2], ref[:, :2]),
                               np.sqrt(((x[:, None, :2] - ref[None, :, :2]) ** 2).sum(-1)).min(1), rtol=1e-9)
    own = nearest_distances(ref, ref, exclude_self=True)
    d = np.sqrt(((ref[:, None] - ref[None]) ** 2).sum(-1)) + np.diag(np.full(300, np.inf))
    np.testing.assert_allclose(own, d.min(1), rtol=1e-6)
    assert training_spacing(ref) == pytest.approx(float(np.median(d.min(1))), rel=1e-6)
    x[0, 0] = np.nan
    assert np.isinf(nearest_distances(x, ref)[0])
    with pytest.raises(ValueError, match="dimension"):
        nearest_distances(x, ref[:, :3])


def test_a_shared_reference_scores_as_the_sets_do():
    # 12-d: the blocked-product path; the reference is what a suite computes once for all its generators
    rng = np.random.default_rng(4)
    train, held = rng.normal(size=(3000, 12)), rng.normal(size=(800, 12))
    ref = novelty_reference(train, held, seed=3)
    for samples in (train[:500] + 1e-9, rng.normal(size=(600, 12)), 1.3 * rng.normal(size=(700, 12))):
        assert novelty(samples, ref) == novelty(samples, train, held, seed=3)
    assert ref.spacing == training_spacing(train)
    with pytest.raises(ValueError, match="not both"):
        novelty(train[:10], ref, seed=1)
    with pytest.raises(ValueError, match="held-out"):
        novelty(train[:10], train)
    with pytest.raises(ValueError, match="itself"):
        nearest_distances(train[:10], train, exclude_self=True)


def test_copy_fraction_is_scale_aware():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(500, 2))
    samples = np.concatenate([train[:100] + 1e-6, rng.normal(size=(100, 2))])
    assert copy_fraction(samples, train) == pytest.approx(0.5, abs=0.02)
    assert copy_fraction(1e-3 * samples, 1e-3 * train) == copy_fraction(samples, train)


def test_mann_whitney_z_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=80), rng.normal(0.3, 1, size=120)
    u = mannwhitneyu(a, b).statistic
    assert mann_whitney_z(a, b) == pytest.approx((u - 80 * 120 / 2) / np.sqrt(80 * 120 * 201 / 12))
    assert mann_whitney_z(a, b) < 0 < mann_whitney_z(b, a)


def test_ct_details_and_unused_cells():
    toy, train, held, fresh = _sets("ring8", 0)
    out = data_copying_test(train, held, fresh[:300], cells=8)  # ~37 generated samples per mode-cell
    assert out["cells"] == 8 and out["cells_used"] == 8 and np.isfinite(out["ct"])
    one_mode = fresh[np.argsort(np.linalg.norm(fresh - toy.centres[0], axis=1))[:400]]
    part = data_copying_test(train, held, one_mode, cells=8)  # cells without generated samples drop out
    assert 1 <= part["cells_used"] <= 3 and np.sum(np.isnan(part["z"])) == 8 - part["cells_used"]


def test_w2_and_spread_closed_forms():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(200, 2))
    assert w2_distance(a, a) == pytest.approx(0.0, abs=1e-7)
    assert w2_distance(a, a + np.array([3.0, 4.0])) == pytest.approx(5.0, rel=1e-9)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    pts = np.concatenate([c + 0.1 * rng.normal(size=(4000, 2)) for c in centres])
    assert spread_ratio(pts, centres, 0.1) == pytest.approx(1.0, abs=0.03)
    assert spread_ratio(0.5 * (pts - np.repeat(centres, 4000, 0)) + np.repeat(centres, 4000, 0), centres, 0.1) \
        == pytest.approx(0.5, abs=0.02)


def test_evaluate_toy_fields():
    toy, train, held, fresh = _sets("grid25", 0)
    r = evaluate_toy(fresh, toy, train, held)
    assert r["modes_captured"] == 25 and 0.95 < r["spread_ratio"] < 1.05
    assert {"w2", "copy_fraction", "data_copying_ct", "nn_distance_ratio"} <= set(r)
    assert "modes_captured" not in evaluate_toy(fresh, None, train, held)
