"""How often is a training code's nearest code another mode (a class; a digit triple on Stacked MNIST)?

Any sampler that moves a code towards its neighbours (AE-OT's interpolation, manifold Parzen windows'
noise) blends the modes of those neighbours; where many neighbours are other modes, the decoded blends
are ambiguous, and the mode histogram (class KL) suffers whatever the OT map's accuracy.  Printed, for
random training codes of an ``otgen mnist`` run (MNIST, Fashion-MNIST or Stacked MNIST): the share whose
nearest other training code (Euclidean, the codes as stored) is the same mode, the same share over the
15 nearest; where the run has an AE-OT extension with the spacing rule, the share of its *admissible*
pairs (the cells it interpolates between) and of its local-noise neighbourhoods that stay within one
mode; on Stacked MNIST, how many of the three digits the nearest code shares.

    python scripts/code_neighbour_modes.py runs/stacked_ot1200 --data-dir DATA_DIR
"""

import argparse
import json
from pathlib import Path

import numpy as np

from otgen.data.mnist import load_mnist
from otgen.data.stacked import load_stacked


def _modes(dataset: str, data_dir) -> np.ndarray:
    if dataset == "stacked":
        return load_stacked("train", data_dir)[1]
    return load_mnist("train", data_dir, dataset=dataset)[1]


def _nearest(z: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """(len(q), k): the k nearest other codes of codes ``q``, nearest first (a block of queries at a time:
    3,000 x 128,000 distances at once are 3 GB)."""
    sq = np.sum(z * z, axis=1)
    dist = sq[q, None] - 2.0 * z[q] @ z.T + sq[None, :]
    dist[np.arange(len(q)), q] = np.inf  # not its own neighbour
    nn = np.argpartition(dist, k, axis=1)[:, :k]
    return np.take_along_axis(nn, np.argsort(np.take_along_axis(dist, nn, axis=1), axis=1), axis=1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="an otgen mnist run directory (its latents.npy; its extension.npz if fitted)")
    p.add_argument("--data-dir", default=None, help="the dataset's IDX files (as otgen mnist)")
    p.add_argument("--queries", type=int, default=3000, help="training codes whose neighbours are looked up")
    p.add_argument("--neighbours", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run = Path(args.run_dir)
    stored = json.loads((run / "config.json").read_text())["config"]
    dataset = stored.get("dataset", "mnist")
    if stored.get("limit"):
        raise SystemExit(f"{run}: trained on the first {stored['limit']} images; this needs a full run")
    z = np.load(run / "latents.npy").astype(np.float64)
    modes = _modes(dataset, args.data_dir)
    if len(modes) != len(z):
        raise SystemExit(f"{run}: {len(z)} codes but {len(modes)} {dataset} training images")
    q = np.random.default_rng(args.seed).choice(len(z), min(args.queries, len(z)), replace=False)
    nn = np.concatenate([_nearest(z, q[s:s + 256], args.neighbours) for s in range(0, len(q), 256)])
    print(f"{run} ({dataset}): {len(q)} training codes of {len(z)} (d = {z.shape[1]})")
    print(f"nearest code the same mode: {np.mean(modes[nn[:, 0]] == modes[q]):.3f}")
    print(f"{args.neighbours} nearest codes the same mode: {np.mean(modes[nn] == modes[q][:, None]):.3f}")
    if dataset == "stacked":
        digits = lambda m: np.stack([m // 100, (m // 10) % 10, m % 10], axis=-1)  # noqa: E731
        shared = np.sum(digits(modes[nn[:, 0]]) == digits(modes[q]), axis=1)
        print("digits shared with the nearest code (0 / 1 / 2 / 3): "
              + " / ".join(f"{f:.3f}" for f in np.bincount(shared, minlength=4) / len(q)))
    if (run / "extension.npz").exists():
        from otgen.generators.aeot import AEOT

        rule = AEOT.load(run).latent_map.spacing_rule
        for name, table in (("admissible neighbours (interpolated across)", None if rule is None else rule.neighbours),
                            ("local-noise neighbourhoods", None if rule is None else rule.local)):
            if table is None:
                continue
            own = np.repeat(np.arange(len(table)), table.shape[1]).reshape(table.shape)
            ok = table >= 0
            print(f"{name}: {np.mean(modes[table[ok]] == modes[own[ok]]):.3f} the same mode "
                  f"({int(ok.sum())} pairs)")


if __name__ == "__main__":
    main()
