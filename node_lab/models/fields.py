"""Vector-field networks shared by the models.

A field is built by the model once the dims are known: YAML gives ``_target_`` + ``_partial_:
true`` and the hyper-parameters; the model calls it with ``in_dim`` and ``out_dim``.
"""

from __future__ import annotations

import torch
from torch import nn

from node_lab.errors import ConfigError, check_choice, check_number

ACTIVATIONS = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}
TIME_MODES = ["none", "concat"]


def mlp(in_dim: int, out_dim: int, hidden: list[int], activation: str) -> nn.Sequential:
    """Linear → act → … → Linear; ``hidden`` are the widths of the hidden layers."""
    check_choice("activation", activation, list(ACTIVATIONS))
    if not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ConfigError("hidden", list(hidden), "must be a list of positive integers", fix="e.g. [20,20]")
    widths = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPField(nn.Module):
    """f(t, z) = MLP([t,] z) for states (B, in_dim) → (B, out_dim).

    **Arguments:** ``hidden`` widths; ``activation`` (elu | relu | tanh | softplus | silu |
    sigmoid); ``time``: ``none`` (autonomous) or ``concat`` (t is prepended to the input).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: list[int] = (20, 20),
        activation: str = "elu",
        time: str = "none",
    ) -> None:
        super().__init__()
        check_choice("time", time, TIME_MODES)
        check_number("in_dim", in_dim, kind=int, low=1)
        self.time = time
        self.net = mlp(in_dim + (time == "concat"), out_dim, list(hidden), activation)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.time == "concat":
            z = torch.cat([t.expand(z.shape[0], 1).to(z.dtype), z], dim=1)  # (B, 1 + in_dim)
        return self.net(z)
