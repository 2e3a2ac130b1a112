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
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from otgen.train import GAN_MODELS, GANConfig, init_state, make_chunk_runner, make_fit_step, make_train_step


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    p.add_argument("--chunk", type=int, default=100, help="steps per jitted scan (train_gan's log_every)")
    p.add_argument("--budget", type=int, default=10_000, help="report the implied time for this many steps")
    p.add_argument("--models", nargs="*", default=list(GAN_MODELS))
    p.add_argument("--skip-dispatch", action="store_true", help="only the per-model table")
    args = p.parse_args(argv)
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
