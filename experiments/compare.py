"""``otgen compare``: AE-OT against the GAN family on mode coverage, with a generated report.

    otgen compare --suite toy   [--models ...] [--dists ...] [--seeds 3] [--steps N]
    otgen compare --suite mnist [--preset quick|paper] [--models ...] [--seeds 1] --data-dir DIR
    otgen compare --suite stacked [--preset quick|paper] [--models ...] [--seeds 1] --data-dir DIR

Every (model, distribution, seed) run gets its own run directory under
``--runs-dir`` (planned and read back by :mod:`experiments.compare_runs`); a run whose
``metrics.json`` exists is skipped, so an interrupted comparison resumes where it stopped.
Each run scores itself once, with :func:`otgen.eval.evaluate`, into its ``metrics.json``
(wall time included); the report (``<report-dir>/<suite>.md`` and PNG figures,
:mod:`experiments.report_toy`, :mod:`experiments.report_images`) only reads those
records and the control rows, scored by the same function.
What differs between suites is one row of :data:`SUITES`.  Nothing in a report
is typed by hand; its header names the command and the date.

This module runs the plan (:func:`execute`, with one runner per suite) and holds the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shlex
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

from otgen.cliargs import add_arguments as _add_config_arguments
from otgen.cliargs import option
from experiments.compare_runs import (ERROR_FILE, RunSpec, collect_mnist, collect_published_baselines,
                                            collect_toy, get_toy, is_done, plan)
from experiments.controls import run_mnist_controls, run_stacked_reference
from experiments.report_images import write_mnist_report, write_stacked_report
from experiments.report_toy import FLOW_MODELS, write_toy_report
from otgen.generators import names as generator_names

__all__ = ["TOY_MODELS", "DEFAULT_TOY_DISTS", "execute", "toy_runner", "mnist_runner", "SUITES", "add_arguments",
           "main"]


TOY_MODELS = ("aeot", "gan", "wgan", "wgan-gp", "pacgan2", "pacgan3", "pacgan4") + FLOW_MODELS
DEFAULT_TOY_DISTS = ("ring8", "grid25", "ring8_unequal", "nested_rings")
# The quick image suites: AE-OT first (the latent flows decode with its autoencoder and take its map),
# all within 30 min on 2 cores at the quick budgets (wgan-gp, at 1.4 steps/s, would not fit).  Stacked
# MNIST keeps the suite its report ran.
MNIST_QUICK_MODELS = ("aeot", "sdfm", "fm", "gan", "pacgan2")
STACKED_QUICK_MODELS = ("aeot", "gan", "pacgan2")


# ----------------------------------------------------------------------------------------------
# running


def execute(specs: list[RunSpec], runner: Callable[[RunSpec], Any], log: Callable[[str], None] = print,
            ) -> dict[str, int]:
    """Run every spec that has no ``metrics.json`` yet; record wall time or the error in its run dir.

    A failing run (a diverged GAN, a missing module) does not stop the others:
    its traceback goes to ``compare_error.json`` and it is retried next time.
    """
    from otgen.rundir import RunDir  # imports JAX: loaded when runs are made, not for --help

    counts = {"ran": 0, "skipped": 0, "failed": 0}
    total = len(specs)
    t_start = time.perf_counter()
    for i, spec in enumerate(specs, 1):
        label = f"[{i}/{total}] {spec.dist} {spec.model} seed {spec.seed}"
        if is_done(spec):
            counts["skipped"] += 1
            log(f"{label}: metrics.json exists, skipped")
            continue
        rd = RunDir(spec.out)
        log(f"{label}: running ...")
        t0 = time.perf_counter()
        try:
            runner(spec)
        except Exception as e:  # noqa: BLE001 - one failed run must not sink the comparison
            counts["failed"] += 1
            rd.write_json(ERROR_FILE, {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                                       "seconds": round(time.perf_counter() - t0, 2)})
            log(f"{label}: FAILED after {time.perf_counter() - t0:.1f} s: {type(e).__name__}: {e}")
            continue
        seconds = time.perf_counter() - t0
        if rd.has(ERROR_FILE):
            rd.file(ERROR_FILE).unlink()
        counts["ran"] += 1
        elapsed = time.perf_counter() - t_start
        log(f"{label}: done in {seconds:.1f} s ({elapsed / 60:.1f} min elapsed)")
    return counts


def _filtered_kwargs(cls, **kwargs) -> dict:
    """Keep the keyword arguments ``cls`` (a dataclass) accepts; ``None`` values are dropped."""
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set(kwargs)
    return {k: v for k, v in kwargs.items() if k in names and v is not None}


def toy_runner(n_samples: int, steps: int | None) -> Callable[[RunSpec], Any]:
    """Each toy run is ``otgen toy`` (:func:`otgen.pipelines.toy.run`) with the spec's model, toy and seed."""

    def run_one(spec: RunSpec):
        from otgen.pipelines.toy import ToyRunConfig, run  # JAX: loaded when a run is made

        return run(ToyRunConfig(**_filtered_kwargs(ToyRunConfig, model=spec.model, dist=spec.dist, out=str(spec.out),
                                                   seed=spec.seed, n_samples=n_samples, steps=steps,
                                                   progress=False)))

    return run_one


