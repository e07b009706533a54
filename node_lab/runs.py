"""Finished runs, from Python (:func:`load_run`) and from the command line (``node-lab eval``).

A run is rebuilt from the resolved config saved in its checkpoint (not from today's ``conf/``, so a
later change of a default cannot change what is loaded), on the CPU, with the weights of the
checkpoint the run reports (``train.select``; ``ckpt=best|last`` picks one). Overrides may change
what is evaluated (dataset seed or horizon, solver, tolerances), never silently the model: an
override that changes a parameter's shape is a one-line error naming it. Run directories of the
previous version (one ``checkpoint.pt``) load too.

    import node_lab
    run = node_lab.load_run("outputs/2026-11-23/04-38-59-920490")
    run.predict(run.data().test.x).shape
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from node_lab import checkpoints
from node_lab.datasets.base import Data, Task
from node_lab.errors import ConfigError

log = logging.getLogger(__name__)

CKPT_CHOICES = list(checkpoints.CHECKPOINTS)


def _groups() -> list[str]:
    """The config groups (folders of node_lab.conf)."""
    from node_lab.cli import conf_dir

    return sorted(p.name for p in conf_dir().iterdir() if p.is_dir() and not p.name.startswith("_"))


def _group_node(group: str, option: str, config: dict) -> dict:
    """``conf/<group>/<option>.yaml`` as composed by Hydra, its interpolations left for the run's config."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("node_lab.conf", version_base="1.3"):
            composed = compose("config", overrides=[f"{group}={option}"])
    except Exception as err:
        from node_lab.cli import describe_error

        raise ConfigError(group, option, describe_error(err, [f"{group}={option}"], None) or str(err)) from None
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_container(composed[group], resolve=False)


def apply_overrides(config: dict, overrides: Sequence[str]) -> DictConfig:
    """The run's resolved ``config`` with command-line style overrides: ``group=option`` replaces a
    config group by today's YAML of that option, ``key=value`` changes an existing key, ``+key=value``
    adds one. Unknown keys are one-line errors naming the closest keys."""
    cfg = OmegaConf.create(config)
    groups = _groups()
    for text in overrides:
        if "=" not in text:
            raise ConfigError(text, None, "an override is key=value", fix="e.g. solver.rtol=1e-6")
        key, raw = text.split("=", 1)
        add = key.startswith("+")
        key = key.lstrip("+")
        value = _parse(raw)
        if "." not in key and key in groups and isinstance(value, str):
            cfg[key] = _group_node(key, value, config)
            continue
        if not add and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            keys = node.keys() if isinstance(node, DictConfig) else []
            valid = sorted(str(k) for k in keys if not str(k).startswith("_"))
            close = difflib.get_close_matches(leaf, valid, n=len(valid), cutoff=0.0)
            raise ConfigError(key, raw, f"unknown key in '{parent or 'config'}' of the run's config",
                              choices=close, fix=f"did you mean {parent + '.' if parent else ''}{close[0]}?"
                              if close else f"+{key}=... adds a key")
        OmegaConf.update(cfg, key, value, merge=False, force_add=add)
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


_MISSING = object()


