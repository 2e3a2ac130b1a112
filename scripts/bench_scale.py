"""Scaling benchmark: throughput over forced host devices, and peak memory against K.

Every configuration runs in its own subprocess (the device count is fixed when
jax starts; ru_maxrss is per process):

* throughput: sample-target pairs per second of the Monte-Carlo cell-mass
  estimate with 1, 2, 4 forced host devices on the sample axis (same shapes);
* memory: peak resident set size (ru_maxrss) of a process that builds the
  problem, runs ``fit`` for a few steps and assigns a batch of points, for
  K = 10^4, 10^5, 10^6 targets in d = 64; the process's RSS right after
  importing jax is printed too, so the growth with K can be read off.  "fit s"
  includes compilation; "assign pairs/s" is a second (compiled) call.

    python scripts/bench_scale.py           # full table
    python scripts/bench_scale.py --quick   # small shapes
    python scripts/bench_scale.py --first-step   # a default fit's first steps at K = 10^6, d = 64, and its ETA
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def _child_throughput(devices: int, n: int, k: int, d: int, repeats: int) -> dict:
    import time

    import jax

    from otgen.ot import SemiDiscreteOT, UniformBox, sharding

    assert jax.device_count() == devices, jax.devices()
    y = jax.random.uniform(jax.random.PRNGKey(0), (k, d))
    mesh = sharding.make_mesh(devices, 1) if devices > 1 else None
    problem = SemiDiscreteOT(UniformBox(d), y, mesh=mesh)
    h = problem.initial_h()
    jax.block_until_ready(problem.estimate(jax.random.PRNGKey(0), h, n).masses)  # compile
    best = float("inf")
    for r in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(problem.estimate(jax.random.PRNGKey(r + 1), h, n).masses)
        best = min(best, time.perf_counter() - t)
    return {"devices": devices, "n": n, "k": k, "d": d, "seconds": best, "pairs_per_s": n * k / best}


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _child_memory(k: int, d: int, n: int, steps: int) -> dict:
    import time

    import jax
    import jax.numpy as jnp

    base = _rss_mib()
    from otgen.ot import SemiDiscreteOT, UniformBox

    y = jax.random.uniform(jax.random.PRNGKey(0), (k, d), jnp.float32)
    problem = SemiDiscreteOT(UniformBox(d), y)
    t0 = time.perf_counter()
    bmap = problem.fit(jax.random.PRNGKey(1), tol=1e-3, max_steps=steps, batch_size=n, progress=False)
    fit_s = time.perf_counter() - t0
    xq = jax.random.uniform(jax.random.PRNGKey(2), (n, d))
    jax.block_until_ready(bmap.assign(xq))  # compile
    t0 = time.perf_counter()
    jax.block_until_ready(bmap.assign(xq))
    assign_s = time.perf_counter() - t0
    return {"k": k, "d": d, "n": n, "steps": len(bmap.diagnostics.history.l1), "fit_s": fit_s, "assign_s": assign_s,
            "pairs_per_s_assign": n * k / assign_s, "rss_after_import_mib": base, "peak_rss_mib": _rss_mib(),
            "targets_mib": k * d * 4 / 2**20}


def _child_first_steps(k: int, d: int, steps: int) -> dict:
    """A default fit's first steps at K targets in d (Gaussian source onto 1.5 N(0, I), tol 0.01 on chi2):
    the seconds of each step and the step the progress bar counts to (the earliest possible stop)."""
    import time

    import jax
    import numpy as np

    from otgen.ot import Gaussian, SemiDiscreteOT

    y = 1.5 * np.random.default_rng(0).standard_normal((k, d)).astype(np.float32)
    t0 = time.perf_counter()
    problem = SemiDiscreteOT(Gaussian(d), y)
    setup_s = time.perf_counter() - t0
    opt = problem.default_optimizer()
    bmap = problem.fit(jax.random.PRNGKey(1), tol=0.01, max_steps=steps, progress=False, warn=False)
    diag = bmap.diagnostics
    times = np.diff([0.0, *diag.history.wall_time]).tolist()
    first = opt.first_stop_step(k, 0.01, diag.history.num_samples[0]) if hasattr(opt, "first_stop_step") else None
    return {"k": k, "d": d, "optimizer": diag.convergence.optimizer, "setup_s": setup_s, "step_s": times,
            "samples": diag.history.num_samples[0], "first_stop_step": first, "chi2": list(diag.history.chi2)}


def _run_child(args: list[str], devices: int = 1) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--first-step", action="store_true",
                   help="only time a default fit's first steps at K = 10^6, d = 64 and print its ETA")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        vals = [int(v) for v in rest]
        child = {"throughput": _child_throughput, "memory": _child_memory, "first": _child_first_steps}[kind]
        res = child(*vals)
        print(json.dumps(res))
        return 0

    import platform

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores visible; forced host devices share them")
    if args.first_step:
        k, d, steps = (20_000, 64, 2) if args.quick else (1_000_000, 64, 2)
        r = _run_child(["first", str(k), str(d), str(steps)])
        eta = r["first_stop_step"] * sum(r["step_s"][1:]) / max(1, len(r["step_s"]) - 1)
        print(f"\n== default fit, K = {k}, d = {d}, Gaussian source onto 1.5 N(0, I), tol 0.01 (chi2) ==")
        print(f"optimizer {r['optimizer']}, {r['samples']} samples per step; problem set-up {r['setup_s']:.1f} s")
        for i, (t, c) in enumerate(zip(r["step_s"], r["chi2"])):
            what = " (compilation and the start included)" if i == 0 else ""
            print(f"step {i + 1}: {t:.1f} s{what}, estimated chi2 {c:.3g}")
        print(f"the progress bar counts to step {r['first_stop_step']} (the earliest possible stop, first_check K / tol "
              f"samples): ETA {eta / 3600:.1f} h at the second step's pace")
        return 0
    n, k, d = (1 << 14, 2000, 64) if args.quick else (1 << 16, 10_000, 64)
    print(f"\n== throughput: Monte-Carlo cell masses, N = {n}, K = {k}, d = {d} (best of 3) ==")
    print(f"{'devices':>7} {'seconds':>9} {'pairs/s':>12} {'speed-up':>9}")
    base = None
    for dev in (1, 2, 4):
        r = _run_child(["throughput", str(dev), str(n), str(k), str(d), "3"], devices=dev)
        base = base or r["seconds"]
        print(f"{dev:>7} {r['seconds']:>9.3f} {r['pairs_per_s']:>12.3e} {base / r['seconds']:>9.2f}")

    ks = (10_000, 30_000) if args.quick else (10_000, 100_000, 1_000_000)
    n_mem, steps = (1 << 12, 2) if args.quick else (1 << 13, 2)
    print(f"\n== peak memory: fit ({steps} steps, {n_mem} samples/step) + assign({n_mem}) in d = 64, one process each ==")
    print(f"{'K':>9} {'targets MiB':>11} {'RSS@import':>10} {'peak RSS MiB':>12} {'peak-import':>11} "
          f"{'fit s':>7} {'assign pairs/s':>14}")
    for kk in ks:
        r = _run_child(["memory", str(kk), "64", str(n_mem), str(steps)])
        print(f"{kk:>9} {r['targets_mib']:>11.1f} {r['rss_after_import_mib']:>10.0f} {r['peak_rss_mib']:>12.0f} "
              f"{r['peak_rss_mib'] - r['rss_after_import_mib']:>11.0f} {r['fit_s']:>7.1f} "
              f"{r['pairs_per_s_assign']:>14.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
