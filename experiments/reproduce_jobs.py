"""The reproduction queue of ``otgen reproduce``: which jobs, in what order, at which preset, in which run directory.

Toy jobs (``--suite toy``) are (toy, model, seed) triples over :data:`DISTS` and :data:`JOBS`, each in its
own run directory ``<runs_dir>/<toy>_<model>_s<seed>`` (:func:`run_dir`); image jobs (``--suite images``)
are the (dataset, model) pairs of :data:`IMAGE_JOBS`, configured by :func:`image_config`.  How a job runs
is :mod:`experiments.reproduce`'s; how its run directory is read back,
:mod:`experiments.reproduce_collect`'s.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DISTS", "JOBS", "IMAGE_JOBS", "IMAGE_REFERENCE_PRESET", "IMAGE_DATASETS", "IMAGE_MODELS", "jobs",
           "run_dir", "image_config"]


DISTS = ("ring8", "grid25")
# Queue order: the Table-1 rows first, then WGAN-GP in its own setting, then the rest.
JOBS = ("gan", "pacgan2", "pacgan4", "wgan-gp", "aeot", "pacgan3", "wgan")
# Image jobs (``--suite images``): (dataset, model) in queue order.  AE-OT is each dataset's reference row,
# in ``otgen mnist``'s quick preset (its own autoencoder and OT map; ~8 min on MNIST here), queued before
# the GANs it is the yardstick for (the MNIST bar: a GAN FID within 3x of AE-OT's).
IMAGE_JOBS = (("mnist", "aeot"), ("mnist", "gan"), ("stacked", "aeot"), ("stacked", "gan"), ("stacked", "pacgan2"))
IMAGE_REFERENCE_PRESET = "quick"
IMAGE_DATASETS = tuple(dict.fromkeys(d for d, _ in IMAGE_JOBS))
IMAGE_MODELS = tuple(dict.fromkeys(m for _, m in IMAGE_JOBS))


def jobs(models=JOBS, dists=DISTS, seeds=(0,)) -> list[tuple[str, str, int]]:
    """(dist, model, seed) in queue order: seed-major, then model, then toy."""
    return [(d, m, s) for s in seeds for m in models for d in dists]


def run_dir(runs_dir: Path, dist: str, model: str, seed: int) -> Path:
    return Path(runs_dir) / f"{dist}_{model}_s{seed}"


def image_config(runs_dir: Path, dataset: str, model: str, seed: int, data_dir=None, progress: bool = False):
    """The ``otgen mnist`` configuration of one image job: ``--preset paper`` for a GAN (its authors'
    budget), :data:`IMAGE_REFERENCE_PRESET` for AE-OT's reference row."""
    from otgen.pipelines.mnist import make_config  # imports JAX: loaded on use (see experiments.reproduce)

    preset = IMAGE_REFERENCE_PRESET if model == "aeot" else "paper"
    return make_config(preset, model=model, dataset=dataset, seed=seed, data_dir=data_dir, progress=progress,
                       out=str(run_dir(runs_dir, dataset, model, seed)))
