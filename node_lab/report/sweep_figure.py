"""``summary.png`` of a sweep: three panels that read the run directories only.

1. the final test metric (mean ± std over seeds) against the first swept key — a numeric key
   (augmentation dim, D, noise) as a line, a categorical one (model, solver) as points side by side
   with readable, rotated labels and no line joining categories;
2. forward (and, where there is one, backward) NFE per iteration against the same key — the
   quantity the ANODE/STEER papers plot;
3. each configuration's training loss against the iteration, the mean over its seeds with a band
   from the lowest to the highest seed.
One series per value of the other swept keys.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from node_lab.report.rundirs import read_history
from node_lab.report.stats import mean_sd

if TYPE_CHECKING:
    from node_lab.report.summary import Row

MAX_CURVES = 12  # configurations drawn in the training-curve panel (the legend stays readable)


def is_number(text: object) -> bool:
    try:
        return math.isfinite(float(str(text)))
    except ValueError:
        return False


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds; one seed draws no error bar."""
    mean, sd = mean_sd(values)
    return mean, (sd if len(values) > 1 else 0.0)


def _series(rows: list[Row], keys: list[str], path: str) -> dict[str, list[tuple[str, float, float]]]:
    """{label of the other keys: [(x, mean, std)]} of metrics.json ``path`` over each row's seeds."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    for r in rows:
        values = r.values(path)
        if not values:
            continue
        job = r.jobs[0]
        label = " ".join(f"{k}={job.overrides.get(k)}" for k in keys[1:])
        out.setdefault(label, []).append((str(job.overrides.get(keys[0])), *_mean_std(values)))
    return out


def _positions(series: dict[str, list[tuple]], numeric: bool) -> tuple[dict[str, float], list[str]]:
    xs = sorted({x for pts in series.values() for x, _, _ in pts}, key=float if numeric else str)
    return {x: (float(x) if numeric else i) for i, x in enumerate(xs)}, xs


def _draw_against_key(ax, series: dict[str, list[tuple]], x_key: str, ylabel: str, log_y: bool,
                      style: str = "-", colour_offset: int = 0) -> None:
    numeric = all(is_number(x) for pts in series.values() for x, _, _ in pts)
    where, categories = _positions(series, numeric)
    width = 0.6 / max(len(series), 1)
    for i, (label, pts) in enumerate(series.items()):
        pts = sorted(pts, key=lambda p: where[p[0]])
        shift = 0.0 if numeric else (i - (len(series) - 1) / 2) * width  # categories: side by side
        ax.errorbar([where[x] + shift for x, _, _ in pts], [m for _, m, _ in pts], yerr=[s for _, _, s in pts],
                    marker="o", capsize=3, linestyle=style if numeric else "none", color=f"C{i + colour_offset}",
                    label=label or None)
    if not numeric:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels(categories, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel, fontsize=8)
    if log_y:
        ax.set_yscale("log")


def _training_curves(ax, rows: list[Row]) -> bool:
    drawn = False
    for i, r in enumerate(rows[:MAX_CURVES]):
        curves = []
        for job in r.jobs:
            if job.status != "completed" or not (job.path / "history.csv").is_file():
                continue
            hist = [h for h in read_history(job) if isinstance(h.get("loss"), float)]
            if hist:
                curves.append({int(h["iteration"]): h["loss"] for h in hist})
        if not curves:
            continue
        its = sorted(set.intersection(*(set(c) for c in curves)))
        if not its:
            continue
        values = np.array([[c[t] for t in its] for c in curves])
        ax.plot(its, values.mean(0), color=f"C{i % 10}", lw=1, label=f"{r.label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(its, values.min(0), values.max(0), color=f"C{i % 10}", alpha=0.2, lw=0)
        drawn = True
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (mean, band = seed range)", fontsize=8)
    ax.set_yscale("log")
    return drawn


def plot_sweep(path: Path, rows: list[Row], keys: list[str]) -> Path | None:
    """Write ``summary.png``; None when nothing was swept or no run completed."""
    if not rows or not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = rows[0].metric
    scores = _series(rows, keys, f"final.test_{metric}")
    if not scores:
        return None
    nfe_fwd = _series(rows, keys, "nfe_forward.mean")
    nfe_bwd = {k: v for k, v in _series(rows, keys, "nfe_backward.mean").items() if any(m > 0 for _, m, _ in v)}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    _draw_against_key(axes[0], scores, keys[0], f"final test {metric} (mean ± std over seeds)", metric == "mse")
    if nfe_fwd:
        _draw_against_key(axes[1], nfe_fwd, keys[0], "NFE per iteration (mean ± std over seeds)", False)
        if nfe_bwd:
            _draw_against_key(axes[1], {f"{k} backward".strip(): v for k, v in nfe_bwd.items()}, keys[0],
                              "NFE per iteration: forward (solid), backward (dashed)", False, style="--",
                              colour_offset=len(nfe_fwd))
    if not _training_curves(axes[2], rows):
        axes[2].set_axis_off()
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        if handles:  # below the panel, so it never covers a point or a curve
            ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2,
                      frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