def mnist_runner(preset: str, data_dir, n_samples: int | None, gan_steps: int | None,
                 progress: bool, dataset: str = "mnist") -> Callable[[RunSpec], Any]:
    """Each image run is ``otgen mnist`` (:func:`otgen.pipelines.mnist.run`) on ``dataset``."""

    def run_one(spec: RunSpec):
        from otgen.pipelines.mnist import make_config, run  # JAX: loaded when a run is made

        # --gan-steps is the GANs' budget only: the other models' configurations (and run directories)
        # stay the preset's.
        steps = gan_steps if spec.model not in ("aeot",) + FLOW_MODELS else None
        # A latent flow decodes through AE-OT's autoencoder of the same seed when that run has one: the
        # comparison then isolates the latent generator, and the suite trains one autoencoder, not four.
        aeot = spec.out.parent.parent / "aeot" / spec.out.name
        stages = aeot / "stages.json"
        ae_from = (str(aeot) if spec.model in FLOW_MODELS and stages.exists()
                   and "encode" in json.loads(stages.read_text()) else None)
        return run(make_config(preset, model=spec.model, dataset=dataset, out=str(spec.out), data_dir=data_dir,
                               seed=spec.seed, n_samples=n_samples, gan_steps=steps, progress=progress,
                               ae_from=ae_from))

    return run_one


