"""Benchmark of the semi-discrete OT solver; every figure is measured in this run.

(a) kernel: the Monte-Carlo cell-mass step (tiled argmax + histogram) against the
    jit-compiled float32 matmul ``X @ Y.T`` alone on the same shapes, and against
    the naive dense ``bincount(argmax(X @ Y.T + h))``.
(b) time-to-accuracy on the reference problem (uniform source on [0,1]^2, K
    uniform targets, uniform weights): the default damped Newton vs the AE-OT
    (pyOMT) recipe vs POT's stochastic semi-dual solver (ASGD).  Accuracy of each
    iterate is measured afterwards, outside the timed runs, by an independent
    estimate: scipy's Owen-scrambled Sobol points (not our sampler) counted by the
    tiled kernel.

(c) large K (chi2, the measure that can be certified there): the default fit (averaged
    SGD above 3,000 targets in d > 4) vs the AE-OT (pyOMT) recipe *from the same Voronoi
    start*, each given the same wall-time budget, on a 16-d Gaussian problem (K = 10,000,
    targets 1.5 N(0, I)) and, with ``--codes``, on real autoencoder codes (e.g. MNIST quick's
    ``latents.npy``, K = 60,000, whitened as the pipeline does).  The chi2 of each final map
    is measured afterwards on 2^21 fresh i.i.d. samples from keys no solver saw
    (``otgen.ot.problems.independent_error``; its own noise 2 sqrt(K) / N is printed).
    The peers, from g = 0 (the same Voronoi cells) for the same budget (``scripts/ot_peers.py``): OTT-JAX's
    ``SemidiscreteSolver`` (``[peers]`` extra) with SGD at the best of a short sweep (lr 0.1-1000 at batch
    1024, then batch 8192 at the best lr; ``sweep_budget`` seconds each, chi2 on 2^18 samples),
    at eps = 0 and at its geometry's default eps, and POT's ``solve_semidiscrete`` (its defaults, batch 1024).

(d) lowdim (2-D and 3-D): the default fit (its exact path, otgen.ot.exact) against the ``sdot`` package
    (exact power diagrams + Newton; PyPI, Python >= 3.12, run through ``scripts/sdot_runner.py`` in the
    interpreter ``--sdot-python`` names) and, at K = 1,000, otgen's Monte-Carlo path.  Each solver's
    second call is timed; each answer is scored by the same float64 exact cell masses, and up to
    K = 4,000 also by 2^24 fresh i.i.d. samples (no geometry code involved).

(e) devices: one Monte-Carlo step (2^16 i.i.d. samples, two halves, K = 60,000 Gaussian targets or
    ``--codes``, d = 16) on one device (XLA's own threads over the cores) against the same step with the
    samples spread over one CPU device per core (``otgen.ot.sharding.one_device_per_core``, what the CLI
    asks for), in one process; the same samples, so the counts are checked equal.

    python scripts/bench_ot.py            # full run
    python scripts/bench_ot.py --quick    # smoke run, small shapes
    python scripts/bench_ot.py --section large --codes runs/mnist_quick/latents.npy
    python scripts/bench_ot.py --section lowdim --sdot-python /path/sdot-venv/bin/python
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import qmc

from otgen.ot import Gaussian, SemiDiscreteOT, UniformBox, aeot_recipe, damped_newton, score_tiles, scores, sharding


def best_time(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))  # compile + warm
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return min(ts)


def _tiled_max_only(x, blocks, chunk, layout="chunk-major"):
    """The step's tiling computing only the row max (no index, no histogram): a tiled floor.
    ``layout``: the score tile as (chunk, block) reduced over blocks (``block_scores``, the fused
    d <= 8 kernel's) or as (block, chunk) reduced over its first axis (the d > 8 matmul kernel's)."""

    def chunk_max(xc):
        def step(best, inp):
            yb, hb = inp
            if layout == "chunk-major":
                m = jnp.max(score_tiles.block_scores(xc, yb, hb), axis=1)
            else:
                m = jnp.max(jnp.dot(yb, xc.T, precision=jax.lax.Precision.HIGHEST) + hb[:, None], axis=0)
            return jnp.maximum(best, m), None

        return jax.lax.scan(step, jnp.full((xc.shape[0],), -jnp.inf), (blocks.y, blocks.h))[0]

    return score_tiles.map_chunks(chunk_max, x, chunk)


def kernel_section(shapes, repeats):
    print("\n== (a) cell-mass step vs matmul floor (best of %d, same process) ==" % repeats)
    print("matmul = jit(X @ Y.T) alone (writes the N x K matrix); tiled max = the step's tiling computing only"
          " the row max (the faster of its two tile layouts);\nstep = tiled argmax + histogram (what the solver runs); naive = bincount(argmax(X @ Y.T + h))")
    print(f"{'N':>7} {'K':>7} {'d':>3} | {'matmul s':>9} {'tiled max':>9} {'step s':>9} {'naive s':>9} | "
          f"{'step/matmul':>11} {'step/tiledmax':>13} {'naive/matmul':>12} | {'ns/pair step':>12}")
    rows = []
    for n, k, d in shapes:
        kx, ky, kh = jax.random.split(jax.random.PRNGKey(0), 3)
        x = jax.random.uniform(kx, (n, d), jnp.float32)
        y = jax.random.uniform(ky, (k, d), jnp.float32)
        h = 0.01 * jax.random.normal(kh, (k,), jnp.float32)
        blocks = scores.block_targets(y, h)
        chunk = scores.default_chunk_size(n, d)
        matmul = jax.jit(lambda x, y: x @ y.T)
        step = jax.jit(lambda x, b: scores._counts_blocks(x, b, chunk, k))
        naive = jax.jit(lambda x, y, h: jnp.bincount(jnp.argmax(x @ y.T + h, axis=1), length=k))
        # The step and the naive path must agree exactly.
        np.testing.assert_array_equal(step(x, blocks), naive(x, y, h))
        t_mm = best_time(matmul, x, y, repeats=repeats)
        t_step = best_time(step, x, blocks, repeats=repeats)
        t_naive = best_time(naive, x, y, h, repeats=repeats)
        # the floor: the faster of the two tile layouts, computing the row max alone
        t_max = min(best_time(jax.jit(lambda x, b, lay=lay: _tiled_max_only(x, b, chunk, lay)), x, blocks,
                              repeats=repeats) for lay in ("chunk-major", "block-major"))
        ns_pair = t_step / (n * k) * 1e9
        print(f"{n:>7} {k:>7} {d:>3} | {t_mm:>9.4f} {t_max:>9.4f} {t_step:>9.4f} {t_naive:>9.4f} | "
              f"{t_step / t_mm:>11.2f} {t_step / t_max:>13.2f} {t_naive / t_mm:>12.2f} | {ns_pair:>12.3f}")
        rows.append(dict(n=n, k=k, d=d, matmul=t_mm, tiled_max=t_max, step=t_step, naive=t_naive))
    return rows


class Evaluator:
    """True ||w - nu||_1 of an h, from a fixed independent Owen-scrambled Sobol sample."""

    def __init__(self, problem: SemiDiscreteOT, n_log2: int, seed: int):
        u = qmc.Sobol(problem.dim, scramble=True, seed=seed).random_base2(n_log2)
        self.x = jnp.asarray(u, jnp.float32)
        self.blocks = scores.block_targets(problem.targets, jnp.zeros(problem.num_targets), problem.block_size)
        self.nu = np.asarray(problem.weights, np.float64)
        self.k = problem.num_targets

    def __call__(self, h) -> float:
        counts = np.asarray(scores.cell_counts(self.x, scores.with_heights(self.blocks, h)))
        return float(np.abs(counts / self.x.shape[0] - self.nu).sum())


def first_accurate(trajectory, evaluate, tol):
    """(time, index, error) of the first snapshot with true error <= tol, else (None, best index, best error).

    Evaluates a log-spaced subset, then bisects between the last failing and the
    first passing snapshot (errors are close to monotone along these runs).
    """
    n = len(trajectory)
    cache = {}

    def err(i):
        if i not in cache:
            cache[i] = evaluate(trajectory[i][1])
        return cache[i]

    probe = sorted(set(np.unique(np.geomspace(1, n, num=min(n, 30)).astype(int) - 1).tolist() + [n - 1]))
    passing = [i for i in probe if err(i) <= tol]
    if not passing:
        i_best = min(cache, key=cache.get)
        return None, i_best, cache[i_best]
    hi = passing[0]
    lo = max([i for i in probe if i < hi], default=-1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if err(mid) <= tol:
            hi = mid
        else:
            lo = mid
    return trajectory[hi][0], hi, err(hi)


def run_ours(problem, key, optimizer, tol, budget, max_steps):
    traj = []
    t0 = time.perf_counter()

    def cb(step, h, est):
        traj.append((time.perf_counter() - t0, h))
        return time.perf_counter() - t0 > budget

    bmap = problem.fit(key, tol=tol, optimizer=optimizer, max_steps=max_steps, progress=False, callback=cb)
    return traj, time.perf_counter() - t0, bmap


def run_pot(problem, n_source_log2, iters_list, seed):
    """POT's ASGD on the semi-dual (Genevay et al. 2016), source discretised by 2^n scrambled Sobol points.

    Entropic semi-dual with cost |x - y|^2 / 2: the cell of x is argmax_j v_j - M_xj + reg log b_j,
    i.e. our h_j = v_j - |y_j|^2 / 2 + reg log b_j.  Small reg approaches the unregularised map.
    """
    import ot

    y = np.asarray(problem.targets, np.float64)
    b = np.asarray(problem.weights, np.float64)
    xs = qmc.Sobol(problem.dim, scramble=True, seed=seed).random_base2(n_source_log2)
    a = np.full(xs.shape[0], 1.0 / xs.shape[0])
    # reg 3e-4 and lr 0.1 were the best of a small grid (reg 1e-4..1e-3, lr 0.1 / 1 / POT's default
    # reg * ns, which overflows to NaN at these reg) on a K = 200 version of this problem.
    reg, lr = 3e-4, 0.1
    out = []
    for iters in iters_list:
        t0 = time.perf_counter()
        m = ot.dist(xs, y) / 2.0  # included in the time: the solver needs it
        v = ot.stochastic.averaged_sgd_entropic_transport(a, b, m, reg, numItermax=int(iters), lr=lr,
                                                          random_state=seed)
        elapsed = time.perf_counter() - t0
        del m
        h = v - 0.5 * np.sum(y * y, axis=1) + reg * np.log(b)
        out.append((iters, elapsed, jnp.asarray(h - h.mean(), jnp.float32)))
    return out


def accuracy_section(k, tol, budget, eval_log2, aeot_lrs, aeot_batch, pot_iters, pot_log2, seed=0):
    print(f"\n== (b) time to ||w - nu||_1 <= {tol} on the reference problem: uniform [0,1]^2, K = {k} ==")
    y = jax.random.uniform(jax.random.PRNGKey(seed), (k, 2))
    problem = SemiDiscreteOT(UniformBox(2), y)
    evaluate = Evaluator(problem, eval_log2, seed=1234)
    # The evaluator's own noise: two independent scrambles at a good h.
    print(f"independent evaluator: 2^{eval_log2} Owen-scrambled Sobol points (scipy)")

    # Warm up jit caches of every method (compilation is not part of time-to-accuracy).
    run_ours(problem, jax.random.PRNGKey(99), damped_newton(), tol, budget=1e9, max_steps=3)
    for lr in aeot_lrs:
        run_ours(problem, jax.random.PRNGKey(99), aeot_recipe(lr=lr, batch_size=aeot_batch, gtol=0.0), tol, 1e9, 3)

    results = []
    traj, total, bmap = run_ours(problem, jax.random.PRNGKey(1), damped_newton(), tol, budget, max_steps=200)
    t_acc, i_acc, e_acc = first_accurate(traj, evaluate, tol)
    e_final = evaluate(bmap.h)
    evaluate2 = Evaluator(problem, eval_log2, seed=4321)
    print(f"evaluator noise check at the final default iterate: {e_final:.4f} vs {evaluate2(bmap.h):.4f} "
          "(second independent scramble)")
    results.append(("damped Newton (default)", t_acc, e_acc, total, len(traj),
                     f"stopped by its certified test after {total:.2f}s (converged={bmap.diagnostics.converged}),"
                     f" final true error {e_final:.4f}"))
    for lr in aeot_lrs:
        opt = aeot_recipe(lr=lr, batch_size=aeot_batch, gtol=0.0)  # its own stop disabled: run to the budget
        traj, total, _ = run_ours(problem, jax.random.PRNGKey(1), opt, tol, budget, max_steps=10**7)
        t_acc, i_acc, e_acc = first_accurate(traj, evaluate, tol)
        results.append((f"AE-OT recipe lr={lr:g}, bat_size_n={aeot_batch}", t_acc, e_acc, total, len(traj),
                        f"best true error seen {e_acc:.4f}"))
    for iters, elapsed, h in run_pot(problem, pot_log2, pot_iters, seed):
        e = evaluate(h)
        results.append((f"POT ASGD semi-dual, {iters:g} iters, 2^{pot_log2} source pts", elapsed if e <= tol else None,
                        e, elapsed, 1, f"true error {e:.4f}"))

    print(f"\n{'method':<48} {'time to tol (s)':>16} {'err at that pt':>15} {'run (s)':>8} {'steps':>6}")
    for name, t_acc, e, total, steps, note in results:
        t_str = f"{t_acc:.2f}" if t_acc is not None else f"> {total:.1f} (not reached)"
        print(f"{name:<48} {t_str:>16} {e:>15.4f} {total:>8.1f} {steps:>6}   {note}")
    ours = results[0][1]
    for name, t_acc, e, total, steps, _ in results[1:]:
        if ours is None:
            break
        if t_acc is not None:
            print(f"speed-up of the default over {name}: {t_acc / ours:.1f}x")
        elif total >= ours:
            print(f"speed-up of the default over {name}: > {total / ours:.1f}x (baseline did not reach tol in "
                  f"{total:.1f}s; best error {e:.4f})")
        else:
            print(f"{name}: did not reach tol (error {e:.4f} after {total:.1f}s); no ratio")
    return results


def whitened(codes: np.ndarray) -> np.ndarray:
    """PCA-whitened codes, as AE-OT's pipeline places them for a Gaussian source."""
    z = codes.astype(np.float64) - codes.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(z.T))
    return (z @ evecs / np.sqrt(evals)).astype(np.float32)


