"""The SONODE paper suite: forcing, grid solvers, feature fields, trajectory datasets, metrics,
the divergence guard and the presets (numerical truth first, then contracts and smoke runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CONF, REPO, options
from torch import nn

from node_lab import job
from node_lab.build import Built, build
from node_lab.datasets import (
    DampedOscillators,
    Exponential,
    ForcedVanDerPol,
    Forcing,
    GeneralisedParity,
    SystemIdentificationCSV,
)
from node_lab.errors import ConfigError
from node_lab.metrics import running_rmse
from node_lab.models import FeatureField
from node_lab.solvers import Solver

DATA = Path(__import__("os").environ.get("NODE_LAB_DATA", REPO.parent / "shared" / "data"))
SILVERBOX = DATA / "silverbox" / "SNLS80mV.csv"
needs_data = pytest.mark.skipif(not SILVERBOX.is_file(), reason="shared data folder not found (NODE_LAB_DATA)")


# --- forcing -------------------------------------------------------------------------------------
def test_forcing_interpolates_linearly_between_samples_by_hand():
    f = Forcing(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, -1.0]))
    for t, want in [(0.0, 1.0), (0.25, 1.5), (1.0, 3.0), (1.5, 1.0), (2.0, -1.0), (-0.5, 0.0), (2.5, 0.0)]:
        assert float(f(torch.tensor(t))) == pytest.approx(want), t
    clamp = Forcing(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, -1.0]), outside="clamp")
    assert float(clamp(torch.tensor(-3.0))) == pytest.approx(1.0)
    assert float(clamp(torch.tensor(9.0))) == pytest.approx(-1.0)


def test_forcing_reaches_the_field_with_the_features_by_hand():
    field = FeatureField(in_dim=2, out_dim=1, powers=[{"dims": [0], "power": 3, "scale": 0.01}], forcing_dim=1)
    with torch.no_grad():
        field.net[0].weight.copy_(torch.tensor([[1.0, 10.0, 100.0, 1000.0]]))  # [x, v, 0.01x³, u]
        field.net[0].bias.zero_()
    field.forcing = Forcing(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 2.0]))
    out = field(torch.tensor(0.5), torch.tensor([[2.0, 3.0]]))
    assert out.item() == pytest.approx(2.0 + 30.0 + 100 * 0.08 + 1000 * 1.0)
    with pytest.raises(ConfigError, match="forcing"):
        FeatureField(in_dim=2, out_dim=1, forcing_dim=1)(torch.tensor(0.0), torch.zeros(1, 2))


# --- grid solvers ----------------------------------------------------------------------------------
class _Oscillator(nn.Module):
    def forward(self, t, z):
        return torch.cat([z[:, 1:], -z[:, :1]], dim=1)  # ẍ = −x


@pytest.mark.parametrize("method,order", [("grid_euler", 1), ("grid_midpoint", 2), ("grid_rk4", 4)])
def test_grid_methods_hit_the_grid_and_converge_at_their_order(method, order):
    times = torch.linspace(0, 2, 21, dtype=torch.float64)
    z0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    errors = []
    for substeps in (2, 4):
        solver = Solver(method=method, substeps=substeps)
        zs = solver.solve(_Oscillator(), z0, times)
        assert zs.shape == (21, 1, 2)
        assert solver.nfe == {1: 1, 2: 2, 4: 4}[order] * 20 * substeps
        errors.append(float((zs[:, 0, 0] - torch.cos(times)).abs().max()))
    assert math.log2(errors[0] / errors[1]) == pytest.approx(order, abs=0.3)


def test_grid_rk4_is_exact_for_piecewise_linear_forcing_on_the_grid():
    # ẋ = u(t), u piecewise linear with knots on the grid: RK4 on the grid integrates it exactly.
    knots = torch.arange(6, dtype=torch.float64)
    u = Forcing(knots, torch.tensor([0.0, 2.0, -1.0, 4.0, 4.0, 0.0], dtype=torch.float64))
    field = lambda t, z: u(t).expand_as(z)  # noqa: E731
    zs = Solver(method="grid_rk4").solve(field, torch.zeros(1, 1, dtype=torch.float64), knots)
    exact = torch.cat([torch.zeros(1), torch.cumsum(0.5 * (u.values[1:, 0] + u.values[:-1, 0]), 0)])
    assert torch.allclose(zs[:, 0, 0], exact.double(), atol=1e-12)


def test_grid_options_are_checked():
    with pytest.raises(ConfigError, match="substeps"):
        Solver(method="dopri5", substeps=2)
    with pytest.raises(ConfigError, match="adjoint"):
        Solver(method="grid_rk4", adjoint=True)
    with pytest.raises(ConfigError, match="step_size"):
        Solver(method="grid_rk4", step_size=0.1)


@pytest.mark.slow
def test_compiled_chunks_give_the_eager_numbers_and_gradients():
    times = torch.linspace(0, 0.9, 10)
    z0 = torch.tensor([[1.0, -0.5]])

    def run(field, chunk):
        zs = Solver(method="grid_rk4", compile_chunk=chunk).solve(field, z0, times)
        zs.square().sum().backward()
        return zs.detach(), field.lin.weight.grad.clone()

    for seed in (0, 1):  # the second model of the same structure reuses the compiled chunk
        torch.manual_seed(seed)
        field = _LinearField()
        eager = run(field, None)
        field.zero_grad()
        with torch._dynamo.config.patch(error_on_recompile=seed == 1):
            compiled = run(field, 2)  # 9 intervals: 4 compiled chunks of 2, then 1 eager step
        assert torch.allclose(eager[0], compiled[0], rtol=1e-5, atol=1e-6)
        assert torch.allclose(eager[1], compiled[1], rtol=1e-4, atol=1e-5)


class _LinearField(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, t, z):
        return self.lin(z)


# --- datasets --------------------------------------------------------------------------------------
def _windows(**kw):
    return {"train_windows": [[0, 10, 100]], **kw}


def test_damped_oscillators_are_the_papers_2d_function_and_obey_the_ode():
    ds = DampedOscillators(gamma=[0.1, 0.3], omega=[1.0, 1.2], x0=[[1.0, -5.0]], v0=[[2.9, 3.9]],
                           train_windows=[[0, 10, 1001]])
    data = ds.load()
    t = data.train.times.double()
    x = data.train.y[:, 0].double()
    paper = torch.stack([torch.exp(-0.1 * t) * (torch.cos(t) + 3 * torch.sin(t)),
                         torch.exp(-0.3 * t) * (-5 * torch.cos(1.2 * t) + 2 * torch.sin(1.2 * t))], 1)
    assert torch.allclose(x, paper, atol=1e-5)
    # the velocity is the derivative of the position (central differences)
    v = data.train.velocity[:, 0].double()
    dt = float(t[1] - t[0])
    assert torch.allclose((x[2:] - x[:-2]) / (2 * dt), v[1:-1], atol=1e-3)
    assert data.train.x.shape == (1, 2) and data.train.v0.tolist() == [[pytest.approx(2.9), pytest.approx(3.9)]]


def test_windows_noise_and_seeds():
    ds = lambda seed, noise=0.3: DampedOscillators(gamma=[0.0], omega=[1.0], x0=[[0.0]], v0=[[1.0]],  # noqa: E731
                                                   train_windows=[[0, 10, 50]], test_windows=[[10, 15, 10]],
                                                   noise=noise, seed=seed).load()
    a, b, c = ds(0), ds(0), ds(1)
    assert torch.equal(a.train.y, b.train.y) and not torch.equal(a.train.y, c.train.y)
    assert a.train.y.shape == (50, 1, 1) and a.test.y.shape == (59, 1, 1)  # t = 10 is in both windows
    assert int(a.test.observed.sum()) == 10 and a.train.observed is None
    # the test target is the clean sine, the training target the noisy one
    assert torch.allclose(a.test.y[:, 0, 0], torch.sin(a.test.times), atol=1e-6)
    assert float((a.train.y[:, 0, 0] - torch.sin(a.train.times)).std()) == pytest.approx(0.3, abs=0.1)
    clean = ds(0, noise=0.0)
    assert float(clean.train.x) == 0.0


def test_interpolation_gap_is_the_test_set():
    data = Exponential(rate=1 / 6, train_windows=[[0, 3, 15], [7, 10, 15]], test_windows=[[3, 7, 10]]).load()
    tr, te = data.train, data.test
    assert int(tr.observed.sum()) == 30 and int(te.observed.sum()) == 10
    assert float(te.times[te.observed].min()) == 3.0 and float(te.times[te.observed].max()) == 7.0
    assert torch.allclose(te.y[:, 0, 0], torch.exp(te.times / 6), rtol=1e-6)


def test_damped_oscillators_position_and_velocity():
    ds = DampedOscillators(gamma=[0.1], omega=[1.0], n_random=30, fit="position_velocity",
                           inputs="position_velocity", **_windows())
    data = ds.load()
    assert (ds.data_dim, ds.output_dim) == (2, 2)
    assert data.train.x.shape == (30, 2) and data.train.y.shape == (100, 30, 2)
    assert torch.equal(data.train.x, data.train.y[0])
    assert float(data.train.x.abs().max()) <= 2.5


def test_forced_van_der_pol_satisfies_its_equation():
    ds = ForcedVanDerPol(train_windows=[[0, 20, 201]])
    data = ds.load()
    t, x, v = data.train.times.double(), data.train.y[:, 0, 0].double(), data.train.velocity[:, 0, 0].double()
    acc = (v[2:] - v[:-2]) / (2 * 0.1)
    rhs = 8.53 * (1 - x**2) * v - x + 1.4 * torch.cos(math.pi / 5 * t)
    assert float((acc - rhs[1:-1]).abs().median()) < 0.05
    assert float(data.forcing(torch.tensor(2.5))) == pytest.approx(1.4 * math.cos(math.pi / 5 * 2.5), abs=1e-4)


def test_vdp_test_window_is_the_published_one_and_the_extension_is_separate():
    keys = yaml.safe_load((CONF / "dataset" / "vdp.yaml").read_text())
    vdp = ForcedVanDerPol(**{k: v for k, v in keys.items() if k not in ("_target_", "seed")})  # not integrated
    windows = {"train_windows": [[0, 69, 70]], "test_windows": [[70, 99, 30]],
               "extra_windows": {"extension": [[100, 199, 100]]}}
    assert (vdp.train_windows, vdp.test_windows, vdp.extra_windows) == (
        [(0, 69, 70)], [(70, 99, 30)], {"extension": [(100, 199, 100)]})
    data = Exponential(rate=0.01, **windows).load()  # the same windows on a closed-form curve
    times = data.test.times
    assert torch.equal(times, torch.arange(200, dtype=torch.float32))  # the running RMSE still sees all 200
    assert torch.equal(times[data.test.observed], torch.arange(70, 100, dtype=torch.float32))  # results.npy's
    assert torch.equal(times[data.extra["extension"].observed], torch.arange(100, 200, dtype=torch.float32))
    assert data.train.times[-1] == 69 and data.train.y.shape == (70, 1, 1)


class _Still(nn.Module):
    """dz/dt = 0: the prediction is x0 at every time (its one parameter gets a zero gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, t, z):
        return 0 * self.unused * z


