"""Seed ensembles: band and coverage against known answers, and a tiny real ensemble."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from node_lab import job
from node_lab.build import build
from node_lab.report.ensemble import band, coverage, ensemble
from node_lab.report.rundirs import find_jobs


def test_band_and_coverage_known_answer():
    members = np.array([[0.0, 10.0], [2.0, 10.0]])  # two members, two points
    mean, lo, hi = band(members)
    assert mean == pytest.approx([1.0, 10.0])
    sigma = np.sqrt(2.0)  # sample std of {0, 2}
    assert lo == pytest.approx([1 - 2 * sigma, 10.0]) and hi == pytest.approx([1 + 2 * sigma, 10.0])
    targets = np.array([1 + 2 * sigma + 0.01, 10.0])  # first just outside, second exactly on the band
    assert coverage(targets, lo, hi) == 0.5


def test_gaussian_members_cover_about_95_percent():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(200, 50))  # draws of the target, one per point
    members = rng.normal(size=(400, 50))  # a large ensemble from the same distribution
    _, lo, hi = band(members)
    assert coverage(truth, lo, hi) == pytest.approx(0.954, abs=0.02)


def test_ensemble_of_a_small_sweep(make_cfg, tmp_path):
    for seed in (0, 1, 2):
        run = tmp_path / str(seed)
        cfg = make_cfg("experiment=sonode_sine", f"seed={seed}", "train.iterations=5", "train.figures=false")
        job.run(build(cfg), run, group="t", name=str(seed))
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    results = ensemble(tmp_path, find_jobs(tmp_path))
    assert len(results) == 1 and results[0]["members"] == 3
    assert 0.0 <= results[0]["coverage_2sigma"] <= 1.0
    assert len(results[0]["member_test_mse"]) == 3
    # the scores a stochastic run reports, members as samples
    assert results[0]["test_mean_mse"] == pytest.approx(results[0]["ensemble_test_mse"])
    assert 0.0 <= results[0]["test_coverage90"] <= 1.0 and results[0]["test_crps"] >= 0.0
    assert "test_nll" in results[0] and "90% coverage" in (tmp_path / "ensemble.md").read_text()
    assert json.loads((tmp_path / "ensemble.json").read_text())[0]["members"] == 3
    assert (tmp_path / results[0]["figure"]).is_file()


def test_ensemble_of_classifiers_draws_its_figure(make_cfg, tmp_path):
    for seed in (0, 1, 2):
        run = tmp_path / str(seed)
        cfg = make_cfg(f"seed={seed}", "train.iterations=5", "train.eval_every=5", "train.figures=false")
        job.run(build(cfg), run, group="t", name=str(seed))
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
    jobs = find_jobs(tmp_path)
    results = ensemble(tmp_path, jobs)
    assert len(results) == 1 and results[0]["members"] == 3
    r = results[0]
    # members are scored on the first member's data: its accuracy is the one its own run reported
    assert r["member_accuracy"][0] == pytest.approx(jobs[0].value("final.test_accuracy"), abs=1e-6)
    assert len(r["member_accuracy"]) == 3
    assert 0.0 <= r["unanimous"] <= 1.0
    assert (tmp_path / r["figure"]).stat().st_size > 0
    assert r["figure"] in (tmp_path / "ensemble.md").read_text()
