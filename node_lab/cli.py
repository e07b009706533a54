"""``node-lab <command>``: a thin CLI in front of Hydra.

``node-lab train [overrides]`` first composes and validates every job of the command (each
combination of a ``-m`` sweep) and stops with a one-line error before anything is written if
one is wrong; then it hands argv to Hydra, which owns everything after the subcommand (``-m``,
``--help``, ``--cfg job``, ``hydra/launcher=…``).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import logging
import math
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from node_lab import __version__
from node_lab.errors import ConfigError, closest_first
from node_lab.rundir import OutputFault

log = logging.getLogger("node_lab")

COMMANDS = {
    "train": "train a model; Hydra overrides, -m sweeps, --help for groups, --cfg job",
    "eval": "evaluate a finished run from its own config (val and test, eval.json); overrides change what is evaluated",
    "report": "summarise a run or sweep directory (mean ± std over seeds, published numbers, plots)",
    "ensemble": "combine the seed replicas of each configuration of a sweep (predictive band, coverage)",
    "reproduce": "run every study (make reproduce) and write a report beside the published numbers",
}
USAGE = "usage: node-lab <command> [args]\n\ncommands:\n" + "\n".join(
    f"  {name:<9} {text}" for name, text in COMMANDS.items()) + (
    "\n\nnode-lab train --help lists the config groups and their options.")



def parallel_jobs(threads: int | None) -> int:
    """Jobs of a local parallel sweep: one per ``threads`` cores (``hydra/launcher=parallel``)."""
    return max(1, (os.cpu_count() or 1) // max(1, int(threads or 1)))


OmegaConf.register_new_resolver("node_lab_jobs", parallel_jobs, replace=True)

# Flags after which Hydra only prints or inspects: nothing to validate or run.
_INSPECT_FLAGS = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "--shell-completion", "-sc",
                  "-p", "--package", "-r", "--resolve", "--version")
_MULTIRUN_FLAGS = ("-m", "--multirun")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] == "--version":
        print(f"node-lab {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("-sc", "--shell-completion"):  # the installed bash completion asks `node-lab -sc query=bash`
        return _complete(argv)
    if command not in COMMANDS:
        return _error(ConfigError("command", command, "unknown command", choices=list(COMMANDS),
                                  fix="node-lab train [overrides]"))
    return {"train": train, "eval": evaluate, "report": report, "ensemble": ensemble,
            "reproduce": reproduce}[command](rest)


def evaluate(args: list[str]) -> int:
    from node_lab.runs import evaluate_run

    parser = _Parser(prog="node-lab eval", description=COMMANDS["eval"],
                     epilog="e.g. node-lab eval outputs/<date>/<time> solver.rtol=1e-6 solver.atol=1e-6; "
                            "ckpt=last evaluates last.pt instead of the checkpoint the run reports")
    parser.add_argument("run_dir", type=Path, help="a run directory (or one job of a sweep)")
    parser.add_argument("overrides", nargs="*", help="key=value, group=option, ckpt=best|last")
    parser.add_argument("--out", type=Path, default=None, help="where eval.json and the figures go")
    parser.add_argument("--no-figures", action="store_true", help="write eval.json only")
    opts = parser.parse_args(args)
    ckpt = next((o.split("=", 1)[1] for o in opts.overrides if o.startswith("ckpt=")), None)
    overrides = [o for o in opts.overrides if not o.startswith("ckpt=")]
    from node_lab.rundir import RunDirectory, check_writable

    out = opts.out or opts.run_dir
    holder = RunDirectory(out, None)  # eval.json and the figures: no training run may write there meanwhile
    try:
        if out.is_dir():
            holder.acquire()
        elif opts.out is not None:
            check_writable(out, "--out")
        result = evaluate_run(opts.run_dir, ckpt, overrides, opts.out, figures=not opts.no_figures)
    except (ConfigError, OutputFault) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        return _error(err if isinstance(err, ConfigError) else err.message())
    finally:
        holder.release()
    print(eval_text(result))
    return 0


def eval_text(result: dict) -> str:
    """What ``node-lab eval`` prints: the checkpoint, the metrics, the run's own numbers beside."""
    name, final, recorded = result["metric"], result["final"], result["recorded"]
    beside = lambda split: (f" (run: {_fmt(recorded[f'{split}_{name}'])})"  # noqa: E731
                            if f"{split}_{name}" in recorded else "")
    lines = [f"checkpoint  {result['checkpoint']}, iteration {result['iteration']}"
             + (f" | overrides {' '.join(result['overrides'])}" if result["overrides"] else ""),
             f"val         {name} {_fmt(final.get(f'val_{name}'))}{beside('val')} | loss {_fmt(final.get('val_loss'))}",
             f"test        {name} {_fmt(final.get(f'test_{name}'))}{beside('test')} | "
             f"loss {_fmt(final.get('test_loss'))}",
             *_physics_lines(result.get("physics"), _fmt),
             f"written     {result['out']}/eval.json"]
    return "\n".join(lines)


