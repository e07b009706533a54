"""The run lifecycle: model selection on validation, best.pt / last.pt, what the summary reports."""

from __future__ import annotations

import pytest
import torch

from node_lab import cli, job, loop
from node_lab.build import build
from node_lab.report.rundirs import read_job

# Adam at lr 0.3 on generalised parity (rk4): the validation MSE is best at iteration 6, 10x worse at 8
UNSTABLE = ["dataset=generalised_parity", "dataset.n_val=5", "dataset.n_test=7", "optim.lr=0.3", "solver=rk4",
            "solver.step_size=0.25", "train.iterations=8", "train.eval_every=1", "train.figures=false"]


def _run(make_cfg, tmp_path, *overrides):
    return job.run(build(make_cfg(*UNSTABLE, *overrides)), tmp_path, group="test", name=tmp_path.name)


def test_training_evaluates_the_validation_split_only(make_cfg, tmp_path, monkeypatch):
    seen = []
    original = loop.evaluate

    def evaluate(model, data, split, *args, **kwargs):
        seen.append(len(split))
        return original(model, data, split, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate)
    _run(make_cfg, tmp_path)
    assert seen == [5] * 8  # every evaluation during training is on the 5 validation points, never the 7 test ones


def test_best_on_validation_is_selected_and_the_last_reported_beside_it(make_cfg, tmp_path):
    metrics = _run(make_cfg, tmp_path)
    best, last, final = metrics["best"], metrics["last"], metrics["final"]
    assert best["iteration"] == 6 and last["iteration"] == 8 and metrics["selected"] == {"checkpoint": "best",
                                                                                          "iteration": 6}
    assert final["val_mse"] == best["val_mse"] < last["val_mse"]  # final = the best.pt model, re-evaluated
    saved = torch.load(tmp_path / "best.pt", weights_only=False)
    assert saved["iteration"] == 6 and saved["val_mse"] == best["val_mse"]
    assert torch.load(tmp_path / "last.pt", weights_only=False)["progress"]["iteration"] == 8
    text = cli.summary_text(metrics)
    assert "selected    best.pt, iteration 6 of 8" in text
    assert f"best        val mse {best['val_mse']:.4g} at iteration 6" in text
    warning = [line for line in text.splitlines() if line.startswith("warning")]
    assert len(warning) == 1 and "much worse than the best" in warning[0] and "reported: best.pt" in warning[0]


def test_select_last_reports_the_last_model_and_warns(make_cfg, tmp_path):
    metrics = _run(make_cfg, tmp_path, "train.select=last")
    assert metrics["selected"] == {"checkpoint": "last", "iteration": 8}
    assert metrics["final"]["val_mse"] == metrics["last"]["val_mse"] > metrics["best"]["val_mse"]
    assert "train.select=best reports best.pt" in cli.summary_text(metrics)


def test_accuracy_ties_go_to_the_lower_validation_loss():
    progress = loop.Progress(best=0.75, best_iteration=2, best_loss=0.5)
    assert loop.improves(progress, 0.75, 0.4, 1.0) and not loop.improves(progress, 0.75, 0.6, 1.0)
    assert loop.improves(progress, 0.8, 9.0, 1.0) and not loop.improves(progress, 0.7, 0.1, 1.0)


def test_bad_select_is_one_line(make_cfg):
    from node_lab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.select=first: unknown choice; valid: best, last"):
        build(make_cfg("train.select=first"))


def test_reports_read_the_new_schema(make_cfg, tmp_path):
    _run(make_cfg, tmp_path)
    run = read_job(tmp_path)
    assert run.value("final.val_mse") == run.value("best.val_mse") and run.value("final.test_mse") is not None


