"""Per-target rate ceilings: each platform declares its limits, the worker never goes over any of them.

A `Limit` is "at most `count` sends per `per_seconds`" for the whole app, for one chat or for one
user. The worker does not count sends in windows; it paces them: every limit key (`feishu:app`,
`feishu:chat:oc_1` …) has a next free send time, and a send takes the latest of its keys' times
and moves each key on by `per_seconds / count` (stretched by a small safety margin for clock and
network jitter). Sends spaced that way never put more than `count` into any window of
`per_seconds`, however the platform lays its windows, and a long burst drains at the limit's rate.

Where the times live:

* `MemorySlots`, in the process (SQLite: one serving process). Keys whose time has passed are
  equivalent to absent ones and are dropped, so the map holds only targets sent to in the last
  few seconds.
* `DatabaseSlots`, the `rate_slots` table (PostgreSQL): a send locks its keys' rows (in key order,
  so two instances never deadlock), takes a time and moves them on in one short transaction; every
  instance therefore shares one pace per key. Rows unused for a day are pruned by the retention
  sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collabbot.storage.db import Database
from collabbot.storage.models import RateSlot

Scope = Literal["app", "chat", "user"]
SCOPES = ("app", "chat", "user")


@dataclass(frozen=True)
class Limit:
    """At most `count` sends per `per_seconds`, for the app, for each chat or for each user."""

    scope: Scope
    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"limit scope must be one of {SCOPES}, not {self.scope!r}")
        if self.count < 1 or self.per_seconds <= 0:
            raise ValueError(f"a limit needs count >= 1 and per_seconds > 0, not {self.count}/{self.per_seconds}")

    @property
    def interval(self) -> float:
        """Seconds between two sends on one key, at the limit's rate."""
        return self.per_seconds / self.count


def default_limits(per_chat_per_minute: int, per_platform_per_second: float) -> tuple[Limit, ...]:
    """The [delivery] defaults, for a sender that declares no limits of its own (0 = no such limit)."""
    limits: list[Limit] = []
    if per_platform_per_second > 0:
        limits.append(Limit("app", max(1, round(per_platform_per_second)), 1.0)
                      if per_platform_per_second >= 1 else Limit("app", 1, 1.0 / per_platform_per_second))
    if per_chat_per_minute > 0:
        limits.append(Limit("chat", per_chat_per_minute, 60.0))
    return tuple(limits)


def limit_keys(platform: str, target_kind: str, target_id: str, limits: tuple[Limit, ...],
               margin: float = 0.0) -> dict[str, float]:
    """{key: seconds between sends} of the limits that apply to one row (the slowest per key)."""
    keys: dict[str, float] = {}
    for limit in limits:
        if limit.scope == "app":
            key = f"{platform}:app"
        elif limit.scope == target_kind:  # a chat limit binds rows to chats, a user limit rows to people
            key = f"{platform}:{target_kind}:{target_id}"
        else:
            continue
        keys[key] = max(keys.get(key, 0.0), limit.interval * (1.0 + margin))
    return keys


def window_of(limits: tuple[Limit, ...], target_kind: str) -> float:
    """The longest window among a row's limits: how long a throttle with no reset time waits."""
    windows = [lim.per_seconds for lim in limits if lim.scope in ("app", target_kind)]
    return max(windows, default=1.0)


def slack_of(limits: tuple[Limit, ...], target_kind: str, margin: float) -> float:
    """How late a send may start after its slot without breaking a limit.

    Slots are `per_seconds / count * (1 + margin)` apart, so `count` of them span `per_seconds * (1 +
    margin)`: each send may start up to `per_seconds * margin` late and no window of `per_seconds`
    still holds more than `count` (the shortest window of the row's limits decides)."""
    windows = [lim.per_seconds for lim in limits if lim.scope in ("app", target_kind)]
    return max(0.001, min(windows, default=0.0) * margin)


class Slots(Protocol):
    def reserve(self, keys: dict[str, float], now: datetime, horizon: float) -> tuple[datetime, bool]:
        """The earliest time all `keys` are free, and whether it was taken (only when within `horizon` s)."""
        ...

    def prune(self, before: datetime) -> int:
        """Forget keys last free before `before`; how many."""
        ...


def _take(times: list[datetime], now: datetime, horizon: float) -> tuple[datetime, bool]:
    at = max([now, *times])
    return at, (at - now).total_seconds() <= horizon


class MemorySlots:
    """Next free send times in this process (one serving process: SQLite)."""

    def __init__(self, max_keys: int = 4096) -> None:
        self.max_keys = max_keys
        self._next: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._next)

    def reserve(self, keys: dict[str, float], now: datetime, horizon: float) -> tuple[datetime, bool]:
        at, taken = _take([self._next[k] for k in keys if k in self._next], now, horizon)
        if taken:
            for key, interval in keys.items():
                self._next[key] = at + timedelta(seconds=interval)
            if len(self._next) > self.max_keys:
                self.prune(now)
        return at, taken

    def prune(self, before: datetime) -> int:
        old = [k for k, t in self._next.items() if t <= before]
        for k in old:
            del self._next[k]
        return len(old)


class DatabaseSlots:
    """Next free send times in the `rate_slots` table, shared by every instance on the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def reserve(self, keys: dict[str, float], now: datetime, horizon: float) -> tuple[datetime, bool]:
        if not keys:
            return now, True
        with self.db.transaction() as s:
            return reserve_in(s, keys, now, horizon)

    def prune(self, before: datetime) -> int:
        with self.db.transaction() as s:
            return prune_in(s, before)


def reserve_in(session: Session, keys: dict[str, float], now: datetime, horizon: float) -> tuple[datetime, bool]:
    """`DatabaseSlots.reserve` inside the caller's transaction."""
    names = sorted(keys)
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = postgresql.insert if postgres else sqlite.insert
    session.execute(insert(RateSlot).values([{"key": k, "next_at": now} for k in names])
                    .on_conflict_do_nothing(index_elements=["key"]))
    stmt = select(RateSlot.key, RateSlot.next_at).where(RateSlot.key.in_(names)).order_by(RateSlot.key)
    if postgres:
        stmt = stmt.with_for_update()
    found: dict[str, datetime] = {k: t for k, t in session.execute(stmt)}
    at, taken = _take(list(found.values()), now, horizon)
    if taken:
        for key in names:
            session.execute(update(RateSlot).where(RateSlot.key == key)
                            .values(next_at=at + timedelta(seconds=keys[key])))
    return at, taken


def prune_in(session: Session, before: datetime, limit: int = 1000) -> int:
    old = select(RateSlot.key).where(RateSlot.next_at < before).limit(limit)
    result = session.execute(delete(RateSlot).where(RateSlot.key.in_(old.scalar_subquery())).returning(RateSlot.key)
                             .execution_options(synchronize_session=False))
    return len(result.all())
