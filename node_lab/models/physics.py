"""Physics-structured models: Hamiltonian (HNN, HINN) and Lagrangian (LNN) neural networks.

- :class:`HamiltonianODE` (``model=hnn``, Greydanus et al. 2019): a network H_θ(q, p) and the
  field (∂H/∂p, −∂H/∂q) by autograd (``create_graph`` whenever gradients are being recorded, so
  training through any solver, the adjoint and derivative fitting all work). State [q, p].
- :class:`HamiltonianResNet` (``model=hinn``, seed 003): a residual network whose every layer is
  one symplectic step of the learned H (``layers`` steps per data interval).
- :class:`LagrangianODE` (``model=lnn``, Cranmer et al. 2020, seed 004): a network L_θ(q, q̇) and
  q̈ = (∇q̇∇q̇ᵀL)⁻¹[∇qL − (∇q∇q̇ᵀL) q̇] with Hessians from ``torch.func`` (vmapped over the batch).
  State [q, q̇].

The state is the data itself (no augmentation) and its two halves are the coordinates and the
momenta (HNN) or velocities (LNN); the physics datasets deliver either (``dataset.coordinates``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import grad, jacfwd, vmap

from node_lab.errors import ConfigError, check_choice, check_number
from node_lab.models.base import ODEModel
from node_lab.solvers import SYMPLECTIC

SINGULAR = ["damping", "pinv"]


def _check_state(model: ODEModel, coordinates: str, expected: str) -> None:
    if coordinates != expected:
        raise ConfigError("state_coordinates", coordinates, f"{type(model).__name__} works on [q, "
                          f"{'p' if expected == 'canonical' else 'qdot'}] states", choices=[expected])
    if model.augmentation.dim != 0 or model.augmentation.name == "input_layer":
        raise ConfigError("augmentation", model.augmentation.describe(),
                          f"{type(model).__name__}'s state is the physical state itself; it takes no augmentation",
                          choices=["zeros with dim 0", "none"], fix="augmentation=none")
    if model.data_dim % 2:
        raise ConfigError("data_dim", model.data_dim, "a [q, p] state needs an even number of data dims",
                          fix="use a physics dataset (spring, pendulum, two_body, double_pendulum)")


class _Scalar(nn.Module):
    """A scalar network of the state: the field partial called with out_dim 1."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(t, z)[..., 0]


class HamiltonianField(nn.Module):
    """(t, z=[q, p]) → [∂H/∂p, −∂H/∂q] for a scalar network H (Hamilton's signs)."""

    def __init__(self, hamiltonian: nn.Module) -> None:
        super().__init__()
        self.hamiltonian = hamiltonian

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        create_graph = torch.is_grad_enabled()  # training / adjoint backward: keep the graph
        with torch.enable_grad():
            z_in = z if z.requires_grad else z.detach().requires_grad_(True)
            (dh,) = torch.autograd.grad(self.hamiltonian(t, z_in).sum(), z_in, create_graph=create_graph)
        dq, dp = dh.chunk(2, dim=1)
        return torch.cat([dp, -dq], dim=1)


