"""The `solver/` group: one place that calls torchdiffeq.

Every model integrates through :meth:`Solver.solve`, which also counts function evaluations
(NFE) so the training loop can report forward and backward NFE separately.

Besides torchdiffeq's methods there are two symplectic fixed-step methods torchdiffeq lacks,
``leapfrog`` (Stormer-Verlet, kick-drift-kick, order 2) and ``symplectic_euler`` (order 1). They
treat the state as [q, p], split in halves along dim 1, and are symplectic (bounded energy error
over long horizons) only for a **separable** system, dq/dt = f(p), dp/dt = g(q) (e.g. H = T(p) +
V(q)). On any other field they are still consistent explicit schemes, just not symplectic.
Gradients go through the steps (no adjoint).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS as _TORCHDIFFEQ_SOLVERS

from node_lab.errors import ConfigError, check_number
from node_lab.solvers.grid import GRID_METHODS, GridIntegrator
from node_lab.solvers.grid import ORDERS as _GRID_ORDERS
from node_lab.solvers.rk import RK_METHODS, TABLEAUS, AdaptiveRK

# scipy_solver has no autograd: it cannot train a model, so it is not offered.
SYMPLECTIC = ["leapfrog", "symplectic_euler"]
# grid_* (node_lab.solvers.grid): fixed-step RK methods stepping on the requested time grid.
METHODS = [m for m in _TORCHDIFFEQ_SOLVERS if m != "scipy_solver"] + SYMPLECTIC + GRID_METHODS
FIXED_GRID = [m for m in METHODS if m in ("euler", "midpoint", "heun2", "heun3", "rk4",
                                          "explicit_adams", "implicit_adams", "fixed_adams", *SYMPLECTIC)]
ADAPTIVE = [m for m in METHODS if m not in FIXED_GRID and m not in GRID_METHODS]
# Declared order of accuracy of every method (tests/test_solvers.py measures it on exact solutions).
# None: the Adams methods (multistep, variable-order start; torchdiffeq 0.2.5's explicit_adams did
# not converge as h -> 0 on y'' = -y in that test's setting, so no order is claimed).
ORDERS: dict[str, int | None] = {
    "dopri8": 8, "dopri5": 5, "bosh3": 3, "fehlberg2": 2, "adaptive_heun": 2,
    "euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4,
    "explicit_adams": None, "implicit_adams": None, "fixed_adams": None,
    "leapfrog": 2, "symplectic_euler": 1,
    **{f"grid_{name}": order for name, order in _GRID_ORDERS.items()},
}
# node-lab's own adaptive RK (backend node_lab): the order is declared on each tableau
RK_ORDERS = {name: tab.order for name, tab in TABLEAUS.items()}
# solver.backend: who integrates the adaptive methods; node_lab (node_lab.solvers.rk) offers RK_METHODS
BACKENDS = ["torchdiffeq", "node_lab"]


class _Counted(nn.Module):
    """Wraps a vector field and counts its calls; parameters pass through for the adjoint."""

    def __init__(self, func: nn.Module, solver: Solver) -> None:
        super().__init__()
        self.func = func
        self._solver = [solver]  # a list keeps the solver out of the module tree

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self._solver[0].nfe += 1
        return self.func(t, z)


def symplectic_step(func, t: torch.Tensor, z: torch.Tensor, h: torch.Tensor, method: str) -> torch.Tensor:
    """One step of ``method`` (leapfrog | symplectic_euler) for z = [q, p] (halves of dim 1).

    symplectic_euler: p' = p + h*pdot(q, p); q' = q + h*qdot(q, p').
    leapfrog: p_half = p + h/2*pdot(q, p); q' = q + h*qdot(q, p_half); p' = p_half + h/2*pdot(q', p_half).
    """
    q, p = z.chunk(2, dim=1)

    def field(q_: torch.Tensor, p_: torch.Tensor, half: int) -> torch.Tensor:
        return func(t, torch.cat([q_, p_], dim=1)).chunk(2, dim=1)[half]

    if method == "symplectic_euler":
        p = p + h * field(q, p, 1)
        return torch.cat([q + h * field(q, p, 0), p], dim=1)
    p = p + 0.5 * h * field(q, p, 1)
    q = q + h * field(q, p, 0)
    return torch.cat([q, p + 0.5 * h * field(q, p, 1)], dim=1)


def symplectic_odeint(func, z0: torch.Tensor, times: torch.Tensor, method: str, step_size: float | None = None,
                      substeps: int | None = None) -> torch.Tensor:
    """States at ``times`` (T, B, ...). Each interval [t_i, t_i+1] is cut into ``substeps`` equal
    steps, or into ceil(dt / step_size) equal steps (<= step_size), so every output time is hit."""
    if z0.shape[1] % 2:
        raise ConfigError("solver.method", method, f"needs a state [q, p] of even size, got {z0.shape[1]} dims",
                          choices=[m for m in METHODS if m not in SYMPLECTIC], fix="solver=rk4")
    out, z = [z0], z0
    for t_a, t_b in zip(times[:-1], times[1:]):
        n = substeps or max(1, math.ceil(abs(float(t_b - t_a)) / step_size - 1e-9))
        h = (t_b - t_a) / n
        for k in range(n):
            z = symplectic_step(func, t_a + k * h, z, h, method)
        out.append(z)
    return torch.stack(out)


class Solver:
    """Integrates ``dz/dt = func(t, z)`` with a torchdiffeq method.

    **Arguments:**
    - ``method``: any torchdiffeq method name (``dopri5``, ``rk4``, …), or a symplectic
      fixed-step method (``leapfrog``, ``symplectic_euler``: state [q, p], separable systems).
    - ``rtol``, ``atol``: tolerances of adaptive methods.
    - ``step_size``: step of fixed-grid methods (required for them; torchdiffeq would otherwise
      step only between the requested times, a silent accuracy trap).
    - ``max_num_steps``: cap on adaptive steps, so a stiff run fails instead of hanging.
    - ``adjoint``: gradients by the adjoint method instead of backprop through the solver.
    - ``adjoint_seminorm``: Kidger et al.'s seminorm for the adjoint's step control.
    - ``t0``, ``t1``: integration interval of end-state tasks (``null``: the task's own, [0, 1]).
    - ``backend``: ``torchdiffeq`` (default) or ``node_lab``: node-lab's own adaptive RK
      (:mod:`node_lab.solvers.rk`; dopri5, bosh3; torchdiffeq's semantics, one host sync per step,
      backprop through the steps, no adjoint).
    - ``compile``: with ``backend: node_lab``, the whole RK step is ``torch.compile``-d (a one-off
      compile per process; the controller stays in Python).
    - ``substeps``, ``compile_chunk``: ``grid_*`` methods only (:mod:`node_lab.solvers.grid`): equal steps
      per interval of the output grid, and K grid intervals per ``torch.compile``-d chunk (null:
      eager). The adjoint is not offered for them (backprop through the steps).
    """

    def __init__(
        self,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        step_size: float | None = None,
        max_num_steps: int = 10_000,
        adjoint: bool = False,
        adjoint_seminorm: bool = True,
        t0: float | None = None,
        t1: float | None = None,
        substeps: int = 1,
        compile_chunk: int | None = None,
        backend: str = "torchdiffeq",
        compile: bool = False,
    ) -> None:
        if method not in METHODS:
            raise ConfigError("method", method, "not a torchdiffeq method", choices=METHODS,
                              fix="solver=dopri5 (or solver.method=<one of the valid names>)")
        check_number("rtol", rtol, low=0, low_open=True)
        check_number("atol", atol, low=0, low_open=True)
        check_number("max_num_steps", max_num_steps, kind=int, low=1)
        check_number("substeps", substeps, kind=int, low=1)
        check_number("compile_chunk", compile_chunk, kind=int, low=1, allow_none=True)
        if method in GRID_METHODS:
            if step_size is not None:
                raise ConfigError("step_size", step_size, f"{method} steps on the output grid; set substeps instead",
                                  fix="solver.step_size=null solver.substeps=<steps per grid interval>")
            if adjoint is True:
                raise ConfigError("adjoint", adjoint, f"{method} trains by backprop through its steps",
                                  choices=[False], fix="solver.adjoint=false")
        elif compile_chunk is not None or substeps != 1:
            raise ConfigError("compile_chunk" if compile_chunk is not None else "substeps",
                              compile_chunk if compile_chunk is not None else substeps,
                              "only the grid_* methods take it", choices=GRID_METHODS)
        elif method in FIXED_GRID:
            if step_size is None:
                raise ConfigError("step_size", None, f"{method} is a fixed-grid method and needs a step",
                                  fix="e.g. solver.step_size=0.05")
            check_number("step_size", step_size, low=0, low_open=True)
        elif step_size is not None:
            raise ConfigError("step_size", step_size, f"{method} is adaptive and takes no step_size",
                              choices=FIXED_GRID, fix="solver.step_size=null, or pick a fixed-grid method")
        for key, flag in (("adjoint", adjoint), ("adjoint_seminorm", adjoint_seminorm)):
            if not isinstance(flag, bool):
                raise ConfigError(key, flag, "must be true or false", choices=[True, False])
        if adjoint and method in SYMPLECTIC:
            raise ConfigError("adjoint", adjoint, f"{method} backpropagates through its steps; it has no adjoint",
                              choices=[False], fix="solver.adjoint=false")
        check_number("t0", t0, allow_none=True)
        check_number("t1", t1, allow_none=True)
        if t0 is not None and t1 is not None and t1 <= t0:
            raise ConfigError("t1", t1, f"must be greater than solver.t0={t0:g}")
        if backend not in BACKENDS:
            raise ConfigError("backend", backend, "unknown solver backend", choices=BACKENDS,
                              fix="solver.backend=torchdiffeq")
        if not isinstance(compile, bool):
            raise ConfigError("compile", compile, "must be true or false", choices=[True, False])
        if backend == "node_lab":
            if method not in RK_METHODS:
                raise ConfigError("method", method, "backend node_lab integrates only its adaptive RK methods",
                                  choices=RK_METHODS, fix="solver.method=dopri5, or solver.backend=torchdiffeq")
            if adjoint is True:
                raise ConfigError("adjoint", adjoint, "backend node_lab trains by backprop through its steps",
                                  choices=[False], fix="solver.adjoint=false, or solver.backend=torchdiffeq")
        elif compile is True:
            raise ConfigError("compile", compile, "only backend node_lab compiles its step",
                              choices=[False], fix="solver.backend=node_lab (dopri5, bosh3), or solver.compile=false;"
                              " grid_* methods take solver.compile_chunk")
        self.method = method
        self.backend, self.compile = backend, compile
        self.rk = AdaptiveRK(method, rtol, atol, max_num_steps, compile) if backend == "node_lab" else None
        self.rtol, self.atol = rtol, atol
        self.step_size = step_size
        self.max_num_steps = max_num_steps
        self.adjoint = adjoint
        self.adjoint_seminorm = adjoint_seminorm
        self.t0, self.t1 = t0, t1
        self.grid = GridIntegrator(method[len("grid_"):], substeps, compile_chunk) if method in GRID_METHODS else None
        self.nfe = 0

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE

    def options(self) -> dict:
        if self.adaptive:
            return {"max_num_steps": self.max_num_steps}
        return {"step_size": self.step_size}

    def solve(self, func: nn.Module, z0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Integrate from ``z0`` (B, …) at ``times[0]``; returns the states at ``times`` (T, B, …)."""
        if self.grid is not None:  # counted arithmetically: a wrapper would defeat the compiled chunks
            zs, nfe = self.grid.solve(func, z0, times)
            self.nfe += nfe
            return zs
        if self.rk is not None:  # counted arithmetically too (stages per step)
            zs, nfe = self.rk.solve(func, z0, times)
            self.nfe += nfe
            return zs
        counted = _Counted(func, self)
        if self.method in SYMPLECTIC:
            return symplectic_odeint(counted, z0, times, self.method, step_size=self.step_size)
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options())
        if not self.adjoint:
            return odeint(counted, z0, times, **kwargs)
        adjoint_options = dict(self.options())
        if self.adjoint_seminorm and self.adaptive:  # fixed-grid steps have no error norm
            adjoint_options["norm"] = "seminorm"
        return odeint_adjoint(counted, z0, times, adjoint_params=tuple(func.parameters()),
                              adjoint_options=adjoint_options, **kwargs)

    def solve_steps(self, func: nn.Module, z0: torch.Tensor, times: torch.Tensor, method: str,
                    substeps: int) -> torch.Tensor:
        """``substeps`` symplectic steps per interval of ``times`` (discrete models such as HINN,
        whose layers are steps), counted like :meth:`solve`."""
        return symplectic_odeint(_Counted(func, self), z0, times, method, substeps=substeps)

    def describe(self) -> str:
        if self.grid is not None:
            chunk = f" compiled x{self.grid.compile_chunk}" if self.grid.compile_chunk else ""
            return f"{self.method} substeps={self.grid.substeps}{chunk}"
        if self.adaptive:
            text = f"{self.method} rtol={self.rtol:g} atol={self.atol:g}"
            if self.rk is not None:
                text += " node_lab" + (" compiled" if self.compile else "")
        else:
            text = f"{self.method} step={self.step_size:g}"
        seminorm = "+seminorm" if self.adjoint_seminorm and self.adaptive else ""
        return text + (" adjoint" + seminorm if self.adjoint else "")
