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
    (["logger.projet=x"], "did you mean logger.project?"),
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
    (["logger=wandb", "logger.mode=ofline"], "fix: logger.mode=offline"),
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
