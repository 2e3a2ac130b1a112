"""Networks and losses of the GAN baselines: closed forms, independent computations, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from otgen.models.gan import (BatchStatNorm, DCGANDiscriminator, DCGANGenerator, MaxoutDiscriminator, MLPGenerator,
                              Maxout, StackedDCGANDiscriminator, StackedDCGANGenerator, pack, param_count)
from otgen.models.gan_losses import (clip_params, gan_discriminator_loss, gan_generator_loss, gradient_penalty,
                                     wgan_critic_loss, wgan_generator_loss)
from otgen.training import GAN_MODELS, GANConfig, init_state

KEY = jax.random.key(0)  # fixed seeds: every test here is deterministic


def shapes_of(cfg):
    """The training state's shapes, traced without compiling or running anything."""
    return jax.eval_shape(lambda: init_state(cfg))


# ---------------------------------------------------------------- packing
def test_pack_vectors_concatenates_the_m_samples_of_each_pack():
    groups = jnp.arange(3 * 4 * 2, dtype=jnp.float32).reshape(3, 4, 2)  # m=3, B=4, d=2
    packed = np.asarray(pack(groups))
    assert packed.shape == (4, 6)
    for b in range(4):
        np.testing.assert_array_equal(packed[b], np.concatenate([groups[j, b] for j in range(3)]))


def test_pack_images_concatenates_along_channels():
    groups = jax.random.normal(KEY, (2, 5, 28, 28, 1))
    packed = np.asarray(pack(groups))
    assert packed.shape == (5, 28, 28, 2)
    np.testing.assert_array_equal(packed[..., 0], np.asarray(groups[0, ..., 0]))
    np.testing.assert_array_equal(packed[..., 1], np.asarray(groups[1, ..., 0]))


def test_pack_rejects_missing_group_axis():
    with pytest.raises(ValueError, match="pack expects"):
        pack(jnp.zeros((4, 2)))


@pytest.mark.parametrize("model", GAN_MODELS)
def test_discriminator_input_is_m_times_the_sample_dimension(model):
    cfg = GANConfig.for_toy(model)
    m = {"pacgan2": 2, "pacgan3": 3, "pacgan4": 4}.get(model, 1)
    assert cfg.pack == m
    first = shapes_of(cfg).d_params["Maxout_0"]["Dense_0"]["kernel"]  # shapes only
    assert first.shape == (2 * m, cfg.d_hidden * cfg.maxout_pieces)


def test_packed_image_discriminator_takes_m_channels():
    cfg = GANConfig.for_mnist("pacgan3", conv_dim=4)
    kernel = shapes_of(cfg).d_params["StridedConv_0"]["kernel"]
    assert kernel.shape[2] == 3  # (kh, kw, in_channels, out)


# ---------------------------------------------------------------- architectures
def test_pacgan_toy_parameter_counts_match_the_paper_architecture():
    """Closed-form counts of the PacGAN 2-D nets (hidden widths fixed for every m)."""
    for m in (1, 2, 3, 4):
        model = "gan" if m == 1 else f"pacgan{m}"
        state = shapes_of(GANConfig.for_toy(model))
        # 3 maxout layers of 200 x 5 pieces, then a linear output
        expected_d = (2 * m * 1000 + 1000) + 2 * (200 * 1000 + 1000) + (200 + 1)
        assert param_count(state.d_params) == expected_d
        # 4 bias-free hidden layers of 400 + batch-norm scale and shift, biased 2-D output
        expected_g = 2 * 400 + 3 * 400 * 400 + 4 * 2 * 400 + 400 * 2 + 2
        assert param_count(state.g_params) == expected_g
        assert param_count(state.g_stats) == 4 * 2 * 400  # running mean and variance
    # packing grows the discriminator only through its first layer: +1.5% at m = 4
    d1 = param_count(shapes_of(GANConfig.for_toy("gan")).d_params)
    d4 = param_count(shapes_of(GANConfig.for_toy("pacgan4")).d_params)
    assert 1.0 < d4 / d1 < 1.02


def test_maxout_is_the_max_over_pieces_of_a_linear_map():
    layer = Maxout(features=3, pieces=4)
    x = jax.random.normal(KEY, (6, 5))
    params = layer.init(jax.random.key(1), x)["params"]
    w, b = np.asarray(params["Dense_0"]["kernel"]), np.asarray(params["Dense_0"]["bias"])
    # unit j is the max of columns j, j + 3, j + 6, j + 9 (pieces-major layout)
    expected = (np.asarray(x) @ w + b).reshape(6, 4, 3).max(axis=1)
    np.testing.assert_allclose(np.asarray(layer.apply({"params": params}, x)), expected, rtol=1e-5, atol=1e-6)