def reproduce(args: list[str]) -> int:
    from node_lab.reproduce import load_studies
    from node_lab.reproduce import reproduce as run_reproduce

    studies = load_studies()
    parser = _Parser(prog="node-lab reproduce", description=COMMANDS["reproduce"])
    parser.add_argument("--profile", default="quick", help="quick (CPU, minutes) or full (the papers' protocols)")
    parser.add_argument("--study", action="append", help="run only this study (repeatable): " + ", ".join(studies))
    parser.add_argument("--runs", type=Path, default=Path("outputs/reproduce/runs"))
    parser.add_argument("--out", type=Path, default=Path("outputs/reproduce"))
    parser.add_argument("--wandb", default="offline", help="offline | online | disabled")
    parser.add_argument("--jobs", type=int, default=None,
                        help="studies run side by side, each one job at a time (default: one per core)")
    opts = parser.parse_args(args)
    if opts.jobs is not None and opts.jobs < 1:
        return _error(ConfigError("JOBS", opts.jobs, "must be ≥ 1", fix="JOBS=2"))
    profiles = sorted({p for s in studies.values() for p in s["profiles"]})
    if opts.profile not in profiles:
        return _error(ConfigError("PROFILE", opts.profile, "unknown profile", choices=profiles, fix="PROFILE=quick"))
    names = list(studies) + [n.split("/")[-1] for n in studies]
    for name in opts.study or []:
        if name not in names:
            return _error(ConfigError("STUDY", name, "unknown study", choices=list(studies)))
    run_reproduce(opts.profile, opts.study, opts.runs, opts.out, opts.wandb, jobs=opts.jobs)
    return 0


def ensemble(args: list[str]) -> int:
    from node_lab.report.ensemble import ensemble as run_ensemble
    from node_lab.report.rundirs import find_jobs

    parser = _Parser(prog="node-lab ensemble", description=COMMANDS["ensemble"])
    parser.add_argument("directory", type=Path, help="a sweep directory with ≥2 seeds per configuration")
    opts = parser.parse_args(args)
    jobs = find_jobs(opts.directory) if opts.directory.is_dir() else []
    try:
        results = run_ensemble(opts.directory, jobs) if jobs else []
    except OutputFault as err:
        return _error(err.message())
    if not results:
        return _error(ConfigError("directory", opts.directory, "has no configuration with ≥2 completed seeds",
                                  fix="node-lab train -m seed=0,1,2 ... then node-lab ensemble <sweep dir>"))
    print((opts.directory / "ensemble.md").read_text())
    return 0


def report(args: list[str]) -> int:
    from node_lab.report.summary import summarise

    parser = _Parser(prog="node-lab report", description=COMMANDS["report"])
    parser.add_argument("directory", type=Path, help="a run directory, a sweep directory, or a tree of them")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the directory)")
    opts = parser.parse_args(args)
    if not opts.directory.is_dir():
        return _error(ConfigError("directory", opts.directory, "no such directory"))
    try:
        result = summarise(opts.directory, opts.out)
    except OutputFault as err:  # a read-only folder, a full disk: one line, nothing half-written
        return _error(err.message())
    except OSError as err:  # the folder itself or a figure could not be made
        where = opts.out or opts.directory
        return _error(f"{where}: cannot write the report ({err.strerror or err}); fix: --out <a writable folder>")
    if not result["jobs"]:
        return _error(ConfigError("directory", opts.directory, "holds no run directories (no metrics.json)"))
    print(result["markdown"].read_text())
    print(f"written: {result['markdown']}")
    return 0


