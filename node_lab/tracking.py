"""The `logger/` group: where metrics go besides the run directory (which always gets them:
``history.csv`` and ``metrics.json`` stay the source of truth).

As in lightning-hydra-template, each option puts its logger under its own name
(``logger.wandb.mode``, ``logger.tensorboard.flush_secs``), so several can run at once:
``logger=[wandb,tensorboard]``; ``logger=none`` selects none. Extension point: subclass
:class:`RunLogger`, add ``conf/logger/<name>.yaml`` holding ``<name>: {_target_: ...}``.

Names (:func:`node_lab.loop.logged_metrics`): ``train/loss``, ``train/<metric>``, ``val/…``,
``nfe/forward``, ``nfe/backward``, ``time/iteration_s`` per iteration; at the end ``test/…`` and
``val/…`` of the selected model.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from node_lab.errors import ConfigError, check_choice, check_number

log = logging.getLogger(__name__)

WANDB_MODES = ["offline", "online", "disabled"]
WANDB_ID = "wandb_id.txt"  # the W&B run id, kept in the run directory so a resume continues the same run


@dataclass
class RunInfo:
    """What a logger is told about the run it records."""

    run_dir: Path
    config: dict
    group: str  # one configuration: the seed replicas of a config share it
    name: str  # readable: experiment or study row, and the seed
    tags: list[str] = field(default_factory=list)
    job_type: str = "train"
    resumed_from: Path | None = None  # the run directory a resume continues (its logger id comes along)


class RunLogger:
    """No-op base (and ``logger=none``). ``tags`` are added to the run's top-level ``tags``."""

    name = "none"

    def __init__(self, tags: list[str] | None = None) -> None:
        self.tags = list(tags or [])

    def start(self, info: RunInfo) -> None:
        pass

    def log(self, metrics: dict, step: int) -> None:
        pass

    def log_images(self, images: dict[str, Path]) -> None:
        pass

    def log_model(self, path: Path, metadata: dict, aliases: list[str]) -> None:
        """The selected checkpoint (W&B: a ``model`` artifact with the config and metrics as metadata)."""

    def finish(self, summary: dict, failed: bool = False) -> None:
        pass

    def describe(self) -> str:
        return self.name


class NullLogger(RunLogger):
    pass