def test_mlp_generator_batch_norm_train_vs_inference():
    g = MLPGenerator()
    z = jax.random.normal(KEY, (64, 2))
    variables = g.init(jax.random.key(1), z, train=False)
    x_train, upd = g.apply(variables, z, train=True, mutable=["batch_stats"])
    x_eval = g.apply(variables, z, train=False)
    assert x_train.shape == x_eval.shape == (64, 2)
    # running mean moves by (1 - momentum) = 5% of the batch mean, as in the PacGAN reference
    h = np.asarray(z) @ np.asarray(variables["params"]["Dense_0"]["kernel"])
    new_mean = np.asarray(upd["batch_stats"]["BatchNorm_0"]["mean"])
    np.testing.assert_allclose(new_mean, 0.05 * h.mean(axis=0), rtol=1e-4, atol=1e-7)


def test_dcgan_shapes():
    """Traced, not compiled: output shapes of the 28x28 nets (values are checked in test_train)."""
    g, d = DCGANGenerator(dim=8), DCGANDiscriminator(dim=8)
    z = jax.ShapeDtypeStruct((3, 128), jnp.float32)
    gv = jax.eval_shape(lambda z: g.init(jax.random.key(1), z, train=False), z)
    x = jax.eval_shape(lambda v, z: g.apply(v, z, train=False), gv, z)
    assert x.shape == (3, 28, 28, 1)
    dv = jax.eval_shape(lambda x: d.init(jax.random.key(2), x), x)
    assert jax.eval_shape(d.apply, dv, x).shape == (3,)


def test_stacked_dcgan_is_pacgans_carpedm20_architecture():
    """PacGAN's Stacked-MNIST nets at gf_dim = df_dim = 64: the reference's layer shapes and parameter count."""
    g, d = StackedDCGANGenerator(channels=3), StackedDCGANDiscriminator()
    z = jax.ShapeDtypeStruct((2, 100), jnp.float32)
    gv = jax.eval_shape(lambda z: g.init(jax.random.key(1), z, train=False), z)
    x = jax.eval_shape(lambda v, z: g.apply(v, z, train=False), gv, z)
    assert x.shape == (2, 28, 28, 3)
    packed = jax.ShapeDtypeStruct((2, 28, 28, 6), jnp.float32)  # PacDCGAN2: 2 x 3 channels
    dv = jax.eval_shape(lambda x: d.init(jax.random.key(2), x), packed)
    assert jax.eval_shape(d.apply, dv, packed).shape == (2,)
    # carpedm20: g_h0_lin 100 -> 2x2x512, deconvs 512->256->128->64->3 (5x5, biased), BN on 4 layers;
    # d_h0..3 convs 6->64->128->256->512, BN (scale, shift) on the last 3, linear 2048 -> 1
    convt = [(5 * 5 * i * o + o) for i, o in ((512, 256), (256, 128), (128, 64), (64, 3))]
    g_expect = 100 * 2048 + 2048 + sum(convt) + 2 * (512 + 256 + 128 + 64)  # g_bn0 acts on the 512 channels
    d_expect = sum(5 * 5 * i * o + o for i, o in ((6, 64), (64, 128), (128, 256), (256, 512))) + \
        2 * (128 + 256 + 512) + 2048 + 1
    assert param_count(gv["params"]) == g_expect
    assert param_count(dv["params"]) == d_expect


def test_stacked_dcgan_7x7_layer_is_tensorflows_explicit_output_shape():
    """The 4x4 -> 7x7 layer equals the gradient of a 'SAME' stride-2 convolution 7 -> 4 (what
    TensorFlow's conv2d_transpose with output_shape 7 computes), kernel flipped; a [:7] crop would not."""
    from otgen.models.layers import StridedConvTranspose

    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    layer = StridedConvTranspose(5, (5, 5), (2, 2))
    kernel = layer.init(jax.random.key(1), x)["params"]["kernel"]
    y8 = layer.apply({"params": {"kernel": kernel, "bias": jnp.zeros(5)}}, x)
    w = jnp.transpose(kernel, (0, 1, 3, 2))[::-1, ::-1]

    def tf_transpose(n):
        conv = lambda u: jax.lax.conv_general_dilated(u, w, (2, 2), "SAME",  # noqa: E731
                                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.vjp(conv, jnp.zeros((2, n, n, 5)))[1](x)[0]

    np.testing.assert_allclose(y8, tf_transpose(8), atol=1e-5)
    np.testing.assert_allclose(y8[:, 1:, 1:], tf_transpose(7), atol=1e-5)
    assert np.abs(np.asarray(y8[:, :7, :7] - tf_transpose(7))).max() > 0.1


def test_batch_stat_norm_normalises_each_channel_over_the_batch():
    x = jax.random.normal(jax.random.key(3), (8, 3, 3, 4)) * 5.0 + 2.0
    v = BatchStatNorm().init(jax.random.key(0), x)
    y = np.asarray(BatchStatNorm().apply(v, x))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-3)


