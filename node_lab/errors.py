"""Errors meant for people: one line naming the key, the bad value, the valid choices and the fix."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

SEED_MAX = 2**64 - 1  # torch.manual_seed takes seeds in [0, 2**64)


class ConfigError(ValueError):
    """A bad override, value, combination or data file.

    Components raise it with the key *relative to their own config group* (``"dim"``); the build
    layer prefixes the group (``"augmentation.dim"``) so the message names the override to fix.
    """

    def __init__(
        self,
        key: str,
        value: object,
        problem: str,
        *,
        choices: Iterable[object] | None = None,
        fix: str | None = None,
        absolute: bool = False,
    ) -> None:
        self.key = key
        self.value = value
        self.problem = problem
        self.choices = list(choices) if choices is not None else None
        self.fix = fix
        self.absolute = absolute  # the key is not a config key (an environment variable, a file): no prefix
        super().__init__(self.message())

    def with_prefix(self, group: str) -> ConfigError:
        if self.absolute:
            return self
        key = self.key if self.key.startswith(group + ".") else f"{group}.{self.key}"
        return ConfigError(key, self.value, self.problem, choices=self.choices, fix=self.fix)

    def message(self) -> str:
        parts = [f"{self.key}={_fmt(self.value)}: {self.problem}"]
        if self.choices is not None:
            parts.append("valid: " + ", ".join(_fmt(c) for c in closest_first(self.value, self.choices)))
        if self.fix:  # "{key}" in a fix stands for the full key, known only once prefixed
            parts.append("fix: " + self.fix.replace("{key}", self.key))
        return "; ".join(parts)


def _fmt(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def closest_first(value: object, choices: Iterable[object]) -> list[object]:
    """``choices`` with the ones most like ``value`` first (a typo's intended option leads the
    list); the given order among equally close ones. Non-string values keep the given order."""
    choices = list(choices)
    if not isinstance(value, str) or len(choices) < 2:
        return choices
    text = value.lower()

    def score(choice: object) -> float:
        other = _fmt(choice).lower()
        return difflib.SequenceMatcher(None, text, other).ratio() + (0.5 if text and other.startswith(text[:3]) else 0)

    scores = [score(c) for c in choices]
    if max(scores) < 0.5:  # nothing alike: the component's own order (its default first) says more
        return choices
    order = sorted(range(len(choices)), key=lambda i: (-scores[i], i))
    return [choices[i] for i in order]


def closest(value: object, choices: Iterable[object]) -> object:
    """The choice most like ``value`` (the first one for non-string values)."""
    return closest_first(value, choices)[0]


def check_choice(key: str, value: object, choices: Iterable[object]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(key, value, "unknown choice", choices=choices, fix="{key}=" + _fmt(closest(value, choices)))


def check_number(
    key: str,
    value: object,
    *,
    kind: type = float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    allow_none: bool = False,
) -> None:
    """Type and range check; ``low_open`` makes the lower bound strict (value > low)."""
    if value is None and allow_none:
        return
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    if not ok_type:
        raise ConfigError(key, value, f"must be {'an integer' if kind is int else 'a number'}")
    if not math.isfinite(value):
        raise ConfigError(key, value, "must be a finite number", fix="set {key} to a finite value")
    bound = (lambda b: str(b)) if kind is int else (lambda b: f"{b:g}")  # noqa: E731  (2**64 - 1 in full)
    if low is not None and (value <= low if low_open else value < low):
        rel = ">" if low_open else ">="
        raise ConfigError(key, value, f"must be {rel} {bound(low)}", fix=f"set {{key}} {rel} {bound(low)}")
    if high is not None and value > high:
        raise ConfigError(key, value, f"must be <= {bound(high)}", fix=f"set {{key}} <= {bound(high)}")