class Loggers(RunLogger):
    """Several loggers as one (``logger=[wandb,tensorboard]``); every call goes to each."""

    def __init__(self, loggers: list[RunLogger]) -> None:
        super().__init__([t for logger in loggers for t in logger.tags])
        self.loggers = loggers
        self.name = "+".join(logger.name for logger in loggers) or "none"

    def start(self, info: RunInfo) -> None:
        for logger in self.loggers:
            logger.start(info)

    def log(self, metrics: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log(metrics, step)

    def log_images(self, images: dict[str, Path]) -> None:
        for logger in self.loggers:
            logger.log_images(images)

    def log_model(self, path: Path, metadata: dict, aliases: list[str]) -> None:
        for logger in self.loggers:
            logger.log_model(path, metadata, aliases)

    def finish(self, summary: dict, failed: bool = False) -> None:
        for logger in self.loggers:
            logger.finish(summary, failed)

    def describe(self) -> str:
        return "+".join(logger.describe() for logger in self.loggers) or "none"


def summary_metrics(metrics: dict) -> dict:
    """The end-of-run numbers under the loggers' names: ``test/<metric>``, ``val/<metric>``, their
    losses and ``train/…`` of the selected model, ``best/val_<metric>``, ``nfe/forward_mean``…"""
    name, out = metrics.get("metric", "metric"), {}
    for key, value in (metrics.get("final") or {}).items():
        split, _, rest = key.partition("_")
        out[f"{split}/{rest}" if split in ("train", "val", "test") else f"final/{key}"] = value
    for key, value in (metrics.get("best") or {}).items():
        out[f"best/{key}"] = value
    for key, value in (metrics.get("physics") or {}).items():
        out[f"physics/{key}"] = value
    for key in ("nfe_forward", "nfe_backward"):
        if key in metrics:
            out[f"nfe/{key.split('_')[1]}_mean"] = metrics[key]["mean"]
    out["time/wall_s"] = metrics.get("wall_time")
    out["status"] = metrics.get("status")
    out["metric"] = name
    return {k: v for k, v in out.items() if v is not None}


class WandbLogger(RunLogger):
    """Weights & Biases, offline by default so it works without a network.

    **Arguments:** ``mode`` (offline | online | disabled; the ``WANDB_MODE`` environment variable,
    when set, wins); ``project``; ``entity``; ``tags`` (added to the run's top-level ``tags``);
    ``group``/``name`` (null: one group per configuration, named by its study row, experiment or
    overrides, and the run named by that and its seed); ``init_timeout`` seconds before an online
    run falls back to offline; ``log_model``: the selected checkpoint as a ``model`` artifact.
    Files go to ``<run dir>/wandb/``; the run id is kept in ``<run dir>/wandb_id.txt`` so a resumed
    or requeued run continues the same W&B run.
    """

    name = "wandb"

    def __init__(
        self,
        mode: str = "offline",
        project: str = "node-lab",
        entity: str | None = None,
        tags: list[str] | None = None,
        group: str | None = None,
        name: str | None = None,
        init_timeout: float = 30.0,
        log_model: bool = True,
    ) -> None:
        super().__init__(tags)
        check_choice("mode", mode, WANDB_MODES)
        check_number("init_timeout", init_timeout, low=0, low_open=True)
        env_mode = os.environ.get("WANDB_MODE")
        if env_mode and env_mode not in WANDB_MODES + ["dryrun", "run"]:
            raise ConfigError("WANDB_MODE", env_mode, "unknown W&B mode in the environment (it overrides logger.mode)",
                              choices=WANDB_MODES, fix="unset WANDB_MODE, or export WANDB_MODE=offline",
                              absolute=True)
        self.mode = {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode) if env_mode else mode
        self.project, self.entity = project, entity
        self.group, self.run_name = group, name
        self.init_timeout = init_timeout
        self.log_model_artifacts = log_model
        self.run = None

    def describe(self) -> str:
        return f"wandb({self.mode})"

    @staticmethod
    def run_id(info: RunInfo) -> str:
        """The id kept in the run directory, or the one of the run it resumes, or a new one."""
        for folder in (info.run_dir, info.resumed_from):
            file = folder / WANDB_ID if folder is not None else None
            if file is not None and file.is_file() and file.read_text().strip():
                return file.read_text().strip()
        return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))

    def _failed(self, what: str, err: BaseException) -> None:
        """W&B failing never stops a run: one warning, then the run directory is the record."""
        log.warning("W&B %s failed (%s: %s); training goes on without W&B, the run directory holds every metric",
                    what, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        self.run = None

    def start(self, info: RunInfo) -> None:
        try:
            self._start(info)
        except Exception as err:  # an unwritable <run dir>/wandb, a broken install, ...
            self._failed("start", err)

    def _start(self, info: RunInfo) -> None:
        import wandb  # imported lazily: a second of start-up that logger=none does not pay

        from node_lab.rundir import write_text

        run_id = self.run_id(info)
        write_text(info.run_dir / WANDB_ID, run_id + "\n")
        kwargs = dict(project=self.project, entity=self.entity, tags=list(dict.fromkeys(info.tags + self.tags)),
                      dir=str(info.run_dir), group=self.group or info.group, name=self.run_name or info.name,
                      config=info.config, job_type=info.job_type, id=run_id, resume="allow",
                      reinit="finish_previous")
        try:
            self.run = wandb.init(mode=self.mode, settings=wandb.Settings(init_timeout=self.init_timeout,
                                                                          silent=True), **kwargs)
        except Exception as err:  # no network, no API key, server down: never block training
            if self.mode != "online":
                raise
            log.warning("wandb online init failed (%s); falling back to offline mode",
                        str(err).splitlines()[0] if str(err) else type(err).__name__)
            self.mode = "offline"
            self.run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)
        self.run.define_metric("iteration")
        for split in ("train", "val"):  # iteration on the x axis; the summary keeps the best value
            self.run.define_metric(f"{split}/loss", step_metric="iteration", summary="min")
            self.run.define_metric(f"{split}/accuracy", step_metric="iteration", summary="max")
            self.run.define_metric(f"{split}/mse", step_metric="iteration", summary="min")
        for key in ("nfe/*", "time/*", "train/*"):
            self.run.define_metric(key, step_metric="iteration")

    def log(self, metrics: dict, step: int) -> None:
        if self.run is not None:
            try:
                self.run.log({"iteration": step, **metrics}, step=step)
            except Exception as err:
                self._failed("log", err)

    def log_images(self, images: dict[str, Path]) -> None:
        if self.run is not None:
            import wandb

            try:
                self.run.log({f"figures/{k}": wandb.Image(str(p)) for k, p in images.items()})
            except Exception as err:
                self._failed("figures", err)

    def log_model(self, path: Path, metadata: dict, aliases: list[str]) -> None:
        if self.run is None or not self.log_model_artifacts:
            return
        import wandb

        try:
            artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata=metadata)
            artifact.add_file(str(path))
            self.run.log_artifact(artifact, aliases=aliases)
        except Exception as err:
            self._failed("model artifact", err)

    def finish(self, summary: dict, failed: bool = False) -> None:
        if self.run is None:
            return
        try:
            for key, value in summary.items():  # the metrics.json blocks, and the conventional names
                self.run.summary[key] = value
            for key, value in summary_metrics(summary).items():
                self.run.summary[key] = value
            self.run.finish(exit_code=1 if failed else 0)
        except Exception as err:
            self._failed("finish", err)
        self.run = None


