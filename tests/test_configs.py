"""Contracts: every YAML of every group composes and instantiates (a new YAML is tested for free)."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF, REPO, options

from node_lab.build import build
from node_lab.errors import ConfigError

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_"))
CASES = [(g, o) for g in GROUPS for o in options(g)]


def test_groups_are_the_product_surface():
    for group in ("model", "dataset", "solver", "augmentation", "steer", "device", "optim", "logger", "train"):
        assert group in GROUPS, group


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_builds(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}", "train.iterations=1")
    if group == "device" and option == "cuda" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            build(cfg)
        return
    built = build(cfg)
    assert built.model is not None and built.solver is not None


@pytest.mark.parametrize("option", options("solver"))
def test_every_solver_yaml_names_its_method(make_cfg, option):
    assert build(make_cfg(f"solver={option}")).solver.method == option


@pytest.mark.parametrize("option", options("dataset"))
def test_dataset_contract(make_cfg, option):
    # a fixed-step solver: an untrained field over a 5000-sample record may be too stiff for dopri5
    built = build(make_cfg(f"dataset={option}", "solver=grid_rk4"))
    data = built.dataset.load()
    assert data.task == built.dataset.task
    assert data.data_dim == built.dataset.data_dim and data.output_dim == built.dataset.output_dim
    for split in (data.train, data.test):
        assert split.x.shape[1] == data.data_dim
        if split.times is not None:  # trajectory: (T, B, out)
            assert split.y.shape == (len(split.times), len(split), data.output_dim)
        else:
            assert split.y.shape[0] == len(split)
    # the model maps the data to outputs of the right shape
    times = data.test.times if data.test.times is not None else torch.tensor([built.t0, built.t1])
    out = built.model(data.test.x, times, data.test.v0)
    assert out.shape == (len(times), len(data.test), data.output_dim)


def test_model_yaml_anode_turns_on_augmentation(make_cfg):
    assert build(make_cfg("model=anode")).augmentation.dim == 1
    assert build(make_cfg("model=anode", "augmentation.dim=5")).model.state_dim == 2 + 5
    assert build(make_cfg("model=node")).augmentation.dim == 0


def test_every_group_ships_in_the_wheel():
    pyproject = (REPO / "pyproject.toml").read_text()
    for group in GROUPS:
        assert f'"node_lab.conf.{group}"' in pyproject, f"add node_lab.conf.{group} to pyproject's packages"
