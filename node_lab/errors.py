"""Errors meant for people: one line naming the key, the bad value, the valid choices and the fix."""

from __future__ import annotations

from collections.abc import Iterable


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
    ) -> None:
        self.key = key
        self.value = value
        self.problem = problem
        self.choices = list(choices) if choices is not None else None
        self.fix = fix
        super().__init__(self.message())

    def with_prefix(self, group: str) -> ConfigError:
        key = self.key if self.key.startswith(group + ".") else f"{group}.{self.key}"
        return ConfigError(key, self.value, self.problem, choices=self.choices, fix=self.fix)

    def message(self) -> str:
        parts = [f"{self.key}={_fmt(self.value)}: {self.problem}"]
        if self.choices is not None:
            parts.append("valid: " + ", ".join(_fmt(c) for c in self.choices))
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


def check_choice(key: str, value: object, choices: Iterable[object]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(key, value, "unknown choice", choices=choices, fix="{key}=" + _fmt(choices[0]))


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
    if low is not None and (value <= low if low_open else value < low):
        rel = ">" if low_open else ">="
        raise ConfigError(key, value, f"must be {rel} {low:g}", fix=f"set {{key}} {rel} {low:g}")
    if high is not None and value > high:
        raise ConfigError(key, value, f"must be <= {high:g}", fix=f"set {{key}} <= {high:g}")
