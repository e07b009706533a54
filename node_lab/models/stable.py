"""Vector fields with guaranteed stability (``model.field.stability``), wrapped around a nominal MLP.

- ``lyapunov`` (Manek & Kolter 2019, "Learning stable deep dynamics models"): a learned Lyapunov
  function V(z) = σ(g(z) − g(0)) + ε_V‖z‖², g an input-convex network (ICNN, Amos et al. 2017: the
  hidden-to-hidden weights kept non-negative, convex non-decreasing activations), σ the smoothed
  ReLU (σ(0) = 0), so V is convex, V(0) = 0 and V ≥ ε_V‖z‖² (positive definite). The field is the
  nominal f̂ projected onto the half-space of decrease:
      f = f̂ − ∇V · ReLU(∇V·f̂ + αV) / ‖∇V‖²,
  with f̂(z) = MLP(z) − MLP(0) (the equilibrium is the origin; a nominal field that does not vanish
  there would make the correction unbounded as ∇V → 0), so ∇V·f ≤ −αV at every state:
  V(z(t)) ≤ V(z0) e^{−αt}, every trajectory stays in
  {‖z‖² ≤ V(z0)/ε_V} and converges to 0. Defined for first-order fields on the whole state (NODE,
  ANODE, the drift of a first-order neural SDE); refused for SONODE, whose acceleration alone cannot
  enforce ∇_x V·v + ∇_v V·a ≤ −αV where ∇_v V = 0.
- ``contractive``: f(z) = −(AAᵀ + εI) z + r(z) with r = R·tanh(MLP(z)) bounded by R per dim.
  For V = ½‖z‖²: dV/dt ≤ −ε‖z‖² + R√n‖z‖, so dV/dt ≤ −εV outside the ball ‖z‖ ≤ 2R√n/ε, and every
  trajectory ends inside it (ultimately bounded, a dissipative field). On SONODE (``inputs: xv``) it is
  the damped form a(x, v) = −(AAᵀ + εI)x − (BBᵀ + εI)v + r(x, v): with K, D positive definite the
  linear part [[0, I], [−K, −D]] is Hurwitz and a bounded r keeps the state bounded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from node_lab.errors import ConfigError, check_number

STABILITY = ["none", "lyapunov", "contractive"]
# V >= eps ||z||^2. Small eps leaves V nearly flat in some directions near 0, where the projection then
# turns sharply: at 1e-3 an RK4 step of 0.1 overshoots and V grows (measured, tests/test_stable.py).
LYAPUNOV_EPS = 0.1


def smooth_relu(u: torch.Tensor, d: float = 1.0) -> torch.Tensor:
    """0 for u ≤ 0, u²/(2d) on (0, d), u − d/2 beyond: convex, non-decreasing, C¹, zero at 0."""
    return torch.where(u <= 0, torch.zeros_like(u), torch.where(u < d, u**2 / (2 * d), u - d / 2))


class ICNN(nn.Module):
    """g(z): z → h1 = softplus(W0 z + b0) → h_{k+1} = softplus(U_k h_k + W_k z + b_k) → scalar,
    with U_k = softplus(raw) ≥ 0 (convex in z)."""

    def __init__(self, dim: int, hidden: list[int]) -> None:
        super().__init__()
        widths = [*hidden, 1]
        self.inputs = nn.ModuleList([nn.Linear(dim, w) for w in widths])
        self.raw = nn.ParameterList([nn.Parameter(torch.randn(b, a) * 0.1) for a, b in zip(widths[:-1], widths[1:])])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.softplus(self.inputs[0](z))
        for layer, raw in zip(self.inputs[1:], self.raw):
            h = F.softplus(h @ F.softplus(raw).T + layer(z))
        return h.squeeze(-1)


class LyapunovFunction(nn.Module):
    """V(z) = smooth_relu(g(z) − g(0)) + eps‖z‖² (positive definite, convex)."""

    def __init__(self, dim: int, hidden: list[int], eps: float) -> None:
        super().__init__()
        self.g, self.eps = ICNN(dim, hidden), eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return smooth_relu(self.g(z) - self.g(torch.zeros_like(z[:1]))) + self.eps * (z**2).sum(-1)


class LyapunovProjected(nn.Module):
    """f(t, z) = f̂(t, z) − ∇V ReLU(∇V·f̂ + αV)/‖∇V‖² (Manek & Kolter)."""

    def __init__(self, nominal: nn.Module, dim: int, alpha: float, hidden: list[int], eps: float) -> None:
        super().__init__()
        self._nominal, self.alpha = [nominal], alpha  # a list: the nominal field owns this module, not back
        self.V = LyapunovFunction(dim, hidden, eps)

    def value_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V(z) (B,) and ∇V(z) (B, n); differentiable when gradients are being recorded."""
        graph = torch.is_grad_enabled()
        with torch.enable_grad():
            zz = z if z.requires_grad else z.detach().requires_grad_(True)
            v = self.V(zz)
            (grad,) = torch.autograd.grad(v.sum(), zz, create_graph=graph)
        return (v, grad) if graph else (v.detach(), grad.detach())

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # the nominal field is shifted to vanish at the equilibrium z = 0: otherwise f̂(0) ≠ 0 against
        # ∇V(z) → 0 makes the correction ~ ‖f̂(0)‖/‖∇V‖ unbounded near the origin (a stiff field)
        fhat = self._nominal[0](t, z) - self._nominal[0](t, torch.zeros_like(z[:1]))
        v, grad = self.value_and_grad(z)
        excess = F.relu((grad * fhat).sum(-1) + self.alpha * v)
        return fhat - grad * (excess / (grad.pow(2).sum(-1) + 1e-12)).unsqueeze(-1)


