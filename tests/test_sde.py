"""Neural SDEs: scores of predictive distributions against closed forms, the SDE solvers against
exact Ornstein-Uhlenbeck and geometric-Brownian moments, the SDE adjoint against backprop, the
model=nsde contract (every combination torchsde takes builds and trains; the others are one line)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from node_lab import cli, job, metrics
from node_lab.build import build
from node_lab.errors import ConfigError
from node_lab.solvers.sde import METHOD_NOISE_TYPES, METHOD_SDE_TYPES, NOISE_TYPES, SDE_METHODS, SDE_TYPES, SDESolver

F64 = torch.float64


# --- scores ------------------------------------------------------------------------------------
def test_gaussian_nll_is_the_normal_log_density():
    g = torch.Generator().manual_seed(0)
    mean, y = torch.randn(50, generator=g, dtype=F64), torch.randn(50, generator=g, dtype=F64)
    var = torch.rand(50, generator=g, dtype=F64) + 0.1
    expected = -torch.distributions.Normal(mean, var.sqrt()).log_prob(y).mean()
    assert torch.allclose(metrics.gaussian_nll(mean, var, y), expected, rtol=1e-12)


def test_fair_crps_equals_its_pairwise_definition():
    g = torch.Generator().manual_seed(1)
    samples, y = torch.randn(7, 5, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    k = samples.shape[0]
    pairs = (samples.unsqueeze(0) - samples.unsqueeze(1)).abs().sum((0, 1))  # Σ_{i≠j}
    expected = ((samples - y).abs().mean(0) - pairs / (2 * k * (k - 1))).mean()
    assert torch.allclose(metrics.crps(samples, y), expected, rtol=1e-12)


@pytest.mark.parametrize("y,mu,sigma", [(0.0, 0.0, 1.0), (1.3, -0.2, 0.5), (-2.0, 0.5, 2.0)])
def test_sample_crps_recovers_the_gaussian_closed_form(y, mu, sigma):
    """The fair estimator is unbiased: over 200 000 draws of N(mu, sigma²) it matches the closed form
    within Monte-Carlo error (std of |X − y| / sqrt(K) bounds it generously)."""
    g = torch.Generator().manual_seed(2)
    k = 200_000
    samples = mu + sigma * torch.randn(k, 1, generator=g, dtype=F64)
    exact = metrics.gaussian_crps(torch.tensor([mu], dtype=F64), torch.tensor([sigma], dtype=F64),
                                  torch.tensor([y], dtype=F64))
    tol = 4 * float((samples - y).abs().std()) / math.sqrt(k)
    assert abs(float(metrics.crps(samples, torch.tensor([y], dtype=F64))) - float(exact)) < tol
    # CRPS(N(0,1), 0) = (sqrt(2) - 1)/sqrt(pi)
    if (y, mu, sigma) == (0.0, 0.0, 1.0):
        assert abs(float(exact) - (math.sqrt(2) - 1) / math.sqrt(math.pi)) < 1e-12


def test_coverage_of_the_true_distribution_is_ninety_percent():
    g = torch.Generator().manual_seed(3)
    samples = torch.randn(1000, 4000, generator=g, dtype=F64)  # predictive = the truth
    y = torch.randn(4000, generator=g, dtype=F64)
    cov = float(metrics.coverage(samples, y, 0.9))
    assert abs(cov - 0.9) < 4 * math.sqrt(0.9 * 0.1 / 4000)
    assert float(metrics.coverage(samples, y + 100.0)) == 0.0


def test_predictive_scores_of_a_point_mass_at_the_truth():
    y = torch.linspace(-1, 1, 11, dtype=F64)
    scores = metrics.predictive_scores(y.expand(5, -1).clone(), y)
    assert scores["crps"] == 0.0 and scores["mean_mse"] == 0.0 and scores["coverage90"] == 1.0


# --- solvers against exact moments ------------------------------------------------------------
class _Linear(nn.Module):
    """dX = a X dt + (b + c X) dW on (N, 1): OU (c = 0) and geometric Brownian motion (b = 0)."""

    def __init__(self, a, b, c, sde_type, noise_type):
        super().__init__()
        self.a, self.b, self.c = a, b, c
        self.sde_type, self.noise_type = sde_type, noise_type

    def f(self, t, y):
        return self.a * y

    def g(self, t, y):
        g = self.b + self.c * y
        return g.unsqueeze(-1) if self.noise_type == "scalar" else g


CASES = [(m, s, n) for m in SDE_METHODS for s in METHOD_SDE_TYPES[m] for n in ("diagonal", "scalar")]


def _moments_within_error(ys, mean, var, n):
    """Sample mean and variance at every time after t0 within 4 standard errors (+ a step bias)."""
    em, ev = ys.mean(1)[1:, 0], ys.var(1)[1:, 0]
    assert ((em - mean[1:]).abs() <= 4 * (var[1:] / n).sqrt() + 5e-3).all(), (em, mean)
    assert ((ev - var[1:]).abs() <= 4 * var[1:] * math.sqrt(2 / (n - 1)) + 5e-3).all(), (ev, var)


@pytest.mark.parametrize("method,sde_type,noise", CASES, ids=["-".join(c) for c in CASES])
def test_ornstein_uhlenbeck_moments(method, sde_type, noise):
    """dX = −θX dt + σ dW (additive: Itô = Stratonovich): mean x0 e^{−θt}, var σ²/(2θ)(1 − e^{−2θt})."""
    theta, sigma, x0, n = 1.5, 0.8, 1.0, 4000
    ts = torch.linspace(0, 1, 5, dtype=F64)
    with torch.no_grad():
        ys = SDESolver(method, dt=0.01).solve(_Linear(-theta, sigma, 0.0, sde_type, noise),
                                              torch.full((n, 1), x0, dtype=F64), ts, 1, entropy=7)
    mean = x0 * torch.exp(-theta * ts)
    var = sigma**2 / (2 * theta) * (1 - torch.exp(-2 * theta * ts))
    _moments_within_error(ys, mean, var, n)


@pytest.mark.parametrize("method,sde_type", [(m, s) for m in SDE_METHODS for s in METHOD_SDE_TYPES[m]])
def test_geometric_brownian_motion_tells_ito_from_stratonovich(method, sde_type):
    """dX = μX dt + σX dW: Itô mean x0 e^{μt}, var x0² e^{2μt}(e^{σ²t} − 1); the Stratonovich SDE is the
    Itô one with drift μ + σ²/2. Multiplicative noise, so a wrong calculus is off by e^{σ²t/2}."""
    mu, sigma, x0, n = 0.2, 0.6, 1.0, 4000
    ts = torch.linspace(0, 1, 3, dtype=F64)
    with torch.no_grad():
        ys = SDESolver(method, dt=0.005).solve(_Linear(mu, 0.0, sigma, sde_type, "diagonal"),
                                               torch.full((n, 1), x0, dtype=F64), ts, 1, entropy=11)
    drift = mu + (sigma**2 / 2 if sde_type == "stratonovich" else 0.0)
    mean = x0 * torch.exp(drift * ts)
    var = x0**2 * torch.exp(2 * drift * ts) * (torch.exp(sigma**2 * ts) - 1)
    _moments_within_error(ys, mean, var, n)


# --- the adjoint against backprop -------------------------------------------------------------
class _Small(nn.Module):
    def __init__(self, sde_type):
        super().__init__()
        self.sde_type, self.noise_type = sde_type, "diagonal"
        torch.manual_seed(0)
        self.fn = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
        self.gn = nn.Linear(2, 2).double()

    def f(self, t, y):
        return self.fn(y)

    def g(self, t, y):
        return 0.3 * torch.sigmoid(self.gn(y))


def _adjoint_error(method: str, sde_type: str, dt: float) -> float:
    sde = _Small(sde_type)
    y0 = torch.randn(16, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    ts = torch.linspace(0, 1, 3, dtype=F64)
    grads = []
    for adjoint in (False, True):
        sde.zero_grad()
        ys = SDESolver(method, dt=dt, adjoint=adjoint).solve(sde, y0, ts, 2, entropy=3)  # the same Brownian path
        (ys**2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in sde.parameters()]))
    return float((grads[0] - grads[1]).norm() / grads[0].norm())


def test_reversible_heun_adjoint_is_the_backprop_gradient():
    """Reversible Heun's adjoint reconstructs the forward states algebraically: equal to float64 rounding."""
    assert _adjoint_error("reversible_heun", "stratonovich", 0.05) < 1e-7


