"""The one training loop: :func:`drive` runs any model trained by steps (the GANs, the latent flows, the
decoder GAN) from a step function, and the pieces every caller shares (:func:`curve_steps`,
:func:`progress_bar`).

A model supplies ``advance(state, step, n) -> (state, metrics)``: ``n`` training steps from ``step``,
``metrics`` a dict of per-step values (each an array of ``n``).  The driver decides where chunks end --
on multiples of ``log_every`` and ``checkpoint_every`` and on the learning curve's steps, so a resumed run
checkpoints on the same steps as an uninterrupted one -- stops on the first non-finite metric before
that state is saved, keeps the loss history (each chunk's mean, one row per chunk), records the learning
curve, shows progress and saves on Ctrl-C.  What a checkpoint holds and how a divergence is reported
stay with the model (``save``, ``diverged``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

__all__ = ["curve_steps", "progress_bar", "drive", "kept_checkpoint"]


def curve_steps(total: int) -> tuple[int, ...]:
    """Log-spaced evaluation steps 1k, 2k, 3k, 5k, 10k, ... below ``total``, and ``total`` itself."""
    marks = [m * 10 ** e for e in range(3, 9) for m in (1, 2, 3, 5)]
    return tuple(s for s in marks if s < total) + ((int(total),) if total > 0 else ())


def progress_bar(desc: str, total: int, done: int, enabled: bool) -> tqdm:
    """A bar over ``total`` steps starting at ``done``; with ``enabled`` it shows only on a terminal."""
    return tqdm(total=total, initial=min(done, total), desc=desc, disable=None if enabled else True,
                dynamic_ncols=True, leave=False)


def kept_checkpoint(last_saved: int | None) -> str:
    """What a divergence leaves on disk, for the model's ``diverged`` message."""
    return f"the last checkpoint (step {last_saved}) is kept" if last_saved is not None else "no checkpoint was written"


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def drive(state: Any, start: int, total: int, advance: Callable[[Any, int, int], tuple[Any, dict]], *,
          save: Callable[[Any, int], None], diverged: Callable[[int, dict, int | None], Exception],
          log_every: int, checkpoint_every: int, history: dict, last_saved: int | None = None,
          curve: list | None = None, eval_steps=(), evaluate: Callable[[Any], dict] | None = None,
          name: str = "train", progress: bool = True) -> Any:
    """Train from step ``start`` to ``total``; returns the final state.

    ``save(state, step)`` writes a checkpoint: every ``checkpoint_every`` steps, after each curve
    evaluation (chunks also end on ``eval_steps`` when ``evaluate`` is None), at the end when the last save
    was earlier, and on Ctrl-C (then re-raised).  ``last_saved``: the step of the checkpoint the run resumed
    from (None when it starts fresh).  A non-finite metric
    raises ``diverged(step, metrics at that step, last_saved)``.  ``history`` (name -> list; ``"step"``: the
    chunk ends) and ``curve`` (``{"step": s, **evaluate(state)}`` at each of ``eval_steps``, skipped
    where the resumed curve has it already) are appended to in place.
    """
    if log_every < 1 or checkpoint_every < 1:
        raise ValueError(f"log_every and checkpoint_every must be >= 1, got {log_every}, {checkpoint_every}")
    curve = [] if curve is None else curve
    evals = sorted({int(s) for s in eval_steps if start < int(s) <= total})
    step = start
    bar = progress_bar(name, total, step, progress)
    try:
        while step < total:
            end = min(_next_multiple(step, log_every), _next_multiple(step, checkpoint_every),
                      next((e for e in evals if e > step), total), total)
            new_state, metrics = advance(state, step, end - step)
            metrics = {k: np.asarray(v).reshape(end - step) for k, v in metrics.items()}
            finite = np.all([np.isfinite(v) for v in metrics.values()], axis=0)
            if not finite.all():
                first = int(np.argmin(finite))
                raise diverged(step + first + 1, {k: float(v[first]) for k, v in metrics.items()}, last_saved)
            state, step = new_state, end
            history.setdefault("step", []).append(step)
            for k, v in metrics.items():
                history.setdefault(k, []).append(float(v.mean()))
            bar.update(end - bar.n)
            bar.set_postfix({k: f"{history[k][-1]:.4g}" for k in metrics})
            if evaluate is not None and step in evals and all(r["step"] != step for r in curve):
                curve.append({"step": step, **evaluate(state)})
                save(state, step)
                last_saved = step
            elif step % checkpoint_every == 0:
                save(state, step)
                last_saved = step
    except KeyboardInterrupt:
        if step > (last_saved or 0):
            save(state, step)
        raise
    finally:
        bar.close()
    if last_saved != step:
        save(state, step)
    return state
