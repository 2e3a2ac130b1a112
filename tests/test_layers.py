"""The matmul-form strided (transposed) convolutions against Flax's own layers.

``StridedConv`` / ``StridedConvTranspose`` claim to be the *same function* as
``flax.linen.Conv`` / ``ConvTranspose`` with ``padding="SAME"`` (same parameter
names and shapes), only computed differently; both the outputs and the
gradients are checked against the library layers, which use ``lax.conv``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from otgen.models.layers import StridedConv, StridedConvTranspose, subpixel_taps

CASES = [  # (side, in channels, out channels, kernel, stride)
    (28, 1, 6, 5, 2),   # DCGAN discriminator / generator output layer
    (7, 5, 4, 5, 2),    # odd side
    (4, 3, 2, 5, 2),    # kernel wider than the input
    (14, 2, 3, 4, 2),   # the autoencoder's 4x4 stride-2 layers
    (9, 2, 3, 3, 3),    # stride 3
    (8, 2, 2, 2, 2),    # kernel == stride
    (6, 2, 2, 3, 1),    # stride 1
]


def _pair(ours, ref, case, seed=0):
    side, cin, cout, k, s = case
    x = jax.random.normal(jax.random.key(seed), (2, side, side, cin))
    mine = ours(cout, (k, k), (s, s))
    theirs = ref(cout, (k, k), strides=(s, s), padding="SAME")
    p_mine, p_theirs = jax.eval_shape(mine.init, jax.random.key(1), x), jax.eval_shape(theirs.init, jax.random.key(1), x)
    assert jax.tree_util.tree_map(jnp.shape, p_mine) == jax.tree_util.tree_map(jnp.shape, p_theirs)
    # random (non-zero) bias too, so that bias placement is checked
    leaves, tree = jax.tree_util.tree_flatten(p_mine)
    keys = jax.random.split(jax.random.key(seed + 2), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [jax.random.normal(k_, l.shape) for k_, l in zip(keys, leaves)])
    return mine, theirs, params, x


@pytest.mark.parametrize("ours, ref", [(StridedConv, nn.Conv), (StridedConvTranspose, nn.ConvTranspose)],
                         ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}px_k{c[3]}_s{c[4]}" for c in CASES])
def test_same_function_and_gradient_as_flax(ours, ref, case):
    mine, theirs, params, x = _pair(ours, ref, case)
    # jitted: one compile per function instead of one per primitive (the test's cost is compilation)
    y_mine, y_theirs = jax.jit(mine.apply)(params, x), jax.jit(theirs.apply)(params, x)
    assert y_mine.shape == y_theirs.shape
    np.testing.assert_allclose(y_mine, y_theirs, rtol=1e-4, atol=1e-4)

    cot = jax.random.normal(jax.random.key(7), y_theirs.shape)

    def loss(module):
        return lambda p, x_: jnp.sum(module.apply(p, x_) * cot)

    g_mine = jax.jit(jax.grad(loss(mine), argnums=(0, 1)))(params, x)
    g_theirs = jax.jit(jax.grad(loss(theirs), argnums=(0, 1)))(params, x)
    for a, b in zip(jax.tree_util.tree_leaves(g_mine), jax.tree_util.tree_leaves(g_theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_subpixel_taps_of_the_dcgan_layer():
    """5x5 stride 2: even outputs see taps (1, 3) of inputs (i-1, i); odd ones taps (0, 2, 4) of (i-1, i, i+1)."""
    taps, d_min = subpixel_taps(5, 2)
    assert d_min == -1
    np.testing.assert_array_equal(taps, [[1, 3, -1], [0, 2, 4]])
    # every tap is used exactly once over the phases
    used = sorted(t for t in taps.ravel() if t >= 0)
    assert used == list(range(5))


def test_unequal_strides_are_refused():
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match="equal strides"):
        StridedConv(2, (3, 3), (2, 1)).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="square kernels and equal strides"):
        StridedConvTranspose(2, (3, 3), (2, 1)).init(jax.random.key(0), x)