class Contractive(nn.Module):
    """f = −(AAᵀ + εI) z + R tanh(net) on first-order states, or the damped second-order form on
    [x, v] inputs (``second_order``); see the module docstring."""

    def __init__(self, nominal: nn.Module, in_dim: int, out_dim: int, eps: float, bound: float) -> None:
        super().__init__()
        self._nominal, self.eps, self.bound = [nominal], eps, bound
        self.second_order = in_dim == 2 * out_dim
        self.A = nn.Parameter(torch.eye(out_dim) * 0.5)
        self.B = nn.Parameter(torch.eye(out_dim) * 0.5) if self.second_order else None

    @staticmethod
    def _spd(m: torch.Tensor, eps: float) -> torch.Tensor:
        return m @ m.T + eps * torch.eye(m.shape[0], dtype=m.dtype, device=m.device)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        residual = self.bound * torch.tanh(self._nominal[0](t, z))
        if self.second_order:
            x, v = z.chunk(2, dim=1)
            return -x @ self._spd(self.A, self.eps) - v @ self._spd(self.B, self.eps) + residual
        return -z @ self._spd(self.A, self.eps) + residual


def stabilise(nominal, in_dim: int, out_dim: int, stability: str, alpha: float,
              lyapunov_hidden: list[int], residual_bound: float) -> nn.Module:
    """The stabilising wrapper of the callable ``nominal`` (t, z) → f̂ for ``stability`` (None for
    ``none``); keys relative to ``model.field``."""
    if stability == "none":
        return None
    check_number("alpha", alpha, low=0, low_open=True)
    if stability == "lyapunov":
        if in_dim != out_dim:
            raise ConfigError("stability", stability, f"needs a field on the whole state (in_dim = out_dim); this one "
                              f"maps {in_dim} → {out_dim} dims (SONODE's acceleration)",
                              choices=["contractive", "none"],
                              fix="model.field.stability=contractive")
        return LyapunovProjected(nominal, in_dim, alpha, list(lyapunov_hidden), eps=LYAPUNOV_EPS)
    check_number("residual_bound", residual_bound, low=0)
    if in_dim not in (out_dim, 2 * out_dim):
        raise ConfigError("stability", stability, f"is defined for fields z → z or [x, v] → a; this one maps "
                          f"{in_dim} → {out_dim} dims", choices=["none"], fix="model.field.stability=none")
    return Contractive(nominal, in_dim, out_dim, alpha, residual_bound)
