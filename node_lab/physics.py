"""Metrics and figures of physical systems (datasets whose Data carry a true ``energy``).

On the held-out initial conditions of the test split, rolled out over its whole horizon with
the run's solver (or a discrete model's own steps):

- ``rollout_mse``: mean squared error of the predicted states over all times, ICs and dims;
- ``energy_mse``: mean (E(ẑ(t)) − E(z(t)))², Greydanus et al.'s "energy MSE";
- ``energy_drift``: mean over t and ICs of |E(ẑ(t)) − E(z(0))| / scale (scale: the dataset's
  ``energy_scale``: the mean |E(0)|, or the maximum potential energy for the double pendulum);
- ``energy_error_final``: the same at the last time only (Cranmer et al.'s |ΔE| at t = T / max PE);
- ``derivative_mse``: mean squared error of the model's field against the true dz/dt at the test
  states (models whose state is the data; absent otherwise).

The job also writes the drift of every shorter horizon to energy.csv (:func:`energy_drift_curve`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from node_lab import plots
from node_lab.datasets.base import Data, Split


def _numpy(t: torch.Tensor):
    return t.detach().cpu().double().numpy()


def _drift(data: Data, e_true: torch.Tensor, e_pred: torch.Tensor) -> torch.Tensor:
    """|E(ẑ(t)) − E(z(0))| / scale per time and initial condition (T, B): the one definition behind
    energy_drift, energy_error_final and energy.csv."""
    return (e_pred - e_true[0]).abs() / (data.energy_scale or 1.0)


@torch.no_grad()
def rollout(model, split: Split) -> torch.Tensor:
    """Predicted states (T, B, d) from the split's initial states over its times."""
    return model(split.x, split.times, split.v0)


@torch.no_grad()
def physics_metrics(model, data: Data, split: Split) -> tuple[dict, torch.Tensor]:
    """The metrics above and the predicted rollout (for the figures)."""
    was_training = model.training
    model.eval()
    pred = rollout(model, split)
    e_true, e_pred = data.energy(split.y), data.energy(pred)
    drift = _drift(data, e_true, e_pred)
    metrics = {
        "rollout_mse": float(((pred - split.y) ** 2).mean()),
        "energy_mse": float(((e_pred - e_true) ** 2).mean()),
        "energy_drift": float(drift.mean()),
        "energy_error_final": float(drift[-1].mean()),
        "energy_scale": float(data.energy_scale or 1.0),
        "horizon": float(split.times[-1] - split.times[0]),
    }
    if split.velocity is not None and model.state_is_data():
        states = split.y.reshape(-1, split.y.shape[-1])
        field = model.data_field(torch.zeros((), dtype=states.dtype, device=states.device), states)
        metrics["derivative_mse"] = float(((field - split.velocity.reshape(field.shape)) ** 2).mean())
    model.train(was_training)
    return metrics, pred


def energy_drift_curve(data: Data, split: Split, pred: torch.Tensor, path: Path) -> Path:
    """energy.csv: per time t, the mean over the initial conditions of |E(ẑ(t)) − E(z(0))| / scale
    (``drift_at_t``) and its mean over [0, t] (``drift_to_t``: ``energy_drift`` of a rollout
    ending at t), so one long rollout gives the drift of every shorter horizon."""
    at_t = _drift(data, data.energy(split.y), data.energy(pred)).mean(dim=1).double()
    to_t = at_t.cumsum(0) / torch.arange(1, len(at_t) + 1, dtype=at_t.dtype)
    with path.open("w") as f:
        f.write("t,drift_at_t,drift_to_t\n")
        for t, a, b in zip(_numpy(split.times), at_t.tolist(), to_t.tolist()):
            f.write(f"{t:.6g},{a:.6g},{b:.6g}\n")
    return path


def physics_figures(data: Data, split: Split, pred: torch.Tensor, run_dir: Path, n_show: int = 4) -> dict[str, Path]:
    """phase.png (first degree of freedom, learned vs true) and energy.png (E(t) learned vs true)."""
    n = split.y.shape[-1] // 2
    show = slice(0, min(n_show, split.y.shape[1]))
    true, learned = split.y[:, show], pred[:, show]
    return {
        "phase": plots.phase_portraits(_numpy(true[..., 0]), _numpy(true[..., n]), _numpy(learned[..., 0]),
                                       _numpy(learned[..., n]), run_dir / "phase.png"),
        "energy": plots.energy_curves(_numpy(split.times), _numpy(data.energy(true)), _numpy(data.energy(learned)),
                                      run_dir / "energy.png"),
    }