# ----------------------------------------------------------------------------------------------
# command line


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """The flags of ``otgen compare`` (``main`` reads them by name from the parsed arguments)."""

    suite: str = option("toy", "which comparison: toy (2-D mixtures), mnist, fashion (Fashion-MNIST), stacked "
                        "(Stacked MNIST)", choices=("toy", "mnist", "fashion", "stacked"), required=True)
    models: str | None = option(None, f"comma-separated models (default: toy all of {','.join(TOY_MODELS)}; "
                                f"mnist/fashion quick {','.join(MNIST_QUICK_MODELS)}; stacked quick "
                                f"{','.join(STACKED_QUICK_MODELS)})", preset_default=True)
    dists: str | None = option(None, f"toy distributions (default {','.join(DEFAULT_TOY_DISTS)})",
                               preset_default=True)
    seeds: int | None = option(None, "number of seeds 0..N-1 (default: toy 3, mnist/stacked 1)", preset_default=True)
    steps: int | None = option(None, "toy: training steps per run (default: each model's preset)",
                               preset_default=True)
    n_samples: int | None = option(None, "samples per run (default: toy 2500 as PacGAN; mnist 10000; stacked "
                                   "26000)", preset_default=True)
    preset: str = option("quick", "mnist / stacked preset", choices=("quick", "paper"))
    gan_steps: int | None = option(None, "mnist / stacked: the GANs' steps (default: the preset's)",
                                   preset_default=True)
    data_dir: str | None = option(None, "MNIST IDX directory, mnist / stacked suites (default: $OTGEN_DATA_DIR, "
                                  "then ~/.cache/otgen/mnist)", preset_default=True)
    runs_dir: str = option("runs/compare", "where the run directories go (git-ignored)")
    report_dir: str = option("experiments/reports", "where the report .md / .png go")
    report_only: bool = option(False, "write the report from the existing runs only (run nothing)")
    report_name: str | None = option(None, "the report's file name without .md (default: the suite's name; not stacked)",
                                     preset_default=True)
    baselines_dir: str | None = option(None, "toy: an `otgen reproduce` runs directory whose finished jobs (the "
                                       "GANs at their authors' budgets) join the report as rows", preset_default=True)
    quiet: bool = option(False, "no log lines or progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_arguments(parser, CompareConfig)


def _aeot_config(specs: list[RunSpec], args: argparse.Namespace, dataset: str):
    """The MnistConfig of the suite's first AE-OT run (for its reconstructions control), or None."""
    aeot = next((sp for sp in specs if sp.model == "aeot"), None)
    if aeot is None:
        return None
    from otgen.pipelines.mnist import make_config  # imports JAX: loaded on use

    return make_config(args.preset, model="aeot", dataset=dataset, out=str(aeot.out), data_dir=args.data_dir)


def _csv(value: str | None, default: Iterable[str]) -> list[str]:
    return list(default) if not value else [v.strip() for v in value.split(",") if v.strip()]


# ----------------------------------------------------------------------------------------------
# the suites: what each runs by default, how one run is made, how the report is written


def _toy_report(args, specs, models, dists, seeds, n_samples, report_dir, command, log) -> Path:
    budget = (f"{seeds} seeds x {len(models)} models x {len(dists)} distributions, "
              f"{n_samples} samples per run, steps {args.steps if args.steps else 'runner default'}")
    records = collect_toy(specs, get_toy)
    if args.baselines_dir:
        baselines = collect_published_baselines(Path(args.baselines_dir), dists)
        models = list(models) + [m for m in dict.fromkeys(r["model"] for r in baselines)]
        records += baselines
        budget += (f". Rows *(published budget)*: the finished `otgen reproduce` jobs in `{args.baselines_dir}`, "
                   "each GAN in its authors' own 2-D setting and budget (PacGAN's code: 400,000 generator steps at "
                   "batch 100; `gan_toy.py`: WGAN-GP / WGAN 100,000 steps at batch 256), trained on 100,000 "
                   "points and scored by the same code on 2,500 samples; see `reproduction.md`")
    return write_toy_report(records, models, dists, report_dir, command, get_toy=get_toy,
                            budget=budget, name=args.report_name or "toy")


def _image_budget(args, models, seeds) -> str:
    return f"preset {args.preset}, {seeds} seed(s) x {len(models)} models" + (
        f", GAN steps {args.gan_steps}" if args.gan_steps else "")


def _mnist_report(args, specs, models, dists, seeds, n_samples, report_dir, command, log,
                  dataset: str = "mnist") -> Path:
    controls = run_mnist_controls(Path(args.runs_dir), args.data_dir, n_samples, _aeot_config(specs, args, dataset),
                                  log, dataset=dataset)
    return write_mnist_report(collect_mnist(specs), models, report_dir, command, controls=controls,
                              budget=_image_budget(args, models, seeds), dataset=dataset, name=args.report_name)


def _stacked_report(args, specs, models, dists, seeds, n_samples, report_dir, command, log) -> Path:
    reference = run_stacked_reference(Path(args.runs_dir), args.data_dir, list(range(seeds)), log)
    controls = run_mnist_controls(Path(args.runs_dir), args.data_dir, n_samples,
                                  _aeot_config(specs, args, "stacked"), log, dataset="stacked")
    return write_stacked_report(reference, report_dir, command, collect_mnist(specs, metric="modes_covered"),
                                models, _image_budget(args, models, seeds), controls)


@dataclasses.dataclass(frozen=True)
class Suite:
    """One row of :data:`SUITES`."""

    models: Callable[[str], tuple[str, ...]]  # preset -> the default models
    dists: tuple[str, ...] | None  # toy distributions; None: one image dataset
    seeds: int  # default number of seeds
    n_samples: int  # default samples per run
    runner: Callable[[argparse.Namespace, int], Callable[[RunSpec], Any]]  # (args, n_samples) -> run one spec
    report: Callable[..., Path]


def _image_runner(dataset: str):
    return lambda args, n: mnist_runner(args.preset, args.data_dir, args.n_samples, args.gan_steps,
                                        not args.quiet, dataset=dataset)


SUITES: dict[str, Suite] = {
    "toy": Suite(models=lambda preset: TOY_MODELS, dists=DEFAULT_TOY_DISTS, seeds=3, n_samples=2500,
                 runner=lambda args, n: toy_runner(n, args.steps), report=_toy_report),
    "mnist": Suite(models=lambda preset: MNIST_QUICK_MODELS if preset == "quick" else TOY_MODELS, dists=None,
                   seeds=1, n_samples=10_000, runner=_image_runner("mnist"), report=_mnist_report),
    "fashion": Suite(models=lambda preset: MNIST_QUICK_MODELS if preset == "quick" else TOY_MODELS, dists=None,
                     seeds=1, n_samples=10_000, runner=_image_runner("fashion"),
                     report=functools.partial(_mnist_report, dataset="fashion")),
    "stacked": Suite(models=lambda preset: STACKED_QUICK_MODELS if preset == "quick" else TOY_MODELS, dists=None,
                     seeds=1, n_samples=26_000, runner=_image_runner("stacked"), report=_stacked_report),
}


def _command(args: argparse.Namespace, models, dists, seeds: int) -> str:
    parts = ["otgen", "compare", "--suite", args.suite]
    if args.suite == "toy":
        parts += ["--models", ",".join(models), "--dists", ",".join(dists), "--seeds", str(seeds)]
        if args.steps is not None:
            parts += ["--steps", str(args.steps)]
        if args.baselines_dir:
            parts += ["--baselines-dir", args.baselines_dir]
    else:
        parts += ["--preset", args.preset, "--models", ",".join(models), "--seeds", str(seeds)]
        if args.gan_steps is not None:
            parts += ["--gan-steps", str(args.gan_steps)]
    if args.report_name:
        parts += ["--report-name", args.report_name]
    if args.n_samples is not None:
        parts += ["--n-samples", str(args.n_samples)]
    if args.data_dir:
        parts += ["--data-dir", "DATA_DIR"]  # the local path says nothing about the results
    parts += ["--runs-dir", args.runs_dir, "--report-dir", args.report_dir]
    return shlex.join(parts)


def main(args: argparse.Namespace) -> int:
    log = (lambda msg: None) if args.quiet else (lambda msg: print(f"[otgen compare] {msg}", flush=True))
    suite = SUITES[args.suite]
    models = _csv(args.models, suite.models(args.preset))
    for m in models:
        if m not in generator_names():
            raise ValueError(f"unknown model {m!r}; models are {', '.join(generator_names())}")
    seeds = args.seeds if args.seeds is not None else suite.seeds
    n_samples = args.n_samples or suite.n_samples
    if seeds < 1 or n_samples < 1:
        raise ValueError("--seeds and --n-samples must be >= 1")
    if suite.dists is None:
        dists = [args.preset]  # one image dataset: the runs are grouped by preset
    else:
        dists = _csv(args.dists, suite.dists)
        for d in dists:
            get_toy(d)  # unknown names fail now, not after an hour of training
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    specs = plan(args.suite, Path(args.runs_dir), models, dists, range(seeds))
    if not args.report_only:
        log(f"runs: {execute(specs, suite.runner(args, n_samples), log)}")
    command = _command(args, models, dists if suite.dists is not None else [], seeds)
    path = suite.report(args, specs, models, dists, seeds, n_samples, report_dir, command, log)
    log(f"report {path} written ({time.perf_counter() - t0:.1f} s)")
    return 0