def test_extra_windows_are_reported_as_named_metrics(make_cfg, tmp_path):
    """sin t from x0 = 0 predicted as 0: the test and the extra window's MSE are mean(sin² t) there."""
    cfg = make_cfg("dataset=extrapolation", "+dataset.extra_windows={far:[[15,20,11]]}", "solver=grid_rk4",
                   "train.iterations=1", "train.figures=false")
    built = build(cfg)
    built.model.dynamics = _Still()
    metrics = job.run(built, tmp_path, group="test", name="extra")
    mean_sin2 = lambda a, b, n: float((torch.sin(torch.linspace(a, b, n, dtype=torch.float64)) ** 2).mean())  # noqa: E731
    assert metrics["final"]["test_mse"] == pytest.approx(mean_sin2(10, 15, 10), rel=1e-5)
    assert metrics["final"]["far_mse"] == pytest.approx(mean_sin2(15, 20, 11), rel=1e-5)


@needs_data
def test_silverbox_loader_splits_centres_scales_and_forcing():
    ds = SystemIdentificationCSV(path=str(SILVERBOX), input_column="V1", output_column="V2", n_train=1000,
                                 n_test=5000, scale=100.0)
    data = ds.load()
    raw = np.genfromtxt(SILVERBOX, delimiter=",", skip_header=1, usecols=(0, 1), max_rows=5000)
    assert data.train.y.shape == (1000, 1, 1) and data.test.y.shape == (5000, 1, 1)
    assert int(data.test.observed.sum()) == 4000 and not bool(data.test.observed[:1000].any())
    assert abs(float(data.train.y.mean())) < 1e-5
    want = (raw[:, 1] - raw[:1000, 1].mean()) * 100
    assert np.allclose(data.test.y[:, 0, 0].numpy(), want, atol=1e-4)
    u = (raw[:, 0] - raw[:1000, 0].mean()) * 100
    assert float(data.forcing(torch.tensor(10.5))) == pytest.approx(0.5 * (u[10] + u[11]), abs=1e-5)
    assert float(data.forcing(torch.tensor(6000.0))) == 0.0
    assert data.train.v0 is None and float(data.train.x) == pytest.approx(want[0], abs=1e-5)


