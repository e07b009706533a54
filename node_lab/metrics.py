"""Trajectory metrics beyond the loss: the interpretability error and the running RMSE.

- **interpretability error** (Norcliffe et al. 2020): MSE between what a model offers as the
  velocity (SONODE's velocity state, ANODE's first d augmented dims,
  :meth:`~node_lab.models.base.ODEModel.velocity_estimate`) and the true velocity, along the whole
  test trajectory.
- **running RMSE**: sqrt of the mean squared error over a trailing window of ``window`` points
  of the test trajectory (the SONODE paper's silverbox/F16 curves use 300 samples).
- **scores of a predictive distribution** given by samples (K, …) — the paths of a stochastic
  model or the members of an ensemble — against observations (…): :func:`gaussian_nll` (the
  Gaussian with the samples' mean and variance), :func:`crps` (the fair ensemble estimator, no
  Gaussian assumption), :func:`coverage` of the central band (default 90 %) and the predictive
  mean's MSE; :func:`predictive_scores` returns all four.
"""

from __future__ import annotations

import csv
import math
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


# --- scores of a predictive distribution given by samples --------------------------------------
MIN_VARIANCE = 1e-6  # keeps the NLL of a (near-)deterministic predictive finite


def gaussian_nll(mean: torch.Tensor, var: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over elements of −log N(y; mean, var) (the full density, with ½ log 2π)."""
    var = var.clamp_min(MIN_VARIANCE)
    return 0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var).mean()


def crps(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over elements of the fair (unbiased) ensemble CRPS of samples (K, …) at y (…):
    E|X − y| − 1/(2K(K−1)) Σ_{i≠j} |X_i − X_j| (Ferro 2014; Gneiting & Raftery 2007's energy form).
    Its expectation over draws equals the CRPS of the sampled distribution itself. The pair sum uses
    the sorted samples: Σ_{i<j}(X_(j) − X_(i)) = Σ_k (2k − K − 1) X_(k), k = 1…K (O(K log K))."""
    k = samples.shape[0]
    spread = (samples - y.unsqueeze(0)).abs().mean(0)
    if k < 2:
        return spread.mean()
    ordered = samples.sort(dim=0).values
    weights = (2 * torch.arange(1, k + 1, dtype=samples.dtype, device=samples.device) - k - 1)
    pairs = (weights.view(-1, *[1] * (samples.dim() - 1)) * ordered).sum(0)  # Σ_{i<j} |X_i − X_j|
    return (spread - pairs / (k * (k - 1))).mean()


def gaussian_crps(mean: torch.Tensor, std: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed-form CRPS of N(mean, std²) at y, elementwise (Gneiting et al. 2005):
    σ [z(2Φ(z) − 1) + 2φ(z) − 1/√π], z = (y − mean)/σ."""
    z = (y - mean) / std
    normal = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    return std * (z * (2 * normal.cdf(z) - 1) + 2 * normal.log_prob(z).exp() - 1 / math.sqrt(math.pi))


def coverage(samples: torch.Tensor, y: torch.Tensor, level: float = 0.9) -> torch.Tensor:
    """Fraction of observations inside the samples' central ``level`` band (the empirical
    (1 − level)/2 and (1 + level)/2 quantiles, linear interpolation)."""
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=samples.dtype, device=samples.device)
    low, high = torch.quantile(samples, q, dim=0)
    return ((y >= low) & (y <= high)).to(samples.dtype).mean()


def predictive_scores(samples: torch.Tensor, y: torch.Tensor, extra_var: torch.Tensor | float = 0.0) -> dict:
    """``nll`` (Gaussian with the samples' mean and variance + ``extra_var``, e.g. a model's
    observation noise), ``crps``, ``coverage90`` and ``mean_mse`` of samples (K, …) against y (…)."""
    mean = samples.mean(0)
    var = (samples.var(0, unbiased=True) if samples.shape[0] > 1 else torch.zeros_like(mean)) + extra_var
    return {"nll": float(gaussian_nll(mean, var, y)), "crps": float(crps(samples, y)),
            "coverage90": float(coverage(samples, y, 0.9)), "mean_mse": float(((mean - y) ** 2).mean())}
