"""Seed ensembles: the replicas of one configuration in a sweep, combined into a predictive
distribution (seed 002's question: posterior predictives from NODEs by deep ensembles).

Trajectory tasks: predictive mean and a ±2σ band over the members, and the coverage of the held-out
(observed test) points by the band; and the scores every stochastic run reports
(:func:`node_lab.metrics.predictive_scores`, members as samples: ``test_nll`` of the Gaussian with
the members' mean and variance, ``test_crps``, ``test_coverage90`` of the members' central 90 % band,
``test_mean_mse``), so a seed ensemble and a neural SDE compare on the same numbers. With few members
the empirical 90 % band is the members' range shrunk a little (5 members: the band between the
interpolated 5 % and 95 % quantiles), so its coverage is low by construction — part of the answer.
Classifiers: the ensemble's accuracy (mean output) beside the
members'. Everything is read from the run directories (the checkpoints hold the resolved config and
the weights); the members are evaluated on the data of the first member.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from node_lab.errors import ConfigError
from node_lab.metrics import predictive_scores
from node_lab.report.rundirs import Job, has_model, load_trained
from node_lab.report.summary import group_rows, slug
from node_lab.rundir import write_text

log = logging.getLogger(__name__)


def band(predictions: np.ndarray, width: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(members, …) → mean, lower, upper of mean ± width·σ (σ over members, ddof=1)."""
    mean = predictions.mean(axis=0)
    std = predictions.std(axis=0, ddof=1) if len(predictions) > 1 else np.zeros_like(mean)
    return mean, mean - width * std, mean + width * std


def coverage(targets: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of targets inside [lower, upper]."""
    return float(np.mean((targets >= lower) & (targets <= upper)))


@torch.no_grad()
def ensemble_row(jobs: list[Job], out: Path, label: str) -> dict | None:
    from node_lab.datasets.base import Task

    members = []
    for job in jobs:
        if job.status == "completed" and has_model(job):
            try:
                members.append(load_trained(job))
            except ConfigError as err:  # a damaged checkpoint: this member is left out, with a warning
                log.warning("ensemble: skipped %s (%s)", job.path, err.message())
    if len(members) < 2:
        return None
    first = members[0]
    data = first.dataset.load()
    test = data.test
    dtype = next(first.model.parameters()).dtype
    test = test.to(torch.device("cpu"), dtype)
    times = test.times if test.times is not None else torch.tensor([first.t0, first.t1], dtype=dtype)
    preds = np.stack([m.model(test.x, times, test.v0).numpy() for m in members])  # (M, T, B, out)
    result = {"configuration": label, "members": len(members)}
    if data.task == Task.trajectory:
        mask = test.observed.numpy() if test.observed is not None else np.ones(len(times), bool)
        mean, lo, hi = band(preds)
        y = test.y.numpy()
        result["coverage_2sigma"] = coverage(y[mask], lo[mask], hi[mask])
        result["ensemble_test_mse"] = float(np.mean((mean[mask] - y[mask]) ** 2))
        result["member_test_mse"] = [float(np.mean((p[mask] - y[mask]) ** 2)) for p in preds]
        scores = predictive_scores(torch.from_numpy(preds[:, mask]).double(), torch.from_numpy(y[mask]).double())
        result.update({f"test_{key}": value for key, value in scores.items()})
        result["figure"] = _plot_band(out / f"ensemble_{slug(label)}.png", times.numpy(), mean, lo, hi, y, mask)
    elif data.task == Task.classification:
        final = preds[:, -1]  # (M, B, out)
        y = test.y.numpy()
        if data.loss == "cross_entropy":
            probs = torch.softmax(torch.from_numpy(final), dim=-1).numpy()
            correct = lambda p: float(np.mean(p.argmax(-1) == y))  # noqa: E731
            result["ensemble_accuracy"] = correct(probs.mean(0))
            result["member_accuracy"] = [correct(p) for p in probs]
        else:
            correct = lambda p: float(np.mean(np.sign(p) == np.sign(y)))  # noqa: E731
            result["ensemble_accuracy"] = correct(final.mean(0))
            result["member_accuracy"] = [correct(p) for p in final]
    else:
        mean, lo, hi = band(preds[:, -1])
        y = test.y.numpy()
        result["coverage_2sigma"] = coverage(y, lo, hi)
        result["ensemble_test_mse"] = float(np.mean((mean - y) ** 2))
    return result


def _plot_band(path: Path, t, mean, lo, hi, y, mask) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for b in range(mean.shape[1]):  # first output dim of each trajectory
        ax.fill_between(t, lo[:, b, 0], hi[:, b, 0], alpha=0.25, color="C0", label="±2σ" if b == 0 else None)
        ax.plot(t, mean[:, b, 0], color="C0", lw=1, label="ensemble mean" if b == 0 else None)
        ax.scatter(t[~mask], y[~mask, b, 0], s=8, color="k", label="train data" if b == 0 else None)
        ax.scatter(t[mask], y[mask, b, 0], s=8, color="C3", label="held-out data" if b == 0 else None)
    ax.set_xlabel("t")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def ensemble(root: Path, jobs: list[Job]) -> list[dict]:
    """Ensemble every configuration of ``jobs`` with ≥2 completed seeds; writes ensemble.json/md."""
    results = [r for row in group_rows(jobs) if (r := ensemble_row(row.jobs, root, row.label)) is not None]
    if not results:  # nothing to combine (a single run, one seed per configuration): write nothing
        return results
    write_text(root / "ensemble.json", json.dumps(results, indent=2) + "\n")
    lines = ["# Seed ensembles", "", "| configuration | members | ensemble | members (mean) | ±2σ coverage "
             "| test NLL | CRPS | 90% coverage |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "ensemble_accuracy" in r:
            lines.append(f"| {r['configuration']} | {r['members']} | accuracy {r['ensemble_accuracy']:.4g} | "
                         f"{np.mean(r['member_accuracy']):.4g} | – | – | – | – |")
        else:
            member = f"{np.mean(r['member_test_mse']):.4g}" if "member_test_mse" in r else "–"
            scores = (f"{r['test_nll']:.4g} | {r['test_crps']:.4g} | {r['test_coverage90']:.2f}" if "test_nll" in r
                      else "– | – | –")
            lines.append(f"| {r['configuration']} | {r['members']} | test MSE {r['ensemble_test_mse']:.4g} | "
                         f"{member} | {r['coverage_2sigma']:.2f} | {scores} |")
        if r.get("figure"):
            lines.append(f"\n![{r['configuration']}]({r['figure']})\n")
    write_text(root / "ensemble.md", "\n".join(lines) + "\n")
    return results