class TensorBoardLogger(RunLogger):
    """TensorBoard event files in ``<run dir>/tensorboard/`` (``tensorboard --logdir outputs``):
    the per-iteration scalars, the figures, the config as text and the final metrics
    (``pip install "node-lab[tensorboard]"``). **Arguments:** ``flush_secs``; ``tags``."""

    name = "tensorboard"

    def __init__(self, flush_secs: float = 30.0, tags: list[str] | None = None) -> None:
        super().__init__(tags)
        check_number("flush_secs", flush_secs, low=0, low_open=True)
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise ConfigError("logger", "tensorboard", "needs the tensorboard package",
                              fix='pip install "node-lab[tensorboard]" (or logger=wandb)', absolute=True) from None
        self.flush_secs, self.writer = flush_secs, None

    def start(self, info: RunInfo) -> None:
        import json

        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(info.run_dir / "tensorboard"), flush_secs=self.flush_secs)
        self.writer.add_text("config", "```\n" + json.dumps(info.config, indent=2, default=str) + "\n```")
        self.writer.add_text("run", f"group {info.group} | name {info.name} | tags {', '.join(info.tags)}")

    def log(self, metrics: dict, step: int) -> None:
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, step)

    def log_images(self, images: dict[str, Path]) -> None:
        if self.writer is None:
            return
        import matplotlib.image

        for key, path in images.items():
            self.writer.add_image(f"figures/{key}", matplotlib.image.imread(str(path))[..., :3], dataformats="HWC")

    def finish(self, summary: dict, failed: bool = False) -> None:
        if self.writer is None:
            return
        numbers = {k: v for k, v in summary_metrics(summary).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for key, value in numbers.items():
            self.writer.add_scalar(f"final/{key}", value, summary.get("iterations", 0))
        self.writer.close()
        self.writer = None


def names(config: dict, overrides: list[str], digest: str) -> tuple[str, str]:
    """(group, name) of a run: the group is one configuration (``digest``: a hash of the config
    without its seed), labelled by the study row, the experiment or the overrides without the seed;
    the name is the study row or experiment ("default" without one) and the seed."""
    from node_lab.report.rundirs import unlabelled

    report = config.get("report") or {}
    preset = f"{report.get('study')}/{report['row']}" if report.get("row") else config.get("experiment_name")
    swept = " ".join(o for o in overrides if not unlabelled(o.split("=", 1)[0].lstrip("+~")))
    return f"{preset or swept or 'default'} ({digest[:8]})", f"{preset or 'default'} seed {config.get('seed')}"


def log_sweep(sweep_dir: Path, config) -> None:
    """A sweep-level W&B run (job_type ``sweep-summary``, group = the sweep) holding the sweep's
    summary table as a ``wandb.Table`` and its plot, when the sweep's jobs log to W&B."""
    node = (config.get("logger") or {}).get("wandb") if hasattr(config, "get") else None
    mode = os.environ.get("WANDB_MODE") or (node.get("mode") if node is not None else None)
    if node is None or "_target_" not in node or mode in (None, "disabled"):
        return
    import csv

    import wandb

    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    try:
        run = wandb.init(project=node.get("project", "node-lab"), entity=node.get("entity"), dir=str(sweep_dir),
                         group=f"sweep {sweep_dir.parent.name}/{sweep_dir.name}", name="summary",
                         job_type="sweep-summary", mode=mode, reinit="finish_previous",
                         settings=wandb.Settings(silent=True))
    except Exception as err:  # the sweep's own files are the record; W&B failing must not fail the sweep
        log.warning("wandb sweep summary not logged: %s", str(err).splitlines()[0] if str(err) else err)
        return
    with (sweep_dir / "summary.csv").open() as f:
        rows = list(csv.reader(f))
    if rows:
        run.log({"summary": wandb.Table(columns=rows[0], data=rows[1:])})
    if (sweep_dir / "summary.png").is_file():
        run.log({"summary_plot": wandb.Image(str(sweep_dir / "summary.png"))})
    run.finish()
