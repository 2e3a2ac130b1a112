"""The few figures otgen writes: samples over data, image grids, loss curves.

Matplotlib runs headless (Agg) and every PNG is written atomically.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from otgen.checkpoint import atomic_write  # noqa: E402

__all__ = ["save_figure", "scatter_over_data", "image_grid", "loss_curves", "tile_images", "quality_novelty"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def scatter_panel(ax, samples, data=None, title: str = "", max_points: int = 5000) -> None:
    """Draw generated ``samples`` (orange) over training ``data`` (grey) on one axis."""
    if data is not None:
        d = np.asarray(data)[:max_points]
        ax.scatter(d[:, 0], d[:, 1], s=3, c="0.65", alpha=0.5, linewidths=0, label="data")
    s = np.asarray(samples)[:max_points]
    ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:orange", alpha=0.7, linewidths=0, label="generated")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def scatter_over_data(samples, data, path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    scatter_panel(ax, samples, data, title)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    return save_figure(fig, path)


def tile_images(images, nrow: int = 10) -> np.ndarray:
    """Tile (n, H, W) or (n, H, W, C) images into one (rows*H, nrow*W[, C]) float array in [0, 1]."""
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    n, h, w = x.shape[:3]
    rows = -(-n // nrow)
    canvas = np.ones((rows * h, nrow * w) + x.shape[3:], np.float32)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = x[i]
    return np.clip(canvas, 0.0, 1.0)


def image_grid(images, path, nrow: int = 10, title: str = "") -> Path:
    canvas = tile_images(images, nrow)
    fig, ax = plt.subplots(figsize=(canvas.shape[1] / 40, canvas.shape[0] / 40))
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def loss_curves(history: dict[str, list[float]], path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in history.items():
        if name == "step" or len(values) == 0:
            continue
        steps = history.get("step", range(len(values)))
        ax.plot(list(steps)[: len(values)], values, label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


_CURVE_LABELS = {"modes_captured": "modes captured", "high_quality_fraction": "high-quality fraction",
                 "reverse_kl": "reverse KL", "between_modes_fraction": "fraction between modes",
                 # image suites
                 "classes_covered": "classes covered", "modes_covered": "modes covered",
                 "kl_uniform": "KL to uniform", "fid": "FID (classifier features)"}


def _step_label(value, _pos=None) -> str:
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def learning_curves(curves, path, title: str = "", reference: dict | None = None) -> Path:
    """One panel per metric against training step (log axis).

    ``curves``: a list of records ``{"step": s, metric: value, ...}`` or a dict
    ``label -> records`` (one line per label).  ``reference``: optional
    ``label -> {metric: value}`` drawn as dashed horizontal lines: in the colour of
    the curve of the same label (a published number), or, for a label without a
    curve (a reference model, a control), in a colour of its own, named in the legend.
    """
    if not isinstance(curves, dict):
        curves = {"": curves}
    reference = reference or {}
    extra = [label for label in reference if label not in curves]
    metrics = [m for m in _CURVE_LABELS if any(m in r for rs in curves.values() for r in rs)]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(4 * max(1, len(metrics)), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (label, records) in enumerate(curves.items()):
            pts = [(r["step"], r[metric]) for r in records if metric in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, lw=1, label=label or None, color=f"C{i % 10}")
            if metric in reference.get(label, {}):
                ax.axhline(reference[label][metric], ls="--", lw=0.8, color=f"C{i % 10}")
        for j, label in enumerate(extra, start=len(curves)):
            if metric in reference[label]:
                ax.axhline(reference[label][metric], ls="--", lw=1, color=f"C{j % 10}", label=label)
        ax.set_xscale("log")
        # ticks at 1, 3, 10, 30, ... x 10^k, written 1k, 3k, 10k: a curve spanning under a decade keeps labels
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 3.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_step_label))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if metric == "fid":  # spans orders of magnitude while a GAN learns
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 3.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("training step")
        ax.set_title(_CURVE_LABELS[metric], fontsize=9)
        ax.grid(alpha=0.3)
    if any(curves) or extra:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def nearest_neighbour_grid(samples, neighbours, distances, path, title: str = "") -> Path:
    """Two rows of images: ``samples`` over their ``neighbours``, each column titled with its distance."""
    n = len(samples)
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.6), squeeze=False)
    for j in range(n):
        for row, img in ((0, samples[j]), (1, neighbours[j])):
            ax = axes[row][j]
            ax.imshow(np.asarray(img), cmap="gray", interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        axes[0][j].set_title(f"{float(distances[j]):.2f}", fontsize=7)
    axes[0][0].set_ylabel("generated", fontsize=7)
    axes[1][0].set_ylabel("nearest train", fontsize=7)
    fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)


def power_diagram(cells, labels, singular, grid_labels, extent, samples, data, path, title: str = "") -> Path:
    """The semi-discrete map in the source domain beside what it generates.

    Left: ``grid_labels`` (an (n, n) image of the mode each source point's cell maps to, over
    ``extent``), the facets ``cells.facet_p -> cells.facet_q`` (thin: interpolated across; thick
    black: ``singular``, the facets the extension refuses: the discontinuity set of the map).
    Right: ``samples`` over ``data``.
    """
    from matplotlib.collections import LineCollection

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 5))
    n_modes = int(np.max(labels)) + 1 if len(labels) else 1
    ax.imshow(np.asarray(grid_labels) % 20, origin="lower", extent=extent, cmap="tab20", vmin=0, vmax=19,
              alpha=0.55, interpolation="nearest")
    segs = np.stack([cells.facet_p, cells.facet_q], axis=1)
    singular = np.asarray(singular, bool)
    ax.add_collection(LineCollection(segs[~singular], colors="0.35", linewidths=0.15))
    ax.add_collection(LineCollection(segs[singular], colors="black", linewidths=0.9))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_title(f"power diagram in the source domain: {len(labels)} cells, {n_modes} modes (colour);\n"
                 f"{int(singular.sum())} of {len(singular)} facets singular (black)", fontsize=8)
    ax.tick_params(labelsize=7)
    scatter_panel(bx, samples, data, "generated (orange) over data (grey)")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=140)


def quality_novelty(families: dict[str, list[tuple[float, float, str]]], controls: dict[str, tuple[float, float]],
                    path, xlabel: str, ylabel: str = "FID", title: str = "") -> Path:
    """One line per sampler family through its (x, y, label) points (a parameter moving), control rows
    as black markers: where each sampler sits between copying (left) and quality (down)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for name, pts in families.items():
        pts = sorted(pts)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(xs, ys, "o-", ms=4, lw=1.2, label=name)
        for x, y, lab in pts:
            if lab:
                ax.annotate(lab, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for (name, (x, y)), marker in zip(controls.items(), "s^vDP*"):
        ax.plot([x], [y], marker, c="k", ms=6, label=name)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.tick_params(labelsize=7, which="both")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, loc="best")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
