"""Numerical checks: solvers against exact solutions, NFE counting, adjoint vs backprop,
SONODE on the harmonic oscillator, augmentation layouts, STEER end times and seeded training.

Everything runs on CPU in a few seconds; float64 wherever precision is asserted.
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torch import nn

from node_lab.augmentation import InputLayerAugmentation, NoAugmentation, ZeroAugmentation
from node_lab.datasets import CompactParity
from node_lab.errors import ConfigError
from node_lab.loop import LoopSettings, Progress, evaluate, fit
from node_lab.models import FirstOrderODE, MLPField, SecondOrderODE
from node_lab.solvers import Solver
from node_lab.steer import FixedEndTime, UniformEndTime
from node_lab.tracking import NullLogger

F64 = torch.float64

# A damped rotation: eigenvalues -0.1 ± 2i, so the solution spirals in (one third of a turn on [0, 1]).
A = torch.tensor([[-0.1, -2.0], [2.0, -0.1]], dtype=F64)
Z0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0], [0.0, -1.0]], dtype=F64)  # (B=3, 2)


class Linear(nn.Module):
    """dz/dt = A z for a batch of row vectors."""

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ A.T.to(z.dtype)


def exact_linear(times: torch.Tensor) -> torch.Tensor:
    """z(t) = exp(A t) z0 for every t: (T, B, 2)."""
    return torch.stack([Z0 @ torch.linalg.matrix_exp(A * t).T for t in times])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# --- 1. solvers against an exact solution ---------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "tol"),
    [
        (dict(method="rk4", step_size=0.01), 1e-7),  # observed max error ~4e-9
        (dict(method="dopri5", rtol=1e-8, atol=1e-8), 1e-6),  # observed max error ~2e-8
    ],
    ids=["rk4", "dopri5"],
)
def test_linear_ode_matches_matrix_exponential(kwargs, tol):
    times = torch.tensor([0.0, 0.25, 0.5, 0.8, 1.0], dtype=F64)
    out = Solver(**kwargs).solve(Linear(), Z0, times)
    assert out.shape == (len(times), *Z0.shape)
    assert out.dtype == F64
    assert torch.equal(out[0], Z0)
    err = (out - exact_linear(times)).abs().max().item()
    assert err < tol, f"{kwargs['method']}: max error {err:.3g} >= {tol:g}"


@pytest.mark.parametrize(
    ("method", "steps", "low", "high"),
    [
        ("rk4", (0.1, 0.05), 3.5, 4.5),
        ("euler", (0.01, 0.005), 0.8, 1.2),  # small steps: euler is in its asymptotic regime
    ],
)
def test_fixed_grid_convergence_order(method, steps, low, high):
    times = torch.tensor([0.0, 1.0], dtype=F64)  # grid points only: no interpolation error
    exact = exact_linear(times)[-1]
    errors = [(Solver(method=method, step_size=h).solve(Linear(), Z0, times)[-1] - exact).abs().max().item()
              for h in steps]
    order = math.log2(errors[0] / errors[1])
    assert low < order < high, f"{method}: observed order {order:.3f} (errors {errors})"


# --- 2. NFE counting ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("n_times", [2, 6, 11])
def test_rk4_nfe_is_four_per_step(dtype, n_times):
    # torchdiffeq's rk4 is the 3/8 rule (rk4_alt_step_func): 4 field evaluations per step and
    # no extra evaluation at output times (linear interpolation), so 10 steps -> 40.
    solver = Solver(method="rk4", step_size=0.1)
    times = torch.linspace(0.0, 1.0, n_times, dtype=dtype)
    solver.solve(Linear(), Z0.to(dtype), times)
    assert solver.nfe == 40
    # the counter accumulates across calls until the caller resets it
    solver.solve(Linear(), Z0.to(dtype), times)
    assert solver.nfe == 80


def test_euler_nfe_is_one_per_step():
    solver = Solver(method="euler", step_size=0.125)
    solver.solve(Linear(), Z0, torch.tensor([0.0, 1.0], dtype=F64))
    assert solver.nfe == 8


# --- 3. adjoint gradients equal backprop gradients ------------------------------------------


def _first_order_model() -> FirstOrderODE:
    torch.manual_seed(0)
    field = functools.partial(MLPField, hidden=[16], activation="tanh", time="concat")
    # input_layer augmentation and a linear head: parameters before, inside and after the solve
    model = FirstOrderODE(field=field, data_dim=2, output_dim=1, solver=Solver(),
                          augmentation=InputLayerAugmentation(1), readout={"head": "linear"})
    return model.double()


def _loss_and_grads(model: FirstOrderODE, x: torch.Tensor, times: torch.Tensor):
    x = x.clone().requires_grad_()
    model.solver.nfe = 0
    out = model(x, times)  # (T, B, 1)
    loss = (out**2).sum() + out[-1].sin().sum()
    nfe_forward = model.solver.nfe
    loss.backward()
    nfe_backward = model.solver.nfe - nfe_forward
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    grads["x"] = x.grad.clone()
    return loss.detach(), grads, nfe_forward, nfe_backward


@pytest.mark.parametrize("seminorm", [True, False])
def test_adjoint_gradients_equal_backprop(seminorm):
    base = _first_order_model()
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    times = torch.tensor([0.0, 0.5, 1.0], dtype=F64)

    backprop = copy.deepcopy(base)
    backprop.solver = Solver("dopri5", rtol=1e-10, atol=1e-10, adjoint=False)
    adjoint = copy.deepcopy(base)
    adjoint.solver = Solver("dopri5", rtol=1e-10, atol=1e-10, adjoint=True, adjoint_seminorm=seminorm)

    loss_b, grads_b, fwd_b, bwd_b = _loss_and_grads(backprop, x, times)
    loss_a, grads_a, fwd_a, bwd_a = _loss_and_grads(adjoint, x, times)

    assert torch.allclose(loss_a, loss_b, rtol=1e-12, atol=0)  # same forward solve
    assert fwd_a == fwd_b > 0
    assert bwd_b == 0, "backprop through the solver must not call the field in backward"
    assert bwd_a > 0, "the adjoint integrates backwards: its backward NFE must be counted"

    assert set(grads_a) == set(grads_b)
    for name, g in grads_b.items():
        assert g.norm() > 0, f"{name}: zero gradient, the comparison would be vacuous"
        err = rel_err(grads_a[name], g)
        assert err < 1e-6, f"{name}: adjoint vs backprop relative error {err:.3g}"


# --- 4. SONODE on x'' = -x ------------------------------------------------------------------


class Spring(nn.Module):
    """Acceleration -x, no parameters."""

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -x


@pytest.mark.parametrize("p", [0, 1])
@pytest.mark.parametrize("init_velocity", ["given", "zero"])
def test_sonode_harmonic_oscillator(init_velocity, p):
    d = 2
    calls = []

    def field(in_dim: int, out_dim: int) -> nn.Module:
        calls.append((in_dim, out_dim))
        return Spring()

    model = SecondOrderODE(field=field, inputs="x", init_velocity=init_velocity, data_dim=d, output_dim=d,
                           solver=Solver("dopri5", rtol=1e-9, atol=1e-9),
                           augmentation=ZeroAugmentation(p)).double()
    assert calls == [(d + p, d + p)]  # inputs=x: the acceleration sees the n = d + p positions
    assert model.head_kind == "identity"

    x0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=F64)
    v0 = torch.tensor([[0.0, 1.5], [-1.0, 0.25]], dtype=F64)
    times = torch.linspace(0.0, 2 * math.pi, 20, dtype=F64)
    t = times[:, None, None]
    v_init = v0 if init_velocity == "given" else torch.zeros_like(v0)
    position = x0 * torch.cos(t) + v_init * torch.sin(t)  # (T, B, d)
    velocity = -x0 * torch.sin(t) + v_init * torch.cos(t)

    zs = model.trajectory(x0, times, v0)
    assert zs.shape == (len(times), 2, 2 * (d + p))
    assert (model(x0, times, v0) - position).abs().max().item() < 1e-6
    assert (model.velocity_of(zs) - velocity).abs().max().item() < 1e-6
    if p:  # the augmented position and velocity start at 0 and the field keeps them there
        assert torch.count_nonzero(zs[:, :, d : d + p]) == 0
        assert torch.count_nonzero(zs[:, :, 2 * d + p :]) == 0


def test_sonode_given_velocity_needs_v0():
    model = SecondOrderODE(field=lambda in_dim, out_dim: Spring(), inputs="x", init_velocity="given",
                           data_dim=1, output_dim=1, solver=Solver(), augmentation=ZeroAugmentation(0))
    with pytest.raises(ConfigError):
        model.trajectory(torch.ones(2, 1), torch.tensor([0.0, 1.0]), None)


# --- 5. augmentation shapes -----------------------------------------------------------------


@pytest.mark.parametrize("p", [0, 1, 3])
def test_zero_augmentation_appends_zeros(p):
    x = torch.randn(5, 2)
    z = ZeroAugmentation(p).module(2)(x)
    assert z.shape == (5, 2 + p)
    assert torch.equal(z[:, :2], x)
    assert torch.equal(z[:, 2:], torch.zeros(5, p))
    images = torch.randn(4, 3, 6, 7)  # (B, C, H, W): zero channels after the data channels
    zi = ZeroAugmentation(p).module(3)(images)
    assert zi.shape == (4, 3 + p, 6, 7)
    assert torch.equal(zi[:, :3], images)
    assert torch.count_nonzero(zi[:, 3:]) == 0


@pytest.mark.parametrize("p", [0, 2])
def test_input_layer_augmentation_shapes(p):
    module = InputLayerAugmentation(p).module(3)
    assert module(torch.randn(5, 3)).shape == (5, 3 + p)
    assert module(torch.randn(4, 3, 6, 7)).shape == (4, 3 + p, 6, 7)  # a 1x1 conv on channels


def test_no_augmentation():
    x = torch.randn(5, 2)
    assert torch.equal(NoAugmentation().module(2)(x), x)
    assert NoAugmentation(0).dim == 0
    with pytest.raises(ConfigError) as info:
        NoAugmentation(2)
    assert info.value.key == "dim"
    with pytest.raises(ConfigError):
        ZeroAugmentation(-1)


# --- 6. STEER -------------------------------------------------------------------------------


def test_uniform_end_time_distribution():
    b, t0, T = 0.25, 0.0, 1.0
    sampler = UniformEndTime(b)
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([sampler.sample(t0, T, g) for _ in range(2000)], dtype=F64)
    assert ((draws > T - b) & (draws < T + b)).all()
    assert abs(draws.mean().item() - T) < 0.02 * b
    # and it actually spreads over the interval (not, say, stuck at T)
    assert draws.min().item() < T - 0.9 * b and draws.max().item() > T + 0.9 * b


def test_fixed_end_time_and_uniform_check():
    g = torch.Generator().manual_seed(0)
    assert FixedEndTime().sample(0.0, 1.5, g) == 1.5
    UniformEndTime(0.5).check(0.0, 1.0)  # b < T - t0: fine
    for b in (1.0, 2.0):
        with pytest.raises(ConfigError):
            UniformEndTime(b).check(0.0, 1.0)
    with pytest.raises(ConfigError):
        UniformEndTime(0.5).check(0.5, 1.0)  # b == T - t0
    with pytest.raises(ConfigError):
        UniformEndTime(0.0)


def _parity_model(seed: int, solver: Solver) -> FirstOrderODE:
    torch.manual_seed(seed)
    field = functools.partial(MLPField, hidden=[8], activation="tanh")
    return FirstOrderODE(field=field, data_dim=1, output_dim=1, solver=solver,
                         augmentation=ZeroAugmentation(1))


def _record_solver_times(model, monkeypatch) -> list[tuple[bool, torch.Tensor]]:
    """Wrap ``model.solver.solve`` to record (model.training, times) of every call."""
    calls: list[tuple[bool, torch.Tensor]] = []
    original = model.solver.solve

    def solve(func, z0, times):
        calls.append((model.training, times.detach().clone()))
        return original(func, z0, times)

    monkeypatch.setattr(model.solver, "solve", solve)
    return calls


def test_evaluate_integrates_to_nominal_end_time(monkeypatch):
    data = CompactParity(seed=0).load()
    model = _parity_model(0, Solver("rk4", step_size=0.1))
    calls = _record_solver_times(model, monkeypatch)
    result = evaluate(model, data, data.test, 0.5, 1.75)
    assert len(calls) == 1
    training, times = calls[0]
    assert not training
    assert times.tolist() == [0.5, 1.75]
    assert result["nfe"] == 4 * 13  # ceil(1.25 / 0.1) = 13 rk4 steps
    assert model.training  # evaluate restores train mode


def test_fit_trains_at_steer_times_and_evaluates_at_T(monkeypatch):
    data = CompactParity(seed=0).load()
    t0, T, b = 0.5, 1.75, 0.5
    model = _parity_model(0, Solver("rk4", step_size=0.1))
    calls = _record_solver_times(model, monkeypatch)
    progress = fit(model, data, torch.optim.Adam(model.parameters(), lr=1e-2), UniformEndTime(b),
                   LoopSettings(iterations=6, batch_size=None, eval_every=3, log_every=100), t0=t0, t1=T,
                   generator=torch.Generator().manual_seed(0), logger=NullLogger(), progress=Progress())
    assert progress.status == "completed"
    train_times = [times for training, times in calls if training]
    eval_times = [times for training, times in calls if not training]
    assert len(train_times) == 6 and len(eval_times) == 2  # iterations 3 and 6

    for times in eval_times:
        assert times.tolist() == [t0, T]
    ends = [times[-1].item() for times in train_times]
    assert all(times[0].item() == t0 for times in train_times)
    assert all(T - b < end < T + b and end != T for end in ends)
    assert len(set(ends)) == len(ends)  # a fresh draw every iteration
    # the logged end times are the draws the solver saw (up to the float32 time grid)
    logged = [row["end_time"] for row in progress.history]
    assert logged == pytest.approx(ends, abs=1e-6)


# --- 7. same seed, same result --------------------------------------------------------------


def _train(model_seed: int, generator_seed: int, monkeypatch) -> tuple[list, list]:
    """Loss history and the training batches (their x) of a short STEER run with batch_size=1."""
    data = CompactParity(seed=0).load()
    model = _parity_model(model_seed, Solver("dopri5", rtol=1e-4, atol=1e-4))
    batches: list[float] = []
    original = model.solver.solve

    def solve(func, z0, times):
        if model.training:
            batches.append(z0[0, 0].item())  # zeros augmentation: z0 = [x, 0]
        return original(func, z0, times)

    monkeypatch.setattr(model.solver, "solve", solve)
    progress = fit(model, data, torch.optim.Adam(model.parameters(), lr=1e-2), UniformEndTime(0.2),
                   LoopSettings(iterations=8, batch_size=1, eval_every=4, log_every=100), t0=0.0, t1=1.0,
                   generator=torch.Generator().manual_seed(generator_seed), logger=NullLogger(),
                   progress=Progress())
    assert progress.status == "completed"
    history = [(row["loss"], row["train_mse"], row["test_loss"] if "test_loss" in row else None,
                row["end_time"], row["nfe_forward"], row["nfe_backward"]) for row in progress.history]
    return history, batches


def test_same_seed_same_history(monkeypatch):
    first, batches = _train(3, 3, monkeypatch)
    second, _ = _train(3, 3, monkeypatch)
    assert len(first) == 8
    assert first == second  # bit-identical floats on CPU
    assert len(set(batches)) == 2  # batch_size=1 over the two points: both get drawn
    assert _train(4, 4, monkeypatch)[0] != first


def test_batches_and_end_times_follow_the_generator(monkeypatch):
    """The data order and the STEER draws come from ``generator`` alone, not the global RNG."""
    history, batches = _train(3, 3, monkeypatch)
    other_init, other_init_batches = _train(4, 3, monkeypatch)
    assert [row[3] for row in other_init] == [row[3] for row in history]  # same end times
    assert other_init_batches == batches
    assert [row[0] for row in other_init] != [row[0] for row in history]  # the init did change
    other_gen, other_gen_batches = _train(3, 5, monkeypatch)
    assert [row[3] for row in other_gen] != [row[3] for row in history]
    assert other_gen_batches != batches