@pytest.mark.parametrize("method,sde_type", [("euler", "ito"), ("srk", "ito"), ("milstein", "stratonovich")])
def test_other_adjoints_converge_to_backprop(method, sde_type):
    """The other adjoints solve the backward SDE on their own grid: close, and closer as dt shrinks."""
    coarse, fine = _adjoint_error(method, sde_type, 0.05), _adjoint_error(method, sde_type, 0.005)
    assert fine < 1e-2 and fine < coarse


# --- the model contract ------------------------------------------------------------------------
QUICK = ["model=nsde", "dataset=extrapolation", "model.samples=4", "model.eval_samples=8",
         "dataset.train_windows=[[0,2,8]]", "dataset.test_windows=[[2,3,4]]", "solver.dt=0.1"]
ALLOWED = [(m, s, n, a) for m in SDE_METHODS for s in METHOD_SDE_TYPES[m] for n in METHOD_NOISE_TYPES[m]
           for a in (False, True)]


@pytest.mark.parametrize("method,sde_type,noise,adjoint", ALLOWED, ids=["-".join(map(str, c)) for c in ALLOWED])
def test_every_allowed_combination_trains_a_step(make_cfg, method, sde_type, noise, adjoint):
    """What the solver allows torchsde takes: one training loss and its gradient, finite."""
    extra = ["model.brownian_dim=2"] if noise == "general" else []
    built = build(make_cfg(*QUICK, f"solver=sde_{method}", f"model.sde_type={sde_type}", f"model.noise={noise}",
                           f"solver.adjoint={str(adjoint).lower()}", *extra))
    data = built.dataset.load()
    loss, mse = built.model.training_loss(data.train, data.train.times)
    loss.backward()
    grads = [p.grad for p in built.model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)


