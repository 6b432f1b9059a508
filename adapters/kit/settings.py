"""Reading a platform's config section: every error names the key, as `[feishu] mode` → "feishu.mode".

The engine's config loader keeps a platform's table raw (with "${NAME}" values already read from the
environment); each platform's `config.py` reads it through a `Section`, so the checks (types, ranges,
URLs, unknown keys) are written once and an admin always learns which line to fix. Unknown keys are
errors: a typo such as `encrypt_kye` must not silently turn a check off.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlparse

from collabbot.bot.config import ConfigError
from collabbot.bot.errors import kind_of


class Section:
    def __init__(self, name: str, raw: Any, known: Collection[str]) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(name, "must be a table")
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{name}.{unknown[0]}", "unknown key (see config.example.toml)")
        self.name = name
        self.raw = raw

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.name}.{key}", problem)

    def str(self, key: str, default: str = "") -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {kind_of(value)}")
        return value.strip()

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {value!r}")
        return value

    def number(self, key: str, default: float, *, minimum: float, maximum: float | None = None,
               allow_zero: bool = False) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum:g}")
        if (value == 0 and allow_zero) or value >= minimum:
            return float(value)
        raise self.error(key, f"must be at least {minimum:g}" + (" (or 0 to turn it off)" if allow_zero else ""))

    def int(self, key: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, not {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.error(key, f"must be {bound}")
        return value

    def url(self, key: str, default: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
        """A base URL: scheme and host, no path (tests point it at a local fake)."""
        url = self.str(key, default).rstrip("/")
        parsed = urlparse(url)
        if parsed.scheme not in schemes or not parsed.netloc or parsed.path:
            raise self.error(key, f"must be a URL like {default}, not {url!r}")
        return url

    def path(self, key: str, default: str) -> str:
        path = self.str(key, default)
        if not path.startswith("/"):
            raise self.error(key, "must start with /")
        return path
