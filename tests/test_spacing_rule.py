"""The spacing rule of AE-OT's extension (otgen.ot.spacing): known answers, no training code output,
no crossing of a singular facet, a calibration checked on fresh data, save / load.

Every random draw is seeded, so each test is deterministic run to run.
"""

import jax
import numpy as np
import pytest

from otgen.eval.novelty import nearest_distances, novelty
from otgen.generators.aeot import AEOT, ExtensionOptions
from otgen.ot import SemiDiscreteOT, UniformBox, damped_newton
from otgen.ot.extension import extend
from otgen.ot.spacing import spacing_rule
from otgen.ot.spacing import kappa_for_budget, leave_one_out_spacing, nearest_targets
from otgen.stats import mann_whitney_z

CENTRES = np.array([[0.25, 0.5], [0.75, 0.5]])
STD = 0.03


def _draw(n, seed):
    rng = np.random.default_rng(seed)
    return (CENTRES[rng.integers(0, 2, n)] + rng.normal(0, STD, (n, 2))).astype(np.float32)


@pytest.fixture(scope="module")
def two_clusters():
    """300 points from two Gaussian clusters 0.5 apart (16 std), the map from the unit square onto them."""
    y = _draw(300, 0)
    bmap = SemiDiscreteOT(UniformBox(dim=2), y).fit(jax.random.key(0), tol=0.02, progress=False,
                                                      optimizer=damped_newton(init_h="discrete"))
    return y, extend(bmap, jax.random.key(1), rule="spacing")


def test_nearest_targets_and_spacing_match_brute_force():
    rng = np.random.default_rng(3)
    q, r = rng.normal(size=(37, 5)), rng.normal(size=(3000, 5))
    d = np.linalg.norm(q[:, None] - r[None], axis=2)
    idx, dist = nearest_targets(q, r, block=16)
    np.testing.assert_array_equal(idx, d.argmin(1))
    np.testing.assert_allclose(dist, d.min(1), rtol=1e-4)
    dr = np.linalg.norm(r[:200, None] - r[None, :200], axis=2) + np.diag(np.full(200, np.inf))
    np.testing.assert_allclose(leave_one_out_spacing(r[:200]), dr.min(1), rtol=1e-4)


def test_kappa_for_budget_known_answer():
    loo = np.array([1.0] * 98 + [5.0, 10.0])  # median 1; two isolated points
    assert kappa_for_budget(loo, 0.0) == pytest.approx(10.0)
    assert kappa_for_budget(loo, 0.05) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="budget"):
        kappa_for_budget(loo, 1.0)


def test_no_output_is_a_training_point_and_none_crosses_the_gap(two_clusters):
    y, ext = two_clusters
    z = np.asarray(ext.generate(jax.random.key(2), 3000))
    assert z.shape == (3000, 2) and np.all(np.isfinite(z))
    assert nearest_distances(z, y).min() > 1e-4 * ext.spacing_rule.spacing  # never a training point
    # the gap is 16 std wide: no sample in its middle 6 std (real draws: none beyond 4.5 std in 10^5)
    assert np.all(np.abs(z[:, 0] - 0.5) > 3 * STD)
    # tails: measured 1.6% beyond 4 std (real draws 0.03%): in 2-D the calibrated noise overshoots the
    # clusters' rims (docs/generation.md)
    assert np.mean(np.min(np.linalg.norm(z[:, None] - CENTRES[None], axis=2), axis=1) > 4 * STD) < 0.025
    # both clusters are generated, in proportion
    share = np.mean(np.argmin(np.linalg.norm(z[:, None] - CENTRES[None], axis=2), axis=1) == 0)
    assert abs(share - np.mean(np.linalg.norm(y - CENTRES[0], axis=1) < 0.25)) < 0.05


