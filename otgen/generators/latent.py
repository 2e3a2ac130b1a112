"""Ex-post densities of autoencoder codes: the simple latent samplers AE-OT must beat.

Ghosh et al. (ICLR 2020, "From variational to deterministic autoencoders") sample a
deterministic autoencoder by fitting a density to its codes after training; these are
the samplers a fair reader sets beside AE-OT on the same codes:

* :class:`GaussianCodes` -- one full-covariance Gaussian fitted to the codes.
* :class:`MixtureCodes` -- a full-covariance Gaussian mixture (scikit-learn's
  ``GaussianMixture``: k-means++ start, EM, covariance floor; Ghosh et al. use 10 components).
* :class:`KernelCodes` -- a Gaussian KDE in the codes' whitened frame, its bandwidth
  chosen by the log-likelihood of a held-out tenth of the codes (times ``scale``, to trace
  how quality and novelty move with it).
* :class:`LocalCodes` -- manifold Parzen windows (Vincent & Bengio 2003): a random code plus
  Gaussian noise with the covariance of its nearest codes, the noise AE-OT's spacing rule adds
  to its piecewise-linear images (:func:`otgen.ot.spacing.local_noise`), its scale calibrated
  the same way (the samples' nearest-code distances distributed like the codes' leave-one-out
  ones).  AE-OT without the OT map: the control that says what the map itself adds.

Each has ``fit(codes, key)`` and ``sample(key, n)`` and works in the codes' own coordinates;
:func:`make_sampler` builds one from its name (``gaussian``, ``gmm<k>``, ``kde``, ``kde@<scale>``, ``local``,
``local-iso<share>``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["GaussianCodes", "MixtureCodes", "KernelCodes", "LocalCodes", "make_sampler", "is_sampler"]


def _seed(key) -> int:
    import jax

    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def _check_codes(codes) -> np.ndarray:
    z = np.asarray(codes, np.float64)
    if z.ndim != 2 or len(z) < 2 or not np.all(np.isfinite(z)):
        raise ValueError(f"codes must be finite, of shape (K >= 2, d); got {z.shape}")
    return z


class GaussianCodes:
    """One Gaussian with the codes' mean and covariance."""

    name = "gaussian"

    def fit(self, codes, key=None) -> "GaussianCodes":
        z = _check_codes(codes)
        self.mean, self.chol = z.mean(0), np.linalg.cholesky(np.cov(z, rowvar=False) + 1e-9 * np.eye(z.shape[1]))
        return self

    def sample(self, key, n: int) -> np.ndarray:
        xi = np.random.default_rng(_seed(key)).standard_normal((int(n), len(self.mean)))
        return (self.mean + xi @ self.chol.T).astype(np.float32)

    def info(self) -> dict:
        return {}


class MixtureCodes:
    """A ``components``-component full-covariance Gaussian mixture fitted by EM (scikit-learn)."""

    def __init__(self, components: int = 10):
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        self.components = int(components)
        self.name = f"gmm{self.components}"

    def fit(self, codes, key) -> "MixtureCodes":
        from sklearn.mixture import GaussianMixture

        z = _check_codes(codes)
        self.gmm = GaussianMixture(self.components, covariance_type="full", reg_covar=1e-6, max_iter=200,
                                   random_state=_seed(key)).fit(z)
        if not self.gmm.converged_:
            raise RuntimeError(f"{self.name}: EM did not converge in {self.gmm.max_iter} iterations")
        return self

    def sample(self, key, n: int) -> np.ndarray:
        self.gmm.random_state = _seed(key)
        x, _ = self.gmm.sample(int(n))
        return np.random.default_rng(_seed(key)).permutation(x).astype(np.float32)  # sklearn sorts by component

    def info(self) -> dict:
        return {"em_iterations": int(self.gmm.n_iter_)}