def _peer_runs(y, budget, sweep_budget, check):
    """OTT-JAX (eps = 0 at the best (lr, batch) of a short sweep, then the same at its default eps) and POT's
    solve_semidiscrete, each from g = 0 (the Voronoi cells, our start) for ``budget`` seconds."""
    import ot_peers

    key = jax.random.PRNGKey(1)
    rows = []
    try:
        import ott  # noqa: F401
    except ImportError:
        print("  (OTT-JAX not installed: pip install -e '.[peers]' adds its rows)")
    else:
        def run_ott(n, **kw):
            return ot_peers.solve_ott(y, key, iterations=n, **kw)

        def sweep_point(lr, batch):
            out, sec, its = ot_peers.run_for_budget(lambda n: run_ott(n, batch_size=batch, lr=lr), sweep_budget, 20)
            chi2 = check(ot_peers.as_map(out.g, y), 18).chi2
            print(f"  OTT-JAX sweep: sgd lr {lr:g}, batch {batch}, {its} it. in {sec:.0f} s: chi2 {chi2:.4g}",
                  flush=True)
            return chi2, lr, batch

        # the learning rate at batch 1024, then the larger batch at the best rate
        sweep = [sweep_point(lr, 1024) for lr in (0.1, 1.0, 10.0, 100.0, 1000.0)]
        sweep.append(sweep_point(min(sweep)[1], 8192))
        _, lr, batch = min(sweep)
        for eps in (0.0, None):
            out, sec, its = ot_peers.run_for_budget(lambda n: run_ott(n, batch_size=batch, lr=lr, epsilon=eps),
                                                    budget, 20)
            bmap = ot_peers.as_map(out.g, y)
            if eps == 0.0:
                agree, gap = ot_peers.pairs_agree(*reversed(ot_peers.ott_pairs(out)), bmap)
                note = f"best of the sweep; pairs agree {agree:.4f} (rest within {gap:.2g} of a tie)"
            else:  # an entropic coupling has no hard pairs to compare: its potential's cells are scored
                note = "the best sweep setting at the geometry's default eps; scored on its potential's cells"
            rows.append((f"OTT-JAX sgd lr {lr:g}, batch {batch}, {'eps 0' if eps == 0.0 else 'default eps'}",
                         its, sec, bmap, note))
    batch = 1024
    g, sec, its = ot_peers.run_for_budget(lambda n: ot_peers.solve_pot(y, iterations=n, batch_size=batch), budget, 5)
    bmap = ot_peers.as_map(g, y)
    agree, gap = ot_peers.pairs_agree(*reversed(ot_peers.pot_pairs(y, g)), bmap)
    rows.append((f"POT solve_semidiscrete, batch {batch}", its, sec, bmap,
                 f"its defaults (DRAG, lr0 sqrt(K batch)); pairs agree {agree:.4f} (rest within {gap:.2g} of a tie)"))
    return rows


