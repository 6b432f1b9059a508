"""Per-target rate ceilings: each platform declares its limits, the worker never goes over any of them.

A `Limit` is "at most `count` sends per `per_seconds`" for the whole app, for one chat or for one
user. Several limits may bind one key (WeCom: 30 a minute AND 1,000 an hour per chat), and each
holds on its own.

The limiter is an exact sliding window: every limit key (`feishu:app`, `wecom:chat:c1` …) keeps the
log of its send times (the last hour at most, for the longest window), and a send takes the
earliest time at or after now at which every window of every key's limits still holds at most
`count` sends, counting the send itself. So a quiet chat gets its whole burst at once (30 sends to
a WeCom group go together, the 31st when the first leaves the window), unlike a pace of one send
every `per_seconds / count`, which spreads 1,000 an hour into one message every 3.6 s. The worker
only ever takes "now" (horizon 0) and otherwise waits for the time it is told; once a send has
finished, its time in the log moves to then (`move`): the platform counted the request somewhere in
between, so the next window is measured from a time that is never early, however long the burst's
own requests took to go out. A time is still checked against the sends on both sides of it, so a log
need not be in time order (another instance's clock a little ahead). Each window is stretched by the
`[delivery] limit_margin` (5 %) against clock and network jitter.

A token bucket or GCRA with a burst of `count` would let up to 2 × count - 1 sends into one window
(a full bucket, then the refill), which a platform counting sends in a window refuses: so the log.

Where the logs live:

* `MemorySlots`, in the process (SQLite: one serving process). A key whose sends have all left its
  windows is dropped when the map grows past `max_keys`.
* `DatabaseSlots`, the `rate_slots` table (PostgreSQL): a send locks its keys' rows (in key order,
  so two instances never deadlock), reads their logs, writes the new time into each in one short
  transaction; every instance therefore shares one log per key. `next_at` is the key's latest send,
  and rows idle for a day are pruned by the retention sweep.

Libraries looked at: `limits` (moving window, but storage in Redis, Memcached or MongoDB only, a hit
is always "now", one key at a time) and `pyrate-limiter` (sliding log with several rates per key and
a PostgreSQL bucket, but on its own connection pool and tables, outside our transactions and
migrations, and no reservation of one time across the app's and the chat's keys together). Neither
fits the worker's "one slot on several keys, possibly a little ahead, shared by instances"; the
log below is small.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collabbot.storage.db import Database
from collabbot.storage.models import RateSlot

Scope = Literal["app", "chat", "user"]
SCOPES = ("app", "chat", "user")

Window = tuple[int, int]  # (count, microseconds): at most `count` sends in any window that long
Now = datetime | Callable[[], datetime]  # a time, or the clock to read it from at the last moment
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


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
               margin: float = 0.0) -> dict[str, tuple[Window, ...]]:
    """{key: its windows (count, microseconds, stretched by `margin`)} of the limits that bind one row."""
    keys: dict[str, list[Window]] = {}
    for limit in limits:
        if limit.scope == "app":
            key = f"{platform}:app"
        elif limit.scope == target_kind:  # a chat limit binds rows to chats, a user limit rows to people
            key = f"{platform}:{target_kind}:{target_id}"
        else:
            continue
        keys.setdefault(key, []).append((limit.count, round(limit.per_seconds * (1.0 + margin) * 1e6)))
    return {key: tuple(windows) for key, windows in keys.items()}


def window_of(limits: tuple[Limit, ...], target_kind: str) -> float:
    """The longest window among a row's limits: how long a throttle with no reset time waits."""
    windows = [lim.per_seconds for lim in limits if lim.scope in ("app", target_kind)]
    return max(windows, default=1.0)


# --- the sliding-window log ------------------------------------------------------------------------

def _blocked_until(log: Sequence[int], count: int, span: int, at: int) -> int | None:
    """None when one more send at `at` leaves every window of `span` with at most `count` sends of `log`
    (sorted); else the earliest later time worth trying (when the last full window's first send leaves).

    `count` sends of the log plus one at `at` break the limit when all of them fit in one window: the
    `count` sends are consecutive in the log, within (at - span, at + span), and less than `span` apart."""
    lo = bisect_right(log, at - span)
    hi = bisect_left(log, at + span)
    for j in range(hi - count, lo - 1, -1):  # the last full group sets the furthest way out
        if log[j + count - 1] - log[j] < span:
            return log[j] + span
    return None


def earliest(logs: Mapping[str, Sequence[int]], keys: Mapping[str, tuple[Window, ...]], now: int) -> int:
    """The earliest time at or after `now` (microseconds) that every window of every key allows."""
    at = now
    moved = True
    while moved:
        moved = False
        for key, windows in keys.items():
            log = logs.get(key, ())
            for count, span in windows:
                later = _blocked_until(log, count, span, at)
                if later is not None:
                    at, moved = later, True
    return at


def to_us(when: datetime) -> int:
    return (when - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def pack(log: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(log)}q", *log)


def unpack(data: bytes | None) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 8}q", data)) if data else []


def _reserve(logs: dict[str, list[int]], keys: Mapping[str, tuple[Window, ...]], now: datetime,
             horizon: float) -> tuple[int, dict[str, list[int]] | None]:
    """The time (microseconds) for logs read, and the keys' new logs (None: beyond `horizon`, nothing taken)."""
    now_us = to_us(now)
    at = earliest(logs, keys, now_us)
    if at - now_us > horizon * 1e6:
        return at, None
    written: dict[str, list[int]] = {}
    for key, windows in keys.items():
        log = logs.get(key, [])
        log = log[bisect_right(log, now_us - max(span for _, span in windows)):]  # sends out of every window
        insort(log, at)
        written[key] = log
    return at, written


