"""Evaluation: one :func:`evaluate` for every suite, models and control rows alike.

The record is a flat, JSON-serialisable dict (its fields depend on the suite;
reports index it by name), computed once per run and stored as the run's
``metrics.json``; reports only read records.  Submodules are imported on demand
(``otgen.eval.modes`` is numpy-only and cheap; the MNIST metrics pull in flax).
"""

from __future__ import annotations

from typing import Any

from otgen.eval.modes import assign_to_modes, kl_divergence, mode_coverage, mode_coverage_for_toy

__all__ = ["SUITES", "evaluate", "image_curve_point", "assign_to_modes", "kl_divergence", "mode_coverage",
           "mode_coverage_for_toy"]

SUITES = ("toy", "mnist", "fashion", "stacked")


def evaluate(suite: str, samples, *, toy=None, train=None, held_out=None, seed: int = 0,
             data_dir=None) -> dict[str, Any]:
    """The metrics record of ``samples`` in ``suite``.

    * ``toy``: :func:`otgen.eval.toy.evaluate_toy` (``toy`` object or None for user data,
      ``train`` set, ``held_out`` draw, ``seed``): modes, HQ, KL, spread, W2, novelty.
    * ``mnist`` / ``fashion``: :func:`otgen.eval.mnist.evaluate_digits` with the dataset's own
      classifier (classes, KL, FID, precision / recall, feature-space novelty against the
      training images).
    * ``stacked``: :func:`otgen.eval.stacked.evaluate_stacked` (modes, KL over 1,000 triples).
    """
    if suite == "toy":
        from otgen.eval.toy import evaluate_toy

        if train is None:
            raise ValueError("a toy record needs the training set (train=...) for its novelty metrics")
        return evaluate_toy(samples, toy, train, held_out, seed=seed)
    if suite in ("mnist", "fashion"):
        from otgen.eval.mnist import evaluate_digits

        return evaluate_digits(samples, data_dir=data_dir, dataset=suite)
    if suite == "stacked":
        from otgen.eval.stacked import evaluate_stacked

        return evaluate_stacked(samples, data_dir=data_dir)
    raise ValueError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")


def image_curve_point(suite: str, images, *, data_dir=None) -> dict[str, Any]:
    """The few fields of :func:`evaluate` a learning curve tracks, without its costly extras
    (precision / recall, novelty): ``mnist`` / ``fashion``: classes covered, KL to uniform, FID,
    mean classifier confidence; ``stacked``: modes covered, KL.  Same code and classifier as
    :func:`evaluate`, so a curve's last point equals the final record's fields on the same images."""
    if suite in ("mnist", "fashion"):
        from otgen.eval.mnist import evaluate_digits

        out = evaluate_digits(images, data_dir=data_dir, dataset=suite, pr_k=None, novelty=False)
        return {k: out[k] for k in ("classes_covered", "kl_uniform", "fid", "mean_confidence", "fid_reference")}
    if suite == "stacked":
        from otgen.eval.stacked import evaluate_stacked

        out = evaluate_stacked(images, data_dir=data_dir)
        return {k: out[k] for k in ("modes_covered", "kl_uniform", "max_mode_fraction")}
    raise ValueError(f"image suites are mnist, fashion, stacked; got {suite!r}")
