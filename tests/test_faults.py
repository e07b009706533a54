"""The fault catalogue: bad input, broken files, clashes and interruptions, tried the way a hostile but fair
user would. Every case ends in one line naming the key or path, exit non-zero, no traceback, and nothing of
the user's lost or half-written.

Groups: typos, unknown options, values, combinations, presets, environment, data files (all caught before a
run starts, in-process through ``cli.main``), and the run-time faults below them (run directories, locks,
resume, interruption, writes).
"""

from __future__ import annotations

import pytest
import torch

from node_lab import cli

GROUPS = ["model", "dataset", "solver", "augmentation", "steer", "device", "optim", "logger", "train"]

# (arguments, text the one line must contain besides the key, which is the first override named)
TYPOS = [
    *[([f"+{group}.bogus_key=1"], f"{group}.bogus_key=1") for group in GROUPS if group not in ("train",)],
    (["+train.bogus_key=1"], "train.bogus_key=1"),
    (["augmentation.dimm=3"], "did you mean augmentation.dim?"),
    (["solver.rtl=1e-3"], "did you mean solver.rtol?"),
    (["solver.atoll=1e-3"], "did you mean solver.atol?"),
    (["optim.learning_rate=0.1"], "optim.learning_rate"),
    (["train.iteratons=5"], "did you mean train.iterations?"),
    (["train.max_los=3"], "did you mean train.max_loss?"),
    (["model.fild.hidden=[3]"], "model.fild"),
    (["model.field.hiden=[3]"], "did you mean model.field.hidden?"),
    (["+model.field.foo=1"], "not a parameter of node_lab.models.MLPField"),
    (["model=sonode", "+model.foo=1"], "SecondOrderODE"),
    (["model=hnn", "dataset=spring", "+model.foo=1"], "HamiltonianODE"),
    (["model=lnn", "dataset=spring", "+model.foo=1"], "LagrangianODE"),
    (["model=hinn", "dataset=spring", "+model.foo=1"], "HamiltonianResNet"),
    (["model=resnet", "+model.foo=1"], "DiscreteResNet"),
    (["model=hnn", "dataset=spring", "+model.hamiltonian.foo=2"], "model.hamiltonian.foo=2"),
    (["model.field._target_=node_lab.models.ConvField"], "model.field.hidden"),
    (["+optim.foo=1"], "not a parameter of torch.optim.Adam"),
    (["optim=adam_lbfgs", "+optim.phases.0.foo=1"], "optim.phases[0].foo"),
    (["+steer.foo=1"], "takes no keys"),
    (["+foo=1"], "unknown top-level key"),
    (["+sed=3"], "did you mean seed?"),
    (["+lr=0.1"], "e.g. optim.lr"),
    (["solver.compile_chunck=3"], "solver.compile_chunk is a key of solver=grid_euler|"),
    (["solver.substep=2"], "solver.substeps is a key of solver="),
    (["dataset.noise=-1"], "dataset.noise is a key of dataset="),
    (["model.readout.dimz=data"], "did you mean model.readout.dims?"),
    (["+model.readout.bogus=1"], "unknown readout key"),
    (["device.thread=1"], "did you mean device.threads?"),
    (["logger.wandb.projet=x"], "did you mean logger.wandb.project?"),
    (["bogus"], ""),
]

