"""Shared fixtures: compose configs through Hydra's compose API, outputs under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from node_lab.cli import quote_choices

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests read local data only: the team's shared data folder when it is there.
if SHARED_DATA.is_dir():
    os.environ.setdefault("NODE_LAB_DATA", str(SHARED_DATA))
os.environ.pop("WANDB_MODE", None)  # tests choose the W&B mode explicitly
os.environ.setdefault("WANDB_SILENT", "true")


def options(group: str) -> list[str]:
    """The choices of a config group: its YAML files, subfolders included (``anode/mnist_seed001``)."""
    return sorted(str(p.relative_to(CONF / group).with_suffix("")) for p in (CONF / group).rglob("*.yaml"))


@pytest.fixture
def make_cfg():
    """make_cfg(*overrides) → composed DictConfig (logger off unless overridden)."""

    def _make(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_module("node_lab.conf", version_base="1.3"):
            return compose("config", overrides=quote_choices(["logger=none", *overrides]))

    yield _make
    GlobalHydra.instance().clear()
