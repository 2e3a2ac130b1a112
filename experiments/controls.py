"""The control rows of every report, scored by the models' own :func:`otgen.eval.evaluate`.

* toys: *real* (fresh draws of the toy) and *replay* (the training set resampled);
* MNIST / Stacked: *real* (MNIST's control half of the test set, :data:`otgen.eval.mnist.REAL_CONTROL`; Stacked: 26,000 fresh stacked
  draws, :func:`run_stacked_reference`), *replay* (training images resampled) and
  *reconstructions* (AE-OT's decoded training codes, with their code-space novelty).

A metric the replay wins cannot tell generating from copying; the reports name such metrics.
Image controls are cached in ``<runs_dir>/<dataset>/controls/<name>/metrics.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from experiments.report_toy import CONTROLS

__all__ = ["toy_controls", "MNIST_CONTROLS", "run_mnist_controls", "run_stacked_reference"]


def _get_toy(name: str):
    from otgen.data import toys

    return toys.get(name)


def toy_controls(dist: str, seed: int, train: np.ndarray, n: int, get_toy: Callable[[str], Any] = _get_toy) -> list[dict]:
    """The two control rows of a (toy, seed), scored by the models' own function:
    *real* (fresh draws of the toy) and *replay* (the training set resampled with replacement)."""
    from otgen.eval import evaluate
    from otgen.pipelines.toy import held_out_set

    toy = get_toy(dist)
    held = held_out_set(toy, seed, n)
    real = held_out_set(toy, seed, n, stream=2)
    replay = train[np.random.default_rng(seed).integers(0, len(train), n)]
    return [{"model": name, "dist": dist, "seed": seed, "status": "ok",
             **evaluate("toy", x, toy=toy, train=train, held_out=held, seed=seed)}
            for name, x in zip(CONTROLS, (real, replay))]


MNIST_CONTROLS = ("real", "replay", "reconstructions")
def run_mnist_controls(runs_dir: Path, data_dir, n: int, aeot_cfg=None, log=print,
                       dataset: str = "mnist") -> list[dict]:
    """The control rows of an image report, scored by the models' own evaluation; cached under
    ``<runs_dir>/<dataset>/controls/<name>/metrics.json``.

    *real* (MNIST only; Stacked's real row is :func:`run_stacked_reference`): the control half of the
    test set (the other half is the FID reference and the novelty metrics' held-out set); *replay*: ``n`` training images
    drawn with replacement; *reconstructions*: ``n`` training codes of the AE-OT run ``aeot_cfg``
    decoded by its autoencoder (what decoding the training codes scores), with their code-space novelty.
    """
    from otgen.rundir import RunDir

    from otgen.eval import evaluate

    out = []
    for name in MNIST_CONTROLS:
        if name == "real" and dataset == "stacked":
            continue
        if name == "reconstructions" and (aeot_cfg is None or not (Path(aeot_cfg.out) / "latents.npy").exists()):
            continue
        rd = RunDir(Path(runs_dir) / dataset / "controls" / name)
        if not rd.has("metrics.json"):
            log(f"{dataset}: scoring the {name} control ...")
            extra = {}
            if name == "real":
                from otgen.data.mnist import load_mnist
                from otgen.eval.mnist import REAL_CONTROL

                images = load_mnist("test", data_dir, dataset=dataset)[0][REAL_CONTROL]
            elif name == "replay":
                from otgen.data import load

                train = load(dataset, "train", data_dir)
                images = train[np.random.default_rng(0).integers(0, len(train), n)]
            else:
                from otgen.pipelines.mnist import replay_reconstructions

                images, extra = replay_reconstructions(aeot_cfg, n)
            rd.write_json("metrics.json", {**evaluate(dataset, images, data_dir=data_dir), **extra})
        out.append({"model": name, "seed": 0, "status": "ok", **rd.read_json("metrics.json")})
    return out


def run_stacked_reference(runs_dir: Path, data_dir, seeds: list[int], log=print) -> list[dict]:
    """Score 26,000 real Stacked-MNIST images per seed (the metric's ceiling); cached in run dirs."""
    import jax

    from otgen.data.mnist import load_mnist
    from otgen.data.stacked import N_SAMPLES, make_stacked_mnist
    from otgen.eval import evaluate
    from otgen.eval.stacked import stacked_mode_metrics
    from otgen.rundir import RunDir

    out = []
    for seed in seeds:
        rd = RunDir(Path(runs_dir) / "stacked" / "data" / f"seed{seed}")
        if not rd.has("metrics.json"):
            log(f"stacked: scoring 26,000 real stacked digits (seed {seed}) ...")
            t0 = time.perf_counter()
            x, y = load_mnist("train", data_dir)
            imgs, modes = make_stacked_mnist(x, y, N_SAMPLES, jax.random.key(seed))
            m = evaluate("stacked", imgs, data_dir=data_dir)
            truth = stacked_mode_metrics(modes)
            m.update(true_modes_covered=truth["modes_covered"], true_kl_uniform=truth["kl_uniform"],
                     wall_seconds=round(time.perf_counter() - t0, 2))
            rd.write_json("metrics.json", m)
        out.append({"seed": seed, **rd.read_json("metrics.json")})
    return out