OPTIONS = [
    (["model=sonod"], "fix: model=sonode"),
    (["model=nde"], "fix: model=node"),
    (["model=xyz"], "ls conf/model"),
    (["dataset=mnst"], "fix: dataset=mnist"),
    (["dataset=nested_sphere"], "fix: dataset=nested_spheres"),
    (["solver=dopri"], "fix: solver=dopri5"),
    (["solver=rk5"], "solver=rk4"),
    (["augmentation=zero"], "fix: augmentation=zeros"),
    (["steer=uniformm"], "fix: steer=uniform"),
    (["device=cpuu"], "fix: device=cpu"),
    (["optim=adamw"], "fix: optim=adam"),
    (["logger=wandbb"], "fix: logger=wandb"),
    (["train=defualt"], "fix: train=default"),
    (["experiment=anode_sphere"], "fix: experiment=anode_spheres"),
    (["experiment=sonode/compact_parity"], "experiment=sonode/compact_parity_node"),
    (["experiment=sonode/silverbox"], "sonode/silverbox_anode"),
    (["experiment=anode/dupont_flp/node"], "fix: experiment=anode/dupont_flip/node"),
    (["experiment=nope/x"], "ls conf/experiment"),
    (["+experiment/sonode=nope"], "ls conf/experiment/sonode"),
    (["solver.method=dopr5"], "valid: dopri5"),
    (["model.readout.dims=velocity"], "valid: data, all"),
    (["model.readout.head=linar"], "linear"),
    (["model.field.activation=rellu"], "valid: relu"),
    (["model.field.time=concatt"], "valid: concat"),
    (["model.init=xavier"], "valid: torch, glorot, cranmer"),
    (["model=sonode", "model.init_velocity=learnd"], "valid: learned"),
    (["model=sonode", "model.inputs=vx"], "valid:"),
    (["device.dtype=float16"], "valid: float"),
    (["train.mode=derivative"], "valid: derivatives"),
    (["train.loss=l2"], "valid: l1"),
    (["logger=wandb", "logger.wandb.mode=ofline"], "fix: logger.wandb.mode=offline"),
    (["dataset=mnist", "model=odenet", "dataset.subset=frist"], "valid: first"),
    (["dataset=mnist", "model=odenet", "dataset.normalize=std"], "valid: standard"),
    (["model=lnn", "dataset=spring", "model.singular=inverse"], "valid: pinv, damping"),
]

NUMERIC = {  # key (with the overrides it needs) → bad values
    ("solver.rtol", ()): ["nan", "inf", "-1", "0", "abc"],
    ("solver.atol", ()): ["nan", "-inf", "-1e-3"],
    ("solver.max_num_steps", ()): ["0", "1.5", "nan"],
    ("optim.lr", ()): ["nan", "inf", "0", "-0.1", "abc"],
    ("optim.weight_decay", ()): ["-1", "inf"],
    ("train.iterations", ()): ["0", "-5", "1.5", "abc"],
    ("train.eval_every", ()): ["0", "nan"],
    ("train.log_every", ()): ["0"],
    ("train.batch_size", ()): ["0", "-1", "2.5"],
    ("train.max_restarts", ()): ["-1"],
    ("train.max_loss", ()): ["0", "nan", "-1"],
    ("augmentation.dim", ()): ["-1", "abc", "1.5"],
    ("steer.b", ("steer=uniform",)): ["1.5", "0", "nan"],
    ("device.threads", ()): ["0", "-2"],
    ("dataset.n_train", ()): ["0", "abc"],
    ("dataset.dim", ()): ["0", "nan"],
    ("seed", ()): ["-1", "abc", "1.5", "99999999999999999999999"],
    ("logger.init_timeout", ("logger=wandb",)): ["0", "nan"],
    ("solver.step_size", ("solver=rk4",)): ["0", "-0.1", "nan"],
    ("optim.momentum", ("optim=sgd",)): ["-0.5"],
    ("dataset.noise", ("dataset=sine",)): ["-1", "nan"],
    ("model.field.hidden", ()): ["5", "[a]", "[0]", "[20,inf]"],
}
VALUES = [([*extra, f"{key}={value}"], key) for (key, extra), values in NUMERIC.items() for value in values]

