"""The inbound queue: verified events written down before their callback is answered.

`put_many` writes a batch of rows in one transaction (the adapter kit group-commits concurrent
callbacks), each already leased to the writing process, so that process works them at once and no
other instance takes them while it does. `claim` takes rows whose lease ran out: a process that
died (kill -9) between answering and finishing leaves its rows to the next one. `done` deletes a row
once the engine's transaction, with its inbound receipt, has committed; `retry` puts a failed
follow-up job back for later.

Leases use wall-clock time, not the engine's `Clock`: they measure how long a process may hold a
row, which has nothing to do with the business time that tests and the console move around.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from collabbot.storage.models import InboundQueueItem

DEFAULT_LEASE = timedelta(seconds=120)


@dataclass(frozen=True)
class QueuedItem:
    id: int
    platform: str
    kind: str
    payload: dict[str, Any]
    attempts: int


def wall_now() -> datetime:
    return datetime.now(UTC)


# built once: the insert is on the answer's path (a callback waits for its commit), and the ORM's
# per-row statement building cost more than the database's work
_PUT = (insert(InboundQueueItem.__table__)
        .returning(InboundQueueItem.__table__.c.id, sort_by_parameter_order=True))


def put_many(session: Session, rows: list[tuple[str, str, dict[str, Any]]], lease: timedelta) -> list[int]:
    """Insert (platform, kind, payload) rows leased to the caller; their ids, in order."""
    if not rows:
        return []
    now = wall_now()
    params = [{"platform": platform, "kind": kind, "payload": payload, "attempts": 0, "not_before": now,
               "claimed_until": now + lease, "last_error": "", "created_at": now}
              for platform, kind, payload in rows]
    return list(session.connection().execute(_PUT, params).scalars())


def claim(session: Session, limit: int, lease: timedelta, platforms: tuple[str, ...], *,
          ignore_leases: bool = False) -> list[QueuedItem]:
    """Rows of these platforms that nobody holds (lease run out) and are due; leased to the caller.

    `ignore_leases` takes held rows too: right after start on SQLite, where one process owns the file,
    whatever is held was held by this process's dead predecessor."""
    now = wall_now()
    stmt = (select(InboundQueueItem)
            .where(InboundQueueItem.platform.in_(platforms), InboundQueueItem.not_before <= now)
            .order_by(InboundQueueItem.id).limit(limit))
    if not ignore_leases:
        stmt = stmt.where(or_(InboundQueueItem.claimed_until.is_(None), InboundQueueItem.claimed_until <= now))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    for row in rows:
        row.claimed_until = now + lease
        if row.kind == "event":  # a follow-up counts its attempts when it fails (`retry`)
            row.attempts += 1
    session.flush()
    return [QueuedItem(r.id, r.platform, r.kind, r.payload, r.attempts) for r in rows]


def done(session: Session, item_id: int) -> None:
    session.execute(delete(InboundQueueItem).where(InboundQueueItem.id == item_id))


_DELETE = delete(InboundQueueItem.__table__).where(
    InboundQueueItem.__table__.c.id.in_(bindparam("ids", expanding=True)))


def delete_many(session: Session, item_ids: list[int]) -> None:
    """Rows whose work is done (one Core statement, built once: it runs for every callback)."""
    if item_ids:
        session.connection().execute(_DELETE, {"ids": item_ids})


def retry(session: Session, item_id: int, error: str, after: timedelta) -> None:
    """A failed attempt: due again after `after`, and free for any instance to take then."""
    at = wall_now() + after
    session.execute(update(InboundQueueItem).where(InboundQueueItem.id == item_id).values(
        attempts=InboundQueueItem.attempts + 1, last_error=error[:2000], not_before=at, claimed_until=None))


def depth(session: Session) -> tuple[int, float]:
    """(rows waiting, age in seconds of the oldest), for /metrics."""
    count, oldest = session.execute(select(func.count(), func.min(InboundQueueItem.created_at))).one()
    lag = (wall_now() - oldest).total_seconds() if oldest is not None else 0.0
    return int(count or 0), max(0.0, lag)
