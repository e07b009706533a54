"""Encoders (before the ODE) and heads (after the readout), configured as partial factories.

A model YAML may give ``encoder`` and ``readout.head`` as ``_target_`` + ``_partial_: true``; the
model calls them once the shapes are known:

- an **encoder** is called with ``in_shape`` (the per-sample data shape: ``(d,)`` or
  ``(C, H, W)``) and ``widen`` (extra output dims/channels the model asks for: the p dims of
  input-layer augmentation, so that the encoder's last layer *is* the input layer);
- a **head** is called with ``in_shape`` (the per-sample shape of the read state) and ``out_dim``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from node_lab.errors import check_choice, check_number
from node_lab.models.fields import ACTIVATIONS, group_norm


class Dense(nn.Module):
    """Flatten, then Linear(prod(in_shape) → out_dim + widen) [→ activation]. The seed-001
    MNIST encoder is ``Dense(out_dim=20, activation=tanh)``."""

    def __init__(self, in_shape: tuple, out_dim: int, activation: str | None = None, widen: int = 0) -> None:
        super().__init__()
        check_number("out_dim", out_dim, kind=int, low=1)
        if activation is not None:
            check_choice("activation", activation, list(ACTIVATIONS))
        self.linear = nn.Linear(math.prod(in_shape), out_dim + widen)
        self.act = ACTIVATIONS[activation]() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x.flatten(1)))


class ConvStem(nn.Module):
    """torchdiffeq's odenet_mnist downsampling: 3×3 conv (C → W), GN, ReLU, 4×4/2 conv, GN, ReLU,
    4×4/2 conv (W → W + widen): 28×28 → 6×6 with W channels. ``width``: W (torchdiffeq 64);
    ``groups``: GroupNorm groups."""

    def __init__(self, in_shape: tuple, width: int = 64, groups: int = 32, widen: int = 0) -> None:
        super().__init__()
        check_number("width", width, kind=int, low=1)
        channels = in_shape[0]
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1), group_norm(width, groups), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1), group_norm(width, groups), nn.ReLU(),
            nn.Conv2d(width, width + widen, 4, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FlattenLinear(nn.Module):
    """Flatten the read state and apply one Linear layer (Dupont's ConvODENet head: Linear on
    the flattened (C + p)·H·W state)."""

    def __init__(self, in_shape: tuple, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(math.prod(in_shape), out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.flatten(1))


class ConvHead(nn.Module):
    """torchdiffeq's odenet_mnist head: GroupNorm, ReLU, global average pool, Linear(C → out)."""

    def __init__(self, in_shape: tuple, out_dim: int, groups: int = 32) -> None:
        super().__init__()
        channels = in_shape[0]
        self.net = nn.Sequential(group_norm(channels, groups), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(channels, out_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Conv(nn.Module):
    """One k×k conv (in_dim → out_dim channels, same padding) [→ activation]: e.g. a learned
    initial velocity of images for SONODE (``model.velocity_net``)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3, activation: str | None = None) -> None:
        super().__init__()
        check_number("kernel_size", kernel_size, kind=int, low=1)
        if activation is not None:
            check_choice("activation", activation, list(ACTIVATIONS))
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size, padding=kernel_size // 2)
        self.act = ACTIVATIONS[activation]() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class FieldAt(nn.Module):
    """A vector field (a partial factory called with ``in_dim``, ``out_dim``) evaluated at a fixed
    time ``t`` as an ordinary network x ↦ f(t, x): e.g. the SONODE paper's MNIST initial
    velocity, torchdiffeq's conv ODE block evaluated at t = 0 (``model.velocity_net``)."""

    def __init__(self, in_dim: int, out_dim: int, field: Callable[..., nn.Module], t: float = 0.0) -> None:
        super().__init__()
        check_number("t", t)
        self.field = field(in_dim=in_dim, out_dim=out_dim)
        self.register_buffer("t", torch.tensor(float(t)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.field(self.t.to(x.dtype), x)
