"""Would an inverted-file (IVF) candidate search make large-K scoring sub-linear?  Measured, not assumed.

For a solved map (a run's ``brenier.npz``: targets y, heights h) the targets are clustered by k-means on
(y, h); a sample scores the C cluster centres, then only the members of its best p clusters.  Printed:
the recall (how often the true cell, argmax <x, y_i> + h_i over all K, is among the scored members) and
the scored fraction of the K targets.  A miss assigns the sample to a wrong cell, a bias no sample size
removes, so a useful setting needs recall near 1 at a small fraction.

    python scripts/candidate_recall.py runs/c_mnist/mnist/quick/aeot/seed0/brenier.npz
"""

import argparse

import jax
import numpy as np
from scipy.cluster.vq import kmeans2

from otgen.ot import BrenierMap


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("map", help="a saved BrenierMap (brenier.npz) with a Gaussian source")
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--clusters", default="256,1024")
    p.add_argument("--probes", default="4,8,16,32,64")
    args = p.parse_args(argv)
    bmap = BrenierMap.load(args.map)
    y, h = np.asarray(bmap.targets, np.float32), np.asarray(bmap.h, np.float32)
    k, d = y.shape
    x = np.asarray(bmap.source.sample(jax.random.key(0), args.samples), np.float32)
    best = np.concatenate([np.argmax(c @ y.T + h, axis=1) for c in np.array_split(x, max(1, len(x) // 2000))])
    print(f"K = {k}, d = {d}, {len(x)} samples of the map's source")
    for c in (int(v) for v in args.clusters.split(",")):
        centres, label = kmeans2(np.c_[y, h], c, minit="++", seed=1, iter=20)
        sizes = np.bincount(label, minlength=c)
        order = np.argsort(-(x @ centres[:, :d].T + centres[:, d]), axis=1)
        for probes in (int(v) for v in args.probes.split(",")):
            scored = order[:, :probes]
            recall = np.mean(np.any(scored == label[best][:, None], axis=1))
            frac = (c + sizes[scored].sum(1).mean()) / k
            print(f"clusters {c:5d}  probes {probes:3d}  recall {recall:.4f}  scored {frac:.3f} of K "
                  f"(largest cluster {sizes.max()})")


if __name__ == "__main__":
    main()
