"""``otgen reproduce``: the GAN baselines at their authors' own toy settings and budgets.

    otgen reproduce --runs-dir runs/repro                     # run (or resume) every job, then report
    otgen reproduce --runs-dir runs/repro --shard 0/2 --threads 1 &   # two single-threaded workers
    otgen reproduce --runs-dir runs/repro --shard 1/2 --threads 1 &
    otgen reproduce --runs-dir runs/repro --report-only --report-dir experiments/reports
    otgen reproduce --runs-dir runs/repro --rescore --report-only   # re-sample runs scored under an older protocol
    otgen reproduce --suite images --runs-dir runs/repro --report-only --carry-to experiments/reproduction

Every job is ``otgen toy --preset published`` (which resumes its run directory) on ring8 / grid25 (100,000
training points, see ``otgen.training.TOY_PRESETS``): GAN and PacGAN-m 400,000
generator steps at batch 100, WGAN-GP and WGAN ``gan_toy.py``'s 100,000 steps.
Each job checkpoints every 1,000 steps and at its learning-curve steps, so a
killed worker -- or a fresh machine holding the run directories -- continues
where it stopped; a finished job (its ``metrics.json`` exists) is skipped.  AE-OT
is the reference row, in ``otgen toy``'s default setting (2,000 training points of the same toy): its
semi-discrete solve onto 100,000 targets in 2-D is out of this machine's reach (measured on ring8:
averaged SGD stood at chi2 301 after 300 s, 16 steps of 2^16 samples; damped Newton's L1 tol is
uncertifiable at that K, see :data:`AEOT_PRESET`).

``--suite images --data-dir DIR`` queues the DCGAN-family image jobs instead: ``otgen mnist --preset
paper`` for gan on MNIST (``gan_mnist.py``'s 200,000 steps) and gan / pacgan2 on Stacked MNIST (PacGAN's
100,000 iterations), each checkpointed every 500 steps and scored at the log-spaced curve steps (classes,
KL, FID / modes, KL); the report gains an images section (published Stacked rows: PacGAN Table 2).
An image GAN's exact checkpoint is ~31 MB (MNIST) / ~106 MB (Stacked), a toy GAN's ~11 MB; ``--carry-to DIR``
writes each unfinished GAN's compact *carry* checkpoint (:func:`otgen.training.save_carry`, ~1/5 of the size) and
its ``config.json`` into ``DIR``'s copy of the run directory: what a session commits so that another machine
continues the run (a resume reads the carry where no exact checkpoint is further on).

The report (``reproduction.md`` + ``reproduction_curves_<toy>.png`` +
``reproduction_samples.png``) puts our numbers next to PacGAN's Table 1 with a
verdict per row: *reproduced* when the mean HQ is >= 90% and the mean mode count
is within the published mean +- 1.5 (ring8) / +- 3 (grid25).  Jobs still running
are reported with the step they reached.

The queue itself (jobs, presets, run directories) is :mod:`experiments.reproduce_jobs`; reading the run
directories back, :mod:`experiments.reproduce_collect`; the report, :mod:`experiments.reproduce_report`.
JAX-backed modules (``otgen toy``, ``otgen mnist``, training, checkpoints, plotting) are imported inside the
functions that use them, here and in those modules, so ``otgen --help`` stays fast. ``--threads 1`` pins the
worker to one core (its shard's: shards 0 and 1 of two take cores 0 and 1): XLA's CPU client sizes its thread
pool by the cores the process may use, and its ``--xla_cpu_multi_thread_eigen=false`` flag no longer limits it
(measured: a 2048^2 float32 matmul ran at 197 GFLOP/s with the flag, 106 pinned, on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

from experiments.controls import run_mnist_controls, run_stacked_reference
from experiments.reproduce_jobs import (DISTS, IMAGE_DATASETS, IMAGE_JOBS, IMAGE_MODELS, JOBS, image_config, jobs,
                                              run_dir)
from experiments.reproduce_report import write_report

__all__ = ["AEOT_PRESET", "run_job", "run_image_job", "image_controls", "rescore_jobs", "carry_jobs", "pin_to_one_core",
           "add_arguments", "main"]


# AE-OT's row runs ``otgen toy``'s default preset (2,000 points): 100,000 targets in 2-D cost ~1 ns per
# sample-target pair, so a step of 2^16 samples is ~7-18 s and the Voronoi start on clustered targets
# needs thousands of them (chi2 301 after 300 s on ring8, measured 2026-12-02).
AEOT_PRESET = "default"


def run_job(runs_dir: Path, dist: str, model: str, seed: int, progress: bool = False) -> dict:
    """Run (or resume, or skip when finished) one job; returns its metrics."""
    from otgen.pipelines.toy import ToyRunConfig, run  # JAX: imported on use (module docstring)

    out = run_dir(runs_dir, dist, model, seed)
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    preset = AEOT_PRESET if model == "aeot" else "published"
    return run(ToyRunConfig(model=model, dist=dist, out=str(out), seed=seed, preset=preset, progress=progress))


def image_controls(runs_dir: Path, dataset: str, data_dir, log=print) -> None:
    """Score (once; cached in ``runs_dir``) the controls of ``dataset``'s rows, by the code that scores
    the models (:mod:`experiments.controls`): *real* held-out images (Stacked: 26,000 real stacked
    digits), a *replay* of the training set and, once AE-OT's reference run has its codes, its
    *reconstructions* of training images. The report reads them back
    (:func:`experiments.reproduce_collect.collect_image_controls`)."""
    aeot = image_config(runs_dir, dataset, "aeot", 0, data_dir)
    if dataset == "stacked":
        run_stacked_reference(runs_dir, data_dir, [0], log)
    run_mnist_controls(runs_dir, data_dir, aeot.n_samples, aeot, log, dataset=dataset)


def run_image_job(runs_dir: Path, dataset: str, model: str, seed: int, data_dir=None) -> dict:
    """Run (or resume, or skip when finished) one image job, after scoring its dataset's controls;
    returns its metrics."""
    from otgen.pipelines.mnist import run  # JAX: imported on use (module docstring)

    out = run_dir(runs_dir, dataset, model, seed)
    if (out / "metrics.json").exists():
        metrics = json.loads((out / "metrics.json").read_text())
    else:
        image_controls(runs_dir, dataset, data_dir)  # before a GAN's days of training, not after
        metrics = run(image_config(runs_dir, dataset, model, seed, data_dir))["metrics"]
    if model == "aeot":  # its codes are here now: the reconstructions control can be scored
        image_controls(runs_dir, dataset, data_dir)
    return metrics


def carry_jobs(runs_dir: Path, selected, dest: Path, images: bool, data_dir=None, log=print) -> list[Path]:
    """Write the carry checkpoint of every unfinished GAN job of ``selected`` that has an exact checkpoint
    into ``dest``'s copy of its run directory (with the run's ``config.json``); returns the carries written."""
    import shutil

    from otgen.pipelines.mnist_baselines import gan_config  # these import JAX: loaded on use (module docstring)
    from otgen.pipelines.toy import ToyRunConfig, _gan_config
    from otgen.training import CARRY_NAME, CHECKPOINT_NAME, save_carry

    written = []
    for dist, model, seed in selected:
        out = run_dir(runs_dir, dist, model, seed)
        where = Path("gan") if images else Path(".")  # the GAN's own directory inside the run directory
        if model == "aeot" or (out / "metrics.json").exists() or not (out / where / CHECKPOINT_NAME).exists():
            continue
        cfg = (gan_config(image_config(runs_dir, dist, model, seed, data_dir)) if images else
               _gan_config(ToyRunConfig(model=model, dist=dist, out=str(out), seed=seed, preset="published")))
        target = run_dir(dest, dist, model, seed)
        path = save_carry(out / where, cfg, to=target / where / CARRY_NAME)
        if (out / "config.json").resolve() != (target / "config.json").resolve():
            shutil.copyfile(out / "config.json", target / "config.json")
        log(f"{out.name}: carry checkpoint {path} ({path.stat().st_size / 1e6:.1f} MB)")
        written.append(path)
    return written


def rescore_jobs(runs_dir: Path, selected, log=print) -> None:
    """:func:`otgen.pipelines.toy.rescore` every finished GAN job of ``selected``; one that cannot be
    (no checkpoint kept) is named and left as it is."""
    from otgen.checkpoint import CheckpointError  # these import JAX: loaded on use (module docstring)
    from otgen.pipelines.toy import rescore

    for dist, model, seed in selected:
        out = run_dir(runs_dir, dist, model, seed)
        if model == "aeot" or not (out / "metrics.json").exists():
            continue
        try:
            m = rescore(out)
        except (ValueError, CheckpointError) as e:
            log(f"{out.name}: not re-scored ({e})")
            continue
        if m is None:
            continue
        p = m["rescored"]["previous"]
        log(f"{out.name}: re-scored with eval_bn_refresh {m['eval_bn_refresh']} (was "
            f"{m['rescored']['previous_eval_bn_refresh']}): modes {p.get('modes_captured')} -> {m['modes_captured']}, "
            f"HQ {100 * p.get('high_quality_fraction', float('nan')):.1f}% -> {100 * m['high_quality_fraction']:.1f}%, "
            f"KL {p.get('reverse_kl', float('nan')):.3f} -> {m['reverse_kl']:.3f}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default="runs/reproduction", help="where the jobs' run directories live "
                        "(default runs/reproduction)")
    parser.add_argument("--report-dir", default=None, help="write reproduction.md and its figures here "
                        "(default: the runs directory)")
    parser.add_argument("--suite", default="toy", choices=("toy", "images"),
                        help="toy: PacGAN's Table 1 jobs; images: the DCGAN jobs (needs the MNIST data)")
    parser.add_argument("--models", default=None, help=f"comma-separated (default toy {','.join(JOBS)}; "
                        f"images {','.join(IMAGE_MODELS)})")
    parser.add_argument("--dists", default=None, help=f"comma-separated toys (default {','.join(DISTS)}) or datasets "
                        f"(images: default {','.join(IMAGE_DATASETS)})")
    parser.add_argument("--data-dir", default=None, help="images: MNIST directory (default $OTGEN_DATA_DIR, "
                        "then ~/.cache/otgen/mnist)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per job (default 1)")
    parser.add_argument("--shard", default="0/1", metavar="I/N",
                        help="run only jobs i, i+N, i+2N, ... of the queue (start N workers for N shards)")
    parser.add_argument("--threads", type=int, default=None,
                        help="1: pin the worker to one core, its shard's (two such workers beat one two-threaded one on "
                        "2 cores)")
    parser.add_argument("--core", type=int, default=None,
                        help="with --threads 1: this core instead of the shard's (e.g. a toy worker beside an image one)")
    parser.add_argument("--report-only", action="store_true", help="only write the report from the run directories")
    parser.add_argument("--carry-to", default=None, metavar="DIR",
                        help="after the jobs, write each unfinished GAN's compact carry checkpoint into DIR's copy of "
                        "its run directory (what a session commits, e.g. experiments/reproduction)")
    parser.add_argument("--rescore", action="store_true",
                        help="toy: first re-sample and re-score the finished GAN jobs sampled under another protocol "
                        "than their preset's now (batch-norm refresh, otgen.pipelines.toy.rescore); old scores kept")


def pin_to_one_core(index: int = 0) -> int:
    """Restrict this process (and the threads it starts from now on) to one of the cores it may use,
    the ``index``-th modulo their number; returns that core. Call it before JAX creates its CPU client."""
    cores = sorted(os.sched_getaffinity(0))
    core = cores[index % len(cores)]
    os.sched_setaffinity(0, {core})
    return core


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(args: argparse.Namespace) -> int:
    try:
        index, count = (int(p) for p in args.shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N, got {args.shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard I/N needs 0 <= I < N, got {args.shard!r}")
    if args.threads is not None and args.threads != 1:
        raise ValueError(f"--threads takes 1 (one core per worker) or nothing (every core), got {args.threads}")
    if args.threads == 1:
        print(f"one core: pinned to CPU {pin_to_one_core(index if args.core is None else args.core)}", flush=True)
    elif args.core is not None:
        raise ValueError("--core goes with --threads 1")
    images = args.suite == "images"
    all_models, all_dists = (IMAGE_MODELS, IMAGE_DATASETS) if images else (JOBS, DISTS)
    models = [m for m in (args.models or ",".join(all_models)).split(",") if m]
    dists = [d for d in (args.dists or ",".join(all_dists)).split(",") if d]
    unknown = sorted(set(models) - set(all_models)) + sorted(set(dists) - set(all_dists))
    if unknown:
        raise ValueError(f"unknown model or {'dataset' if images else 'toy'} for --suite {args.suite}: "
                         f"{', '.join(unknown)} (models: {', '.join(all_models)}; "
                         f"{'datasets' if images else 'toys'}: {', '.join(all_dists)})")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    selected = ([(d, m, s) for s in range(args.seeds) for d, m in IMAGE_JOBS if d in dists and m in models]
                if images else jobs(models, dists, range(args.seeds)))
    if not selected:  # e.g. --suite images --dists mnist --models pacgan2: not one of the image jobs
        raise ValueError(f"no job matches --models {','.join(models)} --dists {','.join(dists)} (image jobs: "
                         + ", ".join(f"{d} {m}" for d, m in IMAGE_JOBS) + ")")
    runs_dir = Path(args.runs_dir)
    if args.rescore and not images:
        rescore_jobs(runs_dir, selected)
    if not args.report_only:
        # a worker stopped with SIGTERM (a session's end, `kill`) saves its last chunk as Ctrl-C does
        signal.signal(signal.SIGTERM, _interrupt)
        queue = selected[index::count]
        if not queue:
            print(f"shard {args.shard}: no job of the {len(selected)} selected falls to this worker", flush=True)
        for i, (dist, model, seed) in enumerate(queue):
            t0 = time.perf_counter()
            print(f"[{i + 1}/{len(queue)}] {dist} {model} seed {seed} ...", flush=True)
            if images:
                m = run_image_job(runs_dir, dist, model, seed, args.data_dir)
                print("    " + ", ".join(f"{k} {m[k]:.4g}" for k in ("classes_covered", "modes_covered",
                                                                     "kl_uniform", "fid") if k in m)
                      + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
                continue
            m = run_job(runs_dir, dist, model, seed)
            print(f"    modes {m.get('modes_captured')}/{m.get('n_modes')}, "
                  f"{100 * m.get('high_quality_fraction', float('nan')):.1f}% HQ, "
                  f"KL {m.get('reverse_kl', float('nan')):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.carry_to is not None:
        carry_jobs(runs_dir, selected, Path(args.carry_to), images, args.data_dir)
    command = f"otgen reproduce --runs-dir {runs_dir} --report-only --report-dir {args.report_dir or runs_dir}"
    path = write_report(runs_dir, Path(args.report_dir or runs_dir), command)
    print(f"wrote {path}")
    return 0
