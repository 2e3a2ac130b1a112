"""How often is a Stacked MNIST training code's nearest code another mode?  Measured, not assumed.

Any sampler that moves a code towards its neighbours (AE-OT's interpolation, manifold Parzen windows)
blends the digit triples of those neighbours; if most neighbours are other modes, the decoded blends
are ambiguous triples, and the mode histogram (KL to uniform) suffers whatever the OT map's accuracy.
Printed, for random training codes of an ``otgen mnist --dataset stacked`` run: the share whose nearest
other training code (Euclidean, the codes as stored) is the same mode, the same share over the 15
nearest, and how many of the three digits the nearest code shares.

    python scripts/stacked_neighbour_modes.py runs/stacked_ot1200 --data-dir DATA_DIR
"""

import argparse
import json
from pathlib import Path

import numpy as np

from otgen.data.stacked import load_stacked


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="an otgen mnist --dataset stacked run directory (its latents.npy)")
    p.add_argument("--data-dir", default=None, help="the MNIST IDX files (as otgen mnist)")
    p.add_argument("--queries", type=int, default=3000, help="training codes whose neighbours are looked up")
    p.add_argument("--neighbours", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run = Path(args.run_dir)
    stored = json.loads((run / "config.json").read_text())["config"]
    if stored.get("dataset") != "stacked":
        raise SystemExit(f"{run}: not a Stacked MNIST run (dataset {stored.get('dataset')!r})")
    z = np.load(run / "latents.npy").astype(np.float64)
    _, modes = load_stacked("train", args.data_dir)
    if len(modes) != len(z):
        raise SystemExit(f"{run}: {len(z)} codes but {len(modes)} Stacked training images")
    q = np.random.default_rng(args.seed).choice(len(z), min(args.queries, len(z)), replace=False)
    sq = np.sum(z * z, axis=1)
    dist = sq[q, None] - 2.0 * z[q] @ z.T + sq[None, :]
    dist[np.arange(len(q)), q] = np.inf  # not its own neighbour
    nn = np.argpartition(dist, args.neighbours, axis=1)[:, :args.neighbours]
    nn = np.take_along_axis(nn, np.argsort(np.take_along_axis(dist, nn, axis=1), axis=1), axis=1)
    digits = lambda m: np.stack([m // 100, (m // 10) % 10, m % 10], axis=-1)  # noqa: E731
    shared = np.sum(digits(modes[nn[:, 0]]) == digits(modes[q]), axis=1)
    print(f"{run}: {len(q)} training codes of {len(z)} (d = {z.shape[1]})")
    print(f"nearest code the same mode: {np.mean(modes[nn[:, 0]] == modes[q]):.3f}")
    print(f"{args.neighbours} nearest codes the same mode: {np.mean(modes[nn] == modes[q][:, None]):.3f}")
    print("digits shared with the nearest code (0 / 1 / 2 / 3): "
          + " / ".join(f"{f:.3f}" for f in np.bincount(shared, minlength=4) / len(q)))


if __name__ == "__main__":
    main()
