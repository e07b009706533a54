"""What identifies a run's result: the keys of its resolved config that change the result, at the values
that differ from their components' defaults. ``train.skip_finished`` compares its hash; a resume compares
it key by key.

A key at the default its constructor (or the loop's settings schema) declares is left out, so a component
that gains a new option at its default leaves every earlier run's hash as it was: there is no list of
"neutral" keys to keep up to date. Keys about how a run is logged, labelled, resumed or skipped are never
part of it. A run written under another hashing scheme is recognised by hashing the config saved in its
checkpoint with this one (:func:`node_lab.checkpoints.finished_metrics`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import MISSING, fields

# Top-level keys and train/ keys that do not change a run's result.
NOT_RESULT = ("logger", "report", "experiment_name", "hydra", "tags")
NOT_RESULT_TRAIN = ("resume", "resume_from", "resume_override", "skip_finished", "log_every", "figures",
                    "detect_anomaly")


def _plain(value):
    """Tuples as lists (a signature default ``(20, 20)`` equals the YAML's ``[20, 20]``)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _defaults(target: str) -> dict:
    """Keyword defaults of ``target``'s constructor and of the bases its ``**common`` reaches."""
    try:
        module, _, name = target.rpartition(".")
        obj = getattr(__import__(module, fromlist=[name]), name)
    except Exception:  # not importable here: keep every key (a hash that changes is the safe side)
        return {}
    classes = [c for c in obj.__mro__ if c is not object] if inspect.isclass(obj) else [obj]
    out: dict = {}
    for c in classes:
        try:
            params = inspect.signature(c.__init__ if inspect.isclass(c) else c).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in params:
            if p.default is not inspect.Parameter.empty:
                out.setdefault(p.name, _plain(p.default))
    return out


def _train_defaults() -> dict:
    from node_lab.job import JobSettings
    from node_lab.loop import LoopSettings

    out = {}
    for schema in (LoopSettings, JobSettings):
        for f in fields(schema):
            if f.default is not MISSING:
                out[f.name] = _plain(f.default)
            elif f.default_factory is not MISSING:  # type: ignore[misc]
                out[f.name] = _plain(f.default_factory())  # type: ignore[misc]
    return out


def _strip(node, defaults: dict | None = None):
    """``node`` without the keys at their defaults, recursively (nested ``_target_`` nodes use their own)."""
    if not isinstance(node, dict):
        return _plain(node)
    if "_target_" in node:
        defaults = _defaults(str(node["_target_"]))
    defaults = defaults or {}
    out = {}
    for key, value in node.items():
        value = _strip(value)
        if key in defaults and key != "_target_" and value == defaults[key]:
            continue
        out[key] = value
    return out


def result_config(config: dict) -> dict:
    """The result-determining part of a resolved config, keys at their defaults left out."""
    out = {}
    for key, value in config.items():
        if key in NOT_RESULT:
            continue
        if key == "train" and isinstance(value, dict):
            train = {k: v for k, v in value.items() if k not in NOT_RESULT_TRAIN}
            out[key] = _strip(train, _train_defaults())
        else:
            out[key] = _strip(value)
    return out


def config_hash(config: dict, drop_seed: bool = False) -> str:
    """Hash of :func:`result_config`; ``drop_seed``: without the seed (and a group's ``seed`` that follows
    it, e.g. ``dataset.seed``), so the seed replicas of one configuration share it."""
    result = result_config(config)
    if drop_seed:
        seed = config.get("seed")
        result = {g: ({k: v for k, v in node.items() if not (k == "seed" and v == seed)} if isinstance(node, dict)
                      else node) for g, node in result.items() if g != "seed"}
    return hashlib.sha256(json.dumps(result, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flatten(node, prefix: str = "") -> dict:
    """``{"solver.method": "rk4", "model.field.hidden": [20, 20], ...}``."""
    if not isinstance(node, dict):
        return {prefix: node}
    out = {}
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, path) if isinstance(value, dict) and value else {path: value})
    return out


def differences(before: dict, after: dict, allowed: list[str] = ()) -> list[tuple[str, object, object]]:
    """Result keys whose value differs between two resolved configs, as (key, before, after); a key
    counts as allowed when it or a parent of it is in ``allowed`` (``optim`` allows every optim key)."""
    a, b = flatten(result_config(before)), flatten(result_config(after))
    full_a, full_b = flatten(before), flatten(after)  # to show a value left out at its default
    missing = "(default)"
    found = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, missing) == b.get(key, missing):
            continue
        if any(key == k or key.startswith(k + ".") for k in allowed):
            continue
        found.append((key, a.get(key, full_a.get(key, missing)), b.get(key, full_b.get(key, missing))))
    return found
