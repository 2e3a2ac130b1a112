"""What the chunked training loops share (the GANs' :func:`~otgen.training.loop.train_gan` and
:meth:`otgen.generators.flow.Flow.fit`): the learning curve's evaluation steps and the progress bar.

Both loops run their steps in jitted chunks, stop on a non-finite loss and save on Ctrl-C; what a chunk
holds and when each checkpoints differ (a GAN's chunk ends fall on multiples of ``log_every`` and
``checkpoint_every``, a flow draws its pairs outside the jitted chunk), so only these two pieces are common.
"""

from __future__ import annotations

from tqdm.auto import tqdm

__all__ = ["curve_steps", "progress_bar"]


def curve_steps(total: int) -> tuple[int, ...]:
    """Log-spaced evaluation steps 1k, 3k, 10k, 30k, ... below ``total``, and ``total`` itself."""
    marks = [m * 10 ** e for e in range(3, 9) for m in (1, 2, 3, 5)]
    return tuple(s for s in marks if s < total) + ((int(total),) if total > 0 else ())


def progress_bar(desc: str, total: int, done: int, enabled: bool) -> tqdm:
    """A bar over ``total`` steps starting at ``done``; with ``enabled`` it shows only on a terminal."""
    return tqdm(total=total, initial=min(done, total), desc=desc, disable=None if enabled else True,
                dynamic_ncols=True, leave=False)
