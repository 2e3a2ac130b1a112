"""The AE-OT pipeline: encode data, solve semi-discrete OT onto the codes, extend, decode.

    model = AEOT(encoder, decoder, ot=OTOptions(...), extension=ExtensionOptions(...))
    model.fit(data, key)          # codes -> (optional whitening) -> SemiDiscreteOT -> ExtendedMap
    x_new = model.sample(key, n)  # n fresh source samples -> extended map -> unwhiten -> decoder

In 2-D the encoder and decoder are the identity (the default).  The MNIST
experiment runs the same steps as resumable stages, each saving its result in
the run directory: its autoencoder encodes, :func:`solve_latent_ot` fits the
whitening and the map, :func:`otgen.ot.extension.extend` generates.  This module
knows nothing of networks: ``encoder``/``decoder`` are plain functions of arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import numpy as np

from otgen.checkpoint import CheckpointError, load_pytree, save_pytree
from otgen.ot import BrenierMap, Gaussian, SemiDiscreteOT, UniformBox, aeot_recipe, damped_newton
from otgen.ot.extension import DEFAULT_ANGLE_THRESHOLD, ExtendedMap, extend

INIT_KINDS = ("auto", "discrete", "multiscale", "voronoi", "zero")

__all__ = ["AEOT", "OTOptions", "ExtensionOptions", "Whitening", "fit_whitening", "solve_latent_ot", "identity"]

_WHITENING_FORMAT = "otgen-whitening-v1"


def identity(x):
    return x


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


@dataclasses.dataclass(frozen=True)
class OTOptions:
    """How the latent OT problem is set up and solved (see :mod:`otgen.ot`)."""

    source: str = "uniform"  # "uniform" (unit cube, as AE-OT) or "gaussian" (standard normal)
    whiten: bool = True  # solve on PCA-whitened codes placed on the source's support (see fit_whitening)
    optimizer: str = "newton"  # "newton" (otgen's damped Newton) or "aeot" (pyOMT's Adam recipe)
    tol: float = 0.02  # stop at estimated ||w - nu||_1 <= tol
    max_steps: int = 30
    batch_size: int | None = None  # Monte-Carlo samples per step (optimizer default if None)
    lr: float = 2e-2  # aeot recipe only
    init_h: str = "auto"  # the solver's start: "auto" (discrete OT for small K, multiscale above;
    #                       otgen.ot.warm_start), or force "discrete", "multiscale", "voronoi" or "zero"
    sampling: str = "rqmc"  # aeot recipe only: "rqmc", "sobol" (pyOMT) or "iid"

    def __post_init__(self):
        if self.source not in ("uniform", "gaussian"):
            raise ValueError(f"source must be 'uniform' or 'gaussian', got {self.source!r}")
        if self.init_h not in INIT_KINDS:
            raise ValueError(f"init_h must be one of {', '.join(INIT_KINDS)}, got {self.init_h!r}")
        if self.optimizer not in ("newton", "aeot"):
            raise ValueError(f"optimizer must be 'newton' or 'aeot', got {self.optimizer!r}")
        if self.sampling not in ("rqmc", "sobol", "iid"):
            raise ValueError(f"sampling must be 'rqmc', 'sobol' or 'iid', got {self.sampling!r}")
        if not self.tol > 0 or self.max_steps < 1:
            raise ValueError(f"need tol > 0 and max_steps >= 1, got {self.tol}, {self.max_steps}")

    def measure(self, dim: int):
        return Gaussian(dim=dim) if self.source == "gaussian" else UniformBox(dim=dim)

    def make_optimizer(self):
        if self.optimizer == "newton":
            return damped_newton(max_steps=self.max_steps, init_h=self.init_h)
        return aeot_recipe(lr=self.lr, batch_size=self.batch_size or 65536, max_steps=self.max_steps,
                           init_h=self.init_h, sampling=self.sampling)


@dataclasses.dataclass(frozen=True)
class ExtensionOptions:
    """AE-OT's extended generation (see :mod:`otgen.ot.extension`)."""

    angle_threshold: float = DEFAULT_ANGLE_THRESHOLD  # radians, on standardised codes
    top_k: int | None = None  # neighbour candidates incl. the own cell (None: min(d + 2, 20))
    num_samples: int | None = None  # source samples for the cell barycentres (None: 16 per cell)


