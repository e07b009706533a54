"""Guaranteed-stable fields (model.field.stability): the decrease conditions hold on random states
(numerical truth, untrained and trained), a trained stable model's rollout stays bounded over 100x its
training horizon, and the combinations where a form is not defined are one line."""

from __future__ import annotations

import pytest
import torch

from node_lab import job
from node_lab.build import build
from node_lab.errors import ConfigError
from node_lab.models.fields import MLPField
from node_lab.models.stable import LyapunovProjected, smooth_relu


def _states(n: int, dim: int, seed: int, scale: float = 5.0) -> torch.Tensor:
    return scale * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _lyapunov_terms(field: MLPField, z: torch.Tensor):
    """V, dV/dt = ∇V·f (autograd, independent of the field's own gradient code) at states z."""
    z = z.clone().requires_grad_(True)
    v = field.stable.V(z)
    (grad,) = torch.autograd.grad(v.sum(), z)
    with torch.no_grad():
        f = field(torch.zeros(()), z.detach())
    return v.detach(), (grad * f).sum(-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_lyapunov_projection_meets_the_decrease_condition(seed, alpha):
    torch.manual_seed(seed)
    field = MLPField(3, 3, hidden=[16, 16], stability="lyapunov", alpha=alpha, lyapunov_hidden=[16, 16])
    z = _states(2000, 3, seed)
    v, vdot = _lyapunov_terms(field, z)
    assert (v > 0).all()
    assert (vdot <= -alpha * v + 1e-5 * (1 + v.abs())).all(), float((vdot + alpha * v).max())
    # the projection changes the nominal field only where it violated the condition
    with torch.no_grad():
        nominal = field.nominal(torch.zeros(()), z) - field.nominal(torch.zeros(()), torch.zeros(1, 3))
        projected = field(torch.zeros(()), z)
    zz = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(field.stable.V(zz).sum(), zz)
    fine = (grad * nominal).sum(-1) + alpha * v < 0
    assert torch.allclose(projected[fine], nominal[fine], atol=1e-6)
    assert fine.any() or alpha >= 1.0  # at alpha 0.1 part of the random nominal field already decreases V


def test_lyapunov_function_is_positive_definite():
    torch.manual_seed(0)
    field = MLPField(2, 2, stability="lyapunov")
    V = field.stable.V
    assert float(V(torch.zeros(1, 2)).detach()) == 0.0
    z = _states(500, 2, 3)
    assert (V(z) >= 0.1 * (z**2).sum(-1) - 1e-7).all()
    assert float(smooth_relu(torch.tensor(-1.0))) == 0.0 and float(smooth_relu(torch.tensor(0.5))) == 0.125


def test_projection_is_the_same_with_and_without_recorded_gradients():
    torch.manual_seed(0)
    field = MLPField(3, 3, stability="lyapunov")
    z = _states(64, 3, 4)
    with torch.no_grad():
        a = field(torch.zeros(()), z)
    b = field(torch.zeros(()), z.clone().requires_grad_(True))
    assert torch.allclose(a, b.detach(), atol=1e-6)


def test_contractive_field_decreases_outside_its_ball():
    """V = ½‖z‖²: dV/dt ≤ −εV for ‖z‖ > 2R√n/ε (the module docstring's bound)."""
    torch.manual_seed(0)
    eps, bound, n = 0.5, 1.0, 3
    field = MLPField(n, n, stability="contractive", alpha=eps, residual_bound=bound)
    z = _states(4000, n, 5, scale=20.0)
    z = z[z.norm(dim=1) > 2 * bound * n**0.5 / eps]
    with torch.no_grad():
        vdot = (z * field(torch.zeros(()), z)).sum(-1)
    assert len(z) > 1000 and (vdot <= -eps * 0.5 * (z**2).sum(-1)).all()


def test_contractive_second_order_linear_part_is_hurwitz():
    torch.manual_seed(0)
    field = MLPField(4, 2, stability="contractive", alpha=0.1)
    with torch.no_grad():
        field.stable.A.normal_()
        field.stable.B.normal_()
        K, D = field.stable._spd(field.stable.A, 0.1), field.stable._spd(field.stable.B, 0.1)
    system = torch.cat([torch.cat([torch.zeros(2, 2), torch.eye(2)], 1), torch.cat([-K, -D], 1)], 0)
    assert (torch.linalg.eigvals(system).real < 0).all()


QUICK = ["dataset=damped_oscillators", "dataset.n_random=8", "dataset.train_windows=[[0,5,26]]",
         "train.iterations=30", "train.eval_every=15", "train.figures=false", "solver=rk4", "solver.step_size=0.1",
         "device.threads=1"]


@pytest.mark.parametrize("model,stability", [("node", "lyapunov"),
                                             pytest.param("anode", "lyapunov", marks=pytest.mark.slow),
                                             pytest.param("node", "contractive", marks=pytest.mark.slow),
                                             pytest.param("sonode", "contractive", marks=pytest.mark.slow)])
def test_trained_stable_model_stays_bounded_over_100x_the_horizon(make_cfg, tmp_path, model, stability):
    extra = ["dataset.inputs=position_velocity"] if model != "sonode" else ["model.init_velocity=given"]
    cfg = make_cfg(f"model={model}", *QUICK, *extra, f"model.field.stability={stability}")
    built = build(cfg)
    result = job.run(built, tmp_path, group="test", name="stable")
    assert result["status"] == "completed"
    trained = built.model.eval()
    data = built.dataset.load()
    horizon = float(data.train.times[-1])
    times = torch.linspace(0, 100 * horizon, 2001)
    with torch.no_grad():
        zs = trained.trajectory(data.test.x, times, data.test.v0)  # (T, B, state)
    assert torch.isfinite(zs).all()
    field = trained.dynamics.accel if model == "sonode" else trained.dynamics
    if stability == "lyapunov":  # the theory's bound: ‖z(t)‖² ≤ V(z0)/ε_V, and V decays
        V = field.stable.V
        with torch.no_grad():
            v = V(zs.flatten(0, 1)).view(zs.shape[:2])
        z = zs[::50].flatten(0, 1).clone().requires_grad_(True)  # the condition itself along the rollout
        vz = V(z)
        (grad,) = torch.autograd.grad(vz.sum(), z)
        with torch.no_grad():
            vdot = (grad * field(torch.zeros(()), z.detach())).sum(-1)
        assert (vdot <= -field.stable.alpha * vz.detach() + 1e-5 * (1 + vz.detach())).all()
        # bounded: V(z(t)) <= V(z0) in continuous time, so ||z||^2 <= V(z0)/eps_V; RK4 steps of 0.1
        # overshoot a little near the origin, where the projection turns sharply (slack 0.01 absolute)
        assert ((zs**2).sum(-1) <= (v[0] * 1.05 + 0.01) / V.eps).all()
        assert (v[-1] < 0.5 * v[0])[v[0] > 0.01].all()  # and decays
    else:  # ultimately bounded: inside the ball (or the start) at every time
        n = zs.shape[-1]
        radius = max(2 * field.stable.bound * n**0.5 / field.stable.eps, float(zs[0].norm(dim=-1).max())) * 3
        assert float(zs.norm(dim=-1).max()) <= radius


BAD = [
    (["model=sonode", "model.field.stability=lyapunov"], "model.field.stability=lyapunov"),
    (["model=sonode", "model.inputs=x", "model.field.stability=contractive"], "model.field.stability=contractive"),
    (["model=node", "model.field.stability=lyapnov"], "model.field.stability=lyapnov"),
    (["model=node", "model.field.stability=lyapunov", "model.field.alpha=0"], "model.field.alpha=0"),
]


@pytest.mark.parametrize("args,text", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_stability_where_undefined_is_one_line(make_cfg, args, text):
    with pytest.raises(ConfigError) as err:
        build(make_cfg(*args))
    message = err.value.message()
    assert message.startswith(text) and "\n" not in message and "fix: " in message or "valid: " in message


def test_projected_field_is_a_module_of_the_field():
    field = MLPField(2, 2, stability="lyapunov")
    assert isinstance(field.stable, LyapunovProjected)
    names = {n for n, _ in field.named_parameters()}
    assert any(n.startswith("stable.V.") for n in names) and any(n.startswith("net.") for n in names)
    plain = MLPField(2, 2)
    assert {n for n, _ in plain.named_parameters()} == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias",
                                                        "net.4.weight", "net.4.bias"}
