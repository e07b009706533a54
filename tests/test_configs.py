"""Contracts: every YAML of every group composes and instantiates (a new YAML is tested for free)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONF, REPO, options

from node_lab.build import build
from node_lab.errors import ConfigError

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_"))
# conf/hydra/ holds launcher presets, not job options: tests/test_report.py runs those launchers.
CASES = [(g, o) for g in GROUPS if g != "hydra" for o in options(g)]
# A study's rows are experiment presets in a folder beside the study preset (experiment/<study>/<row>.yaml,
# each including experiment/<study>.yaml); its sweep preset sweeps that folder as a config group.
ROWS = [o for o in options("experiment") if (CONF / "experiment" / f"{Path(o).parent}.yaml").is_file()]


def _sweep_params(option: str) -> dict:
    """The hydra.sweeper.params an experiment preset's own file sets (inherited ones are its parent's)."""
    node = (yaml.safe_load((CONF / "experiment" / f"{option}.yaml").read_text()) or {}).get("hydra") or {}
    return (node.get("sweeper") or {}).get("params") or {}


SWEEPS = {o: params for o in options("experiment") if (params := _sweep_params(o))}
# Options that need image data (conv fields, conv encoders) are built on MNIST.
NEEDS_IMAGES = {("model", "conv_node"), ("model", "odenet")}
# Image datasets are built with an image model (the default MLP field cannot take images: a preflight error).
NEEDS_IMAGE_MODEL = {("dataset", "mnist"), ("dataset", "cifar10"), ("dataset", "svhn")}
# Stochastic models fit trajectories; SDE solvers (solver/sde_*.yaml) integrate stochastic models.
NEEDS_TRAJECTORIES = {("model", "nsde")}
NEEDS_SDE_MODEL = {("solver", o) for o in options("solver") if o.startswith("sde_")}


def _build_or_expected_error(cfg):
    """Build; presets for a GPU or for data that is not on this machine must stop with one line."""
    try:
        return build(cfg)
    except ConfigError as err:
        text = err.message()
        assert "\n" not in text
        if "CUDA is not available" in text and not torch.cuda.is_available():
            return None
        if "dataset.root" in text and " data here" in text:
            return None
        raise


def test_groups_are_the_product_surface():
    for group in ("model", "dataset", "solver", "augmentation", "steer", "device", "optim", "logger", "train"):
        assert group in GROUPS, group


def _pair(group: str, option: str) -> list[str]:
    """The model, dataset (and optimiser) whose specialisation ``option`` of ``group`` is."""
    names = [(m, d) for m in options("model") for d in options("dataset")]
    if group == "model_dataset":
        found = [[f"model={m}", f"dataset={d}"] for m, d in names if f"{m}_{d}" == option]
    else:
        found = [[f"model={m}", f"dataset={d}", f"optim={o}"] for m, d in names for o in options("optim")
                 if f"{m}_{d}_{o}" == option]
    assert len(found) == 1, f"{group}/{option}.yaml names no existing <model>_<dataset> pair"
    return found[0]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_builds(make_cfg, group, option):
    if group == "hparams_search" and not _has("hydra_plugins.hydra_optuna_sweeper"):
        from hydra.errors import MissingConfigException

        from node_lab.cli import describe_error

        with pytest.raises(MissingConfigException) as err:  # optional extra not installed: a clear hint
            make_cfg(f"{group}={option}")
        assert 'pip install "node-lab[optuna]"' in describe_error(err.value, [], None)
        return
    extra = ["dataset=mnist"] if (group, option) in NEEDS_IMAGES else []
    extra += ["model=conv_node"] if (group, option) in NEEDS_IMAGE_MODEL else []
    extra += ["dataset=extrapolation"] if (group, option) in NEEDS_TRAJECTORIES else []
    extra += ["model=nsde", "dataset=extrapolation"] if (group, option) in NEEDS_SDE_MODEL else []
    selection = [f"{group}={option}"]
    if group in ("model_dataset", "model_dataset_optim"):  # chosen by its pair, never on its own
        selection = _pair(group, option)
    cfg = make_cfg(*selection, *extra)
    if group == "device" and option == "cuda" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            build(cfg)
        return
    built = _build_or_expected_error(cfg)
    if built is not None:
        assert built.model is not None and built.solver is not None


@pytest.mark.parametrize("row", ROWS)
def test_every_study_row_is_labelled(make_cfg, row):
    cfg = make_cfg(f"experiment={row}")
    assert cfg.report.study and cfg.report.row, f"{row} must set report.row (its study preset sets report.study)"


@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_sweep_presets_reach_their_rows(make_cfg, sweep):
    """A preset chosen with experiment=… cannot sweep `experiment` (the command line's experiment=… replaces the
    swept key, and the sweep silently runs the preset alone): rows are swept as +experiment/<study>=<row>."""
    for key, value in SWEEPS[sweep].items():
        assert key.split("@")[0].lstrip("+~") != "experiment", f"{sweep}: sweep +experiment/<study>, not {key}"
        if key.startswith("+experiment/"):
            folder = key[len("+experiment/"):]
            for row in str(value).split(","):
                job = make_cfg(f"experiment={sweep}", f"{key}={row}")
                assert job.report.row == make_cfg(f"experiment={folder}/{row}").report.row, (sweep, row)


@pytest.mark.parametrize("option", options("solver"))
def test_every_solver_yaml_builds_what_it_declares(make_cfg, option):
    """The YAML's keys are the truth (a preset such as dopri5_compiled is not named after its method);
    SDE methods (torchsde names, files prefixed sde_) build with a stochastic model."""
    sde = option.startswith("sde_")
    cfg = make_cfg(f"solver={option}", *(["model=nsde", "dataset=extrapolation"] if sde else []))
    solver = build(cfg).solver
    assert solver.method == cfg.solver.method
    if sde:
        assert option == f"sde_{solver.method}"
        return
    assert solver.backend == cfg.solver.get("backend", "torchdiffeq")
    assert solver.compile == cfg.solver.get("compile", False)


@pytest.mark.parametrize("option", options("dataset"))
def test_dataset_contract(make_cfg, option):
    images = option in ("mnist", "cifar10", "svhn")  # a conv model, and small subsets
    extra = ["model=conv_node", "model.field.num_filters=4", "dataset.n_train=32", "dataset.n_test=8"] if images else []
    # a fixed-step solver: an untrained field over a 5000-sample record may be too stiff for dopri5
    built = _build_or_expected_error(make_cfg(f"dataset={option}", "solver=grid_rk4", *extra))
    if built is None:
        return
    data = built.dataset.load()
    assert data.task == built.dataset.task
    assert data.data_dim == built.dataset.data_dim and data.output_dim == built.dataset.output_dim
    assert data.val is not None, f"dataset={option} has no validation split"
    for split in (data.train, data.val, data.test):
        assert split.x.shape[1] == data.data_dim
        if split.times is not None:  # trajectory: (T, B, out)
            assert split.y.shape == (len(split.times), len(split), data.output_dim)
        else:
            assert split.y.shape[0] == len(split)
    # the model maps the data to outputs of the right shape
    times = data.test.times if data.test.times is not None else torch.tensor([built.t0, built.t1])
    dtype = next(built.model.parameters()).dtype  # datasets may deliver float64; the job casts
    v0 = None if data.test.v0 is None else data.test.v0.to(dtype)
    out = built.model(data.test.x.to(dtype), times.to(dtype), v0)
    assert out.shape == (len(times), len(data.test), data.output_dim)


VAL_DRAWN = [("nested_spheres", "dataset.n_val=7"), ("generalised_parity", "dataset.n_val=7"),
             ("spring", "dataset.n_val=3")]
VAL_WINDOW = ["sine", "sine_curve", "damped_oscillators", "extrapolation", "interpolation"]


@pytest.mark.parametrize("option,change", VAL_DRAWN, ids=[o for o, _ in VAL_DRAWN])
def test_validation_split_has_its_own_stream(make_cfg, option, change):
    """Generated problems draw validation from their own random stream: sizing it leaves train and
    test as they were (the draws of the version before validation splits existed)."""
    base = build(make_cfg(f"dataset={option}")).dataset.load()
    other = build(make_cfg(f"dataset={option}", change)).dataset.load()
    for name in ("train", "test"):
        assert torch.equal(getattr(base, name).y, getattr(other, name).y), name
        assert torch.equal(getattr(base, name).x, getattr(other, name).x), name
    assert not torch.equal(base.val.x[:3], base.train.x[:3]) and len(other.val) != len(base.val)


@pytest.mark.parametrize("option", VAL_WINDOW)
def test_trajectory_validation_reobserves_the_training_window(make_cfg, option):
    """Trajectory tasks validate on the training window (``val_windows`` null) observed with a fresh
    noise draw: the same times, other noise, and without noise the clean curve."""
    data = build(make_cfg(f"dataset={option}", "dataset.noise=0.1")).dataset.load()
    assert torch.equal(data.val.times, data.train.times) and data.val.y.shape == data.train.y.shape
    assert not torch.equal(data.val.y, data.train.y)
    assert (data.val.y - data.train.y).abs().max() < 1.0  # both are the curve plus noise of std 0.1


def test_image_validation_is_held_out_of_the_training_file(make_cfg):
    built = _build_or_expected_error(make_cfg("dataset=mnist", "model=conv_node", "dataset.n_train=50",
                                              "dataset.n_test=20", "dataset.n_val=30"))
    if built is None:
        pytest.skip("no MNIST data here")
    data = built.dataset.load()
    assert len(data.train) == 50 and len(data.val) == 30 and len(data.test) == 20
    train_file = torch.cat([data.train.x, data.val.x])
    assert not any(torch.equal(v, t) for v in data.val.x[:5] for t in data.train.x)  # disjoint images
    assert train_file.shape[1:] == (1, 28, 28)
    from node_lab.job import load_data

    with pytest.raises(ConfigError, match="dataset.n_train=60000: with n_val=30 held out"):
        load_data(build(make_cfg("dataset=mnist", "model=conv_node", "dataset.n_train=60000", "dataset.n_val=30")))


def test_model_yaml_anode_turns_on_augmentation(make_cfg):
    assert build(make_cfg("model=anode")).augmentation.dim == 1
    assert build(make_cfg("model=anode", "augmentation.dim=5")).model.state_dim == 2 + 5
    assert build(make_cfg("model=node")).augmentation.dim == 0


def test_every_group_ships_in_the_wheel():
    pyproject = (REPO / "pyproject.toml").read_text()
    folders = {str(p.parent.relative_to(CONF)).replace("/", ".") for p in CONF.rglob("*.yaml")} - {"."}
    for group in folders:
        assert f'"node_lab.conf.{group}"' in pyproject, f"add node_lab.conf.{group} to pyproject's packages"