REFUSED = [(m, s, n) for m in SDE_METHODS for s in SDE_TYPES for n in NOISE_TYPES
           if s not in METHOD_SDE_TYPES[m] or n not in METHOD_NOISE_TYPES[m]]


@pytest.mark.parametrize("method,sde_type,noise", REFUSED, ids=["-".join(c) for c in REFUSED])
def test_combinations_torchsde_refuses_are_one_line(make_cfg, method, sde_type, noise):
    extra = ["model.brownian_dim=2"] if noise == "general" else []
    with pytest.raises(ConfigError) as err:
        build(make_cfg(*QUICK, f"solver=sde_{method}", f"model.sde_type={sde_type}", f"model.noise={noise}", *extra))
    key = "model.sde_type" if sde_type not in METHOD_SDE_TYPES[method] else "model.noise"
    assert err.value.message().startswith(f"{key}=") and "\n" not in err.value.message()
    assert "fix: " in err.value.message()


BAD = [
    (["model=nsde", "dataset=extrapolation", "solver=rk4"], "solver=rk4: is an ODE solver"),
    (["dataset=extrapolation", "solver=sde_euler"], "solver=sde_euler: is an SDE solver"),
    (["model=sonode", "dataset=extrapolation", "solver=sde_srk"], "solver=sde_srk: is an SDE solver"),
    (["model=node", "+model.noise=diagonal"], "model.noise"),                 # an SDE-only key on an ODE model
    (["dataset=extrapolation", "solver.dt=0.1"], "solver.dt"),                # an SDE-only key on an ODE solver
    (["model=nsde", "dataset=extrapolation", "+solver.rtol=1e-3"], "solver.rtol"),   # and back
    (["model=nsde", "dataset=extrapolation", "solver=sde_srk", "model.noise=general"], "model.noise=general"),
    (["model=nsde", "dataset=extrapolation", "model.sde_type=stratonovich"], "model.sde_type=stratonovich"),
    (["model=nsde", "dataset=extrapolation", "model.noise=diagonall"], "model.noise=diagonall"),
    (["model=nsde", "dataset=extrapolation", "model.samples=1"], "model.samples=1"),
    (["model=nsde", "dataset=extrapolation", "model.brownian_dim=3"], "model.brownian_dim=3"),
    (["model=nsde", "dataset=extrapolation", "model.order=1", "model.init_velocity=zero"], "model.init_velocity=zero"),
    (["model=nsde", "dataset=extrapolation", "solver.dt=0"], "solver.dt=0"),
    (["model=nsde"], "model=NeuralSDE: is a distribution over trajectories"),
    (["model=nsde", "dataset=extrapolation", "train.mode=steps"], "train.mode=steps"),
    (["model=nsde", "dataset=extrapolation", "train.loss=l1"], "train.loss=l1"),
]


