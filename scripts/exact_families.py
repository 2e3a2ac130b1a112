"""The exact 2-D path on every problem family of the robustness sweep (otgen.ot.problems), scored by
exact cell masses and by 2^22 fresh i.i.d. samples of the source counted in float64 numpy (independent
of the geometry code and of the float32 scoring kernels; its noise sqrt(2K / (pi N)) printed).

    python scripts/exact_families.py --k 2000
"""

import argparse
import time

import jax
import numpy as np

from otgen.ot.exact import exact_masses, solve_exact, why_not_exact
from otgen.ot.problems import FAMILIES, make_problem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", default=None, help="comma-separated subset (default: all)")
    args = p.parse_args(argv)
    chosen = sorted(FAMILIES) if args.families is None else args.families.split(",")
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        p.error(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    print("| family | K | wall (s) | Newton iterates | exact L1 | i.i.d. L1 (noise) |")
    print("|---|---|---|---|---|---|")
    for fam in chosen:
        source, y, nu = make_problem(fam, args.k, 2, args.seed)
        if why_not_exact(source, y) is not None:
            print(f"| {fam} | {len(y)} | - | - | {why_not_exact(source, y)} | |")
            continue
        y64 = np.asarray(y, np.float64)
        nu = np.full(len(y), 1 / len(y)) if nu is None else np.asarray(nu, np.float64) / np.sum(nu)
        t = time.perf_counter()
        res = solve_exact(source, y64, nu)
        wall = time.perf_counter() - t
        l1 = np.abs(exact_masses(source, y64, res.h) - nu).sum()
        n, counts = 1 << 22, np.zeros(len(y))
        for key in jax.random.split(jax.random.PRNGKey(1), 16):
            x = np.asarray(source.sample(key, n // 16), np.float64)
            counts += np.bincount(np.argmax(x @ y64.T + res.h, axis=1), minlength=len(y))
        iid = np.abs(counts / n - nu).sum()
        noise = np.sqrt(2 * len(y) / (np.pi * n))
        print(f"| {fam} | {len(y)} | {wall:.2f} | {len(res.l1)} | {l1:.1e} | {iid:.4f} ({noise:.4f}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
