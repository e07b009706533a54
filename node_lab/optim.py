"""Optimiser phases for the `optim/` group: several torch optimisers one after the other in one run.

``optim/adam.yaml`` is a partial torch optimiser; ``optim/adam_lbfgs.yaml`` is a partial
:class:`Phases`, e.g. Adam for 1000 iterations, then L-BFGS for the rest. The training loop sees
one optimiser and writes one continuous history (a ``phase`` column names the active one).
Optimisers that re-evaluate the loss (L-BFGS) get the loop's closure; the others step once.
``optim/sgd_multistep.yaml`` is a partial :class:`MultiStep`: one torch optimiser whose learning
rate is multiplied by ``gamma`` at milestones counted in iterations or epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from node_lab.errors import ConfigError, check_choice, check_number


def needs_closure(optimizer) -> bool:
    return isinstance(optimizer, (torch.optim.LBFGS, Wrapped))


def set_epoch_length(optimizer, iterations: int) -> None:
    """Tell an optimiser with an epoch-based schedule (:class:`MultiStep`) how many iterations an
    epoch has; a no-op for the others. The training loop calls it before the first step."""
    if isinstance(optimizer, MultiStep):
        optimizer.epoch_length = iterations


def optimizer_step(optimizer, closure: Callable[[], torch.Tensor]) -> None:
    """``optimizer.step``, passing ``closure`` (recompute loss and gradients) only to optimisers
    that need it: a plain ``step(closure)`` would make Adam evaluate the batch twice."""
    if needs_closure(optimizer):
        optimizer.step(closure)
    else:
        optimizer.step()


class Wrapped:
    """Base of the optimisers that wrap torch ones: the loop steps ``current`` through them and
    they count the steps (their schedules depend on it); they take the loop's closure and pass it
    on only to optimisers that need it."""

    current: torch.optim.Optimizer
    steps: int = 0

    @property
    def param_groups(self) -> list[dict]:
        return self.current.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.current.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], torch.Tensor]) -> None:
        optimizer_step(self.current, closure)
        self.steps += 1


class Phases(Wrapped):
    """A list of ``{optimizer: <partial torch optimiser>, iterations: N}``; the last phase may have
    ``iterations: null`` (until the run ends). Phase k runs for its iterations, then phase k + 1
    starts with a fresh optimiser on the same parameters. ``state_dict`` includes the position,
    so a resumed run continues in the right phase."""

    def __init__(self, params: Iterable[torch.nn.Parameter], phases: list) -> None:
        params = list(params)
        if not phases:
            raise ConfigError("phases", phases, "needs at least one phase",
                              fix="optim.phases=[{optimizer: {...}, iterations: N}]")
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lengths: list[int | None] = []
        for i, phase in enumerate(phases):
            unknown = set(phase) - {"optimizer", "iterations"}
            if unknown:
                bad = sorted(unknown)[0]
                raise ConfigError(f"phases[{i}].{bad}", phase[bad], "not a key of an optimiser phase",
                                  choices=["optimizer", "iterations"], fix=f"remove optim.phases[{i}].{bad}")
            if not callable(phase.get("optimizer")):
                raise ConfigError(f"phases[{i}]", dict(phase), "each phase is {optimizer: <partial torch "
                                  "optimiser with _target_ and _partial_: true>, iterations: N}",
                                  choices=["optimizer", "iterations"])
            length = phase.get("iterations")
            last = i == len(phases) - 1
            check_number(f"phases[{i}].iterations", length, kind=int, low=1, allow_none=last)
            try:
                self.optimizers.append(phase["optimizer"](params))
            except (TypeError, ValueError) as err:
                raise ConfigError(f"phases[{i}].optimizer", None, str(err).splitlines()[0]) from None
            self.lengths.append(length)
        self.steps = 0

    def check_total(self, iterations: int) -> None:
        """Every phase must get at least one of the run's ``iterations``."""
        start = sum(n for n in self.lengths[:-1])
        if iterations <= start:
            raise ConfigError("iterations", iterations, f"the last optimiser phase starts after iteration {start}",
                              fix=f"train.iterations={start + (self.lengths[-1] or 1)} (or shorten the phases)")

    @property
    def index(self) -> int:
        end = 0
        for i, length in enumerate(self.lengths[:-1]):
            end += length
            if self.steps < end:
                return i
        return len(self.lengths) - 1

    @property
    def current(self) -> torch.optim.Optimizer:
        return self.optimizers[self.index]

    @property
    def phase(self) -> str:
        return type(self.current).__name__

    def state_dict(self) -> dict:
        return {"steps": self.steps, "optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        for optimizer, s in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(s)


SCHEDULE_UNITS = ["iteration", "epoch"]


class MultiStep(Wrapped):
    """A torch optimiser (``optimizer``: a partial, e.g. SGD) whose learning rate is the initial
    one times ``gamma``^k after k of the ``milestones`` (torchdiffeq's odenet_mnist / the SONODE
    paper: ×0.1 at epochs 60 and 100). ``unit``: ``iteration`` or ``epoch`` (the training loop
    sets the epoch length, ceil(n_train / batch_size)). The step count is in ``state_dict``, so
    a resumed run continues at the right rate."""

    def __init__(self, params: Iterable[torch.nn.Parameter], optimizer: Callable[..., torch.optim.Optimizer],
                 milestones: list, gamma: float = 0.1, unit: str = "epoch") -> None:
        check_choice("unit", unit, SCHEDULE_UNITS)
        check_number("gamma", gamma, low=0, low_open=True)
        milestones = list(milestones)
        for i, m in enumerate(milestones):
            check_number(f"milestones[{i}]", m, kind=int, low=1)
        if milestones != sorted(set(milestones)):
            raise ConfigError("milestones", milestones, "must be strictly increasing",
                              fix="e.g. optim.milestones=[60,100]")
        if not callable(optimizer):
            raise ConfigError("optimizer", optimizer, "must be a partial torch optimiser",
                              fix="optim.optimizer: {_target_: torch.optim.SGD, _partial_: true, lr: 0.1}")
        try:
            self.current = optimizer(params)
        except (TypeError, ValueError) as err:
            raise ConfigError("optimizer", None, str(err).splitlines()[0]) from None
        self.milestones, self.gamma, self.unit = milestones, float(gamma), unit
        self.initial_lr = [g["lr"] for g in self.current.param_groups]
        self.epoch_length = 1
        self.steps = 0

    def factor(self) -> float:
        """The learning-rate factor at the current step: gamma^(milestones passed)."""
        done = self.steps // self.epoch_length if self.unit == "epoch" else self.steps
        return self.gamma ** sum(done >= m for m in self.milestones)

    def step(self, closure: Callable[[], torch.Tensor]) -> None:
        for group, lr in zip(self.current.param_groups, self.initial_lr):
            group["lr"] = lr * self.factor()
        super().step(closure)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "optimizer": self.current.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self.current.load_state_dict(state["optimizer"])
