"""Strided convolutions computed as matrix products (CPU-friendly drop-ins for Flax's).

XLA's CPU backend runs a stride-1 convolution through a fast library kernel, but
the gradient of a *strided* convolution and the transposed convolution itself
(an input-dilated convolution) fall back to a slow generic loop: on 2 cores the
DCGAN's generator + discriminator gradients at batch 50 take 1.39 s with Flax's
layers and 0.16 s with these (``scripts/bench_gan.py --images``).

:class:`StridedConv` and :class:`StridedConvTranspose` compute exactly the same
function as ``flax.linen.Conv`` / ``ConvTranspose`` with ``padding="SAME"`` and
hold the same parameters (``kernel`` of shape ``(kh, kw, in, out)``, ``bias``),
but only through slices, pads, reshapes and one matrix product, whose gradients
are again slices, pads and matrix products:

* convolution: gather the ``kh * kw`` strided shifts of the padded input
  (im2col by slicing) and multiply by the flattened kernel;
* transposed convolution (sub-pixel form): output pixel ``s*i + a`` only sees
  the input pixels ``i + d`` for a few offsets ``d``; a stride-1 window over
  those offsets, multiplied by the kernel rearranged per output phase ``a``
  (zeros where no tap falls), gives all ``s*s`` phases at once, which a
  depth-to-space reshape interleaves.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["StridedConv", "StridedConvTranspose", "subpixel_taps"]


def _shifts(x, offsets_h, offsets_w, out_h, out_w, stride):
    """Concatenate, along channels, the strided windows of ``x`` starting at each offset pair."""
    cols = [x[:, i: i + stride * (out_h - 1) + 1: stride, j: j + stride * (out_w - 1) + 1: stride, :]
            for i in offsets_h for j in offsets_w]
    return jnp.concatenate(cols, axis=-1)


def subpixel_taps(kernel_size: int, stride: int) -> tuple[np.ndarray, int]:
    """Tap index table of a 'SAME' transposed convolution, per output phase and input offset.

    Returns ``(taps, d_min)``: ``taps[a, d - d_min]`` is the kernel tap that
    carries input pixel ``i + d`` to output pixel ``stride * i + a``, or -1 if none.
    Derived from ``lax.conv_transpose``'s padding: the input is dilated by
    ``stride`` and padded by ``pad_a`` in front, then correlated with the kernel,
    so tap ``t`` reaches ``d = (a + t - pad_a) / stride`` when that is an integer.
    """
    k, s = kernel_size, stride
    pad_a = k - 1 if s > k - 1 else int(np.ceil((k + s - 2) / 2))
    pairs = [(a, t, (a + t - pad_a) // s) for a in range(s) for t in range(k) if (a + t - pad_a) % s == 0]
    d_min = min(d for _, _, d in pairs)
    d_max = max(d for _, _, d in pairs)
    taps = -np.ones((s, d_max - d_min + 1), dtype=np.int64)
    for a, t, d in pairs:
        taps[a, d - d_min] = t
    return taps, d_min


class _StridedLayer(nn.Module):
    """The fields and parameters shared with Flax's ``Conv``/``ConvTranspose`` (same names and shapes)."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int]
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    def _kernel_and_bias(self, in_features: int):
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, in_features, self.features))
        return kernel, self.param("bias", self.bias_init, (self.features,))


class StridedConv(_StridedLayer):
    """``nn.Conv(features, kernel_size, strides, padding="SAME")`` as one matrix product."""

    @nn.compact
    def __call__(self, x):
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if sh != sw:
            raise ValueError(f"StridedConv needs equal strides, got {self.strides}")
        cin = x.shape[-1]
        kernel, bias = self._kernel_and_bias(cin)
        (ph, pw) = lax.padtype_to_pads(x.shape[1:3], (kh, kw), (sh, sw), "SAME")
        out_h, out_w = -(-x.shape[1] // sh), -(-x.shape[2] // sw)
        xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
        cols = _shifts(xp, range(kh), range(kw), out_h, out_w, sh)  # (B, H', W', kh*kw*cin), (i, j, c) order
        return cols @ kernel.reshape(kh * kw * cin, self.features) + bias


class StridedConvTranspose(_StridedLayer):
    """``nn.ConvTranspose(features, kernel_size, strides, padding="SAME")`` in sub-pixel form."""

    @nn.compact
    def __call__(self, x):
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if kh != kw or sh != sw:
            raise ValueError(f"StridedConvTranspose needs square kernels and equal strides, "
                             f"got {self.kernel_size}, {self.strides}")
        k, s, cin, cout = kh, sh, x.shape[-1], self.features
        kernel, bias = self._kernel_and_bias(cin)
        taps, d_min = subpixel_taps(k, s)  # (s, w): static index tables
        w = taps.shape[1]
        # phase kernel P[di, dj, c, a, b, o] = kernel[taps[a, di], taps[b, dj], c, o] (0 where no tap)
        padded = jnp.concatenate([kernel, jnp.zeros((1, k, cin, cout), kernel.dtype)], axis=0)
        padded = jnp.concatenate([padded, jnp.zeros((k + 1, 1, cin, cout), kernel.dtype)], axis=1)
        rows = np.where(taps < 0, k, taps).T  # (w, s): d -> a
        phase = padded[rows[:, None, :, None], rows[None, :, None, :]]  # (w, w, s, s, cin, cout)
        phase = phase.transpose(0, 1, 4, 2, 3, 5).reshape(w * w * cin, s * s * cout)
        n, h, wd = x.shape[0], x.shape[1], x.shape[2]
        lo, hi = max(-d_min, 0), max(d_min + w - 1, 0)
        xp = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
        start = d_min + lo
        cols = _shifts(xp, range(start, start + w), range(start, start + w), h, wd, 1)
        y = (cols @ phase).reshape(n, h, wd, s, s, cout)  # y[n, i, j, a, b] = out[n, s*i+a, s*j+b]
        return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * s, wd * s, cout) + bias
