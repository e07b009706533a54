"""``node-lab reproduce``: run every study of ``studies.yaml`` and write one report beside the
published numbers. Runs land in ``<runs>/<profile>/<study>/`` (stable paths, so a rerun skips the
jobs that already finished with the same config); the report in ``<out>/<stamp>/REPORT.md``."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

import yaml

from node_lab.cli import parallel_jobs
from node_lab.report.summary import VERDICT_NOTE, summarise
from node_lab.report.verdicts import verdict_table

STUDIES = Path(__file__).resolve().parent / "studies.yaml"
STUDY_THREADS = 1  # torch threads of every study's jobs; studies run side by side, cores // this at once


def load_studies(path: Path = STUDIES) -> dict:
    return yaml.safe_load(path.read_text())


def machine() -> str:
    import torch

    return (f"{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
            f"Python {platform.python_version()} · torch {torch.__version__}"
            + (f" · {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else " · no GPU"))


def run_study(args: list[str], sweep_dir: Path) -> tuple[int, float]:
    """One study's sweep as a ``node-lab train -m`` process (this environment's node-lab, not
    whichever is on PATH), its jobs one after another (``hydra/launcher=basic``: :func:`reproduce`
    runs several studies side by side instead, which keeps every core busy to the end)."""
    beside = Path(sys.executable).parent / "node-lab"
    node_lab = str(beside) if beside.is_file() else shutil.which("node-lab") or "node-lab"
    cmd = [node_lab, "train", "-m", *args, "hydra/launcher=basic", f"device.threads={STUDY_THREADS}",
           "train.skip_finished=true", f"hydra.sweep.dir={sweep_dir}"]
    start = time.perf_counter()
    with (sweep_dir.parent / f"{sweep_dir.name}.log").open("w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def reproduce(profile: str, only: list[str] | None, runs: Path, out: Path, wandb_mode: str,
              studies_file: Path = STUDIES, jobs: int | None = None) -> Path:
    studies = load_studies(studies_file)
    chosen = {k: v for k, v in studies.items() if not only or k in only or k.split("/")[-1] in only}
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    report_dir = out / stamp
    report_dir.mkdir(parents=True)
    jobs = jobs or parallel_jobs(STUDY_THREADS)
    expected = sum(s["profiles"][profile].get("expected_minutes", 0) for s in chosen.values())
    print(f"node-lab reproduce: profile {profile}, {len(chosen)} studies, {jobs} at a time, "
          f"≈ {expected:g} study-minutes (≈ {expected / jobs:.0f} min wall)", flush=True)
    # Longest first (expected_minutes), so the last study to finish is a short one.
    order = sorted(chosen, key=lambda n: -chosen[n]["profiles"][profile].get("expected_minutes", 0))
    args = {name: [str(a) for a in chosen[name]["profiles"][profile]["args"]] for name in chosen}
    started, results = time.perf_counter(), {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {}
        for name in order:
            sweep_dir = runs / profile / name
            sweep_dir.parent.mkdir(parents=True, exist_ok=True)
            futures[pool.submit(run_study, args[name], sweep_dir)] = name
        print("\n".join(f"  {name}: node-lab train -m {' '.join(args[name])}" for name in order), flush=True)
        for done, future in enumerate(as_completed(futures), 1):
            name = futures[future]
            code, wall = future.result()
            sweep_dir = runs / profile / name
            study_dir = report_dir / name.replace("/", "__")
            result = (summarise(sweep_dir, study_dir, title=chosen[name]["title"], profile=profile)
                      if sweep_dir.is_dir() else None)
            status = "ok" if code == 0 else f"exit code {code} (see {sweep_dir}.log)"
            elapsed = (time.perf_counter() - started) / 60
            print(f"[{done}/{len(chosen)}] {name}: {wall / 60:.1f} min, {result['jobs'] if result else 0} jobs, "
                  f"{status} ({elapsed:.1f} min elapsed)", flush=True)
            results[name] = (wall, status, result, study_dir)
    sections = [_section(name, chosen[name], profile, args[name], *results[name], report_dir) for name in chosen]
    header = [f"# node-lab reproduction report ({profile})", "",
              f"- date: {stamp}", f"- machine: {machine()}",
              f"- total wall time: {(time.perf_counter() - started) / 60:.1f} min ({jobs} studies at a time, "
              "each running its jobs one after another with one torch thread)",
              "- numbers are mean ± std over seeds of the final test metric; published numbers from "
              "node_lab/published/ with their provenance in the notes column", ""]
    verdicts = [v for name in chosen if results[name][2] for v in results[name][2]["verdicts"]]
    if verdicts:
        header += ["## Verdicts", "", VERDICT_NOTE, ""] + verdict_table(verdicts) + [""]
    report = report_dir / "REPORT.md"
    report.write_text("\n".join(header + sections) + "\n")
    if wandb_mode != "disabled":
        _log_wandb(report_dir, stamp, wandb_mode)
    print(f"report: {report}", flush=True)
    return report


def _section(name, study, profile, args, wall, status, result, study_dir, report_dir) -> str:
    lines = [f"## {name}: {study['title']}", "", f"Claim: {study.get('claim', '')}", "",
             f"Command: `node-lab train -m {' '.join(args)}` (profile {profile}, {wall / 60:.1f} min, {status})", ""]
    if result:
        body = result["markdown"].read_text().split("\n", 2)[-1]  # drop the summary's own title
        rel = study_dir.relative_to(report_dir)
        body = re.sub(r"^## ", "### ", body, flags=re.M)  # the summary's sections sit under the study's
        lines.append(re.sub(r"\]\(([^/)]+\.png)\)", rf"]({rel}/\1)", body))  # the summary's figures, from here
    return "\n".join(lines)


def _log_wandb(report_dir: Path, stamp: str, mode: str) -> None:
    """The report as one W&B run of group ``reproduce-<stamp>``: summary tables and figures."""
    import csv

    import wandb

    run = wandb.init(project="node-lab", group=f"reproduce-{stamp}", name="report", job_type="report",
                     dir=str(report_dir), mode=mode, settings=wandb.Settings(silent=True))
    try:
        for table in report_dir.glob("*/summary.csv"):
            with table.open() as f:
                rows = list(csv.reader(f))
            if len(rows) > 1:
                run.log({f"{table.parent.name}/results": wandb.Table(columns=rows[0], data=rows[1:])})
        for png in report_dir.glob("*/*.png"):
            run.log({f"{png.parent.name}/{png.stem}": wandb.Image(str(png))})
    finally:
        run.finish()
