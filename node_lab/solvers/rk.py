"""node-lab's own explicit adaptive Runge–Kutta integrator (``solver.backend=node_lab``).

The same semantics as torchdiffeq's ``RKAdaptiveStepsizeODESolver`` (its tableaus, imported from
torchdiffeq so there is one copy of the coefficients):

- error ratio: RMS over the whole state of ``err / (atol + rtol * max(|y0|, |y1|))``; a step is
  accepted when it is <= 1; the next step is ``dt * min(ifactor, max(safety / ratio**(1/order),
  dfactor))`` (dfactor = 1 after an accepted step), safety/ifactor/dfactor = 0.9/10/0.2;
- first step: Hairer–Nørsett–Wanner's heuristic exactly as ``torchdiffeq._select_initial_step``
  (two field evaluations, ``order - 1`` in the exponent, as torchdiffeq passes it);
- output at the requested times by the methods' dense output (4th-order polynomial through y0,
  y1, the mid-point value and both slopes: torchdiffeq's ``_interp_fit``); the integration runs
  past the last requested time as torchdiffeq's does;
- ``max_num_steps`` per output interval, "underflow in dt" and non-finite states raise
  :class:`StepError`, which the training loop's divergence guard treats as it treats torchdiffeq's
  assertions (the run stops as ``diverged`` and may restart);
- step sizes carry no gradient (torchdiffeq's step-size update is ``no_grad`` too): gradients
  are backprop through the accepted and rejected steps' arithmetic.

What differs is the cost: the controller works on Python floats with **one** host sync per step
(the error ratio) instead of ~19, and with ``compile=True`` the whole step (all stages, the
error ratio and the mid-point value) is one ``torch.compile``-d function of (field, t0, dt, y0,
f0), so its forward and backward are a few fused kernels. The field is an argument, so a new
model of the same structure reuses the compiled step (no recompile per job of a sweep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torchdiffeq._impl.bosh3 import _BOGACKI_SHAMPINE_TABLEAU, _BS_C_MID
from torchdiffeq._impl.dopri5 import _DORMAND_PRINCE_SHAMPINE_TABLEAU, DPS_C_MID


class StepError(FloatingPointError):
    """The adaptive integration cannot go on: step cap, dt underflow or a non-finite state. A
    FloatingPointError, so the training loop's divergence guard (``loop.is_divergence``) treats it
    as a blow-up of the learned dynamics, as it treats torchdiffeq's assertion texts."""


@dataclass(frozen=True)
class Tableau:
    """An explicit embedded RK pair: ``order`` of the propagated solution (the controller's
    exponent is 1/order, as torchdiffeq's), nodes ``c``, stage matrix ``a`` (row i: the weights of
    k_0..k_i for stage i+1), solution weights ``b``, error weights ``e`` (over all stages incl.
    the FSAL one), mid-point weights ``mid`` for the dense output. ``fsal``: the last stage is
    f(t1, y1)."""

    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    mid: tuple[float, ...]

    @property
    def fsal(self) -> bool:
        return self.c[-1] == 1.0 and self.b[-1] == 0.0 and tuple(self.a[-1]) == tuple(self.b[:-1])

    @property
    def stages(self) -> int:
        """Field evaluations per step (the first stage is the previous step's last one)."""
        return len(self.c)


def _from_torchdiffeq(order: int, tableau, mid: torch.Tensor) -> Tableau:
    return Tableau(order=order, c=tuple(tableau.alpha.tolist()), a=tuple(tuple(b.tolist()) for b in tableau.beta),
                   b=tuple(tableau.c_sol.tolist()), e=tuple(tableau.c_error.tolist()), mid=tuple(mid.tolist()))


# method -> tableau, each with its declared order (tests/test_solvers.py checks the observed order)
TABLEAUS: dict[str, Tableau] = {
    "dopri5": _from_torchdiffeq(5, _DORMAND_PRINCE_SHAMPINE_TABLEAU, DPS_C_MID),
    "bosh3": _from_torchdiffeq(3, _BOGACKI_SHAMPINE_TABLEAU, _BS_C_MID),
}
RK_METHODS = list(TABLEAUS)
SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2


def _combine(y0: torch.Tensor, dt: torch.Tensor, weights, ks) -> torch.Tensor:
    """y0 + dt * sum_j w_j k_j over the nonzero weights."""
    acc = None
    for w, k in zip(weights, ks):
        if w != 0.0:
            acc = k * w if acc is None else acc + k * w
    return y0 if acc is None else y0 + dt * acc


def rk_step(func, tab: Tableau, rtol: float, atol: float, t0: torch.Tensor, dt: torch.Tensor,
            y0: torch.Tensor, f0: torch.Tensor):
    """One embedded step: (y1, f1, error ratio (0-d), y_mid). ``f0`` = f(t0, y0)."""
    ks = [f0]
    yi = y0
    for ci, row in zip(tab.c, tab.a):
        yi = _combine(y0, dt, row, ks)
        ks.append(func(t0 + ci * dt, yi))
    y1 = yi if tab.fsal else _combine(y0, dt, tab.b, ks)
    f1 = ks[-1] if tab.fsal else None
    err = _combine(torch.zeros_like(y0), dt, tab.e, ks)
    ratio = (err / (atol + rtol * torch.maximum(y0.abs(), y1.abs()))).pow(2).mean().sqrt()
    y_mid = _combine(y0, dt, tab.mid, ks)
    return y1, f1, ratio, y_mid


