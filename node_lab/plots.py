"""Figures from arrays (never from a model or a config), saved as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save(fig, path: Path) -> Path:
    """Lay out, write as PNG and close."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loss_curve(history: list[dict], metric: str, path: Path) -> Path:
    """Training loss per iteration (log scale) and the validation metric at evaluation points."""
    fig, ax = plt.subplots(figsize=(6, 4))
    its = [r["iteration"] for r in history]
    ax.plot(its, [r["loss"] for r in history], label="train loss", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    evals = [(r["iteration"], r[f"val_{metric}"]) for r in history if f"val_{metric}" in r]
    handles = ax.get_lines()
    if evals:
        ax2 = ax.twinx()
        handles += ax2.plot(*zip(*evals), "o-", color="C1", ms=3, label=f"val {metric}")
        ax2.set_ylabel(f"val {metric}")
        if metric == "mse":
            ax2.set_yscale("log")
    # one legend for both axes, outside the plotting area so it never covers a curve
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return save(fig, path)


def decision_regions(grid_x: np.ndarray, grid_y: np.ndarray, values: np.ndarray,
                     points: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    """2-D classification: the model's output over a grid, with the test points on top."""
    fig, ax = plt.subplots(figsize=(5, 5))
    cs = ax.contourf(grid_x, grid_y, values, levels=20, cmap="RdBu", alpha=0.8)
    fig.colorbar(cs, ax=ax, label="model output")
    ax.contour(grid_x, grid_y, values, levels=[0.0], colors="k", linewidths=1)
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="RdBu", vmin=-1.5, vmax=1.5, edgecolors="k",
               linewidths=0.4, s=18)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title("decision regions (test points)")
    return save(fig, path)


def scores_1d(x: np.ndarray, out: np.ndarray, points: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    """1-D (or projected) classification: model output against the first input coordinate."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, out, lw=1, label="model output")
    ax.scatter(points, labels, s=10, c="C1", label="test labels")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("x1")
    ax.legend()
    return save(fig, path)


def trajectories(times: np.ndarray, paths: np.ndarray, path: Path, *, data_t: np.ndarray | None = None,
                 data_y: np.ndarray | None = None, split_t: float | None = None,
                 targets: np.ndarray | None = None, title: str = "") -> Path:
    """Model trajectories (T, B) over time, with data points or end-state targets."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(times, paths, lw=1, color="C0", alpha=0.8)
    if data_t is not None:
        if data_y.ndim == 2:  # several trajectories (T, B): one time axis for all
            data_t = np.broadcast_to(data_t[:, None], data_y.shape)
        ax.scatter(data_t, data_y, s=10, color="C1", label="data", zorder=3)
    if targets is not None:
        ax.scatter(np.full(len(targets), times[-1]), targets, marker="x", color="C3", label="targets", zorder=3)
    if split_t is not None:
        ax.axvline(split_t, color="k", ls="--", lw=0.8, label="train | test")
    ax.set_xlabel("t")
    ax.set_ylabel("x1")
    ax.set_title(title)
    if data_t is not None or targets is not None:
        ax.legend()
    return save(fig, path)


def _true_vs_learned(ax, x_true: np.ndarray, y_true: np.ndarray, x_pred: np.ndarray, y_pred: np.ndarray,
                     labels: tuple[str, str]) -> None:
    """One colour per trajectory (columns): true dashed, learned solid."""
    for b in range(y_true.shape[1]):
        ax.plot(x_true[:, b], y_true[:, b], "--", color=f"C{b}", lw=1, alpha=0.7)
        ax.plot(x_pred[:, b], y_pred[:, b], "-", color=f"C{b}", lw=1)
    ax.plot([], [], "k--", label=labels[0])
    ax.plot([], [], "k-", label=labels[1])
    ax.legend()


def phase_portraits(q_true: np.ndarray, p_true: np.ndarray, q_pred: np.ndarray, p_pred: np.ndarray,
                    path: Path) -> Path:
    """Phase portraits (T, B) of one degree of freedom: true (dashed) and learned (solid)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    _true_vs_learned(ax, q_true, p_true, q_pred, p_pred, ("true", "learned"))
    ax.plot(q_true[0], p_true[0], "ko", ms=3)
    ax.set_xlabel("q1")
    ax.set_ylabel("p1 (or q1 velocity)")
    ax.set_title("phase portraits, held-out initial conditions")
    return save(fig, path)


def energy_curves(times: np.ndarray, e_true: np.ndarray, e_pred: np.ndarray, path: Path) -> Path:
    """True energy E(t) (T, B) along the true (dashed) and the learned (solid) rollouts."""
    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.broadcast_to(times[:, None], e_true.shape)
    _true_vs_learned(ax, grid, e_true, grid, e_pred, ("true trajectory", "learned rollout"))
    ax.set_xlabel("t")
    ax.set_ylabel("true energy E")
    ax.set_title("energy vs time, held-out initial conditions")
    return save(fig, path)


def series(times: np.ndarray, values: np.ndarray, path: Path, *, ylabel: str, split_t: float | None = None) -> Path:
    """One curve over time (e.g. the running RMSE), with the train | test boundary."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(times, values, lw=1)
    if split_t is not None:
        ax.axvline(split_t, color="k", ls="--", lw=0.8, label="train | test")
        ax.legend()
    ax.set_xlabel("t")
    ax.set_ylabel(ylabel)
    return save(fig, path)


def velocity_comparison(times: np.ndarray, estimate: np.ndarray, true: np.ndarray, path: Path) -> Path:
    """The model's velocity (SONODE) or augmented state (ANODE), solid, against the true
    velocity, dashed, per data dim (first trajectory of the batch)."""
    d = true.shape[2]
    fig, axes = plt.subplots(1, d, figsize=(4.5 * d, 3.5), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.plot(times, estimate[:, 0, i], lw=1.2, label="model")
        ax.plot(times, true[:, 0, i], "k--", lw=1, label="true velocity")
        ax.set_xlabel("t")
        ax.set_title(f"dim {i + 1}")
        ax.legend()
    return save(fig, path)
