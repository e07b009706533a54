"""The training loop and the schema of its settings (the loop keys of the ``train/`` group).

Imports neither Hydra nor W&B: the model, data, optimiser and a :class:`LoopSettings` arrive as
objects; metrics leave through a :class:`~node_lab.tracking.RunLogger` and :class:`Progress`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from node_lab.datasets.base import Data, Split, Task
from node_lab.errors import ConfigError, check_choice, check_number
from node_lab.models.base import ODEModel
from node_lab.optim import optimizer_step, set_epoch_length
from node_lab.steer import EndTimeSampler
from node_lab.tracking import RunLogger

log = logging.getLogger(__name__)

# What a training step fits (``train.mode``): ``trajectory`` integrates from x over the data's
# times (neural-ODE style, seed 004); ``derivatives`` fits the field to the known time derivative
# at every observed state, without a solver (Greydanus et al.'s HNN); ``steps`` fits one solver
# (or HINN layer) step between consecutive observed states (seed 003; autonomous systems).
TRAIN_MODES = ["trajectory", "derivatives", "steps"]
# The training loss on regression data (``train.loss``): ``auto`` is the dataset's (mse), ``l1`` the
# mean absolute error (Cranmer et al.'s LNN). Metrics stay the dataset's (MSE) whatever it is.
TRAIN_LOSSES = ["auto", "mse", "l1"]
REGRESSION_LOSSES = {"auto": F.mse_loss, "mse": F.mse_loss, "l1": F.l1_loss}
# What every evaluation of a stochastic model (and `node-lab ensemble`) reports: node_lab.metrics
STOCHASTIC_SCORES = ("nll", "crps", "coverage90", "mean_mse")


@dataclass
class LoopSettings:
    """The ``train/`` keys the loop reads: length, batching, evaluation, logging, what a step fits.

    The run-level keys of the same group (resume, figures, restarts, …) are
    :class:`node_lab.job.JobSettings`; the build layer splits the group between the two."""

    iterations: int | None = 300
    epochs: int | None = None
    batch_size: int | None = None
    eval_every: int = 50
    log_every: int = 50
    mode: str = "trajectory"  # TRAIN_MODES
    eval_batch_size: int | None = None  # evaluation in batches of this many samples (None: the whole split)
    max_loss: float | None = None  # a finite training loss above this is a divergence too (None: off)
    loss: str = "auto"  # the training loss: auto (the dataset's) | mse | l1 (regression data)

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, TRAIN_MODES)
        check_choice("loss", self.loss, TRAIN_LOSSES)
        if (self.iterations is None) == (self.epochs is None):
            raise ConfigError("iterations", self.iterations, "set exactly one of train.iterations and train.epochs",
                              fix="train.epochs=null (or train.iterations=null)")
        check_number("iterations", self.iterations, kind=int, low=1, allow_none=True)
        check_number("epochs", self.epochs, kind=int, low=1, allow_none=True)
        check_number("batch_size", self.batch_size, kind=int, low=1, allow_none=True)
        check_number("eval_batch_size", self.eval_batch_size, kind=int, low=1, allow_none=True)
        check_number("eval_every", self.eval_every, kind=int, low=1)
        check_number("log_every", self.log_every, kind=int, low=1)
        check_number("max_loss", self.max_loss, low=0, low_open=True, allow_none=True)

    def total_iterations(self, n_train: int) -> int:
        if self.iterations is not None:
            return self.iterations
        return self.epochs * epoch_length(n_train, self.batch_size)


@dataclass
class Progress:
    """Where a run stands; checkpointed, so a resumed run continues the same history."""

    iteration: int = 0
    history: list[dict] = field(default_factory=list)
    best: float | None = None  # the best validation metric so far (model selection)
    best_iteration: int | None = None
    best_loss: float | None = None  # its validation loss: breaks ties of the metric (accuracy)
    status: str = "running"
    reason: str = ""


def improves(progress: Progress, signed: float, loss: float, sign: float) -> bool:
    """Whether a validation result (metric × sign, higher is better; its loss) beats the best so far:
    a better metric, or the same metric (accuracy ties are common) with a lower loss."""
    if progress.best is None:
        return True
    best = sign * progress.best
    return signed > best or (signed == best and progress.best_loss is not None and loss < progress.best_loss)


def is_divergence(err: BaseException) -> bool:
    """A blow-up of the learned dynamics rather than a bug: non-finite values, torchdiffeq's
    "underflow in dt" (an AssertionError) or its step cap ("max_num_steps exceeded")."""
    text = str(err)
    return isinstance(err, FloatingPointError) or "underflow in dt" in text or "max_num_steps" in text


def metric_name(data: Data) -> str:
    return "accuracy" if data.task == Task.classification else "mse"


def higher_is_better(data: Data) -> bool:
    return data.task == Task.classification


def _times(split: Split, t0: float, t1: float, like: torch.Tensor) -> torch.Tensor:
    if split.times is not None:
        return split.times
    return torch.tensor([t0, t1], dtype=like.dtype, device=like.device)


def _predict(model: ODEModel, data: Data, split: Split, t0: float, t1: float) -> torch.Tensor:
    pred = model(split.x, _times(split, t0, t1, split.x), split.v0)  # (T, B, out)
    return pred if data.task == Task.trajectory else pred[-1]


def training_split(data: Data, mode: str) -> tuple[Split, torch.Tensor | None]:
    """The split a training step draws from: the trajectories, or (pointwise modes) every state
    with its time derivative (``derivatives``) or its successor (``steps``) as rows (N, d); for
    ``steps`` also the times (t0, t0 + Δt) every pair is integrated over (autonomous systems)."""
    split = data.train
    if mode == "trajectory":
        return split, None
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731  (T, B, d) → (T·B, d)
    if mode == "derivatives":
        return Split(x=flat(split.y), y=flat(split.velocity)), None
    gaps = split.times.diff()
    if not torch.allclose(gaps, gaps[0].expand_as(gaps), rtol=1e-4, atol=0.0):
        raise ConfigError("train.mode", mode, "needs a uniform time grid", choices=["trajectory", "derivatives"])
    return Split(x=flat(split.y[:-1]), y=flat(split.y[1:])), split.times[:2]


def _pointwise_prediction(model: ODEModel, batch: Split, mode: str, pair_times: torch.Tensor | None) -> torch.Tensor:
    if mode == "derivatives":
        return model.data_field(torch.zeros((), dtype=batch.x.dtype, device=batch.x.device), batch.x)
    return model(batch.x, pair_times)[-1]


def _regression_loss(pred: torch.Tensor, y: torch.Tensor, loss_kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of ``loss_kind`` and the MSE (detached) of a regression prediction."""
    loss = REGRESSION_LOSSES[loss_kind](pred, y)
    return loss, (loss if loss_kind in ("auto", "mse") else F.mse_loss(pred, y)).detach()


