"""What a run writes into its run directory, and reads back to resume or skip: the one writer.

- ``checkpoint.pt``: model and optimiser state_dicts, progress, RNG state, resolved config;
- ``metrics.json``: the run's metrics (see :mod:`node_lab.scoring`);
- ``history.csv``: one row per iteration;
- ``failure.json``: the reason of a job that raised (the sweep summary lists it).

Every file of a run directory that node-lab writes goes through :func:`write_text` or
:func:`save_checkpoint`, so how a file is written (atomically, with which errors) is decided here.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

import torch

from node_lab.errors import ConfigError
from node_lab.loop import Progress

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
HISTORY = "history.csv"
FAILURE = "failure.json"


def write_text(path: Path, text: str) -> None:
    path.write_text(text)


def write_json(path: Path, value: dict) -> None:
    write_text(path, json.dumps(value, indent=2) + "\n")


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer, progress: Progress, generator: torch.Generator,
                    config: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "progress": asdict(progress), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "config": config}, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    return torch.load(path, map_location=device, weights_only=False)


def restore(state: dict, model: torch.nn.Module, optimizer, generator: torch.Generator) -> Progress:
    """Load a checkpoint's weights, optimiser and RNG state; the progress to continue from."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    progress = Progress(**state["progress"])
    progress.status = "running"
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return progress


def resume_source(run_dir: Path, resume: bool, resume_from: str | None) -> Path | None:
    """The checkpoint a run continues from: ``train.resume_from`` (a run dir or a file), or with
    ``train.resume`` the one already in ``run_dir`` (e.g. a requeued job); None: a fresh start."""
    if resume_from:
        source = Path(resume_from)
        source = source / CHECKPOINT if source.is_dir() else source
        if not source.is_file():
            raise ConfigError("train.resume_from", resume_from, f"has no {CHECKPOINT}")
        return source
    if resume and (run_dir / CHECKPOINT).is_file():
        return run_dir / CHECKPOINT
    return None


def finished_metrics(run_dir: Path, config_hash: str) -> dict | None:
    """The metrics of a completed run of the same config hash in ``run_dir`` (``train.skip_finished``)."""
    path = run_dir / METRICS
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    ok = metrics.get("status") == "completed" and metrics.get("config_hash") == config_hash
    return metrics if ok else None


def write_history(path: Path, history: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


def write_failure(run_dir: Path, err: BaseException) -> None:
    """``failure.json`` for a job that raised: the sweep summary lists it with this reason."""
    text = err.message() if isinstance(err, ConfigError) else str(err)
    reason = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / FAILURE, {"status": "failed", "reason": reason})
