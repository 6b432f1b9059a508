"""The inbound queue: verified events written down before their callback is answered.

`put_many` writes a batch of rows in one transaction (the adapter kit group-commits concurrent
callbacks through `queue_writer`: the same rows, written without the ORM), each already leased to the
writing process, so that process works them at once and no other instance takes them while it does.
`claim` takes rows whose lease ran out: a process that died (kill -9) between answering and finishing
leaves its rows to the next one. `done` deletes a row once the engine's transaction, with its inbound
receipt, has committed; `retry` puts a failed follow-up job back for later.

Leases use wall-clock time, not the engine's `Clock`: they measure how long a process may hold a
row, which has nothing to do with the business time that tests and the console move around.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from collabbot.storage.models import InboundQueueItem

if TYPE_CHECKING:
    from collabbot.storage.db import Database

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


class QueueWriter(Protocol):
    """The inbound journal's one commit per batch: insert the new rows (leased to the caller) and delete
    the rows whose work is done, in one transaction; the new rows' ids, in order.

    It runs for every callback, and the answer waits for it, on a thread that shares the GIL with the loop
    that answers: so it bypasses the ORM (about 500 µs of CPU per commit through a session, where the
    database's own work is about 50 µs). Its rows read back, and are claimed, exactly like `put_many`'s."""

    def write(self, rows: list[tuple[str, str, dict[str, Any]]], lease: timedelta, done: list[int]) -> list[int]: ...

    def close(self) -> None: ...


def queue_writer(db: Database) -> QueueWriter:
    """The journal's writer for `db`: one statement on a connection of its own on PostgreSQL, a statement
    per row in a transaction on SQLite (in-process, where a statement is cheap)."""
    url = db.libpq_url
    return SqliteQueueWriter(db) if url is None else PostgresQueueWriter(url)


class SqliteQueueWriter:
    """SQLite: the batch on a bare DBAPI connection of the pool, with SQLAlchemy's SQL and value conversions
    compiled once (so the JSON text and the times are stored as the ORM stores them)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        dialect = db.engine.dialect
        table = InboundQueueItem.__table__
        columns = [c for c in table.columns if c.name != "id"]
        put = (insert(table).values({c.name: bindparam(c.name, type_=c.type) for c in columns})
               .returning(table.c.id).compile(dialect=dialect))
        drop = delete(table).where(table.c.id == bindparam("id", type_=table.c.id.type)).compile(dialect=dialect)
        self._put_sql, self._drop_sql = put.string, drop.string
        self._order = list(put.positiontup) if put.positional else None
        self._convert = {c.name: c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns}
        self._convert["payload"] = _json_text

    def write(self, rows: list[tuple[str, str, dict[str, Any]]], lease: timedelta, done: list[int]) -> list[int]:
        now = wall_now()
        same = self._converted({"attempts": 0, "not_before": now, "claimed_until": now + lease, "last_error": "",
                                "created_at": now})  # once for the batch
        params = [self._ordered({**same, **self._converted({"platform": platform, "kind": kind, "payload": payload})})
                  for platform, kind, payload in rows]
        with self.db.raw_transaction(priority=True) as connection:  # an answer waits on it: before the engine
            cursor = connection.cursor()
            try:
                ids = [cursor.execute(self._put_sql, p).fetchone()[0] for p in params]
                if done:
                    cursor.executemany(self._drop_sql, [self._key(item_id) for item_id in done])
            finally:
                cursor.close()
        return ids

    def close(self) -> None:
        pass  # its connections are the pool's

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


def _without_nul(value: Any) -> Any:
    """`value` with U+0000 taken out of every string: no person means one, and the engine takes it out of
    every event anyway (`bot.events.sanitized`), since PostgreSQL text cannot hold it."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


# The whole batch as one statement: the deletes in a data-modifying CTE, the new rows from one JSON array
# (platform, kind, payload), inserted in the array's order, so that the ids they draw ascend in that order.
_PG_WRITE = """
WITH done AS (DELETE FROM inbound_queue WHERE id = ANY(%(done)s::integer[]))
INSERT INTO inbound_queue (platform, kind, payload, attempts, not_before, claimed_until, last_error, created_at)
SELECT row ->> 0, row ->> 1, row -> 2, 0, %(now)s, %(until)s, '', %(now)s
FROM json_array_elements(%(rows)s::json) WITH ORDINALITY AS batch(row, n) ORDER BY n
RETURNING id"""


class PostgresQueueWriter:
    """PostgreSQL: the batch in one statement, in autocommit, on a connection of the writer's own (it writes
    from one thread). Through the pool the same batch took a ping, BEGIN, a pipeline of inserts, the
    deletes and COMMIT: psycopg spent about 600 µs of CPU on a commit of 8 rows, and about 110 µs on this
    one statement. A connection the server dropped (a restart) is replaced and the batch sent once more; if
    the first attempt had in fact been committed, its rows only repeat work the engine's receipts make
    harmless."""

    CONNECT_TIMEOUT = 10  # seconds, unless the URL says; libpq's own default waits for ever

    def __init__(self, url: str) -> None:
        import psycopg  # installed with PostgreSQL only

        self.url = url
        self._psycopg = psycopg
        self._connection: Any = None

    def write(self, rows: list[tuple[str, str, dict[str, Any]]], lease: timedelta, done: list[int]) -> list[int]:
        now = wall_now().replace(tzinfo=None)  # naive UTC, as the columns hold times
        text = orjson.dumps(rows).decode()
        if "\\u0000" in text:  # PostgreSQL's JSON functions refuse an escaped U+0000 (and would fail the batch)
            text = orjson.dumps(_without_nul(rows)).decode()
        params = {"done": done, "now": now, "until": now + lease, "rows": text}
        try:
            return self._execute(params)
        except self._psycopg.OperationalError:
            if self._connection is None or not self._connection.broken:
                raise
            self.close()
            return self._execute(params)

    def _execute(self, params: dict[str, Any]) -> list[int]:
        if self._connection is None:
            self._connection = self._connect()
        with self._connection.cursor() as cursor:
            cursor.execute(_PG_WRITE, params, prepare=True)
            return sorted(row[0] for row in cursor.fetchall())

    def _connect(self) -> Any:
        given = self._psycopg.conninfo.conninfo_to_dict(self.url)
        timeout = {} if "connect_timeout" in given else {"connect_timeout": self.CONNECT_TIMEOUT}
        return self._psycopg.connect(self.url, autocommit=True, **timeout)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


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
