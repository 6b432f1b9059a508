"""Errors shared by the engine's modules, kept apart so that raising one imports nothing else."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A configuration value that cannot be used: `key` names it, `problem` says what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def kind_of(value: Any) -> str:
    """What a TOML value is, for "must be a string, not a list": never the value, which may be a secret."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date or time" if hasattr(value, "isoformat") else type(value).__name__