def _complete(argv: list[str]) -> int:
    """Tab completion (``node-lab train --shell-completion install=bash``): Hydra's script calls
    ``node-lab -sc query=bash`` with the line typed so far in COMP_LINE; after ``node-lab train`` it is
    Hydra's own completion of groups and options, else the list of commands."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) >= 2 and words[1] == "train" and (len(words) > 2 or line.endswith(" ")):
        start = line.index("train")
        rest = line[start + len("train"):].lstrip()
        os.environ["COMP_LINE"] = line[:start] + rest
        point = int(os.environ.get("COMP_POINT", len(line)))
        os.environ["COMP_POINT"] = str(max(0, point - (len(line) - len(os.environ["COMP_LINE"]))))
        sys.argv = ["node-lab", *argv]
        _hydra_train()
        return 0
    word = words[1] if len(words) > 1 and not line.endswith(" ") else ""
    print(" ".join(name for name in COMMANDS if name.startswith(word)))
    return 0


def conf_dir() -> Path:
    """The config groups' folder (node_lab.conf; the repo's conf/ in an editable install)."""
    from importlib.resources import files

    return Path(str(files("node_lab.conf")))


YAML_LITERALS = ("nan", "inf", "-inf", "true", "false", "null")


def quote_choices(args: list[str]) -> list[str]:
    """``group=nan`` quoted as ``group='nan'``: Hydra reads nan, inf, true… as YAML literals, not as
    the option files of that name (``debug=nan``)."""
    out = []
    for arg in args:
        key, eq, value = arg.partition("=")
        group = key.lstrip("+~").split("@")[0]
        literal = eq and value.lower() in YAML_LITERALS and "." not in group
        out.append(f"{key}='{value}'" if literal and (conf_dir() / group / f"{value}.yaml").is_file() else arg)
    return out


def train(args: list[str]) -> int:
    args = quote_choices(args)
    if any(a in ("-sc", "--shell-completion") or a.startswith("--shell-completion=") for a in args):
        sys.argv = ["node-lab", *args]  # the completion script registers `node-lab`, not `node-lab train`
        _hydra_train()
        return 0
    if not any(a in _INSPECT_FLAGS or a.split("=")[0] in _INSPECT_FLAGS for a in args):
        code = preflight(args)
        if code:
            return code
    from node_lab.report.callback import SWEEP_FAILURES, SWEEP_SUMMARIES

    sys.argv = ["node-lab train", *args]  # Hydra parses sys.argv
    _hydra_train()
    for summary in SWEEP_SUMMARIES:  # a sweep ends with its table, not only its path
        print(sweep_table(summary))
    return 1 if SWEEP_FAILURES["count"] else 0


def sweep_table(markdown: Path) -> str:
    """The configuration table of a sweep's summary.md (its first table), and where the rest is."""
    first: list[str] = []
    for line in markdown.read_text().splitlines():
        if line.startswith("|"):
            first.append(line)
        elif first:
            break
    return "\n".join([*first, f"summary: {markdown} (and summary.csv, jobs.csv, summary.png beside it)"])


