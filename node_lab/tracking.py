"""The `logger/` group: where metrics go besides the run directory (which always gets them).

Extension point: subclass :class:`RunLogger`, add a YAML with ``_target_`` in ``conf/logger/``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from node_lab.errors import ConfigError, check_choice, check_number

log = logging.getLogger(__name__)

WANDB_MODES = ["offline", "online", "disabled"]


class RunLogger:
    """No-op base: ``logger=none``."""

    name = "none"

    def start(self, run_dir: Path, config: dict, group: str, name: str) -> None:
        pass

    def log(self, metrics: dict, step: int) -> None:
        pass

    def log_images(self, images: dict[str, Path]) -> None:
        pass

    def finish(self, summary: dict, failed: bool = False) -> None:
        pass

    def describe(self) -> str:
        return self.name


class NullLogger(RunLogger):
    pass


class WandbLogger(RunLogger):
    """Weights & Biases, offline by default so it works without a network.

    **Arguments:** ``mode`` (offline | online | disabled; the ``WANDB_MODE`` environment variable,
    when set, wins); ``project``; ``entity``; ``tags``; ``group``/``name`` (null: the experiment
    or sweep name / the overrides); ``init_timeout`` seconds before an online run falls back to
    offline. Files go to ``<run dir>/wandb/``.
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
    ) -> None:
        check_choice("mode", mode, WANDB_MODES)
        check_number("init_timeout", init_timeout, low=0, low_open=True)
        env_mode = os.environ.get("WANDB_MODE")
        if env_mode and env_mode not in WANDB_MODES + ["dryrun", "run"]:
            raise ConfigError("WANDB_MODE", env_mode, "unknown W&B mode in the environment (it overrides logger.mode)",
                              choices=WANDB_MODES, fix="unset WANDB_MODE, or export WANDB_MODE=offline",
                              absolute=True)
        self.mode = {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode) if env_mode else mode
        self.project, self.entity = project, entity
        self.tags = list(tags or [])
        self.group, self.run_name = group, name
        self.init_timeout = init_timeout
        self.run = None

    def describe(self) -> str:
        return f"wandb({self.mode})"

    def start(self, run_dir: Path, config: dict, group: str, name: str) -> None:
        import wandb  # imported lazily: a second of start-up that logger=none does not pay

        kwargs = dict(project=self.project, entity=self.entity, tags=self.tags, dir=str(run_dir),
                      group=self.group or group, name=self.run_name or name, config=config,
                      job_type="train", reinit="finish_previous")
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

    def log(self, metrics: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_images(self, images: dict[str, Path]) -> None:
        if self.run is not None:
            import wandb

            self.run.log({f"figures/{k}": wandb.Image(str(p)) for k, p in images.items()})

    def finish(self, summary: dict, failed: bool = False) -> None:
        if self.run is None:
            return
        for key, value in summary.items():
            self.run.summary[key] = value
        self.run.finish(exit_code=1 if failed else 0)
        self.run = None
