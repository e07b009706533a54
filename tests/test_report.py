"""Sweep summaries and reports, built from run directories only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from node_lab import job
from node_lab.build import build
from node_lab.report.rundirs import find_jobs
from node_lab.report.summary import summarise


def _fake_run(path: Path, seed: int, dim: int, acc: float | None, status: str = "completed", row: str | None = None):
    """A run directory as node-lab writes it (only the files the report reads)."""
    (path / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "augmentation": {"dim": dim}, "report": {"study": "toy/study", "row": row}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"augmentation.dim={dim}", f"seed={seed}"]))
    if status == "failed":
        (path / "failure.json").write_text(json.dumps({"status": "failed", "reason": "ConfigError: boom"}))
        return
    metrics = {"status": status, "reason": "" if status == "completed" else "iteration 3: underflow in dt",
               "metric": "accuracy", "final": {} if acc is None else {"test_accuracy": acc},
               "best": {"test_accuracy": acc, "iteration": 5}, "nfe_forward": {"mean": 20.0},
               "nfe_backward": {"mean": 0.0}, "wall_time": 1.0, "seed": seed}
    (path / "metrics.json").write_text(json.dumps(metrics))


def test_summary_from_fixture_run_dirs(tmp_path):
    sweep = tmp_path / "sweep"
    accs = {(0, 0): 0.5, (0, 1): 0.7, (2, 0): 0.9, (2, 1): 1.0}
    for n, ((dim, seed), acc) in enumerate(accs.items()):
        _fake_run(sweep / str(n), seed, dim, acc)
    _fake_run(sweep / "4", 2, 2, None, status="diverged")
    _fake_run(sweep / "5", 3, 2, None, status="failed")
    result = summarise(sweep)
    rows = {r["configuration"]: r for r in result["rows"]}
    assert set(rows) == {"augmentation.dim=0", "augmentation.dim=2"}
    assert rows["augmentation.dim=0"]["final test accuracy mean"] == pytest.approx(0.6)
    assert rows["augmentation.dim=0"]["final test accuracy std"] == pytest.approx(0.1414213, rel=1e-5)
    assert rows["augmentation.dim=2"]["final test accuracy mean"] == pytest.approx(0.95)
    assert (rows["augmentation.dim=2"]["diverged"], rows["augmentation.dim=2"]["failed"]) == (1, 1)
    text = result["markdown"].read_text()
    assert "ConfigError: boom" in text and "underflow in dt" in text  # failures listed with their reason
    for name in ("summary.md", "summary.csv", "jobs.csv", "summary.png"):
        assert (sweep / name).is_file(), name
    assert len((sweep / "jobs.csv").read_text().strip().splitlines()) == 1 + 6


def test_study_specific_scalars_get_their_own_columns(tmp_path):
    """Scalars beyond the standard columns (interpretability error, the physics block) are summarised too."""
    for seed, error in enumerate([0.1, 0.3]):
        _fake_run(tmp_path / str(seed), seed, 0, 0.5)
        metrics = json.loads((tmp_path / str(seed) / "metrics.json").read_text())
        metrics["final"]["interpretability_error"] = error
        metrics["physics"] = {"energy_drift": 10 * error}
        (tmp_path / str(seed) / "metrics.json").write_text(json.dumps(metrics))
    (row,) = summarise(tmp_path)["rows"]
    assert row["final interpretability error mean"] == pytest.approx(0.2)
    assert row["energy drift mean"] == pytest.approx(2.0)
    assert "final interpretability error" in (tmp_path / "summary.md").read_text()


def test_row_labels_are_resolved_from_the_saved_config(tmp_path):
    """Hydra saves interpolations as written: a row like 'NODE D=${dataset.dim}' must be resolved,
    also when another key needs a live Hydra context."""
    _fake_run(tmp_path / "0", 0, 3, 0.5, row="NODE D=${augmentation.dim}")
    config = yaml.safe_load((tmp_path / "0" / ".hydra" / "config.yaml").read_text())
    config["paths"] = {"outputs": "${hydra:runtime.cwd}/outputs"}
    (tmp_path / "0" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job,) = find_jobs(tmp_path)
    assert job.row == "NODE D=3"


def test_row_labels_are_resolved(tmp_path):
    """Hydra saves .hydra/config.yaml unresolved: report.row "p=${augmentation.dim}" must read p=0, p=2."""
    for n, (dim, seed) in enumerate([(0, 0), (0, 1), (2, 0)]):
        _fake_run(tmp_path / str(n), seed, dim, 0.5 + dim / 10, row="p=${augmentation.dim}")
    rows = {r["configuration"]: r["seeds"] for r in summarise(tmp_path)["rows"]}
    assert rows == {"p=0": 2, "p=2": 1}


@pytest.mark.parametrize("row", [
    {"metric": "test_accuracy", "value": 77.0, "unit": "%", "source": "Table 1", "notes": "single run"},
    # as the suites write them: prose metric, value with its unit, protocol notes
    {"metric": "final test accuracy", "value": "77.0 %", "protocol": "single run"},
], ids=["structured", "prose"])
def test_published_numbers_beside_ours(tmp_path, row):
    for n, (seed, acc) in enumerate([(0, 0.80), (1, 0.84)]):
        _fake_run(tmp_path / "runs" / str(n), seed, 10, acc, row="ANODE p=10")
    published = tmp_path / "published"
    published.mkdir()
    (published / "toy.yaml").write_text(yaml.safe_dump([{"study": "toy/study", "row": "ANODE p=10", **row}]))
    text = summarise(tmp_path / "runs", published_dir=published)["markdown"].read_text()
    line = next(li for li in text.splitlines() if li.startswith(f"| ANODE p=10 | {row['metric']}"))
    assert "82 ± 2.8%" in line and "77.0%" in line and "+5" in line and "single run" in line


def test_skip_finished_reuses_a_completed_run(make_cfg, tmp_path):
    first = job.run(build(make_cfg("train.iterations=2", "train.figures=false")), tmp_path, group="t", name="a")
    again = job.run(build(make_cfg("train.iterations=2", "train.figures=false", "train.skip_finished=true")),
                    tmp_path, group="t", name="a")
    assert again["wall_time"] == first["wall_time"]  # read back, not retrained
    changed = job.run(build(make_cfg("train.iterations=3", "train.figures=false", "train.skip_finished=true")),
                      tmp_path, group="t", name="a")
    assert changed["iterations"] == 3  # a different config is not skipped


@pytest.mark.slow
def test_sweep_callback_summarises_and_lists_the_failed_job(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_SILENT": "true"}
    proc = subprocess.run([str(Path(sys.executable).parent / "node-lab"), "train", "-m", "train.batch_size=4,64",
                           "dataset.n_train=10", "train.iterations=2", "logger=none", "train.figures=false",
                           f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1  # a failed job makes the sweep exit non-zero …
    assert json.loads((sweep / "0" / "metrics.json").read_text())["status"] == "completed"  # … hides no other
    text = (sweep / "summary.md").read_text()
    assert "train.batch_size=64" in text and "exceeds the 10 training samples" in text
    assert [j.status for j in find_jobs(sweep)] == ["completed", "failed"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher,jobs", [("parallel", 2), ("submitit_local", 1)])
def test_launchers(tmp_path, launcher, jobs):
    sweep = tmp_path / "sweep"
    dims = "augmentation.dim=0,1" if jobs == 2 else "augmentation.dim=1"
    proc = subprocess.run([str(Path(sys.executable).parent / "node-lab"), "train", "-m", f"hydra/launcher={launcher}",
                           dims, "train.iterations=2", "logger=none", "train.figures=false",
                           f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    statuses = [j.status for j in find_jobs(sweep)]
    assert statuses == ["completed"] * jobs
    assert (sweep / "summary.md").is_file()


def test_parallel_jobs_never_oversubscribe():
    from node_lab.cli import parallel_jobs

    cores = os.cpu_count() or 1
    assert parallel_jobs(None) == cores
    assert parallel_jobs(cores) == 1
    assert parallel_jobs(4 * cores) == 1


@pytest.mark.slow
def test_reproduce_writes_a_report_and_skips_finished_jobs(tmp_path):
    from node_lab.reproduce import reproduce

    studies = tmp_path / "studies.yaml"
    toy = lambda minutes, *args: {"title": "toy", "claim": "none", "profiles": {"quick": {  # noqa: E731
        "args": ["dataset=compact_parity", "train.iterations=2", "logger=none", *args],
        "expected_minutes": minutes}}}
    studies.write_text(yaml.safe_dump({"toy/parity": toy(1, "seed=0,1", "train.figures=false"),
                                       "toy/bigger": toy(2, "seed=0")}, sort_keys=False))
    runs, out = tmp_path / "runs", tmp_path / "out"
    report = reproduce("quick", None, runs, out, "disabled", studies_file=studies, jobs=2)  # side by side
    text = report.read_text()
    assert "## toy/parity: toy" in text and "2 jobs: completed 2" in text
    assert text.index("## toy/parity") < text.index("## toy/bigger")  # report order = studies.yaml order
    assert "\n### Figures" in text and "\n## Figures" not in text  # a study's own sections sit under it
    assert "| dataset=compact_parity train.iterations=2 | 2 |" in text  # seeds and bookkeeping not in the label
    first = json.loads((runs / "quick" / "toy" / "parity" / "0" / "metrics.json").read_text())
    import time

    time.sleep(1.1)  # a new report stamp
    reproduce("quick", None, runs, out, "disabled", studies_file=studies)
    again = json.loads((runs / "quick" / "toy" / "parity" / "0" / "metrics.json").read_text())
    assert again["wall_time"] == first["wall_time"]  # finished job skipped, not rerun
    assert len(list(out.glob("*/REPORT.md"))) == 2


def _run_dir(make_cfg, path: Path, *overrides: str) -> None:
    """A real few-iteration run directory, with the .hydra/config.yaml Hydra would save (unresolved)."""
    from omegaconf import OmegaConf

    cfg = make_cfg(*overrides, "train.figures=false", "device.threads=1")
    job.run(build(cfg), path, group="test", name=path.name)
    (path / ".hydra").mkdir()
    OmegaConf.save(cfg, path / ".hydra" / "config.yaml")


@pytest.mark.slow
def test_study_figures_from_a_fixture_sweep(make_cfg, tmp_path):
    """The ANODE-family figures (sinusoid, circles, Dupont toy) drawn by the report from run directories."""
    from node_lab.report.figures import STUDY_FIGURES

    sweep = tmp_path / "sweep"
    for p in (0, 1):
        _run_dir(make_cfg, sweep / f"sin{p}", "experiment=anode/sinusoid", f"augmentation.dim={p}",
                 "optim.phases.0.iterations=2", "train.iterations=3", "dataset.n_points=20")
    for p in (0, 3):
        _run_dir(make_cfg, sweep / f"circles{p}", "experiment=anode/circles", f"augmentation.dim={p}",
                 "train.epochs=1", "train.batch_size=128", "dataset.n_train=128", "dataset.n_test=32")
    for row in ("node", "resnet"):
        _run_dir(make_cfg, sweep / f"flip_{row}", f"experiment=anode/dupont_flip/{row}", "train.iterations=3")
    text = summarise(sweep)["markdown"].read_text()
    figures = ["anode_sinusoid_sin.png", "anode_circles.png", "anode_circles_features.png", "anode_dupont_flip.png"]
    for name in figures:
        assert (sweep / name).stat().st_size > 10_000, name  # a drawn PNG, not an empty canvas
        assert f"]({name})" in text, name
    assert "## Study figures" in text and "not drawn" not in text
    assert set(STUDY_FIGURES) == {"anode/sinusoid_*", "anode/circles", "anode/dupont_*"}


@pytest.mark.slow
def test_every_study_profile_composes():
    """studies.yaml is what `make reproduce` runs: every value of every swept key of each profile
    must compose, and each study must have a quick and a full profile with ≥ 3 seeds in quick."""
    from hydra import compose, initialize_config_module
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from node_lab.reproduce import load_studies

    studies = load_studies()
    GlobalHydra.instance().clear()
    with initialize_config_module("node_lab.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for name, study in studies.items():
            assert {"quick", "full"} <= set(study["profiles"]), name
            for profile, spec in study["profiles"].items():
                parsed = OverridesParser.create(config_loader=loader).parse_overrides(spec["args"])
                seen: set[str] = set()
                for job in BasicSweeper.split_arguments(parsed, None)[0]:
                    if set(job) <= seen:  # compose a covering set: every value of every swept key once
                        continue
                    seen |= set(job)
                    cfg = compose("config", overrides=job, return_hydra_config=True)
                    assert cfg.report.study, (name, job)
                    if profile == "quick":  # seeds swept by the study or by its sweep preset
                        preset = str((cfg.hydra.sweeper.params or {}).get("seed", ""))
                        cli = [a.split("=", 1)[1] for a in spec["args"] if a.startswith("seed=")]
                        assert preset or cli, (name, "no seeds swept")
                        seeds = cli[0] if cli else preset
                        assert len(seeds.split(",")) >= 3 or seeds.startswith("range("), (name, seeds)
    GlobalHydra.instance().clear()


def _curve_run(path: Path, seed: int, model: str, dim: int, acc: float, nfe: float, losses: list[float]):
    (path / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "model": {"name": model}, "augmentation": {"dim": dim}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"model={model}", f"augmentation.dim={dim}", f"seed={seed}"]))
    metrics = {"status": "completed", "metric": "accuracy", "final": {"test_accuracy": acc},
               "nfe_forward": {"mean": nfe}, "nfe_backward": {"mean": 2 * nfe}, "wall_time": 1.0, "seed": seed}
    (path / "metrics.json").write_text(json.dumps(metrics))
    lines = ["iteration,loss,nfe_forward"] + [f"{i + 1},{v},{nfe}" for i, v in enumerate(losses)]
    (path / "history.csv").write_text("\n".join(lines) + "\n")


def _sweep_rows(tmp_path):
    from node_lab.report.summary import group_rows, swept_keys

    n = 0
    for model in ("node", "anode"):
        for dim in (0, 3):
            for seed in (0, 1):
                _curve_run(tmp_path / str(n), seed, model, dim, 0.8 + 0.05 * seed, 10.0 + dim + seed,
                           [1.0 + seed, 0.5 + seed, 0.25 + seed])
                n += 1
    jobs = find_jobs(tmp_path)
    return group_rows(jobs), swept_keys(jobs)


def test_summary_figure_draws_a_categorical_key_as_points_and_a_numeric_one_as_a_line(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from node_lab.report.sweep_figure import _draw_against_key, _series

    rows, keys = _sweep_rows(tmp_path)
    assert keys == ["model", "augmentation.dim"]
    fig, (categorical, numeric) = plt.subplots(1, 2)
    _draw_against_key(categorical, _series(rows, keys, "final.test_accuracy"), "model", "acc", False)
    assert [t.get_text() for t in categorical.get_xticklabels()] == ["anode", "node"]  # readable labels
    drawn = [line for line in categorical.get_lines() if line.get_marker() == "o"]
    assert len(drawn) == 2 and all(line.get_linestyle() == "None" for line in drawn)  # no line joins categories
    offsets = {round(x, 3) for line in drawn for x in line.get_xdata()}
    assert len(offsets) == 4  # the two series sit side by side, not on top of each other
    keys = ["augmentation.dim", "model"]
    series = _series(rows, keys, "nfe_forward.mean")
    assert sorted(series) == ["model=anode", "model=node"]
    assert series["model=node"] == [("0", 10.5, pytest.approx(0.7071, rel=1e-3)),
                                    ("3", 13.5, pytest.approx(0.7071, rel=1e-3))]
    _draw_against_key(numeric, series, "augmentation.dim", "NFE", False)
    drawn = [line for line in numeric.get_lines() if line.get_marker() == "o"]  # not the error-bar caps
    assert len(drawn) == 2 and all(line.get_linestyle() == "-" for line in drawn)
    assert sorted({x for line in numeric.get_lines() for x in line.get_xdata()}) == [0.0, 3.0]
    plt.close(fig)


def test_summary_figure_has_nfe_and_training_curves_with_a_seed_band(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from node_lab.report.sweep_figure import _training_curves, plot_sweep

    rows, keys = _sweep_rows(tmp_path)
    fig, ax = plt.subplots()
    assert _training_curves(ax, rows)
    line = ax.get_lines()[0]
    assert list(line.get_ydata()) == [1.5, 1.0, 0.75]  # the mean over seeds 0 and 1
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.25) and band.max() == pytest.approx(2.0)  # lowest..highest seed
    assert "(n=2)" in line.get_label()
    plt.close(fig)
    assert plot_sweep(tmp_path / "summary.png", rows, keys).stat().st_size > 0
