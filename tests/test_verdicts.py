"""Verdicts from run directories: the statistics against closed forms and tables, the claims against
the studies' rows and metrics, and fixture sweeps with known answers (reproduced, not reproduced,
inconclusive)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from node_lab.report.published import load_published
from node_lab.report.rundirs import find_jobs
from node_lab.report.stats import betainc, binomial_half_width, student_t_sf, welch_one_sided
from node_lab.report.verdicts import COMPARES, compute, load_claims

# --- statistics -------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [-3.0, -0.5, 0.0, 0.3, 1.0, 2.5, 10.0])
def test_t_sf_matches_the_closed_forms_of_df_1_2_4(t):
    # df = 1 is the Cauchy distribution; df = 2 and df = 4 have closed-form CDFs.
    assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-12)
    assert student_t_sf(t, 2) == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    u = t / math.sqrt(4 + t * t)  # F(t) = 1/2 + (3/4) u (1 - u²/3) for df = 4
    assert student_t_sf(t, 4) == pytest.approx(0.5 - 0.75 * u * (1 - u * u / 3), abs=1e-12)


@pytest.mark.parametrize("df, t95", [(3, 2.353363), (5, 2.015048), (10, 1.812461), (30, 1.697261)])
def test_t_sf_at_the_tabled_one_sided_5_percent_points(df, t95):
    assert student_t_sf(t95, df) == pytest.approx(0.05, abs=2e-7)


def test_t_sf_tends_to_the_normal_tail_for_large_df():
    assert student_t_sf(1.959963984540054, 1e7) == pytest.approx(0.025, abs=1e-6)


def test_betainc_symmetry_and_a_uniform_case():
    assert betainc(1.0, 1.0, 0.3) == pytest.approx(0.3, abs=1e-14)  # I_x(1, 1) = x
    assert betainc(2.5, 0.5, 0.7) == pytest.approx(1 - betainc(0.5, 2.5, 0.3), abs=1e-13)


def test_welch_by_hand():
    # a = 1,2,3, b = 4,5,6: t = -3 / sqrt(2/3), df = 4 exactly (equal variances and sizes).
    t, df, p = welch_one_sided([1, 2, 3], [4, 5, 6], "less")
    assert t == pytest.approx(-3 / math.sqrt(2 / 3)) and df == pytest.approx(4.0)
    assert p == pytest.approx(student_t_sf(3 / math.sqrt(2 / 3), 4))
    assert welch_one_sided([1, 2, 3], [4, 5, 6], "greater")[2] == pytest.approx(1 - p)
    # Unequal variances: the Welch–Satterthwaite df by hand.
    a, b = [0.0, 1.0, 2.0], [0.0, 3.0, 6.0, 9.0]
    va, vb = 1.0 / 3, 15.0 / 4
    _, df, _ = welch_one_sided(a, b, "less")
    assert df == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3))


def test_binomial_half_width():
    assert binomial_half_width(0.5, 100) == pytest.approx(1.959963984540054 * 0.05)
    assert binomial_half_width(0.732, 1000) * 100 == pytest.approx(2.745, abs=1e-3)


# --- claims are about rows and metrics the studies produce ----------------------------------------

CONF = Path(__file__).resolve().parent.parent / "conf" / "experiment"
PHYSICS_KEYS = {"rollout_mse", "energy_mse", "energy_drift", "energy_error_final", "energy_scale", "horizon",
                "derivative_mse"}  # node_lab/physics.py: physics_metrics
ENERGY_CSV = {"drift_at_t", "drift_to_t"}  # node_lab/physics.py: energy_drift_curve


def _study_rows() -> dict[str, set[str]]:
    """report.study → the report.row labels of the experiment presets (interpolations left as written),
    following the presets' defaults onto other experiment presets (``- /experiment/physics/two_body``)."""
    files = {p.relative_to(CONF).with_suffix("").as_posix(): yaml.safe_load(p.read_text()) or {}
             for p in CONF.rglob("*.yaml")}

    def report(name: str, seen: frozenset = frozenset()) -> dict:
        content, merged = files.get(name, {}), {}
        for entry in content.get("defaults") or []:
            if isinstance(entry, str) and entry.startswith("/experiment/") and entry not in seen:
                merged |= report(entry[len("/experiment/"):], seen | {entry})
        return merged | (content.get("report") or {})

    rows: dict[str, set[str]] = {}
    for name in files:
        r = report(name)
        if r.get("study") and r.get("row"):
            rows.setdefault(str(r["study"]), set()).add(str(r["row"]))
    return rows


