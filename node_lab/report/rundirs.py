"""Find and read run directories (``metrics.json``, ``.hydra/``, ``failure.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


@dataclass
class Job:
    """One run directory. ``status`` is completed | diverged | failed | interrupted | incomplete | unreadable
    (a truncated metrics.json or config: listed with a warning, never counted)."""

    path: Path
    overrides: dict[str, str]
    config: dict
    metrics: dict = field(default_factory=dict)
    status: str = "incomplete"
    reason: str = ""

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def study(self) -> str | None:
        return (self.config.get("report") or {}).get("study")

    @property
    def labelled(self) -> bool:
        return bool((self.config.get("report") or {}).get("row"))

    @property
    def row(self) -> str:
        """The table row: ``report.row`` if a preset set it, else the overrides without the seed."""
        label = (self.config.get("report") or {}).get("row")
        if label:
            return str(label)
        parts = [f"{k}={v}" for k, v in self.overrides.items() if not unlabelled(k)]
        return " ".join(parts) or "default"

    def value(self, key: str) -> float | None:
        """A metric by dotted path in metrics.json, e.g. ``final.test_mse``."""
        node = self.metrics
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def unlabelled(key: str) -> bool:
    """Override keys that do not distinguish configurations (seeds, logging, threads, bookkeeping)."""
    return (key in ("seed", "train.figures", "train.skip_finished", "train.log_every", "train.resume",
                    "device.threads")
            or key.startswith(("hydra", "logger")))


def _overrides(path: Path) -> dict[str, str]:
    file = path / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(file.read_text()) if file.is_file() else []
    return dict(item.split("=", 1) for item in items or [] if "=" in item)


def read_config(config_file: Path) -> dict:
    """The saved config with its interpolations resolved (Hydra saves them as written, e.g.
    ``report.row: NODE D=${dataset.dim}``); keys that need a live Hydra context stay as written."""
    config = OmegaConf.load(config_file)
    try:
        return OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException:  # e.g. ${hydra:...} outside a Hydra run: resolve the report keys
        plain = OmegaConf.create(OmegaConf.to_container(config))
        for key in ("report.study", "report.row", "experiment_name"):
            value = OmegaConf.select(config, key, throw_on_resolution_failure=False)
            if value is not None:
                OmegaConf.update(plain, key, value)
        return OmegaConf.to_container(plain)


def read_job(path: Path) -> Job:
    config_file = path / ".hydra" / "config.yaml"
    try:
        config = read_config(config_file) if config_file.is_file() else {}
    except Exception as err:  # a damaged .hydra/config.yaml: the run is listed as unreadable
        job = Job(path=path, overrides={}, config={}, status="unreadable")
        job.reason = f".hydra/config.yaml unreadable ({type(err).__name__})"
        return job
    job = Job(path=path, overrides=_overrides(path), config=config or {})
    metrics_file, failure_file = path / "metrics.json", path / "failure.json"
    if metrics_file.is_file():
        metrics = _read_json(metrics_file)
        if metrics is None:  # truncated by a crash or a full disk: listed, never counted
            job.status, job.reason = "unreadable", f"{metrics_file.name} is truncated or not JSON"
            return job
        job.metrics = metrics
        job.status, job.reason = job.metrics.get("status", "completed"), job.metrics.get("reason", "")
        if not job.config:
            job.config = {"seed": job.metrics.get("seed")}
    elif failure_file.is_file():
        failure = _read_json(failure_file) or {}
        job.status, job.reason = "failed", failure.get("reason", f"{failure_file.name} is unreadable")
    return job


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def find_jobs(root: Path) -> list[Job]:
    """Every run directory at or below ``root`` (a run, a sweep, or a tree of sweeps)."""
    root = Path(root)
    dirs = {p.parent for p in root.rglob("metrics.json")} | {p.parent for p in root.rglob("failure.json")}
    dirs |= {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    dirs = {d for d in dirs if (d / ".hydra").is_dir() or (d / "metrics.json").is_file()}
    return [read_job(d) for d in sorted(dirs, key=_natural_key)]


def read_history(job: Job) -> list[dict]:
    """history.csv of a run: one dict per iteration; numbers as floats, empty cells left out."""
    import csv

    with (job.path / "history.csv").open() as f:
        return [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def has_model(job: Job) -> bool:
    """Whether the run directory holds a trained model (best.pt / last.pt, or an older checkpoint.pt)."""
    from node_lab.checkpoints import last_checkpoint

    return last_checkpoint(job.path) is not None


def load_trained(job: Job):
    """The trained model of a run (the checkpoint it reports), rebuilt on the CPU from the config
    saved with it, in eval mode: a :class:`node_lab.build.Built` (see :func:`node_lab.load_run`)."""
    from node_lab.runs import load_run

    return load_run(job.path).built


def _natural_key(path: Path) -> list:
    return [int(p) if p.isdigit() else p for p in path.parts]
