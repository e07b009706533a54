"""The model contract: initial-state map → vector field → solver call → readout.

Every model is an :class:`ODEModel`. A subclass builds two modules and calls ``build_head()``:

- ``initial`` (used by :meth:`initial_state`): x (B, d, …) [and the data's v0] → z0;
- ``dynamics``: (t, z) → dz/dt, the vector field the solver integrates;

and the base class does the rest: the one solver call (:mod:`node_lab.solvers`), the readout
selection (data dims lead every state; override :meth:`read` otherwise) and the head.
``forward(x, times)`` returns (T, B, out) at every time in ``times``; end-state tasks use the
last one.

Extension point: subclass, add ``conf/model/<name>.yaml`` with ``_target_``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from node_lab.augmentation import Augmentation
from node_lab.errors import ConfigError, check_choice
from node_lab.solvers import Solver

READ_DIMS = ["data", "all"]
HEADS = ["auto", "identity", "linear"]


class ODEModel(nn.Module):
    """Base class; see the module docstring.

    **Arguments** (common to every model):
    - ``data_dim``, ``output_dim``: from the dataset.
    - ``solver``: the :class:`Solver` built from ``solver/``.
    - ``augmentation``: the :class:`Augmentation` built from ``augmentation/``.
    - ``readout``: ``{dims: data | all, head: auto | identity | linear}``. ``auto`` is identity
      when the read dims equal the output dims, else a linear layer.
    """

    def __init__(
        self,
        data_dim: int,
        output_dim: int,
        solver: Solver,
        augmentation: Augmentation,
        readout: dict | None = None,
    ) -> None:
        super().__init__()
        readout = dict(readout or {})
        unknown = set(readout) - {"dims", "head"}
        if unknown:
            raise ConfigError(f"readout.{sorted(unknown)[0]}", readout[sorted(unknown)[0]],
                              "unknown readout key", choices=["dims", "head"])
        self.read_mode = readout.get("dims", "data")
        head = readout.get("head", "auto")
        check_choice("readout.dims", self.read_mode, READ_DIMS)
        check_choice("readout.head", head, HEADS)
        self.data_dim = data_dim
        self.output_dim = output_dim
        self.solver = solver
        self.augmentation = augmentation
        self.state_dim = data_dim + augmentation.dim
        self._head_choice = head

    @staticmethod
    def make(key: str, factory: Callable[..., nn.Module], **dims) -> nn.Module:
        """Build a sub-network; its ConfigErrors name ``key.<param>`` (e.g. ``field.activation``)."""
        try:
            return factory(**dims)
        except ConfigError as err:
            raise err.with_prefix(key) from None

    def build_head(self) -> None:
        """Called by subclasses once ``read_dims`` is known."""
        n = self.read_dims()
        if self._head_choice == "identity" and n != self.output_dim:
            raise ConfigError("readout.head", "identity",
                              f"reads {n} dims but the dataset needs {self.output_dim} outputs",
                              choices=["linear", "auto"], fix="model.readout.head=linear")
        linear = self._head_choice == "linear" or (self._head_choice == "auto" and n != self.output_dim)
        self.head = nn.Linear(n, self.output_dim) if linear else nn.Identity()
        self.head_kind = "linear" if linear else "identity"

    # --- subclass interface ----------------------------------------------------------------
    initial: nn.Module
    dynamics: nn.Module

    def initial_state(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def read_dims(self) -> int:
        """How many leading state dims the readout sees (data dims come first in every state)."""
        return self.data_dim if self.read_mode == "data" else self.state_dim

    def read(self, zs: torch.Tensor) -> torch.Tensor:
        """(T, B, state, …) → (T, B, read_dims, …)."""
        return zs[:, :, : self.read_dims()]

    # --- shared ----------------------------------------------------------------------------
    def trajectory(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        """The full ODE state at ``times``: (T, B, state, …)."""
        return self.solver.solve(self.dynamics, self.initial_state(x, v0), times)

    def forward(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.read(self.trajectory(x, times, v0)))

    def forcing_dim(self) -> int:
        """Forcing channels u(t) the vector field reads (0: none); see :class:`FeatureField`."""
        return max((getattr(m, "forcing_dim", 0) for m in self.modules() if m is not self), default=0)

    def set_forcing(self, forcing) -> None:
        """Hand the dataset's :class:`~node_lab.datasets.base.Forcing` to the fields that read it."""
        for m in self.modules():
            if m is not self and getattr(m, "forcing_dim", 0):
                m.forcing = forcing

    def velocity_estimate(self, zs: torch.Tensor) -> torch.Tensor | None:
        """What the model offers as the data's velocity along a state trajectory (T, B, d), for
        the interpretability error; None when it has no such coordinate."""
        return None

    def describe(self) -> str:
        return (f"{type(self).__name__} state={self.state_dim} {self.augmentation.describe()} "
                f"readout={self.read_mode}->{self.head_kind}")
