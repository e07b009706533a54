"""Solvers by topic: every registered method against exact solutions at its declared order, and
node-lab's own adaptive RK (``solver.backend=node_lab``) against torchdiffeq."""

from __future__ import annotations

import math

import pytest
import torch
from torchdiffeq import odeint

from node_lab.loop import is_divergence
from node_lab.solvers import ADAPTIVE, FIXED_GRID, GRID_METHODS, METHODS, ORDERS, RK_ORDERS, SYMPLECTIC, Solver
from node_lab.solvers.rk import TABLEAUS, AdaptiveRK, StepError, rk_step

T = 2.0  # interval [0, T] of the order tests


def oscillator(t, y):
    """y'' = -y as [q, p]: exact q = cos t, p = -sin t from [1, 0] (separable: symplectic methods apply)."""
    return torch.stack([y[..., 1], -y[..., 0]], dim=-1)


Y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
EXACT = torch.tensor([[math.cos(T), -math.sin(T)]], dtype=torch.float64)
TIMES = torch.tensor([0.0, T], dtype=torch.float64)


def end_state(method: str, n: int, backend: str = "torchdiffeq") -> torch.Tensor:
    """The state at T after n equal steps of ``method`` through the public entry points."""
    h = T / n
    if backend == "node_lab":  # the tableau's own step, fixed size
        y, t = Y0, torch.tensor(0.0, dtype=torch.float64)
        f = oscillator(t, y)
        for _ in range(n):
            y, f, _, _ = rk_step(oscillator, TABLEAUS[method], 1.0, 1.0, t, torch.tensor(h, dtype=torch.float64), y, f)
            t = t + h
        return y
    if method in GRID_METHODS:
        return Solver(method=method, substeps=n).solve(oscillator, Y0, TIMES)[-1]
    if method in FIXED_GRID or method in SYMPLECTIC:
        return Solver(method=method, step_size=h).solve(oscillator, Y0, TIMES)[-1]
    # torchdiffeq's adaptive methods held at one step size: dt <= min_step is always accepted
    return odeint(oscillator, Y0, TIMES, method=method, options=dict(first_step=h, min_step=h, max_step=h))[-1]


REGISTERED = [(m, "torchdiffeq") for m in METHODS] + [(m, "node_lab") for m in RK_ORDERS]


@pytest.mark.parametrize(("method", "backend"), REGISTERED, ids=[f"{b}-{m}" for m, b in REGISTERED])
def test_observed_order_matches_declared(method, backend):
    order = (RK_ORDERS if backend == "node_lab" else ORDERS)[method]
    if order is None:
        pytest.skip(f"{method}: no order declared (see node_lab.solvers.ORDERS)")
    n = 2 if order >= 7 else 4 if order >= 5 else 16  # coarse enough to stay above float64 round-off
    errors = [(end_state(method, k, backend) - EXACT).abs().max().item() for k in (n, 2 * n)]
    observed = math.log2(errors[0] / errors[1])
    # at least the declared order; a little more where the error constant still shrinks (dopri8: 8.6)
    assert order - 0.3 < observed < order + 1.0, (method, errors, observed)


def test_every_method_declares_an_order():
    assert set(ORDERS) == set(METHODS)
    assert set(RK_ORDERS) <= set(ADAPTIVE)


@pytest.mark.parametrize("method", list(RK_ORDERS))
def test_node_lab_adaptive_decay_exact(method):
    """y' = -y at tight tolerance: the adaptive solution at several times is exp(-t)."""
    times = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    y0 = torch.ones(3, 1, dtype=torch.float64)
    solver = Solver(method=method, backend="node_lab", rtol=1e-9, atol=1e-9, max_num_steps=100_000)
    ys = solver.solve(lambda t, y: -y, y0, times)
    # bosh3's dense output (torchdiffeq's: its mid-point is a stage value) dominates its error: 1e-6
    assert torch.allclose(ys[:, 0, 0], torch.exp(-times), atol={"dopri5": 1e-8, "bosh3": 2e-6}[method], rtol=0)


class _Autonomous(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t, z):
        return self.net(z)


def _field(seed: int = 0) -> torch.nn.Module:
    """A small NN vector field f(t, z) = net(z), float64."""
    torch.manual_seed(seed)
    return _Autonomous(torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))).double()


