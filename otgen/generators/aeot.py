"""The AE-OT generator (the only AE-OT pipeline): encode, solve semi-discrete OT onto the
codes, extend, decode.

    model = AEOT(encoder, decoder, ot=OTOptions(...), extension=ExtensionOptions(...))
    model.fit(data, key, workdir)  # codes -> (optional whitening) -> SemiDiscreteOT -> ExtendedMap
    x_new = model.sample(key, n)   # n fresh source samples -> extended map -> unwhiten -> decoder

In 2-D the encoder and decoder are the identity (the default); the image
experiment passes its trained autoencoder's and calls :meth:`AEOT.fit_codes`
on the codes it has cached.  With a ``workdir`` each stage's result is saved
there as it is made (``whitening.npz``, ``brenier.npz``, ``extension.npz``, all
atomic and pickle-free) and found again by the next fit, so a killed fit
resumes at the first missing stage.  This module knows nothing of networks:
``encoder``/``decoder`` are plain functions of arrays.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from otgen.checkpoint import CheckpointError, array_fingerprint, load_pytree, save_pytree
from otgen.ot import BrenierMap, Gaussian, SemiDiscreteOT, UniformBox, aeot_recipe, damped_newton, averaged_sgd, sharding
from otgen.ot.extension import DEFAULT_ANGLE_THRESHOLD, RULES, ExtendedMap, extend
from otgen.ot.exact import why_not_exact
from otgen.ot.spacing import DEFAULT_BUDGET, NOISES, SpacingRule, admissible_neighbours, spacing_rule
from otgen.generators.whitening import Whitening, fit_whitening

INIT_KINDS = ("auto", "discrete", "multiscale", "voronoi", "zero")
OPTIMIZERS = ("auto", "newton", "averaged", "aeot")

__all__ = ["AEOT", "OTOptions", "ExtensionOptions", "Whitening", "fit_whitening", "solve_latent_ot", "identity",
           "WHITENING_FILE", "MAP_FILE", "EXTENSION_FILE"]

_EXTENSION_FORMAT = "otgen-extension-v1"
# The files a fit leaves in its workdir, in the order they are made.
WHITENING_FILE, MAP_FILE, EXTENSION_FILE = "whitening.npz", "brenier.npz", "extension.npz"


def identity(x):
    return x


@dataclasses.dataclass(frozen=True)
class OTOptions:
    """How the latent OT problem is set up and solved (see :mod:`otgen.ot`)."""

    source: str = "uniform"  # "uniform" (unit cube, as AE-OT) or "gaussian" (standard normal)
    whiten: bool = True  # solve on PCA-whitened codes placed on the source's support (see fit_whitening)
    optimizer: str = "auto"  # "auto" (the solver's default: damped Newton for small K or d <= 4,
    #                          averaged SGD on chi2 above), "newton", "averaged" or "aeot" (pyOMT's Adam)
    tol: float = 0.02  # stop at estimated error <= tol (L1; chi2 for the averaged optimizer)
    max_steps: int | None = None  # None: the optimizer's own cap
    batch_size: int | None = None  # Monte-Carlo samples per step (optimizer default if None)
    lr: float = 2e-2  # aeot recipe only
    init_h: str = "auto"  # the solver's start: "auto" (the optimizer's default), or force "discrete",
    #                       "multiscale", "voronoi" or "zero" (otgen.ot.warm_start)
    sampling: str = "rqmc"  # aeot recipe only: "rqmc", "sobol" (pyOMT) or "iid"
    time_budget: float | None = None  # seconds; the fit stops there (and says so) if not converged
    metric: str | None = None  # what tol bounds: "l1", "chi2" or None (the optimizer's own)

    def __post_init__(self):
        if self.source not in ("uniform", "gaussian"):
            raise ValueError(f"source must be 'uniform' or 'gaussian', got {self.source!r}")
        if self.init_h not in INIT_KINDS:
            raise ValueError(f"init_h must be one of {', '.join(INIT_KINDS)}, got {self.init_h!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.sampling not in ("rqmc", "sobol", "iid"):
            raise ValueError(f"sampling must be 'rqmc', 'sobol' or 'iid', got {self.sampling!r}")
        if not self.tol > 0 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError(f"need tol > 0 and max_steps >= 1, got {self.tol}, {self.max_steps}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be a positive number of seconds, got {self.time_budget}")

    def measure(self, dim: int):
        return Gaussian(dim=dim) if self.source == "gaussian" else UniformBox(dim=dim)

    def make_optimizer(self, solver: SemiDiscreteOT):
        """The optimizer ``fit`` gets; None (the default "auto" with its default start, where the exact
        2-D path applies) lets ``fit`` take that path (:mod:`otgen.ot.exact`)."""
        if self.optimizer == "auto" and self.init_h == "auto" and why_not_exact(solver.source, solver.targets) is None:
            return None
        steps = {"max_steps": self.max_steps} if self.max_steps else {}  # else the optimizer's own cap
        if self.optimizer == "aeot":
            return aeot_recipe(lr=self.lr, batch_size=self.batch_size or 65536, **steps,
                               init_h="zero" if self.init_h == "auto" else self.init_h, sampling=self.sampling)
        opt = {"auto": solver.default_optimizer, "newton": damped_newton,
               "averaged": averaged_sgd}[self.optimizer]()
        start = {"init_h": self.init_h} if self.init_h != "auto" else {}
        return dataclasses.replace(opt, **start, **steps)


@dataclasses.dataclass(frozen=True)
class ExtensionOptions:
    """AE-OT's extended generation (see :mod:`otgen.ot.extension` and :mod:`otgen.ot.spacing`)."""

    rule: str = "spacing"  # "spacing" (the codes' own resolution) or "angle" (the paper's dihedral angle)
    angle_threshold: float = DEFAULT_ANGLE_THRESHOLD  # angle rule: radians, on standardised codes
    top_k: int | None = None  # neighbour candidates incl. the own cell (None: min(d + 2, 20))
    num_samples: int | None = None  # source samples for the cell barycentres (None: 16 per cell)
    budget: float = DEFAULT_BUDGET  # spacing rule: fraction of codes left with no admissible neighbour
    jitter: float | None = None  # spacing rule: noise scale relative to the local covariance (None: calibrated)
    noise: str = "local"  # spacing rule: "local" (the codes' local covariance) or "edges" (along admissible edges)

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if not 0.0 <= self.budget < 1.0:
            raise ValueError(f"budget must be in [0, 1), got {self.budget}")
        if self.jitter is not None and not self.jitter >= 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")
        if self.noise not in NOISES:
            raise ValueError(f"noise must be one of {', '.join(NOISES)}, got {self.noise!r}")

    def matches(self, rule: SpacingRule | None) -> bool:
        """Whether a saved extension's rule is the one these options ask for."""
        if self.rule == "angle":
            return rule is None
        return (rule is not None and rule.budget == self.budget and rule.noise == self.noise
                and (self.jitter is None or rule.jitter == self.jitter))


