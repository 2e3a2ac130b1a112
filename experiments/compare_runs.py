"""The run directories of ``otgen compare``: the plan, and the records read back from it.

:func:`plan` gives each (distribution, model, seed) of a suite a :class:`RunSpec` and its own run directory,
``<runs_dir>/<suite>/<dist>/<model>/seed<seed>``; a run is done when its ``metrics.json`` exists
(:func:`is_done`), and a failed one keeps its error in :data:`ERROR_FILE`.  The collectors turn those
directories into the records the report writers (:mod:`experiments.report_toy`,
:mod:`experiments.report_images`) read: :func:`collect_toy` (with the toys' control rows),
:func:`collect_mnist` (the image suites), :func:`collect_published_baselines` (the finished jobs of an
``otgen reproduce`` runs directory).  Running the plan is :mod:`experiments.compare`'s.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from otgen.eval.modes import with_between_modes_fraction
from experiments.controls import toy_controls
from experiments.reproduce_jobs import JOBS

__all__ = ["ERROR_FILE", "RunSpec", "plan", "is_done", "get_toy", "collect_toy", "BASELINE_TAG",
           "collect_published_baselines", "collect_mnist"]


ERROR_FILE = "compare_error.json"  # a failed run's error and traceback, in its run directory


@dataclasses.dataclass(frozen=True)
class RunSpec:
    suite: str
    model: str
    dist: str  # toy name; "mnist" / "stacked" for the image suites
    seed: int
    out: Path


def plan(suite: str, runs_dir: Path, models: Iterable[str], dists: Iterable[str], seeds: Iterable[int],
         tag: str = "") -> list[RunSpec]:
    """One RunSpec per (distribution, model, seed), each with its own run directory.

    Ordered seed-major, so a comparison cut short still has every (model, distribution)
    cell for the first seeds.
    """
    base = Path(runs_dir) / (suite + (f"_{tag}" if tag else ""))
    return [RunSpec(suite, m, d, s, base / d / m / f"seed{s}") for s in seeds for d in dists for m in models]


def is_done(spec: RunSpec) -> bool:
    return (spec.out / "metrics.json").exists()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def get_toy(name: str):
    """The toy ``name`` of :mod:`otgen.data.toys` (which imports JAX: loaded on first use)."""
    from otgen.data import toys

    return toys.get(name)


def _record(spec: RunSpec, metric: str) -> dict:
    """A run's stored record (its ``metrics.json``, which must hold ``metric``) with its status."""
    rec: dict[str, Any] = {"model": spec.model, "seed": spec.seed, "out": str(spec.out)}
    err = _read_json(spec.out / ERROR_FILE)
    m = _read_json(spec.out / "metrics.json") if is_done(spec) else None
    if m is None:
        rec.update(status="failed" if err else "missing", error=(err or {}).get("error"))
    elif metric not in m:
        rec.update(status="failed", error=f"metrics.json has no {metric!r} (written by an older otgen?)")
    else:
        rec.update(m)
        rec.update(status="ok", model=spec.model, seed=spec.seed)
        rec["created"] = (_read_json(spec.out / "config.json") or {}).get("created")
    return rec


def collect_toy(specs: list[RunSpec], get_toy: Callable[[str], Any] = get_toy) -> list[dict]:
    """One record per spec (its ``metrics.json``, scored by :func:`otgen.eval.evaluate` when it ran),
    then the control rows (:func:`toy_controls`) of every (toy, seed) with a finished run."""
    records, trains = [], {}
    for spec in specs:
        rec = {**_record(spec, "copy_fraction"), "dist": spec.dist}
        if rec["status"] == "ok" and (spec.out / "data.npy").exists():
            n = int(np.load(spec.out / "samples.npy", mmap_mode="r").shape[0])
            trains.setdefault((spec.dist, spec.seed), (np.load(spec.out / "data.npy", allow_pickle=False), n))
        records.append(rec)
    for (dist, seed), (train, n) in trains.items():
        records += toy_controls(dist, seed, train, n, get_toy)
    return records


BASELINE_TAG = " (published budget)"


def collect_published_baselines(runs_dir: Path, dists: Iterable[str]) -> list[dict]:
    """The finished GAN-family jobs of an ``otgen reproduce`` runs directory (each in its authors' setting
    and budget, :mod:`experiments.reproduce`) as toy-report records, scored by the same
    :func:`otgen.eval.evaluate` when they ran; the model is named ``"<model> (published budget)"``."""
    records = []
    for dist in dists:
        for model in (m for m in JOBS if m != "aeot"):  # AE-OT's own rows come from the suite
            for out in sorted(Path(runs_dir).glob(f"{dist}_{model}_s*")):  # reproduce_jobs.run_dir's names
                m = _read_json(out / "metrics.json")
                if m is not None and "copy_fraction" in m:
                    # jobs scored before evaluate reported between_modes_fraction get it filled in
                    records.append({**with_between_modes_fraction(m), "model": model + BASELINE_TAG, "dist": dist,
                                    "seed": int(out.name.rsplit("_s", 1)[1]),
                                    "out": str(out), "status": "ok"})
    return records


def collect_mnist(specs: list[RunSpec], metric: str = "classes_covered") -> list[dict]:
    """One record per image run: its metrics.json (which must hold ``metric``) and status."""
    return [_record(spec, metric) for spec in specs]