def preflight(args: list[str]) -> int:
    """Compose and build every job of ``args``; 0 if all are valid, else print one line and return 2."""
    from hydra import compose, initialize_config_module
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from node_lab.build import build
    from node_lab.job import check_resume_before_start

    if any(a.startswith("-") and a not in _MULTIRUN_FLAGS for a in args):
        return 0  # other Hydra flags (--config-dir, …): Hydra checks them itself
    multirun = any(a in _MULTIRUN_FLAGS for a in args)
    overrides = [a for a in args if a not in _MULTIRUN_FLAGS]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("node_lab.conf", version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            jobs = [overrides]
            if multirun:
                parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
                jobs = BasicSweeper.split_arguments(parsed, None)[0]
            known = set(compose("config").keys()) | set(loader.list_groups(""))
            for job in jobs:
                try:
                    cfg = compose("config", overrides=job)
                    check_top_level(cfg, known, job)
                    built = build(cfg)
                    if not multirun and (built.job.resume or built.job.resume_from):
                        run_dir = compose("config", overrides=job, return_hydra_config=True).hydra.run.dir
                        check_resume_before_start(built, Path(str(run_dir)))
                except Exception as err:
                    message = describe_error(err, job, loader)
                    if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                        raise
                    return _error(message)
            check_output_location(compose("config", overrides=jobs[0], return_hydra_config=True).hydra, multirun)
    except Exception as err:
        message = describe_error(err, overrides, None)
        if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        return _error(message)
    finally:
        GlobalHydra.instance().clear()
    return 0


# Run directories named before Hydra made them, with what they held then (None: they did not exist) and
# their .hydra/ files: a failing run removes only what it added (node_lab.rundir.RunDirectory.discard).
PRE_EXISTING: dict[str, tuple[set[str] | None, dict[str, bytes]]] = {}


def check_output_location(hydra_cfg: DictConfig, multirun: bool) -> None:
    """Before Hydra writes anything: the run (or sweep) directory can be created and written, and no
    other live node-lab run holds it; a single run's directory is recorded as it is now."""
    from node_lab.rundir import RunDirectoryBusy, check_writable, lock_owner, records, snapshot

    where = Path(str(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir)).absolute()
    check_writable(where, "hydra.sweep.dir" if multirun else "hydra.run.dir")  # the key that names it
    dirs = [p for p in where.iterdir() if p.is_dir()] if multirun and where.is_dir() else [where]
    for path in dirs:
        owner = lock_owner(path) if path.is_dir() else None
        if owner is not None:
            raise RunDirectoryBusy(path, owner)
    if not multirun:
        PRE_EXISTING[str(where)] = (snapshot(where), records(where))


def check_top_level(cfg: DictConfig, known: set[str], overrides: list[str]) -> None:
    """A top-level key that neither the primary config nor a config group defines (``+lr=0.1``,
    ``+foo=1``) is a typo that would otherwise be carried along silently."""
    for key in cfg:
        if key not in known and key != "hydra":
            typed = next((o for o in overrides if o.lstrip("+~").split("=", 1)[0] == key), None)
            value = typed.split("=", 1)[1] if typed and "=" in typed else cfg[key]
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(str(key), value, "unknown top-level key", choices=sorted(known),
                              fix=hint + "keys of a group go under it, e.g. optim.lr=0.01")


def describe_error(err: Exception, overrides: list[str], loader) -> str | None:
    """One line for a composition or validation error; None for errors that are bugs."""
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, (ConfigError, OutputFault)):
        return err.message()
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, MissingConfigException):
        group, _, option = (err.missing_cfg_file or "").rpartition("/")
        if group.startswith("hydra/"):  # a Hydra plugin that is not installed
            extra = {"optuna": "optuna", "submitit_slurm": "cluster", "submitit_local": "cluster"}.get(option)
            return ConfigError(group.replace("/", "."), option, f"the Hydra plugin providing {group}/{option} is "
                               "not installed", choices=sorted(err.options or []),
                               fix=f'pip install "node-lab[{extra}]"' if extra else "install the Hydra plugin"
                               ).message()
        if group:
            return _unknown_option(err.missing_cfg_file, overrides, loader).message()
        return first
    if isinstance(err, ConfigCompositionException) and first.startswith("Could not override '"):
        key = first.split("'")[1]
        value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key), "?")
        parent, _, leaf = key.rpartition(".")
        others = [o for o in overrides if o.split("=", 1)[0] != key]
        valid = _keys_of(parent, others)
        while parent and not valid:  # name the first segment that does not exist (model.fild.hidden → fild)
            parent, _, leaf = parent.rpartition(".")
            valid = _keys_of(parent, others)
        key = f"{parent}.{leaf}" if parent else leaf
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
        owners = _options_with_key(parent, leaf) if parent and "." not in parent else None
        if owners and (not close or _similarity(leaf, owners[0]) > _similarity(leaf, close[0])):
            # a key of another option of the group (solver.substeps), closer than this option's keys
            if owners:
                name, options = owners
                hint = (f"{parent}.{name} is a key of {parent}={'|'.join(options)}, not of this {parent}: "
                        f"e.g. {parent}={options[-1]} {parent}.{name}={value}; ")
        return ConfigError(key, value, f"unknown key in '{parent or 'config'}'", choices=valid,
                           fix=(hint or "check the spelling; ") + f"to add a new key: +{key}=...").message()
    if isinstance(err, (OverrideParseException, HydraException, OmegaConfBaseException)):
        return first
    return None


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _unknown_option(missing: str, overrides: list[str], loader) -> ConfigError:
    """The error for a config group option that does not exist (``model=sonod``, a nested preset
    ``experiment=sonode/compact_parity``): the key and value as typed, the options of the deepest
    folder that exists (closest first) and the closest option as the fix."""
    from hydra.core.global_hydra import GlobalHydra

    typed = next(((k, v) for k, v in (o.split("=", 1) for o in overrides if "=" in o)
                  if f"{k.lstrip('+~').replace('.', '/')}/{v}" == missing), None)
    key, value = typed if typed else (missing.rpartition("/")[0], missing.rpartition("/")[2])
    group = key.lstrip("+~").replace(".", "/")
    loader = loader or GlobalHydra.instance().config_loader()
    folder, rest = group, value.split("/")
    while len(rest) > 1 and rest[0] in loader.list_groups(folder):
        folder, rest = f"{folder}/{rest[0]}", rest[1:]  # descend into the subfolders that exist
    prefix = folder[len(group) + 1:] + "/" if folder != group else ""
    options = [prefix + o for o in loader.get_group_options(folder)]
    options += [prefix + g + "/…" for g in loader.list_groups(folder)]
    ranked = closest_first(value, options)
    best = _closest_option(folder, rest, loader)
    listing = f"ls conf/{folder}" + (f" lists all {len(ranked)}" if len(ranked) > 12 else "")
    fix = f"{key}={prefix}{best} ({listing})" if best else listing
    return ConfigError(key, value, f"no such {group} option in conf/{folder}/", choices=ranked[:12], fix=fix)


