"""Problem families for robustness sweeps, and an independent accuracy check.

Each family is ``fn(rng, k, d) -> (source, targets (k, d) float32, weights (k,) float64)``;
:data:`FAMILIES` is the one table of them.  They cover what users actually bring:
targets narrower, wider, shifted or clustered relative to the source, degenerate
(on a line or sphere), heavy-tailed, with Dirichlet weights down to ~1e-7, and box,
Gaussian and user-sampler sources.

:func:`independent_error` scores a fitted map with fresh i.i.d. source samples
(a PRNG stream the solver never used, never its own estimate), and returns the
L1 error, the unbiased chi-square error and the noise floor of that check.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from otgen.ot.measures import Gaussian, Sampler, UniformBox

__all__ = ["FAMILIES", "make_problem", "independent_error", "IndependentError"]


def _uniform(k):
    return np.full(k, 1.0 / k)


def _dirichlet(rng, k, alpha):
    w = rng.dirichlet(np.full(k, alpha))
    w = np.maximum(w, 1e-12)  # Dirichlet(0.5) can underflow to 0 at large K; weights must be positive
    return w / w.sum()


def _clusters(rng, k, d, n_clusters, radius, spread):
    centers = rng.normal(size=(n_clusters, d))
    centers *= radius / np.linalg.norm(centers, axis=1, keepdims=True)
    which = rng.integers(0, n_clusters, size=k)
    return centers[which] + spread * rng.normal(size=(k, d))


def _mixture_sampler(d):
    def fn(key, n):
        k1, k2 = jax.random.split(key)
        side = jnp.where(jax.random.bernoulli(k1, 0.5, (n, 1)), 1.5, -1.5)
        return jax.random.normal(k2, (n, d)) * 0.7 + side * jnp.eye(1, d, dtype=jnp.float32)
    return Sampler(fn, d, name="two_gaussians")


def _ball_sampler(d):
    def fn(key, n):
        k1, k2 = jax.random.split(key)
        z = jax.random.normal(k1, (n, d))
        r = jax.random.uniform(k2, (n, 1)) ** (1.0 / d)
        return z / jnp.linalg.norm(z, axis=1, keepdims=True) * r
    return Sampler(fn, d, name="unit_ball")


def _line(rng, k, d):
    t = rng.uniform(-2, 2, size=(k, 1))
    return t * np.eye(1, d) + 1e-3 * rng.normal(size=(k, d))


def _sphere(rng, k, d):
    z = rng.normal(size=(k, d))
    return 2.0 * z / np.linalg.norm(z, axis=1, keepdims=True)


def _outlier(rng, k, d):
    y = rng.normal(size=(k, d))
    y[0] = 50.0
    return y


def _two_scale(rng, k, d):
    y = rng.normal(size=(k, d))
    y[: k // 2] = 0.02 * y[: k // 2] + 3.0
    return y


def _grid(rng, k, d):
    side = max(2, int(round(k ** (1.0 / d))))
    axes = np.meshgrid(*[np.linspace(-1, 1, side)] * d, indexing="ij")
    pts = np.stack([a.ravel() for a in axes], axis=1)
    return pts[rng.permutation(pts.shape[0])[:k]]


Family = Callable[[np.random.Generator, int, int], tuple]

# name -> (rng, k, d) -> (source, targets, weights)
FAMILIES: dict[str, Family] = {
    "uniform_to_uniform": lambda r, k, d: (UniformBox(d), r.uniform(size=(k, d)), _uniform(k)),
    "gauss_to_narrow": lambda r, k, d: (Gaussian(d), 0.5 * r.normal(size=(k, d)), _uniform(k)),
    "gauss_to_wide": lambda r, k, d: (Gaussian(d), 4.0 * r.normal(size=(k, d)), _uniform(k)),
    "gauss_to_double": lambda r, k, d: (Gaussian(d), 2.0 * r.normal(size=(k, d)), _uniform(k)),
    "gauss_to_shifted": lambda r, k, d: (Gaussian(d), r.normal(size=(k, d)) + 5.0, _uniform(k)),
    "gauss_to_tiny": lambda r, k, d: (Gaussian(d), 0.01 * r.normal(size=(k, d)), _uniform(k)),
    "gauss_to_far_huge": lambda r, k, d: (Gaussian(d), 100.0 * r.normal(size=(k, d)) + 1000.0, _uniform(k)),
    "box_to_outside": lambda r, k, d: (UniformBox(d), r.uniform(2.0, 3.0, size=(k, d)), _uniform(k)),
    "box_to_gauss": lambda r, k, d: (UniformBox(d), 0.5 + 0.1 * r.normal(size=(k, d)), _uniform(k)),
    "shifted_source": lambda r, k, d: (Gaussian(d, mean=3.0, std=0.5), r.normal(size=(k, d)), _uniform(k)),
    "clusters8": lambda r, k, d: (Gaussian(d), _clusters(r, k, d, 8, 3.0, 0.1), _uniform(k)),
    "clusters8_dirichlet": lambda r, k, d: (Gaussian(d), _clusters(r, k, d, 8, 3.0, 0.1), _dirichlet(r, k, 0.5)),
    "tight_clusters_box": lambda r, k, d: (UniformBox(d), 0.5 + _clusters(r, k, d, 3, 0.3, 0.005),
                                           _dirichlet(r, k, 1.0)),
    "dirichlet_half_wide": lambda r, k, d: (Gaussian(d), 2.0 * r.normal(size=(k, d)), _dirichlet(r, k, 0.5)),
    "dirichlet_one_box": lambda r, k, d: (UniformBox(d), r.uniform(size=(k, d)), _dirichlet(r, k, 1.0)),
    "anisotropic": lambda r, k, d: (Gaussian(d), r.normal(size=(k, d)) * np.geomspace(10.0, 0.1, d),
                                    _uniform(k)),
    "line": lambda r, k, d: (Gaussian(d), _line(r, k, d), _uniform(k)),
    "sphere": lambda r, k, d: (Gaussian(d), _sphere(r, k, d), _uniform(k)),
    "outlier": lambda r, k, d: (Gaussian(d), _outlier(r, k, d), _uniform(k)),
    "two_scale": lambda r, k, d: (Gaussian(d), _two_scale(r, k, d), _uniform(k)),
    "heavy_tail": lambda r, k, d: (Gaussian(d), r.standard_t(2.0, size=(k, d)), _uniform(k)),
    "grid": lambda r, k, d: (UniformBox(d, -1.0, 1.0), _grid(r, k, d), None),
    "sampler_mixture": lambda r, k, d: (_mixture_sampler(d), r.normal(size=(k, d)), _uniform(k)),
    "sampler_ball": lambda r, k, d: (_ball_sampler(d), 0.3 * r.normal(size=(k, d)), _dirichlet(r, k, 1.0)),
}


def make_problem(family: str, k: int, d: int, seed: int = 0):
    """``(source, targets float32 (K', d), weights (K',))`` of one family; K' = k except for ``grid``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown problem family {family!r}; known: {', '.join(FAMILIES)}")
    if k < 1 or d < 1:
        raise ValueError(f"need k >= 1 and d >= 1, got k={k}, d={d}")
    rng = np.random.default_rng([seed, k, d, sorted(FAMILIES).index(family)])
    source, y, nu = FAMILIES[family](rng, int(k), int(d))
    y = np.asarray(y, np.float32)
    y, first = np.unique(y, axis=0, return_index=True)  # float32 rounding can merge rows (e.g. "tiny")
    nu = _uniform(y.shape[0]) if nu is None else np.asarray(nu)[first] / np.asarray(nu)[first].sum()
    return source, y, nu


class IndependentError(NamedTuple):
    l1: float  # ||w - nu||_1 of the fresh i.i.d. estimate (biased up by its noise)
    chi2: float  # unbiased chi-square error from two independent halves
    noise_l1: float  # the check's own L1 noise: half the L1 distance of its two halves
    num_samples: int


def independent_error(bmap, key: jax.Array, num_samples: int) -> IndependentError:
    """Score ``bmap`` with ``num_samples`` fresh i.i.d. samples of its source, in two independent halves.

    The samples come from ``source.sample`` (i.i.d., :meth:`BrenierMap.cell_masses`), not
    from the solver's randomised-QMC stream, and from keys the solver never saw.
    """
    half = int(num_samples) // 2
    nu = np.asarray(bmap.weights, np.float64)
    ka, kb = jax.random.split(key)
    wa, wb = (np.asarray(bmap.cell_masses(k, half), np.float64) for k in (ka, kb))
    w = 0.5 * (wa + wb)
    return IndependentError(float(np.abs(w - nu).sum()), float(np.sum((wa - nu) * (wb - nu) / nu)),
                            float(0.5 * np.abs(wa - wb).sum()), 2 * half)
