"""Benchmark the GAN training loop on a 2-D toy (CPU by default).

Two measurements, all in this one process:

1. How to drive the steps (for an n_critic = 5 model and an n_critic = 1 model):
   A. ``lax.scan`` over a chunk of steps inside one ``jax.jit`` (what ``train_gan`` does),
   B. one jitted step per Python iteration (critic loop as a ``scan`` inside it),
   C. a jitted critic step and a jitted generator step called from Python
      (n_critic + 1 dispatches per step, plus the minibatch draws).
   Printed as steps/s and as ratios to A.
2. Steps/s of every model with the loop of ``train_gan`` (A) at the given batch
   size, and the implied time for ``--budget`` steps.

Compilation is excluded (one warm-up call per variant).  Usage::

    nice python scripts/bench_gan.py --batch 500 --steps 200

With ``--images`` it measures the 28x28 networks instead: the strided
(transposed) convolutions of ``otgen.models.layers`` against Flax's
``nn.Conv``/``nn.ConvTranspose`` (the same function) in one DCGAN gradient
evaluation (both players, batch ``--image-batch``) and one training step of the
``paper`` autoencoder (batch 512), then steps/s of ``train_gan``'s loop for
each model on MNIST-shaped data::

    nice python scripts/bench_gan.py --images --image-batch 50

With ``--stacked`` it measures iterations/s of the Stacked-MNIST GANs in PacGAN's
own setting (``IMAGE_PRESETS["stacked"]``: carpedm20's DCGAN at batch 64, one D and
two G updates per iteration) and the implied time for the published 100,000, against
a floor: the iteration's floating-point work (XLA's cost analysis of the compiled
step) at the rate this process multiplies two 2048 x 2048 float32 matrices -- the
best these cores do in float32 -- so "% of floor" says how much faster the step could
possibly get without changing its arithmetic.  ``--threads 1`` measures what the
single-threaded ``otgen reproduce`` worker gets::

    nice python scripts/bench_gan.py --stacked --chunk 5 --threads 1

With ``--coverage`` it instead trains every model for ``--budget`` steps on the
PacGAN paper's 2-D mixtures (ring8: 8 modes on the unit circle, std 0.01;
grid25: 5x5 grid of spacing 2, std 0.05; 100,000 training points as in the
paper's code) and scores 2,500 samples with ``otgen.eval.modes.mode_coverage``
(modes with a sample within 3 std, % high-quality samples, reverse KL); each run
directory under ``--out`` keeps the checkpoint, loss curve, samples.npy,
a scatter plot and metrics.json::

    nice python scripts/bench_gan.py --coverage --budget 3000 --batch 100
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from otgen.training import GAN_MODELS, GANConfig, init_state, make_fit_step, make_train_step
from otgen.training.steps import make_chunk_runner


def ring8(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angle = rng.integers(0, 8, n) * 2 * np.pi / 8
    return (np.stack([np.cos(angle), np.sin(angle)], 1) + 0.01 * rng.standard_normal((n, 2))).astype(np.float32)


def block(tree):
    jax.tree_util.tree_map(lambda x: x.block_until_ready(), tree)


def time_scan(cfg, data, steps, chunk):
    run = make_chunk_runner(cfg)
    state = init_state(cfg)
    block(run(state, data, chunk))  # compile
    t = time.perf_counter()
    done = 0
    while done < steps:
        state, metrics = run(state, data, chunk)
        done += chunk
    block((state, metrics))
    return done / (time.perf_counter() - t)


def time_per_step(cfg, data, steps):
    step = jax.jit(make_fit_step(cfg))
    state = init_state(cfg)
    block(step(state, data))
    t = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, data)
    block((state, metrics))
    return steps / (time.perf_counter() - t)


def time_split_players(cfg, data, steps):
    critic_step, generator_step = make_train_step(cfg, players=True)
    critic_step, generator_step = jax.jit(critic_step), jax.jit(generator_step)

    @jax.jit
    def draw(key):
        idx = jax.random.randint(key, (cfg.pack, cfg.batch_size), 0, data.shape[0])
        return data[idx]

    def one(state, key):
        for k in jax.random.split(key, cfg.n_critic):
            k_data, k_step = jax.random.split(k)
            state, _ = critic_step(state, draw(k_data), k_step)
        return generator_step(state, jax.random.fold_in(key, 1))

    state = init_state(cfg)
    block(one(state, jax.random.key(0)))
    keys = jax.random.split(jax.random.key(1), steps)
    t = time.perf_counter()
    for k in keys:
        state, g_loss = one(state, k)
    block((state, g_loss))
    return steps / (time.perf_counter() - t)


def time_call(fn, *args, repeats: int = 3) -> float:
    """Seconds per call of a jitted ``fn`` (compilation excluded)."""
    block(fn(*args))
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    block(out)
    return (time.perf_counter() - t) / repeats


def images(args) -> int:
    import flax.linen as nn
    import optax

    from otgen.models import autoencoder as ae
    from otgen.models.gan import DCGANDiscriminator, DCGANGenerator
    from otgen.models.gan_losses import gan_discriminator_loss, gan_generator_loss

    b = args.image_batch
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"jax {jax.__version__} on {jax.default_backend()}")
    print("\n## seconds per gradient evaluation: Flax convolutions vs otgen.models.layers (same function)")
    print(f"{'workload':40s} {'flax':>9s} {'otgen':>9s} {'speed-up':>9s}")
    key = jax.random.key(0)
    real = jax.random.uniform(key, (b, 28, 28, 1))
    z = jax.random.normal(key, (b, 128))
    timings = {}
    for name, conv, conv_t in (("flax", nn.Conv, nn.ConvTranspose), ("otgen", None, None)):
        kw_g = {} if conv_t is None else {"conv_transpose": conv_t}
        kw_d = {} if conv is None else {"conv": conv}
        g, d = DCGANGenerator(**kw_g), DCGANDiscriminator(**kw_d)
        g_vars = g.init(key, z, train=False)
        d_vars = d.init(key, real)

        def joint(g_params, d_params, g=g, d=d, g_vars=g_vars):
            fake, _ = g.apply({"params": g_params, "batch_stats": g_vars["batch_stats"]}, z, train=True,
                              mutable=["batch_stats"])
            d_loss = gan_discriminator_loss(d.apply({"params": d_params}, real),
                                            d.apply({"params": d_params}, jax.lax.stop_gradient(fake)))
            g_loss = gan_generator_loss(d.apply({"params": jax.lax.stop_gradient(d_params)}, fake))
            return d_loss + g_loss

        grad = jax.jit(jax.grad(joint, argnums=(0, 1)))
        timings[("dcgan", name)] = time_call(grad, g_vars["params"], d_vars["params"])

        cfg = ae.AEConfig(latent_dim=100, features=(64, 128), hidden=1024, loss="mse", l1=1e-5)
        kw = {} if conv is None else {"conv": conv, "conv_transpose": conv_t}
        model = ae.Autoencoder(cfg.latent_dim, cfg.features, cfg.hidden, **kw)
        opt = optax.adam(1e-3)
        state = ae.init_train_state(key, model, opt)
        step = jax.jit(ae.make_train_step(model, opt, cfg))
        x = jax.random.uniform(key, (512, 28, 28, 1))
        timings[("ae", name)] = time_call(step, state, x, repeats=2)
    for work, label in (("dcgan", f"DCGAN G+D gradients, batch {b}"), ("ae", "paper AE train step, batch 512")):
        f, o = timings[(work, "flax")], timings[(work, "otgen")]
        print(f"{label:40s} {f:8.3f}s {o:8.3f}s {f / o:8.1f}x")

    print(f"\n## steps/s per model on 28x28 images (train_gan's loop, batch {b})")
    print(f"{'model':10s} {'steps/s':>9s} {'s/step':>9s} {f'{args.budget} steps':>12s}")
    data = jax.random.uniform(key, (5000, 28, 28, 1))
    for model in args.models:
        cfg = GANConfig.for_mnist(model, batch_size=b, log_every=args.chunk)
        rate = time_scan(cfg, data, args.chunk, args.chunk)
        print(f"{model:10s} {rate:9.2f} {1 / rate:9.3f} {args.budget / rate / 60:9.1f} min", flush=True)
    return 0


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOP/s of one n x n matrix product, best of ``repeats`` (compilation excluded)."""
    a, b = jax.random.normal(jax.random.key(0), (n, n)), jax.random.normal(jax.random.key(1), (n, n))
    f = jax.jit(jnp.matmul)
    return 2 * n ** 3 / time_call(f, a, b, repeats=repeats) / 1e9


