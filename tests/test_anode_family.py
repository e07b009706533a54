"""The ANODE-family suite: image loaders, encoders/heads, conv fields, optimiser phases, the
seed-001 second-order model, the ResNet baseline, and the study presets running a few iterations."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA

from node_lab import job
from node_lab.augmentation import InputLayerAugmentation, ZeroAugmentation
from node_lab.build import build
from node_lab.errors import ConfigError
from node_lab.models import ConvField, DiscreteResNet, FirstOrderODE, MLPField, SecondOrderODE
from node_lab.models.layers import ConvHead, ConvStem, Dense
from node_lab.optim import Phases
from node_lab.solvers import Solver

DATA = Path(os.environ.get("NODE_LAB_DATA", SHARED_DATA))
HAS_MNIST = (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason="MNIST not under NODE_LAB_DATA (../shared/data)")


def _partial(cls, **kw):
    return lambda **dims: cls(**dims, **kw)


def _model(cls=FirstOrderODE, *, data_dim=2, output_dim=1, p=0, aug=ZeroAugmentation, **kw):
    kw.setdefault("field", _partial(MLPField, hidden=[8]))
    return cls(data_dim=data_dim, output_dim=output_dim, solver=Solver("rk4", step_size=0.25),
               augmentation=aug(p), **kw)


# --- loaders -----------------------------------------------------------------------------------
@needs_mnist
def test_mnist_first_subset_matches_torchvision(make_cfg):
    import torchvision

    cfg = make_cfg("dataset=mnist", "model=conv_node", "dataset.n_train=1000", "dataset.n_test=1000")
    data = build(cfg).dataset.load()
    assert data.train.x.shape == (1000, 1, 28, 28) and data.test.x.shape == (1000, 1, 28, 28)
    assert data.train.y.dtype == torch.long and data.loss == "cross_entropy" and data.output_dim == 10
    assert 0.0 <= float(data.train.x.min()) and float(data.train.x.max()) <= 1.0
    reference = torchvision.datasets.MNIST(str(DATA), train=False, download=False)
    image, label = reference[0]  # a PIL image: the first test image, a 7
    assert label == 7 == int(data.test.y[0])
    pixels = torch.as_tensor(list(image.getdata()), dtype=torch.uint8).view(28, 28)
    assert torch.equal((data.test.x[0, 0] * 255).round().to(torch.uint8), pixels)


@needs_mnist
def test_mnist_random_subset_and_standardisation(make_cfg):
    cfg = make_cfg("dataset=mnist", "model=conv_node", "dataset.n_train=500", "dataset.n_test=100",
                   "dataset.subset=random", "dataset.normalize=standard")
    data = build(cfg).dataset.load()
    assert data.train.x.shape[0] == 500 and data.test.x.shape[0] == 100
    assert abs(float(data.train.x.mean())) < 1e-4 and abs(float(data.train.x.std()) - 1.0) < 1e-3
    again = build(cfg).dataset.load()
    assert torch.equal(data.train.y, again.train.y)  # the seed fixes the subset


def test_missing_image_data_is_one_line_error(make_cfg, tmp_path):
    for name in ("mnist", "cifar10", "svhn"):
        with pytest.raises(ConfigError) as err:
            build(make_cfg(f"dataset={name}", f"paths.data_dir={tmp_path}"))
        text = err.value.message()
        assert text.startswith("dataset.root=") and "paths.data_dir" in text and "\n" not in text


# --- shapes: augmentation, encoders, readout ---------------------------------------------------
def test_input_layer_augmentation_shapes_vectors_and_images():
    x = torch.randn(4, 3)
    assert InputLayerAugmentation(5).module(3)(x).shape == (4, 8)
    images = torch.randn(4, 3, 6, 6)
    assert InputLayerAugmentation(2).module(3)(images).shape == (4, 5, 6, 6)
    assert ZeroAugmentation(2).module(3)(images)[:, 3:].abs().sum() == 0


def test_input_layer_with_encoder_widens_the_encoder():
    """IL-ANODE with a Dense encoder: h0 = tanh(W x) ∈ R^{20+p} (the seed-001 IL rows), no second layer."""
    enc = _partial(Dense, out_dim=20, activation="tanh")
    model = _model(data_dim=784, output_dim=10, p=10, aug=InputLayerAugmentation, encoder=enc,
                   readout={"dims": "data", "head": "linear"})
    assert model.encoder.linear.out_features == 30 and isinstance(model.initial, torch.nn.Identity)
    assert model.state_dim == 30 and model.head.in_features == 20
    z0 = model.initial_state(model.encoder(torch.randn(5, 784)), None)
    assert z0.shape == (5, 30) and z0[:, 20:].abs().sum() > 0  # learned, not zero, extra dims
    zero = _model(data_dim=784, output_dim=10, p=10, encoder=enc)
    assert zero.encoder.linear.out_features == 20 and zero.state_dim == 30


def test_readout_selects_data_or_all_dims():
    for dims, width in (("data", 2), ("all", 5)):
        model = _model(p=3, readout={"dims": dims, "head": "linear"})
        assert model.head.in_features == width
        zs = torch.arange(2 * 4 * 5, dtype=torch.float32).view(2, 4, 5)
        assert torch.equal(model.read(zs), zs[:, :, :width])
    out = _model(p=3, readout={"dims": "data", "head": "linear"})(torch.randn(4, 2), torch.tensor([0.0, 1.0]))
    assert out.shape == (2, 4, 1)


def test_image_model_with_conv_stem_field_and_head():
    model = _model(data_dim=1, output_dim=10, data_shape=(1, 28, 28), encoder=_partial(ConvStem, width=8, groups=4),
                   field=_partial(ConvField, num_filters=6),
                   readout={"dims": "all", "head": _partial(ConvHead, groups=4)})
    assert model.spatial == (6, 6) and model.state_dim == 8
    out = model(torch.rand(3, 1, 28, 28), torch.tensor([0.0, 1.0]))
    assert out.shape == (2, 3, 10)


def test_dupont_parameter_counts():
    """Dupont et al.'s matched MNIST ConvODENets: 84,395 vs 84,816 parameters without the time
    channel (the paper's counts), 85,316 vs 85,462 with it (the shipped configs)."""
    counts = {}
    for time in ("none", "concat"):
        for filters, p in ((92, 0), (64, 5)):
            model = _model(data_dim=1, output_dim=10, p=p, data_shape=(1, 28, 28),
                           field=_partial(ConvField, num_filters=filters, time=time), readout={"dims": "all"})
            counts[time, filters] = sum(q.numel() for q in model.parameters())
    assert counts == {("none", 92): 84395, ("none", 64): 84816, ("concat", 92): 85316, ("concat", 64): 85462}


# --- second-order split, ResNet -----------------------------------------------------------------
def test_second_order_split_position_and_velocity():
    """Seed 001's second-order NODE: Dense(784 → 80) = [x0 (40), v0 (40)], acceleration of x only,
    readout of the 40 positions."""
    model = _model(SecondOrderODE, data_dim=784, output_dim=10, encoder=_partial(Dense, out_dim=80, activation="tanh"),
                   field=_partial(MLPField, hidden=[20, 20], activation="tanh"), inputs="x", init_velocity="split",
                   readout={"dims": "data", "head": "linear"})
    assert model.data_dim == 40 and model.state_dim == 40 and model.head.in_features == 40
    assert model.dynamics.accel.net[0].in_features == 40
    encoded = torch.randn(3, 80)
    z0 = model.initial_state(encoded, None)
    assert torch.equal(z0, encoded)  # [position, velocity] = [first 40, last 40]
    times = torch.tensor([0.0, 1.0])
    zs = model.trajectory(torch.randn(3, 784), times)
    assert torch.equal(model.read(zs), zs[:, :, :40])  # positions, not the velocity block
    with pytest.raises(ConfigError, match="split"):
        _model(SecondOrderODE, data_dim=3, init_velocity="split")


def test_resnet_baseline_is_residual_blocks():
    model = _model(DiscreteResNet, p=1, num_layers=3, readout={"dims": "all", "head": "identity"}, output_dim=3)
    assert model.solver.nfe == 0
    x = torch.randn(4, 2)
    z = torch.cat([x, torch.zeros(4, 1)], 1)
    for i, block in enumerate(model.dynamics):
        z = z + block(torch.tensor(i / 3), z)
    out = model(x, torch.tensor([0.0, 1.0]))
    assert torch.allclose(out[-1], z) and torch.equal(out[0], torch.cat([x, torch.zeros(4, 1)], 1))
    assert model.solver.nfe == 0


# --- optimiser phases ----------------------------------------------------------------------------
def test_phases_switch_from_adam_to_lbfgs_and_solve_a_quadratic():
    """Adam for 2 steps, then L-BFGS: L-BFGS minimises a convex quadratic to machine precision."""
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -1.0], dtype=torch.float64)

    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ a @ w - b @ w
        loss.backward()
        return loss

    opt = Phases([w], [{"optimizer": lambda p: torch.optim.Adam(p, lr=0.1), "iterations": 2},
                       {"optimizer": lambda p: torch.optim.LBFGS(p, line_search_fn="strong_wolfe"),
                        "iterations": None}])
    kinds = []
    for _ in range(4):
        kinds.append(opt.phase)
        closure()
        opt.step(closure)
    assert kinds == ["Adam", "Adam", "LBFGS", "LBFGS"]
    assert torch.allclose(w.detach(), torch.linalg.solve(a, b), atol=1e-8)
    state = opt.state_dict()
    fresh = Phases([w], [{"optimizer": lambda p: torch.optim.Adam(p), "iterations": 2},
                         {"optimizer": lambda p: torch.optim.LBFGS(p), "iterations": None}])
    fresh.load_state_dict(state)
    assert fresh.phase == "LBFGS" and fresh.steps == 4


