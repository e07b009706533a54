"""Verdicts: every claim of ``node_lab/published/*.yaml`` (entries with a ``claim`` key, schema in
node_lab/published/README.md) computed from run directories only: reproduced / not reproduced /
inconclusive, with ours as mean ± std (n), the statistic and the paper's number."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from node_lab.report.published import PUBLISHED_DIR, load_published, scale
from node_lab.report.rundirs import Job
from node_lab.report.stats import binomial_half_width, mean_sd, welch_one_sided

COMPARES = ("less", "greater", "ordering", "at_least_published_minus_binomial", "within_factor_of_published")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def load_claims(directory: Path = PUBLISHED_DIR) -> list[dict]:
    """The ``claim`` entries of every file, in file order, each with its file name."""
    claims = []
    for file in sorted(Path(directory).glob("*.yaml")):
        for entry in yaml.safe_load(file.read_text()) or []:
            if isinstance(entry, dict) and "claim" in entry:
                if entry.get("compare") not in COMPARES:
                    raise ValueError(f"{file.name}: claim {entry['claim']!r}: compare must be one of {COMPARES}")
                claims.append({**entry, "file": file.name})
    return claims


def _config_value(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def matches(job: Job, selector: dict) -> bool:
    """``row``: report.row exactly; ``row_match``: a regular expression on it; any other key: a dotted
    config key whose value equals (as text) the given value or one of a list of values."""
    for key, want in selector.items():
        if key == "row":
            if job.row != str(want):
                return False
        elif key == "row_match":
            if not re.search(str(want), job.row):
                return False
        else:
            have = _config_value(job.config, key)
            wants = want if isinstance(want, list) else [want]
            if str(have) not in {str(w) for w in wants}:
                return False
    return True


def job_value(job: Job, metric: str) -> float | None:
    """A metric of one run: a dotted metrics.json path (``final.test_mse``, ``physics.energy_mse``) or
    ``energy.csv:<column>@<t>`` (the column at time t of the run's energy.csv; None if the rollout
    ends before t)."""
    if metric.startswith("energy.csv:"):
        column, _, t = metric[len("energy.csv:"):].partition("@")
        file = job.path / "energy.csv"
        if not file.is_file():
            return None
        with file.open() as f:
            rows = [(float(r["t"]), float(r[column])) for r in csv.DictReader(f) if r.get(column) not in (None, "")]
        target = float(t)
        close = [v for time, v in rows if abs(time - target) <= 1e-6 * max(1.0, abs(target))]
        return close[0] if close else None
    return job.value(metric)


@dataclass
class Arm:
    label: str
    values: list[float]
    failed: int
    iterations: list[int]

    @property
    def n(self) -> int:
        return len(self.values)

    def ours(self, factor: float = 1.0, unit: str = "") -> str:
        if not self.values:
            return f"{self.label}: – (n=0)"
        mean, sd = mean_sd([v * factor for v in self.values])
        spread = "" if math.isnan(sd) else f" ± {sd:.2g}"
        return f"{self.label}: {mean:.4g}{spread}{unit} (n={self.n})"


def arm(jobs: list[Job], study: str, selector: dict, metric: str, label: str | None = None) -> Arm:
    chosen = [j for j in jobs if j.study == study and matches(j, selector)]
    values = []
    for j in chosen:
        if j.status == "completed":
            v = job_value(j, metric)
            if v is not None and math.isfinite(v):
                values.append(float(v))
    failed = sum(j.status in ("failed", "diverged", "interrupted") for j in chosen)
    iterations = [int(j.metrics["iterations"]) for j in chosen if isinstance(j.metrics.get("iterations"), int)]
    return Arm(label or arm_label(selector), values, failed, iterations)


def arm_label(selector: dict) -> str:
    """``{row: ANODE}`` → ANODE; ``{row_match: "^NODE D=", dataset.dim: 3}`` → NODE D= dataset.dim=3."""
    head = str(selector.get("row") or str(selector.get("row_match", "")).strip("^$"))
    rest = " ".join(f"{k}={v}" for k, v in selector.items() if k not in ("row", "row_match"))
    return " ".join(p for p in (head, rest) if p) or "all rows"


@dataclass
class Verdict:
    claim: str
    paper: str
    ours: str
    statistic: str
    verdict: str
    profile: str
    source: str = ""

    def line(self) -> str:
        cells = [self.claim, self.paper, self.ours, self.statistic, f"**{self.verdict}**", self.profile]
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _published(claim: dict, published: list[dict]) -> dict | None:
    row = claim.get("a", {}).get("row")
    for p in published:
        if p["study"] == claim["study"] and str(p["row"]) == str(row) and claim["metric"].endswith(
                "_".join(str(p["metric"]).replace("final ", "").split())):
            return p
    return None


def _expand(claim: dict) -> list[dict]:
    """A claim with ``each: {key, values}`` becomes one claim per value (``{value}`` in its name)."""
    each = claim.get("each")
    if not each:
        return [claim]
    out = []
    for value in each["values"]:
        sub = {**claim, "claim": claim["claim"].format(value=value)}
        for side in ("a", "b"):
            if side in claim:
                sub[side] = {**claim[side], each["key"]: value}
        if "rows" in claim:
            sub["rows"] = [{**r, each["key"]: value} for r in claim["rows"]]
        out.append(sub)
    return out


def compute(jobs: list[Job], claims: list[dict] | None = None, profile: str | None = None,
            published: list[dict] | None = None) -> list[Verdict]:
    """One verdict per claim (and per value of an ``each`` claim) whose study has runs in ``jobs``."""
    claims = load_claims() if claims is None else claims
    published = load_published() if published is None else published
    studies = {j.study for j in jobs}
    out = []
    for claim in claims:
        if claim["study"] not in studies:
            continue
        for sub in _expand(claim):
            out.append(judge(jobs, sub, profile, published))
    return out


def _profile(arms: list[Arm], profile: str | None) -> tuple[str, bool]:
    """The profile cell and whether the runs trained less than the claim's protocol."""
    its = sorted({i for a in arms for i in a.iterations})
    text = (profile or "runs") + (f", {its[0]}–{its[-1]} it." if len(its) > 1 else f", {its[0]} it." if its else "")
    return text, bool(its)