def _closest_option(folder: str, parts: list[str], loader) -> str | None:
    """The option path under ``folder`` closest to the typed ``parts`` (descending into the
    closest subfolder while more parts follow); None when nothing is close."""
    if len(parts) > 1:
        sub = difflib.get_close_matches(parts[0], loader.list_groups(folder), n=1, cutoff=0.6)
        inner = _closest_option(f"{folder}/{sub[0]}", parts[1:], loader) if sub else None
        return f"{sub[0]}/{inner}" if inner else None
    options = loader.get_group_options(folder)
    close = set(difflib.get_close_matches(parts[0], options, n=len(options), cutoff=0.6))
    return next((o for o in closest_first(parts[0], options) if o in close), None)  # ties: the listed order


def _options_with_key(group: str, leaf: str) -> tuple[str, list[str]] | None:
    """The key of another option of config group ``group`` closest to ``leaf`` and the options that
    have it (``solver.substeps`` → ("substeps", ["grid_euler", …])); None if there is none."""
    from hydra.core.global_hydra import GlobalHydra

    try:
        options = GlobalHydra.instance().config_loader().get_group_options(group)
    except Exception:  # a listing is a courtesy
        return None
    found: dict[str, list[str]] = {}
    for option in options:
        for name in difflib.get_close_matches(leaf, _option_keys(group, option), n=1):
            found.setdefault(name, []).append(option)
    if not found:
        return None
    name = difflib.get_close_matches(leaf, list(found), n=1)[0]
    return name, found[name]