class HamiltonianODE(ODEModel):
    """HNN. **Arguments:** ``hamiltonian``: a partial field network called with in_dim = 2n and
    out_dim = 1 (e.g. :class:`MLPField`, 200 tanh units in the paper); ``state_coordinates``:
    ``canonical`` (the contract with the dataset: the state is [q, p]); the rest as in
    :class:`ODEModel` (readout identity: the state is the data)."""

    state_kind = "canonical"

    def __init__(self, hamiltonian: Callable[..., nn.Module], state_coordinates: str = "canonical", **common) -> None:
        super().__init__(**common)
        _check_state(self, state_coordinates, self.state_kind)
        self.initial = nn.Identity()
        net = _Scalar(self.make("hamiltonian", hamiltonian, in_dim=self.state_dim, out_dim=1))
        self.dynamics = HamiltonianField(net)
        self.build_head()

    def initial_state(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        return x

    def learned_energy(self, z: torch.Tensor) -> torch.Tensor:
        """H_θ of states (…, 2n)."""
        return self.dynamics.hamiltonian(torch.zeros(()), z.reshape(-1, z.shape[-1])).reshape(z.shape[:-1])


class HamiltonianResNet(HamiltonianODE):
    """HINN (seed 003): a residual network z_{k+1} = z_k + Φ_h(z_k) whose layer Φ_h is one
    symplectic step of the learned H, ``layers`` layers (steps of size Δt / layers) per interval of
    the data grid; the layers share H (a ResNet with tied weights), so it rolls out any horizon.
    It is discrete by construction: the ``solver`` group is not used (only its NFE counter).

    Signs: we write Hamilton's equations, q̇ = ∂H/∂p, ṗ = −∂H/∂q. The seed writes the update as
    p += h ∂H/∂q, q −= h ∂H/∂p, i.e. the same flow for −H (or time reversed); a learned H absorbs
    the sign, so the two are the same model class.

    **Arguments:** ``update``: leapfrog | symplectic_euler (the seed's update is symplectic Euler);
    ``layers``: steps per data interval; the rest as in :class:`HamiltonianODE`.
    """

    def __init__(self, update: str = "symplectic_euler", layers: int = 1, **common) -> None:
        super().__init__(**common)
        check_choice("update", update, SYMPLECTIC)
        check_number("layers", layers, kind=int, low=1)
        self.update, self.layers = update, layers

    def trajectory(self, x: torch.Tensor, times: torch.Tensor, v0: torch.Tensor | None = None) -> torch.Tensor:
        return self.solver.solve_steps(self.dynamics, self.initial_state(x, v0), times, self.update, self.layers)

    def describe(self) -> str:
        return f"{super().describe()} layers={self.layers}x{self.update}"


def euler_lagrange(lagrangian: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], q: torch.Tensor,
                   qdot: torch.Tensor, singular: str = "damping", damping: float = 0.0) -> torch.Tensor:
    """q̈ (B, n) from a per-sample scalar ``lagrangian(q, qdot)`` (n,), (n,) → (), vectorised with
    torch.func over the batch: solve (∇q̇∇q̇ᵀL + damping·I) q̈ = ∇qL − (∇q∇q̇ᵀL) q̇, or use the
    pseudo-inverse (``singular=pinv``). Raises FloatingPointError when the result is not finite."""

    n = q.shape[1]

    def gradient(z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = grad(lambda z: lagrangian(z[:n], z[n:]))(z1)
        return g, g

    def one(q1: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
        # one forward-over-reverse pass gives the whole Hessian of L(z = [q, q̇]) and its gradient
        hess, g = jacfwd(gradient, has_aux=True)(torch.cat([q1, v1]))
        mass, mixed = hess[n:, n:], hess[n:, :n]  # ∇q̇∇q̇ᵀL, ∂(∇q̇L)/∂q (n, n)
        rhs = g[:n] - mixed @ v1
        if singular == "pinv":
            return torch.linalg.pinv(mass) @ rhs
        eye = torch.eye(mass.shape[0], dtype=mass.dtype, device=mass.device)
        return torch.linalg.solve(mass + damping * eye, rhs)

    try:
        acc = vmap(one)(q, qdot)
    except torch.linalg.LinAlgError as err:  # "singular matrix"; other RuntimeErrors (dtype, shape) are bugs
        raise FloatingPointError(f"singular Hessian d2L/dqdot2 ({str(err).splitlines()[0]}); "
                                 "try model.singular=pinv or a larger model.damping") from None
    if not torch.isfinite(acc).all():
        raise FloatingPointError("non-finite LNN acceleration (d2L/dqdot2 singular?); "
                                 "try model.singular=pinv or a larger model.damping")
    return acc


class LagrangianField(nn.Module):
    """(t, z=[q, q̇]) → [q̇, q̈] with q̈ from the Euler–Lagrange equation of a scalar network L."""

    def __init__(self, lagrangian: nn.Module, singular: str, damping: float, wrap_angles: bool) -> None:
        super().__init__()
        self.lagrangian = lagrangian
        self.singular, self.damping, self.wrap_angles = singular, damping, wrap_angles

    def coordinates(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, q̇) of states (B, 2n) as L sees them."""
        q, qdot = z.chunk(2, dim=1)
        if self.wrap_angles:  # L is then 2π-periodic in q (angles), as in Cranmer et al.
            q = torch.remainder(q + torch.pi, 2 * torch.pi) - torch.pi
        return q, qdot

    def per_sample(self, t: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """L(q, q̇) of one sample, (n,), (n,) → (), for torch.func."""
        return lambda q1, v1: self.lagrangian(t, torch.cat([q1, v1])[None])[0]

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        q, qdot = self.coordinates(z)
        with torch.enable_grad():  # torch.func needs autograd even when evaluating
            acc = euler_lagrange(self.per_sample(t), q, qdot, self.singular, self.damping)
        return torch.cat([qdot, acc], dim=1)


class LagrangianODE(ODEModel):
    """LNN. **Arguments:** ``lagrangian``: a partial field network called with in_dim = 2n and
    out_dim = 1 (softplus MLP in the paper); ``singular``: the safeguard for a singular
    ∇q̇∇q̇ᵀL: ``damping`` solves with ∇q̇∇q̇ᵀL + ``damping``·I, ``pinv`` uses the pseudo-inverse
    (Cranmer et al.); a non-finite acceleration stops the run with status ``diverged``;
    ``damping_final``: null (the damping is constant) or the damping training ends with: the
    damping then shrinks geometrically from ``damping`` to ``damping_final`` over the first
    ``damping_anneal`` fraction of the iterations and stays there, for evaluation too (a large
    damping lets training start from a near-singular ∇q̇∇q̇ᵀL; annealing it hands the fit back
    to the Euler–Lagrange flow of L_θ);
    ``wrap_angles``: feed q mod 2π (angle coordinates); ``state_coordinates``: ``velocity`` (the
    state is [q, q̇])."""

    state_kind = "velocity"

    def __init__(
        self,
        lagrangian: Callable[..., nn.Module],
        singular: str = "damping",
        damping: float = 1.0e-6,
        damping_final: float | None = None,
        damping_anneal: float = 0.8,
        wrap_angles: bool = False,
        state_coordinates: str = "velocity",
        **common,
    ) -> None:
        super().__init__(**common)
        _check_state(self, state_coordinates, self.state_kind)
        check_choice("singular", singular, SINGULAR)
        check_number("damping", damping, low=0)
        if damping_final is not None:
            check_number("damping_final", damping_final, low=0)
            if singular != "damping" or not 0 < damping_final <= damping:
                raise ConfigError("damping_final", damping_final, "anneals the damping down: it needs "
                                  f"singular=damping and 0 < damping_final <= damping ({damping:g})",
                                  fix="model.damping_final=null (constant damping)")
        check_number("damping_anneal", damping_anneal, low=0, high=1)
        self.damping_start, self.damping_final, self.damping_anneal = damping, damping_final, damping_anneal
        if not isinstance(wrap_angles, bool):
            raise ConfigError("wrap_angles", wrap_angles, "must be true or false", choices=[True, False])
        self.initial = nn.Identity()
        net = _Scalar(self.make("lagrangian", lagrangian, in_dim=self.state_dim, out_dim=1))
        # a built (or loaded) model is the trained one: annealed damping at its final value
        self.dynamics = LagrangianField(net, singular, damping if damping_final is None else damping_final,
                                        wrap_angles)
        self.build_head()

    def initial_state(self, x: torch.Tensor, v0: torch.Tensor | None) -> torch.Tensor:
        return x

    def learned_energy(self, z: torch.Tensor) -> torch.Tensor:
        """E_θ = q̇·∂L_θ/∂q̇ − L_θ of states (…, 2n): the energy the Euler–Lagrange flow of L_θ
        conserves (without damping)."""
        q, qdot = self.dynamics.coordinates(z.reshape(-1, z.shape[-1]))
        lagrangian = self.dynamics.per_sample(torch.zeros((), dtype=z.dtype))

        def energy(q1: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
            return (v1 * grad(lagrangian, argnums=1)(q1, v1)).sum() - lagrangian(q1, v1)

        with torch.enable_grad():
            return vmap(energy)(q, qdot).reshape(z.shape[:-1]).detach()

    def set_training_progress(self, fraction: float) -> None:
        """The annealed damping at ``fraction`` of training (see ``damping_final``)."""
        if self.damping_final is None:
            return
        done = 1.0 if self.damping_anneal == 0 else min(fraction / self.damping_anneal, 1.0)
        self.dynamics.damping = self.damping_start * (self.damping_final / self.damping_start) ** done
