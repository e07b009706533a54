"""The `steer/` group: the end time used for each training batch.

STEER (Ghosh et al. 2020) regularises a neural ODE by drawing the end time of every training
batch from U(T - b, T + b). Evaluation always integrates to T. This is a sampler, not a solver
fork: the model is simply asked for the state at the sampled time.

Extension point: subclass :class:`EndTimeSampler`, add a YAML with ``_target_`` in ``conf/steer/``.
"""

from __future__ import annotations

import torch

from node_lab.errors import ConfigError, check_number


class EndTimeSampler:
    """Base: the end time of one training batch, given the nominal interval [t0, T]."""

    name = "base"

    def check(self, t0: float, t1: float) -> None:
        """Raise ConfigError if this sampler cannot be used on [t0, t1]."""

    def sample(self, t0: float, t1: float, generator: torch.Generator) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class FixedEndTime(EndTimeSampler):
    """Always T (STEER off)."""

    name = "off"

    def sample(self, t0: float, t1: float, generator: torch.Generator) -> float:
        return t1


class UniformEndTime(EndTimeSampler):
    """STEER: T' ~ U(T - b, T + b) during training; needs 0 < b < T - t0 so that T' > t0."""

    name = "uniform"

    def __init__(self, b: float = 0.1) -> None:
        check_number("b", b, low=0, low_open=True)
        self.b = float(b)

    def check(self, t0: float, t1: float) -> None:
        if not self.b < t1 - t0:
            raise ConfigError("b", self.b, f"must satisfy 0 < b < T - t0 = {t1 - t0:g}",
                              fix=f"steer.b={(t1 - t0) / 2:g} (or lengthen the interval)")

    def sample(self, t0: float, t1: float, generator: torch.Generator) -> float:
        u = torch.rand((), generator=generator, dtype=torch.float64).item()
        return t1 - self.b + 2.0 * self.b * u

    def describe(self) -> str:
        return f"uniform(b={self.b:g})"
