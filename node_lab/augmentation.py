"""The `augmentation/` group: how data x (B, d, …) becomes the ODE's initial state (B, d + p, …).

Augmented dims are appended after the data dims along dim 1 (features for vectors, channels for
images), so "the first d dims" always means the data. For SONODE the augmented state is the
*position*; see :mod:`node_lab.models.sonode`.

Extension point: subclass :class:`Augmentation`, implement :meth:`module`, add a YAML with
``_target_`` in ``conf/augmentation/``.
"""

from __future__ import annotations

import torch
from torch import nn

from node_lab.errors import ConfigError, check_number


class Augmentation:
    """Base: ``dim`` extra dims, and a module that maps x to the augmented state."""

    name = "base"
    learned = False  # a learned input layer: a model encoder is widened by ``dim`` instead

    def __init__(self, dim: int = 0) -> None:
        check_number("dim", dim, kind=int, low=0)
        self.dim = dim

    def module(self, data_dim: int) -> nn.Module:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name}(p={self.dim})"


class NoAugmentation(Augmentation):
    """The state is the data itself (a plain NODE)."""

    name = "none"

    def __init__(self, dim: int = 0) -> None:
        if dim != 0:
            raise ConfigError("dim", dim, "augmentation=none has no extra dims", choices=[0],
                              fix="use augmentation=zeros or augmentation=input_layer to add dims")
        super().__init__(0)

    def module(self, data_dim: int) -> nn.Module:
        return nn.Identity()


class _AppendZeros(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dim == 0:
            return x
        shape = (x.shape[0], self.dim, *x.shape[2:])  # (B, p, …): zeros after the data dims
        return torch.cat([x, x.new_zeros(shape)], dim=1)


class ZeroAugmentation(Augmentation):
    """ANODE (Dupont et al. 2019): append ``dim`` zeros. ``dim: 0`` is a plain NODE."""

    name = "zeros"

    def module(self, data_dim: int) -> nn.Module:
        return _AppendZeros(self.dim)


class _InputLayer(nn.Module):
    def __init__(self, data_dim: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(data_dim, data_dim + dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self.linear(x)
        # images (B, C, H, W): the same linear map on the channels of every pixel (a 1x1 conv)
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)


class InputLayerAugmentation(Augmentation):
    """IL-ANODE (Massaroli et al. 2020): a learned linear layer maps x (d) to the d + p state."""

    name = "input_layer"
    learned = True

    def module(self, data_dim: int) -> nn.Module:
        return _InputLayer(data_dim, self.dim)


class _AppendLearned(nn.Module):
    def __init__(self, data_dim: int, dim: int, hidden: list[int], activation: str) -> None:
        super().__init__()
        from node_lab.models.fields import mlp  # models import this module

        self.net = mlp(data_dim, dim, hidden, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.net(x)], dim=1)


class LearnedAugmentation(Augmentation):
    """Keep x and append p dims computed from it, a = net(x) (the SONODE paper's real-world and
    VdP ANODEs: a Linear layer, ``hidden: []``; its 2-D function "learn" ANODE: an MLP)."""

    name = "learned"

    def __init__(self, dim: int = 1, hidden: list[int] = (), activation: str = "elu") -> None:
        super().__init__(dim)
        if dim == 0:
            raise ConfigError("dim", dim, "learned augmentation needs at least one dim", fix="augmentation.dim=1")
        self.hidden, self.activation = list(hidden), activation

    def module(self, data_dim: int) -> nn.Module:
        return _AppendLearned(data_dim, self.dim, self.hidden, self.activation)