def large_k_section(problems, budget, check_log2=21, aeot_lr=2e-2, aeot_batch=1 << 16, tol=0.0025, peers=True,
                    sweep_budget=20.0):
    from otgen.ot.problems import independent_error

    print(f"\n== (c) large K: chi2 after {budget:g} s of wall time (or at the default's certified stop at chi2 "
          f"<= {tol:g}), Gaussian source, every method from the Voronoi cells ==")
    print(f"independent check: 2^{check_log2} fresh i.i.d. samples (otgen.ot.problems.independent_error)")
    rows = []
    for name, y in problems:
        k, d = y.shape

        def check(bmap, log2=check_log2):
            return independent_error(bmap, jax.random.PRNGKey(777), 1 << log2)

        problem = SemiDiscreteOT(Gaussian(d), y)
        h0 = problem.initial_h("voronoi")
        # pyOMT's learning rate is tuned in the codes' own frame: the recipe runs there, from the same cells.
        raw = SemiDiscreteOT(Gaussian(d), y, normalise=False)
        runs = [(f"default ({problem.default_optimizer().name})", problem, None),
                (f"AE-OT recipe lr={aeot_lr:g}, {aeot_batch} samples/step", raw,
                 aeot_recipe(lr=aeot_lr, batch_size=aeot_batch, sampling="rqmc", gtol=0.0, max_steps=10**7))]
        results = []
        for method, prob, opt in runs:
            t0 = time.perf_counter()
            bmap = prob.fit(jax.random.PRNGKey(1), tol=tol, optimizer=opt, h0=h0, time_budget=budget,
                            max_steps=10**7 if opt is not None else None, progress=False, warn=False)
            results.append((method, len(bmap.diagnostics.history.l1), time.perf_counter() - t0, bmap,
                            bmap.diagnostics.summary()))
            print(f"  {method}: {bmap.diagnostics.summary()}", flush=True)
        if peers:
            results += _peer_runs(np.asarray(y), budget, sweep_budget, check)
        print(f"{'problem':<30} {'method':<48} {'steps':>7} {'run (s)':>8} {'chi2 (indep.)':>14} {'+-':>8}  note")
        for method, steps, wall, bmap, note in results:
            chk = check(bmap)
            noise = 2 * np.sqrt(k) / chk.num_samples
            print(f"{name:<30} {method:<48} {steps:>7} {wall:>8.0f} {chk.chi2:>14.4f} {noise:>8.4f}  {note}",
                  flush=True)
            rows.append(dict(problem=name, method=method, wall=wall, chi2=chk.chi2, noise=noise))
    for name, _ in problems:
        ours, *others = [r for r in rows if r["problem"] == name]
        for r in others:
            print(f"{name}: chi2 of {r['method']} / default's after the same {budget:g} s: "
                  f"{r['chi2'] / ours['chi2']:.1f}x (default {ours['wall']:.0f} s, {r['method']} {r['wall']:.0f} s)")
    return rows


