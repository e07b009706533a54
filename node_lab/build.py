"""The build layer: composed config → objects, with every check a person needs.

This is the only module (with :mod:`node_lab.cli`) that reads ``cfg``. Each group is
instantiated from its ``_target_``; a :class:`ConfigError` raised by a component names its own
key, and is re-raised here with the group prefix so the message names the override to fix.
Cross-group rules live in :func:`check_combination`.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from node_lab.augmentation import Augmentation
from node_lab.datasets.base import Dataset, Task
from node_lab.device import Device
from node_lab.errors import ConfigError, check_number
from node_lab.job import JobSettings
from node_lab.loop import LoopSettings
from node_lab.models.base import ODEModel
from node_lab.optim import Phases
from node_lab.solvers import Solver
from node_lab.steer import EndTimeSampler, FixedEndTime
from node_lab.tracking import Loggers, RunLogger

ENDPOINT_INTERVAL = (0.0, 1.0)  # integration interval of end-state tasks unless solver.t0/t1 say otherwise
# Options added after runs were made, at the value that leaves a run as it was: left out of the
# config hash at that value, so `train.skip_finished` still recognises the earlier runs.
HASH_NEUTRAL = {("train", "eval_batch_size"): None, ("train", "max_loss"): None, ("train", "loss"): "auto",
                ("dataset", "random_crop_padding"): 0, ("model", "damping_final"): None,
                ("model", "damping_anneal"): 0.8}


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
        """Hash of what determines the result (not how it is logged, resumed or skipped)."""
        return hash_config(self.config)

    @property
    def configuration_hash(self) -> str:
        """The same without the seed: the seed replicas of one configuration share it (W&B group)."""
        return hash_config(self.config, drop_seed=True)


def hash_config(config: dict, drop_seed: bool = False) -> str:
    config = {k: v for k, v in config.items() if k not in ("logger", "report", "experiment_name", "tags")}
    config["train"] = {k: v for k, v in config.get("train", {}).items()
                       if k not in ("resume", "resume_from", "skip_finished", "log_every", "figures", "detect_anomaly")}
    for (group, key), neutral in HASH_NEUTRAL.items():
        if isinstance(config.get(group), dict) and key in config[group] and config[group][key] == neutral:
            config[group] = {k: v for k, v in config[group].items() if k != key}
    if drop_seed:
        seed = config.pop("seed", None)
        config = {g: ({k: v for k, v in node.items() if not (k == "seed" and v == seed)} if isinstance(node, dict)
                      else node) for g, node in config.items()}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def _loggers(cfg: DictConfig) -> tuple[RunLogger, list[str]]:
    """The ``logger`` group: every entry with a ``_target_`` is a logger (``logger=[wandb,tensorboard]``);
    an entry without one holds settings of a logger that is not selected (a preset's
    ``logger.wandb.tags`` under ``logger=none``) and is ignored; ``logger.tags`` is the older spelling
    of the top-level ``tags``. Returns the logger and the run's tags (top-level, then the loggers')."""
    node = cfg.get("logger") or {}
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
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            bad = str(cause).split("'")[-2]
            target = node.get("_target_", "")
            raise ConfigError(f"{group}.{bad}", node.get(bad), f"not a parameter of {target}",
                              choices=[p for p in _parameters(target) if p not in runtime],
                              fix=f"remove or correct {group}.{bad}") from None
        raise ConfigError(group, node.get("_target_"), str(cause or err).splitlines()[0]) from None
    except ConfigError as err:  # raised outside a _target_ call (e.g. by a partial's checks)
        raise err.with_prefix(group) from None


def _parameters(target: str) -> list[str]:
    """Constructor parameters of ``target`` and of the bases its ``**common`` passes on to."""
    try:
        module, _, name = target.rpartition(".")
        obj = getattr(__import__(module, fromlist=[name]), name)
        classes = obj.__mro__ if inspect.isclass(obj) else [obj]
        names = [p for c in classes if c is not object
                 for p in inspect.signature(c.__init__ if inspect.isclass(c) else c).parameters]
        return list(dict.fromkeys(p for p in names if p not in ("self", "args", "kwargs", "common")))
    except Exception:  # a listing is a courtesy; the error itself is already clear
        return []


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


def check_train_loss(loss: str, dataset: Dataset) -> None:
    """``train.loss`` mse or l1 needs regression targets (labels train with their own loss)."""
    if loss != "auto" and dataset.loss != "mse":
        raise ConfigError("train.loss", loss, f"{dataset.describe()} trains with {dataset.loss} on its labels",
                          choices=["auto"], fix="train.loss=auto")


def check_train_mode(mode: str, dataset: Dataset, model: ODEModel) -> None:
    """``train.mode`` other than trajectory needs trajectory data; ``derivatives`` also needs the
    data's time derivatives and a model whose state is the data."""
    if mode == "trajectory":
        return
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
    check_number("seed", cfg.seed, kind=int, low=0)
    seed_everything(cfg.seed)
    dataset: Dataset = _group(cfg, "dataset")
    augmentation: Augmentation = _group(cfg, "augmentation")
    solver: Solver = _group(cfg, "solver")
    steer: EndTimeSampler = _group(cfg, "steer")
    device: Device = _group(cfg, "device")
    logger, tags = _loggers(cfg)
    loop, job = train_settings(cfg.train)
    t0, t1 = check_combination(dataset, solver, steer, cfg.model)
    model: ODEModel = _group(cfg, "model", data_dim=dataset.data_dim, output_dim=dataset.output_dim,
                             solver=solver, augmentation=augmentation, data_shape=dataset.data_shape).initialise()
    check_train_mode(loop.mode, dataset, model)
    check_train_loss(loop.loss, dataset)
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
    config = OmegaConf.to_container(cfg, resolve=True)
    return Built(cfg.seed, dataset, augmentation, solver, steer, device, model, optimizer, logger, loop, job,
                 t0, t1, config, tags)