def test_missing_or_malformed_csv_is_a_one_line_error(tmp_path, make_cfg):
    cfg = make_cfg("dataset=silverbox", f"paths.data_dir={tmp_path}")
    with pytest.raises(ConfigError) as err:
        build(cfg)
    text = str(err.value)
    assert "\n" not in text and "dataset.path" in text and "paths.data_dir" in text
    bad = tmp_path / "bad.csv"
    bad.write_text('"V1","V2",\n0.1,0.2,\n0.3,oops,\n')
    for kwargs, match in (({"input_column": "V1", "output_column": "V3"}, "no column 'V3'"),
                          ({"input_column": "V1", "output_column": "V2"}, "complete numeric rows")):
        ds = SystemIdentificationCSV(path=str(bad), n_train=2, n_test=2, **kwargs)
        with pytest.raises(ConfigError, match=match) as err:
            ds.load()
        assert "\n" not in str(err.value) and "paths.data_dir" in str(err.value)


def test_generalised_parity():
    data = GeneralisedParity(dim=3, n_train=64, n_test=10, seed=2).load()
    assert data.train.x.shape == (64, 3) and torch.equal(data.train.y, -data.train.x)
    assert float(data.train.x.abs().max()) <= 1.0
    assert torch.equal(GeneralisedParity(dim=3, seed=2).load().test.x, GeneralisedParity(dim=3, seed=2).load().test.x)


