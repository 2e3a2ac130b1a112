"""Generator and discriminator networks of the GAN baselines (Flax linen).

Two families, one per data type:

* 2-D toys: the networks of the PacGAN paper (Lin et al., NeurIPS 2018; public
  code ``fjxmlzn/PacGAN``, ``synthetic_data_experiments``): a generator with
  4 hidden layers of 400 ReLU units, each linear map bias-free and followed by
  batch norm, a biased linear output, 2-D N(0, I) noise; a discriminator of 3
  maxout layers (200 units x 5 pieces) and a linear output.  All weights are
  drawn from N(0, 0.02^2), biases start at 0.
* MNIST 28x28: the DCGAN-style pair of the WGAN-GP reference ``gan_mnist.py``
  (Gulrajani et al. 2017, DIM = 64): dense 128 -> 4x4x256, then 5x5 stride-2
  transposed convolutions 8x8 (cropped to 7x7) -> 14x14 -> 28x28 with a sigmoid
  output; a discriminator of three 5x5 stride-2 convolutions (64, 128, 256
  channels, leaky ReLU 0.2) and a linear output.  The generator has DCGAN batch
  norm; the discriminator has none, because the WGAN-GP penalty is defined per
  sample and batch norm would couple the samples of a batch.  The strided
  (transposed) convolutions are ``otgen.models.layers``' matrix-product forms of
  Flax's: the same function, its G+D gradients 8.7x faster on CPU
  (``scripts/bench_gan.py --images``).

* Stacked MNIST 28x28x3, PacGAN's own code (``fjxmlzn/PacGAN``,
  ``stacked_MNIST_experiments/VEEGAN_experiment/model.py``, built on carpedm20's
  DCGAN-tensorflow, gf_dim = df_dim = 64): a generator dense -> 2x2x512, then
  5x5 stride-2 transposed convolutions to 4x4x256, 7x7x128, 14x14x64 and
  28x28xC with batch norm + ReLU between and a tanh output; a discriminator of
  four 5x5 stride-2 convolutions (64, 128, 256, 512 channels, leaky ReLU 0.2,
  batch norm on all but the first, always on the batch's own statistics as the
  reference runs it) and a linear output (:class:`StackedDCGANGenerator`,
  :class:`StackedDCGANDiscriminator`).

* 2-D toys, WGAN / WGAN-GP authors' setting (``igul222/improved_wgan_training``,
  ``gan_toy.py``): generator and critic are both 3 hidden ReLU layers of 512
  units (biased, He-uniform init, no batch norm) and a linear output
  (:class:`ReLUMLP`).

Packing (PacGAN): the discriminator sees ``m`` samples concatenated along the
last axis (features for vectors, channels for images); see :func:`pack`.  The
hidden widths stay the same for every ``m``, exactly as in the reference code,
so only the first layer grows (see :func:`discriminator_param_count`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from otgen.models.layers import StridedConv, StridedConvTranspose

__all__ = [
    "MLPGenerator", "MaxoutDiscriminator", "ReLUMLP", "DCGANGenerator", "DCGANDiscriminator",
    "StackedDCGANGenerator", "StackedDCGANDiscriminator", "BatchStatNorm", "Maxout", "pack", "param_count",
]


def pack(groups: jax.Array) -> jax.Array:
    """Concatenate ``m`` groups of samples into packed discriminator inputs.

    ``groups`` has shape ``(m, B, *s)``: sample ``j`` of pack ``b`` is
    ``groups[j, b]``.  The result has shape ``(B, *s[:-1], m * s[-1])``:
    ``(B, m*d)`` for vectors, ``(B, H, W, m*C)`` for images.
    """
    if groups.ndim < 3:
        raise ValueError(f"pack expects (m, batch, *sample_shape) with a sample axis, got shape {groups.shape}")
    m, b = groups.shape[:2]
    moved = jnp.moveaxis(groups, 0, -2)  # (B, *s[:-1], m, s[-1])
    return moved.reshape((b,) + groups.shape[2:-1] + (m * groups.shape[-1],))


def param_count(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


class Maxout(nn.Module):
    """Linear map to ``pieces * features`` units; unit ``j`` is the max of columns ``j + features * p``."""

    features: int
    pieces: int
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x):
        y = nn.Dense(self.features * self.pieces, kernel_init=self.kernel_init)(x)
        # pieces-major groups: the max then runs over contiguous (B, features) slabs,
        # and its gradient on CPU costs ~half of the (features, pieces) layout's
        return jnp.max(y.reshape(y.shape[:-1] + (self.pieces, self.features)), axis=-2)


class MLPGenerator(nn.Module):
    """PacGAN 2-D generator: [Dense(no bias) -> BatchNorm -> ReLU] x layers -> Dense(out_dim)."""

    out_dim: int = 2
    hidden: int = 400
    layers: int = 4
    init_std: float = 0.02
    bn_momentum: float = 0.95

    @nn.compact
    def __call__(self, z, train: bool):
        init = nn.initializers.normal(self.init_std)
        h = z
        for _ in range(self.layers):
            # bias-free: batch norm's shift makes a bias redundant (as in the reference)
            h = nn.Dense(self.hidden, use_bias=False, kernel_init=init)(h)
            h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h)
            h = nn.relu(h)
        return nn.Dense(self.out_dim, kernel_init=init)(h)


class MaxoutDiscriminator(nn.Module):
    """PacGAN 2-D discriminator: maxout x layers -> Dense(1); returns one logit per input row."""

    hidden: int = 200
    pieces: int = 5
    layers: int = 3
    init_std: float = 0.02

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.normal(self.init_std)
        h = x
        for _ in range(self.layers):
            h = Maxout(self.hidden, self.pieces, kernel_init=init)(h)
        return nn.Dense(1, kernel_init=init)(h)[..., 0]


class ReLUMLP(nn.Module):
    """``gan_toy.py``'s nets: [Dense -> ReLU] x layers -> Dense(out_dim), He-uniform weights, zero biases.

    Used as generator (``out_dim`` = data dim; ``train`` is accepted and ignored:
    no batch norm) and as critic (``out_dim=1, squeeze=True``: one score per row).
    """

    out_dim: int = 1
    hidden: int = 512
    layers: int = 3
    squeeze: bool = False  # critic: return (B,) scores instead of (B, 1)

    @nn.compact
    def __call__(self, x, train: bool = False):
        # tflib's 'he' init: uniform with std sqrt(2 / fan_in)
        init = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
        h = x
        for _ in range(self.layers):
            h = nn.relu(nn.Dense(self.hidden, kernel_init=init)(h))
        out = nn.Dense(self.out_dim, kernel_init=init)(h)
        return out[..., 0] if self.squeeze else out


class DCGANGenerator(nn.Module):
    """DCGAN-style 28x28 generator; output in [0, 1] with shape (B, 28, 28, channels)."""

    dim: int = 64
    channels: int = 1
    init_std: float = 0.02
    bn_momentum: float = 0.95
    conv_transpose: Any = StridedConvTranspose  # or nn.ConvTranspose: same function, slower on CPU

    @nn.compact
    def __call__(self, z, train: bool):
        init = nn.initializers.normal(self.init_std)

        def bn(h):
            return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h)

        h = nn.Dense(4 * 4 * 4 * self.dim, kernel_init=init)(z)
        h = nn.relu(bn(h)).reshape(z.shape[0], 4, 4, 4 * self.dim)
        h = self.conv_transpose(2 * self.dim, (5, 5), (2, 2), kernel_init=init)(h)  # 8x8
        h = nn.relu(bn(h))[:, :7, :7, :]  # crop so that two more doublings give 28
        h = self.conv_transpose(self.dim, (5, 5), (2, 2), kernel_init=init)(h)  # 14x14
        h = nn.relu(bn(h))
        h = self.conv_transpose(self.channels, (5, 5), (2, 2), kernel_init=init)(h)  # 28x28
        return nn.sigmoid(h)


class DCGANDiscriminator(nn.Module):
    """DCGAN-style 28x28 discriminator (no batch norm); one logit per image (channels may be packed)."""

    dim: int = 64
    init_std: float = 0.02
    conv: Any = StridedConv  # or nn.Conv: same function, slower gradients on CPU

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.normal(self.init_std)
        h = x
        for width in (self.dim, 2 * self.dim, 4 * self.dim):
            h = self.conv(width, (5, 5), (2, 2), kernel_init=init)(h)
            h = nn.leaky_relu(h, 0.2)
        h = h.reshape(h.shape[0], -1)
        return nn.Dense(1, kernel_init=init)(h)[..., 0]



class BatchStatNorm(nn.Module):
    """Batch norm on the batch's own statistics only (no running averages), with learnt scale and shift.

    What ``tf.contrib.layers.batch_norm(is_training=True)`` computes in the forward
    pass; the reference discriminator is never run in inference mode, so its running
    statistics are never read and are not kept here.
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x):
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        scale = self.param("scale", nn.initializers.ones_init(), (x.shape[-1],))
        bias = self.param("bias", nn.initializers.zeros_init(), (x.shape[-1],))
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class StackedDCGANGenerator(nn.Module):
    """PacGAN's Stacked-MNIST generator (carpedm20 DCGAN, 28x28); output in [-1, 1], shape (B, 28, 28, channels).

    The reference's 4x4 -> 7x7 layer is TensorFlow's transposed convolution with an explicit
    7x7 output, i.e. the gradient of a 'SAME' stride-2 convolution 7 -> 4, whose padding
    puts 2 pixels in front where 8 -> 4 puts 1: it equals the 8x8 'SAME' output cropped
    to rows and columns 1..7 (not 0..6).
    """

    dim: int = 64
    channels: int = 3
    init_std: float = 0.02
    bn_momentum: float = 0.9   # tf.contrib batch_norm decay in carpedm20's ops.py
    conv_transpose: Any = StridedConvTranspose

    @nn.compact
    def __call__(self, z, train: bool):
        init = nn.initializers.normal(self.init_std)

        def bn_relu(h):
            return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                        epsilon=1e-5)(h))

        h = nn.Dense(2 * 2 * 8 * self.dim, kernel_init=init)(z).reshape(z.shape[0], 2, 2, 8 * self.dim)
        h = bn_relu(h)
        h = bn_relu(self.conv_transpose(4 * self.dim, (5, 5), (2, 2), kernel_init=init)(h))  # 4x4
        h = self.conv_transpose(2 * self.dim, (5, 5), (2, 2), kernel_init=init)(h)[:, 1:, 1:, :]  # 8x8 -> 7x7
        h = bn_relu(h)
        h = bn_relu(self.conv_transpose(self.dim, (5, 5), (2, 2), kernel_init=init)(h))  # 14x14
        h = self.conv_transpose(self.channels, (5, 5), (2, 2), kernel_init=init)(h)  # 28x28
        return jnp.tanh(h)


class StackedDCGANDiscriminator(nn.Module):
    """PacGAN's Stacked-MNIST discriminator (carpedm20 DCGAN): one logit per (packed) 28x28 image.

    Batch norm uses each call's batch: real and generated batches are scored by
    separate calls, as in the reference (so the statistics never mix the two).
    """

    dim: int = 64
    conv: Any = StridedConv

    @nn.compact
    def __call__(self, x):
        # conv2d in carpedm20's ops.py: truncated normal(0.02) kernels, zero biases
        init = nn.initializers.truncated_normal(0.02)
        h = nn.leaky_relu(self.conv(self.dim, (5, 5), (2, 2), kernel_init=init)(x), 0.2)  # 14x14
        for width in (2 * self.dim, 4 * self.dim, 8 * self.dim):  # 7x7, 4x4, 2x2
            h = nn.leaky_relu(BatchStatNorm()(self.conv(width, (5, 5), (2, 2), kernel_init=init)(h)), 0.2)
        h = h.reshape(h.shape[0], -1)
        return nn.Dense(1, kernel_init=nn.initializers.normal(0.02))(h)[..., 0]
