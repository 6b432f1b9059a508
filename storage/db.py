"""Connecting to the database and the unit of work.

SQLite is the embedded default: WAL, foreign keys on, a 10 s busy timeout, and `BEGIN IMMEDIATE` for
every transaction, so that writers queue instead of failing with "database is locked" and
savepoints work (pysqlite's own transaction handling is switched off for that). PostgreSQL is the
production and multi-instance database. `Database.transaction()` is the unit of work: it commits
when the block ends normally and rolls back on any exception.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def error_line(exc: BaseException) -> str:
    """What a database error says, in one line (the driver's message when there is one): for an admin's
    log or terminal, where a traceback would bury it."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An Engine for `url`, with our SQLite settings when it is SQLite."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


WRITER_WAIT_SECONDS = 10  # as long as SQLite's own busy timeout


class WriterLock:
    """The one SQLite writer of this process: re-entrant (a transaction may open another), and a
    waiting `priority` writer goes before every other waiter. The inbound journal is one: a callback
    is answered once its row is committed, so it must not queue behind a backlog of engine work."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._urgent = 0

    def acquire(self, priority: bool = False, timeout: float = WRITER_WAIT_SECONDS) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if priority:
                self._urgent += 1
                try:
                    free = self._cond.wait_for(lambda: self._owner is None, timeout)
                finally:
                    self._urgent -= 1
            else:
                free = self._cond.wait_for(lambda: self._owner is None and not self._urgent, timeout)
            if free:
                self._owner, self._depth = me, 1
            return free

    def release(self) -> None:
        with self._cond:
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._cond.notify_all()


_WRITERS: dict[str, WriterLock] = {}
_WRITERS_LOCK = threading.Lock()


def _writer_lock(url: str) -> WriterLock:
    """One writer lock per SQLite file in this process."""
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(url, WriterLock())


class Database:
    """The engine plus a session factory; the one way the rest of the code reaches the tables."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = _writer_lock(url) if url.startswith("sqlite") else None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def libpq_url(self) -> str | None:
        """The PostgreSQL server in libpq's form, for a connection of one's own outside the pool (the
        inbound journal's, an instance-wide lock's); None on SQLite."""
        if not self.is_postgres:
            return None
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @contextmanager
    def transaction(self, priority: bool = False) -> Iterator[Session]:
        """One unit of work: committed at the end of the block, rolled back on any exception.

        On SQLite the threads of this process queue for the one writer on a lock of ours: SQLite's own
        busy handler makes a waiting writer sleep and poll (1, 2, 5 … 100 ms), which under a burst of
        callbacks turned milliseconds of work into hundreds of milliseconds of waiting. A `priority`
        transaction goes before the other waiters (see `WriterLock`)."""
        if self._writer is None:
            with self._sessions() as session, session.begin():
                yield session
            return
        if not self._writer.acquire(priority):
            raise TimeoutError(f"the SQLite database was held by another transaction for {WRITER_WAIT_SECONDS} s")
        try:
            with self._sessions() as session, session.begin():
                yield session
        finally:
            self._writer.release()

    @contextmanager
    def raw_transaction(self, priority: bool = False) -> Iterator[Any]:
        """A bare DBAPI connection in a transaction, committed at the end of the block: for the one write
        too frequent for the ORM's cost (the inbound journal on SQLite, `storage.inbound.queue_writer`). It
        takes the same writer lock as `transaction`."""
        if self._writer is not None and not self._writer.acquire(priority):
            raise TimeoutError(f"the SQLite database was held by another transaction for {WRITER_WAIT_SECONDS} s")
        try:
            connection = self.engine.raw_connection()
            try:
                if self._writer is not None:
                    connection.cursor().execute("BEGIN IMMEDIATE")  # as every SQLite transaction here
                yield connection
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.close()  # back to the pool
        finally:
            if self._writer is not None:
                self._writer.release()

    def dispose(self) -> None:
        self.engine.dispose()