def test_generated_points_sit_farther_from_the_training_set_than_the_angle_rules(two_clusters):
    """Checked on an independent fresh draw, not on the training points the rule was calibrated on.
    In 2-D the jitter's calibration saturates (an interpolation stays inside the clusters' hulls, fresh
    draws do not): the spacing rule narrows the gap to fresh data, it does not close it (docs/generation.md)."""
    y, ext = two_clusters
    fresh_draw = _draw(2000, 11)
    fresh = nearest_distances(fresh_draw, y)
    z_spacing = mann_whitney_z(nearest_distances(np.asarray(ext.generate(jax.random.key(3), 2000)), y), fresh)
    angle = ext._replace(spacing_rule=None)
    z_angle = mann_whitney_z(nearest_distances(np.asarray(angle.generate(jax.random.key(3), 2000)), y), fresh)
    assert z_spacing > z_angle + 5.0 and z_spacing > -12.0, (z_spacing, z_angle)
    # the pure semi-discrete map (a replay) is flagged by the same test; a second fresh draw is not
    replay = np.asarray(ext.bmap(ext.bmap.source.sample(jax.random.key(4), 2000)))
    flagged = novelty(replay, y, fresh_draw)
    assert flagged["copy_fraction"] == 1.0 and flagged["nn_global_z"] < -20
    assert abs(novelty(_draw(2000, 12), y, fresh_draw)["nn_global_z"]) < 3.0


def test_rule_parameters_are_measured_not_assumed(two_clusters):
    y, ext = two_clusters
    rule = ext.spacing_rule
    loo = np.linalg.norm(y[:, None] - y[None], axis=2) + np.diag(np.full(len(y), np.inf))
    assert rule.spacing == pytest.approx(np.median(loo.min(1)), rel=2e-3)  # float32 distances
    assert rule.kappa == pytest.approx(np.quantile(loo.min(1), 1 - rule.budget) / rule.spacing, rel=5e-3)
    assert 0.0 < rule.jitter <= 4.0 and 0.5 < rule.acceptance <= 1.0
    # a jitter given is kept, and changes the draw
    fixed = spacing_rule(ext, jax.random.key(5), jitter=0.0)
    assert fixed.spacing_rule.jitter == 0.0
    assert not np.allclose(fixed.generate(jax.random.key(2), 50), ext.generate(jax.random.key(2), 50))


def test_bad_rule_settings_are_rejected(two_clusters):
    _, ext = two_clusters
    with pytest.raises(ValueError, match="rule must be"):
        ExtensionOptions(rule="nearest")
    with pytest.raises(ValueError, match="budget"):
        ExtensionOptions(budget=1.5)
    with pytest.raises(ValueError, match="jitter"):
        ExtensionOptions(jitter=-1.0)
    with pytest.raises(ValueError, match="noise must be"):
        ExtensionOptions(noise="isotropic")
    with pytest.raises(ValueError, match="noise must be"):
        spacing_rule(ext, jax.random.key(0), noise="isotropic")
    with pytest.raises(ValueError, match="metric"):
        spacing_rule(ext, jax.random.key(0), metric=np.eye(3))
    with pytest.raises(ValueError, match="key"):
        ext.map_with_info(np.zeros((4, 2), np.float32))


def test_the_rule_is_saved_with_the_map_and_resumed(tmp_path):
    y = _draw(120, 5)
    first = AEOT().fit(y, jax.random.key(0), tmp_path)
    assert first.latent_map.rule == "spacing" and first.resumed == ()
    again = AEOT().fit(y, jax.random.key(0), tmp_path)
    assert again.resumed == ("fit-ot", "extend")
    assert again.latent_map.spacing_rule.as_dict() == first.latent_map.spacing_rule.as_dict()
    np.testing.assert_array_equal(again.sample(jax.random.key(9), 64), first.sample(jax.random.key(9), 64))
    loaded = AEOT.load(tmp_path)
    np.testing.assert_array_equal(loaded.sample(jax.random.key(9), 64), first.sample(jax.random.key(9), 64))
    with pytest.raises(ValueError, match="holds the spacing rule"):
        AEOT.load(tmp_path, extension=ExtensionOptions(rule="angle"))
    assert first.latent_map.spacing_rule.noise == "local" and first.info()["rule_noise"] == "local"
    # the earlier edge noise is asked for by name, set up anew on the same barycentres, and saved as such
    edges = AEOT(extension=ExtensionOptions(noise="edges")).fit(y, jax.random.key(0), tmp_path)
    assert edges.resumed == ("fit-ot",) and edges.latent_map.spacing_rule.local is None
    assert AEOT.load(tmp_path).latent_map.spacing_rule.noise == "edges"
    # another rule in the same workdir: the barycentres are reused, the rule replaced and saved
    angle = AEOT(extension=ExtensionOptions(rule="angle")).fit(y, jax.random.key(0), tmp_path)
    assert angle.latent_map.rule == "angle" and angle.resumed == ("fit-ot",)
    assert AEOT.load(tmp_path).latent_map.rule == "angle"