def _loss_and_metric(data: Data, split: Split, pred: torch.Tensor,
                     loss_kind: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Loss (``loss_kind``, :data:`TRAIN_LOSSES`) and metric (accuracy or MSE) of a prediction."""
    y = split.y
    if data.task == Task.trajectory and split.observed is not None:
        pred, y = pred[split.observed], y[split.observed]  # only the observed time points count
    if data.loss == "cross_entropy":
        loss = F.cross_entropy(pred, y)
        return loss, (pred.argmax(dim=1) == y).float().mean()
    loss, mse = _regression_loss(pred, y, loss_kind)
    if data.task == Task.classification:  # ±1 labels: accuracy by sign
        return loss, (torch.sign(pred) == torch.sign(y)).float().mean()
    return loss, mse


def batch_loss(model: ODEModel, data: Data, batch: Split, t0: float, end: float, mode: str = "trajectory",
               pair_times: torch.Tensor | None = None, loss_kind: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Training loss and metric of one batch for ``train.mode`` (trajectory | derivatives | steps).
    The one place a training loss is computed: a model that trains with a loss of its own (e.g. a
    likelihood over sampled paths) is asked for it here."""
    if mode == "trajectory" and model.stochastic:  # a likelihood over sampled paths (node_lab.models.sde)
        return model.training_loss(batch, _times(batch, t0, end, batch.x))
    if mode == "trajectory":
        pred = model(batch.x, _times(batch, t0, end, batch.x), batch.v0)
        return _loss_and_metric(data, batch, pred if data.task == Task.trajectory else pred[-1], loss_kind)
    return _regression_loss(_pointwise_prediction(model, batch, mode, pair_times), batch.y, loss_kind)


@torch.no_grad()
def evaluate(model: ODEModel, data: Data, split: Split, t0: float, t1: float, batch_size: int | None = None) -> dict:
    """Loss and metric of ``split``, integrating to the nominal end time T (never a STEER draw),
    in batches of ``batch_size`` samples (None: all at once); loss and metric are per-sample means,
    so batching changes them only through the adaptive solver's steps. ``nfe``: summed over batches.
    A stochastic model's loss is its NLL and its metric the predictive mean's MSE; its ``scores``
    (nll, crps, coverage90, mean_mse: :data:`STOCHASTIC_SCORES`) come back under ``scores``."""
    was_training = model.training
    model.eval()
    model.solver.nfe = 0
    n = len(split)
    size = batch_size or n
    loss = metric = 0.0
    scores = dict.fromkeys(STOCHASTIC_SCORES, 0.0) if model.stochastic else None
    for start in range(0, n, size):
        part = split.batch(torch.arange(start, min(start + size, n), device=split.x.device)) if size < n else split
        if scores is not None:
            part_scores = model.scores(part, _times(part, t0, t1, part.x))
            for key in scores:
                scores[key] += part_scores[key] * len(part) / n
            continue
        part_loss, part_metric = _loss_and_metric(data, part, _predict(model, data, part, t0, t1))
        loss += part_loss.item() * len(part) / n
        metric += part_metric.item() * len(part) / n
    model.train(was_training)
    if scores is not None:
        return {"loss": scores["nll"], "metric": scores["mean_mse"], "nfe": model.solver.nfe, "scores": scores}
    return {"loss": loss, "metric": metric, "nfe": model.solver.nfe}


def epoch_length(n: int, batch_size: int | None) -> int:
    """Iterations per epoch of :func:`epoch_batches`: full batches only (at least one)."""
    return max(1, n // batch_size) if batch_size else 1


def epoch_batches(n: int, batch_size: int | None, seed: int, start: int = 0) -> Iterator[torch.Tensor]:
    """Sample indices for iterations ``start + 1, start + 2, …``: the full range when ``batch_size``
    is None, else epochs of a permutation split into batches (each sample once per epoch; a last
    partial batch is dropped, as DataLoader(drop_last=True) does, unless it is the only one).
    Epoch e's permutation depends only on (``seed``, e), so a resumed run continues mid-epoch
    exactly where the interrupted one was."""
    if not batch_size:
        while True:
            yield torch.arange(n)
    per_epoch = epoch_length(n, batch_size)
    epoch, skip = divmod(start, per_epoch)
    while True:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        yield from list(order.split(batch_size))[skip:per_epoch]
        epoch, skip = epoch + 1, 0


def _step(model: ODEModel, data: Data, optimizer, batch: Split, t0: float, end: float,
          pair_times: torch.Tensor | None, settings: LoopSettings, name: str) -> dict:
    """One optimiser step on ``batch`` integrated to ``end``; the history row (without iteration)."""
    mode, loss_kind, max_loss = settings.mode, settings.loss, settings.max_loss
    start = time.perf_counter()
    model.solver.nfe = 0
    phase = getattr(optimizer, "phase", None)  # optimiser phases (node_lab.optim.Phases)
    loss, metric = batch_loss(model, data, batch, t0, end, mode, pair_times, loss_kind)
    nfe_forward = model.solver.nfe
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss ({loss.item()})")
    if max_loss is not None and loss.item() > max_loss:
        raise FloatingPointError(f"training loss {loss.item():.4g} above train.max_loss {max_loss:g}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nfe_backward = model.solver.nfe - nfe_forward

    def closure() -> torch.Tensor:  # for optimisers that re-evaluate (L-BFGS)
        optimizer.zero_grad(set_to_none=True)
        again = batch_loss(model, data, batch, t0, end, mode, pair_times, loss_kind)[0]
        again.backward()
        return again

    optimizer_step(optimizer, closure)
    row = {"loss": loss.item(), f"train_{name}": metric.item(), "end_time": end, "nfe_forward": nfe_forward,
           "nfe_backward": nfe_backward, "step_time": time.perf_counter() - start}
    if phase is not None:
        row["phase"] = phase
    return row


# history.csv column → the metric name loggers (W&B, TensorBoard) see: grouped by split
LOGGED = {"loss": "train/loss", "end_time": "train/end_time", "nfe_forward": "nfe/forward",
          "nfe_backward": "nfe/backward", "step_time": "time/iteration_s", "phase": "train/phase"}


def logged_metrics(row: dict, name: str) -> dict:
    """A history row under the loggers' names: ``train/loss``, ``train/<metric>``, ``val/loss``,
    ``val/<metric>``, ``nfe/forward``, ``nfe/backward``, ``time/iteration_s``."""
    out = {}
    for key, value in row.items():
        if key == "iteration":
            continue
        split, _, rest = key.partition("_")
        out[LOGGED.get(key) or (f"{split}/{rest}" if split in ("train", "val", "test") else key)] = value
    return out


def fit(
    model: ODEModel,
    data: Data,
    optimizer: torch.optim.Optimizer,
    steer: EndTimeSampler,
    settings: LoopSettings,
    *,
    t0: float,
    t1: float,
    generator: torch.Generator,
    logger: RunLogger,
    progress: Progress,
    on_eval: Callable[[Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
    on_best: Callable[[Progress], None] = lambda p: None,
) -> Progress:
    """Train until ``settings.total_iterations``, starting from ``progress.iteration`` (resume).

    Each iteration: take the next batch (:func:`epoch_batches`) and draw an end time from
    ``steer``, integrate, step the optimiser. Forward NFE counts the solver's field evaluations
    in the forward pass, backward NFE those of the backward pass (non-zero with the adjoint).
    Every ``eval_every`` iterations (and at the last) the validation split is evaluated at T;
    ``on_best`` is called when its metric improves on the best so far (``progress.best``, the
    model selection; the test split is never looked at here), then ``on_eval`` (checkpointing).
    A non-finite loss or a solver failure ends the run with a status and reason instead of an
    exception. ``mode`` (:data:`TRAIN_MODES`) says what a step fits; the validation metric is
    always the trajectory (rollout) metric, in batches of ``eval_batch_size``.
    ``max_loss``: a finite training loss above it is a divergence too (a blow-up that stays finite on
    the window; its huge gradients leave Adam's second-moment estimate so large that the run freezes).
    ``loss`` (:data:`TRAIN_LOSSES`): the training loss on regression data; the metric is MSE.
    ``should_stop`` is asked after every iteration (a signal arrived): the run then ends with status
    ``interrupted`` at a whole iteration, ready to checkpoint and resume.
    """
    mode, batch_size = settings.mode, settings.batch_size
    eval_every, log_every = settings.eval_every, settings.log_every
    iterations = settings.total_iterations(len(data.train))
    name, sign = metric_name(data), (1.0 if higher_is_better(data) else -1.0)
    train_split, pair_times = training_split(data, mode)
    n = len(train_split)
    set_epoch_length(optimizer, epoch_length(n, batch_size))  # epoch-based LR schedules
    bar = tqdm(total=iterations, initial=progress.iteration, disable=not sys.stderr.isatty(),
               dynamic_ncols=True, desc="train")
    batches = epoch_batches(n, batch_size, generator.initial_seed(), progress.iteration)
    last_val = "–"
    # with a bar on the terminal, log lines go through tqdm.write (above the bar), and to train.log
    redirect = contextlib.nullcontext() if bar.disable else logging_redirect_tqdm()
    with redirect:
        while progress.iteration < iterations:
            it = progress.iteration + 1
            index = next(batches)
            batch = train_split.batch(index.to(train_split.x.device))
            if data.train_transform is not None and mode == "trajectory":  # e.g. random crops of training images
                batch = replace(batch, x=data.train_transform(batch.x, generator))
            end = steer.sample(t0, t1, generator)
            model.set_training_progress(progress.iteration / iterations)
            try:
                row = {"iteration": it, **_step(model, data, optimizer, batch, t0, end, pair_times, settings, name)}
                if it % eval_every == 0 or it == iterations:
                    val = evaluate(model, data, data.val, t0, t1, settings.eval_batch_size)
                    if not math.isfinite(val["metric"]):  # finite on the training window, blown up beyond it
                        raise FloatingPointError(f"non-finite val {name} ({val['metric']})")
                    row.update({"val_loss": val["loss"], f"val_{name}": val["metric"]})
                    row.update({f"val_{key}": value for key, value in val.get("scores", {}).items()})
            except (FloatingPointError, AssertionError, RuntimeError) as err:
                if not is_divergence(err):
                    raise
                progress.status, progress.reason = "diverged", f"iteration {it}: {str(err).splitlines()[0]}"
                log.error("run stopped: %s", progress.reason)
                break
            evaluated = f"val_{name}" in row
            improved = evaluated and improves(progress, sign * row[f"val_{name}"], row["val_loss"], sign)
            if improved:
                progress.best, progress.best_iteration, progress.best_loss = row[f"val_{name}"], it, row["val_loss"]
            progress.history.append(row)
            progress.iteration = it
            logger.log(logged_metrics(row, name), step=it)
            if evaluated:
                last_val = f"{row[f'val_{name}']:.4g}"
            bar.update(1)
            bar.set_postfix({"loss": f"{row['loss']:.3g}", f"val_{name}": last_val,
                             "nfe": f"{row['nfe_forward']}/{row['nfe_backward']}"})
            if it % log_every == 0 or it == iterations:
                val_text = f" val_{name} {row[f'val_{name}']:.4g}" if evaluated else ""
                log.info("iter %d/%d loss %.4g%s nfe %d/%d %.1f ms/it", it, iterations, row["loss"], val_text,
                         row["nfe_forward"], row["nfe_backward"], 1e3 * row["step_time"])
            if improved:
                on_best(progress)
            if evaluated:
                on_eval(progress)
            if should_stop() and progress.iteration < iterations:
                progress.status, progress.reason = "interrupted", f"interrupted at iteration {it}"
                break
    bar.close()
    model.set_training_progress(1.0)  # evaluation and rollouts see the trained model's schedule end
    if progress.status == "running":
        progress.status = "completed"
    if progress.best is not None and not math.isfinite(progress.best):
        progress.best = None
    return progress
