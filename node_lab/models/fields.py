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
    "hardtanh": nn.Hardtanh,                      # clip to ±1
    "hardtanh5": lambda: nn.Hardtanh(-5.0, 5.0),  # the SONODE paper's initial-velocity clips
    "hardtanh10": lambda: nn.Hardtanh(-10.0, 10.0),
}
TIME_MODES = ["none", "concat"]


def mlp(in_dim: int, out_dim: int, hidden: list[int], activation: str,
        output_activation: str | None = None) -> nn.Sequential:
    """Linear → act → … → Linear [→ output_activation]; ``hidden`` are the hidden widths (empty:
    one linear layer)."""
    check_choice("activation", activation, list(ACTIVATIONS))
    if output_activation is not None:
        check_choice("output_activation", output_activation, list(ACTIVATIONS))
    if not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ConfigError("hidden", list(hidden), "must be a list of positive integers", fix="e.g. [20,20]")
    widths = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    if output_activation is not None:
        layers.append(ACTIVATIONS[output_activation]())
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
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        check_choice("time", time, TIME_MODES)
        check_number("in_dim", in_dim, kind=int, low=1)
        self.time = time
        self.net = mlp(in_dim + (time == "concat"), out_dim, list(hidden), activation, output_activation)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.time == "concat":
            z = torch.cat([t.expand(z.shape[0], 1).to(z.dtype), z], dim=1)  # (B, 1 + in_dim)
        return self.net(z)


class FeatureField(nn.Module):
    """f(t, s) = net(φ(t, s)) with a fixed feature map φ = [s, scale·s[dims]^power, …, u(t)].

    ``s`` is what the model passes (the state; for SONODE [x, v]). ``powers``: extra features,
    each ``{dims: [i, …], power: p, scale: c}`` → c·s[:, dims]^p. ``forcing_dim``: how many
    forcing channels u(t) (the dataset's sampled input, linearly interpolated) are appended; the
    model hands the dataset's forcing over with :meth:`ODEModel.set_forcing`. ``hidden: []``
    makes the net one linear layer (a linear model in the features), e.g. the SONODE paper's
    silverbox acceleration Linear([x, 0.01x³, v, u(t)]). ``time: concat`` appends t as well.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        powers: list[dict] = (),
        forcing_dim: int = 0,
        hidden: list[int] = (),
        activation: str = "elu",
        output_activation: str | None = None,
        time: str = "none",
    ) -> None:
        super().__init__()
        check_number("forcing_dim", forcing_dim, kind=int, low=0)
        check_choice("time", time, TIME_MODES)
        self.time = time
        self.powers = []
        for i, term in enumerate(powers):
            term = dict(term)
            unknown = set(term) - {"dims", "power", "scale"}
            if unknown or "dims" not in term:
                raise ConfigError(f"powers[{i}]", term, "each term is {dims: [...], power: p, scale: c}",
                                  fix="e.g. model.field.powers=[{dims:[0],power:3,scale:0.01}]")
            dims = list(term["dims"])
            if not dims or not all(isinstance(d, int) and 0 <= d < in_dim for d in dims):
                raise ConfigError(f"powers[{i}].dims", dims, f"must be indices of the {in_dim} input dims")
            self.powers.append((dims, float(term.get("power", 1)), float(term.get("scale", 1.0))))
        self.forcing_dim = forcing_dim
        self.forcing = None  # set by ODEModel.set_forcing once the data are loaded
        n_features = in_dim + sum(len(d) for d, _, _ in self.powers) + forcing_dim + (time == "concat")
        self.net = mlp(n_features, out_dim, list(hidden), activation, output_activation)

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        features = [s]
        for dims, power, scale in self.powers:
            part = s[:, dims[0] : dims[0] + 1] if len(dims) == 1 else s[:, dims]
            features.append(scale * part**power)
        if self.forcing_dim:
            if self.forcing is None:
                raise ConfigError("field.forcing_dim", self.forcing_dim, "the dataset provides no forcing input",
                                  fix="model.field.forcing_dim=0, or a dataset with a forcing signal")
            features.append(self.forcing(t).to(s.dtype).expand(s.shape[0], self.forcing_dim))
        if self.time == "concat":
            features.append(t.to(s.dtype).expand(s.shape[0], 1))
        return self.net(torch.cat(features, dim=1) if len(features) > 1 else s)
