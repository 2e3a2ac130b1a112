"""What the report writers share: the header, the mean ± std cells and rows, the atomic write.

Every generated report opens with :func:`header` (the command that wrote it, the date, the machine
and the package versions) and quotes its numbers as mean ± sample std over seeds
(:func:`mean_and_std`, :func:`mean_std_cell`, :func:`table_row`).  The writers are
:mod:`experiments.report_toy` (``otgen compare --suite toy``) and
:mod:`experiments.report_images` (the MNIST, Fashion-MNIST and Stacked MNIST suites);
:mod:`experiments.reproduce_collect` takes :func:`mean_and_std` too.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from pathlib import Path

import numpy as np

__all__ = ["WALL_TIME_NOTE", "utc_now", "mean_and_std", "mean_std_cell", "table_row", "header", "atomic_text"]

# The report cannot know whether other jobs shared the cores while the runs trained.
WALL_TIME_NOTE = "on the machine above (other jobs may have shared its cores: a rough figure)."


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def mean_and_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std (ddof 1, the spread over seeds every report quotes; None for one seed)."""
    vals = np.asarray(values, dtype=float)
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else None


def mean_std_cell(values: list[float], digits: int, scale: float = 1.0) -> str:
    """A table cell: ``mean ± std`` of the values that are not None (scaled), "—" for none."""
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "—"
    if any(math.isinf(v) for v in vals):
        return f"inf ({sum(math.isinf(v) for v in vals)}/{len(vals)} seeds)"
    mean, std = mean_and_std(vals)
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def table_row(label: str, recs: list[dict], columns: list[tuple[str, int]]) -> str:
    """A markdown row: label, seeds ok / planned, then mean ± std over the ok records of each (key, digits)."""
    ok = [r for r in recs if r.get("status", "ok") == "ok"]
    cells = [label, f"{len(ok)}/{len(recs)}"] + [mean_std_cell([r.get(k) for r in ok], d) for k, d in columns]
    return "| " + " | ".join(cells) + " |"


def _machine() -> str:
    try:
        import jax  # heavy: loaded only when a report is written, not when this module is imported

        backend = jax.default_backend()
    except Exception:  # noqa: BLE001
        backend = "unknown"
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores visible, JAX backend {backend}"


def _versions() -> str:
    from otgen.rundir import package_versions  # otgen.rundir imports JAX: loaded on use

    v = package_versions()
    return ", ".join(f"{k} {v[k]}" for k in ("otgen", "jax", "flax", "optax", "numpy"))


def header(title: str, command: str) -> list[str]:
    """The report's first lines: title, command, date, machine, versions."""
    return [f"# {title}", "",
            f"- Command: `{command}`",
            f"- Written: {utc_now()} by `otgen compare` from the run directories (nothing typed by hand)",
            f"- Machine: {_machine()}",
            f"- Versions: {_versions()}", ""]


def atomic_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader never sees half a report)."""
    from otgen.checkpoint import atomic_write  # otgen.checkpoint imports JAX: loaded on use

    atomic_write(path, lambda f: f.write(text.encode()))