def test_admissible_neighbours_match_brute_force():
    from otgen.ot.spacing import admissible_neighbours

    r = np.random.default_rng(4).normal(size=(500, 3)).astype(np.float32)
    d = np.linalg.norm(r[:, None] - r[None], axis=2) + np.diag(np.full(500, np.inf))
    radius = float(np.median(d.min(1)) * 1.5)
    nb = admissible_neighbours(r, radius, 6, block=64)
    order = np.argsort(d, axis=1)[:, :6]
    want = np.where(np.take_along_axis(d, order, 1) <= radius, order, -1)
    np.testing.assert_array_equal(nb, want)


def test_generation_keeps_the_cells_masses_where_densities_differ():
    """A tight and a wide cluster of 150 codes each: the wide one's cells more often lack an admissible
    neighbour among their source neighbours.  Those samples move within their own code's admissible
    neighbourhood instead of being redrawn: each cluster keeps its half of the mass, and fewer samples are
    redrawn than without the fallback."""
    rng = np.random.default_rng(11)
    y = np.concatenate([CENTRES[0] + rng.normal(0, 0.01, (150, 2)),
                        CENTRES[1] + rng.normal(0, 0.06, (150, 2))]).astype(np.float32)
    bmap = SemiDiscreteOT(UniformBox(dim=2), y).fit(jax.random.key(0), progress=False)
    ext = extend(bmap, jax.random.key(1), rule="spacing", top_k=4)
    assert ext.spacing_rule.acceptance >= 0.95
    z = np.asarray(ext.generate(jax.random.key(2), 4000))
    wide = np.mean(z[:, 0] > 0.5)
    assert abs(wide - 0.5) < 3 * np.sqrt(0.25 / 4000), wide
    assert nearest_distances(z, y).min() > 0  # still never a training point
    # the same map without the fallback redraws more
    old = ext._replace(spacing_rule=ext.spacing_rule._replace(neighbours=None))
    _, ok = old.map_with_info(bmap._require_source().sample(jax.random.key(3), 4000), key=jax.random.key(4))
    assert np.mean(np.asarray(ok)) < ext.spacing_rule.acceptance


def test_local_noise_has_the_covariance_of_the_own_code_and_its_nearest_codes():
    """Known answer: the noise of a sample whose own target is i is N(0, jitter^2 C_i), C_i the biased
    covariance of y_i and its LOCAL_K - 1 nearest other targets (brute force), with an isotropic share
    ``iso`` N(0, jitter^2 ((1 - iso) C_i + iso tr(C_i) / d I)), checked on 2^16 draws against the sampling
    error of a covariance estimate."""
    import jax.numpy as jnp

    from otgen.ot.spacing import LOCAL_K, local_noise, nearest_k_targets

    rng = np.random.default_rng(3)
    y = (rng.normal(size=(400, 3)) * np.array([1.0, 0.3, 0.05])).astype(np.float32)
    near, dist = nearest_k_targets(y, LOCAL_K - 1)
    brute = np.argsort(np.linalg.norm(y[:, None] - y[None], axis=-1) + np.diag(np.full(len(y), np.inf)), axis=1)
    np.testing.assert_array_equal(near[:, :5], brute[:, :5])
    for i, iso in ((0, 0.0), (123, 0.0), (7, 0.4), (7, 1.0)):
        pts = y[np.concatenate([[i], near[i]])].astype(np.float64)
        cov = np.cov(pts.T, bias=True)
        # iso: that share of the variance moved to an isotropic term of the same trace
        want = 0.7 ** 2 * ((1 - iso) * cov + iso * np.trace(cov) / 3 * np.eye(3))
        n = 1 << 16
        draws = np.asarray(local_noise(jax.random.key(i), jnp.full(n, i), jnp.asarray(y), jnp.asarray(near),
                                       jnp.float32(0.7), iso=iso), np.float64)
        got = draws.T @ draws / n  # mean 0 by construction
        se = np.sqrt((np.diag(want)[:, None] * np.diag(want)[None, :] + want ** 2) / n)  # Gaussian 2nd moments
        assert np.all(np.abs(got - want) <= 5 * se + 1e-12), (got, want)
        assert np.abs(draws.mean(axis=0)).max() <= 5 * np.sqrt(np.diag(want).max() / n)
