"""Generators: one protocol every model implements, one file per model family, one registry line
per model.

    gen = make("pacgan2", "toy", shape=(2,), seed=0)    # or "aeot", "wgan-gp", "sdfm", ...
    gen.fit(data, key, workdir)   # resumable: a workdir keeps what the fit has made so far
    x = gen.sample(key, n)
    gen.save(directory); type(gen).load(directory, ...)

``otgen toy``, ``otgen mnist`` and ``otgen compare`` reach models only through
:func:`make`; adding a model is one module with a ``make(model, suite, ...)``
function plus one line in :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Generator", "REGISTRY", "SUITES", "names", "make"]

SUITES = ("toy", "images")  # vectors (n, d) / images (n, 28, 28, C) in [0, 1]


@runtime_checkable
class Generator(Protocol):
    """What every model offers (``load`` is a classmethod of each implementation)."""

    name: str

    def fit(self, data, key, workdir=None) -> "Generator":
        """Train on ``data``; with ``workdir``, save progress there and resume from it."""

    def sample(self, key, n: int) -> np.ndarray:
        """``n`` new samples, deterministic in ``key``."""

    def save(self, directory) -> None:
        """Everything :meth:`load` needs, written atomically into ``directory``."""

    def info(self) -> dict[str, Any]:
        """Flat, JSON-serialisable facts about the fit (wall time, convergence, settings)."""


# model name -> the module whose make() builds it (imported only when used: the GAN code needs flax)
REGISTRY: dict[str, str] = {
    "aeot": "otgen.generators.aeot",
    "gan": "otgen.generators.gan",
    "wgan": "otgen.generators.gan",
    "wgan-gp": "otgen.generators.gan",
    "pacgan2": "otgen.generators.gan",
    "pacgan3": "otgen.generators.gan",
    "pacgan4": "otgen.generators.gan",
    "fm": "otgen.generators.flow",
    "otcfm": "otgen.generators.flow",
    "sdfm": "otgen.generators.flow",
}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def make(model: str, suite: str, *, shape: tuple[int, ...], preset: str = "default", steps: int | None = None,
         seed: int = 0, progress: bool = True, **options) -> Generator:
    """A fresh, unfitted ``model`` for ``suite`` with samples of ``shape``.

    ``preset`` names a row of the model's preset table, ``steps`` overrides its training
    budget; ``options`` are model-specific settings (``None`` values mean "the preset's") --
    one the model does not take is an error naming it.
    """
    if model not in REGISTRY:
        raise ValueError(f"unknown model {model!r}; models are {', '.join(REGISTRY)}")
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")
    module = importlib.import_module(REGISTRY[model])
    given = {k: v for k, v in options.items() if v is not None}
    return module.make(model, suite, shape=tuple(shape), preset=preset, steps=steps, seed=seed, progress=progress,
                       **given)
