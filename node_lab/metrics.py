"""Trajectory metrics beyond the loss: the interpretability error and the running RMSE.

- **interpretability error** (Norcliffe et al. 2020): MSE between what a model offers as the
  velocity (SONODE's velocity state, ANODE's first d augmented dims,
  :meth:`~node_lab.models.base.ODEModel.velocity_estimate`) and the true velocity, along the whole
  test trajectory.
- **running RMSE**: sqrt of the mean squared error over a trailing window of ``window`` points
  of the test trajectory (the SONODE paper's silverbox/F16 curves use 300 samples).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from node_lab.datasets.base import Split


@torch.no_grad()
def interpretability_error(model, split: Split) -> float | None:
    if split.velocity is None or split.times is None:
        return None
    zs = model.trajectory(split.x, split.times, split.v0)
    estimate = model.velocity_estimate(zs)
    if estimate is None:
        return None
    # the estimate is the velocity of the model's positions, the first d data dims; data that hold
    # [q, qdot] (SONODE with init_velocity=split) carry d/dt of the whole state, whose first d are qdot
    return float(((estimate - split.velocity[..., : estimate.shape[-1]]) ** 2).mean())


def running_rmse(pred: np.ndarray, target: np.ndarray, window: int) -> np.ndarray:
    """(T,) → (T − window + 1,): RMSE over points [i, i + window) of the squared errors
    averaged over every other axis."""
    sq = ((pred - target) ** 2).reshape(len(pred), -1).mean(1)
    window = min(window, len(sq))
    csum = np.concatenate([[0.0], np.cumsum(sq)])
    return np.sqrt((csum[window:] - csum[:-window]) / window)


def write_running_rmse(path: Path, times: np.ndarray, rmse: np.ndarray, window: int) -> None:
    """Each row: the time of the window's last point and the RMSE over the window."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t_end", f"rmse_window_{window}"])
        writer.writerows(zip(times[window - 1 :].tolist(), rmse.tolist()))
