"""Robustness sweep: the default ``fit`` on problem families it was not tuned on, checked independently.

    python scripts/robustness.py                                  # every family, K = 500, d = 2, seed 0
    python scripts/robustness.py --families clusters8_dirichlet,line --k 1000 --d 2,8 --seeds 0,1,2
    python scripts/robustness.py --tol 0.02 --check-samples 4000000 --optimizer-kw init_h=voronoi

Each row: the fit's own verdict (converged, steps, wall time, its estimated L1), then an
independent check on fresh i.i.d. source samples (``otgen.ot.problems.independent_error``):
its L1, the check's own noise, and ``ok`` = converged and independent L1 <= tol + 3 * noise.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax

from otgen.ot import SemiDiscreteOT, damped_newton
from otgen.ot.problems import FAMILIES, independent_error, make_problem


def _kw(items):
    out = {}
    for item in items or []:
        name, value = item.split("=", 1)
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                pass
        out[name] = value
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: all)")
    p.add_argument("--k", default="500", help="comma-separated target counts")
    p.add_argument("--d", default="2", help="comma-separated dimensions")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--tol", type=float, default=0.02)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--time-budget", type=float, default=None, help="seconds per fit")
    p.add_argument("--check-samples", type=int, default=1 << 22)
    p.add_argument("--optimizer-kw", nargs="*", help="damped_newton overrides, e.g. init_h=voronoi")
    args = p.parse_args(argv)
    print(f"# {platform.machine()}, {jax.device_count()} x {jax.devices()[0].platform}, jax {jax.__version__}; "
          f"tol {args.tol}, independent check: {args.check_samples} i.i.d. samples")
    print(f"{'family':22s} {'K':>6s} {'d':>4s} {'seed':>4s} | {'conv':>4s} {'steps':>5s} {'time s':>7s} "
          f"{'est L1':>7s} | {'true L1':>7s} {'noise':>6s} {'chi2':>9s} | ok")
    opt = damped_newton(**_kw(args.optimizer_kw))
    n_ok = n_all = 0
    for fam in args.families.split(","):
        for k in (int(v) for v in args.k.split(",")):
            for d in (int(v) for v in args.d.split(",")):
                for seed in (int(v) for v in args.seeds.split(",")):
                    source, y, nu = make_problem(fam, k, d, seed)
                    t0 = time.perf_counter()
                    bmap = SemiDiscreteOT(source, y, nu).fit(jax.random.PRNGKey(seed), tol=args.tol, optimizer=opt,
                                                             max_steps=args.max_steps, time_budget=args.time_budget,
                                                             progress=False, warn=False)
                    wall = time.perf_counter() - t0
                    dg = bmap.diagnostics
                    chk = independent_error(bmap, jax.random.PRNGKey(10_000 + seed), args.check_samples)
                    ok = dg.converged and chk.l1 <= args.tol + 3 * chk.noise_l1
                    n_ok += ok
                    n_all += 1
                    print(f"{fam:22s} {y.shape[0]:6d} {d:4d} {seed:4d} | {'yes' if dg.converged else 'NO':>4s} "
                          f"{len(dg.history.l1):5d} {wall:7.1f} {dg.history.l1[-1]:7.4f} | {chk.l1:7.4f} "
                          f"{chk.noise_l1:6.4f} {chk.chi2:9.2e} | {'ok' if ok else 'FAIL'}", flush=True)
    print(f"# {n_ok}/{n_all} ok")
    return 0 if n_ok == n_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
