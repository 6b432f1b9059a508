"""The only source of "now". Production reads the system clock; tests and the console move a manual one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until told to move: `set()` and `advance()`."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = when

    def advance(self, delta: timedelta) -> None:
        self._now = self._now + delta


class FileClock:
    """Reads "now" from a file (an ISO datetime) on every call.

    For tests and demos of `collabbot serve` only ($COLLABBOT_CLOCK_FILE): several real processes
    can share one simulated clock that the test moves forward.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def now(self) -> datetime:
        with open(self.path, encoding="utf-8") as f:
            value = datetime.fromisoformat(f.read().strip())
        if value.tzinfo is None:
            raise ValueError(f"{self.path}: the time must carry its UTC offset")
        return value
