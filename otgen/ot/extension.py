"""AE-OT's extended semi-discrete map: new points without crossing singular facets.

The semi-discrete map ``x -> y_{cell(x)}`` only ever returns the targets (a
generator built on it memorises).  AE-OT (An, Guo, Lei, Luo, Yau, Gu, ICLR 2020)
extends it piecewise-linearly: the barycentre ``c_i`` of each cell is mapped to
``y_i`` and the map is interpolated linearly between neighbouring cells -- but
never across a *singular* facet, where the dihedral angle between the two
supporting planes ``z = <x, y_i> + h_i`` (normals ``(y_i, -1)``) is large.  Those
facets are where the true OT map jumps between modes; interpolating across them
is exactly what spills a continuous generator's samples into the gaps.

Two rules decide which neighbours are interpolated with: the *angle* rule below
(the paper's test, on standardised targets) and the *spacing* rule of
:mod:`otgen.ot.spacing` (threshold and noise in units of the targets' own
nearest-neighbour spacing; never outputs a target; ``otgen mnist``'s default).

What otgen does with the angle rule (and why it differs from the reference code, pyOMT):

* Neighbours of a source sample ``x`` are the cells of its ``top_k`` best scores
  (tiled, no ``N x K`` matrix): its own cell ``i`` and the cells just across its
  nearest facets.  Default ``k = min(d + 2, 20)``: one more than a simplex's
  ``d + 1`` vertices (a spare for a singular or degenerate neighbour: on grid25
  it keeps HQ at 98.6% against 97.2% with ``d + 1``), capped at pyOMT's 20 for
  100-d latents.
* A neighbour ``j`` is *regular* when the angle between the unit normals
  ``(y, -1)/|(y, -1)|`` of cells ``i`` and ``j`` is strictly below
  ``angle_threshold``.  The angle is measured on *standardised* targets
  (centred, divided by their RMS distance to the mean), so the threshold does not
  depend on the scale or position of the codes (pyOMT's does).
* The map is the piecewise-linear one over the simplex of neighbouring
  barycentres: ``x - c_i`` is written in the edge vectors ``c_j - c_i`` to the
  regular neighbours, ``x - c_i = sum_j b_j (c_j - c_i)`` (least squares, minimum
  norm, a 1e-6 relative ridge), and ``T(x) = y_i + sum_j b_j (y_j - y_i)``.  With
  exactly ``d`` regular neighbours the ``b_j`` are the barycentric coordinates of
  ``x`` in the simplex ``(c_i, c_j, ...)``: the paper's map (An et al. triangulate
  the barycentres, infeasible beyond a few dimensions; the local simplex of the
  sample's own nearest facets is the same construction made local).  With more
  neighbours it is the least-squares affine map of the cell's regular star.  At
  ``c_i`` the map returns ``y_i``; the coefficients are not clipped, so the image
  of a cell spreads around ``y_i`` instead of piling up on it.  Only its reach is
  bounded: ``|T(x) - y_i|`` is at most the longest regular edge ``|y_j - y_i|``, so
  a sample far from every barycentre (a Gaussian source's tail, a flat simplex)
  lands on the edge of its target's star, not far outside the data -- unbounded,
  generated 4-d codes reached 1.2 code ranges beyond the training codes.  (An earlier
  version projected onto each edge separately and clipped the weights to
  [0, 1]: ~6% of the samples on ring8 / grid25 were then training points --
  :mod:`otgen.eval.novelty` flagged it as copying, C_T ~ -4.4.  pyOMT uses one
  neighbour and a fixed weight 0.75, or a uniform random weight in 2-D.)
* :meth:`ExtendedMap.generate` returns exactly ``n`` points, each the image of a
  fresh source sample; none of the training targets is appended to the output.
  A sample whose cell has no regular neighbour (or that sits at its barycentre)
  maps to ``y_i`` itself, so ``angle_threshold = 0`` recovers the pure
  semi-discrete map.

Barycentres are estimated once by Monte Carlo (randomised QMC where the source
offers it) in :func:`extend`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from otgen.ot.brenier import BrenierMap
from otgen.ot.measures import sample_batches
from otgen.ot.spacing import DEFAULT_BUDGET, SpacingRule, jittered, regular_by_spacing, spacing_rule

__all__ = ["ExtendedMap", "extend", "cell_barycentres", "unit_normals", "dihedral_angle",
           "default_top_k", "DEFAULT_ANGLE_THRESHOLD", "RULES"]

RULES = ("spacing", "angle")

# Radians, on standardised targets.  Measured on the 2-D toys (tests/test_extension.py): any two
# points of one mode of ring8 / grid25 meet at < 0.1 (max 0.084), points of different modes at
# >= 0.2 (min 0.23 on grid25, 0.49 on ring8); neighbouring cells inside a mode at ~0.02.  High-dimensional codes need a larger value (the
# MNIST presets set their own; see otgen/pipelines/mnist.py).
DEFAULT_ANGLE_THRESHOLD = 0.1


def default_top_k(num_targets: int, dim: int) -> int:
    """``min(d + 2, 20)`` neighbour candidates (a simplex's vertices and a spare; pyOMT uses 20 at d = 100),
    at most K."""
    return int(max(1, min(num_targets, dim + 2, 20)))


def standardise(targets) -> tuple[np.ndarray, np.ndarray, float]:
    """``(targets - mean) / rms`` with ``rms = sqrt(mean |y - mean|^2)``; returns (standardised, mean, rms)."""
    y = np.asarray(targets, np.float64)
    mean = y.mean(axis=0)
    rms = float(np.sqrt(np.mean(np.sum((y - mean) ** 2, axis=1))))
    if not rms > 0:
        rms = 1.0  # a single target (or all equal): nothing to standardise
    return ((y - mean) / rms).astype(np.float32), mean.astype(np.float32), rms


def unit_normals(targets) -> jax.Array:
    """Unit normals ``(y, -1) / |(y, -1)|`` (K, d+1) of the supporting planes ``z = <x, y> + h``."""
    y = jnp.asarray(targets, jnp.float32)
    n = jnp.concatenate([y, -jnp.ones((y.shape[0], 1), y.dtype)], axis=1)
    return n / jnp.linalg.norm(n, axis=1, keepdims=True)


def _angle_between_unit(a, b):
    # 2 asin(|a - b| / 2) is accurate for small angles, where arccos(a . b) loses all digits.
    return 2.0 * jnp.arcsin(jnp.clip(0.5 * jnp.linalg.norm(a - b, axis=-1), 0.0, 1.0))


def dihedral_angle(y_i, y_j) -> jax.Array:
    """Angle (radians) between the supporting planes of targets ``y_i`` and ``y_j`` (broadcasts over rows).

    The planes ``z = <x, y> + h`` have normals ``(y, -1)``; the heights ``h`` do not
    enter.  Identical targets give 0.
    """
    yi = jnp.atleast_2d(jnp.asarray(y_i, jnp.float32))
    yj = jnp.atleast_2d(jnp.asarray(y_j, jnp.float32))
    yi, yj = jnp.broadcast_arrays(yi, yj)
    ni, nj = unit_normals(yi), unit_normals(yj)
    return _angle_between_unit(ni, nj)


def cell_barycentres(bmap: BrenierMap, key: jax.Array, num_samples: int, *,
                     batch: int = 1 << 16, progress: bool | None = None) -> tuple[jax.Array, jax.Array]:
    """Monte-Carlo barycentres (K, d) of the power cells under the source, and sample counts (K,).

    Uses randomised QMC when the source offers it.  Cells that received no
    sample get the barycentre of all samples and count 0 (callers treat them as
    having no regular neighbour).
    """
    src = bmap._require_source()
    num_samples = int(num_samples)
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    k, d = bmap.num_targets, bmap.dim
    sums = jnp.zeros((k, d), jnp.float32)
    counts = jnp.zeros((k,), jnp.int32)
    from tqdm.auto import tqdm

    batches = sample_batches(src, key, num_samples, batch, qmc=hasattr(src, "qmc_sample"))
    for x in tqdm(batches, total=-(-num_samples // batch), desc="cell barycentres", leave=False,
                  disable=None if progress is None or progress else True):
        idx = bmap.assign(x)
        sums = sums + jax.ops.segment_sum(x, idx, num_segments=k)
        counts = counts + jnp.bincount(idx, length=k)
    overall = jnp.sum(sums, axis=0) / jnp.maximum(jnp.sum(counts), 1)
    bary = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], overall[None, :])
    return bary, counts


@jax.jit
def _regular_by_angle(idx, normals, threshold):
    """pyOMT-style test: a neighbour is regular when the planes' dihedral angle is below ``threshold``."""
    angle = _angle_between_unit(normals[idx[:, :1]], normals[idx[:, 1:]])
    return angle < threshold


@jax.jit
def _pl_images(x, idx, targets, bary, regular, spread):
    """Piecewise-linear images of ``x`` (n, d) given its top-k cells ``idx`` (n, k) and which of the
    neighbours (n, k-1) may be interpolated with; the step from the own target is scaled by ``spread``.
    Also returns whether each image moved off its target."""
    i, nbrs = idx[:, 0], idx[:, 1:]
    ci = bary[i]  # (n, d)
    dc = jnp.where(regular[..., None], bary[nbrs] - ci[:, None, :], 0.0)  # (n, k-1, d) edges
    # minimum-norm least squares x - c_i = dc^T b: b = (dc dc^T + ridge)^-1 dc (x - c_i);
    # the (k-1) x (k-1) Gram system stays small even for 100-d codes
    gram = jnp.einsum("nkd,nld->nkl", dc, dc)
    size = jnp.trace(gram, axis1=1, axis2=2) / jnp.maximum(jnp.sum(regular, axis=1), 1)
    ridge = 1e-6 * jnp.maximum(size, 1e-30)[:, None, None] * jnp.eye(gram.shape[-1], dtype=gram.dtype)
    rhs = jnp.einsum("nkd,nd->nk", dc, x - ci)
    b = jnp.where(regular, jnp.linalg.solve(gram + ridge, rhs[..., None])[..., 0], 0.0)
    yi = targets[i]
    edges = targets[nbrs] - yi[:, None, :]
    step = spread * jnp.einsum("nk,nkd->nd", b, edges)
    # A sample far from every barycentre (a Gaussian source's tail, an ill-conditioned simplex) would
    # be extrapolated without bound: its image moves at most the longest regular edge from its target.
    reach = jnp.max(jnp.where(regular, jnp.linalg.norm(edges, axis=-1), 0.0), axis=1)
    length = jnp.linalg.norm(step, axis=1)
    step = step * jnp.minimum(1.0, reach / jnp.maximum(length, 1e-30))[:, None]
    return yi + step, jnp.any(b != 0, axis=1) & (length > 0)


@jax.jit
def _code_neighbours_where_none(idx, regular, neighbours):
    """Rows of ``idx`` whose cell has no admissible neighbour among its top-k cells in the source take
    their target's nearest admissible targets instead (``neighbours``, -1 padded), so the sample moves
    within its own target's admissible neighbourhood instead of being redrawn (a redraw would move the
    cell's mass, which OT balanced, to other cells)."""
    own = idx[:, :1]
    alt = neighbours[idx[:, 0]]  # (n, k-1)
    none = ~jnp.any(regular, axis=1, keepdims=True)
    new_idx = jnp.where(none, jnp.where(alt >= 0, alt, own), idx[:, 1:])
    return jnp.concatenate([own, new_idx], axis=1), jnp.where(none, alt >= 0, regular)


class ExtendedMap(NamedTuple):
    """A fitted :class:`BrenierMap` with AE-OT's piecewise-linear extension.

    Build with :func:`extend`.  ``__call__(x)`` maps source points; ``generate(key, n)``
    draws fresh source points and maps them.  Two rules decide which neighbouring cells
    are interpolated with: ``spacing_rule`` (a :class:`~otgen.ot.spacing.SpacingRule`: the
    codes' own resolution, see :mod:`otgen.ot.spacing`) or, when it is None, the dihedral
    angle below ``angle_threshold`` (the AE-OT paper's test).
    """

    bmap: BrenierMap
    barycentres: jax.Array  # (K, d) cell barycentres in source space
    counts: jax.Array  # (K,) source samples per cell used for the barycentres
    normals: jax.Array  # (K, d+1) unit normals of the standardised targets' planes
    angle_threshold: float = DEFAULT_ANGLE_THRESHOLD
    top_k: int = 2
    spacing_rule: SpacingRule | None = None

    @property
    def targets(self) -> jax.Array:
        return self.bmap.targets

    @property
    def rule(self) -> str:
        return "angle" if self.spacing_rule is None else "spacing"

    def metric_targets(self) -> jax.Array:
        """Targets in the frame distances are measured in (the spacing rule's metric)."""
        return jnp.asarray(self.bmap.targets) @ jnp.asarray(self.spacing_rule.metric)

    def admissible(self, i, j) -> np.ndarray:
        """Whether the rule interpolates between targets ``i`` and ``j`` (index arrays): the facets it
        refuses are the map's singular set as the extension sees it."""
        idx = jnp.stack([jnp.asarray(i, jnp.int32), jnp.asarray(j, jnp.int32)], axis=1)
        if self.spacing_rule is None:
            return np.asarray(_regular_by_angle(idx, self.normals, self.angle_threshold))[:, 0]
        return np.asarray(regular_by_spacing(idx, self.metric_targets(), self.spacing_rule.radius))[:, 0]

    def neighbour_angles(self, x) -> tuple[jax.Array, jax.Array]:
        """For each row of ``x``: its top-k cells (n, k) and the dihedral angle (n, k-1) from
        its own cell to each other one (the quantity the threshold is compared with)."""
        _, idx = self.bmap.top_k(x, self.top_k)
        return idx, _angle_between_unit(self.normals[idx[:, :1]], self.normals[idx[:, 1:]])

    def map_with_info(self, x, *, key: jax.Array | None = None, chunk: int = 8192) -> tuple[jax.Array, jax.Array]:
        """``(T(x), interpolated)``: images (n, d) and whether each is a new point (n,) bool.

        Under the spacing rule (which needs ``key`` for its jitter) a point counts as new only if
        it moved off its target *and* its nearest target is an admissible neighbour of its own (no
        landing across a singular facet)."""
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 2 or x.shape[1] != self.bmap.dim:
            raise ValueError(f"x must have shape (n, {self.bmap.dim}), got {x.shape}")
        if self.top_k < 2:  # no neighbours to interpolate with: the semi-discrete map itself
            return self.bmap(x), jnp.zeros(x.shape[0], bool)
        has_bary = self.counts > 0
        rule = self.spacing_rule
        ym = None if rule is None else self.metric_targets()
        if rule is not None and key is None:
            raise ValueError("the spacing rule's map draws a jitter: pass key=")
        out, moved = [], []
        for s in range(0, x.shape[0], chunk):
            xc = x[s:s + chunk]
            _, idx = self.bmap.top_k(xc, self.top_k)
            if rule is None:
                regular, spread = _regular_by_angle(idx, self.normals, jnp.float32(self.angle_threshold)), 1.0
            else:
                regular, spread = regular_by_spacing(idx, ym, jnp.float32(rule.radius)), rule.spread
            if rule is not None and rule.neighbours is not None:
                idx, regular = _code_neighbours_where_none(idx, regular & has_bary[idx[:, 1:]],
                                                           jnp.asarray(rule.neighbours))
            regular = regular & has_bary[idx[:, :1]] & has_bary[idx[:, 1:]]
            z, m = _pl_images(xc, idx, self.bmap.targets, self.barycentres, regular, jnp.float32(spread))
            if rule is not None:
                z, m = jittered(jax.random.fold_in(key, s), z, m, idx, regular, self.bmap.targets, ym, rule)
            out.append(z)
            moved.append(m)
        return jnp.concatenate(out), jnp.concatenate(moved)

    def __call__(self, x, *, key: jax.Array | None = None) -> jax.Array:
        """The extended (piecewise-linear, still discontinuous at singular facets) map of source points."""
        return self.map_with_info(x, key=key)[0]

    def generate(self, key: jax.Array, n: int) -> jax.Array:
        """Exactly ``n`` new points (deterministic in ``key``); see :meth:`generate_with_info`."""
        return self.generate_with_info(key, n)[0]

    def generate_with_info(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """``n`` points and, per point, whether it was interpolated (False: a target itself).

        Angle rule: the images of ``n`` fresh i.i.d. source samples (a sample with no regular
        neighbour returns its target).  Spacing rule: images of fresh source samples, a sample
        whose image is not a new point (see :meth:`map_with_info`) redrawn, so every output is
        interpolated and none is a training target."""
        n = int(n)
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        src = self.bmap._require_source()
        if self.spacing_rule is None:
            return self.map_with_info(src.sample(key, n))
        kept, got, drawn = [], 0, 0
        accept = max(self.spacing_rule.acceptance, 0.05)
        while got < n:
            if drawn > 20 * n / accept:
                raise RuntimeError(f"the spacing rule kept {got} of {drawn} source samples (expected "
                                   f"{accept:.0%}); the extension does not fit this map")
            key, sub = jax.random.split(key)
            m = int(min(max(1.2 * (n - got) / accept, 256), 1 << 18))
            k_x, k_j = jax.random.split(sub)
            z, ok = self.map_with_info(src.sample(k_x, m), key=k_j)
            z = np.asarray(z)[np.asarray(ok)]
            kept.append(z)
            got += len(z)
            drawn += m
        z = jnp.asarray(np.concatenate(kept)[:n])
        return z, jnp.ones(n, bool)

    def with_threshold(self, angle_threshold: float) -> "ExtendedMap":
        """The same extension with another angle threshold (no re-estimation needed)."""
        return self._replace(angle_threshold=_check_threshold(angle_threshold))


def _check_threshold(angle_threshold) -> float:
    a = float(angle_threshold)
    if not (0.0 <= a <= math.pi):
        raise ValueError(f"angle_threshold must be in [0, pi] radians, got {angle_threshold!r}")
    return a


def extend(bmap: BrenierMap, key: jax.Array, *, rule: str = "angle", angle_threshold: float = DEFAULT_ANGLE_THRESHOLD,
           top_k: int | None = None, num_samples: int | None = None, progress: bool | None = None,
           metric=None, budget: float = DEFAULT_BUDGET, kappa: float | None = None,
           spread: float = 1.0, jitter: float | None = None, noise: str = "local", reference=None) -> ExtendedMap:
    """Build AE-OT's extension of a fitted map: estimate cell barycentres, then set up its rule.

    Args:
      bmap: a fitted :class:`BrenierMap` with a source measure.
      key: PRNG key for the barycentre estimate (and the spacing rule's calibration).
      rule: ``"angle"`` (the AE-OT paper's dihedral-angle test, ``angle_threshold``) or
        ``"spacing"`` (:mod:`otgen.ot.spacing`: ``metric``, ``budget``, ``kappa``, ``spread``, ``jitter``,
        ``noise``).
      angle_threshold: radians, on standardised targets; neighbours whose planes meet at
        a smaller angle are interpolated with, others never (0: the pure semi-discrete map).
      top_k: neighbour candidates per sample, including its own cell (default
        :func:`default_top_k`); 1 also gives the pure semi-discrete map.
      num_samples: source samples for the barycentres (default 16 per cell, between
        2^16 and 2^20: 1M samples cost ~100 s for 60,000 codes in 16-d on 2 CPU cores).
      progress: a bar over the barycentre batches (None: when stderr is a terminal).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    threshold = _check_threshold(angle_threshold)
    k = default_top_k(bmap.num_targets, bmap.dim) if top_k is None else int(top_k)
    if not 1 <= k <= bmap.num_targets:
        raise ValueError(f"top_k must be between 1 and the number of targets ({bmap.num_targets}), got {top_k}")
    if num_samples is None:
        num_samples = int(np.clip(16 * bmap.num_targets, 1 << 16, 1 << 20))
    k_bary, k_rule = jax.random.split(key)
    bary, counts = cell_barycentres(bmap, k_bary, num_samples, progress=progress)
    y_std, _, _ = standardise(bmap.targets)
    ext = ExtendedMap(bmap, bary, counts, unit_normals(y_std), threshold, k)
    if rule == "spacing":
        ext = spacing_rule(ext, k_rule, metric=metric, budget=budget, kappa=kappa, spread=spread, jitter=jitter,
                           noise=noise, reference=reference)
    return ext