COMBINATIONS = [
    (["model=conv_node"], "cannot take the data of NestedSpheres"),
    (["model=odenet"], "cannot take the data"),
    (["model=conv_node", "dataset=spring"], "cannot take the data"),
    (["model=resnet", "dataset=spring"], "end-state tasks"),
    (["model=resnet", "dataset=sine"], "end-state tasks"),
    (["dataset=sine", "steer=uniform"], "valid: off"),
    (["dataset=sine", "solver.t1=2"], "trajectory task"),
    (["solver.t0=1", "solver.t1=0.5"], "must be greater than"),
    (["steer=uniform", "steer.b=1.5"], "0 < b < T - t0"),
    (["augmentation=none", "augmentation.dim=2"], "augmentation=zeros"),
    (["model=hnn", "dataset=compact_parity"], "even number of data dims"),
    (["model=sonode", "model.init_velocity=given"], "has no known velocity"),
    (["train.mode=derivatives"], "not a trajectory task"),
    (["dataset=silverbox", "train.mode=derivatives"], "has no known time derivatives"),
    (["dataset=spring", "augmentation.dim=1", "train.mode=derivatives"], "is not the data"),
    (["dataset=mnist", "model=odenet", "train.loss=l1"], "trains with cross_entropy"),
    (["train.epochs=3"], "set exactly one of train.iterations and train.epochs"),
    (["solver=rk4", "solver.step_size=null"], "needs a step"),
    (["solver.step_size=0.1"], "is adaptive and takes no step_size"),
    (["solver=grid_rk4", "solver.adjoint=true"], "backprop through its steps"),
    (["solver=leapfrog", "solver.step_size=0.1", "solver.adjoint=true"], "has no adjoint"),
    (["dataset=compact_parity", "solver=leapfrog", "solver.step_size=0.1"], "even size"),
    (["solver.substeps=2"], "solver.substeps is a key of solver=grid"),
    (["solver=rk4", "+solver.substeps=2"], "only the grid_* methods take it"),
    (["model=lnn", "dataset=spring", "model.damping_final=0.5"], "damping_final"),
    (["optim=adam_lbfgs", "train.iterations=10"], "train.iterations"),
    (["train.resume_from=/nonexistent/run"], "no such checkpoint or run directory"),
    (["model.field.forcing_dim=1"], "forcing"),
]

PRESETS = [
    (["experiment=physics/spring", "model.hidden=null"], "model.hidden"),
    (["experiment=sonode/silverbox_sonode", "model.field.bogus=1"], "model.field.bogus"),
    (["experiment=anode/mnist_seed001/node", "model.encoder.bogus=1"], "model.encoder.bogus"),
    (["-m", "augmentation.dim=0,1,x"], "augmentation.dim=x"),
    (["-m", "seed=0,1", "optim.lr=0,0.1"], "optim.lr=0"),
    (["-m", "model=node,sonod"], "fix: model=sonode"),
]

ENVIRONMENT = [  # (environment, arguments, text)
    ({"WANDB_MODE": "ofline"}, ["logger=wandb"], "WANDB_MODE=ofline"),
    ({"WANDB_MODE": "bogus"}, ["logger=wandb"], "unset WANDB_MODE"),
]


