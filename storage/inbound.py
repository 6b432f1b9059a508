"""The inbound queue: verified events written down before their callback is answered.

`put_many` writes a batch of rows in one transaction (the adapter kit group-commits concurrent
callbacks through `QueueWriter`, the same insert on a bare connection), each already leased to the
writing process, so that process works them at once and no other instance takes them while it does.
`claim` takes rows whose lease ran out: a process that died (kill -9) between answering and finishing
leaves its rows to the next one. `done` deletes a row once the engine's transaction, with its inbound
receipt, has committed; `retry` puts a failed follow-up job back for later.

Leases use wall-clock time, not the engine's `Clock`: they measure how long a process may hold a
row, which has nothing to do with the business time that tests and the console move around.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Dialect, bindparam, delete, func, insert, or_, select, update
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


class QueueWriter:
    """The inbound journal's one commit per batch, on a bare DBAPI connection: insert the new rows, delete
    the ones whose work is done.

    It runs for every callback, and the answer waits for it. Through a session it cost about 500 µs of
    CPU per commit (about 340 µs through a Core connection) where the database's own work is about 50 µs,
    and that CPU is taken from the loop that answers (they share the GIL). The SQL and the values'
    conversions are still SQLAlchemy's, compiled once per dialect, so these rows read back exactly like
    rows written by `put_many`; only the payload's JSON text is orjson's (the same value, read back)."""

    def __init__(self, dialect: Dialect) -> None:
        table = InboundQueueItem.__table__
        columns = [c for c in table.columns if c.name != "id"]
        put = (insert(table).values({c.name: bindparam(c.name, type_=c.type) for c in columns})
               .returning(table.c.id).compile(dialect=dialect))
        drop = delete(table).where(table.c.id == bindparam("id", type_=table.c.id.type)).compile(dialect=dialect)
        self._put_sql, self._drop_sql = put.string, drop.string
        self._order = list(put.positiontup) if put.positional else None
        self._convert = {c.name: c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns}
        self._convert["payload"] = _payload_converter(dialect)
        self._pipeline = dialect.driver == "psycopg"  # one round trip for the batch, results in order

    def write(self, dbapi_connection: Any, rows: list[tuple[str, str, dict[str, Any]]], lease: timedelta,
              done: list[int]) -> list[int]:
        """Insert (platform, kind, payload) rows leased to the caller and delete the rows `done`, in the
        caller's transaction; the new rows' ids, in order."""
        now = wall_now()
        same = self._converted({"attempts": 0, "not_before": now, "claimed_until": now + lease, "last_error": "",
                                "created_at": now})  # once for the batch
        params = [self._ordered({**same, **self._converted({"platform": platform, "kind": kind, "payload": payload})})
                  for platform, kind, payload in rows]
        cursor = dbapi_connection.cursor()
        try:
            ids = self._insert(cursor, params) if params else []
            if done:
                cursor.executemany(self._drop_sql, [self._key(item_id) for item_id in done])
        finally:
            cursor.close()
        return ids

    def _insert(self, cursor: Any, params: list[Any]) -> list[int]:
        if not self._pipeline:  # SQLite: a statement per row is cheap in-process, and each says its own id
            return [cursor.execute(self._put_sql, p).fetchone()[0] for p in params]
        cursor.executemany(self._put_sql, params, returning=True)
        ids = [cursor.fetchone()[0]]
        while cursor.nextset():
            ids.append(cursor.fetchone()[0])
        return ids

    def _converted(self, values: dict[str, Any]) -> dict[str, Any]:
        """The values as the driver takes them (JSON text, naive UTC times), by the columns' own types."""
        for name in values:
            convert = self._convert[name]
            if convert is not None:
                values[name] = convert(values[name])
        return values

    def _ordered(self, values: dict[str, Any]) -> Any:
        return values if self._order is None else tuple(values[name] for name in self._order)

    def _key(self, item_id: int) -> Any:
        return {"id": item_id} if self._order is None else (item_id,)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _payload_converter(dialect: Dialect) -> Callable[[Any], Any]:
    """The payload as the driver takes it, serialised by orjson (a tenth of the standard library's time, on
    the thread the answers wait for); it reads back through the column's own JSON type like any row."""
    if dialect.driver == "psycopg":
        from psycopg.types.json import Json  # psycopg is installed only with PostgreSQL

        return lambda value: Json(value, dumps=_json_text)
    return _json_text


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
