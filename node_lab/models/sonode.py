"""Second-order neural ODE (SONODE, Norcliffe et al. 2020).

State [x, v] (positions and velocities stacked on dim 1), trained through the coupled
first-order system dx/dt = v, dv/dt = f(x, v, t), which the paper shows equivalent to and cheaper
than the second-order adjoint.

Augmentation for SONODE means extra *position* dims: the augmentation maps x (d) to the position
(d + p) (zeros: extra zero positions; input_layer: a learned linear map), and the velocity has the
same d + p dims. The initial velocity is ``zero``, ``given`` by the dataset (its v0, with the p
augmented velocities zero), ``learned`` by a small network of the (augmented) initial position,
or ``split`` from the input itself: the (encoded) input holds [x0, v0] stacked on dim 1, e.g. a
Dense(784 → 2n) encoder whose first n outputs are the initial position and the last n the
initial velocity (the 18.337 ANODE study's second-order NODE).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from node_lab.errors import ConfigError, check_choice
from node_lab.models.base import ODEModel
from node_lab.models.fields import mlp, widths

INIT_VELOCITY = ["zero", "given", "learned", "split"]
ACCEL_INPUTS = ["xv", "x", "v"]
OUTPUTS = ["position", "position_velocity"]


class _SecondOrder(nn.Module):
    """(t, [x, v]) → [v, f(t, inputs)] where inputs are x and/or v."""

    def __init__(self, accel: nn.Module, inputs: str) -> None:
        super().__init__()
        self.accel = accel
        self.inputs = inputs

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x, v = z.chunk(2, dim=1)  # (B, n), (B, n)
        features = {"xv": z, "x": x, "v": v}[self.inputs]
        return torch.cat([v, self.accel(t, features)], dim=1)


class _InitialVelocity(nn.Module):
    def __init__(self, mode: str, n: int, d: int, net: dict | Callable[..., nn.Module]) -> None:
        super().__init__()
        self.mode, self.n, self.d = mode, n, d
        self.net = None
        if mode == "learned":
            self.net = net(in_dim=n, out_dim=n) if callable(net) else mlp(
                n, n, widths(net["hidden"]), net["activation"], net.get("output_activation"))

    def forward(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "learned":
            return self.net(x)
        if self.mode == "zero":
            return torch.zeros_like(x)
        if v0 is None:
            raise ConfigError("model.init_velocity", "given", "the batch carries no initial velocity")
        pad = x.new_zeros(x.shape[0], self.n - self.d, *x.shape[2:])  # augmented velocities start at 0
        return torch.cat([v0, pad], dim=1)


def check_second_order_stability(accel: nn.Module, inputs: str) -> None:
    """A stable acceleration field (``model.field.stability``, :mod:`node_lab.models.stable`) is the
    damped form on [x, v]: it needs ``inputs: xv``."""
    stability = getattr(accel, "stability", "none")
    if stability != "none" and inputs != "xv":
        raise ConfigError("field.stability", stability, f"the stable second-order form a = -Kx - Dv + r needs the "
                          f"acceleration of [x, v]; inputs={inputs}", choices=["none"], fix="model.inputs=xv")


class SecondOrderODE(ODEModel):
    """**Arguments:** ``field``: partial acceleration field, called with ``in_dim`` (2n for
    ``inputs: xv``, n for x or v only) and ``out_dim = n`` (n = d + p); ``inputs``: what the
    acceleration sees (xv | x | v); ``init_velocity``: zero | given | learned | split;
    ``velocity_net``: ``{hidden, activation, output_activation}`` of the learned MLP initial
    velocity (``hidden: []``: one linear layer), or a partial factory called with
    ``in_dim = out_dim = n`` (e.g. :class:`node_lab.models.layers.Conv` for images);
    ``readout.dims``: ``data`` = the first d positions, ``all`` = all d + p positions; ``output``:
    ``position`` (the readout above) or ``position_velocity`` (the d data positions then their d
    velocities, for data that observe both). With ``split`` the (encoded) input has 2d dims: [x0, v0].
    ``state_coordinates``: null, or ``velocity`` to ask the mechanical datasets for [q, q̇] states
    (with ``split`` and ``position_velocity`` the state [x, v] is then the data's [q, q̇] itself)."""

    def __init__(
        self,
        field: Callable[..., nn.Module],
        inputs: str = "xv",
        init_velocity: str = "learned",
        velocity_net: dict | None = None,
        output: str = "position",
        state_coordinates: str | None = None,
        **common,
    ) -> None:
        super().__init__(**common)
        if state_coordinates is not None:
            check_choice("state_coordinates", state_coordinates, ["velocity"])
        check_choice("inputs", inputs, ACCEL_INPUTS)
        check_choice("init_velocity", init_velocity, INIT_VELOCITY)
        check_choice("output", output, OUTPUTS)
        self.output = output
        net = velocity_net if callable(velocity_net) else {"hidden": [20, 20], "activation": "elu",
                                                           "output_activation": None, **(velocity_net or {})}
        if init_velocity == "split":
            if self.data_dim % 2 or self.encoder_widens:
                raise ConfigError("init_velocity", "split", "needs an even number of (encoded) input dims [x0, v0] "
                                  f"and zero augmentation; got {self.data_dim}, {self.augmentation.describe()}",
                                  choices=INIT_VELOCITY, fix="model.encoder.out_dim=<even>, augmentation=zeros")
            self.data_dim //= 2  # the position dims; the velocity block follows them in the input
            self.state_dim = self.data_dim + self.augmentation.dim
        n = self.state_dim
        self.init_velocity = init_velocity
        self.initial = self.augmenter()
        self.velocity = self.make("velocity_net", _InitialVelocity, mode=init_velocity, n=n, d=self.data_dim,
                                  net=net)
        accel = self.make("field", field, in_dim=2 * n if inputs == "xv" else n, out_dim=n)
        check_second_order_stability(accel, inputs)
        self.dynamics = _SecondOrder(accel, inputs)
        self.build_head()

    def initial_state(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        if self.init_velocity == "split":
            x, v0 = x.chunk(2, dim=1)  # [x0, v0] from the (encoded) input
        position = self.initial(x)  # (B, n)
        return torch.cat([position, self.velocity(position, v0)], dim=1)  # (B, 2n)

    def read_dims(self) -> int:
        return 2 * self.data_dim if self.output == "position_velocity" else super().read_dims()

    def read(self, zs: torch.Tensor) -> torch.Tensor:
        if self.output == "position_velocity":
            return torch.cat([zs[:, :, : self.data_dim], self.velocity_of(zs)], dim=2)
        return super().read(zs)

    def velocity_estimate(self, zs: torch.Tensor) -> torch.Tensor:
        return self.velocity_of(zs)

    def state_is_data(self) -> bool:
        return False  # the state [x, v] has a velocity the data do not carry

    def velocity_of(self, zs: torch.Tensor) -> torch.Tensor:
        """The data-dim velocities (T, B, d) of a state trajectory."""
        return zs[:, :, self.state_dim : self.state_dim + self.data_dim]