def merge_duplicates(z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Repeated rows of ``z`` merged into one target carrying their summed weight.

    Returns ``(targets, weights)``; ``weights`` is None (uniform) when every row is distinct.
    Data with repeated points are normal (rounded measurements, a replayed set); one
    power cell per distinct point is what the semi-discrete problem needs.
    """
    unique, first, counts = np.unique(z, axis=0, return_index=True, return_counts=True)
    if len(unique) == len(z):
        return z, None
    order = np.argsort(first)  # keep the rows' first-appearance order
    return unique[order], (counts[order] / len(z)).astype(np.float64)


def solve_latent_ot(codes, ot: OTOptions, key: jax.Array, *,
                    progress: bool | None = None) -> tuple[Whitening, BrenierMap]:
    """Semi-discrete OT from ``ot``'s source onto (whitened) ``codes`` (K, d): returns (whitening, map).

    The solver's start is ``ot.init_h`` (default "auto": see :mod:`otgen.ot.warm_start`).
    Repeated codes become one target with their summed weight (:func:`merge_duplicates`), so
    the map may have fewer targets than ``codes`` has rows.
    """
    z = np.asarray(codes)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"codes must have shape (K, d) with K >= 2, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("codes contain NaN or inf")
    whitening = fit_whitening(z, ot.source) if ot.whiten else Whitening.identity(z.shape[1])
    targets, weights = merge_duplicates(whitening.apply(z))
    # pyOMT's learning rates are tuned in the codes' own frame: the recipe solves there.  Monte-Carlo samples
    # are spread over every local device (one per core under the CLI: the same samples and cell counts as
    # one device, 1.40x faster on 2 cores); where the exact 2-D / 3-D path applies it runs on one.
    measure = ot.measure(z.shape[1])
    mesh = None if why_not_exact(measure, targets) is None else sharding.default_mesh()
    solver = SemiDiscreteOT(measure, targets, weights, normalise=ot.optimizer != "aeot", mesh=mesh)
    bmap = solver.fit(key, tol=ot.tol, batch_size=ot.batch_size, optimizer=ot.make_optimizer(solver),
                      max_steps=ot.max_steps, progress=progress, time_budget=ot.time_budget, metric=ot.metric)
    return whitening, bmap


_RULE_ARRAYS = ("metric",)


def rule_key(fit_key: jax.Array) -> jax.Array:
    """The key :meth:`AEOT.fit_codes` (given ``fit_key``) sets the extension's rule up with."""
    return jax.random.split(jax.random.split(fit_key)[1])[1]


def set_rule(ext: ExtendedMap, opts: ExtensionOptions, whitening: Whitening, key: jax.Array) -> ExtendedMap:
    """``ext`` (its barycentres kept) with the rule ``opts`` asks for: the angle rule, or the spacing rule
    set up and calibrated with ``key`` in the codes' own frame (``whitening``'s inverse)."""
    if opts.rule == "angle":
        return ext._replace(spacing_rule=None)
    return spacing_rule(ext, key, metric=whitening.unproj, budget=opts.budget, jitter=opts.jitter, noise=opts.noise)


def _save_extension(path, ext: ExtendedMap, codes_digest: str) -> None:
    arrays = {"barycentres": np.asarray(ext.barycentres), "counts": np.asarray(ext.counts),
              "normals": np.asarray(ext.normals)}
    meta = {"format": _EXTENSION_FORMAT, "angle_threshold": float(ext.angle_threshold), "top_k": int(ext.top_k),
            "codes": codes_digest, "rule": ext.rule}
    if ext.spacing_rule is not None:
        arrays.update({f"rule_{k}": np.asarray(getattr(ext.spacing_rule, k)) for k in _RULE_ARRAYS})
        if ext.spacing_rule.neighbours is not None:
            arrays["rule_neighbours"] = np.asarray(ext.spacing_rule.neighbours, np.int32)
        if ext.spacing_rule.local is not None:
            arrays["rule_local"] = np.asarray(ext.spacing_rule.local, np.int32)
        meta["spacing_rule"] = ext.spacing_rule.as_dict()
    save_pytree(path, arrays, meta)


def _load_extension(path, bmap: BrenierMap) -> tuple[ExtendedMap, dict]:
    flat, meta = load_pytree(path)
    if meta.get("format") != _EXTENSION_FORMAT:
        raise CheckpointError(f"{path} is not a saved AE-OT extension (format {meta.get('format')!r})")
    try:
        bary, counts, normals = (jnp.asarray(flat[f"['{k}']"]) for k in ("barycentres", "counts", "normals"))
    except KeyError as e:
        raise CheckpointError(f"{path}: missing array {e}") from None
    k, d = bmap.num_targets, bmap.dim
    if bary.shape != (k, d) or counts.shape != (k,) or normals.shape != (k, d + 1):
        raise CheckpointError(f"{path}: shapes {bary.shape}, {counts.shape}, {normals.shape} do not fit "
                              f"the map's {k} targets in dimension {d}")
    rule = None
    if meta.get("rule", "angle") == "spacing":  # files written before the rule existed hold the angle rule
        try:
            arrays = {k: np.asarray(flat[f"['rule_{k}']"], np.float32) for k in _RULE_ARRAYS}
            rule = SpacingRule(**arrays, **{k: float(v) for k, v in meta["spacing_rule"].items()})
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: incomplete spacing rule ({e})") from None
        if arrays["metric"].shape != (d, d):
            raise CheckpointError(f"{path}: the spacing rule's arrays do not fit the map")
        if "['rule_neighbours']" in flat:
            nbrs = np.asarray(flat["['rule_neighbours']"], np.int32)
            if nbrs.ndim != 2 or nbrs.shape[0] != k or nbrs.min(initial=0) < -1 or nbrs.max(initial=0) >= k:
                raise CheckpointError(f"{path}: the spacing rule's neighbours do not fit the map's {k} targets")
        else:  # written before the rule kept them: recomputed from the targets (deterministic)
            nbrs = admissible_neighbours(np.asarray(bmap.targets, np.float32) @ arrays["metric"], rule.radius,
                                         int(meta["top_k"]) - 1)
        local = None  # files written before the local noise existed hold the edge noise
        if "['rule_local']" in flat:
            local = np.asarray(flat["['rule_local']"], np.int32)
            if local.ndim != 2 or local.shape[0] != k or local.min(initial=0) < 0 or local.max(initial=0) >= k:
                raise CheckpointError(f"{path}: the spacing rule's local neighbours do not fit the map's {k} targets")
        rule = rule._replace(neighbours=nbrs, local=local)
    return ExtendedMap(bmap, bary, counts, normals, meta["angle_threshold"], meta["top_k"], rule), meta


class AEOT:
    """Autoencoder + semi-discrete OT + AE-OT extension, as one generator.

    Args:
      encoder, decoder: functions of arrays (identity by default: 2-D toys).
      ot: :class:`OTOptions`.  extension: :class:`ExtensionOptions`.
    After :meth:`fit` (or :meth:`fit_codes`, or :meth:`load`), ``.latent_map`` is the
    :class:`~otgen.ot.extension.ExtendedMap` and ``.whitening`` the code transform.
    """

    name = "aeot"

    def __init__(self, encoder: Callable = identity, decoder: Callable = identity, *,
                 ot: OTOptions = OTOptions(), extension: ExtensionOptions = ExtensionOptions()):
        self.encoder, self.decoder = encoder, decoder
        self.ot, self.extension = ot, extension
        self.latent_map: ExtendedMap | None = None
        self.whitening: Whitening | None = None
        self.resumed: tuple[str, ...] = ()  # the stages a fit found in its workdir instead of computing
        self.progress: bool | None = None  # progress bars of the solver (None: when on a terminal)
        self.codes_digest = ""  # fingerprint of the codes of the fit (written with the extension)

    def fit(self, data, key: jax.Array, workdir=None, *, progress: bool | None = None) -> "AEOT":
        """Encode ``data`` and fit the latent map onto the codes; returns ``self``."""
        return self.fit_codes(np.asarray(self.encoder(data)), key, workdir, progress=progress)

    def fit_codes(self, codes, key: jax.Array, workdir=None, *, progress: bool | None = None) -> "AEOT":
        """Solve OT from the source onto ``codes`` (K, d) and build the extension; returns ``self``.

        With ``workdir``, each stage's result is saved there and reused by a later fit on the
        same codes (a saved stage made from other codes is refused, naming the file).
        """
        progress = self.progress if progress is None else progress
        k_ot, k_ext = jax.random.split(key)
        k_bary, k_rule = jax.random.split(k_ext)  # k_rule: rule_key(key)
        z = np.asarray(codes, np.float32)
        digest = array_fingerprint(z)
        wd = None if workdir is None else Path(workdir)
        resumed = []
        if wd is not None and (wd / MAP_FILE).exists() and (wd / WHITENING_FILE).exists():
            self.whitening, bmap = Whitening.load(wd / WHITENING_FILE), BrenierMap.load(wd / MAP_FILE)
            if bmap.dim != z.shape[1] or bmap.num_targets > len(z):
                raise CheckpointError(f"{wd / MAP_FILE} maps onto {bmap.num_targets} targets in dimension "
                                      f"{bmap.dim}, not these {z.shape[0]} codes of dimension {z.shape[1]}; "
                                      "use another directory")
            resumed.append("fit-ot")
        else:
            self.whitening, bmap = solve_latent_ot(z, self.ot, k_ot, progress=progress)
            if wd is not None:
                wd.mkdir(parents=True, exist_ok=True)
                self.whitening.save(wd / WHITENING_FILE)
                bmap.save(wd / MAP_FILE)
        opts = self.extension
        if wd is not None and (wd / EXTENSION_FILE).exists():
            ext, meta = _load_extension(wd / EXTENSION_FILE, bmap)
            if meta.get("codes") != digest:
                raise CheckpointError(f"{wd / EXTENSION_FILE} was built on other codes; use another directory")
            # threshold and top-k change no estimate: the saved barycentres serve any of them
            ext = ext.with_threshold(opts.angle_threshold)
            ext = ext if opts.top_k is None else ext._replace(top_k=min(opts.top_k, bmap.num_targets))
            resumed.append("extend")
        else:
            top_k = None if opts.top_k is None else min(opts.top_k, bmap.num_targets)
            ext = extend(bmap, k_bary, angle_threshold=opts.angle_threshold, top_k=top_k,
                         num_samples=opts.num_samples, progress=progress)
        if not opts.matches(ext.spacing_rule):  # the rule is set (and calibrated) on the barycentres
            ext = set_rule(ext, opts, self.whitening, k_rule)
            if "extend" in resumed:
                resumed.remove("extend")
        if wd is not None and "extend" not in resumed:
            _save_extension(wd / EXTENSION_FILE, ext, digest)
        self.latent_map = ext
        self.resumed = tuple(resumed)
        self.codes_digest = digest
        return self

    def save(self, directory) -> None:
        """The fitted model's three files into ``directory`` (what :meth:`load` reads)."""
        ext = self._require_fit()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.whitening.save(d / WHITENING_FILE)
        ext.bmap.save(d / MAP_FILE)
        _save_extension(d / EXTENSION_FILE, ext, self.codes_digest)

    @classmethod
    def load(cls, directory, encoder: Callable = identity, decoder: Callable = identity, *,
             extension: ExtensionOptions | None = None) -> "AEOT":
        """A fitted model from ``directory`` (a fit's workdir or :meth:`save`'s output)."""
        d = Path(directory)
        for name in (WHITENING_FILE, MAP_FILE, EXTENSION_FILE):
            if not (d / name).exists():
                raise CheckpointError(f"{d / name} is missing: no fitted AE-OT model in {d}")
        model = cls(encoder, decoder)
        model.whitening = Whitening.load(d / WHITENING_FILE)
        model.latent_map, meta = _load_extension(d / EXTENSION_FILE, BrenierMap.load(d / MAP_FILE))
        model.codes_digest = str(meta.get("codes", ""))
        if extension is not None:
            if not extension.matches(model.latent_map.spacing_rule):
                raise CheckpointError(f"{d / EXTENSION_FILE} holds the {model.latent_map.rule} rule "
                                      f"({meta.get('spacing_rule')}), not the one asked for ({extension}); "
                                      "refit it (AEOT.fit_codes with this workdir recalibrates)")
            model.extension = extension
            model.latent_map = model.latent_map.with_threshold(extension.angle_threshold)
        return model

    def info(self) -> dict:
        """The fit's diagnostics as flat metrics (OT convergence, extension settings)."""
        ext = self._require_fit()
        diag = ext.bmap.diagnostics
        rule = {} if ext.spacing_rule is None else {**{f"rule_{k}": v for k, v in ext.spacing_rule.as_dict().items()},
                                                    "rule_noise": ext.spacing_rule.noise}
        return {**diag.as_metrics(), "ot_summary": diag.summary(), "top_k": int(ext.top_k),
                "angle_threshold": float(ext.angle_threshold), "rule": ext.rule, **rule}

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


def make(model: str, suite: str, *, shape: tuple[int, ...], preset: str = "default", steps: int | None = None,
         seed: int = 0, progress: bool = True, evaluate=None, ot: OTOptions | None = None,
         extension: ExtensionOptions | None = None, ot_tol: float | None = None,
         angle_threshold: float | None = None, top_k: int | None = None, rule: str | None = None,
         encoder: Callable = identity, decoder: Callable = identity) -> AEOT:
    """AE-OT with the default options, or ``ot`` / ``extension``, or the single settings given.

    ``steps`` caps the OT solver's steps.  ``evaluate`` is accepted for the protocol's sake and
    unused: the fit is one solve, with no learning curve to record.  ``seed`` and ``preset``
    play no part (the key passed to ``fit`` is the randomness; the presets are the suites').
    """
    del model, suite, shape, preset, seed, evaluate
    ot = ot or OTOptions()
    if ot_tol is not None or steps is not None:
        ot = dataclasses.replace(ot, **({"tol": ot_tol} if ot_tol is not None else {}),
                                 **({"max_steps": steps} if steps is not None else {}))
    extension = extension or ExtensionOptions()
    if angle_threshold is not None and rule is None:
        rule = "angle"  # a threshold given is the angle rule's
    given = {k: v for k, v in dict(angle_threshold=angle_threshold, top_k=top_k, rule=rule).items() if v is not None}
    if given:
        extension = dataclasses.replace(extension, **given)
    fresh = AEOT(encoder, decoder, ot=ot, extension=extension)
    fresh.progress = None if progress else False  # bars only on a terminal
    return fresh
