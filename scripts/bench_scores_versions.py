"""Two versions of the scoring kernels (``otgen/ot/scores.py``) side by side, in one process.

    git show 88e107c:otgen/ot/scores.py > /tmp/scores_old.py
    python scripts/bench_scores_versions.py /tmp/scores_old.py

Times the cell histogram (argmax + bincount, the solver's mass step) and the top-2 scan (damped
Newton's Hessian batches) of the given file and of the installed ``otgen.ot.scores`` on the same
inputs, each with its own default block size; best of 7 after a compile call.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import jax

from otgen.ot import scores as current


def _best(fn, repeats: int = 7) -> float:
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("other", help="path of another version's scores.py")
    args = p.parse_args(argv)
    spec = importlib.util.spec_from_file_location("scores_other", args.other)
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    print(f"ns per sample-target pair, best of 7 ({jax.devices()[0].platform}); ratio = other / current")
    for n, k, d in [(65536, 1000, 2), (65536, 20000, 2), (16384, 60000, 16)]:
        kx, ky, kh = jax.random.split(jax.random.PRNGKey(0), 3)
        x, y = jax.random.normal(kx, (n, d)), jax.random.normal(ky, (k, d))
        h = 0.1 * jax.random.normal(kh, (k,))
        res = {}
        for name, mod in (("other", other), ("current", current)):
            blocks = mod.block_targets(y, h, mod.default_block_size(k, d))
            res[name] = (_best(lambda: mod.cell_counts(x, blocks, chunk_size=512)),
                         _best(lambda: mod.top2_cells(x, blocks, chunk_size=512)))
        (oc, o2), (cc, c2) = res["other"], res["current"]
        ns = 1e9 / (n * k)
        print(f"N={n} K={k} d={d}: histogram other {oc * ns:.3f} current {cc * ns:.3f} ({oc / cc:.2f}x); "
              f"top-2 other {o2 * ns:.3f} current {c2 * ns:.3f} ({o2 / c2:.2f}x)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
