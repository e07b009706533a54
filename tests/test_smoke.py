"""Smoke: every model × augmentation × steer trains a few iterations and leaves a complete run dir."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from node_lab import job
from node_lab.build import build
from node_lab.errors import ConfigError

MODELS = ["node", "anode", "sonode"]
AUGMENTATIONS = ["none", "zeros", "input_layer"]
STEERS = ["off", "uniform"]
COMBOS = [(m, a, s) for m in MODELS for a in AUGMENTATIONS for s in STEERS]


def _run(cfg, run_dir):
    return job.run(build(cfg), run_dir, group="test", name=run_dir.name)


@pytest.mark.parametrize("model,aug,steer", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_combination_trains(make_cfg, tmp_path, model, aug, steer):
    overrides = [f"model={model}", f"augmentation={aug}", f"steer={steer}", "train.iterations=2",
                 "train.eval_every=1", "train.figures=false", "dataset.n_train=16", "dataset.n_test=8"]
    if aug != "none" and model != "anode":
        overrides.append("augmentation.dim=2")
    cfg = make_cfg(*overrides)
    if model == "anode" and aug == "none":  # ANODE's dim 1 contradicts "no augmentation": refused, not ignored
        with pytest.raises(ConfigError, match="augmentation.dim"):
            build(cfg)
        return
    metrics = _run(cfg, tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["iterations"] == 2
    assert metrics["nfe_forward"]["total"] > 0
    assert 0.0 <= metrics["final"]["test_accuracy"] <= 1.0
    with (tmp_path / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    if steer == "uniform":
        assert all(abs(float(r["end_time"]) - 1.0) < 0.1 for r in rows)
        assert any(float(r["end_time"]) != 1.0 for r in rows)


def test_run_directory_contents(make_cfg, tmp_path):
    metrics = _run(make_cfg("train.iterations=4", "train.eval_every=2"), tmp_path)
    for name in ("metrics.json", "history.csv", "last.pt", "best.pt", "loss.png", "predictions.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("status", "final", "best", "last", "selected", "nfe_forward", "nfe_backward", "wall_time", "params",
                "seed"):
        assert key in saved
    for split in ("train", "val", "test"):
        assert 0.0 <= saved["final"][f"{split}_accuracy"] <= 1.0 and f"{split}_loss" in saved["final"]
    assert saved["best"]["iteration"] in (2, 4) and "val_accuracy" in saved["best"]
    assert saved["last"]["iteration"] == 4 and {"val_accuracy", "test_accuracy"} <= set(saved["last"])
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert {"model", "optimizer", "progress", "config"} <= set(ckpt)
    assert ckpt["config"]["model"]["_target_"] == "node_lab.models.FirstOrderODE"
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["iteration"] == saved["best"]["iteration"] and best["val_accuracy"] == saved["best"]["val_accuracy"]


@pytest.mark.parametrize("dataset,model", [("sine", "sonode"), ("compact_parity", "anode")])
def test_other_tasks_make_figures(make_cfg, tmp_path, dataset, model):
    metrics = _run(make_cfg(f"dataset={dataset}", f"model={model}", "train.iterations=3"), tmp_path)
    assert metrics["status"] == "completed" and metrics["metric"] == "mse"
    assert (tmp_path / "predictions.png").is_file()


def test_resume_continues_the_same_run(make_cfg, tmp_path):
    common = ["dataset.n_train=32", "train.batch_size=8", "train.eval_every=2", "train.figures=false"]
    straight = _run(make_cfg(*common, "train.iterations=6"), tmp_path / "straight")
    _run(make_cfg(*common, "train.iterations=3"), tmp_path / "first")
    resumed = _run(make_cfg(*common, "train.iterations=6", f"train.resume_from={tmp_path / 'first'}",
                            "train.resume_override=[train.iterations]"),
                   tmp_path / "second")
    assert resumed["iterations"] == 6
    with (tmp_path / "second" / "history.csv").open() as f:
        second = list(csv.DictReader(f))
    with (tmp_path / "straight" / "history.csv").open() as f:
        reference = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in second] == list(range(1, 7))  # one continuous history
    assert [r["loss"] for r in second] == [r["loss"] for r in reference]  # bit-identical continuation
    assert resumed["final"] == straight["final"]


def test_diverging_run_reports_status(make_cfg, tmp_path):
    metrics = _run(make_cfg("optim.lr=1e6", "train.iterations=30", "solver.max_num_steps=50",
                            "train.figures=false"), tmp_path)
    assert metrics["status"] == "diverged"
    assert metrics["reason"].startswith("iteration ")
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


def test_batch_size_larger_than_data_is_refused(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size"):
        _run(make_cfg("dataset.n_train=10", "train.batch_size=64"), tmp_path)


# Natural model x dataset pairs, with the defaults they bring (conf/model_dataset/): a few iterations each.
PHYSICS = ["spring", "pendulum", "two_body", "double_pendulum"]
TRAJECTORIES = ["sine", "damped_oscillators", "double_function", "function_2d", "interpolation", "extrapolation", "vdp"]
NATURAL = ([(m, d) for m in ("hnn", "hinn", "lnn", "node", "sonode_qv") for d in PHYSICS]
           + [(m, d) for m in ("sonode", "node", "anode") for d in TRAJECTORIES]
           + [(m, d) for m in ("node", "anode", "sonode", "resnet") for d in ("nested_spheres", "circles",
                                                                           "generalised_parity", "compact_parity")]
           + [("sonode", "silverbox"), ("anode", "f16"), ("conv_node", "mnist"), ("odenet", "mnist")])
SMALL = {"physics": ["dataset.n_train=3", "dataset.n_val=2", "dataset.n_test=2", "dataset.test_t_end=1.0",
                     "solver=rk4", "solver.step_size=0.1"],  # a fixed grid: an untrained LNN's rollout is stiff
         "images": ["dataset.n_train=16", "dataset.n_val=8", "dataset.n_test=8", "train.batch_size=8",
                    "solver=rk4", "solver.step_size=0.5"],
         "systems": ["solver=grid_rk4"]}


HEAVY = {"vdp", "mnist", "two_body"}  # data generated at rtol 1e-10, images, 8-dim orbits: several seconds each
NATURAL_CASES = [pytest.param(m, d, id=f"{m}-{d}", marks=[pytest.mark.slow] if d in HEAVY else [])
                 for m, d in NATURAL]


@pytest.mark.parametrize("model,dataset", NATURAL_CASES)
def test_natural_pair_trains_with_its_defaults(make_cfg, tmp_path, model, dataset):
    from conftest import SHARED_DATA

    kind = ("physics" if dataset in PHYSICS else "images" if dataset == "mnist"
            else "systems" if dataset in ("silverbox", "f16") else None)
    if kind in ("images", "systems") and not SHARED_DATA.is_dir():
        pytest.skip("no data files here")
    overrides = [f"model={model}", f"dataset={dataset}", "train.iterations=2", "train.eval_every=2",
                 "train.figures=false", *SMALL.get(kind, [])]
    if model == "conv_node":
        overrides.append("model.field.num_filters=4")
    cfg = make_cfg(*overrides)
    if model in ("hnn", "lnn") and dataset in PHYSICS:
        assert cfg.train.mode == "derivatives"  # the pair's own default (conf/model_dataset/)
    if model == "hinn":
        assert cfg.train.mode == "steps"
    metrics = _run(cfg, tmp_path)
    assert metrics["status"] == "completed", metrics["reason"]
    assert metrics["iterations"] == 2 and metrics["final"]