def iteration_gflop(cfg, state, data) -> float:
    """XLA's count of the floating-point operations of one compiled training iteration, in GFLOP."""
    costs = make_chunk_runner(cfg).lower(state, data, 1).compile().cost_analysis()
    costs = costs[0] if isinstance(costs, (list, tuple)) else costs
    return float(costs["flops"]) / 1e9


def stacked(args) -> int:
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"jax {jax.__version__} on {jax.default_backend()}, cores: {len(os.sched_getaffinity(0))}")
    peak = matmul_gflops()
    print(f"float32 matmul (2048 x 2048), this process: {peak:.1f} GFLOP/s (the floor's rate)")
    print("\n## iterations/s on Stacked MNIST, PacGAN's setting (IMAGE_PRESETS['stacked'], batch 64)")
    print(f"{'model':10s} {'it/s':>9s} {'s/it':>9s} {'100,000 it':>12s} {'GFLOP/it':>9s} {'GFLOP/s':>8s} "
          f"{'floor s/it':>10s} {'% of floor':>10s}")
    data = jax.random.uniform(jax.random.key(0), (2000, 28, 28, 3))
    for model in [m for m in args.models if m in ("gan", "pacgan2", "pacgan3", "pacgan4")]:
        cfg = GANConfig.for_mnist(model, preset="stacked", sample_shape=(28, 28, 3), log_every=args.chunk)
        rate = time_scan(cfg, data, args.chunk, args.chunk)
        work = iteration_gflop(cfg, init_state(cfg), data)
        floor = work / peak
        print(f"{model:10s} {rate:9.3f} {1 / rate:9.3f} {100_000 / rate / 3600:9.1f} h {work:9.1f} "
              f"{work * rate:8.1f} {floor:10.3f} {100 * floor * rate:9.0f}%", flush=True)
    return 0


