"""Sweep summaries: one row per configuration (mean ± std over seeds), a CSV of all jobs, a plot of
the metric against the swept key, failed jobs with their reason, and published numbers beside ours."""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from node_lab.report.figures import draw_study_figures
from node_lab.report.published import load_published, metric_paths, scale
from node_lab.report.rundirs import Job, find_jobs, unlabelled
from node_lab.report.stats import mean_sd
from node_lab.report.sweep_figure import is_number, plot_sweep
from node_lab.report.verdicts import compute as compute_verdicts
from node_lab.report.verdicts import load_claims, verdict_table
from node_lab.rundir import atomic_open, write_text

log = logging.getLogger(__name__)

COLUMNS = {  # label → metrics.json path ({m} = the run's metric name); final = the selected model (train.select)
    "final test {m}": "final.test_{m}",
    "final val {m}": "final.val_{m}",
    "best val {m}": "best.val_{m}",
    "final train {m}": "final.train_{m}",
    "NFE fwd/iter": "nfe_forward.mean",
    "NFE bwd/iter": "nfe_backward.mean",
    "wall s": "wall_time",
}


VERDICT_NOTE = ("Claims of node_lab/published/*.yaml computed from these run directories "
                "(node_lab/report/verdicts.py; statistics and schema: node_lab/published/README.md).")


@dataclass
class Row:
    study: str | None
    label: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return next((j.metrics.get("metric") for j in self.jobs if j.metrics.get("metric")), "metric")

    def values(self, path: str) -> list[float]:
        out = [j.value(path.format(m=self.metric)) for j in self.jobs if j.status == "completed"]
        return [v for v in out if v is not None and math.isfinite(v)]

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)

    @property
    def restarted(self) -> int:
        return sum(bool(j.metrics.get("restarts")) for j in self.jobs)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (node_lab.report.stats.mean_sd); None for what one or no value can't give."""
    if not values:
        return None, None
    mean, sd = mean_sd(values)
    return mean, (sd if len(values) > 1 else None)


def fmt(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.4g}" if std is None else f"{mean:.4g} ± {std:.2g}"


