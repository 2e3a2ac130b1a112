"""Tiled scoring kernels against the dense score matrix, and the Sobol sampler against scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import qmc

from otgen.ot import scores
from otgen.ot.measures import Gaussian, UniformBox, sobol_points


def _problem(n, k, d, seed=0):
    kx, ky, kh = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (jax.random.normal(kx, (n, d)), jax.random.normal(ky, (k, d)), jax.random.normal(kh, (k,)))


# d = 2 takes the fused broadcast-sum path, d = 16 the matmul path.
@pytest.mark.parametrize("d,block_size,chunk_size", [(2, 37, 101), (16, 128, 64), (2, 1000, 1000)])
def test_tiled_equals_dense(d, block_size, chunk_size):
    x, y, h = _problem(503, 301, d)
    dense = scores.dense_scores(x, y, h)
    m, a = scores.max_and_cells(x, y, h, block_size=block_size, chunk_size=chunk_size)
    np.testing.assert_array_equal(a, jnp.argmax(dense, axis=1))
    np.testing.assert_allclose(m, jnp.max(dense, axis=1), rtol=1e-5, atol=1e-5)
    # Independent check in float64 numpy (agrees except at float32 near-ties; none here).
    ref = np.argmax(np.asarray(x, np.float64) @ np.asarray(y, np.float64).T + np.asarray(h, np.float64), axis=1)
    assert np.mean(np.asarray(a) == ref) > 0.999

    vals, idx = scores.top_k_cells(x, y, h, 5, block_size=block_size, chunk_size=chunk_size)
    dv, di = jax.lax.top_k(dense, 5)
    np.testing.assert_array_equal(idx, di)
    np.testing.assert_allclose(vals, dv, rtol=1e-5, atol=1e-5)

    s1, i1, s2, i2 = scores.top2_cells(x, y, h, block_size=block_size, chunk_size=chunk_size)
    np.testing.assert_array_equal(i1, di[:, 0])
    np.testing.assert_array_equal(i2, di[:, 1])
    np.testing.assert_allclose(s1 - s2, dv[:, 0] - dv[:, 1], rtol=1e-4, atol=1e-4)

    counts = scores.cell_counts(x, y, h, block_size=block_size, chunk_size=chunk_size)
    np.testing.assert_array_equal(counts, jnp.bincount(jnp.argmax(dense, axis=1), length=301))


@pytest.mark.parametrize("d", [3, 12])  # fused path and matmul path (block max, then the winner re-scored)
def test_ties_go_to_lowest_index_across_blocks(d):
    # Targets 0, 3 and 5 are identical with equal heights: every tie must resolve to 0,
    # even though they sit in different blocks.
    x, y, h = _problem(64, 8, d)
    y = y.at[3].set(y[0]).at[5].set(y[0])
    h = h.at[:].set(0.0)
    dense = scores.dense_scores(x, y, h)
    for b in (1, 2, 3, 8):
        a = scores.assign_cells(x, y, h, block_size=b)
        np.testing.assert_array_equal(a, jnp.argmax(dense, axis=1))
        assert not np.any(np.isin(np.asarray(a), [3, 5]))
        _, idx = scores.top_k_cells(x, y, h, 3, block_size=max(b, 3))
        np.testing.assert_array_equal(idx, jax.lax.top_k(dense, 3)[1])


@pytest.mark.parametrize("d", [3, 12])
def test_max_then_locate_ties_and_runner_up_across_sub_blocks(d):
    # Blocks of 128 targets hold two sub-blocks of 64: the argmax is located among sub-block maxima, then
    # inside the winning sub-block. Copies of one target sit in different sub-blocks and blocks (0, 70, 130,
    # 260) and a second pair (5, 6) shares a sub-block: every tie resolves to the lowest index, and the
    # runner-up is found whether it shares the winner's sub-block or not.
    x, y, h = _problem(256, 300, d, seed=4)
    u = y[0] / jnp.linalg.norm(y[0])
    y = y.at[0].set(10.0 * u).at[5].set(-10.0 * u)  # far out along +u and -u: they win the samples there
    y = y.at[70].set(y[0]).at[130].set(y[0]).at[260].set(y[0]).at[6].set(y[5])
    h = h.at[70].set(h[0]).at[130].set(h[0]).at[260].set(h[0]).at[6].set(h[5])
    x = x.at[:128].set(3.0 * u + 0.1 * x[:128]).at[128:160].set(-3.0 * u + 0.1 * x[128:160])
    dense = scores.dense_scores(x, y, h)
    dv, di = jax.lax.top_k(dense, 2)
    for b in (128, 64, 256, 300):
        a = scores.assign_cells(x, y, h, block_size=b)
        np.testing.assert_array_equal(a, di[:, 0])
        _, i1, _, i2 = scores.top2_cells(x, y, h, block_size=b)
        np.testing.assert_array_equal(i1, di[:, 0])
        np.testing.assert_array_equal(i2, di[:, 1])
    assert np.sum(np.asarray(di[:, 0]) == 0) > 50 and np.all(np.asarray(di[np.asarray(di[:, 0]) == 0, 1]) == 70)
    assert np.sum(np.asarray(di[:, 0]) == 5) > 10  # (5, 6): the runner-up in the winner's own sub-block
    assert np.all(np.asarray(di[np.asarray(di[:, 0]) == 5, 1]) == 6)


def test_kernel_input_errors():
    x, y, h = _problem(10, 5, 2)
    with pytest.raises(ValueError, match="dimension"):
        scores.assign_cells(x[:, :1], y, h)
    with pytest.raises(ValueError, match="k must be"):
        scores.top_k_cells(x, y, h, 6)
    with pytest.raises(ValueError, match="empty"):
        scores.assign_cells(x, y[:0], h[:0])
    with pytest.raises(ValueError, match="h must have shape"):
        scores.assign_cells(x, y, h[:3])


def test_sobol_matches_scipy_and_shift_keeps_the_net():
    m, d = 10, 5
    ours = np.asarray(sobol_points(None, 2**m, d))
    ref = qmc.Sobol(d, scramble=False).random(2**m)
    as_set = lambda p: sorted(map(tuple, np.floor(p * 2**20).astype(int).tolist()))  # noqa: E731
    assert as_set(ours) == as_set(ref)
    # A digital shift keeps the (0, m, 1)-net property of every coordinate:
    # exactly one point in each interval [j/2^m, (j+1)/2^m).
    shifted = np.asarray(sobol_points(jax.random.PRNGKey(3), 2**m, d))
    for j in range(d):
        np.testing.assert_array_equal(np.bincount(np.floor(shifted[:, j] * 2**m).astype(int), minlength=2**m), 1)
    assert not np.allclose(shifted, ours)


def test_qmc_samples_have_the_right_moments():
    # Randomised Sobol through the inverse CDF: a 2^14-point net nails mean and variance.
    g = Gaussian(3, mean=[1.0, -2.0, 0.0], std=[0.5, 2.0, 1.0])
    z = np.asarray(g.qmc_sample(jax.random.PRNGKey(0), 2**14))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0, 0.0], atol=2e-3)
    np.testing.assert_allclose(z.std(0), [0.5, 2.0, 1.0], rtol=5e-3)
    b = UniformBox(2, low=[-1.0, 0.0], high=[1.0, 3.0])
    u = np.asarray(b.qmc_sample(jax.random.PRNGKey(1), 2**12))
    assert u.min(0)[0] >= -1 and u.max(0)[1] <= 3
    np.testing.assert_allclose(u.mean(0), [0.0, 1.5], atol=1e-3)