def _row_exists(selector: dict, labels: set[str]) -> bool:
    if "row" in selector:
        return any(re.fullmatch(re.sub(r"\\\$\\\{[^}]*\\\}", ".+", re.escape(label)), str(selector["row"]))
                   for label in labels)
    if "row_match" in selector:  # the template's fixed part must match, e.g. "^NODE D=" and "NODE D=${dataset.dim}"
        return any(re.search(selector["row_match"], label.split("${")[0]) for label in labels)
    return bool(labels)


def test_every_claim_names_rows_and_metrics_its_study_produces():
    rows, claims = _study_rows(), load_claims()
    assert {c["study"] for c in claims} >= {"sonode/silverbox", "sonode/f16", "sonode/generalised_parity",
                                           "anode/mnist_seed001", "physics/two_body", "physics/double_pendulum"}
    for claim in claims:
        where = f"{claim['file']}: {claim['study']}: {claim['claim']}"
        assert claim["compare"] in COMPARES, where
        assert claim["study"] in rows, f"{where}: no preset sets report.study {claim['study']}"
        selectors = claim.get("rows") or [s for s in (claim.get("a"), claim.get("b")) if s is not None]
        each = claim.get("each") or {}
        expanded = [{**s, each["key"]: v} for s in selectors for v in each["values"]] if each else selectors
        for sel in expanded:
            assert _row_exists(sel, rows[claim["study"]]), f"{where}: no row {sel} in {sorted(rows[claim['study']])}"
        metric = claim["metric"]
        if metric.startswith("energy.csv:"):
            column = metric.split(":", 1)[1].split("@")[0]
            assert column in ENERGY_CSV, where
        elif metric.startswith("physics."):
            assert metric.split(".", 1)[1] in PHYSICS_KEYS, where
        else:
            block, key = metric.split(".", 1)
            assert (block == "final" and re.fullmatch(r"(train|val|test)_(mse|accuracy|loss)", key)
                    or block == "last" and re.fullmatch(r"(val|test)_(mse|accuracy|loss)", key)), where
        if claim["compare"] in ("at_least_published_minus_binomial", "within_factor_of_published"):
            published = load_published()
            names = each.get("values") if each.get("key") == "row" else [claim["a"]["row"]]
            for name in names:
                assert any(p["study"] == claim["study"] and str(p["row"]) == str(name)
                           for p in published), (where, name)


# --- fixture sweeps with known answers -----------------------------------------------------------


def _run(path: Path, study: str, row: str, seed: int, final: dict | None = None, physics: dict | None = None,
         iterations: int = 1000, metric: str = "mse", status: str = "completed", energy: list | None = None,
         config: dict | None = None, last: dict | None = None) -> None:
    (path / ".hydra").mkdir(parents=True)
    cfg = {"seed": seed, "report": {"study": study, "row": row}, "train": {"iterations": iterations}, **(config or {})}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    if status == "failed":
        (path / "failure.json").write_text(json.dumps({"status": "failed", "reason": "RuntimeError: boom"}))
        return
    metrics = {"status": status, "reason": "", "metric": metric, "final": final or {}, "iterations": iterations,
               "seed": seed, "best": {}, "last": last or {}, "nfe_forward": {"mean": 1.0},
               "nfe_backward": {"mean": 0.0}, "wall_time": 1.0}
    if physics is not None:
        metrics["physics"] = physics
    (path / "metrics.json").write_text(json.dumps(metrics))
    if energy is not None:
        rows = "".join(f"{t:g},{a:g},{b:g}\n" for t, a, b in energy)
        (path / "energy.csv").write_text("t,drift_at_t,drift_to_t\n" + rows)


def _by_study(verdicts):
    return {v.claim: v for v in verdicts}


def test_silverbox_reproduced_and_f16_not(tmp_path):
    sonode, anode = [1e-3, 2e-3, 1.5e-3], [1e-1, 2e-1, 1.5e-1]
    for s in range(3):
        _run(tmp_path / f"sb_s{s}", "sonode/silverbox", "SONODE", s, {"test_mse": sonode[s]})
        _run(tmp_path / f"sb_a{s}", "sonode/silverbox", "ANODE", s, {"test_mse": anode[s]})
        _run(tmp_path / f"f16_s{s}", "sonode/f16", "SONODE", s, {"test_mse": anode[s]})  # swapped: SONODE worse
        _run(tmp_path / f"f16_a{s}", "sonode/f16", "ANODE", s, {"test_mse": sonode[s]})
    v = _by_study(compute(find_jobs(tmp_path)))
    sb = v["sonode/silverbox: SONODE test MSE < ANODE test MSE (samples 1000–4999)"]
    f16 = v["sonode/f16: SONODE test MSE < ANODE test MSE (samples 1000–4999)"]
    assert sb.verdict == "reproduced" and f16.verdict == "not reproduced"
    # On log10 both arms have the same spread; the difference of means is exactly 2 decades.
    logs = [math.log10(x) for x in sonode]
    sd = math.sqrt(sum((x - sum(logs) / 3) ** 2 for x in logs) / 2)
    t = -2 / math.sqrt(2 * sd * sd / 3)
    assert f"t = {t:.3g}" in sb.statistic and f"p = {student_t_sf(-t, 4):.3g}" in sb.statistic
    assert "SONODE: 0.0015 ± 0.0005 (n=3)" in sb.ours