# --- eval and load_run ------------------------------------------------------------------------------
EVAL_CASES = {
    "classifier": ["train.iterations=4", "train.eval_every=2", "dataset.n_train=32", "dataset.n_val=16",
                   "dataset.n_test=24"],
    "sonode_sine": ["dataset=sine", "model=sonode", "train.iterations=3", "train.eval_every=1"],
    "hnn_spring": ["experiment=physics/spring", "train.iterations=3", "train.eval_every=3", "dataset.n_train=4",
                   "dataset.n_test=3", "dataset.n_val=2", "dataset.test_t_end=2.0", "solver.rtol=1e-7",
                   "solver.atol=1e-7"],
    "tiny_mnist": ["dataset=mnist", "model=conv_node", "model.field.num_filters=4", "dataset.n_train=32",
                   "dataset.n_val=16", "dataset.n_test=16", "train.iterations=2", "train.batch_size=16",
                   "solver=rk4", "solver.step_size=0.5"],
}


def _trained(make_cfg, run_dir, overrides):
    from conftest import SHARED_DATA

    if "dataset=mnist" in overrides and not (SHARED_DATA / "MNIST").is_dir():
        pytest.skip("no MNIST data here")
    return job.run(build(make_cfg(*overrides, "train.figures=false")), run_dir, group="test", name=run_dir.name)


@pytest.mark.parametrize("case", sorted(EVAL_CASES))
def test_eval_reproduces_the_runs_test_metric(make_cfg, tmp_path, case):
    from node_lab.runs import evaluate_run

    metrics = _trained(make_cfg, tmp_path, EVAL_CASES[case])
    assert metrics["status"] == "completed"
    name = metrics["metric"]
    result = evaluate_run(tmp_path, figures=False)
    assert result["final"][f"test_{name}"] == metrics["final"][f"test_{name}"]  # exactly, on the CPU
    assert result["final"][f"val_{name}"] == metrics["final"][f"val_{name}"]
    assert result["checkpoint"] == f"{metrics['selected']['checkpoint']}.pt"
    assert (tmp_path / "eval.json").is_file()
    if "physics" in metrics:
        assert result["physics"]["energy_mse"] == metrics["physics"]["energy_mse"]


def test_eval_at_a_tighter_tolerance(make_cfg, tmp_path):
    from node_lab.runs import evaluate_run, load_run

    metrics = _trained(make_cfg, tmp_path, EVAL_CASES["classifier"])
    overrides = ["solver.rtol=1e-6", "solver.atol=1e-6"]
    result = evaluate_run(tmp_path, overrides=overrides)
    assert result["overrides"] == overrides and result["recorded"]["test_accuracy"] == metrics["final"]["test_accuracy"]
    out = tmp_path / "eval" / "solver.rtol=1e-6,solver.atol=1e-6"
    assert (out / "eval.json").is_file() and (out / "predictions.png").is_file()
    assert not (tmp_path / "eval.json").exists()  # an overridden eval never overwrites the run's own files
    solver = load_run(tmp_path, overrides=overrides).built.solver
    assert (solver.rtol, solver.atol) == (1e-6, 1e-6)
    # the tighter solve changes the test loss a little, not the trained model
    assert result["final"]["test_loss"] == pytest.approx(metrics["final"]["test_loss"], rel=0.05)


