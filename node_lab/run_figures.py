"""A run's own figures, drawn from its trained model and data (:mod:`node_lab.plots` draws arrays).

``loss.png``; ``predictions.png`` (decision regions, end-state trajectories or the series fit);
trajectory tasks: ``running_rmse.csv/png`` (a dataset ``rmse_window``) and ``velocity.png`` (when
the model offers a velocity); physical systems: phase and energy plots (:mod:`node_lab.physics`).
A model that cannot be drawn (a diverged one) skips its figure with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from node_lab import metrics as traj_metrics
from node_lab import physics, plots
from node_lab.datasets.base import Data, Task
from node_lab.loop import metric_name

log = logging.getLogger(__name__)


@torch.no_grad()
def make_figures(model, data: Data, history: list[dict], run_dir: Path, *, t0: float, t1: float,
                 rmse_window: int | None = None, rollout: torch.Tensor | None = None) -> dict[str, Path]:
    """loss.png and predictions.png (decision regions, end-state trajectories or the series fit);
    physics datasets: phase and energy plots of ``rollout`` (the test rollout, computed if None)."""
    model.eval()
    figures = {"loss": plots.loss_curve(history, metric_name(data), run_dir / "loss.png")}
    try:
        figures.update(trajectory_figures(data, model, run_dir, rmse_window))
    except (AssertionError, RuntimeError, FloatingPointError) as err:
        log.warning("trajectory figures skipped: %s", str(err).splitlines()[0])
    out = run_dir / "predictions.png"
    test = data.test
    as_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    try:
        if data.task == Task.classification and data.loss == "mse" and data.data_dim == 2:
            lo, hi = test.x.min(0).values - 0.2, test.x.max(0).values + 0.2
            gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 80), torch.linspace(lo[1], hi[1], 80),
                                    indexing="xy")
            grid = torch.stack([gx.flatten(), gy.flatten()], 1).to(test.x)
            times = torch.tensor([t0, t1]).to(test.x)
            values = model(grid, times)[-1, :, 0].reshape(gx.shape)
            figures["predictions"] = plots.decision_regions(as_np(gx), as_np(gy), as_np(values),
                                                            as_np(test.x), as_np(test.y[:, 0]), out)
        elif data.task == Task.trajectory:
            dense = torch.linspace(float(test.times[0]), float(test.times[-1]), 200).to(test.x)
            pred = model(test.x, dense, test.v0)[:, :, 0]  # (T, B)
            split_t = float(data.train.times[-1]) if test.observed is not None else None
            figures["predictions"] = plots.trajectories(as_np(dense), as_np(pred), out, data_t=as_np(test.times),
                                                        data_y=as_np(test.y[:, :, 0]), split_t=split_t,
                                                        title="fit (train | extrapolation)")
        elif data.loss == "mse" and data.data_dim == 1:
            dense = torch.linspace(t0, t1, 50).to(test.x)
            states = model.read(model.trajectory(test.x, dense, test.v0))[:, :, 0]  # (T, B)
            targets = as_np(test.y[:, 0]) if data.task == Task.regression else None
            figures["predictions"] = plots.trajectories(as_np(dense), as_np(states), out, targets=targets,
                                                        title="state trajectories (first data dim)")
        if data.energy is not None:
            pred = physics.rollout(model, test) if rollout is None else rollout
            figures.update(physics.physics_figures(data, test, pred, run_dir))
    except (AssertionError, RuntimeError, FloatingPointError) as err:  # a diverged model can't be drawn
        log.warning("predictions figure skipped: %s", str(err).splitlines()[0])
    model.train()
    return figures


def trajectory_figures(data: Data, model, run_dir: Path, window: int | None) -> dict[str, Path]:
    """running_rmse.csv/.png (datasets with a ``rmse_window``) and velocity.png (learned vs
    true velocity, when the model offers one)."""
    test, figures = data.test, {}
    if data.task != Task.trajectory:
        return figures
    as_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    times = as_np(test.times)
    split_t = float(data.train.times[-1])
    if window:
        pred = as_np(model(test.x, test.times, test.v0))
        rmse = traj_metrics.running_rmse(pred, as_np(test.y), window)
        traj_metrics.write_running_rmse(run_dir / "running_rmse.csv", times, rmse, window)
        figures["running_rmse"] = plots.series(times[len(times) - len(rmse):], rmse, run_dir / "running_rmse.png",
                                               ylabel=f"running RMSE (window {window})", split_t=split_t)
    if test.velocity is not None:
        estimate = model.velocity_estimate(model.trajectory(test.x, test.times, test.v0))
        if estimate is not None:
            figures["velocity"] = plots.velocity_comparison(times, as_np(estimate), as_np(test.velocity),
                                                            run_dir / "velocity.png")
    return figures
