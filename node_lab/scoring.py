"""What a trained model scores on a run's data: the blocks of ``metrics.json``.

``final``: the selected model's (``train.select``: best on validation, or last) loss and metric
on the train, val and test splits, the named extra splits, the interpretability error of
trajectory tasks; ``best``: the best validation metric and its iteration; ``last``: the last
model's val and test metrics; ``physics`` (data with an energy): rollout and energy metrics of
the selected model (:mod:`node_lab.physics`). A blow-up during the final evaluation is a
divergence, not an exception.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from node_lab import metrics as traj_metrics
from node_lab import physics
from node_lab.datasets.base import Data, Task
from node_lab.loop import Progress, evaluate, is_divergence, metric_name


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


SPLITS = ("train", "val", "test")


def split_metrics(model, data: Data, splits: tuple[str, ...], t0: float, t1: float,
                  eval_batch_size: int | None) -> dict:
    """``<split>_loss`` and ``<split>_<metric>`` of each named split. Raises what the solver raises."""
    name, out = metric_name(data), {}
    for split_name in splits:
        result = evaluate(model, data, getattr(data, split_name), t0, t1, eval_batch_size)
        out[f"{split_name}_loss"], out[f"{split_name}_{name}"] = result["loss"], result["metric"]
        out.update({f"{split_name}_{key}": value for key, value in result.get("scores", {}).items()})
    return out


def final_metrics(model, data: Data, t0: float, t1: float, eval_batch_size: int | None) -> dict:
    """``final``: train, val and test loss and metric, extra splits (a blow-up there is a value,
    None), and the interpretability error of trajectory tasks. Raises what the solver raises."""
    name = metric_name(data)
    final = split_metrics(model, data, SPLITS, t0, t1, eval_batch_size)
    for split_name, split in data.extra.items():  # e.g. a far extension
        metric = evaluate(model, data, split, t0, t1, eval_batch_size)["metric"]
        final[f"{split_name}_{name}"] = metric if math.isfinite(metric) else None
    if data.task == Task.trajectory:
        error = traj_metrics.interpretability_error(model, data.test)
        if error is not None:
            final["interpretability_error"] = error
    return final


def last_metrics(model, data: Data, t0: float, t1: float, eval_batch_size: int | None, iteration: int) -> dict:
    """``last``: the last model's val and test loss and metric (a blow-up is recorded, not raised)."""
    try:
        return {"iteration": iteration, **split_metrics(model, data, ("val", "test"), t0, t1, eval_batch_size)}
    except (AssertionError, RuntimeError, FloatingPointError) as err:
        if not is_divergence(err):
            raise
        return {"iteration": iteration, "error": str(err).splitlines()[0]}


def physics_block(model, data: Data, run_dir: Path, rollouts: dict) -> dict:
    """Rollout/energy metrics of the test split, energy.csv (the drift of every horizon) and the
    rollout kept in ``rollouts["test"]`` for the figures; a rollout that blows up is reported, not
    raised."""
    try:
        metrics, rollouts["test"] = physics.physics_metrics(model, data, data.test)
        physics.energy_drift_curve(data, data.test, rollouts["test"], run_dir / "energy.csv")
        return metrics
    except (AssertionError, RuntimeError, FloatingPointError) as err:
        return {"error": str(err).splitlines()[0]}


def summarise(model, data: Data, progress: Progress, *, t0: float, t1: float, eval_batch_size: int | None,
              wall: float, seed: int, config_hash: str, run_dir: Path, selected: dict, last: dict | None = None,
              rollouts: dict | None = None) -> dict:
    """The whole ``metrics.json`` of a run that ended with ``progress``; ``model`` holds the
    selected weights (``selected``: which checkpoint and its iteration), ``last`` the last model's
    val/test metrics."""
    name = metric_name(data)
    final = {}
    if progress.status == "completed":
        try:
            final = final_metrics(model, data, t0, t1, eval_batch_size)
        except (AssertionError, RuntimeError, FloatingPointError) as err:
            if not is_divergence(err):
                raise
            progress.status, progress.reason = "diverged", f"final evaluation: {str(err).splitlines()[0]}"
            final = {}
    extra = {}
    if progress.status == "completed" and data.energy is not None:
        extra["physics"] = physics_block(model, data, run_dir, {} if rollouts is None else rollouts)
    hist = progress.history
    mean = (lambda key: float(np.mean([r[key] for r in hist]))) if hist else (lambda key: 0.0)
    return {
        "status": progress.status,
        "reason": progress.reason,
        "metric": name,
        "final": final,
        "best": {f"val_{name}": progress.best, "iteration": progress.best_iteration},
        "selected": selected,
        "last": last or {},
        "iterations": progress.iteration,
        "nfe_forward": {"mean": mean("nfe_forward"), "total": int(sum(r["nfe_forward"] for r in hist))},
        "nfe_backward": {"mean": mean("nfe_backward"), "total": int(sum(r["nfe_backward"] for r in hist))},
        "wall_time": wall,
        "step_time_mean": mean("step_time"),
        "params": n_params(model),
        "seed": seed,
        "config_hash": config_hash,
        "run_dir": str(run_dir),
        **extra,
    }