def _parse(raw: str):
    """A value as Hydra's override grammar reads it (numbers, bools, null, lists, strings)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(f"k={raw}").value()


def _shapes(model: torch.nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@dataclass
class Run:
    """A finished run: ``model`` (eval mode, CPU, the checkpoint's weights), ``config`` (the resolved
    config it trained with, overrides applied), ``metrics`` (its metrics.json), ``checkpoint``
    (the file loaded). :meth:`data` loads its splits; :meth:`predict` runs the model."""

    path: Path
    checkpoint: Path
    config: dict
    metrics: dict
    built: object = field(repr=False)
    state: dict = field(repr=False, default_factory=dict)

    @property
    def model(self):
        return self.built.model

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @cached_property
    def _data(self) -> Data:
        from node_lab.job import load_data

        return load_data(self.built)

    def data(self) -> Data:
        """The run's dataset (train, val, test splits) on the CPU in the model's dtype."""
        return self._data

    @torch.no_grad()
    def predict(self, x, times=None, v0=None) -> torch.Tensor:
        """The model's output for inputs ``x`` (B, d, …). ``times`` None: end-state tasks return the
        output at the end time (B, out); trajectory tasks the whole test grid (T, B, out). Given
        ``times`` (T,): the output at every one of them, (T, B, out)."""
        x = torch.as_tensor(x, dtype=self.dtype)
        trajectory = self.built.dataset.task == Task.trajectory
        grid = times
        if grid is None:
            grid = self.data().test.times if trajectory else torch.tensor([self.built.t0, self.built.t1])
        grid = torch.as_tensor(grid, dtype=self.dtype)
        v0 = None if v0 is None else torch.as_tensor(v0, dtype=self.dtype)
        out = self.model(x, grid, v0)
        return out if trajectory or times is not None else out[-1]


def _metrics(path: Path) -> dict:
    file = path / checkpoints.METRICS
    return json.loads(file.read_text()) if file.is_file() else {}


def load_run(path: str | Path, ckpt: str | None = None, overrides: Sequence[str] = ()) -> Run:
    """The run in directory ``path`` (a run, or one job of a sweep), rebuilt with the weights of
    ``ckpt`` (best | last; None: the one the run reports). See the module docstring."""
    from node_lab.build import build

    path = Path(path)
    if not path.is_dir():
        raise ConfigError("run_dir", str(path), "no such directory", fix="give a run directory (outputs/<date>/<time>)")
    metrics = _metrics(path)
    which = ckpt or (metrics.get("selected") or {}).get("checkpoint") or "best"
    if which not in CKPT_CHOICES:
        raise ConfigError("ckpt", which, "unknown checkpoint", choices=CKPT_CHOICES, fix="ckpt=best")
    checkpoint = checkpoints.model_checkpoint(path, which)
    if checkpoint is None:
        found = sorted(p.name for p in path.glob("*.pt"))
        raise ConfigError("run_dir", str(path), f"has no {checkpoints.CHECKPOINTS[which]}"
                          + (f" (found: {', '.join(found)})" if found else " (no checkpoint: not a finished run)"),
                          choices=[c for c in CKPT_CHOICES if checkpoints.model_checkpoint(path, c)],
                          fix="ckpt=last" if which == "best" else "point at a run directory holding last.pt")
    state = checkpoints.load_checkpoint(checkpoint)
    cfg = apply_overrides(state["config"], overrides)
    cfg.logger = {"_target_": "node_lab.tracking.NullLogger"}
    cfg.device.name = "cpu"
    built = build(cfg)
    built.model.to(built.device.torch_device, built.device.dtype)  # as the job does: the run's dtype
    _check_shapes(built.model, state, checkpoint, state["config"], overrides)
    checkpoints.load_weights(built.model, state, checkpoint, "run_dir", str(path))
    built.model.set_training_progress(1.0)  # a trained model's schedules (the LNN's damping) at their end
    built.model.eval()
    return Run(path=path, checkpoint=checkpoint, config=OmegaConf.to_container(cfg), metrics=metrics, built=built,
               state={k: v for k, v in state.items() if k != "model"})


def _check_shapes(model, state: dict, checkpoint: Path, config: dict, overrides: Sequence[str]) -> None:
    """An override that changes the model's parameters is refused, naming the override."""
    saved = {k: tuple(v.shape) for k, v in state["model"].items()}
    if _shapes(model) == saved or not overrides:
        return  # without overrides a mismatch is the checkpoint's own (load_weights names it)
    from node_lab.build import build

    for override in overrides:
        cfg = apply_overrides(config, [override])
        cfg.logger, cfg.device.name = {"_target_": "node_lab.tracking.NullLogger"}, "cpu"
        shapes = _shapes(build(cfg).model)
        if shapes != saved:
            diff = next((k for k in sorted(set(saved) | set(shapes)) if saved.get(k) != shapes.get(k)), "?")
            key, _, value = override.lstrip("+").partition("=")
            raise ConfigError(key, value, f"changes the trained model ({diff}: {saved.get(diff)} in "
                              f"{checkpoint.name}, {shapes.get(diff)} with the override); eval and load_run may "
                              "change what is evaluated, not the model", fix=f"drop {key}=...")
    raise ConfigError("overrides", " ".join(overrides), "together change the trained model's parameters",
                      fix="drop the model-shaping overrides")


def load_runs(root: str | Path, ckpt: str | None = None) -> list[Run]:
    """Every finished run at or below ``root`` (a sweep directory or a tree of them), in path order."""
    root = Path(root)
    dirs = sorted({p.parent for name in (checkpoints.BEST, checkpoints.LAST, checkpoints.LEGACY)
                   for p in root.rglob(name)}, key=lambda p: [int(s) if s.isdigit() else s for s in p.parts])
    return [load_run(d, ckpt) for d in dirs]


def evaluate_run(path: str | Path, ckpt: str | None = None, overrides: Sequence[str] = (),
                 out: Path | None = None, figures: bool = True) -> dict:
    """``node-lab eval``: the run's model on its val and test splits (and train, extra windows,
    physics) under ``overrides``; writes ``eval.json`` and the run's figures into ``out`` (default:
    the run directory without overrides, ``<run dir>/eval/<overrides>/`` with them). Returns eval.json."""
    from node_lab import run_figures, scoring
    from node_lab.loop import metric_name
    from node_lab.report.rundirs import read_history, read_job

    run = load_run(path, ckpt, overrides)
    data, built = run.data(), run.built
    if out is None:
        out = run.path if not overrides else run.path / "eval" / _slug(overrides)
    out.mkdir(parents=True, exist_ok=True)
    name = metric_name(data)
    final = scoring.final_metrics(run.model, data, built.t0, built.t1, built.loop.eval_batch_size)
    result = {"run_dir": str(run.path), "checkpoint": run.checkpoint.name,
              "iteration": run.state.get("iteration", (run.state.get("progress") or {}).get("iteration")),
              "overrides": list(overrides), "metric": name, "final": final,
              "recorded": {k: v for k, v in (run.metrics.get("final") or {}).items()
                           if k in (f"val_{name}", f"test_{name}")}}
    rollouts: dict = {}
    if data.energy is not None:
        result["physics"] = scoring.physics_block(run.model, data, out, rollouts)
    if figures:
        history_file = run.path / checkpoints.HISTORY
        history = read_history(read_job(run.path)) if history_file.is_file() else []
        result["figures"] = sorted(p.name for p in run_figures.make_figures(
            run.model, data, history, out, t0=built.t0, t1=built.t1,
            rmse_window=getattr(built.dataset, "rmse_window", None), rollout=rollouts.get("test")).values())
    checkpoints.write_json(out / "eval.json", result)
    result["out"] = str(out)
    return result


def _slug(overrides: Sequence[str]) -> str:
    text = ",".join(overrides)
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in text)[:120]