# ---------------------------------------------------------------- losses
def test_gan_losses_closed_forms():
    zeros = jnp.zeros(7)
    np.testing.assert_allclose(float(gan_discriminator_loss(zeros, zeros)), 2 * np.log(2), rtol=1e-6)
    np.testing.assert_allclose(float(gan_generator_loss(zeros)), np.log(2), rtol=1e-6)
    r, f = jnp.array([2.0, -1.0]), jnp.array([0.5, 3.0])
    sig = lambda t: 1 / (1 + np.exp(-np.asarray(t)))  # noqa: E731
    expected_d = -np.mean(np.log(sig(r))) - np.mean(np.log(1 - sig(f)))
    np.testing.assert_allclose(float(gan_discriminator_loss(r, f)), expected_d, rtol=1e-6)
    # non-saturating: -log D(G(z)), not log(1 - D(G(z)))
    np.testing.assert_allclose(float(gan_generator_loss(f)), -np.mean(np.log(sig(f))), rtol=1e-6)
    # stays finite (softplus form) for saturated logits
    assert np.isfinite(float(gan_discriminator_loss(jnp.array([200.0]), jnp.array([-200.0]))))


def test_wgan_losses_closed_forms():
    r, f = jnp.array([1.0, 3.0]), jnp.array([0.0, -2.0])
    assert float(wgan_critic_loss(r, f)) == pytest.approx(-1.0 - 2.0)
    assert float(wgan_generator_loss(f)) == pytest.approx(1.0)


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    """D(x) = <w, x> + c has gradient w everywhere: penalty (|w| - 1)^2 for any interpolation."""
    w = jnp.array([0.6, -1.7, 0.2])
    critic = lambda x: x @ w + 0.3  # noqa: E731
    real, fake = jax.random.normal(KEY, (9, 3)), jax.random.normal(jax.random.key(1), (9, 3))
    expected = (np.linalg.norm(np.asarray(w)) - 1.0) ** 2
    assert float(gradient_penalty(critic, real, fake, jax.random.key(2))) == pytest.approx(expected, rel=1e-5)


def test_gradient_penalty_matches_direct_per_sample_computation():
    """Batch-summed autodiff vs per-sample finite differences in float64 on the maxout critic."""
    with jax.enable_x64(True):
        d = MaxoutDiscriminator(hidden=8, pieces=3, init_std=0.5)
        real = jax.random.normal(KEY, (5, 4), jnp.float64)
        fake = jax.random.normal(jax.random.key(1), (5, 4), jnp.float64)
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64),
                                        d.init(jax.random.key(2), real)["params"])
        critic = lambda x: d.apply({"params": params}, x)  # noqa: E731
        key = jax.random.key(3)
        got = float(gradient_penalty(critic, real, fake, key))

        # the same interpolation points, reconstructed from the same key
        alpha = np.asarray(jax.random.uniform(key, (5, 1), jnp.float64))
        x_hat = np.asarray(real) + alpha * (np.asarray(fake) - np.asarray(real))
        h = 1e-6
        penalties = []
        for xb in x_hat:
            grad = np.empty(4)
            for i in range(4):
                e = np.zeros(4)
                e[i] = h
                up = float(critic(jnp.asarray((xb + e)[None]))[0])
                down = float(critic(jnp.asarray((xb - e)[None]))[0])
                grad[i] = (up - down) / (2 * h)
            penalties.append((np.linalg.norm(grad) - 1.0) ** 2)
    assert got == pytest.approx(float(np.mean(penalties)), rel=1e-5)


def test_gradient_penalty_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        gradient_penalty(lambda x: x.sum(-1), jnp.zeros((3, 2)), jnp.zeros((4, 2)), KEY)


def test_clip_params_bounds_every_leaf():
    tree = {"a": jnp.array([-3.0, 0.005, 2.0]), "b": {"c": jnp.array([[0.5, -0.002]])}}
    clipped = clip_params(tree, 0.01)
    np.testing.assert_array_equal(np.asarray(clipped["a"]), np.float32([-0.01, 0.005, 0.01]))
    np.testing.assert_array_equal(np.asarray(clipped["b"]["c"]), np.float32([[0.01, -0.002]]))
