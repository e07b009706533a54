"""A discrete residual network, the baseline of Dupont et al. (2019): not an ODE.

``num_layers`` unshared blocks z ← z + f_l(t_l, z), each f_l a fresh copy of the configured
field (same width as the NODE's field), on the same (augmented) state and with the same readout
and head as the ODE models, so "NODE vs ANODE vs ResNet of the same width" differ only in the
map from z(0) to the features. The solver is not used: NFE is 0 and the end time (STEER) is
ignored; a "trajectory" is the sequence of block outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from node_lab.errors import check_number
from node_lab.models.base import ODEModel


class DiscreteResNet(ODEModel):
    """**Arguments:** ``field``: partial block network called with ``in_dim = out_dim = d + p``
    (Dupont: an MLP of width 32); ``num_layers``: residual blocks (Dupont: 5); the rest as in
    :class:`ODEModel`. Block l sees t_l = l / num_layers when its field is time-dependent."""

    trajectory_tasks = False  # its "trajectory" is the block outputs, not a flow in time

    def __init__(self, field: Callable[..., nn.Module], num_layers: int = 5, **common) -> None:
        super().__init__(**common)
        check_number("num_layers", num_layers, kind=int, low=1)
        self.initial = self.augmenter()
        self.dynamics = nn.ModuleList(
            [self.make("field", field, in_dim=self.state_dim, out_dim=self.state_dim) for _ in range(num_layers)])
        self.build_head()

    def initial_state(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        return self.initial(x)

    def trajectory(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        """The states after each block, at depth t_l = t0 + l (T - t0) / L; ``times`` picks the block
        nearest to each requested time (two times: the input state and the output)."""
        z = self.initial_state(self.encoder(x), v0)
        states = [z]
        for i, block in enumerate(self.dynamics):
            z = z + block(z.new_tensor(i / len(self.dynamics)), z)
            states.append(z)
        depth = (times - times[0]) / (times[-1] - times[0]) * len(self.dynamics)
        return torch.stack(states)[depth.round().long()]  # (T, B, state)
