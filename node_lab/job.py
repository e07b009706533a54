"""One training job in one run directory: load data, resume, fit, write the run's files.

Run directory contents (besides Hydra's ``.hydra/`` and ``train.log``):

- ``metrics.json``: status (completed | diverged) and reason, final and best metrics, forward
  and backward NFE, wall time, parameter count, seed, iterations;
- ``history.csv``: one row per iteration (loss, metric, NFE, step time, STEER end time);
- ``checkpoint.pt``: model and optimiser state_dicts, progress, RNG state, resolved config;
- ``loss.png`` and ``predictions.png``; ``wandb/`` with the W&B run (``logger=wandb``);
- physical systems (Data with an ``energy``): rollout, energy and derivative metrics under
  ``physics`` in metrics.json, ``energy.csv``, and ``phase.png`` / ``energy.png`` (:mod:`node_lab.physics`).
- trajectory tasks with a ``rmse_window``: ``running_rmse.csv`` / ``.png``; with a known true
  velocity and a model that offers one: ``velocity.png`` and ``interpretability_error`` in
  ``metrics.json`` (:mod:`node_lab.metrics`).

A diverged run (non-finite loss or one above ``train.max_loss``, dt underflow, the step cap) restarts from a fresh
initialisation up to ``train.max_restarts`` times; ``metrics.json`` lists every restart with its
seed and the reason of the failure before it.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from node_lab import metrics as traj_metrics
from node_lab import physics, plots
from node_lab.build import Built
from node_lab.datasets.base import Data, Task
from node_lab.errors import ConfigError
from node_lab.train import Progress, evaluate, fit, is_divergence, metric_name, training_split

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: Path, built: Built, optimizer, progress: Progress, generator: torch.Generator) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": built.model.state_dict(), "optimizer": optimizer.state_dict(),
                "progress": asdict(progress), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "config": built.config}, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def _resume_source(built: Built, run_dir: Path) -> Path | None:
    if built.train.resume_from:
        source = Path(built.train.resume_from)
        source = source / CHECKPOINT if source.is_dir() else source
        if not source.is_file():
            raise ConfigError("train.resume_from", built.train.resume_from, f"has no {CHECKPOINT}")
        return source
    if built.train.resume and (run_dir / CHECKPOINT).is_file():
        return run_dir / CHECKPOINT  # e.g. a requeued job that reuses its run directory
    return None


def _finished(built: Built, run_dir: Path) -> dict | None:
    """With ``train.skip_finished``, the metrics of a completed run of the same config hash."""
    path = run_dir / "metrics.json"
    if not built.train.skip_finished or not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    ok = metrics.get("status") == "completed" and metrics.get("config_hash") == built.config_hash
    return metrics if ok else None


def _load_data(built: Built) -> Data:
    try:
        data = built.dataset.load()
    except ConfigError as err:  # a data file found faulty only when read: named like a build-time error
        raise err.with_prefix("dataset") from None
    dev, dtype = built.device.torch_device, built.device.dtype
    data.train, data.test = data.train.to(dev, dtype), data.test.to(dev, dtype)
    data.extra = {name: split.to(dev, dtype) for name, split in data.extra.items()}
    if data.forcing is not None:
        data.forcing = data.forcing.to(dev, dtype)
    built.model.set_forcing(data.forcing)
    n = len(training_split(data, built.train.mode)[0])
    if built.train.batch_size is not None and built.train.batch_size > n:
        raise ConfigError("train.batch_size", built.train.batch_size,
                          f"exceeds the {n} training samples of {built.dataset.describe()}",
                          fix=f"train.batch_size=null (full batch) or <= {n}")
    return data


def run(built: Built, run_dir: Path, *, group: str, name: str) -> dict:
    """Train one job; returns the metrics written to ``metrics.json``."""
    started = time.perf_counter()
    finished = _finished(built, run_dir)
    if finished is not None:
        log.info("skipped: %s already holds a completed run of this config (%s)", run_dir, built.config_hash)
        return finished
    run_dir.mkdir(parents=True, exist_ok=True)
    built.device.activate()
    data = _load_data(built)
    model = built.model.to(built.device.torch_device, built.device.dtype)
    optimizer = built.optimizer(model.parameters())
    generator = torch.Generator().manual_seed(built.seed)
    progress = Progress()
    source = _resume_source(built, run_dir)
    if source is not None:
        state = torch.load(source, map_location=built.device.torch_device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        progress = Progress(**state["progress"])
        progress.status = "running"
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at iteration %d", source, progress.iteration)
    iterations = built.train.total_iterations(len(data.train))
    log.info("model %s | solver %s | steer %s | device %s (%d threads) | %d params | %d iterations",
             model.describe(), built.solver.describe(), built.steer.describe(), built.device.describe(),
             torch.get_num_threads(), n_params(model), iterations)
    built.logger.start(run_dir, built.config, group, name)
    failed, metrics, restarts = True, {}, []
    try:
        while True:
            fit(model, data, optimizer, built.steer, t0=built.t0, t1=built.t1, iterations=iterations,
                batch_size=built.train.batch_size, eval_every=built.train.eval_every,
                log_every=built.train.log_every, generator=generator, logger=built.logger, progress=progress,
                on_eval=lambda p, o=optimizer, g=generator: save_checkpoint(run_dir / CHECKPOINT, built, o, p, g),
                mode=built.train.mode, eval_batch_size=built.train.eval_batch_size, max_loss=built.train.max_loss,
                loss_kind=built.train.loss)
            if progress.status != "diverged" or len(restarts) >= built.train.max_restarts:
                break
            seed = built.seed + 1000 * (len(restarts) + 1)
            restarts.append({"seed": seed, "after": progress.reason})
            log.warning("restart %d/%d from a fresh initialisation, seed %d (%s)", len(restarts),
                        built.train.max_restarts, seed, progress.reason)
            reinitialise(model, seed)
            optimizer = built.optimizer(model.parameters())
            generator = torch.Generator().manual_seed(seed)
            progress = Progress()
        rollouts: dict = {}  # the physics rollout of the final metrics, drawn again by the figures
        metrics = summarise(built, data, model, progress, time.perf_counter() - started, run_dir, rollouts)
        metrics["restarts"] = restarts
        save_checkpoint(run_dir / CHECKPOINT, built, optimizer, progress, generator)
        write_history(run_dir / "history.csv", progress.history)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if built.train.figures and progress.history:
            built.logger.log_images(make_figures(built, data, model, progress, run_dir, rollouts.get("test")))
        failed = progress.status != "completed"
    finally:
        built.logger.finish(summary=metrics, failed=failed)
    return metrics


def write_failure(run_dir: Path, err: BaseException) -> None:
    """``failure.json`` for a job that raised: the sweep summary lists it with this reason."""
    text = err.message() if isinstance(err, ConfigError) else str(err)
    reason = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "failure.json").write_text(json.dumps({"status": "failed", "reason": reason}, indent=2) + "\n")


def reinitialise(model: torch.nn.Module, seed: int) -> None:
    """Fresh default initialisation of every layer, drawn from ``seed``."""
    torch.manual_seed(seed)
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summarise(built: Built, data: Data, model, progress: Progress, wall: float, run_dir: Path,
              rollouts: dict | None = None) -> dict:
    name = metric_name(data)
    final = {}
    if progress.status == "completed":
        try:
            for split_name, split in (("train", data.train), ("test", data.test)):
                result = evaluate(model, data, split, built.t0, built.t1, built.train.eval_batch_size)
                final[f"{split_name}_loss"], final[f"{split_name}_{name}"] = result["loss"], result["metric"]
            for split_name, split in data.extra.items():  # e.g. a far extension; a blow-up there is a value
                metric = evaluate(model, data, split, built.t0, built.t1, built.train.eval_batch_size)["metric"]
                final[f"{split_name}_{name}"] = metric if math.isfinite(metric) else None
            if data.task == Task.trajectory:
                error = traj_metrics.interpretability_error(model, data.test)
                if error is not None:
                    final["interpretability_error"] = error
        except (AssertionError, RuntimeError, FloatingPointError) as err:
            if not is_divergence(err):
                raise
            progress.status, progress.reason = "diverged", f"final evaluation: {str(err).splitlines()[0]}"
    extra = {}
    if progress.status == "completed" and data.energy is not None:
        extra["physics"] = _physics(model, data, run_dir, {} if rollouts is None else rollouts)
    hist = progress.history
    mean = (lambda key: float(np.mean([r[key] for r in hist]))) if hist else (lambda key: 0.0)
    return {
        "status": progress.status,
        "reason": progress.reason,
        "metric": name,
        "final": final,
        "best": {f"test_{name}": progress.best, "iteration": progress.best_iteration},
        "iterations": progress.iteration,
        "nfe_forward": {"mean": mean("nfe_forward"), "total": int(sum(r["nfe_forward"] for r in hist))},
        "nfe_backward": {"mean": mean("nfe_backward"), "total": int(sum(r["nfe_backward"] for r in hist))},
        "wall_time": wall,
        "step_time_mean": mean("step_time"),
        "params": n_params(model),
        "seed": built.seed,
        "config_hash": built.config_hash,
        "run_dir": str(run_dir),
        **extra,
    }


def _physics(model, data: Data, run_dir: Path, rollouts: dict) -> dict:
    """Rollout/energy metrics of the test split, energy.csv (the drift of every horizon) and the
    rollout kept in ``rollouts["test"]`` for the figures; a rollout that blows up is reported, not
    raised."""
    try:
        metrics, rollouts["test"] = physics.physics_metrics(model, data, data.test)
        physics.energy_drift_curve(data, data.test, rollouts["test"], run_dir / "energy.csv")
        return metrics
    except (AssertionError, RuntimeError, FloatingPointError) as err:
        return {"error": str(err).splitlines()[0]}


def write_history(path: Path, history: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


@torch.no_grad()
def make_figures(built: Built, data: Data, model, progress: Progress, run_dir: Path,
                 rollout: torch.Tensor | None = None) -> dict[str, Path]:
    """loss.png and predictions.png (decision regions, end-state trajectories or the series fit);
    physics datasets: phase and energy plots of ``rollout`` (the test rollout, computed if None)."""
    model.eval()
    figures = {"loss": plots.loss_curve(progress.history, metric_name(data), run_dir / "loss.png")}
    try:
        figures.update(trajectory_figures(data, model, run_dir, getattr(built.dataset, "rmse_window", None)))
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
            times = torch.tensor([built.t0, built.t1]).to(test.x)
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
            dense = torch.linspace(built.t0, built.t1, 50).to(test.x)
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


def summary_text(metrics: dict) -> str:
    name = metrics["metric"]
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"  # noqa: E731
    final = metrics["final"]
    lines = [
        f"status      {metrics['status']}" + (f" ({metrics['reason']})" if metrics["reason"] else ""),
        f"final       train {name} {fmt(final.get(f'train_{name}'))} | test {name} "
        f"{fmt(final.get(f'test_{name}'))} | test loss {fmt(final.get('test_loss'))}",
        f"best        test {name} {fmt(metrics['best'][f'test_{name}'])} at iteration {metrics['best']['iteration']}",
        f"NFE / iter  forward {metrics['nfe_forward']['mean']:.1f} | backward {metrics['nfe_backward']['mean']:.1f}",
        f"wall time   {metrics['wall_time']:.1f} s ({1e3 * metrics['step_time_mean']:.1f} ms/iteration), "
        f"{metrics['iterations']} iterations",
        f"parameters  {metrics['params']}",
        *_physics_lines(metrics.get("physics"), fmt),
        *([f"interpret.  velocity MSE {fmt(final['interpretability_error'])}"]
          if "interpretability_error" in final else []),
        *([f"restarts    {len(metrics['restarts'])} (seeds {[r['seed'] for r in metrics['restarts']]})"]
          if metrics.get("restarts") else []),
        f"run dir     {metrics['run_dir']}",
    ]
    return "\n".join(lines)


def _physics_lines(phys: dict | None, fmt) -> list[str]:
    if not phys:
        return []
    if "error" in phys:
        return [f"physics     rollout failed: {phys['error']}"]
    deriv = f" | derivative mse {fmt(phys['derivative_mse'])}" if "derivative_mse" in phys else ""
    return [f"physics     rollout mse {fmt(phys['rollout_mse'])} | energy mse {fmt(phys['energy_mse'])} | "
            f"energy drift {fmt(phys['energy_drift'])} (final {fmt(phys['energy_error_final'])}){deriv}"]
