"""The GAN training loop, :func:`train_gan`, and its checkpoints (:func:`save_gan`, :func:`load_gan`).

Usage::

    cfg = GANConfig.for_toy(model="pacgan2", steps=10_000, seed=0)
    result = train_gan(cfg, data, run_dir, resume=False, checkpoint_every=1000)
    samples = result.sample(jax.random.key(1), 2500)

The jitted chunks of :func:`otgen.training.steps.make_chunk_runner` run in the one training loop,
:func:`otgen.training.driver.drive` (chunk ends on multiples of ``log_every`` and ``checkpoint_every``
and on the learning curve's steps, so checkpoints land on the same steps in a resumed and an
uninterrupted run).  A checkpoint
(``checkpoint.npz``, :mod:`otgen.checkpoint`) holds the whole :class:`~otgen.training.steps.GANState`
with the configuration, data fingerprint, loss history, learning curve and training time in its
metadata; it is refused for another model, configuration (``steps`` aside) or data set.

A *carry* checkpoint (``carry.npz``, :func:`save_carry`) is the compact form a run commits to git to
continue on another machine: parameters in bfloat16, Adam's second moment log-quantised to 8 bits, its
first moment in 4 bits where ``beta1 <= 0.5`` (it halves every step: rebuilt in a few) and 8 otherwise,
everything else exact -- ~5x smaller.  A resume finds ``checkpoint.npz`` first and ``carry.npz`` otherwise; the steps
at which a run was resumed from a carry are kept in its metadata (``carried``), since from there on it is
not bit for bit the uninterrupted run (``scripts/carry_check.py`` measures how far it moves).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from otgen.checkpoint import (CheckpointError, array_fingerprint, check_training_metadata, load_metadata, load_pytree,
                              save_pytree)
from otgen.rundir import RunDir
from otgen.training.config import GANConfig
from otgen.training.driver import drive, kept_checkpoint
from otgen.training.sampling import GANResult
from otgen.training.steps import GANState, init_state, make_chunk_runner

__all__ = ["TrainingDivergedError", "train_gan", "load_gan", "save_gan", "save_carry", "carry_codec", "CHECKPOINT_NAME",
           "CARRY_NAME", "LOSS_PLOT_NAME"]

CHECKPOINT_NAME = "checkpoint.npz"
CARRY_NAME = "carry.npz"
LOSS_PLOT_NAME = "loss.png"
_CHECKPOINT_KIND = "otgen-gan-state-v1"


class TrainingDivergedError(FloatingPointError):
    """A loss (or a parameter) became NaN or infinite; training stopped without writing a checkpoint."""


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves))


def _validate_data(cfg: GANConfig, data) -> np.ndarray:
    x = np.asarray(data)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"training data must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if cfg.image and x.ndim == 3:
        x = x[..., None]
    if x.ndim < 2 or tuple(x.shape[1:]) != cfg.sample_shape:
        raise ValueError(f"training data must have shape (n, {', '.join(map(str, cfg.sample_shape))}), "
                         f"got {x.shape}")
    if x.shape[0] < 1:
        raise ValueError("training data is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("training data contains NaN or infinite values")
    if cfg.image and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"image data must lie in [0, 1] (the range the generators' samples are clipped to), "
                         f"got range [{x.min():g}, {x.max():g}]")
    return x


def _data_scale(cfg: GANConfig, x: np.ndarray) -> float:
    """The standard deviation the data is divided by (1 unless ``cfg.standardize``)."""
    if not cfg.standardize:
        return 1.0
    scale = float(np.sqrt(np.mean(np.var(x.reshape(len(x), -1), axis=0, dtype=np.float64))))
    if not scale > 0:
        raise ValueError("cannot standardise training data with zero variance")
    return scale


def _metadata(cfg: GANConfig, step: int, data_digest: str, history: dict, curve: list, scale: float,
              seconds: float = 0.0, carried: list | None = None) -> dict:
    meta = {"kind": _CHECKPOINT_KIND, "model": cfg.model, "config": cfg.compatibility_dict(),
            "step": int(step), "data": data_digest, "history": history, "curve": curve, "data_scale": scale,
            "seconds": float(seconds)}
    if carried:
        meta["carried"] = carried
    return meta


def _check_compatible(path: Path, meta: dict, cfg: GANConfig, data_digest: str | None) -> None:
    if meta.get("kind") == _CHECKPOINT_KIND and meta.get("model") != cfg.model:
        raise CheckpointError(f"{path} was written by model {meta.get('model')!r}, not {cfg.model!r}; "
                              "use another run directory (otgen toy: --overwrite)")
    check_training_metadata(path, meta, kind=_CHECKPOINT_KIND, what="GAN training", config=cfg.compatibility_dict(),
                            data_digest=data_digest)


def _restore(path: Path, cfg: GANConfig, data_digest: str | None) -> tuple[GANState, dict, dict]:
    _, meta = load_pytree(path)
    _check_compatible(path, meta, cfg, data_digest)
    state, _ = load_pytree(path, like=init_state(cfg))
    state = jax.tree_util.tree_map(jnp.asarray, state)
    history = {k: [int(v) if k == "step" else float(v) for v in vals]
               for k, vals in meta.get("history", {}).items()}
    return state, history, meta


def resume_path(run: RunDir) -> Path:
    """The checkpoint a resume reads: of the exact one and the carry, the one further on (the exact one on a
    tie); the exact one's path where neither exists."""
    full, carry = run.file(CHECKPOINT_NAME), run.file(CARRY_NAME)
    if not carry.exists():
        return full
    if not full.exists():
        return carry
    return carry if load_metadata(carry).get("step", 0) > load_metadata(full).get("step", 0) else full


