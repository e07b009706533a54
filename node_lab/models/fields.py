"""Vector-field networks shared by the models.

A field is built by the model once the dims are known: YAML gives ``_target_`` + ``_partial_:
true`` and the hyper-parameters; the model calls it with ``in_dim`` and ``out_dim``.
"""

from __future__ import annotations

import torch
from torch import nn

from node_lab.errors import ConfigError, check_choice, check_number
from node_lab.models.stable import STABILITY, stabilise


def exp_elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """ELU from ``exp``: (exp(min(x, 0)) - 1)·alpha + max(x, 0), in place after the first op (no
    autograd). ATen's ELU goes through ``expm1``, whose AVX-512 path is ~3x slower than this on the
    development CPUs; near 0 the two agree to float32 resolution (absolute error <= 6e-8:
    ``exp(x) - 1`` loses relative, not absolute, accuracy)."""
    y = x.clamp(max=0.0).exp_().sub_(1.0)
    if alpha != 1.0:
        y.mul_(alpha)
    return y.add_(x.clamp(min=0.0))


class ELU(nn.ELU):
    """``nn.ELU`` that evaluates through :func:`exp_elu` when autograd is not recording (evaluation,
    rollouts, inference: 0.34x ATen's forward on 300x20, BENCHMARKS.md). While autograd records,
    ATen's ELU: an exp-based ELU with its own backward (a Python autograd.Function, or the four
    differentiable ops) measured no faster per forward+backward than ATen's, so training keeps it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace or (torch.is_grad_enabled() and x.requires_grad) or torch.compiler.is_compiling():
            return super().forward(x)
        return exp_elu(x, float(self.alpha))


ACTIVATIONS = {
    "elu": ELU,
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


def widths(hidden, key: str = "hidden") -> list[int]:
    """``hidden`` as a list of layer widths; a bare number or a string is a one-line error."""
    if isinstance(hidden, (str, bytes, int, float)) or not hasattr(hidden, "__iter__"):
        raise ConfigError(key, hidden, "must be a list of positive integers (the hidden widths)",
                          fix="e.g. {key}=" + (f"[{hidden}]" if isinstance(hidden, int) else "[20,20]"))
    return list(hidden)


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


class _Stabilisable(nn.Module):
    """A field whose own output is ``nominal(t, z)``; ``stability`` (see :class:`MLPField`) wraps it
    in :func:`node_lab.models.stable.stabilise` and ``forward`` returns the stable field."""

    def _stabilise(self, in_dim: int, out_dim: int, stability: str, alpha: float, lyapunov_hidden,
                   residual_bound: float) -> None:
        self.stability = stability
        self.stable = stabilise(self.nominal, in_dim, out_dim, stability, alpha,
                                widths(lyapunov_hidden, "lyapunov_hidden"), residual_bound)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.stable is not None:
            return self.stable(t, z)
        return self.nominal(t, z)

    def nominal(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MLPField(_Stabilisable):
    """f(t, z) = MLP([t,] z) for states (B, in_dim) → (B, out_dim).

    **Arguments:** ``hidden`` widths; ``activation`` (elu | relu | tanh | softplus | silu |
    sigmoid); ``time``: ``none`` (autonomous) or ``concat`` (t is prepended to the input);
    ``output_activation``: null (linear output) or an activation on the output, e.g. ``tanh`` for
    a bounded field (the 18.337 ANODE study's Dense(…, tanh) last layer).
    ``stability``: ``none`` | ``lyapunov`` | ``contractive`` (:mod:`node_lab.models.stable`: the MLP is
    the nominal field, projected onto dV/dt ≤ −αV with a learned convex V, or the bounded residual of
    −(AAᵀ + αI)z); ``alpha``: the decay rate α (contractive: ε); ``lyapunov_hidden``: the ICNN's
    widths; ``residual_bound``: R of the contractive residual R·tanh(MLP).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: list[int] = (20, 20),
        activation: str = "elu",
        time: str = "none",
        output_activation: str | None = None,
        stability: str = "none",
        alpha: float = 0.1,
        lyapunov_hidden: list[int] = (32, 32),
        residual_bound: float = 1.0,
    ) -> None:
        super().__init__()
        check_choice("time", time, TIME_MODES)
        check_number("in_dim", in_dim, kind=int, low=1)
        check_choice("stability", stability, STABILITY)
        self.time = time
        self.net = mlp(in_dim + (time == "concat"), out_dim, widths(hidden), activation, output_activation)
        self._stabilise(in_dim, out_dim, stability, alpha, lyapunov_hidden, residual_bound)

    def nominal(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The MLP's own output f̂(t, z) (the field itself unless ``stability`` wraps it)."""
        if self.time == "concat":
            z = torch.cat([t.expand(z.shape[0], 1).to(z.dtype), z], dim=1)  # (B, 1 + in_dim)
        return self.net(z)


def _time_channel(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """A constant-t channel shaped like one channel of ``z`` (B, 1, H, W)."""
    return t.to(z.dtype).expand(z.shape[0], 1, *z.shape[2:])


class TimeConv2d(nn.Conv2d):
    """A Conv2d whose input gets a constant-t channel prepended when ``time`` (Dupont's
    Conv2dTime; torchdiffeq's ConcatConv2d). Call as ``conv(t, z)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, time: bool, **kwargs) -> None:
        super().__init__(in_channels + int(time), out_channels, kernel_size, **kwargs)
        self.time = time

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([_time_channel(t, z), z], dim=1) if self.time else z)


class ConvField(nn.Module):
    """Dupont et al.'s ConvODEFunc on images (B, C, H, W): 1×1 conv (C → F), act, 3×3 conv (F → F,
    pad 1), act, 1×1 conv (F → C). ``num_filters`` = F; ``time: concat`` gives every conv a
    constant-t input channel (as in the ANODE repo), ``none`` is autonomous."""

    def __init__(self, in_dim: int, out_dim: int, num_filters: int = 64, activation: str = "relu",
                 time: str = "concat") -> None:
        super().__init__()
        check_choice("time", time, TIME_MODES)
        check_choice("activation", activation, list(ACTIVATIONS))
        check_number("num_filters", num_filters, kind=int, low=1)
        use_t = time == "concat"
        self.convs = nn.ModuleList([TimeConv2d(in_dim, num_filters, 1, use_t),
                                    TimeConv2d(num_filters, num_filters, 3, use_t, padding=1),
                                    TimeConv2d(num_filters, out_dim, 1, use_t)])
        self.act = ACTIVATIONS[activation]()

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            z = conv(t, z)
            if i < len(self.convs) - 1:
                z = self.act(z)
        return z


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with min(groups, channels) groups (torchdiffeq's ``norm``), shrunk to divide channels."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


class GroupNormConvField(nn.Module):
    """torchdiffeq's odenet_mnist ODEfunc on images: GN, ReLU, 3×3 conv (in → W), GN, ReLU,
    3×3 conv (W → out), GN. ``width``: hidden channels W (null: out_dim); ``time: concat``
    prepends a constant-t channel to both convs (ConcatConv2d); ``groups``: GroupNorm groups
    (torchdiffeq: 32)."""

    def __init__(self, in_dim: int, out_dim: int, width: int | None = None, time: str = "concat",
                 groups: int = 32) -> None:
        super().__init__()
        check_choice("time", time, TIME_MODES)
        check_number("width", width, kind=int, low=1, allow_none=True)
        check_number("groups", groups, kind=int, low=1)
        width = width or out_dim
        use_t = time == "concat"
        self.norm1, self.norm2, self.norm3 = group_norm(in_dim, groups), group_norm(width, groups), group_norm(
            out_dim, groups)
        self.conv1 = TimeConv2d(in_dim, width, 3, use_t, padding=1)
        self.conv2 = TimeConv2d(width, out_dim, 3, use_t, padding=1)
        self.relu = nn.ReLU()

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z = self.conv1(t, self.relu(self.norm1(z)))
        z = self.conv2(t, self.relu(self.norm2(z)))
        return self.norm3(z)


class FeatureField(_Stabilisable):
    """f(t, s) = net(φ(t, s)) with a fixed feature map φ = [s, scale·s[dims]^power, …, u(t)].

    ``s`` is what the model passes (the state; for SONODE [x, v]). ``powers``: extra features,
    each ``{dims: [i, …], power: p, scale: c}`` → c·s[:, dims]^p. ``forcing_dim``: how many
    forcing channels u(t) (the dataset's sampled input, linearly interpolated) are appended; the
    model hands the dataset's forcing over with :meth:`ODEModel.set_forcing`. ``hidden: []``
    makes the net one linear layer (a linear model in the features), e.g. the SONODE paper's
    silverbox acceleration Linear([x, 0.01x³, v, u(t)]). ``time: concat`` appends t as well.
    ``stability``, ``alpha``, ``lyapunov_hidden``, ``residual_bound``: as in :class:`MLPField`.
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
        stability: str = "none",
        alpha: float = 0.1,
        lyapunov_hidden: list[int] = (32, 32),
        residual_bound: float = 1.0,
    ) -> None:
        super().__init__()
        check_number("forcing_dim", forcing_dim, kind=int, low=0)
        check_choice("stability", stability, STABILITY)
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
        self.net = mlp(n_features, out_dim, widths(hidden), activation, output_activation)
        self._stabilise(in_dim, out_dim, stability, alpha, lyapunov_hidden, residual_bound)  # as in MLPField

    def nominal(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """net(φ(t, s)), the field itself unless ``stability`` wraps it (see :class:`MLPField`)."""
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