_COMPILED: dict[tuple, object] = {}


def compiled_step(method: str, rtol: float, atol: float):
    """One ``torch.compile``-d step per (method, tolerances) and process; the field is an argument."""
    key = (method, rtol, atol)
    if key not in _COMPILED:
        tab = TABLEAUS[method]

        def step(func, t0, dt, y0, f0):
            return rk_step(func, tab, rtol, atol, t0, dt, y0, f0)

        _COMPILED[key] = torch.compile(step, dynamic=False, fullgraph=True)
    return _COMPILED[key]


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def initial_step(func, t0: float, y0: torch.Tensor, f0: torch.Tensor, order: int, rtol: float, atol: float) -> float:
    """torchdiffeq's ``_select_initial_step`` (Hairer et al. II.4) with ``order`` = method order - 1;
    one field evaluation."""
    with torch.no_grad():
        scale = atol + y0.abs() * rtol
        d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0_t = torch.tensor(h0, dtype=y0.dtype, device=y0.device)
        f1 = func(torch.tensor(t0 + h0, dtype=y0.dtype, device=y0.device), y0 + h0_t * f0)
        h0 = float(h0_t)  # the step as the state's dtype holds it (torchdiffeq's h0 is a y0-dtype tensor)
        d2 = abs(_rms((f1 - f0) / scale) / h0)
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / float(order + 1))
        return min(100 * h0, abs(h1))


def _interp(y0, y1, y_mid, f0, f1, dt: float, x: float) -> torch.Tensor:
    """torchdiffeq's 4th-order dense output at fraction ``x`` of the step (``_interp_fit`` +
    ``_interp_evaluate``)."""
    a = 2 * dt * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    b = dt * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c = dt * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    return y0 + x * (dt * f0) + x**2 * c + x**3 * b + x**4 * a


class _Reversed(nn.Module):
    """g(s, y) = -f(-s, y): integrating g on -times integrates f backwards in time."""

    def __init__(self, func) -> None:
        super().__init__()
        self.func = func

    def forward(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.func(-s, y)


class AdaptiveRK:
    """Integrates ``func`` at ``times`` with ``method`` (a key of :data:`TABLEAUS`)."""

    def __init__(self, method: str, rtol: float, atol: float, max_num_steps: int, compile: bool = False) -> None:
        self.method, self.tableau = method, TABLEAUS[method]
        self.rtol, self.atol = float(rtol), float(atol)
        self.max_num_steps = max_num_steps
        self.compile = compile

    def _step_fn(self):
        if self.compile:
            return compiled_step(self.method, self.rtol, self.atol)
        tab, rtol, atol = self.tableau, self.rtol, self.atol
        return lambda func, t0, dt, y0, f0: rk_step(func, tab, rtol, atol, t0, dt, y0, f0)

    def solve(self, func, y0: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, int]:
        """States at ``times`` (T, B, …) and the number of field evaluations."""
        ts = times.detach().double().cpu().tolist()
        if len(ts) > 1 and ts[1] < ts[0]:  # decreasing times: integrate the reversed field forwards
            return self.solve(_Reversed(func), y0, -times)
        tab, step = self.tableau, self._step_fn()
        dtype, device = y0.dtype, y0.device

        def as_t(x: float) -> torch.Tensor:
            return torch.tensor(x, dtype=dtype, device=device)

        t = ts[0]
        f = func(as_t(t), y0)
        dt = initial_step(func, t, y0, f, tab.order - 1, self.rtol, self.atol)
        nfe = 2
        out, y = [y0], y0
        last = None  # the last accepted step: (t0, t1, y0, y1, y_mid, f0, f1)
        for next_t in ts[1:]:
            n_steps = 0
            while next_t > t:
                if n_steps >= self.max_num_steps:
                    raise StepError(f"max_num_steps exceeded ({n_steps}>={self.max_num_steps})")
                if not t + dt > t:
                    raise StepError(f"underflow in dt {dt}")
                y1, f1, ratio_t, y_mid = step(func, as_t(t), as_t(dt), y, f)
                nfe += tab.stages
                ratio = float(ratio_t.detach())  # the one host sync per step
                if not math.isfinite(ratio):
                    raise StepError(f"non-finite values in state `y` (error ratio {ratio}) at t={t:g}")
                if f1 is None:
                    f1 = func(as_t(t + dt), y1)
                    nfe += 1
                if ratio <= 1:
                    last = (t, t + dt, y, y1, y_mid, f, f1)
                    t, y, f = t + dt, y1, f1
                if ratio == 0:
                    dt = dt * IFACTOR
                else:
                    dt = dt * min(IFACTOR, max(SAFETY / ratio ** (1.0 / tab.order), 1.0 if ratio < 1 else DFACTOR))
                n_steps += 1
            if last is None:  # next_t == times[0]
                out.append(y0)
                continue
            t_a, t_b, *state = last
            out.append(_interp(*state, t_b - t_a, (next_t - t_a) / (t_b - t_a)))
        return torch.stack(out), nfe
