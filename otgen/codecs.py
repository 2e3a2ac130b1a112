"""Compact encodings of float32 arrays for the checkpoints that travel in git (:mod:`otgen.checkpoint`).

A training checkpoint of PacGAN's Stacked-MNIST nets is ~106 MB in float32 (8.8 M parameters, Adam's two
moments); a run of ~17 CPU-hours crosses many machines, so what is committed between them must be small.
Each codec maps one float32 array to a few plain integer / float arrays (``np.load(allow_pickle=False)``
reads them) and back:

``exact``  the array itself.
``bf16``   round to nearest even bfloat16 (7 stored mantissa bits: relative error <= 2^-8), stored as two byte
           planes (high bytes, then low) so that zip's deflate squeezes the low-entropy sign/exponent plane.
``log8``   non-negative arrays (Adam's second moment): per block of :data:`BLOCK` values, log2 quantised to
           255 levels between the block's smallest and largest positive value (0 kept exact); relative error
           <= 2^(range / 508) - 1, a few per cent for a block spanning 20 octaves.
``int8``   per block, x / max|x| in 127 levels (absolute error <= max|x| / 254).
``int4``   per block, x / max|x| in 7 levels, two codes a byte (absolute error <= max|x| / 14): Adam's first
           moment, which the optimiser rebuilds within a few steps anyway.
``zero``   nothing stored; decodes to zeros (a state the run rebuilds in a few steps, e.g. Adam's first
           moment at beta1 = 0.5, which forgets half of itself every step).

Every lossy codec refuses non-finite input. Which codec suits which leaf is the caller's decision
(:func:`otgen.training.loop.save_carry` says it for a GAN's state).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CODECS", "BLOCK", "encode", "decode"]

CODECS = ("exact", "bf16", "log8", "int8", "int4", "zero")
_LEVELS = {"int8": 127, "int4": 7}
BLOCK = 256


def _check(name: str, x: np.ndarray) -> np.ndarray:
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; one of {CODECS}")
    if name == "exact":
        return x
    if x.dtype != np.float32:
        raise ValueError(f"codec {name!r} encodes float32 arrays, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"codec {name!r}: the array holds NaN or infinite values")
    return x.reshape(-1)


def _blocks(flat: np.ndarray) -> np.ndarray:
    pad = (-flat.size) % BLOCK
    return np.pad(flat, (0, pad)).reshape(-1, BLOCK)


def encode(name: str, x) -> dict[str, np.ndarray]:
    """``x`` under codec ``name`` as a dict of plain arrays (see the module docstring)."""
    x = np.asarray(x)
    flat = _check(name, x)
    if name == "exact":
        return {"data": x}
    if name == "zero":
        return {}
    if name == "bf16":
        u = flat.view(np.uint32)
        rounded = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
        return {"planes": np.stack([(rounded >> 8).astype(np.uint8), (rounded & 0xFF).astype(np.uint8)])}
    b = _blocks(flat)
    if name in _LEVELS:
        levels = _LEVELS[name]
        scale = np.abs(b).max(axis=1) / levels
        safe = np.where(scale > 0, scale, 1.0)
        codes = np.clip(np.rint(b / safe[:, None]), -levels, levels).astype(np.int8).reshape(-1)[:flat.size]
        if name == "int4":  # offset to 0..14, two to a byte
            nib = np.pad((codes + levels).astype(np.uint8), (0, flat.size % 2))
            codes = (nib[0::2] << 4) | nib[1::2]
        return {"codes": codes, "scale": scale.astype(np.float32)}
    # log8
    if np.any(flat < 0):
        raise ValueError("codec 'log8' encodes non-negative arrays, got negative values")
    pos = b > 0
    logs = np.log2(np.where(pos, b, 1.0))
    lo = np.where(pos, logs, np.inf).min(axis=1)
    hi = np.where(pos, logs, -np.inf).max(axis=1)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, 0.0)
    width = np.where(hi > lo, hi - lo, 1.0)
    codes = np.where(pos, 1 + np.rint((logs - lo[:, None]) / width[:, None] * 254), 0).astype(np.uint8)
    return {"codes": codes.reshape(-1)[:flat.size], "lo": lo.astype(np.float32), "hi": hi.astype(np.float32)}


def decode(name: str, parts: dict[str, np.ndarray], shape, dtype) -> np.ndarray:
    """The array :func:`encode` stored as ``parts``, of ``shape`` and ``dtype`` (float32 for lossy codecs)."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; one of {CODECS}")
    shape = tuple(shape)
    if name == "exact":
        return parts["data"]
    size = int(np.prod(shape, dtype=np.int64))
    if name == "zero":
        return np.zeros(shape, dtype)
    if name == "bf16":
        hi, lo = parts["planes"].astype(np.uint32)
        return ((hi << 24) | (lo << 16)).view(np.float32).reshape(shape).astype(dtype)
    codes = parts["codes"]
    if name == "int4":
        codes = (np.stack([codes >> 4, codes & 0x0F], axis=1).reshape(-1)[:size].astype(np.int8) - _LEVELS[name])
    if codes.size != size:
        raise ValueError(f"codec {name!r}: {codes.size} codes for an array of {size} values")
    pad = (-size) % BLOCK
    if name in _LEVELS:
        b = np.pad(codes, (0, pad)).reshape(-1, BLOCK).astype(np.float32) * parts["scale"][:, None]
        return b.reshape(-1)[:size].reshape(shape).astype(dtype)
    b = np.pad(codes, (0, pad)).reshape(-1, BLOCK).astype(np.float64)
    lo, hi = parts["lo"].astype(np.float64)[:, None], parts["hi"].astype(np.float64)[:, None]
    values = np.where(b > 0, np.exp2(lo + (b - 1) / 254 * (hi - lo)), 0.0)
    return values.reshape(-1)[:size].reshape(shape).astype(dtype)