def group_rows(jobs: list[Job]) -> list[Row]:
    """Seed replicas of one configuration form a row, labelled by report.row or by the swept keys."""
    keys = swept_keys(jobs)
    rows: dict[tuple, Row] = {}
    for job in jobs:
        label = job.row if job.labelled or not keys else " ".join(f"{k}={job.overrides.get(k)}" for k in keys)
        rows.setdefault((job.study, label), Row(job.study, label)).jobs.append(job)
    return list(rows.values())


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs (the seed excluded)."""
    keys = dict.fromkeys(k for j in jobs for k in j.overrides if not unlabelled(k))
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def published_for(row: Row, published: list[dict]) -> list[dict]:
    return [p for p in published if p["study"] == row.study and str(p["row"]) == row.label]


def summarise(root: Path, out: Path | None = None, title: str | None = None,
              published_dir: Path | None = None, profile: str | None = None) -> dict:
    """Write summary.md, summary.csv, jobs.csv and summary.png for the runs under ``root`` into
    ``out`` (default ``root``). summary.md starts with the verdict of every claim of
    node_lab/published/ about the studies found (``profile``: the profile the runs came from, for
    the table). Returns counts, the rows and the verdicts."""
    root, out = Path(root), Path(out or root)
    out.mkdir(parents=True, exist_ok=True)
    found = find_jobs(root)
    unreadable = [j for j in found if j.status == "unreadable"]
    if unreadable:
        log.warning("skipped %d unreadable run(s): %s", len(unreadable),
                    ", ".join(f"{j.path} ({j.reason})" for j in unreadable))
    jobs = [j for j in found if j.status != "unreadable"]
    rows = group_rows(jobs)
    published = load_published(published_dir) if published_dir else load_published()
    claims = load_claims(published_dir) if published_dir else load_claims()
    verdicts = compute_verdicts(jobs, claims, profile, published)
    write_jobs_csv(out / "jobs.csv", jobs)
    table = write_summary_csv(out / "summary.csv", rows, extra_columns(jobs))
    plot = plot_metric(out / "summary.png", rows, jobs)
    lines = [f"# {title or 'Summary of ' + str(root)}", "",
             f"{len(jobs)} jobs: " + ", ".join(f"{s} {sum(j.status == s for j in jobs)}"
                                               for s in ("completed", "diverged", "failed", "incomplete")
                                               if any(j.status == s for j in jobs)), ""]
    if verdicts:
        lines += ["## Verdicts", "", VERDICT_NOTE, ""] + verdict_table(verdicts) + ["", "## Runs", ""]
    header = ["configuration", "seeds"] + (table[0]["_cols"] if table else list(COLUMNS))
    header += ["diverged", "failed", "restarted"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table:
        lines.append("| " + " | ".join(str(r[h]) for h in ["configuration", "seeds", *r["_cols"],
                                                            "diverged", "failed", "restarted"]) + " |")
    comparison = compare_published(rows, published)
    if comparison:
        lines += ["", "## Beside the published numbers", "",
                  "| configuration | metric | ours (mean ± std) | published | difference | source | notes |",
                  "|---|---|---|---|---|---|---|"] + comparison
    if unreadable:
        lines += ["", "## Skipped (unreadable run directories)", ""]
        lines += [f"- `{j.path}`: {j.reason}" for j in unreadable]
    bad = [j for j in jobs if j.status in ("failed", "diverged")]
    if bad:
        lines += ["", "## Failed or diverged jobs", ""]
        lines += [f"- `{j.path}` ({j.row}, seed {j.seed}): {j.status}: {j.reason or 'no reason recorded'}"
                  for j in bad]
    if plot:
        lines += ["", f"![metric vs swept key]({plot.name})"]
    studies = draw_study_figures(jobs, out)
    if studies:
        lines += ["", "## Study figures", ""] + studies
    gallery = copy_figures(rows, out)
    if gallery:
        lines += ["", "## Figures (first completed seed of each configuration)", ""] + gallery
    write_text(out / "summary.md", "\n".join(lines) + "\n")
    return {"jobs": len(jobs), "failed": sum(j.status == "failed" for j in jobs),
            "diverged": sum(j.status == "diverged" for j in jobs), "rows": table, "markdown": out / "summary.md",
            "verdicts": verdicts}


def copy_figures(rows: list[Row], out: Path) -> list[str]:
    """The run figures (predictions, loss, …) of each configuration's first completed seed, copied
    next to the summary so a report directory stands alone."""
    import shutil

    lines = []
    for r in rows:
        job = next((j for j in r.jobs if j.status == "completed"), None)
        if job is None or job.path.resolve() == out.resolve():
            continue
        for png in sorted(job.path.glob("*.png")):
            name = f"fig_{slug(r.label)}_{png.name}"
            shutil.copyfile(png, out / name)
            lines.append(f"![{r.label}: {png.stem}]({name})")
    return lines


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60]


def write_jobs_csv(path: Path, jobs: list[Job]) -> None:
    keys = ["path", "study", "row", "seed", "status", "reason", "metric", "final test", "best val", "nfe_forward",
            "nfe_backward", "wall_time", "restarts"]
    with atomic_open(path) as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for j in jobs:
            m = j.metrics.get("metric", "")
            writer.writerow([j.path, j.study or "", j.row, j.seed, j.status, j.reason, m,
                             j.value(f"final.test_{m}"), j.value(f"best.val_{m}"), j.value("nfe_forward.mean"),
                             j.value("nfe_backward.mean"), j.value("wall_time"), j.metrics.get("restarts", 0)])


def extra_columns(jobs: list[Job]) -> dict[str, str]:
    """Study-specific scalars the runs report beyond the standard columns: other ``final`` metrics
    (e.g. the interpretability error) and the ``physics`` block (energy MSE, drift, rollout MSE)."""
    extra: dict[str, str] = {}
    for job in jobs:
        metric = job.metrics.get("metric", "")
        standard = {f"{split}_{key}" for split in ("train", "val", "test") for key in ("loss", metric)}
        for block in ("final", "physics"):
            for key, value in (job.metrics.get(block) or {}).items():
                if key not in standard and isinstance(value, (int, float)) and not isinstance(value, bool):
                    extra.setdefault(f"{'final ' if block == 'final' else ''}{key.replace('_', ' ')}", f"{block}.{key}")
    return extra


def write_summary_csv(path: Path, rows: list[Row], extra: dict[str, str] | None = None) -> list[dict]:
    table = []
    for r in rows:
        cols = {c.format(m=r.metric): p for c, p in COLUMNS.items()} | (extra or {})
        entry = {"configuration": r.label, "study": r.study or "", "seeds": r.count("completed"),
                 "diverged": r.count("diverged"), "failed": r.count("failed"), "restarted": r.restarted,
                 "_cols": list(cols)}
        for label, p in cols.items():
            mean, std = mean_std(r.values(p))
            entry[label], entry[label + " mean"], entry[label + " std"] = fmt(mean, std), mean, std
        table.append(entry)
    with atomic_open(path) as f:
        fields = ["configuration", "study", "seeds", "diverged", "failed", "restarted"]
        fields += [k for k in (table[0] if table else {}) if k.endswith(" mean") or k.endswith(" std")]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    return table


def compare_published(rows: list[Row], published: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        for p in published_for(r, published):
            values = next((v for path in metric_paths(p["metric"]) if (v := r.values(path))), [])
            mean, std = mean_std(values)
            k = scale(p)
            ours = None if mean is None else (mean * k, (std or 0.0) * k)
            diff = "–" if ours is None else f"{ours[0] - float(p['value']):+.4g}"
            ours = ours if ours is None or std is not None else (ours[0], None)
            unit = p.get("unit", "")
            lines.append(f"| {r.label} | {p['metric']} | {fmt(*ours) if ours else '–'}{unit} | {p['value']}{unit} "
                         f"| {diff} | {p.get('source', '')} | {p.get('notes', '')} |")
    return lines


def plot_metric(path: Path, rows: list[Row], jobs: list[Job]) -> Path | None:
    """summary.png (node_lab.report.sweep_figure) against the first numeric swept key (e.g. augmentation
    dim, D, noise), the first key if none is numeric."""
    keys = swept_keys(jobs)
    keys.sort(key=lambda k: not all(is_number(j.overrides.get(k)) for j in jobs if k in j.overrides))
    return plot_sweep(path, rows, keys)