@pytest.mark.parametrize("args,text", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2(capsys, monkeypatch, tmp_path, args, text):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("NODE_LAB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setattr(cli, "_hydra_train", lambda: pytest.fail(f"not refused before the run: {args}"))
    code = cli.main(["train", "logger=none", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("node-lab: error: ") and "\n" not in err and "Traceback" not in err, err
    assert text in err, err
    assert not (tmp_path / "outputs").exists()


def test_model_nsde_chooses_an_sde_solver(make_cfg):
    assert make_cfg("model=nsde").solver.method == "euler"
    assert make_cfg("model=nsde", "solver=sde_srk").solver.method == "srk"


@pytest.mark.parametrize("variant", [[], ["model.order=2", "model.init_velocity=zero"],
                                     ["model.noise=scalar", "augmentation.dim=1"],
                                     ["model.order=2", "augmentation=input_layer", "augmentation.dim=1"],
                                     ["solver=sde_reversible_heun", "solver.adjoint=true"]],
                         ids=["diagonal", "second-order", "scalar-augmented", "second-order-input-layer",
                              "reversible-heun-adjoint"])
def test_nsde_trains_and_reports_predictive_scores(make_cfg, tmp_path, variant):
    cfg = make_cfg(*QUICK, *variant, "train.iterations=3", "train.eval_every=2", "train.figures=false")
    result = job.run(build(cfg), tmp_path, group="test", name="nsde")
    assert result["status"] == "completed"
    final = result["final"]
    for split in ("val", "test"):
        for score in ("nll", "crps", "coverage90", "mean_mse"):
            assert math.isfinite(final[f"{split}_{score}"]), (split, score)
        assert 0.0 <= final[f"{split}_coverage90"] <= 1.0
        assert final[f"{split}_mean_mse"] == pytest.approx(final[f"{split}_mse"])
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert "val_crps" in history[0] and "val_coverage90" in history[0]


def test_nsde_is_reproducible_and_evaluation_is_fixed(make_cfg, tmp_path):
    """Same seed, same result (Brownian seeds come from torch's seeded generator); evaluating twice
    gives the same scores (a fixed evaluation Brownian path)."""
    cfg = make_cfg(*QUICK, "train.iterations=2", "train.figures=false")
    a = job.run(build(cfg), tmp_path / "a", group="test", name="a")["final"]
    b = job.run(build(cfg), tmp_path / "b", group="test", name="b")["final"]
    assert a == b
    built = build(cfg)
    data = built.dataset.load()
    built.model.eval()
    assert built.model.scores(data.test, data.test.times) == built.model.scores(data.test, data.test.times)


def test_diffusion_free_limit_is_the_ode(make_cfg):
    """With a vanishing diffusion every path is the ODE solution of the drift: the NeuralSDE's mean
    equals the FirstOrderODE with the same drift weights (Euler, the same step)."""
    sde = build(make_cfg(*QUICK, "model.order=1", "model.diffusion_scale=1e-12")).model
    ode = build(make_cfg("dataset=extrapolation", "solver=euler", "solver.step_size=0.1")).model
    ode.dynamics.load_state_dict(sde.dynamics.drift.state_dict())
    x, ts = torch.ones(3, 1), torch.linspace(0, 2, 9)
    sde.eval()
    with torch.no_grad():
        assert torch.allclose(sde(x, ts), ode(x, ts), atol=1e-6)
        draws = sde.sample(x, ts, observation_noise=False)
    assert float(draws.std(0).max()) < 1e-6


def test_every_sde_solver_yaml_names_its_method(make_cfg):
    from conftest import options

    sde = [o for o in options("solver") if o.startswith("sde_")]
    assert sorted(sde) == sorted(f"sde_{m}" for m in SDE_METHODS)
    for option in sde:
        assert build(make_cfg(*QUICK, f"solver={option}")).solver.method == option.removeprefix("sde_")


def test_every_noise_and_method_pair_is_covered():
    assert set(itertools.chain.from_iterable(METHOD_NOISE_TYPES.values())) == set(NOISE_TYPES)
