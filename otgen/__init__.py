"""otgen: optimal-transport generative modelling in JAX."""

__version__ = "0.1.0"
