"""First-order neural ODE: dz/dt = f(t, z), z(0) = augment(x). NODE and (IL-)ANODE."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from node_lab.errors import ConfigError, check_choice
from node_lab.models.base import ODEModel


class FirstOrderODE(ODEModel):
    """NODE (Chen et al. 2018) with the augmentation of ``augmentation/``: zeros → ANODE,
    input_layer → IL-ANODE. The state has d + p dims; ``readout.dims: data`` reads the first d.

    **Arguments:** ``field``: a partial vector field (e.g. :class:`MLPField`) that is called with
    ``in_dim = out_dim = d + p``; ``init_augmented``: ``augmentation`` (the augmentation's own
    initial dims) or ``given`` (the dataset's true initial velocity v0 as the p = d augmented
    dims, the SONODE paper's "given" ANODE); the rest as in :class:`ODEModel`.
    """

    def __init__(self, field: Callable[..., nn.Module], init_augmented: str = "augmentation", **common) -> None:
        super().__init__(**common)
        check_choice("init_augmented", init_augmented, ["augmentation", "given"])
        if init_augmented == "given" and self.augmentation.dim != self.data_dim:
            raise ConfigError("init_augmented", "given", f"the given velocity has {self.data_dim} dims but "
                              f"augmentation.dim={self.augmentation.dim}", fix=f"augmentation.dim={self.data_dim}")
        self.init_augmented = init_augmented
        self.initial = self.augmenter()
        self.dynamics = self.make("field", field, in_dim=self.state_dim, out_dim=self.state_dim)
        self.build_head()

    def initial_state(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        if self.init_augmented == "given":
            if v0 is None:
                raise ConfigError("model.init_augmented", "given", "the batch carries no initial velocity")
            return torch.cat([x, v0], dim=1)
        return self.initial(x)

    def velocity_estimate(self, zs: torch.Tensor) -> torch.Tensor | None:
        """The first d augmented dims, ANODE's stand-in for the velocity (None if p < d)."""
        d = self.data_dim
        return zs[:, :, d : 2 * d] if self.augmentation.dim >= d else None

