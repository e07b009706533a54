"""Hydra callbacks: record failed jobs, and summarise every multirun when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Set in the launching process when a sweep had failed or diverged jobs; the CLI turns it into exit code 1.
SWEEP_FAILURES = {"count": 0}
# The summaries written by the sweeps of this process (the CLI prints their tables when the sweep ends).
SWEEP_SUMMARIES: list[Path] = []


class SweepSummary(Callback):
    """``on_job_end``: a job that raised leaves ``failure.json`` (its reason) in its run directory.
    ``on_multirun_end``: ``summary.md``, ``summary.csv``, ``jobs.csv`` and ``summary.png`` in the
    sweep directory (see :func:`node_lab.report.summary.summarise`)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.FAILED:
            return
        from node_lab.checkpoints import write_failure

        # The job's own output folder, never job_return.working_dir: with hydra.job.chdir=false that is the
        # folder node-lab was launched from.
        run_dir = Path(config.hydra.runtime.output_dir)
        if not (run_dir / "failure.json").is_file():
            write_failure(run_dir, job_return._return_value)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from node_lab.report.summary import summarise

        sweep = Path(config.hydra.sweep.dir)
        if not sweep.is_dir():
            return
        result = summarise(sweep, title=f"Sweep {sweep}")
        SWEEP_FAILURES["count"] += result["failed"] + result["diverged"]
        SWEEP_SUMMARIES.append(result["markdown"])
        from node_lab.tracking import log_sweep

        log_sweep(sweep, config)
        log.info("sweep summary: %s (%d jobs, %d failed, %d diverged)", result["markdown"], result["jobs"],
                 result["failed"], result["diverged"])
