"""The build layer: composed config → objects, with every check a person needs.

This is the only module (with :mod:`node_lab.cli`) that reads ``cfg``. Each group is
instantiated from its ``_target_``; a :class:`ConfigError` raised by a component names its own
key, and is re-raised here with the group prefix so the message names the override to fix.
Cross-group rules live in :func:`check_combination`.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from node_lab import identity
from node_lab.augmentation import Augmentation
from node_lab.datasets.base import Dataset, Task
from node_lab.device import Device
from node_lab.errors import SEED_MAX, ConfigError, check_number
from node_lab.job import JobSettings
from node_lab.loop import LoopSettings
from node_lab.models.base import ODEModel
from node_lab.optim import Phases
from node_lab.solvers import Solver
from node_lab.steer import EndTimeSampler, FixedEndTime
from node_lab.tracking import Loggers, RunLogger

ENDPOINT_INTERVAL = (0.0, 1.0)  # integration interval of end-state tasks unless solver.t0/t1 say otherwise
@dataclass
class Built:
    """Everything a job needs, as objects; ``config`` is the resolved config as a plain dict."""

    seed: int
    dataset: Dataset
    augmentation: Augmentation
    solver: Solver
    steer: EndTimeSampler
    device: Device
    model: ODEModel
    optimizer: Callable[..., torch.optim.Optimizer]
    logger: RunLogger
    loop: LoopSettings
    job: JobSettings
    t0: float
    t1: float
    config: dict

    tags: list[str] = field(default_factory=list)

    @property
    def config_hash(self) -> str:
        """Hash of what determines the result (not how it is logged, resumed or skipped): :mod:`node_lab.identity`."""
        return identity.config_hash(self.config)

    @property
    def configuration_hash(self) -> str:
        """The same without the seed: the seed replicas of one configuration share it (W&B group)."""
        return identity.config_hash(self.config, drop_seed=True)


def train_settings(node: DictConfig) -> tuple[LoopSettings, JobSettings]:
    """The ``train/`` group, split between the loop's settings and the job's (each checks its own keys)."""
    values = OmegaConf.to_container(node, resolve=True)
    schemas = (LoopSettings, JobSettings)
    names = [[f.name for f in fields(schema)] for schema in schemas]
    unknown = [k for k in values if not any(k in n for n in names)]
    if unknown:
        bad = unknown[0]
        valid = [k for n in names for k in n]
        close = difflib.get_close_matches(bad, valid, n=len(valid), cutoff=0.0)
        raise ConfigError(f"train.{bad}", values[bad], "unknown key", choices=close,
                          fix=f"did you mean train.{close[0]}?")
    try:
        return tuple(schema(**{k: v for k, v in values.items() if k in n}) for schema, n in zip(schemas, names))
    except ConfigError as err:
        raise err.with_prefix("train") from None


def logger_names() -> list[str]:
    """The loggers of the ``logger`` group (its YAMLs, but ``none``)."""
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files("node_lab.conf").joinpath("logger").iterdir()
                  if p.name.endswith(".yaml") and p.name != "none.yaml")


def _loggers(cfg: DictConfig) -> tuple[RunLogger, list[str]]:
    """The ``logger`` group: every entry with a ``_target_`` is a logger (``logger=[wandb,tensorboard]``);
    an entry without one holds settings of a logger that is not selected (a preset's
    ``logger.wandb.tags`` under ``logger=none``) and is ignored; ``logger.tags`` is the older spelling
    of the top-level ``tags``. Returns the logger and the run's tags (top-level, then the loggers')."""
    node = cfg.get("logger") or {}
    names = logger_names()
    for key in node:  # a typo here would otherwise be carried along silently
        if str(key) != "tags" and str(key) not in names and not str(key).startswith("_"):  # _target_: a saved
            # config of an earlier version (one logger, no entries)
            close = difflib.get_close_matches(str(key), [*names, "tags"], n=1)
            hint = f"did you mean logger.{close[0]}? " if close else ""
            raise ConfigError(f"logger.{key}", node[key], "unknown key in 'logger' (its keys are the loggers, "
                              "each with its own keys)", choices=[*names, "tags"],
                              fix=hint + "e.g. logger.wandb.project=x")
    loggers = [_group(cfg, f"logger.{key}") for key in node
               if isinstance(node[key], DictConfig) and "_target_" in node[key]]
    tags = [*(cfg.get("tags") or []), *(node.get("tags") or [] if not isinstance(node.get("tags"), DictConfig) else [])]
    logger = loggers[0] if len(loggers) == 1 else Loggers(loggers)
    return logger, list(dict.fromkeys(str(t) for t in [*tags, *logger.tags]))


def _group(cfg: DictConfig, group: str, **runtime):
    """Instantiate ``cfg[group]``; errors come back as one-line ConfigErrors naming ``group.key``."""
    node = OmegaConf.select(cfg, group)
    try:
        return instantiate(node, **runtime)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause.with_prefix(group) from None
        if isinstance(cause, TypeError):
            unknown = unknown_parameter(node, group, cause, exclude=runtime)
            if unknown is not None:
                raise unknown from None
        raise ConfigError(group, node.get("_target_"), str(cause or err).splitlines()[0]) from None
    except ConfigError as err:  # raised outside a _target_ call (e.g. by a partial's checks)
        raise err.with_prefix(group) from None


_UNEXPECTED = re.compile(r"(?:(?P<cls>\w+)\.__init__|(?P<fn>\w+))\(\) (?:got an unexpected keyword argument "
                         r"'(?P<key>\w+)'|takes no arguments)")


def unknown_parameter(node: DictConfig, group: str, err: TypeError, exclude=()) -> ConfigError | None:
    """The one-line error for a TypeError about a key the target does not take, named at the level
    of the config where it sits (``model.field.hidden`` for a key of a swapped nested ``_target_``,
    not ``model.hidden``); None when the TypeError is not about a config key."""
    match = _UNEXPECTED.search(str(err))
    if match is None:
        return None
    name, key = match["cls"] or match["fn"], match["key"]
    for path, sub in _targets(node):
        if name not in _class_names(str(sub.get("_target_", ""))):
            continue
        keys = [k for k in sub if not str(k).startswith("_")]
        bad = key if key in keys else (keys[0] if key is None and keys else None)
        if bad is None:
            continue
        full = ".".join(p for p in (group, path, bad) if p)
        partial = bool(sub.get("_partial_", False))  # called later with runtime dims: list its own keys
        choices = [p for p in _parameters(sub["_target_"], defaults_only=partial) if p not in exclude]
        return ConfigError(full, sub.get(bad), f"not a parameter of {sub['_target_']}"
                           + ("" if choices else ", which takes no keys"), choices=choices or None,
                           fix=f"remove or correct {full}")
    return None


def _class_names(target: str) -> list[str]:
    """The names of ``target`` and of its base classes (a model's ``**common`` goes to ODEModel)."""
    try:
        module, _, name = target.rpartition(".")
        obj = getattr(__import__(module, fromlist=[name]), name)
    except Exception:  # not importable: only its own name
        return [target.rpartition(".")[2]]
    return [c.__name__ for c in obj.__mro__] if inspect.isclass(obj) else [name]


def _targets(node, path: str = ""):
    """(dotted path, node) of every mapping with a ``_target_`` in ``node``, outermost first."""
    if isinstance(node, (dict, DictConfig)):
        if "_target_" in node:
            yield path, node
        for key, value in node.items():
            yield from _targets(value, f"{path}.{key}" if path else str(key))


def _parameters(target: str, defaults_only: bool = False) -> list[str]:
    """Constructor parameters of ``target`` and of the bases its ``**common`` passes on to
    (``defaults_only``: those with a default, i.e. not the dims a model passes to a factory)."""
    try:
        module, _, name = target.rpartition(".")
        obj = getattr(__import__(module, fromlist=[name]), name)
        classes = obj.__mro__ if inspect.isclass(obj) else [obj]
        params = [p for c in classes if c is not object
                  for p in inspect.signature(c.__init__ if inspect.isclass(c) else c).parameters.values()]
        names = [p.name for p in params if not defaults_only or p.default is not inspect.Parameter.empty]
        return list(dict.fromkeys(p for p in names if p not in ("self", "args", "kwargs", "common")))
    except Exception:  # a listing is a courtesy; the error itself is already clear
        return []


def check_finite(config: dict, prefix: str = "") -> None:
    """No NaN or infinity anywhere in the config: a number that is not finite is never a setting
    (``solver.rtol=nan`` would otherwise surface as "underflow in dt" mid-run)."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            check_finite(value, path + ".")
        elif isinstance(value, list):
            check_finite({f"[{i}]": v for i, v in enumerate(value)}, path)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(path.replace(".[", "["), value, "must be a finite number",
                              fix=f"set {path.replace('.[', '[')} to a finite value")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def data_path(path: str) -> Path:
    """``paths.data_dir`` as an absolute path (relative paths are relative to the launch directory)."""
    return Path(os.path.expanduser(path)).resolve()


def check_combination(dataset: Dataset, solver: Solver, steer: EndTimeSampler, model_cfg: DictConfig) -> tuple:
    """Cross-group rules; returns the integration interval (t0, T) of end-state tasks."""
    if dataset.task == Task.trajectory:
        if solver.t0 is not None or solver.t1 is not None:
            raise ConfigError("solver.t1" if solver.t1 is not None else "solver.t0", solver.t1 or solver.t0,
                              f"{dataset.describe()} is a trajectory task: its time grid sets the interval",
                              fix="solver.t0=null solver.t1=null")
        if not isinstance(steer, FixedEndTime):
            raise ConfigError("steer", steer.name, f"STEER samples the end time of end-state tasks; "
                              f"{dataset.describe()} is a trajectory task", choices=["off"], fix="steer=off")
        t0, t1 = ENDPOINT_INTERVAL
    else:
        t0 = ENDPOINT_INTERVAL[0] if solver.t0 is None else float(solver.t0)
        t1 = ENDPOINT_INTERVAL[1] if solver.t1 is None else float(solver.t1)
        if t1 <= t0:
            raise ConfigError("solver.t1", t1, f"must be greater than t0={t0:g}")
        try:
            steer.check(t0, t1)
        except ConfigError as err:
            raise err.with_prefix("steer") from None
    if model_cfg.get("init_velocity") == "given" and not dataset.has_velocity:
        raise ConfigError("model.init_velocity", "given", f"{dataset.describe()} has no known velocity",
                          choices=["learned", "zero"], fix="model.init_velocity=learned")
    return t0, t1


# Messages of torch errors that say a network was handed a tensor of the wrong shape.
_SHAPE_ERRORS = ("shape", "size", "Expected", "dimension", "must match", "mat1 and mat2", "channels")


def check_model_takes_data(model: ODEModel, dataset: Dataset, t0: float, t1: float) -> None:
    """Run the model once on two zero samples of the dataset's shape over a short interval, so a
    model that cannot take the data (a conv field on vectors, a vector field on images) is a
    one-line error before the run starts instead of a conv2d/matmul traceback after it."""
    from node_lab.datasets.base import Forcing

    if dataset.task == Task.trajectory and not model.trajectory_tasks:
        raise ConfigError("model", type(model).__name__, f"is a network for end-state tasks; {dataset.describe()} "
                          "is a trajectory task", fix="model=node (or an end-state dataset such as "
                          "dataset=nested_spheres)")
    if dataset.task != Task.trajectory and not model.end_state_tasks:
        raise ConfigError("model", type(model).__name__, f"is a distribution over trajectories; "
                          f"{dataset.describe()} is an end-state task", fix="a trajectory dataset such as "
                          "dataset=extrapolation (or model=node)")
    shape = tuple(dataset.data_shape or (dataset.data_dim,))
    x = torch.zeros(2, *shape)
    v0 = torch.zeros(2, dataset.data_dim) if dataset.has_velocity else None
    if model.forcing_dim():
        model.set_forcing(Forcing(torch.tensor([t0, t1 + 1.0]), torch.zeros(2, model.forcing_dim())))
    try:
        model(x, torch.tensor([t0, t0 + 1e-3 * (t1 - t0)]), v0)
    except ConfigError:  # a component found the combination wrong itself (e.g. a symplectic solver, odd state)
        raise
    except (RuntimeError, ValueError, IndexError, FloatingPointError, AssertionError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, torch.linalg.LinAlgError) or not any(word in text for word in _SHAPE_ERRORS):
            return  # not about shapes (a singular Hessian at the zero state, ...): the run itself decides
        raise _data_mismatch(model.describe_networks(), dataset, text) from None
    finally:
        model.solver.nfe = 0
        if model.forcing_dim():
            model.set_forcing(None)


def _data_mismatch(model: str, dataset: Dataset, text: str) -> ConfigError:
    shape = tuple(dataset.data_shape or (dataset.data_dim,))
    return ConfigError("model", model, f"cannot take the data of {dataset.describe()} (per-sample shape {shape}): "
                       f"{text}", fix=("an image model: model=odenet or model=conv_node" if len(shape) > 1 else
                                       "a vector model: model=node, anode or sonode"))


def check_train_loss(loss: str, dataset: Dataset, model: ODEModel) -> None:
    """``train.loss`` mse or l1 needs regression targets (labels train with their own loss) and a
    deterministic model (a stochastic one trains on its likelihood)."""
    if loss != "auto" and model.stochastic:
        raise ConfigError("train.loss", loss, f"{type(model).__name__} trains on the Gaussian NLL of sampled paths",
                          choices=["auto"], fix="train.loss=auto")
    if loss != "auto" and dataset.loss != "mse":
        raise ConfigError("train.loss", loss, f"{dataset.describe()} trains with {dataset.loss} on its labels",
                          choices=["auto"], fix="train.loss=auto")


def check_train_mode(mode: str, dataset: Dataset, model: ODEModel) -> None:
    """``train.mode`` other than trajectory needs trajectory data; ``derivatives`` also needs the
    data's time derivatives and a model whose state is the data."""
    if mode == "trajectory":
        return
    if model.stochastic:
        raise ConfigError("train.mode", mode, f"{type(model).__name__} trains on the likelihood of sampled paths",
                          choices=["trajectory"], fix="train.mode=trajectory")
    if dataset.task != Task.trajectory:
        raise ConfigError("train.mode", mode, f"{dataset.describe()} is not a trajectory task",
                          choices=["trajectory"], fix="train.mode=trajectory")
    if mode == "derivatives" and not dataset.has_velocity:
        raise ConfigError("train.mode", mode, f"{dataset.describe()} has no known time derivatives",
                          choices=["trajectory", "steps"], fix="train.mode=steps")
    if mode == "derivatives" and not model.state_is_data():
        raise ConfigError("train.mode", mode, f"the state of {type(model).__name__} with "
                          f"{model.augmentation.describe()} is not the data, so its field cannot be fitted "
                          "to the data's derivatives",
                          choices=["trajectory", "steps"], fix="train.mode=trajectory (or augmentation.dim=0)")


def build(cfg: DictConfig) -> Built:
    """Validate and instantiate every group. Cheap: no data is loaded (``dataset.load()`` is
    the job's first step), so a whole sweep can be checked before any job starts."""
    check_number("seed", cfg.seed, kind=int, low=0, high=SEED_MAX)
    check_finite(OmegaConf.to_container(cfg, resolve=True))
    seed_everything(cfg.seed)
    dataset: Dataset = _group(cfg, "dataset")
    augmentation: Augmentation = _group(cfg, "augmentation")
    solver: Solver = _group(cfg, "solver")
    steer: EndTimeSampler = _group(cfg, "steer")
    device: Device = _group(cfg, "device")
    logger, tags = _loggers(cfg)
    loop, job = train_settings(cfg.train)
    t0, t1 = check_combination(dataset, solver, steer, cfg.model)
    try:
        model: ODEModel = _group(cfg, "model", data_dim=dataset.data_dim, output_dim=dataset.output_dim,
                                 solver=solver, augmentation=augmentation, data_shape=dataset.data_shape).initialise()
    except ConfigError as err:  # e.g. a conv encoder that probes its input shape on vector data
        if err.key != "model" or not any(word in err.problem for word in _SHAPE_ERRORS):
            raise
        raise _data_mismatch(str(err.value).rpartition(".")[2], dataset, err.problem) from None
    check_model_takes_data(model, dataset, t0, t1)
    check_train_mode(loop.mode, dataset, model)
    check_train_loss(loop.loss, dataset, model)
    if model.forcing_dim() and model.forcing_dim() != getattr(dataset, "forcing_dim", 0):
        raise ConfigError("model.field.forcing_dim", model.forcing_dim(),
                          f"{dataset.describe()} provides {getattr(dataset, 'forcing_dim', 0)} forcing channels",
                          fix=f"model.field.forcing_dim={getattr(dataset, 'forcing_dim', 0)}")
    for key in ("lr", "weight_decay", "momentum"):
        if key in cfg.optim:
            check_number(f"optim.{key}", cfg.optim[key], low=0, low_open=key == "lr")
    optimizer = _group(cfg, "optim")
    try:
        probe = optimizer(model.parameters())
        if isinstance(probe, Phases) and loop.iterations is not None:
            probe.check_total(loop.iterations)
    except ConfigError as err:  # optimiser phases (node_lab.optim.Phases) check their own keys
        raise err.with_prefix("train" if err.key == "iterations" else "optim") from None
    except ValueError as err:  # torch's own range checks of the remaining keys
        raise ConfigError("optim", cfg.optim.get("_target_"), str(err).splitlines()[0]) from None
    except TypeError as err:  # a key the optimiser does not take (+optim.foo=1)
        unknown = unknown_parameter(cfg.optim, "optim", err, exclude=("params",))
        if unknown is None:
            raise
        raise unknown from None
    config = OmegaConf.to_container(cfg, resolve=True)
    return Built(cfg.seed, dataset, augmentation, solver, steer, device, model, optimizer, logger, loop, job,
                 t0, t1, config, tags)