def lowdim_problems(quick: bool):
    """The 2-D and 3-D problems of the low-dimensional comparison: (name, source, targets float64, weights)."""
    rng = np.random.default_rng(0)

    def f32(y):  # otgen keeps float32 targets: every solver gets the same rounded points
        return np.asarray(y, np.float32).astype(np.float64)

    def clusters(k, n, spread, d=2):
        centres = rng.random((n, d)) * 0.8 + 0.1
        return centres[rng.integers(0, n, k)] + spread * rng.standard_normal((k, d))

    def uniform(k):
        return np.full(k, 1.0 / k)

    def w32(w):  # otgen keeps float32 weights too (renormalised in float64 by its exact path)
        w = np.asarray(w, np.float32).astype(np.float64)
        return w / w.sum()

    box, gauss, cube = UniformBox(2), Gaussian(2), UniformBox(3)
    if quick:
        return [("K=1,000 uniform, box source", box, f32(rng.random((1000, 2))), uniform(1000)),
                ("K=2,000 Gaussian targets, Gaussian source", gauss, f32(rng.standard_normal((2000, 2))), uniform(2000)),
                ("3-D: K=1,000 uniform, cube source", cube, f32(rng.random((1000, 3))), uniform(1000))]
    return [
        ("K=1,000 uniform, box source", box, f32(rng.random((1000, 2))), uniform(1000)),
        ("K=1,000 8 tight clusters, Dirichlet weights, box", box, f32(clusters(1000, 8, 0.01)),
         w32(rng.dirichlet(np.ones(1000)))),
        ("K=4,000 7-Gaussian mixture, box", box, f32(clusters(4000, 7, 0.05)), uniform(4000)),
        ("K=10,000 uniform, box source", box, f32(rng.random((10_000, 2))), uniform(10_000)),
        ("K=10,000 Gaussian targets, Gaussian source", gauss, f32(rng.standard_normal((10_000, 2))), uniform(10_000)),
        ("K=100,000 uniform, box source", box, f32(rng.random((100_000, 2))), uniform(100_000)),
        ("3-D: K=1,000 uniform, cube source", cube, f32(rng.random((1000, 3))), uniform(1000)),
        ("3-D: K=1,000 8 tight clusters, Dirichlet weights, cube", cube, f32(clusters(1000, 8, 0.01, 3)),
         w32(rng.dirichlet(np.ones(1000)))),
        ("3-D: K=10,000 uniform, cube source", cube, f32(rng.random((10_000, 3))), uniform(10_000)),
    ]


