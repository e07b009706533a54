"""The command line: one real training subprocess, one tiny sweep, help, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    assert "iter 5/5 loss" in (run_dir / "train.log").read_text()  # the iteration lines, without a TTY too
    assert (run_dir / "env.json").is_file() and (run_dir / "wandb_id.txt").is_file()
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
    assert "| configuration |" in proc.stdout and "augmentation.dim=1" in proc.stdout  # the sweep prints its table
    assert f"summary: {sweep / 'summary.md'}" in proc.stdout


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
    (["solver.method=dopr5"], "solver.method=dopr5", "valid: dopri5"),  # closest first
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


# --- the README holds what the tool does ------------------------------------------------------------
README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_summary() -> list[str]:
    text = README.read_text()
    block = text[text.index("A run ends with a summary"):]
    block = block[block.index("```\n") + 4:]
    return block[:block.index("```")].strip().splitlines()


@pytest.mark.slow
def test_readme_summary_is_what_the_default_job_prints(make_cfg, tmp_path):
    """The README's example is a fresh default run (seed 0): every line but the wall time and run dir."""
    from node_lab import job
    from node_lab.build import build

    metrics = job.run(build(make_cfg("train.figures=false")), tmp_path, group="t", name="readme")
    printed = cli.summary_text(metrics).splitlines()
    readme = _readme_summary()
    assert [line.split()[0] for line in readme] == [line.split()[0] for line in printed]
    for ours, theirs in zip(printed, readme):
        if not ours.startswith(("wall time", "run dir")):
            assert ours == theirs


def _readme_groups() -> dict[str, set[str]]:
    text = README.read_text()
    table = text[text.index("## Config groups"):]
    rows = {}
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| `"))
    for line in lines[start:]:
        if not line.startswith("| `"):
            break
        cells = line.split(" | ")
        rows[cells[0].strip("| `")] = set(re.findall(r"`([^`]+)`", cells[1]))
    return rows


def test_readme_group_table_matches_conf():
    """Every config group and every option of it is in the README's table (patterns for the folders of presets)."""
    from conftest import CONF, options

    rows = _readme_groups()
    groups = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__"))
    assert sorted(rows) == groups
    for group in groups:
        if group in ("experiment", "model_dataset", "model_dataset_optim"):
            assert all(o.startswith(("<", "anode", "sonode", "physics", "node_")) or o in options(group)
                       for o in rows[group] if "/" not in o or "<" in o), group
            continue
        listed = {o.split(" ")[0] for o in rows[group]} & set(options(group)) | ({"logger=[wandb,tensorboard]"}
                                                                                 & rows[group])
        assert set(options(group)) <= listed, (group, set(options(group)) - listed)


def test_debug_presets(make_cfg, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from node_lab import job
    from node_lab.build import build

    GlobalHydra.instance().clear()
    with initialize_config_module("node_lab.conf", version_base="1.3"):
        fast = build(compose("config", overrides=cli.quote_choices(["debug=fast"])))  # the default logger is wandb
    GlobalHydra.instance().clear()
    assert fast.loop.iterations == 3 and not fast.job.figures and fast.logger.describe() == "none"
    assert fast.tags == ["debug"]
    metrics = job.run(fast, tmp_path / "fast", group="t", name="fast")
    assert metrics["status"] == "completed" and metrics["iterations"] == 3
    assert not list((tmp_path / "fast").glob("*.png"))
    overfit = build(make_cfg("debug=overfit", "train.iterations=60", "train.eval_every=20", "train.figures=false"))
    metrics = job.run(overfit, tmp_path / "overfit", group="t", name="overfit")
    assert metrics["final"]["train_accuracy"] == metrics["final"]["val_accuracy"]  # validated on the 8 it trains on
    nan = build(make_cfg("debug=nan", "train.iterations=2", "train.figures=false"))
    assert nan.job.detect_anomaly
    seen = []
    original = job.fit

    def fit(*args, **kwargs):
        seen.append(torch.is_anomaly_enabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(job, "fit", fit)
    job.run(nan, tmp_path / "nan", group="t", name="nan")
    assert seen == [True] and not torch.is_anomaly_enabled()  # on during training, off afterwards


def test_env_json_records_what_reproduces_the_run(make_cfg, tmp_path):
    from node_lab import job
    from node_lab.build import build

    job.run(build(make_cfg("debug=fast")), tmp_path, group="t", name="env")
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["packages"]["torch"] == torch.__version__.split("+")[0] or env["packages"]["torch"]
    assert {"git_commit", "git_dirty", "device", "threads", "command", "python"} <= set(env)
    assert set(env["packages"]) >= {"torch", "torchdiffeq", "hydra-core", "node-lab"}
    assert env["threads"] == torch.get_num_threads()


@pytest.mark.slow
def test_bash_tab_completion_lists_models(tmp_path):
    script = _node_lab("train", "--shell-completion", "install=bash", cwd=tmp_path).stdout
    assert "complete -o nospace -o default -F hydra_bash_completion node-lab" in script
    bin_dir = str(Path(NODE_LAB).parent)
    line = "node-lab train model="
    probe = (f'export PATH="{bin_dir}:$PATH"; {script}\nCOMP_LINE="{line}"; COMP_POINT={len(line)}; '
             'COMP_WORDS=(node-lab train model=); COMP_CWORD=2; hydra_bash_completion; echo "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "WANDB_SILENT": "true"})
    for model in ("model=node", "model=sonode", "model=lnn"):
        assert model in out.stdout, out.stdout + out.stderr
    commands = subprocess.run([NODE_LAB, "-sc", "query=bash"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COMP_LINE": "node-lab ev"}).stdout
    assert commands.split() == ["eval"]


def test_progress_bar_on_a_terminal_shows_loss_validation_metric_and_nfe(make_cfg, tmp_path, monkeypatch):
    """At a TTY the bar's postfix carries the loss, the latest validation metric and NFE fwd/bwd."""
    import io

    from node_lab import job
    from node_lab.build import build

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    metrics = job.run(build(make_cfg("train.iterations=6", "train.eval_every=3", "train.figures=false")),
                      tmp_path, group="t", name="bar")
    text = screen.getvalue()
    assert "train: 100%" in text and "6/6" in text
    last = text.replace("\r", "\n").strip().splitlines()[-1]
    val = json.loads((tmp_path / "metrics.json").read_text())["last"]["val_accuracy"]
    assert f"val_accuracy={val:.4g}" in last and "loss=" in last
    import csv

    row = list(csv.DictReader((tmp_path / "history.csv").open()))[-1]
    assert f"nfe={row['nfe_forward']}/{row['nfe_backward']}" in last and metrics["status"] == "completed"