# --- metrics -----------------------------------------------------------------------------------
def test_running_rmse_by_hand():
    pred, target = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 3.0, 0.0])
    assert np.allclose(running_rmse(pred, target, 2), [np.sqrt(2.5), np.sqrt(2.0), np.sqrt(8.0)])


def _true_2d_field(model, first_order: bool):
    g, w = torch.tensor([0.1, 0.3]), torch.tensor([1.0, 1.2])
    accel = torch.zeros(2, 4)
    accel[[0, 1], [0, 1]] = -(g**2 + w**2)
    accel[[0, 1], [2, 3]] = -2 * g
    if first_order:  # [x, v]' = [v, a]
        weight = torch.cat([torch.cat([torch.zeros(2, 2), torch.eye(2)], 1), accel])
    else:
        weight = accel
    with torch.no_grad():
        model.dynamics.net[0].weight.copy_(weight) if first_order else model.dynamics.accel.net[0].weight.copy_(weight)
        (model.dynamics.net[0] if first_order else model.dynamics.accel.net[0]).bias.zero_()


@pytest.mark.parametrize("preset,first_order", [("function_2d_sonode_given", False), ("function_2d_anode_given", True)])
def test_interpretability_error_vanishes_for_the_true_ode(make_cfg, tmp_path, preset, first_order):
    linear = ["model.field._target_=node_lab.models.FeatureField", "~model.field.time", "model.field.hidden=[]"]
    cfg = make_cfg(f"experiment=sonode/{preset}", "solver=grid_rk4", "solver.substeps=4", *linear)
    built = build(cfg)
    _true_2d_field(built.model, first_order)
    from node_lab.metrics import interpretability_error

    data = built.dataset.load()
    assert interpretability_error(built.model, data.test) < 1e-6
    with torch.no_grad():  # a wrong velocity shows
        (built.model.dynamics.net[0] if first_order else built.model.dynamics.accel.net[0]).bias.fill_(0.5)
    assert interpretability_error(built.model, data.test) > 1e-2