@pytest.mark.parametrize("args,key", [
    (["model.field.hidden=[32,32]"], "model.field.hidden=[32,32]: changes the trained model"),
    (["augmentation.dim=2"], "augmentation.dim=2: changes the trained model"),
    (["solver.rtl=1e-6"], "solver.rtl=1e-6: unknown key in 'solver'"),
    (["ckpt=first"], "ckpt=first: unknown checkpoint; valid: best, last"),
])
def test_eval_refuses_in_one_line(make_cfg, tmp_path, capsys, monkeypatch, args, key):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    _trained(make_cfg, tmp_path, EVAL_CASES["classifier"])
    assert cli.main(["eval", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("node-lab: error: ") and "\n" not in err and key in err, err


def test_eval_of_a_directory_without_a_run_is_one_line(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no best.pt" in err and "not a finished run" in err, err


def test_load_run_predicts_and_carries_config_and_metrics(make_cfg, tmp_path):
    import node_lab

    metrics = _trained(make_cfg, tmp_path, EVAL_CASES["classifier"])
    run = node_lab.load_run(tmp_path)
    test = run.data().test
    assert run.predict(test.x).shape == (24, 1)
    assert run.predict(test.x, times=torch.linspace(0, 1, 5)).shape == (5, 24, 1)
    assert run.config["dataset"]["n_test"] == 24 and run.metrics["final"] == metrics["final"]
    accuracy = float((torch.sign(run.predict(test.x)) == torch.sign(test.y)).float().mean())
    assert accuracy == metrics["final"]["test_accuracy"]
    assert not run.model.training and run.checkpoint.name == "best.pt"


def test_load_runs_of_a_sweep_and_a_trajectory_run(make_cfg, tmp_path):
    import node_lab

    for seed in (0, 1):
        _trained(make_cfg, tmp_path / "sweep" / str(seed), [*EVAL_CASES["sonode_sine"], f"seed={seed}"])
    runs = node_lab.load_runs(tmp_path / "sweep")
    assert [r.path.name for r in runs] == ["0", "1"] and [r.config["seed"] for r in runs] == [0, 1]
    test = runs[0].data().test
    assert runs[0].predict(test.x).shape == (len(test.times), 1, 1)  # the whole test grid of the trajectory


def test_a_previous_version_run_directory_still_loads_and_evaluates(make_cfg, tmp_path):
    """Run directories before best.pt/last.pt held one checkpoint.pt (the last model) and best.test_*."""
    import json

    from node_lab.report.summary import summarise
    from node_lab.runs import evaluate_run, load_run

    metrics = _trained(make_cfg, tmp_path, EVAL_CASES["classifier"])
    (tmp_path / "last.pt").rename(tmp_path / "checkpoint.pt")
    (tmp_path / "best.pt").unlink()
    old = {**metrics, "final": {k: v for k, v in metrics["last"].items() if k.startswith("test_")},
           "best": {"test_accuracy": 1.0, "iteration": 2}}
    for key in ("selected", "last"):
        old.pop(key)
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    run = load_run(tmp_path)
    assert run.checkpoint.name == "checkpoint.pt"
    assert evaluate_run(tmp_path, figures=False)["final"]["test_accuracy"] == metrics["last"]["test_accuracy"]
    assert summarise(tmp_path)["jobs"] == 1


def test_resume_from_a_run_of_another_model_is_one_line(make_cfg, tmp_path):
    from node_lab.errors import ConfigError

    _trained(make_cfg, tmp_path / "first", EVAL_CASES["classifier"])
    cfg = make_cfg(*EVAL_CASES["classifier"], "model.field.hidden=[8]", f"train.resume_from={tmp_path / 'first'}")
    with pytest.raises(ConfigError, match=r"^train.resume_from=.*model.field.hidden: \[20, 20\] -> \[8\]") as err:
        job.run(build(cfg), tmp_path / "second", group="test", name="second")
    assert "\n" not in err.value.message()
    allowed = make_cfg(*EVAL_CASES["classifier"], "model.field.hidden=[8]", f"train.resume_from={tmp_path / 'first'}",
                       "train.resume_override=[model.field.hidden]")  # allowed, but the weights cannot fit
    with pytest.raises(ConfigError, match=r"^train.resume_from=.*has another shape than this config") as err:
        job.run(build(allowed), tmp_path / "third", group="test", name="third")
    assert "\n" not in err.value.message()


def test_resume_from_another_directory_brings_its_best_model(make_cfg, tmp_path):
    _run(make_cfg, tmp_path / "first", "train.iterations=7")
    assert torch.load(tmp_path / "first" / "best.pt", weights_only=False)["iteration"] == 6
    resumed = _run(make_cfg, tmp_path / "second", f"train.resume_from={tmp_path / 'first'}",
                   "train.resume_override=[train.iterations]")
    straight = _run(make_cfg, tmp_path / "straight")
    assert resumed["selected"] == straight["selected"] == {"checkpoint": "best", "iteration": 6}
    assert resumed["final"] == straight["final"]
