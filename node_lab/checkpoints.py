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

from node_lab import identity, rundir
from node_lab.errors import ConfigError
from node_lab.loop import Progress

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
HISTORY = "history.csv"
FAILURE = "failure.json"
FORMAT = 2  # 2: carries the job's run state (restarts, wall time of earlier parts); 1 (no key): before


def write_text(path: Path, text: str) -> None:
    rundir.write_text(path, text)  # atomic: a crash or a full disk never leaves a truncated file


def write_json(path: Path, value: dict) -> None:
    write_text(path, json.dumps(value, indent=2) + "\n")


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer, progress: Progress, generator: torch.Generator,
                    config: dict, **run_state) -> None:
    """``run_state``: what the job must carry over a resume besides the loop's progress (its restart
    history, the wall time of the earlier parts, the W&B run id)."""
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "progress": asdict(progress), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "config": config, "format": FORMAT, **run_state}, buffer)
    rundir.write_bytes(path, buffer.getvalue())  # the previous checkpoint survives a failed write


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A node-lab checkpoint; a truncated, empty or foreign file is one line naming it and what to do."""
    path = Path(path)
    fix = "start over with train.resume=false (or train.resume_from=null), or point train.resume_from elsewhere"
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise ConfigError("checkpoint", str(path), "does not exist", fix=fix, absolute=True) from None
    except Exception as err:  # EOFError, zip/pickle errors, ...: the file is not a checkpoint torch can read
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        detail = detail.split(". ")[0][:100]
        raise ConfigError("checkpoint", str(path), f"is truncated, empty or not a checkpoint ({detail})",
                          fix=fix, absolute=True) from None
    missing = [k for k in ("model", "optimizer", "progress", "generator", "config") if not isinstance(state, dict)
               or k not in state]
    if missing:
        raise ConfigError("checkpoint", str(path), f"is not a node-lab checkpoint (no {', '.join(missing)})",
                          fix=fix, absolute=True)
    return state


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


def read_metrics(run_dir: Path) -> dict | None:
    """``metrics.json`` of a run directory; None if it is missing, truncated or not a metrics file."""
    try:
        metrics = json.loads((Path(run_dir) / METRICS).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def finished_metrics(run_dir: Path, config: dict) -> dict | None:
    """The metrics of a completed run of the same result config in ``run_dir`` (``train.skip_finished``):
    its metrics.json names the same config hash, or (a run of an earlier version, hashed another way)
    the config saved in its checkpoint hashes the same. A missing or unreadable metrics.json or
    checkpoint means not finished: the run is done again."""
    metrics = read_metrics(run_dir)
    if metrics is None or metrics.get("status") != "completed":
        return None
    wanted = identity.config_hash(config)
    if metrics.get("config_hash") == wanted:
        return metrics
    try:
        saved = torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=False)["config"]
    except Exception:  # no checkpoint, or one that cannot be read: do the run again
        return None
    return metrics if identity.config_hash(saved) == wanted else None


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
