"""The fast kernels against the formulas they replace: the exp-based ELU against ATen's ELU, the
forcing's precomputed segments against the per-evaluation interpolation they replaced."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from node_lab.datasets.base import Forcing
from node_lab.models.fields import ACTIVATIONS, ELU, exp_elu


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_exp_elu_equals_aten_elu(alpha):
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(300, 20, generator=g) * 3, torch.linspace(-1e-3, 1e-3, 2001)[:, None].expand(-1, 20),
                   torch.tensor([[0.0, -0.0, 1e-30, -1e-30, -100.0, 100.0, -1e-7, 1e-7] + [0.0] * 12])])
    with torch.no_grad():  # the path ELU takes without autograd
        ours = ELU(alpha)(x)
    assert torch.equal(ours, exp_elu(x, alpha))
    assert (ours - F.elu(x, alpha)).abs().max() <= 1.2e-7  # float32 resolution of exp(x) - 1 near 0
    assert torch.equal(exp_elu(x.double(), alpha), torch.where(x.double() > 0, x.double(),
                                                                alpha * (torch.exp(x.double().clamp(max=0)) - 1)))


def test_elu_under_autograd_is_atens():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    elu = ELU(0.7)
    assert torch.equal(elu(x), F.elu(x, 0.7))
    assert torch.autograd.gradgradcheck(lambda v: elu(v), (x,))


def test_fields_use_the_exp_elu():
    assert ACTIVATIONS["elu"] is ELU


def _old_forcing(times, values, outside, t):
    """The per-evaluation formula Forcing.__call__ used before the precomputed segments."""
    ts, vs = times, values if values.dim() == 2 else values[:, None]
    i = torch.searchsorted(ts, t.reshape(1).to(ts.dtype)).clamp(1, len(ts) - 1)
    t_lo, t_hi = ts[i - 1], ts[i]
    w = ((t.to(ts.dtype) - t_lo) / (t_hi - t_lo)).clamp(0.0, 1.0)
    u = (vs[i - 1] + w[:, None] * (vs[i] - vs[i - 1]))[0]
    if outside == "zero":
        u = u * ((t >= ts[0]) & (t <= ts[-1])).to(u.dtype)
    return u


@pytest.mark.parametrize("outside", ["zero", "clamp"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forcing_equals_old_formula(outside, dtype):
    g = torch.Generator().manual_seed(1)
    times = torch.cumsum(torch.rand(50, generator=g, dtype=torch.float64) + 0.05, 0).to(dtype) + 3.0
    values = torch.randn(50, 2, generator=g, dtype=torch.float64).to(dtype)
    f = Forcing(times, values, outside)
    probes = torch.cat([times, (times[:-1] + times[1:]) / 2, times[0] - torch.rand(5, generator=g).to(dtype),
                        times[-1] + torch.rand(5, generator=g).to(dtype),
                        torch.rand(200, generator=g).to(dtype) * (times[-1] - times[0] + 2) + times[0] - 1])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for t in probes:
        assert torch.allclose(f(t), _old_forcing(times, values, outside, t), atol=tol, rtol=tol), float(t)
    assert torch.equal(f(times[0]), values[0]) and torch.equal(f(times[-1]), values[-1])  # the knots themselves
    beyond = torch.nextafter(times[-1], torch.tensor(float("inf"), dtype=dtype))
    assert torch.equal(f(beyond), values[-1] if outside == "clamp" else torch.zeros(2, dtype=dtype))
