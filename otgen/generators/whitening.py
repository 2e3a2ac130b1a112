"""The codes' whitening: an invertible affine change of coordinates that puts AE-OT's codes on the
source measure's scale (mean 0 and identity covariance for a Gaussian source, inside the unit cube for a
uniform one), saved pickle-free beside the map it was fitted for."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from otgen.checkpoint import CheckpointError, load_pytree, save_pytree

__all__ = ["Whitening", "fit_whitening"]

_WHITENING_FORMAT = "otgen-whitening-v1"


class Whitening(NamedTuple):
    """An invertible affine change of code coordinates: ``w = (z - mean) @ proj + offset``."""

    mean: np.ndarray  # (d,)
    proj: np.ndarray  # (d, d)
    unproj: np.ndarray  # (d, d), the inverse of proj
    offset: np.ndarray  # (d,)

    def apply(self, z) -> np.ndarray:
        return ((np.asarray(z, np.float32) - self.mean) @ self.proj + self.offset).astype(np.float32)

    def invert(self, w) -> np.ndarray:
        return ((np.asarray(w, np.float32) - self.offset) @ self.unproj + self.mean).astype(np.float32)

    @classmethod
    def identity(cls, dim: int) -> "Whitening":
        eye = np.eye(dim, dtype=np.float32)
        zero = np.zeros(dim, np.float32)
        return cls(zero, eye, eye, zero)

    def save(self, path) -> None:
        """Atomic, pickle-free ``.npz`` (via :mod:`otgen.checkpoint`)."""
        save_pytree(path, dict(self._asdict()), {"format": _WHITENING_FORMAT})

    @classmethod
    def load(cls, path) -> "Whitening":
        flat, meta = load_pytree(path)
        if meta.get("format") != _WHITENING_FORMAT:
            raise CheckpointError(f"{path} is not a saved code whitening (format {meta.get('format')!r})")
        try:
            arrays = {f: np.asarray(flat[f"['{f}']"], np.float32) for f in cls._fields}
        except KeyError as e:
            raise CheckpointError(f"{path}: missing array {e}") from None
        d = arrays["mean"].shape[0]
        if any(arrays[f].shape != (d, d) for f in ("proj", "unproj")) or arrays["offset"].shape != (d,):
            raise CheckpointError(f"{path}: inconsistent shapes {[a.shape for a in arrays.values()]}")
        return cls(**arrays)


def fit_whitening(z, source: str = "gaussian", eps: float = 1e-6) -> Whitening:
    """PCA whitening of codes ``z`` (n, d), fitted in float64, placed on the source's support.

    ``"gaussian"``: mean 0, identity covariance, like N(0, I).  ``"uniform"``: the
    whitened codes are then scaled uniformly and shifted into [0.02, 0.98]^d, so
    that every target's Voronoi cell meets the unit cube (the damped Newton
    solver starts from Voronoi cells, which must all have mass).  Near-zero
    variances are floored at ``eps`` times the largest, so the map stays invertible.
    """
    z = np.asarray(z, np.float64)
    mean = z.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(z - mean, rowvar=False).reshape(z.shape[1], z.shape[1]))
    scale = np.sqrt(np.maximum(evals, eps * max(evals.max(), eps)))
    proj, unproj = evecs / scale, (evecs * scale).T
    offset = np.zeros(z.shape[1])
    if source == "uniform":
        s = 0.48 / max(float(np.max(np.abs((z - mean) @ proj))), 1e-12)
        proj, unproj, offset = proj * s, unproj / s, np.full(z.shape[1], 0.5)
    elif source != "gaussian":
        raise ValueError(f"source must be 'gaussian' or 'uniform', got {source!r}")
    return Whitening(*(a.astype(np.float32) for a in (mean, proj, unproj, offset)))
