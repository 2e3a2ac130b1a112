"""How well does the dihedral-angle test separate digit classes?  (Chooses the MNIST angle threshold.)

    python scripts/mnist_angle_study.py --run-dir runs/mnist_quick --data-dir /path/to/mnist

For a finished ``fit-ot`` stage of ``otgen mnist`` (``brenier.npz`` over the codes of all training
images, in file order), draws source samples, takes each sample's top-k cells and prints, for a range
of thresholds, the fraction of neighbour pairs that are regular (interpolated across), the fraction of
samples with at least one regular neighbour, and how many regular pairs join codes of two different
digit classes (the training labels are used only here, never by the generator).
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from otgen.data.mnist import load_mnist
from otgen.ot import BrenierMap
from otgen.ot.extension import extend


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--thresholds", default="0.1,0.15,0.2,0.25,0.3,0.35,0.4,0.5,0.7")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    bmap = BrenierMap.load(f"{args.run_dir}/brenier.npz")
    _, labels = load_mnist("train", args.data_dir)
    if len(labels) != bmap.num_targets:
        print(f"error: {bmap.num_targets} codes but {len(labels)} training labels (was --limit used?)",
              file=sys.stderr)
        return 2
    k_ext, k_x = jax.random.split(jax.random.key(args.seed))
    ext = extend(bmap, k_ext, top_k=args.top_k)
    idx, angle = (np.asarray(a) for a in ext.neighbour_angles(bmap.source.sample(k_x, args.samples)))
    other_class = labels[idx[:, 1:]] != labels[idx[:, :1]]
    print(f"{args.samples} source samples, top-{args.top_k} cells; angle quantiles (10/50/90%): "
          f"{np.round(np.quantile(angle, [0.1, 0.5, 0.9]), 3).tolist()}; "
          f"other-class neighbours overall: {other_class.mean():.3f}")
    print("threshold  regular pairs  samples interpolated  other-class among regular")
    for th in (float(t) for t in args.thresholds.split(",")):
        reg = angle < th
        cross = other_class[reg].mean() if reg.any() else float("nan")
        print(f"{th:9.2f}  {reg.mean():13.3f}  {reg.any(axis=1).mean():20.3f}  {cross:25.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