def test_phases_reject_a_phase_that_never_runs(make_cfg):
    with pytest.raises(ConfigError, match="train.iterations"):
        build(make_cfg("experiment=anode/sinusoid", "train.iterations=1000"))


def test_lbfgs_phase_history_is_continuous(make_cfg, tmp_path):
    cfg = make_cfg("experiment=anode/sinusoid", "augmentation.dim=2", "optim.phases.0.iterations=3",
                   "train.iterations=5", "train.eval_every=1", "train.figures=false", "dataset.n_points=20",
                   "optim.phases.1.optimizer.max_iter=3")
    built = build(cfg)
    metrics = job.run(built, tmp_path, group="test", name="phases")
    assert metrics["status"] == "completed"
    with (tmp_path / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [r["phase"] for r in rows] == ["Adam"] * 3 + ["LBFGS"] * 2
    assert all(float(r["loss"]) > 0 for r in rows)


# --- presets run a few iterations ----------------------------------------------------------------
PRESET_RUNS = [
    ("anode/sinusoid", ["optim.phases.0.iterations=2", "train.iterations=3", "dataset.n_points=20"]),
    ("anode/circles", ["train.epochs=1", "train.batch_size=512", "dataset.n_train=1024", "dataset.n_test=64",
                       "augmentation.dim=2"]),
    ("anode/dupont_flip/resnet", ["train.iterations=3"]),
    ("anode/dupont_spheres/anode", ["train.epochs=1", "dataset.n_train=128", "dataset.n_test=32"]),
]
MNIST_ROWS = ["node", "anode_p10", "il_anode_p10", "steer_b02", "second_order"]


def _short_run(make_cfg, tmp_path, *overrides):
    metrics = job.run(build(make_cfg(*overrides, "train.figures=false")), tmp_path, group="test", name="preset")
    assert metrics["status"] == "completed" and metrics["iterations"] > 0
    return metrics


@pytest.mark.parametrize("preset,overrides", PRESET_RUNS, ids=[p for p, _ in PRESET_RUNS])
def test_study_presets_run(make_cfg, tmp_path, preset, overrides):
    _short_run(make_cfg, tmp_path, f"experiment={preset}", *overrides)


@needs_mnist
@pytest.mark.parametrize("row", MNIST_ROWS)
def test_seed001_mnist_rows_run(make_cfg, tmp_path, row):
    metrics = _short_run(make_cfg, tmp_path, f"experiment=anode/mnist_seed001/{row}",
                         "train.iterations=2", "dataset.n_test=200")
    assert 0.0 <= metrics["final"]["test_accuracy"] <= 1.0
    assert metrics["best"]["iteration"] in (1, 2)  # evaluated after every iteration


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("row", ["node", "anode"])
def test_dupont_mnist_quick_runs_on_cpu(make_cfg, tmp_path, row):
    _short_run(make_cfg, tmp_path, f"experiment=anode/dupont_mnist_quick/{row}",
               "train.iterations=1", "train.batch_size=8", "dataset.n_test=16", "solver.rtol=0.1", "solver.atol=0.1")


def test_sonode_on_images_with_conv_velocity_and_velocity_only_acceleration():
    """The SONODE-paper MNIST shape: conv initial velocity, acceleration of v only, conv field."""
    from node_lab.models.fields import GroupNormConvField
    from node_lab.models.layers import Conv

    model = _model(SecondOrderODE, data_dim=1, output_dim=10, p=3, data_shape=(1, 8, 8), inputs="v",
                   field=_partial(GroupNormConvField, groups=2), velocity_net=_partial(Conv, kernel_size=3),
                   readout={"dims": "all", "head": "linear"})
    x = torch.rand(2, 1, 8, 8)
    z0 = model.initial_state(x, None)
    assert z0.shape == (2, 8, 8, 8) and z0[:, 1:4].abs().sum() == 0  # zero augmented positions
    assert model(x, torch.tensor([0.0, 1.0])).shape == (2, 2, 10)


# --- seed-001 protocol details: Glorot init, epoch-ordered batches ----------------------------------
def test_glorot_init_gives_xavier_bounds_and_zero_biases(make_cfg):
    built = build(make_cfg("experiment=anode/mnist_seed001", "model.init=glorot", "logger=none"))
    layers = [m for m in built.model.modules() if isinstance(m, torch.nn.Linear)]
    assert layers
    for layer in layers:
        fan_out, fan_in = layer.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.5 * bound
        assert torch.count_nonzero(layer.bias) == 0


def test_model_init_rejects_an_unknown_scheme(make_cfg):
    from node_lab.errors import ConfigError

    with pytest.raises(ConfigError, match="model.init.*glorot"):
        build(make_cfg("model.init=xavier", "logger=none"))


def test_epoch_batches_visit_every_sample_once_per_epoch():
    from node_lab.loop import epoch_batches

    batches = epoch_batches(10, 3, seed=0)
    epochs = [[next(batches) for _ in range(3)] for _ in range(2)]  # 3 full batches, the 10th sample dropped
    for epoch in epochs:
        seen = torch.cat(epoch)
        assert len(seen) == 9 and len(set(seen.tolist())) == 9
    assert not torch.equal(torch.cat(epochs[0]), torch.cat(epochs[1]))  # a fresh permutation each epoch
    resumed = epoch_batches(10, 3, seed=0, start=4)  # iteration 5 = the second batch of epoch 1
    assert all(torch.equal(next(resumed), b) for b in epochs[1][1:])
    assert torch.equal(next(epoch_batches(5, None, seed=0)), torch.arange(5))
    assert len(next(epoch_batches(4, 8, seed=0))) == 4  # one short batch is kept