def solve_latent_ot(codes, ot: OTOptions, key: jax.Array, *,
                    progress: bool | None = None) -> tuple[Whitening, BrenierMap]:
    """Semi-discrete OT from ``ot``'s source onto (whitened) ``codes`` (K, d): returns (whitening, map).

    The solver's start is ``ot.init_h`` (default "auto": see :mod:`otgen.ot.warm_start`).
    """
    z = np.asarray(codes)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"codes must have shape (K, d) with K >= 2, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("codes contain NaN or inf")
    whitening = fit_whitening(z, ot.source) if ot.whiten else Whitening.identity(z.shape[1])
    # pyOMT's learning rates are tuned in the codes' own frame: the recipe solves there.
    solver = SemiDiscreteOT(ot.measure(z.shape[1]), whitening.apply(z), normalise=ot.optimizer != "aeot")
    bmap = solver.fit(key, tol=ot.tol, max_steps=ot.max_steps, batch_size=ot.batch_size,
                      optimizer=ot.make_optimizer(), progress=progress)
    return whitening, bmap


class AEOT:
    """Autoencoder + semi-discrete OT + AE-OT extension, as one generator.

    Args:
      encoder, decoder: functions of arrays (identity by default: 2-D toys).
      ot: :class:`OTOptions`.  extension: :class:`ExtensionOptions`.
    After :meth:`fit` (or :meth:`fit_codes`), ``.latent_map`` is the
    :class:`~otgen.ot.extension.ExtendedMap` and ``.whitening`` the code transform.
    """

    def __init__(self, encoder: Callable = identity, decoder: Callable = identity, *,
                 ot: OTOptions = OTOptions(), extension: ExtensionOptions = ExtensionOptions()):
        self.encoder, self.decoder = encoder, decoder
        self.ot, self.extension = ot, extension
        self.latent_map: ExtendedMap | None = None
        self.whitening: Whitening | None = None

    def fit(self, data, key: jax.Array, *, progress: bool | None = None) -> "AEOT":
        """Encode ``data`` and fit the latent map onto the codes; returns ``self``."""
        return self.fit_codes(np.asarray(self.encoder(data)), key, progress=progress)

    def fit_codes(self, codes, key: jax.Array, *, progress: bool | None = None) -> "AEOT":
        """Solve OT from the source onto ``codes`` (K, d) and build the extension; returns ``self``."""
        k_ot, k_ext = jax.random.split(key)
        self.whitening, bmap = solve_latent_ot(codes, self.ot, k_ot, progress=progress)
        self.latent_map = extend(bmap, k_ext, angle_threshold=self.extension.angle_threshold,
                                 top_k=self.extension.top_k, num_samples=self.extension.num_samples)
        return self

    def _require_fit(self) -> ExtendedMap:
        if self.latent_map is None:
            raise ValueError("this AEOT model is not fitted: call fit(data, key) first")
        return self.latent_map

    def sample_codes(self, key: jax.Array, n: int, *, return_interpolated: bool = False):
        """``n`` new codes (n, d) in the encoder's coordinates (and, if asked, which were interpolated)."""
        w, moved = self._require_fit().generate_with_info(key, n)
        codes = self.whitening.invert(np.asarray(w))
        return (codes, np.asarray(moved)) if return_interpolated else codes

    def sample(self, key: jax.Array, n: int) -> np.ndarray:
        """``n`` new samples: new codes through the decoder."""
        return np.asarray(self.decoder(self.sample_codes(key, n)))
