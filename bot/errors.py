"""Errors shared by the engine's modules, kept apart so that raising one imports nothing else."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration value that cannot be used: `key` names it, `problem` says what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
