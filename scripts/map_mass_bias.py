"""Is a semi-discrete map's remaining error noise or bias?  Cell masses by where the codes lie.

chi2 says how far a map's cell masses are from the targets' weights on average, not *which* cells are
off.  A random error averages out over any large group of codes; a systematic one (say, the outlying
codes all under-weighted) changes what a generator built on the map draws -- fewer unusual samples --
whatever the chi2.  For an ``otgen mnist`` AE-OT run (or several), this draws fresh source samples, assigns
them to their cells, and prints the mass over the weight of each decile of codes

* by their distance from the codes' mean (standardised coordinates; centre -> tails),
* by their nearest-neighbour spacing (dense -> sparse),
* by class (needs the dataset's labels: ``--data-dir``),

each a mean over ~K/10 cells, so the per-cell Monte-Carlo noise (1/sqrt(samples per cell)) averages
down by sqrt(K/10).  An unbiased map prints 1.000 everywhere up to that noise.

    python scripts/map_mass_bias.py runs/fashion_ot150 runs/fashion_ot600b --data-dir DATA_DIR
"""

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from otgen.ot import BrenierMap
from otgen.ot.spacing import nearest_k_targets


def _deciles(values: np.ndarray) -> np.ndarray:
    """The decile (0..9) of each value."""
    edges = np.quantile(values, np.linspace(0, 1, 11))
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, 9)


def mass_ratio(bmap: BrenierMap, samples: int, seed: int) -> np.ndarray:
    """(K,) each cell's share of ``samples`` fresh source samples over its target weight."""
    masses = np.asarray(bmap.cell_masses(jax.random.PRNGKey(seed), samples), np.float64)
    return masses / np.asarray(bmap.weights, np.float64)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="otgen mnist AE-OT run directories (brenier.npz, latents.npy)")
    p.add_argument("--data-dir", default=None, help="the dataset's IDX files, for the per-class masses (runs of one dataset)")
    p.add_argument("--samples", type=int, default=1 << 22)
    p.add_argument("--seed", type=int, default=100)
    args = p.parse_args(argv)
    for run in map(Path, args.run_dirs):
        bmap = BrenierMap.load(run / "brenier.npz")
        z = np.load(run / "latents.npy").astype(np.float64)
        if len(z) != bmap.num_targets:
            raise SystemExit(f"{run}: {len(z)} codes but a map onto {bmap.num_targets} targets")
        ratio = mass_ratio(bmap, args.samples, args.seed)
        chi2 = json.loads((run / "ot_check.json").read_text())["ot_check_chi2"] if (run / "ot_check.json").exists() else None
        radius = np.linalg.norm((z - z.mean(0)) / z.std(0), axis=1)
        spacing = nearest_k_targets(z.astype(np.float32), 1)[1][:, 0]
        noise = np.sqrt(bmap.num_targets / args.samples / (bmap.num_targets / 10))
        print(f"{run}: K = {bmap.num_targets}, {args.samples:,} fresh samples"
              + (f", fit-ot's check chi2 {chi2:.4f}" if chi2 is not None else "")
              + f"; noise of a decile's mean ~{noise:.4f}")
        for name, key in (("radius (centre -> tails)", radius), ("NN spacing (dense -> sparse)", spacing)):
            d = _deciles(key)
            print(f"  mass / weight by decile of {name}: "
                  + " ".join(f"{ratio[d == i].mean():.3f}" for i in range(10)))
        if args.data_dir is not None:
            from otgen.data.mnist import load_mnist

            dataset = json.loads((run / "config.json").read_text())["config"].get("dataset", "mnist")
            labels = load_mnist("train", args.data_dir, dataset=dataset)[1]
            w = ratio * np.asarray(bmap.weights, np.float64)
            print("  mass / weight by class: " + " ".join(
                f"{np.sum(w[labels == c]) / np.sum(np.asarray(bmap.weights)[labels == c]):.3f}" for c in range(10)))


if __name__ == "__main__":
    main()