def _one_line(capsys, monkeypatch, tmp_path, args) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("NODE_LAB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setattr(cli, "_hydra_train", lambda: pytest.fail(f"not refused before the run: {args}"))
    code = cli.main(["train", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("node-lab: error: ") and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "outputs").exists(), "a refused command wrote outputs"
    return err


def _key(args: list[str]) -> str:
    last = next(a for a in reversed(args) if not a.startswith("-"))
    return last.lstrip("+").split("=", 1)[0]


CASES = [("typos", a, h) for a, h in TYPOS] + [("options", a, h) for a, h in OPTIONS] + [
    ("values", a, "") for a, _ in VALUES] + [("combinations", a, h) for a, h in COMBINATIONS] + [
    ("presets", a, h) for a, h in PRESETS]


@pytest.mark.parametrize("group,args,hint", CASES, ids=[f"{g}: {' '.join(a)}" for g, a, _ in CASES])
def test_refused_before_the_run_in_one_line(capsys, monkeypatch, tmp_path, group, args, hint):
    err = _one_line(capsys, monkeypatch, tmp_path, args)
    assert hint in err, err
    if group in ("typos", "options", "values"):
        assert _key(args).split(".")[0] in err, err  # the line names the key (or its group) as typed


@pytest.mark.parametrize("env,args,hint", ENVIRONMENT, ids=[str(e) for e, _, _ in ENVIRONMENT])
def test_environment_named_as_the_variable(capsys, monkeypatch, tmp_path, env, args, hint):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    err = _one_line(capsys, monkeypatch, tmp_path, args)
    assert hint in err and "logger.WANDB_MODE" not in err, err


def test_cuda_refused_without_cuda(capsys, monkeypatch, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "CUDA is not available" in _one_line(capsys, monkeypatch, tmp_path, ["device=cuda"])


# --- run-time faults: run directories, locks, resume, interruption, writes ------------------------------------

import errno  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from node_lab import checkpoints, identity, job, rundir  # noqa: E402
from node_lab.build import build  # noqa: E402

BASE = ["logger=none", "dataset.n_train=32", "dataset.n_test=16", "train.eval_every=2", "train.figures=false"]
TINY = [*BASE, "train.iterations=4"]


def _train(capsys, monkeypatch, cwd: Path, *args: str) -> tuple[int, str]:
    """``node-lab train`` in this process: (exit code, stderr)."""
    import logging

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = cli.main(["train", *args])
    except SystemExit as exit_:
        code = exit_.code
    finally:  # Hydra points the root logger at this test's captured stderr: undo it for the next test
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
    return code, capsys.readouterr().err.strip()


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def finished_run(make_cfg, tmp_path) -> Path:
    """A small completed run directory (a resumable checkpoint) that the cases below must not harm."""
    run_dir = tmp_path / "earlier"
    job.run(build(make_cfg(*TINY)), run_dir, group="test", name="earlier")
    (run_dir / "notes.txt").write_text("the researcher's own notes\n")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("# the earlier run's record\n")
    return run_dir


def _failing(finished: Path, scratch: Path) -> dict[str, list[str]]:
    empty = scratch / "no_checkpoint"
    empty.mkdir(exist_ok=True)
    return {
        "data error after start": [f"hydra.run.dir={finished}", "train.batch_size=100000"],
        "resume plus a bad batch size": [f"hydra.run.dir={finished}", "train.resume=true", "train.batch_size=100000",
                                         *TINY[1:]],
        "resume_from a folder without checkpoint": [f"hydra.run.dir={finished}", f"train.resume_from={empty}"],
        "resume with another solver": [f"hydra.run.dir={finished}", "train.resume=true", "solver=rk4", *TINY[1:]],
        "resume with another lr": [f"hydra.run.dir={finished}", "train.resume=true", "optim.lr=0.5", *TINY[1:]],
        "resume with more iterations, not allowed": [f"hydra.run.dir={finished}", "train.resume=true",
                                                     *BASE[1:], "train.iterations=8"],
        "a typo into an existing run dir": [f"hydra.run.dir={finished}", "train.iteratons=3"],
        "the launch folder as run dir": ["hydra.run.dir=.", "train.batch_size=100000"],
    }


CASES_RUNTIME = ["data error after start", "resume plus a bad batch size", "resume_from a folder without checkpoint",
                 "resume with another solver", "resume with another lr", "resume with more iterations, not allowed",
                 "a typo into an existing run dir", "the launch folder as run dir"]


@pytest.mark.parametrize("case", CASES_RUNTIME)
def test_a_failing_invocation_leaves_an_existing_run_dir_as_it_was(capsys, monkeypatch, tmp_path, finished_run, case):
    args = _failing(finished_run, tmp_path)[case]
    cwd = finished_run if "hydra.run.dir=." in args else tmp_path
    before = _tree(finished_run)
    code, err = _train(capsys, monkeypatch, cwd, *[a for a in args if a != "logger=none"], "logger=none")
    last = err.splitlines()[-1] if err else ""
    assert code == 2, err
    assert last.startswith("node-lab: error: ") and "Traceback" not in err, err
    assert _tree(finished_run) == before, "the run directory changed"


def test_resume_with_another_solver_names_the_keys(capsys, monkeypatch, tmp_path, finished_run):
    code, err = _train(capsys, monkeypatch, tmp_path, f"hydra.run.dir={finished_run}", "train.resume=true",
                       "solver=rk4", *TINY)
    assert code == 2 and "solver.method: dopri5 -> rk4" in err and "train.resume_override=[" in err, err


def test_allowed_lr_change_takes_effect(make_cfg, tmp_path, finished_run):
    built = build(make_cfg(*BASE, "train.iterations=6", f"train.resume_from={finished_run}",
                           "optim.lr=0.5", "train.resume_override=[optim.lr,train.iterations]"))
    seen = []
    original = built.optimizer

    def spy(params):
        optimizer = original(params)
        seen.append(optimizer)
        return optimizer

    built.optimizer = spy
    job.run(built, tmp_path / "resumed", group="test", name="resumed")
    assert seen[0].param_groups[0]["lr"] == 0.5  # the loaded optimiser follows the config


def test_resume_keeps_restart_history_and_wall_time(make_cfg, tmp_path):
    first = tmp_path / "first"
    cfg = [*TINY, "optim.lr=1e6", "solver.max_num_steps=30", "train.max_restarts=1"]
    ran = job.run(build(make_cfg(*cfg)), first, group="t", name="first")
    assert ran["restarts"], "the setup must restart once"
    state = torch.load(first / checkpoints.LAST, weights_only=False)
    assert state["restarts"] == ran["restarts"] and state["wall_time_parts"]
    again = job.run(build(make_cfg(*cfg, f"train.resume_from={first}")), tmp_path / "again", group="t", name="again")
    assert again["restarts"] == ran["restarts"] and again["seed"] == ran["seed"]
    assert len(again["wall_time_parts"]) == 2 and again["wall_time"] >= again["wall_time_parts"][0]


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, b"not a checkpoint", "truncated", "foreign"])
def test_a_damaged_checkpoint_is_one_line(capsys, monkeypatch, tmp_path, finished_run, content):
    path = finished_run / checkpoints.LAST
    if content == "truncated":
        content = path.read_bytes()[:200]
    elif content == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
        content = path.read_bytes()
    path.write_bytes(content)
    code, err = _train(capsys, monkeypatch, tmp_path, f"hydra.run.dir={finished_run}", "train.resume=true", *TINY)
    assert code == 2 and err.startswith("node-lab: error: checkpoint=") and "\n" not in err, err
    assert "train.resume=false" in err and path.read_bytes() == content


def test_a_second_run_into_a_busy_directory_is_refused(capsys, monkeypatch, tmp_path):
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / rundir.LOCK).write_text(json.dumps({"pid": owner.pid, "host": __import__("socket").gethostname(),
                                                        "started": "now"}))
        before = _tree(run_dir)
        code, err = _train(capsys, monkeypatch, tmp_path, f"hydra.run.dir={run_dir}", *TINY)
        assert code == 2 and f"pid {owner.pid}" in err and "in use by another node-lab run" in err, err
        assert _tree(run_dir) == before
    finally:
        owner.kill()
        owner.wait()
    code, err = _train(capsys, monkeypatch, tmp_path, f"hydra.run.dir={run_dir}", *TINY)  # its owner is gone: stale
    assert code == 0, err
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    assert not (run_dir / rundir.LOCK).exists(), "the lock is released at the end"


