"""Loggers: W&B used as its users expect (names by split, summaries, groups, artifacts, resume), TensorBoard."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from node_lab import job
from node_lab.build import build


def wandb_records(run_dir: Path, timeout: float = 60.0) -> list:
    """The records of the offline W&B run(s) in ``run_dir/wandb``, once each has its exit record (W&B's
    service may still be writing when ``finish`` returns)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        records = _read_records(run_dir)
        runs = len(list((run_dir / "wandb").glob("offline-run-*/run-*.wandb")))
        if sum(r.WhichOneof("record_type") == "exit" for r in records) >= runs or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _read_records(run_dir: Path) -> list:
    """W&B's run file is a LevelDB-style log (a 7-byte header, 32 KiB blocks of chunks with a
    crc32/length/type header) of protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for file in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        data = file.read_bytes()
        ident, magic, version = struct.unpack("<4sHB", data[:7])
        assert ident == b":W&B" and magic == 0xBEE1, file
        pos, block, pending = 7, 32768, b""
        while pos + 7 <= len(data):
            left = block - pos % block
            if left < 7:
                pos += left
                continue
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            chunk = data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind == 0 and length == 0:
                continue
            pending = chunk if kind in (1, 2) else pending + chunk
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pending)
                records.append(record)
                pending = b""
    return records


TINY = ["logger=wandb", "logger.wandb.mode=offline", "train.iterations=4", "train.eval_every=2",
        "dataset.n_train=16", "dataset.n_val=8", "dataset.n_test=8", "solver=rk4", "solver.step_size=0.25",
        "train.figures=false", "tags=[tiny]"]


def _summary_of(records) -> dict:
    import json

    out = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            for item in r.summary.update:
                out["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    return out


def test_offline_wandb_run_holds_config_history_summary_artifact_and_group(make_cfg, tmp_path):
    from node_lab.cli import summary_text  # noqa: F401  (the CLI's names are the job's)
    from node_lab.tracking import names

    cfg = make_cfg(*TINY)
    built = build(cfg)
    group, name = names(built.config, TINY, built.configuration_hash)
    metrics = job.run(built, tmp_path, group=group, name=name)
    records = wandb_records(tmp_path)
    kinds = [r.WhichOneof("record_type") for r in records]
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_group == group and run.job_type == "train" and run.display_name == "default seed 0"
    assert list(run.tags) == ["tiny"]
    config = {item.key for item in run.config.update}
    assert {"model", "dataset", "solver", "train", "seed"} <= config
    history_keys = {item.key or "/".join(item.nested_key) for r in records if r.WhichOneof("record_type") == "history"
                    for item in r.history.item}
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "nfe/forward", "nfe/backward",
            "time/iteration_s", "iteration"} <= history_keys
    summary = _summary_of(records)
    assert summary["test/accuracy"] == metrics["final"]["test_accuracy"]
    assert summary["val/accuracy"] == metrics["final"]["val_accuracy"]
    assert "metric" in kinds  # define_metric: iteration as the x axis, max accuracy, min loss
    artifact = next(r.artifact for r in records if r.WhichOneof("record_type") == "artifact")
    assert artifact.type == "model" and artifact.name == f"model-{run.run_id}"
    assert any(entry.path == "best.pt" for entry in artifact.manifest.contents)
    assert "test/accuracy" in artifact.metadata and "config" in artifact.metadata


def test_group_is_one_configuration_across_seeds_not_the_sweep(make_cfg):
    from node_lab.tracking import names

    def group(*overrides):
        built = build(make_cfg(*overrides))
        return names(built.config, list(overrides), built.configuration_hash)

    g0, n0 = group("seed=0", "augmentation.dim=1")
    g1, n1 = group("seed=1", "augmentation.dim=1")
    g2, _ = group("seed=0", "augmentation.dim=2")
    assert g0 == g1 != g2 and g0.startswith("augmentation.dim=1 (")
    assert (n0, n1) == ("default seed 0", "default seed 1")  # readable: no string of overrides
    preset, name = group("experiment=sonode/nested_spheres_node", "seed=3")
    assert preset.startswith("sonode/nested_spheres/NODE d=2 (") and name == "sonode/nested_spheres/NODE d=2 seed 3"


def test_resumed_run_keeps_its_wandb_id(make_cfg, tmp_path):
    first = job.run(build(make_cfg(*TINY, "train.iterations=2")), tmp_path, group="g", name="n")
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    job.run(build(make_cfg(*TINY, "train.resume=true", "train.resume_override=[train.iterations]")), tmp_path,
            group="g", name="n")
    assert (tmp_path / "wandb_id.txt").read_text().strip() == run_id
    ids = {r.run.run_id for r in wandb_records(tmp_path) if r.WhichOneof("record_type") == "run"}
    assert ids == {run_id} and first["iterations"] == 2
    # a resume into another directory (train.resume_from) continues the same W&B run too
    job.run(build(make_cfg(*TINY, f"train.resume_from={tmp_path}")), tmp_path / "again", group="g", name="n")
    assert (tmp_path / "again" / "wandb_id.txt").read_text().strip() == run_id


def test_tags_on_a_preset_work_with_logger_none(make_cfg):
    built = build(make_cfg("tags=[a,b]", "+logger.tags=[c]"))  # logger=none (make_cfg's default)
    assert built.tags == ["a", "b", "c"] and built.logger.describe() == "none"
    wandb_unselected = build(make_cfg("+logger.wandb.tags=[x]"))  # settings of a logger that is not selected
    assert wandb_unselected.logger.describe() == "none"


def test_tensorboard_and_a_list_of_loggers(make_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    built = build(make_cfg("logger=[wandb,tensorboard]", "logger.wandb.mode=disabled", *TINY[2:]))
    assert built.logger.describe() == "wandb(disabled)+tensorboard"
    job.run(built, tmp_path, group="g", name="n")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "val/accuracy", "nfe/forward", "final/test/accuracy"} <= scalars
    assert (tmp_path / "history.csv").is_file()  # the run directory stays the source of truth