def judge(jobs: list[Job], claim: dict, profile: str | None, published: list[dict]) -> Verdict:
    study, metric, compare = claim["study"], claim["metric"], claim["compare"]
    min_seeds, alpha = int(claim.get("min_seeds", 3)), float(claim.get("alpha", 0.05))
    log = bool(claim.get("log", False))
    name = f"{study}: {claim['claim']}"
    if compare == "ordering":
        arms = [arm(jobs, study, sel, metric) for sel in claim["rows"]]
    else:
        arms = [arm(jobs, study, claim["a"], metric)] + ([arm(jobs, study, claim["b"], metric)] if "b" in claim else [])
    pub = _published(claim, published) if compare.endswith("published") or compare.endswith("binomial") else None
    factor, unit = (scale(pub), pub.get("unit", "")) if pub else (float(claim.get("scale", 1.0)), claim.get("unit", ""))
    ours = "; ".join(a.ours(factor, unit) for a in arms)
    paper = str(claim.get("paper") or (f"{pub['value']}{unit}" if pub else ""))
    prof, _ = _profile(arms, profile)

    def verdict(statistic: str, result: str) -> Verdict:
        return Verdict(name, paper, ours, statistic, result, prof, str(claim.get("source", "")))

    # Inconclusive before any statistic: a run too short for the protocol, failed runs, too few seeds.
    need = claim.get("min_iterations")
    its = [i for a in arms for i in a.iterations]
    if need is not None and its and min(its) < int(need):
        return verdict(f"runs trained {min(its)} < {need} iterations", f"{INCONCLUSIVE} (quick profile)")
    short = [a for a in arms if a.n < min_seeds]
    if short:
        failed = sum(a.failed for a in short)
        why = "no values" if any(a.n == 0 for a in short) else "failed runs" if failed else "too few seeds"
        return verdict(f"n < {min_seeds} in " + ", ".join(a.label for a in short)
                       + (f"; {failed} failed/diverged" if failed else ""), f"{INCONCLUSIVE} ({why})")

    def tr(v: float) -> float:
        if not log:
            return v
        return math.log10(v) if v > 0 else -math.inf

    if compare in ("less", "greater"):
        k = float(claim.get("factor", 1.0))
        a_vals = [tr(v) for v in arms[0].values]
        b_vals = [tr(k * v) for v in arms[1].values]
        if any(math.isinf(v) for v in a_vals + b_vals):
            return verdict("a value ≤ 0 on a log scale", INCONCLUSIVE)
        t, df, p = welch_one_sided(a_vals, b_vals, compare)
        stat = f"Welch one-sided{' on log10' if log else ''}: t = {t:.3g}, df = {df:.3g}, p = {p:.3g}"
        return verdict(stat, REPRODUCED if p < alpha else NOT_REPRODUCED)
    if compare == "ordering":
        ps = []
        for hi, lo in zip(arms, arms[1:]):
            t, df, p = welch_one_sided([tr(v) for v in hi.values], [tr(v) for v in lo.values], "greater")
            ps.append(f"{hi.label} > {lo.label}: p = {p:.3g}")
        worst = max(float(s.rsplit("= ", 1)[1]) for s in ps)
        return verdict("Welch one-sided: " + "; ".join(ps), REPRODUCED if worst < alpha else NOT_REPRODUCED)
    if pub is None:
        return verdict("no published number for this row", INCONCLUSIVE)
    value = float(pub["value"])
    mean, _ = mean_sd([v * factor for v in arms[0].values])
    if compare == "at_least_published_minus_binomial":
        n_test = int(claim["n_test"])
        half = binomial_half_width(value / factor, n_test) * factor
        stat = f"mean {mean:.4g} vs {value:.4g} − {half:.2g} = {value - half:.4g} (binomial 95 %, n = {n_test})"
        return verdict(stat, REPRODUCED if mean >= value - half else NOT_REPRODUCED)
    k = float(claim.get("factor", 3.0))
    ratio = mean / value if value else math.inf
    stat = f"ours / paper = {ratio:.3g} (within [1/{k:g}, {k:g}]?)"
    return verdict(stat, REPRODUCED if 1.0 / k <= abs(ratio) <= k else NOT_REPRODUCED)


HEADER = ["| claim | paper | ours (mean ± std, n) | statistic | verdict | profile |", "|---|---|---|---|---|---|"]


def verdict_table(verdicts: list[Verdict]) -> list[str]:
    if not verdicts:
        return []
    return HEADER + [v.line() for v in verdicts]
