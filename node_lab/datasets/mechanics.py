"""Conservative mechanical systems, generated from a seed at high accuracy with their energy.

Every system is a natural Lagrangian system L(q, q̇) = ½ q̇ᵀM(q)q̇ − V(q) with a closed-form
acceleration. Trajectories are integrated in float64 with torchdiffeq's dopri5 (``rtol``,
``atol``), in [q, q̇] coordinates, and delivered as states in ``coordinates``:

- ``canonical``: [q, p] with p = ∂L/∂q̇ (what an HNN expects);
- ``velocity``: [q, q̇] (what an LNN expects).

Each split is a trajectory task: x = the initial states (B, 2n), y = the states (T, B, 2n) on the
time grid, ``velocity`` = the exact time derivative of the state (T, B, 2n) (targets of
``train.mode=derivatives``) and ``v0`` its first row. ``noise`` (std) perturbs the training
states only (the derivative targets stay exact, as in Greydanus et al.); the test split holds
other initial conditions over a longer horizon (``test_t_end``); the validation split is
``n_val`` more of those (drawn like the test split, from the validation stream). The Data carry the true energy
function of a state (…, 2n) → (…) and an energy scale for the relative drift.

Extension point: subclass :class:`MechanicalSystem` (``lagrangian``, ``acceleration``,
``sample``), add ``conf/dataset/<name>.yaml``.
"""

from __future__ import annotations

import math

import torch
from torch.func import grad, hessian, vmap
from torchdiffeq import odeint

from node_lab.datasets.base import Data, Dataset, Split, Task
from node_lab.errors import ConfigError, check_choice, check_number

COORDINATES = ["canonical", "velocity"]


