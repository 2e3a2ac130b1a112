"""Does a run resumed from a carry checkpoint stay within seed spread of the uninterrupted run?

A carry checkpoint (:func:`otgen.training.loop.save_carry`) is lossy: parameters in bfloat16, Adam's
second moment in 8 log-quantised bits, its first moment dropped (beta1 = 0.5). This trains PacGAN's
Stacked-MNIST GAN (``IMAGE_PRESETS["stacked"]``, the run ``otgen reproduce --suite images`` carries across
machines) three ways, all in this process, and scores each at the end as the report does (modes and
KL over the classifier's mode histogram, ``--n-samples`` draws):

A  seed 0, ``--steps`` uninterrupted;
B  seed 0, stopped at ``--steps / 2``, written as a carry, the exact checkpoint deleted, resumed to ``--steps``;
C  seed 1, ``--steps`` uninterrupted (the seed spread B is measured against);
D  seed 0, resumed at ``--steps / 2`` from the exact checkpoint with every parameter moved by one float32
   ulp: the smallest perturbation a float32 state can have, i.e. what *any* inexact resume (another
   machine's summation order, say) does to the run.

It also prints how far the carried state is from the exact one at the resume step (relative L2 per
group), how far A's parameters moved over the second half, and how far B and D end from A: if B ends no
farther than D, the carry's loss of precision is lost in the training's own sensitivity to its state::

    nice python scripts/carry_check.py --steps 400 --data-dir ../shared/data/mnist --out runs/carry_check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from otgen.checkpoint import load_pytree
from otgen.data import load
from otgen.eval.stacked import evaluate_stacked
from otgen.training import GANConfig
from otgen.training.loop import CARRY_NAME, CHECKPOINT_NAME, load_gan, save_carry, save_gan, train_gan


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(tree)])


def _rel(a, b) -> float:
    a, b = _flat(a), _flat(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def _score(result, n: int, data_dir) -> dict:
    x = np.asarray(result.sample(jax.random.key(123), n))
    images = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    m = evaluate_stacked(images, data_dir=data_dir)
    hist = result.history
    tail = {k: float(np.mean(v[-5:])) for k, v in hist.items() if k != "step"}
    return {"modes_covered": m["modes_covered"], "kl_uniform": m["kl_uniform"], **tail}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--n-samples", type=int, default=10_000)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None, help="first N training images (default all 128,000)")
    p.add_argument("--out", default="runs/carry_check")
    args = p.parse_args()
    if args.steps < 2 or args.steps % 2:
        raise SystemExit("--steps must be an even number >= 2")
    out = Path(args.out)
    data = load("stacked", "train", args.data_dir, n=args.limit).astype(np.float32) / 255.0
    half = args.steps // 2

    def cfg(seed, steps):
        return GANConfig.for_mnist("gan", preset="stacked", steps=steps, seed=seed, sample_shape=(28, 28, 3))

    t0 = time.perf_counter()
    runs = {}
    for d in ("A", "B", "C", "D"):
        shutil.rmtree(out / d, ignore_errors=True)
    a_state_half = train_gan(cfg(0, half), data, out / "A", checkpoint_every=half, progress=False).state
    for d in ("B", "D"):  # their first half is A's (same seed)
        (out / d).mkdir(parents=True)
        shutil.copyfile(out / "A" / CHECKPOINT_NAME, out / d / CHECKPOINT_NAME)
    runs["A"] = train_gan(cfg(0, args.steps), data, out / "A", resume=True, checkpoint_every=half, progress=False)
    carry = save_carry(out / "B", cfg(0, half))
    full_mb = os.path.getsize(out / "B" / CHECKPOINT_NAME) / 1e6
    carry_mb = os.path.getsize(carry) / 1e6
    (out / "B" / CHECKPOINT_NAME).unlink()
    carried_state, _ = load_pytree(out / "B" / CARRY_NAME, like=a_state_half)
    runs["B"] = train_gan(cfg(0, args.steps), data, out / "B", resume=True, checkpoint_every=half, progress=False)
    runs["C"] = train_gan(cfg(1, args.steps), data, out / "C", checkpoint_every=args.steps, progress=False)
    nudged = load_gan(out / "D", cfg(0, half))
    up = lambda tree: jax.tree_util.tree_map(lambda x: np.nextafter(np.asarray(x), np.float32(np.inf)), tree)  # noqa: E731
    save_gan(dataclasses.replace(nudged, state=nudged.state.replace(g_params=up(nudged.state.g_params),
                                                        d_params=up(nudged.state.d_params))), out / "D")
    runs["D"] = train_gan(cfg(0, args.steps), data, out / "D", resume=True, checkpoint_every=half, progress=False)

    report = {"steps": args.steps, "carried_at": half, "checkpoint_mb": full_mb, "carry_mb": carry_mb,
              "carry_error_at_resume": {g: _rel(getattr(a_state_half, g), getattr(carried_state, g))
                                        for g in ("g_params", "d_params", "g_opt", "d_opt")},
              "A_moved_second_half": {g: _rel(getattr(a_state_half, g), getattr(runs["A"].state, g))
                                      for g in ("g_params", "d_params")},
              "B_vs_A_at_end": {g: _rel(getattr(runs["A"].state, g), getattr(runs["B"].state, g))
                                for g in ("g_params", "d_params")},
              "D_vs_A_at_end": {g: _rel(getattr(runs["A"].state, g), getattr(runs["D"].state, g))
                                for g in ("g_params", "d_params")},
              "B_carried": load_pytree(out / "B" / CHECKPOINT_NAME)[1].get("carried"),
              "scores": {k: _score(r, args.n_samples, args.data_dir) for k, r in runs.items()},
              "seconds": time.perf_counter() - t0}
    (out / "carry_check.json").write_text(json.dumps(report, indent=1))
    print(f"# carry check: Stacked-MNIST GAN, {args.steps} iterations, carried at {half}; "
          f"checkpoint {full_mb:.1f} MB -> carry {carry_mb:.1f} MB")
    print("relative L2 error of the carried state at the resume step: " +
          ", ".join(f"{k} {v:.2e}" for k, v in report["carry_error_at_resume"].items()))
    print("A's parameters moved over the second half: " +
          ", ".join(f"{k} {v:.2e}" for k, v in report["A_moved_second_half"].items()))
    print("B's distance from A at the end: " + ", ".join(f"{k} {v:.2e}" for k, v in report["B_vs_A_at_end"].items()))
    print("D's (one ulp) distance from A at the end: " +
          ", ".join(f"{k} {v:.2e}" for k, v in report["D_vs_A_at_end"].items()))
    print("\n| run | modes | KL | d_loss | g_loss |\n|---|---|---|---|---|")
    for k, s in report["scores"].items():
        label = {"A": "A seed 0, uninterrupted", "B": f"B seed 0, carried at {half}", "C": "C seed 1, uninterrupted",
                 "D": f"D seed 0, one ulp at {half}"}[k]
        print(f"| {label} | {s['modes_covered']} | {s['kl_uniform']:.3f} | {s['d_loss']:.3f} | {s['g_loss']:.3f} |")
    print(f"\n({report['seconds']:.0f} s; written {out / 'carry_check.json'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