# --- divergence guard --------------------------------------------------------------------------
class _Blowup(nn.Module):
    """dz/dt = a·z with a = +inf until re-initialised (then 0): an injected blow-up."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float("inf")))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.a.fill_(0.0)

    def forward(self, t, z):
        return self.a * z


@pytest.mark.parametrize("restarts", [0, 2])
def test_divergence_guard_records_and_restarts(make_cfg, tmp_path, restarts):
    cfg = make_cfg("dataset=compact_parity", "solver=grid_rk4", "solver.substeps=4", "train.iterations=3",
                   "train.eval_every=1", "train.figures=false", f"train.max_restarts={restarts}")
    built = build(cfg)
    built.model.dynamics = _Blowup()
    metrics = job.run(built, tmp_path, group="test", name="blowup")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    if restarts == 0:
        assert saved["status"] == "diverged" and saved["restarts"] == []
        assert saved["reason"].startswith("iteration 1: non-finite training loss")
    else:
        assert saved["status"] == "completed" and saved["iterations"] == 3
        assert saved["restarts"] == [{"seed": 1000, "after": "iteration 1: non-finite training loss (inf)"}]
    assert metrics == saved


def test_a_finite_loss_above_max_loss_is_a_divergence(make_cfg, tmp_path):
    """dz/dt = 20 z over [0, 1] stays finite (loss ~1e14) but is a blow-up: with train.max_loss it restarts;
    the fresh initialisation (a = 0, the identity map) has the exact loss mean((x − (−x))²) = 4."""
    cfg = make_cfg("dataset=compact_parity", "solver=grid_rk4", "solver.substeps=4", "train.iterations=1",
                   "train.figures=false", "train.max_restarts=1", "train.max_loss=10")
    built = build(cfg)
    blow = _Blowup()
    with torch.no_grad():
        blow.a.fill_(20.0)
    built.model.dynamics = blow
    job.run(built, tmp_path, group="test", name="finite-blowup")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "completed"
    assert saved["restarts"][0]["seed"] == 1000
    assert saved["restarts"][0]["after"].startswith("iteration 1: training loss ")
    assert saved["restarts"][0]["after"].endswith("above train.max_loss 10")
    first = (tmp_path / "history.csv").read_text().splitlines()[1].split(",")
    assert float(first[1]) == pytest.approx(4.0)  # the loss of iteration 1, before the optimiser step


class _BlowupOnTest(nn.Module):
    """Finite while training, non-finite when evaluated: a model that explodes beyond the training window."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.0))

    def forward(self, t, z):
        return self.a * z if self.training else torch.full_like(z, float("nan"))


def test_a_non_finite_validation_metric_counts_as_divergence(make_cfg, tmp_path):
    cfg = make_cfg("dataset=compact_parity", "solver=grid_rk4", "train.iterations=3", "train.eval_every=2",
                   "train.figures=false", "train.max_restarts=0")
    built = build(cfg)
    built.model.dynamics = _BlowupOnTest()
    metrics = job.run(built, tmp_path, group="test", name="test-blowup")
    assert metrics["status"] == "diverged"
    assert metrics["reason"].startswith("iteration 2: non-finite val mse")


def test_step_cap_ends_a_stiff_run(make_cfg, tmp_path):
    cfg = make_cfg("dataset=compact_parity", "solver.max_num_steps=5", "train.iterations=2", "train.figures=false")
    built = build(cfg)
    blow = _Blowup()
    with torch.no_grad():
        blow.a.fill_(60.0)
    built.model.dynamics = blow
    metrics = job.run(built, tmp_path, group="test", name="stiff")
    assert metrics["status"] == "diverged" and "max_num_steps" in metrics["reason"]