def _sdot_solve(python: str, source, y, nu) -> tuple[np.ndarray, float, str]:
    """(heights, seconds of its second solve, version) from scripts/sdot_runner.py in ``python``."""
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        prob, out = os.path.join(tmp, "problem.npz"), os.path.join(tmp, "out.npz")
        if isinstance(source, UniformBox):
            np.savez(prob, targets=y, weights=nu, source="box", low=np.asarray(source.low), high=np.asarray(source.high))
        else:
            np.savez(prob, targets=y, weights=nu, source="gaussian", mean=np.asarray(source.mean),
                     std=np.asarray(source.std[0]))
        runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sdot_runner.py")
        subprocess.run([python, runner, prob, out], check=True, capture_output=True, text=True)
        z = np.load(out)
        return z["h"], float(z["seconds"]), str(z["version"])


def lowdim_section(sdot_python: str | None, quick: bool, iid_max_k: int = 4000, mc_max_k: int = 1000,
                   mc_budget: float = 120.0):
    """(d) 2-D / 3-D: otgen's default fit (the exact path) against sdot, each solver's second call timed, every
    answer scored by the same float64 exact cell masses (:func:`otgen.ot.exact.exact_masses`) and, up to
    ``iid_max_k`` targets, by 2^24 fresh i.i.d. samples counted by the float32 kernel (its own noise printed)."""
    from otgen.ot.exact import exact_masses
    from otgen.ot.problems import independent_error

    print("\n## (d) 2-D / 3-D: exact path vs sdot (wall: second call; L1: exact float64 cell masses)")
    print("| problem | solver | wall (s) | exact L1 | i.i.d. L1 (noise) | note |")
    print("|---|---|---|---|---|---|")
    for name, source, y, nu in lowdim_problems(quick):
        k = len(y)
        rows = []
        problem = SemiDiscreteOT(source, y, nu, normalize_weights=True)
        for call in range(2):
            t = time.perf_counter()
            bmap = problem.fit(jax.random.PRNGKey(0), progress=False)
            wall = time.perf_counter() - t
        rows.append(("otgen default fit", wall, bmap.h, f"{bmap.diagnostics.convergence.optimizer}, "
                     f"{len(bmap.diagnostics.history.l1)} Newton iterates", bmap))
        if k <= mc_max_k:  # the Monte-Carlo path, the default before the exact one
            t = time.perf_counter()
            mc = problem.fit(jax.random.PRNGKey(0), progress=False, exact=False, time_budget=mc_budget, warn=False)
            rows.append(("otgen Monte Carlo (exact=False)", time.perf_counter() - t, np.asarray(mc.h, np.float64),
                         mc.diagnostics.summary(), mc))
        if sdot_python:
            h, wall, ver = _sdot_solve(sdot_python, source, y, nu)
            from otgen.ot.brenier import BrenierMap

            rows.append((f"sdot {ver}", wall, h, "Newton on power diagrams, default tol",
                         BrenierMap(problem.targets, problem.weights, h, source)))
        for solver, wall, h, note, m in rows:
            l1 = float(np.abs(exact_masses(source, y, h) - nu / nu.sum()).sum())
            iid = ""
            if k <= iid_max_k:
                chk = independent_error(m, jax.random.PRNGKey(12345), 1 << 24)
                iid = f"{chk.l1:.4f} ({chk.noise_l1:.4f})"
            print(f"| {name} | {solver} | {wall:.3f} | {l1:.2e} | {iid} | {note} |", flush=True)


