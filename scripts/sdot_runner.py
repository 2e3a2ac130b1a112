"""Solve one semi-discrete OT problem with the `sdot` package (PyPI; Python >= 3.12), for bench_ot.py.

Runs in its own interpreter (sdot needs Python >= 3.12, otgen's environment may be older):

    python3.12 -m venv /path/sdot-venv && /path/sdot-venv/bin/pip install sdot jax
    /path/sdot-venv/bin/python scripts/sdot_runner.py problem.npz out.npz

``problem.npz``: ``targets`` (K, d), ``weights`` (K,), ``source`` ("box" with ``low``/``high``, or
"gaussian" with ``mean``/``std``, isotropic).  ``out.npz``: ``h`` (heights in otgen's convention,
``argmax_i <x, y_i> + h_i``), ``seconds`` (the second of two solves, its kernels compiled), ``version``.
sdot's power weights ``w`` (cells ``argmin |x - y_i|^2 - w_i``) give ``h_i = (w_i - |y_i|^2) / 2``.
"""

import sys
import time
from importlib.metadata import version

import numpy as np
import sdot


def main(problem_path: str, out_path: str) -> None:
    z = np.load(problem_path)
    y, nu, kind = z["targets"].astype(np.float64), z["weights"].astype(np.float64), str(z["source"])
    if kind == "box":
        target = sdot.Box(origin=z["low"], frame=z["high"] - z["low"])
    elif kind == "gaussian":
        # sdot's Gaussians are truncated at 6 sigma (mass outside: 2e-9 in 2-D); renormalised inside
        target = sdot.SumOfGaussians(z["mean"][None, :], np.array([float(z["std"])]))
    else:
        raise ValueError(f"unknown source {kind!r}")
    times = []
    for _ in range(2):
        t = time.perf_counter()
        sol = sdot.ot_solve(sdot.SumOfDiracs(y, nu), target)
        times.append(time.perf_counter() - t)
    w = np.asarray(sol.weights, np.float64)
    h = 0.5 * (w - np.sum(y * y, axis=1))
    np.savez(out_path, h=h, seconds=times[1], first_seconds=times[0], version=version("sdot"),
             converged=bool(sol.converged))


if __name__ == "__main__":
    main(*sys.argv[1:3])