@functools.cache
def _option_keys(group: str, option: str) -> tuple[str, ...]:
    """The keys of option ``option`` of config group ``group`` (composed once per process: the key
    names do not depend on the rest of the command line)."""
    return tuple(_keys_of(group, [f"{group}={option}"]))


def _keys_of(parent: str, overrides: list[str]) -> list[str]:
    from hydra import compose
    from omegaconf import OmegaConf

    try:
        node = compose("config", overrides=overrides)
        node = OmegaConf.select(node, parent) if parent else node
        return sorted(k for k in node.keys() if not str(k).startswith("_")) if node is not None else []
    except Exception:  # a listing is a courtesy
        return []


class _Parser(argparse.ArgumentParser):
    """argparse for the subcommands: no prefix matching (``--profil`` is an error, not ``--profile``)
    and a bad flag ends in our one-line error, not the usage text."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str):
        _error(f"{message}; fix: see {self.prog} --help")
        raise SystemExit(2)


def _error(err: ConfigError | str) -> int:
    text = err.message() if isinstance(err, ConfigError) else err
    print(f"node-lab: error: {text}", file=sys.stderr)
    return 2


@hydra.main(version_base="1.3", config_path="pkg://node_lab.conf", config_name="config")
def _hydra_train(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from node_lab import job
    from node_lab.build import build
    from node_lab.checkpoints import write_failure
    from node_lab.rundir import Interruption, RunDirectory, snapshot
    from node_lab.tracking import names

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    # What the folder held before this invocation (a fresh timestamped folder: nothing).
    recorded = PRE_EXISTING.get(str(run_dir.absolute())) if not multirun else None
    # Not recorded (a sweep job, or a command that skipped the preflight): everything there now counts as
    # the user's, Hydra's fresh .hydra/ and log included.
    before, hydra_files = recorded if recorded is not None else (snapshot(run_dir) or set(), {})
    holder = RunDirectory(run_dir, before, hydra_files)
    stop = Interruption()
    try:
        holder.acquire()
        built = build(cfg)
        group, name = names(built.config, list(hc.overrides.task), built.configuration_hash)
        with stop:
            metrics = job.run(built, run_dir, group=group, name=name, should_stop=stop)
    except (Exception, KeyboardInterrupt) as err:
        one_line = isinstance(err, (ConfigError, OutputFault))
        if isinstance(err, KeyboardInterrupt):  # the second Ctrl-C: no checkpoint of this iteration
            err = OutputFault(run_dir, "stopped at once by a second Ctrl-C; the last checkpoint is kept",
                              f"resume with: {resume_command(hc, run_dir)}")
            one_line = True
        if multirun:  # record it and let the sweep go on; the sweep summary lists it
            if one_line:
                log.error("job failed: %s", err.message())
            else:
                log.exception("job failed")
            write_failure(run_dir, err)
            return None
        if not one_line:
            write_failure(run_dir, err)  # a bug: its traceback follows; the run dir says why the run ended
            raise
        if isinstance(err, ConfigError) and not holder.kept_results():
            holder.discard()  # only what this invocation added; never a folder or file that was there
        code = _error(err if isinstance(err, ConfigError) else err.message())
        sys.exit(code if isinstance(err, ConfigError) else 1)  # a fault mid-run: the run failed
    finally:
        holder.release()
    if metrics["status"] == "interrupted":  # a sweep stops too: the signal was meant for the whole command
        print(f"node-lab: {metrics['reason']}; resume with: {resume_command(hc, run_dir)}", file=sys.stderr)
        sys.exit(stop.exit_code)
    log.info("summary\n%s", summary_text(metrics))
    if metrics["status"] != "completed" and not multirun:
        sys.exit(1)
    final = metrics["final"].get(f"test_{metrics['metric']}")
    return float(final) if final is not None else None


def resume_command(hc, run_dir: Path) -> str:
    """The command that continues an interrupted run in its own directory."""
    keep = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") not in (
        "hydra.run.dir", "train.resume", "train.resume_from")]
    return " ".join(["node-lab train", *keep, f"hydra.run.dir={run_dir}", "train.resume=true"])


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def much_worse(metric: str, best: float | None, value: float | None) -> bool:
    """The summary's warning rule: an accuracy 0.05 or more below the best, an MSE twice the best."""
    if best is None or value is None or math.isnan(value):
        return value is not None and best is not None
    return best - value >= 0.05 if metric == "accuracy" else value >= 2 * best and value - best > 1e-12


