"""Optimiser phases for the `optim/` group: several torch optimisers one after the other in one run.

``optim/adam.yaml`` is a partial torch optimiser; ``optim/adam_lbfgs.yaml`` is a partial
:class:`Phases`, e.g. Adam for 1000 iterations, then L-BFGS for the rest. The training loop sees
one optimiser and writes one continuous history (a ``phase`` column names the active one).
Optimisers that re-evaluate the loss (L-BFGS) get the loop's closure; the others step once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from node_lab.errors import ConfigError, check_number


def needs_closure(optimizer) -> bool:
    return isinstance(optimizer, (torch.optim.LBFGS, Phases))


def optimizer_step(optimizer, closure: Callable[[], torch.Tensor]) -> None:
    """``optimizer.step``, passing ``closure`` (recompute loss and gradients) only to optimisers
    that need it: a plain ``step(closure)`` would make Adam evaluate the batch twice."""
    if needs_closure(optimizer):
        optimizer.step(closure)
    else:
        optimizer.step()


class Phases:
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
            if unknown or not callable(phase.get("optimizer")):
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

    @property
    def param_groups(self) -> list[dict]:
        return self.current.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.current.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], torch.Tensor]) -> None:
        optimizer_step(self.current, closure)
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps, "optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        for optimizer, s in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(s)