def load_gan(run_dir: str | Path, cfg: GANConfig) -> GANResult:
    """The :class:`GANResult` stored in ``run_dir``'s checkpoint, or its carry checkpoint where it has no
    exact one (refused if ``cfg`` differs)."""
    state, history, meta = _restore(resume_path(RunDir(run_dir)), cfg, None)
    return GANResult(cfg, state, history, data_scale=float(meta.get("data_scale", 1.0)),
                     curve=tuple(meta.get("curve", ())), data_digest=str(meta.get("data", "")),
                     total_seconds=float(meta.get("seconds", 0.0)))


def save_gan(result: GANResult, run_dir: str | Path) -> Path:
    """``result`` as ``run_dir``'s checkpoint (what :func:`load_gan` and a resumed training read)."""
    path = RunDir(run_dir).file(CHECKPOINT_NAME)
    return save_pytree(path, result.state, metadata=_result_metadata(result))


def _result_metadata(result: GANResult, carried: list | None = None) -> dict:
    return _metadata(result.config, int(result.state.step), result.data_digest, result.history,
                     list(result.curve), result.data_scale, result.total_seconds, carried)


def carry_codec(cfg: GANConfig):
    """The :mod:`otgen.codecs` codec of each leaf of a carry checkpoint: ``(key_path, array) -> name``."""
    def codec(path: str, arr) -> str:
        if arr.dtype != np.float32 or arr.size < 1024:  # counters, keys, biases: exact, they cost nothing
            return "exact"
        if path.startswith((".g_params", ".d_params")):
            return "bf16"
        if path.endswith("mu") or ".mu[" in path or ".mu." in path:
            return "int4" if cfg.optimizer == "adam" and cfg.beta1 <= 0.5 else "int8"
        if ".nu" in path:
            return "log8"
        return "exact"
    return codec


def save_carry(run_dir: str | Path, cfg: GANConfig, to: str | Path | None = None) -> Path:
    """Write ``run_dir``'s exact checkpoint again as its compact carry checkpoint (module docstring), to
    ``run_dir/carry.npz`` or the path ``to``; returns its path. The carry records the steps of the carries it
    descends from."""
    run = RunDir(run_dir)
    full = run.file(CHECKPOINT_NAME)
    if not full.exists():
        raise CheckpointError(f"{full} does not exist: nothing to carry")
    state, history, meta = _restore(full, cfg, None)
    result = GANResult(cfg, state, history, data_scale=float(meta.get("data_scale", 1.0)),
                       curve=tuple(meta.get("curve", ())), data_digest=str(meta.get("data", "")),
                       total_seconds=float(meta.get("seconds", 0.0)))
    return save_pytree(run.file(CARRY_NAME) if to is None else Path(to), state,
                       metadata=_result_metadata(result, meta.get("carried")), codecs=carry_codec(cfg))