def test_inconclusive_too_few_seeds_failed_runs_and_quick_profile(tmp_path):
    for s in range(2):  # silverbox: 2 seeds only
        _run(tmp_path / f"sb_s{s}", "sonode/silverbox", "SONODE", s, {"test_mse": 1e-3 * (s + 1)})
        _run(tmp_path / f"sb_a{s}", "sonode/silverbox", "ANODE", s, {"test_mse": 1e-1 * (s + 1)})
    for s in range(3):  # f16: the quick profile's 100 iterations
        _run(tmp_path / f"f_s{s}", "sonode/f16", "SONODE", s, {"test_mse": 1e-3 * (s + 1)}, iterations=100)
        _run(tmp_path / f"f_a{s}", "sonode/f16", "ANODE", s, {"test_mse": 1e-1 * (s + 1)}, iterations=100)
    for s in range(3):  # two-body: one HNN run failed, leaving 2
        _run(tmp_path / f"tb_h{s}", "physics/two_body", "HNN", s, physics={"energy_mse": 4e-5},
             iterations=10000, status="failed" if s == 0 else "completed", energy=[(0, 0, 0), (20, 1e-3, 1e-3)])
        _run(tmp_path / f"tb_b{s}", "physics/two_body", "baseline", s, physics={"energy_mse": 6e-2},
             iterations=10000, energy=[(0, 0, 0), (20, 1.0, 0.5)])
    v = _by_study(compute(find_jobs(tmp_path), profile="quick"))
    assert v["sonode/silverbox: SONODE test MSE < ANODE test MSE (samples 1000–4999)"].verdict \
        == "inconclusive (too few seeds)"
    f16 = v["sonode/f16: SONODE test MSE < ANODE test MSE (samples 1000–4999)"]
    assert f16.verdict == "inconclusive (quick profile)" and f16.profile == "quick, 100 it."
    drift = v["physics/two_body: HNN energy drift ≤ baseline / 10 over [0, 20] (the paper's horizon)"]
    assert drift.verdict == "inconclusive (failed runs)" and "1 failed" in drift.statistic
    # The rollouts end at t = 20: the [0, 50] claim has no values, never a guess.
    assert v["physics/two_body: HNN energy drift ≤ baseline / 10 over [0, 50] (our finding, not the paper's "
             "horizon)"].verdict == "inconclusive (no values)"


def test_two_body_drift_from_energy_csv_and_published_factor(tmp_path):
    for s in range(3):
        hnn = [(0, 0, 0), (20, 2e-3, 1e-3 * (1 + 0.1 * s)), (50, 2e-3, 1.5e-3)]
        base = [(0, 0, 0), (20, 2e-2, 5e-3 * (1 + 0.1 * s)), (50, 1.0, 0.3 * (1 + 0.1 * s))]
        _run(tmp_path / f"h{s}", "physics/two_body", "HNN", s, physics={"energy_mse": 3.88e-5 * (1 + s)},
             iterations=10000, energy=hnn)
        _run(tmp_path / f"b{s}", "physics/two_body", "baseline", s, physics={"energy_mse": 6e-2},
             iterations=10000, energy=base)
    v = _by_study(compute(find_jobs(tmp_path), profile="full"))
    # [0, 20]: baseline/HNN = 5x — the 10x claim is not reproduced; [0, 50]: 200x — reproduced.
    assert v["physics/two_body: HNN energy drift ≤ baseline / 10 over [0, 20] (the paper's horizon)"].verdict \
        == "not reproduced"
    assert v["physics/two_body: HNN energy drift ≤ baseline / 10 over [0, 50] (our finding, not the paper's "
             "horizon)"].verdict == "reproduced"
    within = v["physics/two_body: HNN energy MSE within 3x of the published value"]
    assert within.verdict == "reproduced" and "ours / paper = 2 " in within.statistic  # mean factor (1+2+3)/3 = 2


