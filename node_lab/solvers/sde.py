"""SDE solvers of the `solver/` group: the one place that calls torchsde.

``solver=sde_euler | sde_milstein | sde_srk | sde_reversible_heun`` (``conf/solver/sde_*.yaml``;
the file name is ``sde_`` + the torchsde method) build an :class:`SDESolver`. A stochastic model
(:class:`node_lab.models.sde.NeuralSDE`) hands it an SDE module (attributes ``noise_type``,
``sde_type``, methods ``f`` and ``g``, torchsde's contract) and gets sampled paths back.

Which method takes which SDE (torchsde 0.2.6, ``torchsde/_core/methods``):

| method | calculus | noise types | strong order |
|---|---|---|---|
| ``euler`` | Itô | all | 0.5 (1.0 additive) |
| ``milstein`` | Itô or Stratonovich | scalar, additive, diagonal | 1.0 |
| ``srk`` | Itô | scalar, additive, diagonal | 1.5 |
| ``reversible_heun`` | Stratonovich | all | 0.5 (1.0 additive) |

``adjoint: true`` trains with ``torchsde.sdeint_adjoint``; reversible Heun then uses its own
adjoint (``adjoint_reversible_heun``: the backward pass reconstructs the forward states exactly, so
the gradient is the discretised one up to floating point), the others torchsde's default adjoint
method (Itô diagonal: milstein, Itô scalar/general: euler, Stratonovich: midpoint).

Brownian paths come from :class:`torchsde.BrownianInterval` with an explicit ``entropy``: the
model draws it from torch's seeded generator for training draws and uses a fixed one for
evaluation, so a run is reproducible and its evaluations comparable across iterations.
"""

from __future__ import annotations

import torch
import torchsde
from torch import nn

from node_lab.errors import ConfigError, check_number

SDE_METHODS = ["euler", "milstein", "srk", "reversible_heun"]
SDE_TYPES = ["ito", "stratonovich"]
NOISE_TYPES = ["diagonal", "scalar", "general"]
# torchsde's rules (see the table above)
METHOD_SDE_TYPES = {"euler": ["ito"], "milstein": ["ito", "stratonovich"], "srk": ["ito"],
                    "reversible_heun": ["stratonovich"]}
METHOD_NOISE_TYPES = {"euler": NOISE_TYPES, "milstein": ["diagonal", "scalar"], "srk": ["diagonal", "scalar"],
                      "reversible_heun": NOISE_TYPES}
# the calculus a method integrates when the model leaves model.sde_type at null
NATURAL_SDE_TYPE = {"euler": "ito", "milstein": "ito", "srk": "ito", "reversible_heun": "stratonovich"}


class _CountedSDE(nn.Module):
    """Wraps an SDE module and counts drift evaluations (the NFE the loop reports)."""

    def __init__(self, sde: nn.Module, solver: SDESolver) -> None:
        super().__init__()
        self.sde = sde
        self.noise_type, self.sde_type = sde.noise_type, sde.sde_type
        self._solver = [solver]  # a list keeps the solver out of the module tree

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._solver[0].nfe += 1
        return self.sde.f(t, y)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.sde.g(t, y)


class SDESolver:
    """Integrates ``dz = f(t, z) dt + g(t, z) dW`` with a torchsde method on a fixed step.

    **Arguments:**
    - ``method``: euler | milstein | srk | reversible_heun (torchsde names).
    - ``dt``: the step (torchsde steps on a fixed grid of this size, landing on every output time).
    - ``adjoint``: gradients by ``torchsde.sdeint_adjoint`` instead of backprop through the steps.
    - ``t0``, ``t1``: integration interval of end-state tasks (null: [0, 1]), as for ODE solvers.
    """

    stochastic = True

    def __init__(self, method: str = "euler", dt: float = 0.05, adjoint: bool = False,
                 t0: float | None = None, t1: float | None = None) -> None:
        if method not in SDE_METHODS:
            raise ConfigError("method", method, "not an SDE method offered here", choices=SDE_METHODS,
                              fix="solver=sde_euler (or solver=sde_<one of the valid names>)")
        check_number("dt", dt, low=0, low_open=True)
        if not isinstance(adjoint, bool):
            raise ConfigError("adjoint", adjoint, "must be true or false", choices=[True, False])
        check_number("t0", t0, allow_none=True)
        check_number("t1", t1, allow_none=True)
        if t0 is not None and t1 is not None and t1 <= t0:
            raise ConfigError("t1", t1, f"must be greater than solver.t0={t0:g}")
        self.method, self.dt, self.adjoint = method, float(dt), adjoint
        self.t0, self.t1 = t0, t1
        self.nfe = 0

    adaptive = False

    def check_sde(self, sde_type: str, noise_type: str) -> None:
        """One-line errors (keys relative to the model) for an SDE this method cannot take."""
        if sde_type not in METHOD_SDE_TYPES[self.method]:
            others = [f"sde_{m}" for m in SDE_METHODS if sde_type in METHOD_SDE_TYPES[m]]
            raise ConfigError("model.sde_type", sde_type, f"solver sde_{self.method} integrates "
                              f"{' or '.join(METHOD_SDE_TYPES[self.method])} SDEs only",
                              choices=METHOD_SDE_TYPES[self.method],
                              fix=f"model.sde_type={NATURAL_SDE_TYPE[self.method]} (or solver={others[0]})")
        if noise_type not in METHOD_NOISE_TYPES[self.method]:
            others = [f"sde_{m}" for m in SDE_METHODS if noise_type in METHOD_NOISE_TYPES[m]
                      and sde_type in METHOD_SDE_TYPES[m]]
            raise ConfigError("model.noise", noise_type, f"solver sde_{self.method} takes "
                              f"{', '.join(METHOD_NOISE_TYPES[self.method])} noise only (torchsde)",
                              choices=METHOD_NOISE_TYPES[self.method],
                              fix=f"model.noise=diagonal (or solver={others[0]})")

    def brownian(self, times: torch.Tensor, batch: int, noise_dim: int, entropy: int,
                 like: torch.Tensor) -> torchsde.BrownianInterval:
        levy = "space-time" if self.method == "srk" else "none"
        return torchsde.BrownianInterval(t0=float(times[0]), t1=float(times[-1]), size=(batch, noise_dim),
                                         dtype=like.dtype, device=like.device, entropy=entropy,
                                         levy_area_approximation=levy)

    def solve(self, sde: nn.Module, z0: torch.Tensor, times: torch.Tensor, noise_dim: int,
              entropy: int) -> torch.Tensor:
        """Sampled states at ``times`` (T, B, n) from ``z0`` (B, n); ``noise_dim``: Brownian channels
        (n for diagonal noise, 1 for scalar, m for general); ``entropy``: the Brownian path's seed."""
        counted = _CountedSDE(sde, self)
        bm = self.brownian(times, z0.shape[0], noise_dim, entropy, z0)
        kwargs = dict(bm=bm, method=self.method, dt=self.dt)
        if not self.adjoint:
            return torchsde.sdeint(counted, z0, times, **kwargs)
        adjoint_method = "adjoint_reversible_heun" if self.method == "reversible_heun" else None
        return torchsde.sdeint_adjoint(counted, z0, times, adjoint_method=adjoint_method,
                                       adjoint_params=tuple(sde.parameters()), **kwargs)

    def describe(self) -> str:
        return f"sde_{self.method} dt={self.dt:g}" + (" adjoint" if self.adjoint else "")
