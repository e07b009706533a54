"""What a run writes into its run directory, and reads back to resume or skip: the one writer.

- ``last.pt``: the last model with its optimiser state, progress, RNG state and resolved config
  (what a resume continues from); ``best.pt``: the weights of the model selected on validation
  (iteration, metric, config). Run directories of earlier versions hold one ``checkpoint.pt``
  (the layout of ``last.pt``), still read for resume, ``eval`` and ``load_run``;
- ``metrics.json``: the run's metrics (see :mod:`node_lab.scoring`);
- ``history.csv``: one row per iteration;
- ``failure.json``: the reason of a job that raised (the sweep summary lists it);
- ``env.json``: what reproduces the run without W&B (git commit and dirty flag, package versions,
  device, threads, command line).

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

LAST = "last.pt"
BEST = "best.pt"
LEGACY = "checkpoint.pt"  # the single checkpoint of run directories before best.pt/last.pt
CHECKPOINTS = {"best": BEST, "last": LAST}
METRICS = "metrics.json"
HISTORY = "history.csv"
FAILURE = "failure.json"
FORMAT = 2  # 2: carries the job's run state (restarts, wall time of earlier parts); 1 (no key): before
ENV = "env.json"


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


def save_best(path: Path, model: torch.nn.Module, progress: Progress, metric: str, config: dict) -> None:
    """The weights of the best model so far on validation (``metric`` names its ``progress.best``)."""
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "iteration": progress.best_iteration, metric: progress.best,
                "config": config}, buffer)
    rundir.write_bytes(path, buffer.getvalue())


def last_checkpoint(run_dir: Path) -> Path | None:
    """``last.pt``, or the ``checkpoint.pt`` of an earlier version's run directory; None if neither."""
    return next((p for p in (run_dir / LAST, run_dir / LEGACY) if p.is_file()), None)


def model_checkpoint(run_dir: Path, which: str) -> Path | None:
    """The checkpoint of the ``best`` or ``last`` model of a run directory. An earlier version's
    run directory has one model, its last (``checkpoint.pt``), which is what it reported."""
    path = run_dir / CHECKPOINTS[which]
    if path.is_file():
        return path
    legacy = run_dir / LEGACY
    return legacy if legacy.is_file() and not (run_dir / LAST).is_file() else None


RESUMABLE = ("model", "optimizer", "progress", "generator", "config")  # what last.pt holds; best.pt: model, config


def load_checkpoint(path: Path, device: torch.device | str = "cpu", needs: tuple[str, ...] = ("model", "config")
                    ) -> dict:
    """A node-lab checkpoint holding ``needs`` (:data:`RESUMABLE` to resume from it); a truncated, empty
    or foreign file is one line naming it and what to do."""
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
    missing = [k for k in needs if not isinstance(state, dict) or k not in state]
    if missing:
        raise ConfigError("checkpoint", str(path), f"is not a node-lab checkpoint (no {', '.join(missing)})",
                          fix=fix, absolute=True)
    return state


def load_weights(model: torch.nn.Module, state: dict, path: Path, key: str, value: object) -> None:
    """``state["model"]`` into ``model``; a checkpoint of another model shape is a ConfigError
    naming ``key`` (what pointed at the checkpoint, or the override that changed the shape)."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # size mismatch, missing or unexpected parameters
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise ConfigError(key, value, f"the model in {path} has another shape than this config's "
                          f"({lines[0] if lines else str(err).splitlines()[0]})",
                          fix="use the config the checkpoint was trained with") from None


def restore(state: dict, model: torch.nn.Module, optimizer, generator: torch.Generator, path: Path,
            key: str) -> Progress:
    """Load a checkpoint's weights, optimiser and RNG state; the progress to continue from. ``key``:
    the setting that chose the checkpoint (named by the error when its model does not fit)."""
    load_weights(model, state, path, key, str(path))
    optimizer.load_state_dict(state["optimizer"])
    progress = Progress(**state["progress"])
    progress.status = "running"
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return progress


def carry_best(source: Path, run_dir: Path) -> None:
    """A run resumed from another directory's checkpoint takes that directory's best.pt along (the
    best model so far may be from before the resume)."""
    best = source.parent / BEST
    if source.parent.resolve() != run_dir.resolve() and best.is_file():
        rundir.write_bytes(run_dir / BEST, best.read_bytes())


def resume_source(run_dir: Path, resume: bool, resume_from: str | None) -> Path | None:
    """The checkpoint a run continues from: ``train.resume_from`` (a run dir or a file), or with
    ``train.resume`` the one already in ``run_dir`` (e.g. a requeued job); None: a fresh start."""
    if resume_from:
        source = Path(resume_from)
        source = last_checkpoint(source) if source.is_dir() else source
        if source is None or not source.is_file():
            raise ConfigError("train.resume_from", resume_from, f"has no {LAST} (nor an earlier {LEGACY})")
        return source
    return last_checkpoint(run_dir) if resume else None


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
    checkpoint = last_checkpoint(Path(run_dir))
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)["config"]
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


def environment(device: str, threads: int) -> dict:
    """``env.json``: the git commit of node-lab's source (and whether it had uncommitted changes),
    the versions of the packages a result depends on, the device, torch threads, the command line."""
    import platform
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, version

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": None if status is None else bool(status),
            "packages": {name: installed(name) for name in ("node-lab", "torch", "torchdiffeq", "hydra-core",
                                                               "omegaconf", "wandb", "numpy")},
            "python": platform.python_version(), "platform": platform.platform(), "device": device,
            "threads": threads, "command": " ".join(sys.argv)}
