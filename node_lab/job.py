"""One training job in one run directory: load data, resume, fit, score, write the run's files.

Run directory contents (besides Hydra's ``.hydra/`` and ``train.log``):

- ``metrics.json``: status (completed | diverged) and reason, final and best metrics, forward
  and backward NFE, wall time, parameter count, seed, iterations (:mod:`node_lab.scoring`);
- ``history.csv``: one row per iteration (loss, metric, NFE, step time, STEER end time);
- ``last.pt`` (the last model, optimiser, progress, RNG state, resolved config: what a resume
  continues from) and ``best.pt`` (the model selected on validation); ``train.select`` (best |
  last) decides which one the final metrics, figures, logger summary and ``eval`` use (every file
  is written by :mod:`node_lab.checkpoints`);
- ``env.json``: git commit (dirty flag), package versions, device, threads, command line;
- ``loss.png`` and ``predictions.png``; ``wandb/`` with the W&B run (``logger=wandb``);
- physical systems (Data with an ``energy``): rollout, energy and derivative metrics under
  ``physics`` in metrics.json, ``energy.csv``, and ``phase.png`` / ``energy.png`` (:mod:`node_lab.physics`).
- trajectory tasks with a ``rmse_window``: ``running_rmse.csv`` / ``.png``; with a known true
  velocity and a model that offers one: ``velocity.png`` and ``interpretability_error`` in
  ``metrics.json`` (:mod:`node_lab.run_figures`, :mod:`node_lab.metrics`).

A diverged run (non-finite loss or one above ``train.max_loss``, dt underflow, the step cap) restarts from a fresh
initialisation up to ``train.max_restarts`` times; ``metrics.json`` lists every restart with its
seed and the reason of the failure before it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from node_lab import checkpoints, identity, run_figures, scoring
from node_lab.datasets.base import Data
from node_lab.errors import ConfigError, check_choice, check_number
from node_lab.loop import Progress, fit, metric_name, training_split
from node_lab.rundir import OutputFault
from node_lab.tracking import RunInfo, summary_metrics

if TYPE_CHECKING:
    from node_lab.build import Built

log = logging.getLogger(__name__)

SELECT = ["best", "last"]


@dataclass
class JobSettings:
    """The run-level keys of the ``train/`` group (the loop's are :class:`node_lab.loop.LoopSettings`)."""

    resume: bool = False  # continue from checkpoint.pt in the run directory if present
    resume_from: str | None = None  # a run directory or checkpoint file to continue from
    figures: bool = True
    skip_finished: bool = False  # a run dir with a completed run of the same config hash is not rerun
    max_restarts: int = 0  # a diverged run restarts from a fresh initialisation this many times
    resume_override: list[str] = field(default_factory=list)  # result keys a resume may change
    select: str = "best"  # the model the run reports: best (on validation) | last
    overfit: int | None = None  # debug: train (and validate) on the first N training samples only
    detect_anomaly: bool = False  # debug: torch.autograd anomaly detection (a NaN names the op that made it)

    def __post_init__(self) -> None:
        check_choice("select", self.select, SELECT)
        check_number("overfit", self.overfit, kind=int, low=1, allow_none=True)
        check_number("max_restarts", self.max_restarts, kind=int, low=0)
        if not isinstance(self.resume_override, (list, tuple)) or not all(
                isinstance(k, str) and k for k in self.resume_override):
            raise ConfigError("resume_override", self.resume_override, "must be a list of config keys",
                              fix="e.g. train.resume_override=[train.iterations]")
        self.resume_override = list(self.resume_override)
        for key in ("resume", "figures", "skip_finished", "detect_anomaly"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(key, getattr(self, key), "must be true or false", choices=[True, False])
        if self.resume_from is not None and not Path(self.resume_from).exists():
            raise ConfigError("resume_from", self.resume_from, "no such checkpoint or run directory",
                              fix=f"point train.resume_from at a run directory holding {checkpoints.LAST}")


def load_data(built: Built) -> Data:
    """The dataset's splits on the run's device and dtype, the forcing handed to the model, and the
    validation split (a dataset without one: the training split, with a warning)."""
    try:
        data = built.dataset.load()
    except ConfigError as err:  # a data file or size found wrong on loading: the message names dataset.<key>
        raise err.with_prefix("dataset") from None
    dev, dtype = built.device.torch_device, built.device.dtype
    data.train, data.test = data.train.to(dev, dtype), data.test.to(dev, dtype)
    data.extra = {name: split.to(dev, dtype) for name, split in data.extra.items()}
    if data.forcing is not None:
        data.forcing = data.forcing.to(dev, dtype)
    built.model.set_forcing(data.forcing)
    if data.val is None:
        log.warning("%s has no validation split: the model is selected on its training split",
                    built.dataset.describe())
        data.val = data.train
    else:
        data.val = data.val.to(dev, dtype)
    return data


def _check_batch_size(built: Built, data: Data) -> None:
    n = len(training_split(data, built.loop.mode)[0])
    if built.loop.batch_size is not None and built.loop.batch_size > n:
        raise ConfigError("train.batch_size", built.loop.batch_size,
                          f"exceeds the {n} training samples of {built.dataset.describe()}",
                          fix=f"train.batch_size=null (full batch) or <= {n}")


def run(built: Built, run_dir: Path, *, group: str, name: str,
        should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Train one job; returns the metrics written to ``metrics.json``. ``should_stop`` (a signal
    arrived, :class:`node_lab.rundir.Interruption`) ends the run at a whole iteration with status
    ``interrupted``, its checkpoint written."""
    started = time.perf_counter()
    if built.job.skip_finished:
        finished = checkpoints.finished_metrics(run_dir, built.config)
        if finished is not None:
            log.info("skipped: %s already holds a completed run of this config (%s)", run_dir, built.config_hash)
            return finished
    run_dir.mkdir(parents=True, exist_ok=True)
    built.device.activate()
    data = load_data(built)
    if built.job.overfit:  # debug=overfit: a tiny training set, validated on itself
        data.train = data.train.batch(torch.arange(min(built.job.overfit, len(data.train)), device=data.train.x.device))
        data.val = data.train
    _check_batch_size(built, data)
    model = built.model.to(built.device.torch_device, built.device.dtype)
    optimizer = built.optimizer(model.parameters())
    generator = torch.Generator().manual_seed(built.seed)
    progress = Progress()
    restarts: list[dict] = []  # carried over a resume with the wall time of the earlier parts
    parts: list[float] = []
    source = checkpoints.resume_source(run_dir, built.job.resume, built.job.resume_from)
    if source is not None:
        state = checkpoints.load_checkpoint(source, built.device.torch_device, needs=checkpoints.RESUMABLE)
        check_resume(state["config"], built, source)
        key = "train.resume_from" if built.job.resume_from else "train.resume"
        progress = checkpoints.restore(state, model, optimizer, generator, source, key)
        follow_config(optimizer, built.optimizer(model.parameters()))
        restarts, parts = list(state.get("restarts", [])), list(state.get("wall_time_parts", []))
        log.info("resumed from %s at iteration %d", source, progress.iteration)
    checkpoints.write_json(run_dir / checkpoints.ENV, checkpoints.environment(built.device.describe(),
                                                                              torch.get_num_threads()))
    log.info("model %s | solver %s | steer %s | device %s (%d threads) | %d params | %d iterations",
             model.describe(), built.solver.describe(), built.steer.describe(), built.device.describe(),
             torch.get_num_threads(), scoring.n_params(model), built.loop.total_iterations(len(data.train)))
    last_path, best_path = run_dir / checkpoints.LAST, run_dir / checkpoints.BEST
    if source is not None:
        checkpoints.carry_best(source, run_dir)
    metric = f"val_{metric_name(data)}"

    def save(progress: Progress, optimizer, generator: torch.Generator) -> None:
        checkpoints.save_checkpoint(last_path, model, optimizer, progress, generator, built.config,
                                    restarts=restarts, wall_time_parts=[*parts, time.perf_counter() - started])

    def save_best(progress: Progress) -> None:
        checkpoints.save_best(best_path, model, progress, metric, built.config)

    built.logger.start(RunInfo(run_dir, built.config, group, name, tags=built.tags,
                               resumed_from=None if source is None else source.parent))
    failed, metrics = True, {}
    anomaly = torch.autograd.detect_anomaly() if built.job.detect_anomaly else contextlib.nullcontext()
    try:
        while True:
            with anomaly:
                fit(model, data, optimizer, built.steer, built.loop, t0=built.t0, t1=built.t1, generator=generator,
                    logger=built.logger, progress=progress, on_best=save_best,
                    on_eval=lambda p, o=optimizer, g=generator: save(p, o, g), should_stop=should_stop)
            if progress.status != "diverged" or len(restarts) >= built.job.max_restarts or should_stop():
                break
            seed = built.seed + 1000 * (len(restarts) + 1)
            restarts.append({"seed": seed, "after": progress.reason})
            log.warning("restart %d/%d from a fresh initialisation, seed %d (%s)", len(restarts),
                        built.job.max_restarts, seed, progress.reason)
            best_path.unlink(missing_ok=True)  # the failed attempt's best is not this attempt's
            reinitialise(model, seed)
            optimizer = built.optimizer(model.parameters())
            generator = torch.Generator().manual_seed(seed)
            progress = Progress()
        save(progress, optimizer, generator)  # last.pt: the last model, for resume (results first)
        last, selected = _select(built, model, data, progress, best_path)
        rollouts: dict = {}  # the physics rollout of the final metrics, drawn again by the figures
        metrics = scoring.summarise(model, data, progress, t0=built.t0, t1=built.t1,
                                    eval_batch_size=built.loop.eval_batch_size,
                                    wall=sum(parts) + time.perf_counter() - started, seed=built.seed,
                                    config_hash=built.config_hash, run_dir=run_dir, selected=selected,
                                    last=last, rollouts=rollouts)
        metrics["restarts"] = restarts
        metrics["wall_time_parts"] = [*parts, time.perf_counter() - started]
        checkpoints.write_history(run_dir / checkpoints.HISTORY, progress.history)
        # metrics.json last: a run whose outputs could not all be written is never "completed"
        checkpoints.write_json(run_dir / checkpoints.METRICS, metrics)
        if progress.status == "completed":
            chosen = run_dir / checkpoints.CHECKPOINTS[selected["checkpoint"]]
            built.logger.log_model(chosen, {"config": built.config, "metrics": summary_metrics(metrics),
                                            "iteration": selected["iteration"]}, [selected["checkpoint"], "latest"])
        if built.job.figures and progress.history and progress.status != "interrupted":
            _figures(built, model, data, progress, run_dir, rollouts)
        failed = progress.status != "completed"
    except OutputFault as fault:
        _record_fault(run_dir, metrics or {"status": "failed", "iterations": progress.iteration}, fault)
        raise
    finally:
        built.logger.finish(summary=metrics, failed=failed)
    return metrics


def _select(built: Built, model: torch.nn.Module, data: Data, progress: Progress,
            best_path: Path) -> tuple[dict | None, dict]:
    """With ``train.select=best``, load best.pt's weights into ``model`` when they are not the last
    ones. Returns the last model's val/test metrics (None unless the run completed) and which
    checkpoint is selected."""
    if progress.status != "completed":
        return None, {"checkpoint": "last", "iteration": progress.iteration}
    last = scoring.last_metrics(model, data, built.t0, built.t1, built.loop.eval_batch_size, progress.iteration)
    best = progress.best_iteration
    if built.job.select == "best" and best is not None and best != progress.iteration and best_path.is_file():
        model.load_state_dict(checkpoints.load_checkpoint(best_path, built.device.torch_device)["model"])
        return last, {"checkpoint": "best", "iteration": best}
    return last, {"checkpoint": built.job.select, "iteration": progress.iteration}


def _figures(built: Built, model, data: Data, progress: Progress, run_dir: Path, rollouts: dict) -> None:
    """The run's figures; a figure that cannot be written is a warning (the results are already saved)."""
    try:
        built.logger.log_images(run_figures.make_figures(
            model, data, progress.history, run_dir, t0=built.t0, t1=built.t1,
            rmse_window=getattr(built.dataset, "rmse_window", None), rollout=rollouts.get("test")))
    except OSError as err:
        log.warning("figures not written (%s)", err.strerror or err)


def _record_fault(run_dir: Path, metrics: dict, fault: OutputFault) -> None:
    """Best effort: metrics.json says the run failed to write its outputs (never "completed")."""
    try:
        checkpoints.write_json(run_dir / checkpoints.METRICS,
                               {**metrics, "status": "failed", "reason": f"output not written: {fault.message()}"})
    except OutputFault:
        pass  # the disk is still full: the CLI's one line says it


def check_resume_before_start(built: Built, run_dir: Path) -> None:
    """The resume check of :func:`check_resume`, run before anything is written (preflight): a refused
    resume must not leave its config in the run directory's ``.hydra/``."""
    source = checkpoints.resume_source(run_dir, built.job.resume, built.job.resume_from)
    if source is not None:
        check_resume(checkpoints.load_checkpoint(source)["config"], built, source)


def check_resume(saved: dict, built: Built, source: Path) -> None:
    """A resume continues the checkpoint's run: every result key must match, except those the user
    allows to change (``train.resume_override=[train.iterations, optim.lr]``)."""
    changed = identity.differences(saved, built.config, built.job.resume_override)
    if not changed:
        return
    key = "train.resume_from" if built.job.resume_from else "train.resume"
    shown = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in changed[:4])
    more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
    keys = ",".join(k for k, _, _ in changed[:4])
    raise ConfigError(key, built.job.resume_from or True, f"the checkpoint {source} was trained with other settings: "
                      f"{shown}{more}", fix=f"resume with its settings, start afresh (train.resume=false, another "
                      f"hydra.run.dir), or allow the change: train.resume_override=[{keys}]")


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def follow_config(loaded, fresh) -> None:
    """After a resume, the optimiser's hyperparameters are the config's (an allowed ``optim.lr``
    change takes effect instead of being written to the config while the old value keeps running)."""
    if not isinstance(loaded, torch.optim.Optimizer) or not isinstance(fresh, torch.optim.Optimizer):
        return
    for group, new in zip(loaded.param_groups, fresh.param_groups):
        for k, v in new.items():
            if k != "params" and k in group and not isinstance(v, torch.Tensor):
                group[k] = v


def reinitialise(model: torch.nn.Module, seed: int) -> None:
    """Fresh default initialisation of every layer, drawn from ``seed``."""
    torch.manual_seed(seed)
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