# --- presets -------------------------------------------------------------------------------------
PRESETS = [o for o in options("experiment") if o.startswith("sonode/")]
FAST = ["solver.compile_chunk=null", "dataset.n_test=1100"]  # keeps the forced system-ID presets quick
# the MNIST GPU presets run through their CPU overlay, shrunk to a few images
MNIST_TINY = ["+experiment/sonode=mnist_quick", "train.epochs=null", "dataset.n_train=16", "dataset.n_test=8",
              "train.batch_size=8", "train.eval_batch_size=4"]


def test_every_experiment_has_its_presets():
    names = {p.split("/")[1].rsplit("_", 1)[0] for p in PRESETS}
    for exp in ("compact_parity", "nested_spheres", "generalised_parity", "function_2d", "double_function",
                "interpolation", "extrapolation", "damped_oscillators", "vdp", "f16", "silverbox", "mnist"):
        assert any(n.startswith(exp) for n in names), exp


def test_paper_parameter_counts(make_cfg):
    want = {"compact_parity_node": 481, "compact_parity_anode": 522, "compact_parity_sonode": 292,
            "nested_spheres_node": 525, "nested_spheres_anode": 567, "nested_spheres_sonode": 1087,
            "function_2d_anode_given": 604, "function_2d_sonode_given": 562, "function_2d_anode1_zero": 183,
            "damped_oscillators_node": 522, "damped_oscillators_anode": 563, "damped_oscillators_sonode": 501,
            "silverbox_sonode": 7, "silverbox_anode": 12, "f16_sonode": 6, "f16_anode": 10,
            "vdp_sonode": 6, "vdp_anode": 10,
            "mnist_node": 208_266, "mnist_anode": 210_626, "mnist_sonode": 283_658}  # the spec's MNIST counts
    for preset, n in want.items():
        model = build(make_cfg(f"experiment=sonode/{preset}", "device=cpu")).model
        assert sum(p.numel() for p in model.parameters()) == n, preset


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_a_few_iterations(make_cfg, tmp_path, preset):
    extra = FAST if any(k in preset for k in ("silverbox", "f16")) else []
    if "mnist" in preset:
        extra = MNIST_TINY[1:] if preset == "sonode/mnist_quick" else MNIST_TINY
    cfg = make_cfg(f"experiment={preset}", "train.iterations=2", "train.eval_every=1", *extra)
    metrics = job.run(build(cfg), tmp_path, group="test", name=preset.replace("/", "_"))
    assert metrics["status"] in ("completed", "diverged")
    assert metrics["iterations"] == 2 or metrics["restarts"]
    for name in ("metrics.json", "history.csv", "loss.png"):
        assert (tmp_path / name).is_file(), name
    if "silverbox" in preset or "f16" in preset or "vdp" in preset:
        assert (tmp_path / "running_rmse.png").is_file()
    if "given" in preset or "learned" in preset:
        assert (tmp_path / "velocity.png").is_file() and "interpretability_error" in metrics["final"]


def test_published_rows_are_well_formed():
    entries = yaml.safe_load((REPO / "node_lab" / "published" / "sonode.yaml").read_text())
    rows = [r for r in entries if "claim" not in r]  # claims beside the numbers: tests/test_verdicts.py
    assert rows and all({"study", "row", "metric", "value", "source", "notes"} <= set(r) for r in rows)
    parity = {r["row"] for r in rows if r["study"] == "sonode/generalised_parity"}
    assert {"NODE D=1", "ANODE(D) D=10", "SONODE D=5"} <= parity
    assert (CONF / "experiment" / "sonode").is_dir()