def test_a_busy_sweep_directory_is_refused(capsys, monkeypatch, tmp_path):
    (tmp_path / "sweep" / "0").mkdir(parents=True)
    (tmp_path / "sweep" / "0" / rundir.LOCK).write_text(json.dumps({"pid": os.getppid(), "host": "elsewhere"}))
    code, err = _train(capsys, monkeypatch, tmp_path, "-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY)
    assert code == 2 and "elsewhere" in err, err


def test_truncated_metrics_are_skipped_by_report_and_rerun(make_cfg, tmp_path, caplog):
    from node_lab.report.summary import summarise

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        job.run(build(make_cfg(*TINY, f"seed={seed}", "train.skip_finished=true")), sweep / str(seed), group="t",
                name=str(seed))
    broken = sweep / "1" / "metrics.json"
    broken.write_text(broken.read_text()[:40])
    result = summarise(sweep)
    assert result["jobs"] == 1 and "unreadable" in caplog.text and str(sweep / "1") in caplog.text
    assert "Skipped (unreadable" in (sweep / "summary.md").read_text()
    rerun = job.run(build(make_cfg(*TINY, "seed=1", "train.skip_finished=true")), sweep / "1", group="t", name="1")
    assert rerun["status"] == "completed" and json.loads(broken.read_text())["status"] == "completed"


def test_ensemble_of_a_single_run_writes_nothing(capsys, make_cfg, tmp_path):
    job.run(build(make_cfg(*TINY)), tmp_path / "one", group="t", name="one")
    assert cli.main(["ensemble", str(tmp_path / "one")]) == 2
    assert not list((tmp_path / "one").glob("ensemble*"))


def test_a_new_key_at_its_default_keeps_the_hash(make_cfg):
    built = build(make_cfg(*TINY))
    config = json.loads(json.dumps(built.config))
    config["solver"].pop("max_num_steps")  # a config written before the key existed
    config["train"].pop("resume_override")
    assert identity.config_hash(config) == built.config_hash
    assert build(make_cfg(*TINY, "solver.max_num_steps=5")).config_hash != built.config_hash


def test_a_run_hashed_another_way_is_still_finished(make_cfg, tmp_path):
    run_dir = tmp_path / "old"
    first = job.run(build(make_cfg(*TINY)), run_dir, group="t", name="old")
    stored = json.loads((run_dir / "metrics.json").read_text())
    stored["config_hash"] = "0123456789abcdef"  # what an earlier version wrote
    (run_dir / "metrics.json").write_text(json.dumps(stored))
    again = job.run(build(make_cfg(*TINY, "train.skip_finished=true")), run_dir, group="t", name="old")
    assert again["config_hash"] == "0123456789abcdef" and again["final"] == first["final"]  # skipped, not rerun


def test_interrupted_run_checkpoints_and_resumes_bit_identically(make_cfg, tmp_path):
    common = [*BASE, "train.iterations=8", "train.eval_every=3", "train.batch_size=8"]
    straight = job.run(build(make_cfg(*common)), tmp_path / "straight", group="t", name="s")
    calls = iter(range(100))
    stopped = job.run(build(make_cfg(*common)), tmp_path / "cut", group="t", name="c",
                      should_stop=lambda: next(calls) >= 4)
    assert stopped["status"] == "interrupted" and stopped["iterations"] == 5, stopped["reason"]
    state = torch.load(tmp_path / "cut" / checkpoints.LAST, weights_only=False)
    assert state["progress"]["iteration"] == 5  # every iteration done is in the checkpoint, not only the last eval
    resumed = job.run(build(make_cfg(*common, "train.resume=true")), tmp_path / "cut", group="t", name="c")
    assert resumed["status"] == "completed" and resumed["final"] == straight["final"]
    rows = lambda d: (d / "history.csv").read_text()  # noqa: E731
    assert rows(tmp_path / "cut").replace("\r", "") .splitlines()[1:] != [] and [
        r.split(",")[1] for r in rows(tmp_path / "cut").splitlines()[1:]] == [
        r.split(",")[1] for r in rows(tmp_path / "straight").splitlines()[1:]]


class _FullDisk:
    """fsync that fails with ENOSPC once ``marker`` exists: the disk fills up right after the first checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker, self.real = marker, os.fsync

    def __call__(self, fd):
        if self.marker.exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(fd)


def test_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(capsys, monkeypatch, tmp_path):
    run_dir = tmp_path / "run"
    monkeypatch.setattr(rundir.os, "fsync", _FullDisk(run_dir / checkpoints.LAST))
    code, err = _train(capsys, monkeypatch, tmp_path, f"hydra.run.dir={run_dir}", *BASE, "train.iterations=6")
    last = err.splitlines()[-1]
    assert code == 1 and last.startswith("node-lab: error: ") and "No space left on device" in last, err
    assert "Traceback" not in err
    state = torch.load(run_dir / checkpoints.LAST, weights_only=False)
    assert state["progress"]["iteration"] == 2  # the last good checkpoint survived the failed write
    assert not list(run_dir.glob(".*.tmp")), "no temporary file left behind"
    metrics = checkpoints.read_metrics(run_dir)
    assert metrics is None or metrics["status"] != "completed"


def test_a_crash_writes_failure_json_into_the_run_dir_not_the_launch_dir(capsys, monkeypatch, tmp_path):
    def bug(*args, **kwargs):
        raise RuntimeError("a bug in node-lab")

    monkeypatch.setattr(job, "run", bug)
    run_dir = tmp_path / "run"
    launch = tmp_path / "launch"
    launch.mkdir()
    code, err = _train(capsys, monkeypatch, launch, f"hydra.run.dir={run_dir}", *TINY)
    assert code == 1 and "a bug in node-lab" in err  # a bug keeps its traceback: it is ours to fix
    assert "a bug in node-lab" in json.loads((run_dir / "failure.json").read_text())["reason"]
    assert not (launch / "failure.json").exists()


@pytest.mark.parametrize("case,hint", [("/proc/node-lab-x", "cannot be written"), ("FILE/run", "is a file")])
def test_unwritable_output_paths(capsys, monkeypatch, tmp_path, case, hint):
    (tmp_path / "FILE").write_text("x")
    path = case.replace("FILE", str(tmp_path / "FILE"))
    code, err = _train(capsys, monkeypatch, tmp_path, f"hydra.run.dir={path}", *TINY)
    assert code == 2 and hint in err and "\n" not in err, err
    monkeypatch.setenv("NODE_LAB_OUTPUTS", path)
    code, err = _train(capsys, monkeypatch, tmp_path, *TINY)
    assert code == 2 and "NODE_LAB_OUTPUTS" in err, err


NODE_LAB = str(Path(sys.executable).parent / "node-lab")


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_at_an_iteration_and_the_run_resumes_identically(tmp_path, sig, code):
    args = ["train", "logger=none", "train.iterations=400", "train.eval_every=2", "train.figures=false"]
    env = {**os.environ, "WANDB_SILENT": "true"}
    cut = tmp_path / "cut"
    proc = subprocess.Popen([NODE_LAB, *args, f"hydra.run.dir={cut}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (cut / checkpoints.LAST).is_file() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    line = next(row for row in err.splitlines() if row.startswith("node-lab: interrupted at iteration"))
    assert "train.resume=true" in line
    metrics = json.loads((cut / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and 0 < metrics["iterations"] < 400
    assert subprocess.run([NODE_LAB, *args, f"hydra.run.dir={cut}", "train.resume=true"], cwd=tmp_path, env=env,
                          capture_output=True).returncode == 0
    straight = tmp_path / "straight"
    assert subprocess.run([NODE_LAB, *args, f"hydra.run.dir={straight}"], cwd=tmp_path, env=env,
                          capture_output=True).returncode == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (cut, straight))
    assert a["status"] == "completed" and a["final"] == b["final"] and a["best"] == b["best"]
    assert (cut / "history.csv").read_text().splitlines()[1:][-1].split(",")[1] == (
        straight / "history.csv").read_text().splitlines()[1:][-1].split(",")[1]


def _data_folder(tmp_path: Path, kind: str) -> Path:
    from conftest import SHARED_DATA

    root = tmp_path / "data"
    if kind in ("random bytes", "truncated"):
        (root / "MNIST" / "raw").mkdir(parents=True)
        for source in (SHARED_DATA / "MNIST" / "raw").iterdir():
            data = os.urandom(4000) if kind == "random bytes" else source.read_bytes()[:1000]
            (root / "MNIST" / "raw" / source.name).write_bytes(data)
    else:
        (root / "silverbox").mkdir(parents=True)
        source = (SHARED_DATA / "silverbox" / "SNLS80mV.csv").read_text().splitlines()
        text = {"header only": source[0], "empty": "", "too short": "\n".join(source[:50]),
                "text in numbers": "\n".join([source[0], *["a,b,c" for _ in range(6000)]])}[kind]
        (root / "silverbox" / "SNLS80mV.csv").write_text(text + "\n")
    return root


DATA_FILES = [(["model=odenet", "dataset=mnist", "dataset.n_train=10", "dataset.n_test=10"], kind, "dataset.root")
              for kind in ("random bytes", "truncated")] + [
    (["experiment=sonode/silverbox_sonode"], kind, "dataset.path")
    for kind in ("header only", "empty", "too short", "text in numbers")]


@pytest.mark.parametrize("args,kind,key", DATA_FILES, ids=[f"{k}: {a[-1]}" for a, k, _ in DATA_FILES])
def test_a_damaged_data_file_is_one_line_and_leaves_nothing(capsys, monkeypatch, tmp_path, args, kind, key):
    monkeypatch.setenv("NODE_LAB_DATA", str(_data_folder(tmp_path, kind)))
    code, err = _train(capsys, monkeypatch, tmp_path, *args, "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith(f"node-lab: error: {key}=") and "Traceback" not in err, err
    assert not (tmp_path / "run").exists(), "a refused run left its directory"


def test_more_images_than_exist_is_refused(capsys, monkeypatch, tmp_path):
    code, err = _train(capsys, monkeypatch, tmp_path, "model=odenet", "dataset=mnist", "dataset.n_test=20000",
                       "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and "dataset.n_test=20000" in err and "10000 images" in err, err
    assert not (tmp_path / "run").exists()


def test_an_unwritable_wandb_folder_warns_and_the_run_goes_on(make_cfg, tmp_path, caplog):
    (tmp_path / "wandb").write_text("a file where W&B wants its folder")
    metrics = job.run(build(make_cfg(*TINY, "logger=wandb", "logger.wandb.mode=offline")), tmp_path, group="t",
                      name="t")
    assert metrics["status"] == "completed" and "W&B start failed" in caplog.text
    assert caplog.text.count("W&B start failed") == 1 and "W&B log failed" not in caplog.text  # warned once


@pytest.mark.parametrize("name,code", list(rundir.SIGNALS.items()))
def test_each_stop_signal_is_recorded_not_fatal(name, code):
    stop = rundir.Interruption()
    before = signal.getsignal(getattr(signal, name))
    with stop:
        os.kill(os.getpid(), getattr(signal, name))
        time.sleep(0.05)  # the handler runs between bytecodes of this thread
        assert stop() and stop.requested == name and stop.exit_code == code
    assert signal.getsignal(getattr(signal, name)) == before  # the previous handler is back on exit


def _eval(capsys, *args) -> tuple[int, str]:
    try:
        code = cli.main(["eval", *args])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("case", ["missing run dir", "not a run dir", "unwritable --out", "busy run dir",
                                  "unknown key", "model shape", "damaged best.pt"])
def test_eval_faults_are_one_line(capsys, tmp_path, finished_run, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = {"missing run dir": [str(tmp_path / "nope")], "not a run dir": [str(empty)],
            "unwritable --out": [str(finished_run), "--out", "/proc/node-lab-eval"],
            "busy run dir": [str(finished_run)], "unknown key": [str(finished_run), "solver.rtl=1e-6"],
            "model shape": [str(finished_run), "model.field.hidden=[8]"],
            "damaged best.pt": [str(finished_run), "ckpt=best"]}[case]
    owner = None
    if case == "busy run dir":
        owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        host = __import__("socket").gethostname()
        (finished_run / rundir.LOCK).write_text(json.dumps({"pid": owner.pid, "host": host}))
    if case == "damaged best.pt":
        (finished_run / checkpoints.BEST).write_bytes(b"broken")
    try:
        code, err = _eval(capsys, *args)
    finally:
        if owner is not None:
            owner.kill()
            owner.wait()
    assert code == 2 and err.startswith("node-lab: error: ") and "\n" not in err, err
    assert not (finished_run / "eval.json").exists()
