"""First-order neural ODE: dz/dt = f(t, z), z(0) = augment(x). NODE and (IL-)ANODE."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from node_lab.models.base import ODEModel


class FirstOrderODE(ODEModel):
    """NODE (Chen et al. 2018) with the augmentation of ``augmentation/``: zeros → ANODE,
    input_layer → IL-ANODE. The state has d + p dims; ``readout.dims: data`` reads the first d.

    **Arguments:** ``field``: a partial vector field (e.g. :class:`MLPField`) that is called with
    ``in_dim = out_dim = d + p``; the rest as in :class:`ODEModel`.
    """

    def __init__(self, field: Callable[..., nn.Module], **common) -> None:
        super().__init__(**common)
        self.initial = self.augmenter()
        self.dynamics = self.make("field", field, in_dim=self.state_dim, out_dim=self.state_dim)
        self.build_head()

    def initial_state(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        return self.initial(x)

