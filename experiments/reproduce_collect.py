"""The records of ``otgen reproduce``'s report, read from the jobs' run directories.

:func:`collect` gives one record per (toy, model) over the seeds found: mean ± std of the finished runs'
metrics, their training time over all calls, the learning curves, and the progress of jobs still running
(read from their checkpoints).  :func:`collect_images` gives one record per image run directory (its
budget, the step reached, its curve, its final metrics); :func:`collect_image_controls` the control rows
scored so far, found under :data:`IMAGE_CONTROL_FILES`.  Reading a record never trains or samples anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from otgen.eval.modes import with_between_modes_fraction
from experiments.report_common import mean_and_std
from experiments.reproduce_jobs import DISTS, IMAGE_JOBS, JOBS

__all__ = ["IMAGE_CONTROL_FILES", "collect", "collect_images", "collect_image_controls"]


# control -> (row label, path under runs_dir) of each dataset's control rows, as controls.py caches them.
IMAGE_CONTROL_FILES = {
    "mnist": {"real": ("real (held-out test digits)", "mnist/controls/real"),
              "replay": ("replay (training digits)", "mnist/controls/replay"),
              "reconstructions": ("replay (AE-OT's reconstructions)", "mnist/controls/reconstructions")},
    "stacked": {"real": ("real (26,000 stacked digits)", "stacked/data/seed0"),
                "replay": ("replay (training images)", "stacked/controls/replay"),
                "reconstructions": ("replay (AE-OT's reconstructions)", "stacked/controls/reconstructions")},
}


def collect_image_controls(runs_dir: Path, dataset: str) -> dict[str, dict]:
    """control -> metrics of the control rows of ``dataset`` scored so far
    (:func:`experiments.reproduce.image_controls`)."""
    found = {name: _read(Path(runs_dir) / sub / "metrics.json") for name, (_, sub) in IMAGE_CONTROL_FILES[dataset].items()}
    return {name: m for name, m in found.items() if m is not None}


def collect_images(runs_dir: Path, jobs=IMAGE_JOBS) -> list[dict]:
    """One record per image run directory found: its budget, the step reached, the curve so far and,
    once finished, the final metrics."""
    records = []
    for dataset, model in jobs:
        for out in sorted(Path(runs_dir).glob(f"{dataset}_{model}_s*")):
            cfg = (_read(out / "config.json") or {}).get("config", {})
            metrics = _read(out / "metrics.json")
            if model == "aeot":  # the reference row: no GAN steps, its time is its stages' (solve included)
                stages = _read(out / "stages.json") or {}
                seconds = sum(v["seconds"] for v in stages.values()) if stages else None
                records.append({"dataset": dataset, "model": model, "dir": str(out), "budget": None, "step": None,
                                "curve": [], "metrics": metrics, "train_seconds": seconds,
                                "preset": cfg.get("preset")})
                continue
            meta = _checkpoint_meta(out / "gan") or {}
            curve = _read(out / "curves.json") or meta.get("curve", [])
            records.append({"dataset": dataset, "model": model, "dir": str(out), "budget": cfg.get("gan_steps"),
                            "step": int(meta.get("step", 0)), "curve": curve, "metrics": metrics,
                            "train_seconds": meta.get("seconds"), "preset": cfg.get("preset"),
                            "carried": [c["step"] for c in meta.get("carried", [])]})
    return records


def _read(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _total_train_seconds(out: Path, metrics: dict) -> tuple[float | None, bool]:
    """A finished job's training seconds over all its calls, and whether only its last call's are known.

    Runs finished before ``total_train_seconds`` was recorded still carry the sum in their checkpoint."""
    if "total_train_seconds" in metrics:
        return float(metrics["total_train_seconds"]), False
    meta = _checkpoint_meta(out)
    if meta is not None and "seconds" in meta:
        return float(meta["seconds"]), False
    seconds = metrics.get("train_seconds")
    return (None if seconds is None else float(seconds)), True


def _checkpoint_meta(out: Path) -> dict | None:
    """The metadata of a job's checkpoint (step, learning curve so far) -- of its exact checkpoint or its carry
    (``carry.npz``, :func:`otgen.training.save_carry`), whichever is further on -- or None."""
    found = [p for p in (out / "checkpoint.npz", out / "carry.npz") if p.exists()]
    if not found:
        return None
    from otgen.checkpoint import load_metadata  # imports JAX: loaded on use (see experiments.reproduce)

    return max((load_metadata(p) for p in found), key=lambda m: m.get("step", 0))


def collect(runs_dir: Path, models=JOBS, dists=DISTS) -> list[dict]:
    """One record per (dist, model) over the seeds found: finished metrics, curves, or progress."""
    runs_dir = Path(runs_dir)
    records = []
    for dist in dists:
        for model in models:
            outs = sorted(runs_dir.glob(f"{dist}_{model}_s*"))
            finished = [(o, _read(o / "metrics.json")) for o in outs]
            done = [(o, m) for o, m in finished if m is not None]
            metas = {str(o): _checkpoint_meta(o) for o, m in finished if m is None}
            running = {k: m for k, m in metas.items() if m is not None}  # run directory -> checkpoint metadata
            # a running job's curve so far travels in its checkpoint
            curves = {o.name: _read(o / "curves.json") or running.get(str(o), {}).get("curve", []) for o in outs}
            rec = {"dist": dist, "model": model, "seeds": len(done), "dirs": [str(o) for o, _ in done],
                   "curves": {k: [with_between_modes_fraction(p) for p in c] for k, c in curves.items()},
                   "running": running}
            if done:
                ms = [m for _, m in done]
                for key in ("modes_captured", "high_quality_fraction", "reverse_kl"):
                    vals = [float(m[key]) for m in ms if key in m]
                    if vals:
                        rec[key] = mean_and_std(vals)
                times = [_total_train_seconds(o, m) for o, m in done]
                if all(t is not None for t, _ in times):
                    rec["train_seconds"] = mean_and_std([t for t, _ in times])
                    rec["train_seconds_last_call"] = any(last for _, last in times)
                if _refreshes(model):  # runs finished before the refresh existed sampled with the training EMA
                    rec["sampling"] = {o.name: int(m.get("eval_bn_refresh", 0)) for o, m in done}
                rec["steps"] = ms[0].get("steps", ms[0].get("ot_steps"))  # AE-OT: its OT solver's steps
                rec["n_modes"] = ms[0].get("n_modes")
            records.append(rec)
    return records



def _refreshes(model: str) -> bool:
    """Whether a toy job's published preset refreshes batch-norm statistics before sampling (PacGAN's nets)."""
    from otgen.training import GANConfig  # imports JAX: loaded on use (see experiments.reproduce)

    return model != "aeot" and GANConfig.for_toy(model, preset="published").eval_bn_refresh > 0
