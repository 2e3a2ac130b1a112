"""otgen: optimal-transport generative modelling in JAX.

The user-facing names, imported on first use (``import otgen`` stays instant)::

    import otgen
    x = otgen.load_dataset("ring8", "train", n=2000, seed=0)
    gen = otgen.make_generator("aeot", "toy", shape=(2,)).fit(x, jax.random.key(0))
    record = otgen.evaluate("toy", gen.sample(jax.random.key(1), 2500), toy=..., train=x, held_out=...)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> (module, attribute)
_EXPORTS = {
    "Generator": ("otgen.generators", "Generator"),
    "make_generator": ("otgen.generators", "make"),
    "AEOT": ("otgen.generators.aeot", "AEOT"),
    "GAN": ("otgen.generators.gan", "GAN"),
    "load_dataset": ("otgen.data", "load"),
    "evaluate": ("otgen.eval", "evaluate"),
    "SemiDiscreteOT": ("otgen.ot", "SemiDiscreteOT"),
    "BrenierMap": ("otgen.ot", "BrenierMap"),
    "Gaussian": ("otgen.ot", "Gaussian"),
    "UniformBox": ("otgen.ot", "UniformBox"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'otgen' has no attribute {name!r}")