def pacgan_mixture(name: str) -> tuple[np.ndarray, float]:
    """Mode centres and std of the PacGAN paper's 2-D mixtures (from its public config)."""
    if name == "ring8":
        t = 2 * np.pi * np.arange(8) / 8
        return np.stack([np.cos(t), np.sin(t)], 1), 0.01
    if name == "grid25":
        g = np.arange(-4, 5, 2, dtype=np.float64)
        return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2), 0.05
    raise ValueError(f"unknown mixture {name!r}")


def coverage(args) -> int:
    from pathlib import Path

    from otgen.eval.modes import mode_coverage
    from otgen.plotting import scatter_over_data
    from otgen.rundir import RunDir
    from otgen.training import train_gan

    print(f"# {args.budget} steps, batch {args.batch}, seed {args.seed}; 2,500 samples scored")
    print(f"{'dist':7s} {'model':8s} {'modes':>6s} {'strict':>6s} {'HQ %':>6s} {'rev KL':>7s} {'steps/s':>8s}")
    for dist in args.dists:
        centres, std = pacgan_mixture(dist)
        rng = np.random.default_rng(args.seed)
        data = (centres[rng.integers(0, len(centres), 100_000)]
                + std * rng.standard_normal((100_000, 2))).astype(np.float32)
        for model in args.models:
            cfg = GANConfig.for_toy(model, steps=args.budget, seed=args.seed, batch_size=args.batch)
            run = RunDir(Path(args.out) / dist / model / f"seed{args.seed}")
            result = train_gan(cfg, data, run.path, resume=True, checkpoint_every=1000, progress=False)
            samples = result.sample(jax.random.key(args.seed + 12345), 2500)
            m = mode_coverage(samples, centres, std)
            rate = args.budget / result.train_seconds if result.train_seconds > 0 else float("nan")
            run.write_config(cfg, cfg.seed)
            run.save_array("samples.npy", samples)
            run.write_json("metrics.json", {**m, "steps_per_second": rate, "dist": dist})
            scatter_over_data(samples, data[:2500], run.file("samples.png"),
                              title=f"{model} on {dist}: {m['modes_captured']}/{len(centres)} modes, "
                                    f"{100 * m['high_quality_fraction']:.1f}% HQ")
            print(f"{dist:7s} {model:8s} {m['modes_captured']:6d} {m['modes_captured_strict']:6d} "
                  f"{100 * m['high_quality_fraction']:6.1f} {m['reverse_kl']:7.3f} {rate:8.1f}", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    p.add_argument("--chunk", type=int, default=100, help="steps per jitted scan (train_gan's log_every)")
    p.add_argument("--budget", type=int, default=10_000, help="report the implied time for this many steps")
    p.add_argument("--models", nargs="*", default=list(GAN_MODELS))
    p.add_argument("--skip-dispatch", action="store_true", help="only the per-model table")
    p.add_argument("--coverage", action="store_true", help="train --budget steps and score mode coverage")
    p.add_argument("--dists", nargs="*", default=["ring8", "grid25"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench_gan", help="run directories for --coverage")
    p.add_argument("--images", action="store_true", help="28x28 networks: layer comparison and steps/s")
    p.add_argument("--stacked", action="store_true", help="Stacked-MNIST GANs in PacGAN's setting: iterations/s")
    p.add_argument("--image-batch", type=int, default=50)
    p.add_argument("--threads", type=int, default=None, help="1: one core, as an otgen reproduce --threads 1 worker")
    args = p.parse_args(argv)
    if args.threads == 1:  # before JAX creates its CPU client (the first computation below), as otgen reproduce does
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: the harness
        from experiments.reproduce import pin_to_one_core

        pin_to_one_core(0)
    if args.stacked:
        return stacked(args)
    if args.images:
        return images(args)
    if args.coverage:
        return coverage(args)
    steps = max(args.chunk, args.steps // args.chunk * args.chunk)

    data = jnp.asarray(ring8(50_000))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"jax {jax.__version__} on {jax.default_backend()}; batch {args.batch}, {steps} timed steps")

    if not args.skip_dispatch:
        print("\n## driving the steps, alternating updates (higher is better; ratio = variant / A)")
        print(f"{'model':10s} {'A scan chunk':>14s} {'B jit/step':>12s} {'C split G/D':>12s}   ratios B/A C/A")
        for model in ("wgan-gp", "gan"):
            cfg = GANConfig.for_toy(model, batch_size=args.batch, log_every=args.chunk, simultaneous=False)
            a = time_scan(cfg, data, steps, args.chunk)
            b = time_per_step(cfg, data, steps)
            c = time_split_players(cfg, data, steps)
            print(f"{model:10s} {a:12.1f}/s {b:10.1f}/s {c:10.1f}/s   {b / a:.2f} {c / a:.2f}")
        cfg = GANConfig.for_toy("gan", batch_size=args.batch, log_every=args.chunk)
        sim = time_scan(cfg, data, steps, args.chunk)
        alt = time_scan(dataclasses.replace(cfg, simultaneous=False), data, steps, args.chunk)
        print(f"gan, simultaneous (PacGAN reference) vs alternating updates: {sim:.1f}/s vs {alt:.1f}/s, "
              f"ratio {sim / alt:.2f}")

    print(f"\n## steps/s per model (train_gan's loop, batch {args.batch})")
    print(f"{'model':10s} {'steps/s':>9s} {'ms/step':>9s} {f'{args.budget} steps':>12s}")
    for model in args.models:
        cfg = GANConfig.for_toy(model, batch_size=args.batch, log_every=args.chunk)
        rate = time_scan(cfg, data, steps, args.chunk)
        print(f"{model:10s} {rate:9.1f} {1000 / rate:9.2f} {args.budget / rate / 60:9.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
