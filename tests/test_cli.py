"""The command line: one real training subprocess, one tiny sweep, help, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from node_lab import cli

NODE_LAB = shutil.which("node-lab") or str(__import__("pathlib").Path(sys.executable).parent / "node-lab")


def _node_lab(*args, cwd, env=None):
    full_env = {**os.environ, "WANDB_SILENT": "true", **(env or {})}
    full_env.pop("WANDB_MODE", None)
    return subprocess.run([NODE_LAB, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_train_subprocess_leaves_complete_run_dir_with_wandb_offline(tmp_path):
    run_dir = tmp_path / "run"
    proc = _node_lab("train", "logger.wandb.mode=offline", "train.iterations=5", "train.eval_every=5",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for field in ("final", "best", "NFE / iter", "wall time", "parameters", "run dir"):
        assert field in out
    for name in ("metrics.json", "history.csv", "last.pt", "best.pt", "loss.png", "predictions.png", "train.log",
                 ".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb")), "no W&B offline run"
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    assert not (tmp_path / "wandb").exists()  # W&B writes inside the run directory only


@pytest.mark.slow
def test_two_job_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _node_lab("train", "-m", "augmentation.dim=0,1", "train.iterations=3", "logger=none",
                     "train.figures=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    dims = []
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        dims.append(metrics["params"])
    assert dims[0] < dims[1]  # the augmented job has the larger field
    assert (sweep / "multirun.yaml").is_file()


@pytest.mark.slow
def test_default_runs_land_in_distinct_dirs(tmp_path):
    for _ in range(2):
        proc = _node_lab("train", "logger=none", "train.iterations=1", "train.figures=false", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "outputs").glob("*/*/metrics.json"))) == 2


@pytest.mark.slow
def test_bad_override_exits_nonzero_with_one_line_and_no_outputs(tmp_path):
    proc = _node_lab("train", "augmentation.dimm=3", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "augmentation.dimm" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.slow
def test_train_help_lists_groups(tmp_path):
    proc = _node_lab("train", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    for group in ("model", "dataset", "solver", "augmentation", "steer", "device"):
        assert f"{group}:" in proc.stdout
    assert "sonode" in proc.stdout


BAD = [
    (["augmentation.dimm=3"], "augmentation.dimm=3", "valid: dim"),
    (["solver.rtl=1e-3"], "solver.rtl=1e-3", "did you mean solver.rtol?"),
    (["solver.compile_chunck=3"], "solver.compile_chunck=3", "solver.compile_chunk is a key of solver=grid_euler|"),
    (["model=sonod"], "model=sonod", "sonode"),
    (["augmentation.dim=-1"], "augmentation.dim=-1", "must be >= 0"),
    (["steer=uniform", "steer.b=1.5"], "steer.b=1.5", "0 < b < T - t0"),
    (["solver.method=foo"], "solver.method=foo", "valid: dopri8"),
    (["model.readout.dims=velocity"], "model.readout.dims=velocity", "valid: data, all"),
    (["dataset=sine", "steer=uniform"], "steer=uniform", "valid: off"),
    (["-m", "augmentation.dim=0,1,x"], "augmentation.dim=x", "must be an integer"),
    (["augmentation=none", "augmentation.dim=2"], "augmentation.dim=2", "augmentation=zeros"),
    (["device=cuda"] if not __import__("torch").cuda.is_available() else ["device.name=gpu"], "device.name", "valid:"),
    (["bogus"], "bogus", ""),
]


@pytest.mark.parametrize("args,key,hint", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_one_line(capsys, monkeypatch, tmp_path, args, key, hint):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert cli.main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("node-lab: error: ") and "\n" not in err, err
    assert key in err and hint in err, err
    assert not (tmp_path / "outputs").exists()


def test_unknown_command(capsys):
    assert cli.main(["trian"]) == 2
    assert "valid: train" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["reproduce", "--profil", "quick"], ["report"], ["ensemble", "--bogus", "x"]])
def test_subcommand_bad_flag_one_line_no_prefix_matching(capsys, monkeypatch, tmp_path, args):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("node-lab: error: ") and "\n" not in err and f"node-lab {args[0]} --help" in err, err
    assert not (tmp_path / "outputs").exists()