def summary_text(metrics: dict) -> str:
    """The end-of-run summary: which model is reported (train.select) and its val and test metrics,
    the best validation metric, the last model's when it is not the reported one, NFE, wall time."""
    final = metrics["final"]
    lines = [
        f"status      {metrics['status']}" + (f" ({metrics['reason']})" if metrics["reason"] else ""),
        *_selection_lines(metrics),
        f"NFE / iter  forward {metrics['nfe_forward']['mean']:.1f} | backward {metrics['nfe_backward']['mean']:.1f}",
        f"wall time   {metrics['wall_time']:.1f} s ({1e3 * metrics['step_time_mean']:.1f} ms/iteration), "
        f"{metrics['iterations']} iterations",
        f"parameters  {metrics['params']}",
        *_physics_lines(metrics.get("physics"), _fmt),
        *([f"predictive  test NLL {_fmt(final['test_nll'])} | CRPS {_fmt(final['test_crps'])} | coverage90 "
           f"{_fmt(final['test_coverage90'])} | mean MSE {_fmt(final['test_mean_mse'])}"]
          if "test_nll" in final else []),
        *([f"interpret.  velocity MSE {_fmt(final['interpretability_error'])}"]
          if "interpretability_error" in final else []),
        *([f"restarts    {len(metrics['restarts'])} (seeds {[r['seed'] for r in metrics['restarts']]})"]
          if metrics.get("restarts") else []),
        f"run dir     {metrics['run_dir']}",
    ]
    return "\n".join(lines)


def _selection_lines(metrics: dict) -> list[str]:
    name, final, best = metrics["metric"], metrics["final"], metrics["best"]
    selected, last = metrics.get("selected") or {}, metrics.get("last") or {}
    best_val, last_val = best.get(f"val_{name}"), last.get(f"val_{name}")
    lines = []
    if selected and final:
        lines.append(f"selected    {selected['checkpoint']}.pt, iteration {selected['iteration']} "
                     f"of {metrics['iterations']}")
    lines += [f"final       val {name} {_fmt(final.get(f'val_{name}'))} | test {name} "
              f"{_fmt(final.get(f'test_{name}'))} | test loss {_fmt(final.get('test_loss'))} | train {name} "
              f"{_fmt(final.get(f'train_{name}'))}",
              f"best        val {name} {_fmt(best_val)} at iteration {best['iteration']}"]
    if not last:
        return lines
    if last["iteration"] != selected.get("iteration"):
        lines.append(f"last        val {name} {_fmt(last_val)} | test {name} {_fmt(last.get(f'test_{name}'))} "
                     f"at iteration {last['iteration']}")
    if best["iteration"] not in (None, last["iteration"]) and much_worse(name, best_val, last_val):
        reported = "reported: best.pt" if selected.get("checkpoint") == "best" else "train.select=best reports best.pt"
        lines.append(f"warning     the last model is much worse than the best: val {name} {_fmt(last_val)} at "
                     f"iteration {last['iteration']} vs {_fmt(best_val)} at {best['iteration']} ({reported})")
    return lines


def _physics_lines(phys: dict | None, fmt) -> list[str]:
    if not phys:
        return []
    if "error" in phys:
        return [f"physics     rollout failed: {phys['error']}"]
    deriv = f" | derivative mse {fmt(phys['derivative_mse'])}" if "derivative_mse" in phys else ""
    return [f"physics     rollout mse {fmt(phys['rollout_mse'])} | energy mse {fmt(phys['energy_mse'])} | "
            f"energy drift {fmt(phys['energy_drift'])} (final {fmt(phys['energy_error_final'])}){deriv}"]


if __name__ == "__main__":
    sys.exit(main())