# --- MNIST (exp. 12): schedule, crops, batched evaluation, the conv SONODE ------------------------
def test_multistep_schedule_by_hand_and_resumed():
    from node_lab.optim import MultiStep, set_epoch_length

    w = nn.Parameter(torch.zeros(1))
    sgd = lambda params: torch.optim.SGD(params, lr=1.0)  # noqa: E731
    opt = MultiStep([w], sgd, milestones=[2, 3], gamma=0.1, unit="epoch")
    set_epoch_length(opt, 2)
    set_epoch_length(torch.optim.SGD([w], lr=1.0), 2)  # a no-op for plain optimisers
    lrs = []
    for _ in range(8):
        w.grad = torch.ones(1)
        opt.step(lambda: torch.zeros(()))
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    assert float(w.detach()) == pytest.approx(-sum(lrs))  # plain SGD with unit gradients took the scheduled steps
    resumed = MultiStep([nn.Parameter(torch.zeros(1))], sgd, milestones=[2, 3], gamma=0.1, unit="epoch")
    resumed.load_state_dict(opt.state_dict())
    set_epoch_length(resumed, 2)
    resumed.param_groups[0]["params"][0].grad = torch.ones(1)
    resumed.step(lambda: torch.zeros(()))
    assert resumed.param_groups[0]["lr"] == pytest.approx(0.01)
    per_iteration = MultiStep([w], sgd, milestones=[1], gamma=0.5, unit="iteration")
    w.grad = torch.ones(1)
    per_iteration.step(lambda: torch.zeros(()))
    per_iteration.step(lambda: torch.zeros(()))
    assert per_iteration.param_groups[0]["lr"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="milestones"):
        MultiStep([w], sgd, milestones=[100, 60])


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    from node_lab.datasets.images import RandomCrop

    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4) + 1
    out = RandomCrop(2)(x, torch.Generator().manual_seed(0))
    rows, cols = torch.randint(0, 5, (2, 2, 1), generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    assert out.shape == x.shape
    for b in range(2):
        r, c = int(rows[b]), int(cols[b])
        assert torch.equal(out[b], padded[b, :, r : r + 5, c : c + 4])
    assert torch.equal(RandomCrop(0)(x, torch.Generator()), x)


def test_batched_evaluation_gives_the_whole_split_numbers(make_cfg):
    from node_lab.loop import evaluate

    built = build(make_cfg("dataset=nested_spheres", "solver=rk4"))
    data = built.dataset.load()
    whole = evaluate(built.model, data, data.test, built.t0, built.t1)
    batched = evaluate(built.model, data, data.test, built.t0, built.t1, batch_size=7)
    assert batched["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert batched["metric"] == pytest.approx(whole["metric"], rel=1e-6)


def test_conv_sonode_velocity_is_the_field_block_at_t0_and_acceleration_sees_v_only(make_cfg):
    model = build(make_cfg("experiment=sonode/mnist_sonode", "device=cpu")).model
    velocity_block, accel = model.velocity.net, model.dynamics.accel
    assert type(velocity_block.field) is type(accel)  # the same block, its own weights
    assert not {id(p) for p in velocity_block.parameters()} & {id(p) for p in accel.parameters()}
    x = torch.randn(3, 64, 6, 6)
    assert torch.equal(velocity_block(x), velocity_block.field(torch.tensor(0.0), x))
    z = torch.randn(3, 128, 6, 6)
    moved = z.clone()
    moved[:, :64] += 5.0  # another position, the same velocity
    t = torch.tensor(0.3)
    out, out_moved = model.dynamics(t, z), model.dynamics(t, moved)
    assert torch.equal(out[:, :64], z[:, 64:])  # dx/dt = v
    assert torch.equal(out[:, 64:], out_moved[:, 64:])  # dv/dt = f(t, v)


def test_new_options_at_their_neutral_values_keep_earlier_config_hashes(make_cfg):
    built = build(make_cfg("dataset=mnist", "model=odenet"))
    before = dict(built.config)  # a config as written before the two options existed
    before["train"] = {k: v for k, v in before["train"].items() if k != "eval_batch_size"}
    before["dataset"] = {k: v for k, v in before["dataset"].items() if k != "random_crop_padding"}
    old = Built(**{**built.__dict__, "config": before})
    assert old.config_hash == built.config_hash
    for used in ("train.eval_batch_size=100", "dataset.random_crop_padding=4"):
        assert build(make_cfg("dataset=mnist", "model=odenet", used)).config_hash != old.config_hash
