"""2-D toy distributions: the PacGAN mixtures and harder shapes, plus user ``.npy`` data.

``get(name)`` returns a toy with ``.name`` and ``.sample(key, n) -> (n, 2)``.

* Gaussian mixtures (:class:`GaussianMixture`) also have ``.centres`` (M, 2),
  ``.std`` and ``.weights`` (M,): ``ring8`` (8 modes on the unit circle, std
  0.01) and ``grid25`` (modes at {-4,-2,0,2,4}^2, std 0.05) exactly as in the
  PacGAN experiments, and ``ring8_unequal`` (ring8 with weights 1:1:2:2:4:4:8:8).
* Curve toys (:class:`CurveToy`) -- ``spiral``, ``two_moons``, ``nested_rings``
  (two concentric circles: a disconnected, non-convex support) -- have
  ``.centres = None`` and instead ``.curve`` (dense points on the noiseless
  curves), ``.component`` (which connected piece each curve point belongs to),
  ``.noise`` and ``.weights`` (mass of each piece), which
  :func:`otgen.eval.modes.mode_coverage_for_toy` uses.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["GaussianMixture", "CurveToy", "get", "names", "load_npy"]


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Isotropic Gaussian mixture in 2-D with known modes."""

    name: str
    centres: np.ndarray  # (M, 2)
    std: float
    weights: np.ndarray  # (M,), sums to 1

    def sample(self, key: jax.Array, n: int) -> np.ndarray:
        k_mode, k_noise = jax.random.split(key)
        idx = jax.random.choice(k_mode, len(self.weights), (int(n),), p=jnp.asarray(self.weights))
        x = jnp.asarray(self.centres, jnp.float32)[idx] + self.std * jax.random.normal(k_noise, (int(n), 2))
        return np.asarray(x, np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class CurveToy:
    """Points on 2-D curves plus isotropic Gaussian noise ``noise``.

    ``pieces`` are functions ``t -> (m, 2)`` of ``t`` uniform on [0, 1], one per
    connected piece, drawn with probabilities ``weights``.
    """

    name: str
    pieces: tuple
    weights: np.ndarray
    noise: float
    centres = None  # no Gaussian modes: see mode_coverage_for_toy

    def sample(self, key: jax.Array, n: int) -> np.ndarray:
        k_piece, k_t, k_noise = jax.random.split(key, 3)
        piece = np.asarray(jax.random.choice(k_piece, len(self.weights), (int(n),), p=jnp.asarray(self.weights)))
        t = np.asarray(jax.random.uniform(k_t, (int(n),)), np.float64)
        x = np.zeros((int(n), 2))
        for p, fn in enumerate(self.pieces):
            sel = piece == p
            x[sel] = fn(t[sel])
        x += self.noise * np.asarray(jax.random.normal(k_noise, (int(n), 2)), np.float64)
        return x.astype(np.float32)

    @property
    def curve(self) -> np.ndarray:
        """Dense points (P, 2) on the noiseless curves (spacing far below ``noise``)."""
        return np.concatenate([fn(np.linspace(0.0, 1.0, 4000)) for fn in self.pieces])

    @property
    def component(self) -> np.ndarray:
        """Piece index (P,) of each row of :attr:`curve`."""
        return np.repeat(np.arange(len(self.pieces)), 4000)


def _ring(m: int, radius: float = 1.0) -> np.ndarray:
    t = 2.0 * np.pi * np.arange(m) / m
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _grid(values) -> np.ndarray:
    g = np.asarray(values, np.float64)
    return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)


def _circle(radius: float):
    return lambda t: radius * np.stack([np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)], axis=1)


def _spiral(t):
    # Archimedean spiral r = theta / (2 pi) * 0.5 over 1.5 turns starting at half a turn.
    theta = 2.0 * np.pi * (0.5 + 1.5 * t)
    r = 0.25 * theta / np.pi
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def _moon(upper: bool):
    if upper:
        return lambda t: np.stack([np.cos(np.pi * t), np.sin(np.pi * t)], axis=1)
    return lambda t: np.stack([1.0 - np.cos(np.pi * t), 0.5 - np.sin(np.pi * t)], axis=1)


def _uniform(m: int) -> np.ndarray:
    return np.full(m, 1.0 / m)


def _unequal() -> np.ndarray:
    w = np.array([1, 1, 2, 2, 4, 4, 8, 8], np.float64)
    return w / w.sum()


_BUILDERS = {
    "ring8": lambda: GaussianMixture("ring8", _ring(8), 0.01, _uniform(8)),
    "grid25": lambda: GaussianMixture("grid25", _grid([-4, -2, 0, 2, 4]), 0.05, _uniform(25)),
    "ring8_unequal": lambda: GaussianMixture("ring8_unequal", _ring(8), 0.01, _unequal()),
    "nested_rings": lambda: CurveToy("nested_rings", (_circle(1.0), _circle(2.0)), np.array([1 / 3, 2 / 3]), 0.02),
    "two_moons": lambda: CurveToy("two_moons", (_moon(True), _moon(False)), np.array([0.5, 0.5]), 0.05),
    "spiral": lambda: CurveToy("spiral", (_spiral,), np.array([1.0]), 0.02),
}


def names() -> tuple[str, ...]:
    return tuple(_BUILDERS)


def get(name: str):
    """The toy called ``name`` (see :func:`names`)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown toy distribution {name!r}; choose one of {', '.join(_BUILDERS)}")
    return _BUILDERS[name]()


def load_npy(path: str | Path) -> np.ndarray:
    """User data: a ``.npy`` array of shape (n, d), n >= 2, real numbers, all finite -> float32.

    Raises ``ValueError`` naming the problem (missing file, pickled object array,
    wrong dtype, wrong shape, NaN/inf).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist" if not path.exists() else f"{path} is not a file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"PK":
        raise ValueError(f"{path} is a .npz archive (several arrays); give a single (n, d) array saved with "
                         "numpy.save")
    if magic != b"\x93NUMPY":
        raise ValueError(f"{path} is not a .npy file (it lacks the .npy header): save the (n, d) array with "
                         "numpy.save(path, array)")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable numeric .npy file: {e}") from e
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{path} holds several arrays (.npz?); give a single (n, d) .npy array")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{path}: data must be real numbers (float or int), got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{path}: data must have shape (n, d), got shape {x.shape}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{path}: need at least 2 points of dimension >= 1, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(x), axis=1))[0])
        raise ValueError(f"{path}: data contain NaN or inf (first at row {bad})")
    return x.astype(np.float32)
