"""AE-OT's extended map (otgen.ot.extension): closed forms, the singular-set rule, reproducibility.

Every random draw below is seeded, so each test is deterministic run to run.
"""

import jax
import numpy as np
import pytest

from otgen.eval.novelty import copy_fraction
from otgen.ot import BrenierMap, SemiDiscreteOT, UniformBox, damped_newton
from otgen.ot.extension import dihedral_angle, extend, standardise, unit_normals
from otgen.ot.warm_start import discrete_ot_heights


def _fit(targets, tol=0.02, seed=0):
    solver = SemiDiscreteOT(UniformBox(dim=targets.shape[1]), targets)
    return solver.fit(jax.random.key(seed), tol=tol, progress=False, optimizer=damped_newton(init_h="discrete"))


@pytest.fixture(scope="module")
def two_clusters():
    """Two tight clusters of 100 points each, far apart inside the unit square."""
    rng = np.random.default_rng(0)
    a = rng.normal([0.2, 0.5], 0.02, (100, 2))
    b = rng.normal([0.8, 0.5], 0.02, (100, 2))
    y = np.concatenate([a, b]).astype(np.float32)
    return y, _fit(y)


def test_dihedral_angle_closed_forms():
    y = np.array([[0.3, -1.2]], np.float32)
    assert float(dihedral_angle(y, y)[0]) == 0.0  # identical planes
    # 1-D: normals (0, -1) and (1, -1)/sqrt(2) meet at 45 degrees.
    assert float(dihedral_angle([[0.0]], [[1.0]])[0]) == pytest.approx(np.pi / 4, abs=1e-6)
    # symmetric under exchange, and equal to arccos of the normals' dot product
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    ab, ba = np.asarray(dihedral_angle(a, b)), np.asarray(dihedral_angle(b, a))
    na, nb = np.asarray(unit_normals(a)), np.asarray(unit_normals(b))
    np.testing.assert_allclose(ab, ba, atol=1e-6)
    np.testing.assert_allclose(ab, np.arccos(np.clip(np.sum(na * nb, 1), -1, 1)), atol=1e-4)


def test_standardise_makes_the_threshold_scale_and_shift_free():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(40, 2))
    s1, _, _ = standardise(y)
    s2, _, _ = standardise(7.5 * y + np.array([3.0, -2.0]))
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert np.mean(np.sum(s1**2, axis=1)) == pytest.approx(1.0, rel=1e-5)


def test_no_sample_lands_in_the_gap_and_most_are_new(two_clusters):
    y, bmap = two_clusters
    ext = extend(bmap, jax.random.key(1))
    z = np.asarray(ext.generate(jax.random.key(2), 4000))
    assert z.shape == (4000, 2) and np.all(np.isfinite(z))
    # Radii from the cluster centres in units of the clusters' std (0.02); the gap is 30 std wide.
    # The piecewise-linear map extrapolates a little beyond each cluster's hull, as fresh draws
    # of the clusters do: measured max 4.0 std (fresh draws: 4.1), 99th percentile 3.2 (2.9).
    r_a, r_b = (np.linalg.norm(z - c, axis=1) / 0.02 for c in ([0.2, 0.5], [0.8, 0.5]))
    r = np.minimum(r_a, r_b)
    assert r.max() < 6.0, f"{np.sum(r >= 6)} samples in the gap between the clusters"
    assert np.quantile(r, 0.99) < 3.6
    # Both clusters get about half the samples (the OT map keeps the mass split).
    assert abs(np.mean(r_a < r_b) - 0.5) < 0.05
    # New points, scale-aware: < 1% within 1% of the targets' median spacing of a target.
    assert copy_fraction(z, y) < 0.01


def test_a_large_threshold_does_interpolate_across_the_gap(two_clusters):
    # The check above can fail: with the angle test disabled (threshold pi) some samples at the
    # facet between the clusters are interpolated into the gap.
    y, bmap = two_clusters
    ext = extend(bmap, jax.random.key(1), angle_threshold=np.pi)
    z = np.asarray(ext.generate(jax.random.key(2), 4000))
    gap = (z[:, 0] > y[:100, 0].max() + 0.05) & (z[:, 0] < y[100:, 0].min() - 0.05)
    assert gap.sum() > 0


def test_threshold_zero_and_top1_give_the_pure_semi_discrete_map(two_clusters):
    y, bmap = two_clusters
    x = bmap.source.sample(jax.random.key(3), 2000)
    for ext in (extend(bmap, jax.random.key(1), angle_threshold=0.0), extend(bmap, jax.random.key(1), top_k=1)):
        np.testing.assert_array_equal(np.asarray(ext(x)), np.asarray(bmap(x)))
    z = np.asarray(extend(bmap, jax.random.key(1), angle_threshold=0.0).generate(jax.random.key(4), 500))
    d = np.min(np.linalg.norm(z[:, None, :] - y[None], axis=-1), axis=1)
    assert np.all(d == 0.0)  # every generated point is a training point


def test_generation_is_reproducible_for_a_fixed_key(two_clusters):
    _, bmap = two_clusters
    ext = extend(bmap, jax.random.key(1))
    a = np.asarray(ext.generate(jax.random.key(9), 300))
    b = np.asarray(extend(bmap, jax.random.key(1)).generate(jax.random.key(9), 300))
    c = np.asarray(ext.generate(jax.random.key(10), 300))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_barycentres_map_to_their_targets(two_clusters):
    # The piecewise-linear map sends each cell's barycentre c_i to y_i exactly (t = 0 there).
    _, bmap = two_clusters
    ext = extend(bmap, jax.random.key(1))
    ok = np.asarray(ext.counts) > 0
    bary = np.asarray(ext.barycentres)[ok]
    own = np.asarray(bmap.assign(bary)) == np.flatnonzero(ok)  # a convex cell holds its barycentre
    z = np.asarray(ext(bary[own]))
    np.testing.assert_allclose(z, np.asarray(bmap.targets)[ok][own], atol=1e-6)