def _diverged(cfg: GANConfig, step: int, metrics: dict, last_saved: int | None) -> TrainingDivergedError:
    losses = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    return TrainingDivergedError(
        f"{cfg.model}: non-finite loss at step {step} ({losses}); training stopped and {kept_checkpoint(last_saved)}. "
        f"Try a smaller learning rate (lr={cfg.lr:g}) or check the data scale.")


def train_gan(cfg: GANConfig, data, run_dir: str | Path | None, resume: bool = False,
              checkpoint_every: int = 1000, progress: bool = True, evaluate=None,
              eval_steps: tuple[int, ...] = (), key: jax.Array | None = None) -> GANResult:
    """Train ``cfg.model`` on ``data`` for ``cfg.steps`` generator updates.

    Writes ``checkpoint.npz`` into ``run_dir`` every ``checkpoint_every`` steps and
    at the end (atomic, pickle-free, with the config in its metadata), and
    ``loss.png``.  With ``resume=True`` an existing checkpoint is continued --
    refused (:class:`~otgen.checkpoint.CheckpointError`) if it comes from another
    model, configuration (``steps`` aside: the budget may be extended) or data
    set.  A non-finite loss raises :class:`TrainingDivergedError` before any
    checkpoint of the bad state is written.  Ctrl-C saves the last completed chunk.

    Learning curve: at every step of ``eval_steps`` (e.g. :func:`curve_steps`)
    ``evaluate(result) -> dict`` is called on the :class:`GANResult` of that
    moment and ``{"step": s, **record}`` is appended to ``result.curve``; a
    checkpoint is written at the same step, so the record can be recomputed from
    it.  The curve travels in the checkpoint and survives a resume.

    ``key`` seeds a fresh start (default ``jax.random.key(cfg.seed)``); ``run_dir=None`` trains
    in memory (no checkpoint, no figure).
    """
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    from otgen.plotting import loss_curves  # matplotlib only when training

    x = _validate_data(cfg, data)
    digest = array_fingerprint(x)
    scale = _data_scale(cfg, x)
    run = None if run_dir is None else RunDir(run_dir)
    ckpt = None if run is None else run.file(CHECKPOINT_NAME)

    state, history, curve, last_saved, before, carried = None, {}, [], None, 0.0, []
    source = None if run is None else resume_path(run)
    if resume and source is not None and source.exists():
        state, history, meta = _restore(source, cfg, digest)
        curve = [dict(r) for r in meta.get("curve", [])]
        last_saved = int(state.step)
        before = float(meta.get("seconds", 0.0))  # training time of the earlier calls
        carried = list(meta.get("carried", []))
        if source.name == CARRY_NAME:  # from here on not bit for bit the uninterrupted run: say where
            carried.append({"step": last_saved})
    if state is None:
        state = init_state(cfg, key)
    step = int(state.step)

    def save(s, at):
        nonlocal last_saved, seconds
        if not bool(_all_finite((s.g_params, s.g_stats, s.d_params))):
            raise _diverged(cfg, at, {"parameters": float("nan")}, last_saved)
        last_saved, seconds = at, time.perf_counter() - t0  # the time a resume will continue from
        if ckpt is not None:
            save_pytree(ckpt, s, metadata=_metadata(cfg, at, digest, history, curve, scale, before + seconds,
                                                    carried))

    def result(s, seconds=0.0):
        return GANResult(cfg, s, history, seconds, data_scale=scale, curve=tuple(curve), data_digest=digest,
                         total_seconds=before + seconds)

    run_chunk = make_chunk_runner(cfg)
    data_dev = jnp.asarray(x / np.float32(scale) if scale != 1.0 else x)
    t0, seconds = time.perf_counter(), 0.0
    state = drive(state, step, cfg.steps, lambda s, _, n: run_chunk(s, data_dev, n), save=save,
                  diverged=lambda at, metrics, saved: _diverged(cfg, at, metrics, saved), log_every=cfg.log_every,
                  checkpoint_every=checkpoint_every, history=history, last_saved=last_saved, curve=curve,
                  eval_steps=eval_steps, evaluate=None if evaluate is None else lambda s: evaluate(result(s)),
                  name=cfg.model, progress=progress)
    if history and run is not None:
        loss_curves({k: v for k, v in history.items()}, run.file(LOSS_PLOT_NAME),
                    title=f"{cfg.model} losses (mean per {cfg.log_every} steps)")
    return result(state, seconds)