def devices_section(y: np.ndarray, n: int, repeats: int) -> None:
    """One estimate of ``n`` samples on one device vs spread over every device (one per core)."""
    print(f"\n== (e) one Monte-Carlo step on one device vs one device per core ({jax.local_device_count()} devices) ==")
    if jax.local_device_count() < 2:
        print("one device only (one core, or XLA_FLAGS set a count of 1): nothing to compare")
        return
    k, d = y.shape
    one = SemiDiscreteOT(Gaussian(d), y)
    spread = SemiDiscreteOT(Gaussian(d), y, mesh=sharding.default_mesh())
    h = one.initial_h("voronoi") / one.scale
    key = jax.random.key(0)
    times = {}
    for name, prob in (("one device", one), ("one device per core", spread)):
        times[name] = best_time(lambda prob=prob: prob._estimate(key, h, n, sampling="iid").masses, repeats=repeats)
    same = bool((np.asarray(one._estimate(key, h, n, sampling="iid").masses)
                 == np.asarray(spread._estimate(key, h, n, sampling="iid").masses)).all())
    for name, t in times.items():
        print(f"K = {k}, d = {d}, {n} samples | {name:<20} {t:8.3f} s  ({t / (n * k) * 1e9:.3f} ns per pair)")
    print(f"speed-up of one device per core: {times['one device'] / times['one device per core']:.2f}x; "
          f"identical masses: {same}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small shapes and budgets (smoke run)")
    p.add_argument("--section", choices=["kernel", "accuracy", "large", "lowdim", "devices", "all"], default="all")
    p.add_argument("--sdot-python", default=None,
                   help="(d): a Python >= 3.12 with sdot installed (scripts/sdot_runner.py runs in it)")
    p.add_argument("--codes", default=None, help="(c): a (K, d) .npy of autoencoder codes to add as a problem")
    p.add_argument("--large-budget", type=float, default=None, help="(c): wall-time budget per run (s)")
    p.add_argument("--budget", type=float, default=None, help="wall-time budget per optimizer run (s)")
    p.add_argument("--no-peers", action="store_true", help="(c): only ours and the AE-OT recipe")
    args = p.parse_args(argv)
    if args.section in ("devices", "all"):  # before JAX starts its CPU client; one-device runs are unaffected
        sharding.one_device_per_core()
    print(f"machine: {platform.processor() or platform.machine()}, {jax.device_count()} x "
          f"{jax.devices()[0].device_kind}, jax {jax.__version__}")
    if args.section in ("kernel", "all"):
        shapes = ([(2048, 12000, 64), (16384, 1000, 2)] if args.quick
                  # MNIST quick (d = 16), Stacked (K = 128,000, d = 32), the paper preset (d = 100), a 2-D toy
                  else [(8192, 60000, 16), (8192, 128000, 32), (8192, 60000, 64), (8192, 60000, 100), (65536, 1000, 2)])
        kernel_section(shapes, repeats=2 if args.quick else 5)
    if args.section in ("devices", "all"):
        y = np.load(args.codes) if args.codes else np.random.default_rng(1).standard_normal((60_000, 16))
        devices_section(whitened(y) if args.codes else y.astype(np.float32), 1 << (13 if args.quick else 16),
                        repeats=2 if args.quick else 3)
    if args.section in ("accuracy", "all"):
        if args.quick:
            accuracy_section(k=200, tol=0.02, budget=args.budget or 10.0, eval_log2=18, aeot_lrs=[1e-3],
                             aeot_batch=1 << 14, pot_iters=[10_000], pot_log2=13)
        else:
            accuracy_section(k=1000, tol=0.01, budget=args.budget or 150.0, eval_log2=22,
                             aeot_lrs=[1e-4, 1e-3], aeot_batch=1 << 16, pot_iters=[10_000, 100_000, 500_000],
                             pot_log2=16)
    if args.section in ("lowdim", "all"):
        lowdim_section(args.sdot_python, args.quick)
    if args.section in ("large", "all"):
        k = 4000 if args.quick else 10_000
        y = (1.5 * np.random.default_rng(1).standard_normal((k, 16))).astype(np.float32)
        problems = [(f"Gaussian 1.5 N(0,I), K={k}, d=16", y)]
        if args.codes:
            codes = np.load(args.codes)
            problems.append((f"codes {codes.shape[0]}x{codes.shape[1]} (whitened)", whitened(codes)))
        large_k_section(problems, args.large_budget or (20.0 if args.quick else 300.0),
                        check_log2=18 if args.quick else 21, peers=not args.no_peers,
                        sweep_budget=5.0 if args.quick else 20.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