def test_1d_evenly_spaced_targets_give_the_identity_map():
    # Uniform source on [0, 1], targets at the cell midpoints (i + 1/2)/K: the OT cells are
    # [i/K, (i+1)/K], their barycentres are the targets, and linear interpolation between
    # neighbouring barycentres is the identity map T(x) = x (the true, smooth OT map).
    k = 50
    y = ((np.arange(k) + 0.5) / k).astype(np.float32)[:, None]
    bmap = _fit(y, tol=0.01)
    ext = extend(bmap, jax.random.key(1), angle_threshold=np.pi, num_samples=1 << 18)
    x = np.linspace(0.02, 0.98, 401, dtype=np.float32)[:, None]
    z = np.asarray(ext(x))
    semi = np.asarray(bmap(x))
    err_ext, err_semi = np.max(np.abs(z - x)), np.max(np.abs(semi - x))
    assert err_semi >= 0.45 / k  # a step function is off by about half a cell somewhere
    assert err_ext < 0.2 / k  # the extension is far closer (limited by the fitted h and barycentres)


def test_bad_arguments_are_rejected(two_clusters):
    _, bmap = two_clusters
    with pytest.raises(ValueError, match="angle_threshold"):
        extend(bmap, jax.random.key(0), angle_threshold=-0.1)
    with pytest.raises(ValueError, match="top_k"):
        extend(bmap, jax.random.key(0), top_k=bmap.num_targets + 1)
    ext = extend(bmap, jax.random.key(0))
    with pytest.raises(ValueError, match="shape"):
        ext(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="number of samples"):
        ext.generate(jax.random.key(0), 0)
    no_source = BrenierMap(bmap.targets, bmap.weights, bmap.h)
    with pytest.raises(ValueError, match="no source"):
        extend(no_source, jax.random.key(0))


def test_warm_start_balances_clustered_targets():
    # Voronoi heights leave most mass in the wrong cells for clustered targets; the discrete-OT
    # warm start must already be close (checked with an independent i.i.d. estimate).
    from otgen.ot import cell_masses

    rng = np.random.default_rng(5)
    centres = np.array([[0.2, 0.2], [0.8, 0.2], [0.5, 0.8]])
    y = (centres[rng.integers(0, 3, 300)] + rng.normal(0, 0.01, (300, 2))).astype(np.float32)
    solver = SemiDiscreteOT(UniformBox(dim=2), y)
    x = UniformBox(dim=2).sample(jax.random.key(7), 1 << 20)
    nu = np.full(300, 1 / 300)
    l1 = lambda h: float(np.abs(np.asarray(cell_masses(x, y, h)) - nu).sum())  # noqa: E731
    h_warm = discrete_ot_heights(solver.source, solver.targets, solver.weights, jax.random.key(8))
    assert l1(solver.initial_h("voronoi")) > 1.0
    assert l1(h_warm) < 0.5
    assert discrete_ot_heights(solver.source, solver.targets, solver.weights, jax.random.key(8),
                               max_entries=100) is None  # too large: caller keeps its default start


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_default_threshold_separates_modes_of_the_pacgan_toys(name):
    # The documented basis of DEFAULT_ANGLE_THRESHOLD (0.1 rad on standardised targets): any two
    # points of one mode meet at < 0.1 rad (measured max 0.084 on grid25), points of two different
    # modes at >= 0.2 rad (measured min 0.23 on grid25, 0.49 on ring8).
    from otgen.data import toys
    from otgen.eval.modes import assign_to_modes
    from otgen.ot.extension import DEFAULT_ANGLE_THRESHOLD

    toy = toys.get(name)
    y = toy.sample(jax.random.key(0), 2000)
    mode, _ = assign_to_modes(y, toy.centres, toy.std)
    n = np.asarray(unit_normals(standardise(y)[0]))
    cos = np.clip(n @ n.T, -1.0, 1.0)
    angle = 2 * np.arcsin(np.clip(0.5 * np.sqrt(np.maximum(2 - 2 * cos, 0)), 0, 1))
    same = mode[:, None] == mode[None, :]
    assert angle[same].max() < DEFAULT_ANGLE_THRESHOLD < 0.2 <= angle[~same].min()


def test_far_source_points_move_at_most_one_edge_from_their_target():
    """A Gaussian source's tail lies far from every barycentre; its images stay in their targets' star."""
    from otgen.ot import Gaussian

    rng = np.random.default_rng(3)
    y = rng.normal(size=(300, 4)).astype(np.float32)
    bmap = SemiDiscreteOT(Gaussian(dim=4), y).fit(jax.random.key(0), tol=0.05, progress=False)
    ext = extend(bmap, jax.random.key(1), angle_threshold=np.pi, top_k=6)
    far = rng.normal(size=(500, 4))
    far = (8.0 * far / np.linalg.norm(far, axis=1, keepdims=True)).astype(np.float32)  # 8 sigma out
    z, moved = (np.asarray(a) for a in ext.map_with_info(far))
    _, idx = bmap.top_k(far, 6)
    idx = np.asarray(idx)
    own = y[idx[:, 0]]
    reach = np.linalg.norm(y[idx[:, 1:]] - own[:, None, :], axis=-1).max(axis=1)
    assert moved.mean() > 0.9  # they are interpolated, not copies ...
    assert np.all(np.linalg.norm(z - own, axis=1) <= reach * (1 + 1e-4))  # ... within one edge of the target