class KernelCodes:
    """Gaussian KDE in the whitened frame: ``z = y_j + h * L xi`` (``L L^T`` the codes' covariance).

    ``h`` is ``scale`` times the grid value (``bandwidths``, relative to Scott's factor
    ``K^(-1/(d+4))``) with the highest mean log-likelihood of a random tenth of the codes under a KDE
    of the rest."""

    # up to 2x Scott's factor: on Stacked MNIST's 128,000 32-d codes the best is above 1
    def __init__(self, bandwidths=(0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0),
                 validation: int = 2000, scale: float = 1.0):
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.bandwidths = tuple(float(b) for b in bandwidths)
        self.validation = int(validation)
        self.scale = float(scale)
        self.name = "kde" if scale == 1.0 else f"kde@{scale:g}"

    def fit(self, codes, key) -> "KernelCodes":
        z = _check_codes(codes)
        k, d = z.shape
        self.mean = z.mean(0)
        self.chol = np.linalg.cholesky(np.cov(z, rowvar=False) + 1e-9 * np.eye(d))
        w = np.linalg.solve(self.chol, (z - self.mean).T).T  # whitened codes
        rng = np.random.default_rng(_seed(key))
        perm = rng.permutation(k)
        n_val = min(self.validation, k // 10)
        val, fit = w[perm[:n_val]], w[perm[n_val:]]
        d2 = (val ** 2).sum(1)[:, None] - 2 * val @ fit.T + (fit ** 2).sum(1)[None, :]
        scott = k ** (-1.0 / (d + 4))
        self.scores = {}
        for b in self.bandwidths:
            h = b * scott
            ll = logsumexp(-0.5 * d2 / h ** 2, axis=1) - np.log(len(fit)) - d * np.log(h) - 0.5 * d * np.log(2 * np.pi)
            self.scores[b] = float(ll.mean())
        best = max(self.scores, key=self.scores.get)
        if best in (self.bandwidths[0], self.bandwidths[-1]):
            raise RuntimeError(f"kde: the best bandwidth {best} is at the edge of the grid {self.bandwidths}")
        self.h, self.codes = self.scale * best * scott, z
        return self

    def sample(self, key, n: int) -> np.ndarray:
        rng = np.random.default_rng(_seed(key))
        j = rng.integers(0, len(self.codes), int(n))
        xi = rng.standard_normal((int(n), self.codes.shape[1]))
        return (self.codes[j] + self.h * xi @ self.chol.T).astype(np.float32)

    def info(self) -> dict:
        return {"bandwidth": self.h, "bandwidth_scale": self.scale,
                "validation_log_likelihood": {str(k): v for k, v in self.scores.items()}}


class LocalCodes:
    """``z = y_j + c * sum_l g_l (y_l - ybar_j) / sqrt(k)`` over ``y_j`` and its ``k - 1`` nearest codes
    (``k`` = :data:`~otgen.ot.spacing.LOCAL_K`), ``j`` uniform; ``c`` by bisection so that the Mann-Whitney
    z of the samples' nearest-code distances against the codes' leave-one-out distances is 0."""

    name = "local"

    def __init__(self, iso: float = 0.0):
        if not 0.0 <= iso <= 1.0:
            raise ValueError(f"local: the isotropic share must be in [0, 1], got {iso}")
        self.iso = float(iso)  # share of the noise variance made isotropic (otgen.ot.spacing.local_noise)
        self.name = "local" if self.iso == 0 else f"local-iso{self.iso:g}"

    def fit(self, codes, key, num_samples: int = 4096) -> "LocalCodes":
        import jax

        from otgen.ot.spacing import LOCAL_K, bisect_increasing, nearest_k_targets, nearest_targets
        from otgen.stats import mann_whitney_z

        self.codes = _check_codes(codes).astype(np.float32)
        self.near, dist = nearest_k_targets(self.codes, LOCAL_K - 1)
        loo = dist[:, 0].astype(np.float64)  # the leave-one-out spacing: each code's nearest other code
        k_j, k_g = jax.random.split(key)
        j = np.random.default_rng(_seed(k_j)).integers(0, len(self.codes), int(num_samples))
        base, noise = self.codes[j], self._noise(k_g, j, 1.0)

        def z_of(c):  # common random numbers at every scale
            return mann_whitney_z(nearest_targets(base + c * noise, self.codes)[1], loo)

        if z_of(4.0) < 0:
            raise RuntimeError("local: even 4x the local covariance leaves the samples nearer the codes than "
                               "the codes are to each other")
        self.scale = bisect_increasing(z_of, 4.0, 12)
        return self

    def _noise(self, key, j, scale) -> np.ndarray:
        import jax.numpy as jnp

        from otgen.ot.spacing import local_noise

        return np.asarray(local_noise(key, jnp.asarray(j), jnp.asarray(self.codes), jnp.asarray(self.near),
                                      jnp.float32(scale), iso=self.iso))

    def sample(self, key, n: int) -> np.ndarray:
        import jax

        k_j, k_g = jax.random.split(key)
        j = np.random.default_rng(_seed(k_j)).integers(0, len(self.codes), int(n))
        return (self.codes[j] + self._noise(k_g, j, self.scale)).astype(np.float32)

    def info(self) -> dict:
        return {"local_scale": self.scale, "local_k": int(self.near.shape[1]) + 1, "local_iso": self.iso}


def _parse(name: str):
    """(class, kwargs) of a sampler name, or None if ``name`` names none."""
    if name == "gaussian":
        return GaussianCodes, {}
    if name.startswith("gmm") and name[3:].isdigit() and int(name[3:]) >= 1:
        return MixtureCodes, {"components": int(name[3:])}
    if name == "kde":
        return KernelCodes, {}
    if name == "local":
        return LocalCodes, {}
    if name.startswith("local-iso"):
        try:
            iso = float(name[len("local-iso"):])
        except ValueError:
            return None
        return (LocalCodes, {"iso": iso}) if 0.0 <= iso <= 1.0 else None
    if name.startswith("kde@"):
        try:
            scale = float(name[4:])
        except ValueError:
            return None
        return (KernelCodes, {"scale": scale}) if scale > 0 else None
    return None


def is_sampler(name: str) -> bool:
    """Whether :func:`make_sampler` knows ``name``."""
    return _parse(name) is not None


def make_sampler(name: str):
    """An unfitted sampler from its name: ``gaussian``, ``gmm<k>`` (k components, e.g. ``gmm100``),
    ``kde`` (held-out bandwidth), ``kde@<scale>`` (that bandwidth times ``scale``, e.g. ``kde@0.5``),
    ``local`` (manifold Parzen windows) or ``local-iso<share>`` (that share of their noise variance
    isotropic, e.g. ``local-iso0.5``)."""
    parsed = _parse(name)
    if parsed is None:
        raise ValueError(f"unknown latent sampler {name!r}: use gaussian, gmm<k> (e.g. gmm100), kde, kde@<scale> "
                         "local or local-iso<share>")
    cls, kwargs = parsed
    return cls(**kwargs)