def _moved(log: list[int], at: int, to: int) -> list[int]:
    """The log with one send at `at` recorded at `to` instead (unchanged when `at` is not in it any more)."""
    i = bisect_left(log, at)
    if i == len(log) or log[i] != at:
        return log
    log = log[:i] + log[i + 1:]
    insort(log, to)
    return log


class Slots(Protocol):
    def reserve(self, keys: dict[str, tuple[Window, ...]], now: Now, horizon: float) -> tuple[datetime, bool]:
        """The earliest time all `keys` allow a send, and whether it was taken (only when within `horizon`
        seconds of `now`: a time, or a clock read once the keys are locked)."""
        ...

    def move(self, keys: Iterable[str], at: datetime, to: datetime) -> None:
        """Record a send taken at `at` as made at `to` instead (when it finished: the platform counted it by then)."""
        ...

    def prune(self, before: datetime) -> int:
        """Forget keys whose last send was before `before`; how many."""
        ...


class MemorySlots:
    """Send logs in this process (one serving process: SQLite)."""

    def __init__(self, max_keys: int = 4096) -> None:
        self.max_keys = max_keys
        self._logs: dict[str, list[int]] = {}
        self._spans: dict[str, int] = {}  # each key's longest window: older sends no longer matter

    def __len__(self) -> int:
        return len(self._logs)

    def reserve(self, keys: dict[str, tuple[Window, ...]], now: Now, horizon: float) -> tuple[datetime, bool]:
        now = now() if callable(now) else now
        if not keys:
            return now, True
        logs = {key: self._logs[key] for key in keys if key in self._logs}
        at, written = _reserve(logs, keys, now, horizon)
        if written is None:
            return from_us(at), False
        self._logs.update(written)
        for key, windows in keys.items():
            self._spans[key] = max(span for _, span in windows)
        if len(self._logs) > self.max_keys:
            self._forget_idle(to_us(now))
        return from_us(at), True

    def move(self, keys: Iterable[str], at: datetime, to: datetime) -> None:
        for key in keys:
            if key in self._logs:
                self._logs[key] = _moved(self._logs[key], to_us(at), to_us(to))

    def _forget_idle(self, now: int) -> None:
        for key in [k for k, log in self._logs.items() if log[-1] <= now - self._spans[k]]:
            del self._logs[key], self._spans[key]

    def prune(self, before: datetime) -> int:
        old = [k for k, log in self._logs.items() if log[-1] < to_us(before)]
        for key in old:
            del self._logs[key], self._spans[key]
        return len(old)


class DatabaseSlots:
    """Send logs in the `rate_slots` table, shared by every instance on the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def reserve(self, keys: dict[str, tuple[Window, ...]], now: Now, horizon: float) -> tuple[datetime, bool]:
        if not keys:
            return (now() if callable(now) else now), True
        with self.db.transaction() as s:
            return reserve_in(s, keys, now, horizon)

    def move(self, keys: Iterable[str], at: datetime, to: datetime) -> None:
        with self.db.transaction() as s:
            move_in(s, keys, at, to)

    def prune(self, before: datetime) -> int:
        with self.db.transaction() as s:
            return prune_in(s, before)


_INSERT = {name: dialect_insert(RateSlot).on_conflict_do_nothing(index_elements=["key"])
           for name, dialect_insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))}
_WRITE = (update(RateSlot.__table__).where(RateSlot.__table__.c.key == bindparam("k"))
          .values(next_at=bindparam("at"), sends=bindparam("log")))


def reserve_in(session: Session, keys: dict[str, tuple[Window, ...]], now: Now,
               horizon: float) -> tuple[datetime, bool]:
    """`DatabaseSlots.reserve` inside the caller's transaction."""
    names = sorted(keys)
    dialect = session.get_bind().dialect.name
    session.execute(_INSERT[dialect], [{"key": k, "next_at": EPOCH} for k in names])
    stmt = select(RateSlot.key, RateSlot.sends).where(RateSlot.key.in_(names)).order_by(RateSlot.key)
    if dialect == "postgresql":
        stmt = stmt.with_for_update()
    logs = {key: unpack(data) for key, data in session.execute(stmt)}
    now = now() if callable(now) else now  # read once the rows are locked: another instance's turn may have been long
    at, written = _reserve(logs, keys, now, horizon)
    if written is None:
        return from_us(at), False
    session.execute(_WRITE, [{"k": key, "at": from_us(log[-1]), "log": pack(log)} for key, log in written.items()])
    return from_us(at), True


def move_in(session: Session, keys: Iterable[str], at: datetime, to: datetime) -> None:
    """`DatabaseSlots.move` inside the caller's transaction."""
    stmt = select(RateSlot.key, RateSlot.sends).where(RateSlot.key.in_(sorted(keys))).order_by(RateSlot.key)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    rows = [(key, _moved(unpack(data), to_us(at), to_us(to))) for key, data in session.execute(stmt)]
    if rows:
        session.execute(_WRITE, [{"k": key, "at": from_us(log[-1]), "log": pack(log)} for key, log in rows if log])


def prune_in(session: Session, before: datetime, limit: int = 1000) -> int:
    """Delete up to `limit` keys whose last send was before `before`; how many."""
    old = select(RateSlot.key).where(RateSlot.next_at < before).limit(limit)
    result = session.execute(delete(RateSlot).where(RateSlot.key.in_(old.scalar_subquery())).returning(RateSlot.key)
                             .execution_options(synchronize_session=False))
    return len(result.all())