def test_mnist_rows_against_published_minus_binomial_and_ordering(tmp_path):
    accs = {"NODE": [0.70, 0.71, 0.72], "ANODE p=10": [0.75, 0.76, 0.77], "IL-ANODE p=10": [0.79, 0.80, 0.81]}
    for row, values in accs.items():
        for s, acc in enumerate(values):
            # final (the best-val model) differs from last: the claim reads the last iteration's, as published
            _run(tmp_path / f"{row}_{s}".replace(" ", "_"), "anode/mnist_seed001", row, s, {"test_accuracy": 0.1},
                 iterations=50, metric="accuracy", last={"test_accuracy": acc, "iteration": 50})
    v = _by_study(compute(find_jobs(tmp_path)))
    # NODE: 71.0 % vs 73.2 − 1.96 sqrt(.732 · .268 / 1000) · 100 = 73.2 − 2.745 = 70.455 → reproduced.
    node = v["anode/mnist_seed001: mean test accuracy ≥ published − binomial 95 % half-width (NODE)"]
    assert node.verdict == "reproduced" and "= 70.45 " in node.statistic and node.paper == "73.2%"
    # ANODE p=10: 76.0 % vs 77.0 − 2.608 = 74.39 → reproduced; IL-ANODE p=10: 80.0 vs 80.7 − 2.45 → reproduced.
    assert v["anode/mnist_seed001: mean test accuracy ≥ published − binomial 95 % half-width (ANODE p=10)"].verdict \
        == "reproduced"
    # Rows without runs have no value: inconclusive, not a guess.
    assert v["anode/mnist_seed001: mean test accuracy ≥ published − binomial 95 % half-width (ANODE p=40)"].verdict \
        == "inconclusive (no values)"
    order = v["anode/mnist_seed001: ordering IL-ANODE p=10 ≥ ANODE p=10 ≥ NODE (test accuracy)"]
    assert order.verdict == "reproduced"


def test_parity_each_odd_dimension_and_summary_starts_with_the_table(tmp_path):
    from node_lab.report.summary import summarise

    for d in (1, 2, 3):
        for s in range(3):
            node = 0.3 * (1 + 0.1 * s) if d % 2 else 1e-4
            _run(tmp_path / f"n{d}_{s}", "sonode/generalised_parity", f"NODE D={d}", s, {"test_mse": node},
                 config={"dataset": {"dim": d}})
            _run(tmp_path / f"s{d}_{s}", "sonode/generalised_parity", f"SONODE D={d}", s,
                 {"test_mse": 1e-4 * (1 + 0.2 * s) if d == 1 else 0.1 * (1 + 0.1 * s)}, config={"dataset": {"dim": d}})
    v = _by_study(compute(find_jobs(tmp_path)))
    assert v["sonode/generalised_parity: NODE test MSE > 10 × SONODE test MSE at D = 1 (odd D)"].verdict == "reproduced"
    assert v["sonode/generalised_parity: NODE test MSE > 10 × SONODE test MSE at D = 3 (odd D)"].verdict \
        == "not reproduced"  # 3x, not 10x
    assert v["sonode/generalised_parity: NODE test MSE > 10 × SONODE test MSE at D = 5 (odd D)"].verdict \
        == "inconclusive (no values)"
    text = summarise(tmp_path)["markdown"].read_text()
    first_table = text.index("| claim | paper |")
    assert first_table < text.index("| configuration |") and "## Verdicts" in text


def test_reproduce_report_starts_with_the_verdict_table(tmp_path, monkeypatch):
    """REPORT.md of `make reproduce`: the verdict table of every study comes before the studies' tables."""
    from node_lab import reproduce

    studies = {"sonode/silverbox": {"title": "silverbox", "claim": "SONODE < ANODE",
                                    "profiles": {"quick": {"args": ["seed=0,1,2"], "expected_minutes": 1}}}}
    (tmp_path / "studies.yaml").write_text(yaml.safe_dump(studies))

    def fake_study(args, sweep_dir):  # the quick profile's 100 iterations, 3 seeds each
        for s in range(3):
            _run(sweep_dir / f"s{s}", "sonode/silverbox", "SONODE", s, {"test_mse": 1e-3 * (s + 1)}, iterations=100)
            _run(sweep_dir / f"a{s}", "sonode/silverbox", "ANODE", s, {"test_mse": 1e-1 * (s + 1)}, iterations=100)
        return 0, 1.0

    monkeypatch.setattr(reproduce, "run_study", fake_study)
    report = reproduce.reproduce("quick", None, tmp_path / "runs", tmp_path / "out", "disabled",
                                 studies_file=tmp_path / "studies.yaml", jobs=1)
    text = report.read_text()
    top = text.index("## Verdicts")
    assert top < text.index("## sonode/silverbox") < text.index("| configuration |")
    line = next(x for x in text[top:].splitlines() if x.startswith("| sonode/silverbox"))
    assert "**inconclusive (quick profile)**" in line and line.endswith("| quick, 100 it. |")
