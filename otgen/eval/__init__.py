"""Evaluation: mode coverage on 2D mixtures, MNIST class coverage / FID, Stacked MNIST.

Submodules are imported on demand (``otgen.eval.modes`` is numpy-only and cheap;
the MNIST metrics pull in flax).
"""

from otgen.eval.modes import assign_to_modes, kl_divergence, mode_coverage, mode_coverage_for_toy

__all__ = ["assign_to_modes", "kl_divergence", "mode_coverage", "mode_coverage_for_toy"]