@pytest.mark.parametrize("method", list(RK_ORDERS))
def test_node_lab_equals_torchdiffeq_on_nn_field(method):
    """Same steps, same NFE, same outputs (dense output at interior times) as torchdiffeq."""
    net = _field()
    z0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    times = torch.linspace(0.0, 2.0, 6, dtype=torch.float64)
    ours, ref = (Solver(method=method, backend=b, rtol=1e-5, atol=1e-6) for b in ("node_lab", "torchdiffeq"))
    a = ours.solve(net, z0, times)
    b = ref.solve(net, z0, times)
    assert ours.nfe == ref.nfe
    assert torch.allclose(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("method", list(RK_ORDERS))
def test_node_lab_gradients_equal_backprop_through_torchdiffeq(method, monkeypatch):
    """Backprop through the same steps. torchdiffeq computes its first step size with autograd on
    (from f0), so its gradient has an extra O(tolerance) term (1e-8..2e-5 relative here); with that
    step size detached as node-lab's is, the gradients agree to round-off."""
    import torchdiffeq._impl.rk_common as rk_common

    monkeypatch.setattr(rk_common, "_select_initial_step", torch.no_grad()(rk_common._select_initial_step))
    net = _field(2)
    z0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    times = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    grads = []
    for backend in ("node_lab", "torchdiffeq"):
        net.zero_grad()
        zs = Solver(method=method, backend=backend, rtol=1e-6, atol=1e-7).solve(net, z0, times)
        (zs**2).sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for g_ours, g_ref in zip(*grads):
        assert (g_ours - g_ref).abs().max() <= 1e-12 * g_ref.abs().max()


def test_node_lab_gradient_of_linear_ode_is_exact():
    """y' = a y, L = y(1) = y0 e^a: dL/da = y0 e^a, dL/dy0 = e^a."""
    a = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([[1.3]], dtype=torch.float64, requires_grad=True)
    y1 = Solver(method="dopri5", backend="node_lab", rtol=1e-10, atol=1e-10).solve(
        lambda t, y: a * y, y0, torch.tensor([0.0, 1.0], dtype=torch.float64))[-1, 0, 0]
    y1.backward()
    assert math.isclose(a.grad.item(), 1.3 * math.exp(0.7), rel_tol=1e-8)
    assert math.isclose(y0.grad.item(), math.exp(0.7), rel_tol=1e-8)


def test_node_lab_backwards_in_time():
    times = torch.tensor([1.0, 0.0], dtype=torch.float64)
    y = Solver(method="dopri5", backend="node_lab", rtol=1e-9, atol=1e-9).solve(
        lambda t, y: -y, torch.ones(1, 1, dtype=torch.float64), times)
    assert math.isclose(y[-1].item(), math.e, rel_tol=1e-7)


def test_node_lab_step_cap_and_underflow_feed_the_divergence_guard():
    stiff = Solver(method="dopri5", backend="node_lab", rtol=1e-3, atol=1e-3, max_num_steps=5)
    with pytest.raises(StepError, match="max_num_steps exceeded") as err:
        stiff.solve(lambda t, y: -1e4 * y, torch.ones(2, 1), torch.tensor([0.0, 1.0]))
    assert is_divergence(err.value)
    blowup = AdaptiveRK("dopri5", 1e-3, 1e-3, max_num_steps=10_000)
    with pytest.raises(StepError) as err:  # y' = y^2 from 1: blows up at t = 1
        blowup.solve(lambda t, y: y**2, torch.ones(1, 1), torch.tensor([0.0, 2.0]))
    assert is_divergence(err.value)


def test_node_lab_combinations_are_one_line_errors():
    from node_lab.errors import ConfigError

    for kwargs in (dict(method="dopri8", backend="node_lab"), dict(method="dopri5", backend="node_lab", adjoint=True),
                   dict(method="dopri5", compile=True), dict(method="dopri5", backend="scipy")):
        with pytest.raises(ConfigError):
            Solver(**kwargs)


@pytest.mark.slow
def test_compiled_step_equals_eager():
    """solver=dopri5_compiled: the compiled step gives the eager step's outputs, NFE and gradients."""
    net = _field(4).float()
    z0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(5))
    times = torch.tensor([0.0, 1.0])
    out = []
    for compile_ in (False, True):
        net.zero_grad()
        solver = Solver(method="dopri5", backend="node_lab", compile=compile_)
        zs = solver.solve(net, z0, times)
        zs[-1].pow(2).sum().backward()
        out.append((zs.detach(), solver.nfe, [p.grad.clone() for p in net.parameters()]))
    (a, nfe_a, g_a), (b, nfe_b, g_b) = out
    assert nfe_a == nfe_b
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    for x, y in zip(g_a, g_b):
        assert torch.allclose(x, y, atol=1e-4, rtol=1e-4)
