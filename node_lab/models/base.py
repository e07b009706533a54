"""The model contract: initial-state map → vector field → solver call → readout.

Every model is an :class:`ODEModel`. A subclass builds two modules and calls ``build_head()``:

- ``initial`` (used by :meth:`initial_state`): x (B, d, …) [and the data's v0] → z0;
- ``dynamics``: (t, z) → dz/dt, the vector field the solver integrates;

and the base class does the rest: the optional ``encoder`` before the ODE, the one solver call
(:mod:`node_lab.solvers`), the readout selection (data dims lead every state; override
:meth:`read` otherwise) and the head. With an encoder, "data dims" are the encoder's output
features (dims or channels); images keep their spatial dims through the whole model.
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
from node_lab.models.layers import FlattenLinear
from node_lab.solvers import Solver

READ_DIMS = ["data", "all"]
HEADS = ["auto", "identity", "linear"]


INITS = ["torch", "glorot", "cranmer"]


class ODEModel(nn.Module):
    """Base class; see the module docstring.

    **Arguments** (common to every model):
    - ``data_dim``, ``output_dim``: from the dataset.
    - ``solver``: the :class:`Solver` built from ``solver/``.
    - ``augmentation``: the :class:`Augmentation` built from ``augmentation/``.
    - ``readout``: ``{dims: data | all, head: auto | identity | linear | <partial factory>}``.
      ``auto`` is identity when the read dims equal the output dims, else linear (on images: a
      Linear on the flattened state). A factory (``_target_`` + ``_partial_: true``, e.g.
      :class:`node_lab.models.layers.ConvHead`) is called with ``in_shape`` and ``out_dim``.
    - ``encoder``: null, or a partial factory (e.g. :class:`node_lab.models.layers.Dense`) called
      with ``in_shape`` (per-sample data shape) and ``widen``; its output is what the
      augmentation and the ODE see. With a learned (input-layer) augmentation the encoder's last
      layer is widened by p instead of stacking a second input layer (IL-ANODE: h0 = g(x) ∈ R^{d+p}).
    - ``data_shape``: per-sample data shape from the dataset (null: ``(data_dim,)``).
    - ``init``: weight initialisation of every Linear and Conv layer, applied by
      :meth:`initialise` once the model is complete: ``torch`` (each layer's default) or
      ``glorot`` (Xavier-uniform weights, zero biases: Flux's and Keras's default, for
      reproducing Julia/Keras studies) or ``cranmer`` (Cranmer et al.'s searched LNN
      initialisation, for one uniform-width MLP: zero biases, normal weights of std
      s/sqrt(n), n = the layer's larger dimension, s = 2.2 for the first Linear, 0.58·i for
      hidden Linear i, n for the last; every Linear of the model counts as one stack, in order).
    """

    def __init__(
        self,
        data_dim: int,
        output_dim: int,
        solver: Solver,
        augmentation: Augmentation,
        readout: dict | None = None,
        encoder: Callable[..., nn.Module] | None = None,
        data_shape: tuple | None = None,
        init: str = "torch",
    ) -> None:
        super().__init__()
        check_choice("init", init, INITS)
        self.init_scheme = init
        readout = dict(readout or {})
        unknown = set(readout) - {"dims", "head"}
        if unknown:
            raise ConfigError(f"readout.{sorted(unknown)[0]}", readout[sorted(unknown)[0]],
                              "unknown readout key", choices=["dims", "head"])
        self.read_mode = readout.get("dims", "data")
        head = readout.get("head", "auto")
        check_choice("readout.dims", self.read_mode, READ_DIMS)
        if not callable(head):
            check_choice("readout.head", head, HEADS)
        self.input_shape = tuple(data_shape) if data_shape else (data_dim,)
        widen = augmentation.dim if encoder is not None and augmentation.learned else 0
        self.encoder = (self.make("encoder", encoder, in_shape=self.input_shape, widen=widen)
                        if encoder is not None else nn.Identity())
        with torch.no_grad():  # the encoded shape, from one zero sample
            features = self.encoder(torch.zeros(1, *self.input_shape)).shape[1:]
        self.encoder_widens = widen > 0
        self.spatial = tuple(features[1:])  # (H, W) of images, () of vectors
        self.data_dim = features[0] - widen
        self.output_dim = output_dim
        if getattr(solver, "stochastic", False) and not self.stochastic:
            raise ConfigError("solver", f"sde_{solver.method}", f"is an SDE solver; {type(self).__name__} is an "
                              "ODE model", fix="solver=dopri5 (or model=nsde for a neural SDE)", absolute=True)
        self.solver = solver
        self.augmentation = augmentation
        self.state_dim = self.data_dim + augmentation.dim
        self._head_choice = head

    def initialise(self) -> ODEModel:
        """Re-initialise the layers for ``init`` (see the class docstring); ``torch`` keeps them."""
        if self.init_scheme == "glorot":
            for layer in self.modules():
                if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                    nn.init.xavier_uniform_(layer.weight)
                    if layer.bias is not None:
                        nn.init.zeros_(layer.bias)
        elif self.init_scheme == "cranmer":
            linears = [layer for layer in self.modules() if isinstance(layer, nn.Linear)]
            for i, layer in enumerate(linears):
                n = max(layer.weight.shape)
                scale = 2.2 if i == 0 else (n if i == len(linears) - 1 else 0.58 * i)
                nn.init.normal_(layer.weight, std=scale / n**0.5)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        return self

    @staticmethod
    def make(key: str, factory: Callable[..., nn.Module], **dims) -> nn.Module:
        """Build a sub-network; its ConfigErrors name ``key.<param>`` (e.g. ``field.activation``)."""
        try:
            return factory(**dims)
        except ConfigError as err:
            raise err.with_prefix(key) from None

    def augmenter(self) -> nn.Module:
        """The augmentation's module on the (encoded) data; identity when the encoder already
        widened its output by p (input-layer augmentation fused into the encoder)."""
        return nn.Identity() if self.encoder_widens else self.augmentation.module(self.data_dim)

    def build_head(self) -> None:
        """Called by subclasses once ``read_dims`` is known."""
        n = self.read_dims()
        in_shape = (n, *self.spatial)
        if callable(self._head_choice):
            self.head = self.make("readout.head", self._head_choice, in_shape=in_shape, out_dim=self.output_dim)
            self.head_kind = type(self.head).__name__
            return
        if self._head_choice == "identity" and in_shape != (self.output_dim,):
            raise ConfigError("readout.head", "identity",
                              f"reads shape {in_shape} but the dataset needs {self.output_dim} outputs",
                              choices=["linear", "auto"], fix="model.readout.head=linear")
        linear = self._head_choice == "linear" or (self._head_choice == "auto" and in_shape != (self.output_dim,))
        if not linear:
            self.head = nn.Identity()
        elif self.spatial:
            self.head = FlattenLinear(in_shape, self.output_dim)
        else:
            self.head = nn.Linear(n, self.output_dim)
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

    def state_is_data(self) -> bool:
        """True when the ODE state is the data itself (no augmentation, first order), so the
        field can be fitted to the data's time derivatives (``train.mode=derivatives``)."""
        return self.augmentation.dim == 0 and self.augmentation.name != "input_layer"

    def data_field(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """dz/dt the model assigns to data states x (B, d); only when :meth:`state_is_data`."""
        return self.dynamics(t, self.initial_state(x, None))

    # --- shared ----------------------------------------------------------------------------
    def trajectory(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        """The full ODE state at ``times``: (T, B, state, …)."""
        return self.solver.solve(self.dynamics, self.initial_state(self.encoder(x), v0), times)

    def forward(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        read = self.read(self.trajectory(x, times, v0))  # (T, B, read_dims, …)
        return self.head(read.flatten(0, 1)).unflatten(0, read.shape[:2])  # heads see (T·B, read_dims, …)

    def forcing_dim(self) -> int:
        """Forcing channels u(t) the vector field reads (0: none); see :class:`FeatureField`."""
        return max((getattr(m, "forcing_dim", 0) for m in self.modules() if m is not self), default=0)

    def set_forcing(self, forcing) -> None:
        """Hand the dataset's :class:`~node_lab.datasets.base.Forcing` to the fields that read it."""
        for m in self.modules():
            if m is not self and getattr(m, "forcing_dim", 0):
                m.forcing = forcing

    def set_training_progress(self, fraction: float) -> None:
        """Called by the training loop before every step with the fraction of training done
        (0 → 1; 1 once training has ended), for models with a training-time schedule (the LNN's
        annealed damping). Default: nothing."""

    def velocity_estimate(self, zs: torch.Tensor) -> torch.Tensor | None:
        """What the model offers as the data's velocity along a state trajectory (T, B, d), for
        the interpretability error; None when it has no such coordinate."""
        return None

    # A stochastic model (node_lab.models.sde) samples paths: the loop asks it for its own training
    # loss (training_loss) and scores (scores: NLL, CRPS, coverage); ODE models are deterministic.
    stochastic: bool = False
    # Whether the model can fit end-state tasks (classification, end-point regression).
    end_state_tasks: bool = True

    # Whether the model can fit trajectory data (its trajectory() is a flow in time); discrete
    # networks for end-state tasks set it False and build refuses them on trajectory datasets.
    trajectory_tasks: bool = True

    def describe_networks(self) -> str:
        """The model class and its field's class, e.g. ``FirstOrderODE(field=ConvField)``."""
        field = self.dynamics[0] if isinstance(self.dynamics, nn.ModuleList) else self.dynamics
        inner = getattr(field, "accel", field)  # SONODE wraps its acceleration field
        return f"{type(self).__name__}(field={type(inner).__name__})"

    def describe(self) -> str:
        return (f"{type(self).__name__} state={self.state_dim} {self.augmentation.describe()} "
                f"readout={self.read_mode}->{self.head_kind}")
