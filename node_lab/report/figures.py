"""Study figures: the figures a paper shows, drawn from the run directories of its sweep.

``node-lab report`` (and so every sweep summary and ``node-lab reproduce``) groups the completed
runs by their ``report.study`` and draws the figures registered for that study. To give a study
its figures, write ``fn(jobs, out, name) -> [png paths]`` here and decorate it with
``@study_figures("<report.study pattern>")`` (fnmatch: ``anode/dupont_*``); nothing else changes.
Models are rebuilt from each run's checkpoint (best.pt/last.pt); curves come from its ``history.csv``.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from node_lab.report.rundirs import Job, has_model, load_trained, read_history

log = logging.getLogger(__name__)

StudyFigures = Callable[[list[Job], Path, str], list[Path]]
STUDY_FIGURES: dict[str, StudyFigures] = {}


def study_figures(pattern: str) -> Callable[[StudyFigures], StudyFigures]:
    """Register the figure function of the studies whose ``report.study`` matches ``pattern``."""

    def register(fn: StudyFigures) -> StudyFigures:
        STUDY_FIGURES[pattern] = fn
        return fn

    return register


def draw_study_figures(jobs: list[Job], out: Path) -> list[str]:
    """Figures of every registered study among ``jobs``, written into ``out``; markdown lines."""
    by_study: dict[str, list[Job]] = {}
    for job in jobs:
        if job.study and job.status == "completed" and has_model(job):
            by_study.setdefault(job.study, []).append(job)
    lines = []
    for study, group in sorted(by_study.items()):
        draw = next((fn for pattern, fn in STUDY_FIGURES.items() if fnmatch.fnmatchcase(study, pattern)), None)
        if draw is None:
            continue
        try:
            paths = draw(group, out, study.replace("/", "_"))
        except Exception as err:  # a figure never hides the summary; the line says what went wrong
            log.warning("study figures of %s failed: %s", study, err)
            lines.append(f"- study figures of {study} not drawn: {type(err).__name__}: {err}")
            continue
        lines += [f"![{study}: {p.stem}]({p.name})" for p in paths]
    return lines


# --- helpers -------------------------------------------------------------------------------------
def _p(job: Job) -> int:
    return int((job.config.get("augmentation") or {}).get("dim") or 0)


def _first_seeds(jobs: list[Job]) -> list[Job]:
    """One run per table row (``report.row``): the one with the lowest seed."""
    first: dict[str, Job] = {}
    for job in sorted(jobs, key=lambda j: j.seed or 0):
        first.setdefault(job.row, job)
    return list(first.values())


def _curves(ax, jobs: list[Job], label: Callable[[Job], str], key: str = "loss", log_scale: bool = True) -> None:
    """``key`` of history.csv against the iteration, one line per run."""
    for job in jobs:
        rows = [r for r in read_history(job) if key in r]
        ax.plot([r["iteration"] for r in rows], [r[key] for r in rows], lw=1, label=label(job))
    ax.set_xlabel("iteration")
    ax.set_ylabel(key)
    if log_scale:
        ax.set_yscale("log")
    ax.legend(fontsize=7)


def _test_split(built):
    """The test split of a rebuilt run, in the model's dtype."""
    dtype = next(built.model.parameters()).dtype
    return built.dataset.load().test.to(torch.device("cpu"), dtype), dtype


def _pyplot():
    from node_lab import plots  # selects the Agg backend

    return plots.plt, plots.save


# --- the ANODE-family studies (seed 001 §4.1–4.2, Dupont et al. toy problems) --------------------
@study_figures("anode/sinusoid_*")
@torch.no_grad()
def sinusoid(jobs: list[Job], out: Path, name: str) -> list[Path]:
    """Predicted trajectory (x(t), y(t)) against the data, and the training loss, per p."""
    plt, save = _pyplot()
    runs = sorted(_first_seeds(jobs), key=_p)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for job in runs:
        built = load_trained(job)
        test, dtype = _test_split(built)
        dense = torch.linspace(float(test.times[0]), float(test.times[-1]), 300, dtype=dtype)
        path = built.model(test.x, dense)[:, 0]
        left.plot(path[:, 0], path[:, 1], lw=1, label=f"p={_p(job)}")
    left.scatter(test.y[:, 0, 0], test.y[:, 0, 1], s=6, c="k", label="data")
    left.set_title(f"{name}: predictions")
    left.legend(fontsize=7)
    _curves(right, runs, lambda j: f"p={_p(j)}")
    right.set_title("training loss (Adam, then L-BFGS)")
    return [save(fig, out / f"{name}.png")]


@study_figures("anode/circles")
@torch.no_grad()
def circles(jobs: list[Job], out: Path, name: str) -> list[Path]:
    """Predicted value over the plane per p with the training loss; final features of the largest p."""
    plt, save = _pyplot()
    runs = sorted(_first_seeds(jobs), key=_p)
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4 * (len(runs) + 1), 4), squeeze=False)
    grid = torch.linspace(-3.2, 3.2, 120)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    for ax, job in zip(axes[0], runs):
        built = load_trained(job)
        dtype = next(built.model.parameters()).dtype
        times = torch.tensor([built.t0, built.t1], dtype=dtype)
        values = built.model(torch.stack([gx.flatten(), gy.flatten()], 1).to(dtype), times)[-1, :, 0]
        shading = ax.contourf(gx, gy, values.view(gx.shape), levels=20, cmap="RdBu")
        fig.colorbar(shading, ax=ax)
        accuracy = job.value("final.test_accuracy")
        ax.set_title(f"p={_p(job)}" + ("" if accuracy is None else f": test acc {100 * accuracy:.1f}%"))
    _curves(axes[0][-1], runs, lambda j: f"p={_p(j)}")
    paths = [save(fig, out / f"{name}.png")]
    largest = runs[-1]
    built = load_trained(largest)
    test, dtype = _test_split(built)
    z = built.model.trajectory(test.x, torch.tensor([built.t0, built.t1], dtype=dtype))[-1]
    dims = [2, 3, 4] if z.shape[1] >= 5 else list(range(min(3, z.shape[1])))  # augmented dims when p ≥ 3
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(projection="3d" if len(dims) == 3 else None)
    ax.scatter(*(z[:, d] for d in dims), c=test.y[:, 0], cmap="RdBu", s=4)
    ax.set_title(f"final features, p={_p(largest)}, dims {dims}")
    return paths + [save(fig, out / f"{name}_features.png")]


@study_figures("anode/dupont_*")
def dupont(jobs: list[Job], out: Path, name: str) -> list[Path]:
    """Training loss and forward NFE per iteration of every run (NODE's NFE grows, ANODE's stays flat)."""
    plt, save = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    label = lambda j: f"{j.row} s{j.seed}"  # noqa: E731
    _curves(left, jobs, label)
    ode_runs = [j for j in jobs if (j.value("nfe_forward.mean") or 0) > 0]  # the ResNet baseline has no NFE
    _curves(right, ode_runs, label, key="nfe_forward", log_scale=False)
    left.set_title(f"{name}: training loss")
    right.set_title("forward NFE per iteration")
    return [save(fig, out / f"{name}.png")]