class MechanicalSystem(Dataset):
    """Base of the physics datasets.

    **Arguments:** ``n_train``/``n_test`` trajectories (``n_val``: validation trajectories drawn
    like the test ones, null: ``n_test``); ``t_end``/``dt``: training horizon and
    sample step; ``test_t_end``/``test_dt``: rollout horizon and step of the held-out initial
    conditions (null: the training values); ``noise``: std of Gaussian noise on the training
    states; ``coordinates``: canonical | velocity; ``ic``: the initial-condition ranges (keys per
    system); ``test_ic``: other ranges for the test split (null: ``ic``); ``rtol``/``atol`` of
    the generator; ``seed``.
    """

    task = Task.trajectory
    has_velocity = True
    n_dof: int
    default_ic: dict = {}

    def __init__(
        self,
        n_train: int = 25,
        n_test: int = 25,
        t_end: float = 3.0,
        dt: float = 0.1,
        test_t_end: float | None = None,
        test_dt: float | None = None,
        noise: float = 0.0,
        coordinates: str = "canonical",
        ic: dict | None = None,
        test_ic: dict | None = None,
        rtol: float = 1e-10,
        atol: float = 1e-10,
        n_val: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        check_number("n_train", n_train, kind=int, low=1)
        check_number("n_test", n_test, kind=int, low=1)
        check_number("n_val", n_val, kind=int, low=1, allow_none=True)
        for key, value in (("t_end", t_end), ("dt", dt), ("rtol", rtol), ("atol", atol)):
            check_number(key, value, low=0, low_open=True)
        check_number("test_t_end", test_t_end, low=0, low_open=True, allow_none=True)
        check_number("test_dt", test_dt, low=0, low_open=True, allow_none=True)
        check_number("noise", noise, low=0)
        check_choice("coordinates", coordinates, COORDINATES)
        self.ic = self._check_ic("ic", ic)
        self.test_ic = self.ic if test_ic is None else self._check_ic("test_ic", test_ic)
        self.n_train, self.n_test = n_train, n_test
        self.n_val = n_test if n_val is None else n_val
        self.t_end, self.dt = t_end, dt
        self.test_t_end = t_end if test_t_end is None else test_t_end
        self.test_dt = dt if test_dt is None else test_dt
        for key, (end, step) in (("dt", (t_end, dt)), ("test_dt", (self.test_t_end, self.test_dt))):
            if step > end:
                raise ConfigError(key, step, f"larger than the horizon {end:g}", fix=f"set dataset.{key} < {end:g}")
        self.noise, self.coordinates = noise, coordinates
        self.rtol, self.atol = rtol, atol
        self.data_dim = self.output_dim = 2 * self.n_dof

    def _check_ic(self, key: str, ic: dict | None) -> dict:
        ic = dict(ic or {})
        unknown = set(ic) - set(self.default_ic)
        if unknown:
            bad = sorted(unknown)[0]
            raise ConfigError(f"{key}.{bad}", ic[bad], "unknown initial-condition key", choices=list(self.default_ic))
        merged = {**self.default_ic, **ic}
        for name, value in merged.items():
            if isinstance(value, (list, tuple)) and (len(value) != 2 or value[0] > value[1]):
                raise ConfigError(f"{key}.{name}", list(value), "must be a range [low, high] with low <= high")
        return merged

    # --- what a system defines (per sample: q, qdot are (n,) tensors) -----------------------
    def lagrangian(self, q: torch.Tensor, qdot: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def acceleration(self, q: torch.Tensor, qdot: torch.Tensor) -> torch.Tensor:
        """Closed-form q̈ for a batch (B, n), (B, n) → (B, n)."""
        raise NotImplementedError

    def sample(self, n: int, ic: dict, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n initial conditions (q0, q̇0), each (n, n_dof), float64."""
        raise NotImplementedError

    def energy_scale(self, energies0: torch.Tensor) -> float:
        """Divisor of the relative energy drift; default: the mean |E(0)| of the test states."""
        return float(energies0.abs().mean())

    # --- generic mechanics ---------------------------------------------------------------------
    def momentum(self, q: torch.Tensor, qdot: torch.Tensor) -> torch.Tensor:
        """p = ∂L/∂q̇ for a batch."""
        return vmap(grad(self.lagrangian, argnums=1))(q, qdot)

    def velocity_of_momentum(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """q̇ = M(q)⁻¹ p (natural systems: M = ∇q̇∇q̇ᵀL does not depend on q̇)."""
        mass = vmap(hessian(self.lagrangian, argnums=1))(q, torch.zeros_like(q))
        return torch.linalg.solve(mass, p)

    def energy_qv(self, q: torch.Tensor, qdot: torch.Tensor) -> torch.Tensor:
        """E = q̇·∂L/∂q̇ − L for a batch."""
        return (qdot * self.momentum(q, qdot)).sum(-1) - vmap(self.lagrangian)(q, qdot)

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """True energy of states z (…, 2n) in this dataset's coordinates → (…)."""
        shape = z.shape[:-1]
        q, second = z.reshape(-1, z.shape[-1]).to(torch.float64).chunk(2, dim=-1)
        qdot = second if self.coordinates == "velocity" else self.velocity_of_momentum(q, second)
        return self.energy_qv(q, qdot).reshape(shape).to(z.dtype)

    def field(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        q, qdot = z.chunk(2, dim=-1)
        return torch.cat([qdot, self.acceleration(q, qdot)], dim=-1)

    def _split(self, n: int, ic: dict, t_end: float, dt: float, g: torch.Generator, noise: float) -> Split:
        q0, v0 = self.sample(n, ic, g)
        steps = int(round(t_end / dt))
        times = torch.linspace(0.0, steps * dt, steps + 1, dtype=torch.float64)
        z = odeint(self.field, torch.cat([q0, v0], dim=1), times, method="dopri5", rtol=self.rtol, atol=self.atol)
        q, qdot = z.chunk(2, dim=-1)  # (T, B, n)
        acc = self.acceleration(q.reshape(-1, self.n_dof), qdot.reshape(-1, self.n_dof)).reshape(q.shape)
        if self.coordinates == "velocity":
            state, deriv = z, torch.cat([qdot, acc], dim=-1)
        else:  # [q, p] and its derivative [q̇, ṗ = ∂L/∂q] (Euler–Lagrange)
            flat_q, flat_v = q.reshape(-1, self.n_dof), qdot.reshape(-1, self.n_dof)
            p = self.momentum(flat_q, flat_v).reshape(q.shape)
            pdot = vmap(grad(self.lagrangian, argnums=0))(flat_q, flat_v).reshape(q.shape)
            state, deriv = torch.cat([q, p], dim=-1), torch.cat([qdot, pdot], dim=-1)
        if noise > 0:
            state = state + noise * torch.randn(state.shape, generator=g, dtype=state.dtype)
        # float64 throughout: the job casts to the run's dtype (device.dtype)
        return Split(x=state[0], y=state, v0=deriv[0], velocity=deriv, times=times)

    def generate(self) -> tuple[Split, Split]:
        """Both splits, float64."""
        g = self.generator()
        train = self._split(self.n_train, self.ic, self.t_end, self.dt, g, self.noise)
        test = self._split(self.n_test, self.test_ic, self.test_t_end, self.test_dt, g, 0.0)
        return train, test

    def load(self) -> Data:
        train, test = self.generate()
        val = self._split(self.n_val, self.test_ic, self.test_t_end, self.test_dt, self.generator("val"), 0.0)
        scale = self.energy_scale(self.energy(test.x))
        return Data(task=self.task, train=train, val=val, test=test, loss="mse", output_dim=self.output_dim,
                    energy=self.energy, energy_scale=scale)

    def describe(self) -> str:
        return f"{type(self).__name__}({self.coordinates})"


def _uniform(n: int, bounds, g: torch.Generator, shape: tuple = ()) -> torch.Tensor:
    lo, hi = (bounds, bounds) if isinstance(bounds, (int, float)) else bounds
    return lo + (hi - lo) * torch.rand((n, *shape), generator=g, dtype=torch.float64)


def _circle_states(n: int, radius, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Greydanus et al.'s sampling: a point of the unit circle scaled by a radius U(lo, hi)."""
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    z = z / z.norm(dim=1, keepdim=True) * _uniform(n, radius, g)[:, None]
    return z[:, :1], z[:, 1:]


class _OneDegree(MechanicalSystem):
    """L = ½ μ q̇² − c V(q) with one degree of freedom; initial (q, p) on a circle of radius
    U(``ic.radius``) as Greydanus et al. Subclasses give V, dV/dq and their YAML key names."""

    n_dof = 1
    keys = ("c", "mu")

    def __init__(self, c: float, mu: float, **common) -> None:
        for key, value in zip(self.keys, (c, mu)):
            check_number(key, value, low=0, low_open=True)
        self.c, self.mu = c, mu
        super().__init__(**common)

    def potential(self, q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def potential_grad(self, q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def lagrangian(self, q, qdot):
        return 0.5 * self.mu * (qdot**2).sum() - self.c * self.potential(q).sum()

    def acceleration(self, q, qdot):
        return -self.c / self.mu * self.potential_grad(q)

    def sample(self, n, ic, g):
        q, p = _circle_states(n, ic["radius"], g)
        return q, p / self.mu


class Spring(_OneDegree):
    """Ideal spring-mass: H = k q² + p²/(2m) (Greydanus et al.: k = 1, m = ½, i.e. H = q² + p²),
    L = ½ m q̇² − k q². ``ic.radius``: the canonical (q, p) radius range."""

    default_ic = {"radius": [0.1, 1.0]}
    keys = ("stiffness", "mass")

    def __init__(self, stiffness: float = 1.0, mass: float = 0.5, **common) -> None:
        super().__init__(stiffness, mass, **common)

    def potential(self, q):
        return q**2

    def potential_grad(self, q):
        return 2.0 * q


class Pendulum(_OneDegree):
    """Ideal pendulum: H = c(1 − cos q) + p²/(2μ), L = ½ μ q̇² − c(1 − cos q) with c = ``gravity``
    and μ = ``inertia`` (Greydanus et al.: H = 3(1 − cos q) + p², i.e. c = 3, μ = ½).
    ``ic.radius``: the canonical (q, p) radius range."""

    default_ic = {"radius": [1.3, 2.3]}
    keys = ("gravity", "inertia")

    def __init__(self, gravity: float = 3.0, inertia: float = 0.5, **common) -> None:
        super().__init__(gravity, inertia, **common)

    def potential(self, q):
        return 1 - torch.cos(q)

    def potential_grad(self, q):
        return torch.sin(q)


class TwoBody(MechanicalSystem):
    """Two bodies of unit mass under planar gravity (G = 1): q = (x1, y1, x2, y2), p = q̇,
    H = |p|²/2 − 1/|r1 − r2|. Initial conditions: centre of mass at rest at the origin, body 1 at
    r1, body 2 at −r1, the circular-orbit velocity scaled by (1 + ``ic.orbit_noise``·N(0, 1)).
    r1 is |r1| ~ ``ic.radius`` at a uniform angle, or, when ``ic.position`` is a range, each
    coordinate of r1 ~ U(``ic.position``) (greydanus/hamiltonian-nn's ``random_config``, whose
    min/max_radius 0.5/1.5 bound the coordinates: |r1| in [0.71, 2.12], first quadrant).
    ``softening`` (ε in 1/sqrt(r² + ε²)) defaults to 0."""

    n_dof = 4
    default_ic = {"radius": [0.5, 1.5], "orbit_noise": 0.05, "position": None}

    def __init__(self, softening: float = 0.0, **common) -> None:
        check_number("softening", softening, low=0)
        self.eps2 = softening**2
        super().__init__(**common)

    def lagrangian(self, q, qdot):
        r = q[:2] - q[2:]
        return 0.5 * (qdot**2).sum() + 1.0 / torch.sqrt((r**2).sum() + self.eps2)

    def acceleration(self, q, qdot):
        r = q[:, :2] - q[:, 2:]  # (B, 2)
        a1 = -r / ((r**2).sum(-1, keepdim=True) + self.eps2) ** 1.5
        return torch.cat([a1, -a1], dim=1)

    def sample(self, n, ic, g):
        if ic.get("position") is not None:
            r1 = _uniform(n, ic["position"], g, (2,))
            radius = r1.norm(dim=1)
            u = r1 / radius[:, None]  # (n, 2)
        else:
            radius = _uniform(n, ic["radius"], g)
            angle = _uniform(n, [0.0, 2 * math.pi], g)
            u = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
            r1 = u * radius[:, None]
        speed = 0.5 / torch.sqrt(radius) * (1 + ic["orbit_noise"] * torch.randn(n, generator=g, dtype=torch.float64))
        v = torch.stack([-u[:, 1], u[:, 0]], dim=1) * speed[:, None]
        return torch.cat([r1, -r1], dim=1), torch.cat([v, -v], dim=1)


class DoublePendulum(MechanicalSystem):
    """Double pendulum (Cranmer et al.: m1 = m2 = l1 = l2 = 1, g = 9.8), angles from the
    vertical. ``ic.theta`` and ``ic.omega``: uniform ranges of the angles and angular velocities.
    The energy scale is Cranmer et al.'s divisor, the maximum potential energy
    g((m1 + m2) l1 + m2 l2) (29.4 for the defaults)."""

    n_dof = 2
    default_ic = {"theta": [-math.pi / 2, math.pi / 2], "omega": [-1.0, 1.0]}

    def __init__(self, m1: float = 1.0, m2: float = 1.0, l1: float = 1.0, l2: float = 1.0, g: float = 9.8,
                 **common) -> None:
        for key, value in (("m1", m1), ("m2", m2), ("l1", l1), ("l2", l2), ("g", g)):
            check_number(key, value, low=0, low_open=True)
        self.m1, self.m2, self.l1, self.l2, self.g = m1, m2, l1, l2, g
        super().__init__(**common)

    def lagrangian(self, q, qdot):
        m1, m2, l1, l2, g = self.m1, self.m2, self.l1, self.l2, self.g
        t1, t2, w1, w2 = q[0], q[1], qdot[0], qdot[1]
        kinetic = (0.5 * (m1 + m2) * l1**2 * w1**2 + 0.5 * m2 * l2**2 * w2**2
                   + m2 * l1 * l2 * w1 * w2 * torch.cos(t1 - t2))
        potential = -(m1 + m2) * g * l1 * torch.cos(t1) - m2 * g * l2 * torch.cos(t2)
        return kinetic - potential

    def acceleration(self, q, qdot):
        """The closed form of Cranmer et al.'s notebook."""
        m1, m2, l1, l2, g = self.m1, self.m2, self.l1, self.l2, self.g
        t1, t2, w1, w2 = q[:, 0], q[:, 1], qdot[:, 0], qdot[:, 1]
        a1 = (l2 / l1) * (m2 / (m1 + m2)) * torch.cos(t1 - t2)
        a2 = (l1 / l2) * torch.cos(t1 - t2)
        f1 = -(l2 / l1) * (m2 / (m1 + m2)) * w2**2 * torch.sin(t1 - t2) - (g / l1) * torch.sin(t1)
        f2 = (l1 / l2) * w1**2 * torch.sin(t1 - t2) - (g / l2) * torch.sin(t2)
        g1 = (f1 - a1 * f2) / (1 - a1 * a2)
        g2 = (f2 - a2 * f1) / (1 - a1 * a2)
        return torch.stack([g1, g2], dim=1)

    def sample(self, n, ic, g):
        return _uniform(n, ic["theta"], g, (2,)), _uniform(n, ic["omega"], g, (2,))

    def energy_scale(self, energies0: torch.Tensor) -> float:
        """The maximum potential energy g((m1 + m2) l1 + m2 l2) = 29.4 for the defaults."""
        return self.g * ((self.m1 + self.m2) * self.l1 + self.m2 * self.l2)
