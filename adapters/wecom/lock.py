"""Who may hold the robot's long connection: exactly one `collabbot serve` per robot.

WeCom allows one live long connection per robot: a second `aibot_subscribe` kicks the first
(`disconnected_event`). With several instances on one PostgreSQL, two would kick each other forever,
so an instance opens the socket only while it holds a session-level advisory lock
(`pg_try_advisory_lock`) on a connection of its own, outside the pool:

* the lock lives as long as that connection: when the holder dies — even by `kill -9` — the kernel
  closes its socket, PostgreSQL ends the session and releases the lock, and a standby's next try
  (every `takeover_seconds`) takes it;
* the holder checks its connection every `takeover_seconds`; a connection that no longer answers means
  the lock may be someone else's now, so the socket is closed at once (`alive()` is False).

On SQLite there is one serving process per database file (serve refuses a second), so the lock is
simply held.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from collabbot.storage.db import Database

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0


def lock_key(bot_id: str) -> int:
    """A stable signed 64-bit advisory lock key for one robot."""
    digest = hashlib.sha256(f"collabbot:wecom:robot:{bot_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RobotLock:
    def __init__(self, db: Database, bot_id: str) -> None:
        self.db = db
        self.key = lock_key(bot_id)
        self._conn: Any = None
        self.held = False

    @property
    def shared(self) -> bool:
        return self.db.is_postgres

    async def acquire(self) -> bool:
        """Take the lock if nobody holds it; True while we hold it."""
        if not self.shared:
            self.held = True
            return True
        if self.held and await self.alive():
            return True
        await self.release()
        import psycopg

        url = self.db.engine.url.set(drivername="postgresql")
        try:
            conn = await psycopg.AsyncConnection.connect(url.render_as_string(hide_password=False), autocommit=True,
                                                         connect_timeout=int(CHECK_TIMEOUT))
        except Exception as exc:
            log.warning("wecom: cannot reach PostgreSQL for the robot lock: %r", exc)
            return False
        try:
            cur = await asyncio.wait_for(conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)), CHECK_TIMEOUT)
            row = await cur.fetchone()
        except Exception as exc:
            log.warning("wecom: asking for the robot lock failed: %r", exc)
            await _close(conn)
            return False
        if not row or not row[0]:
            await _close(conn)
            return False
        self._conn, self.held = conn, True
        log.info("wecom: this instance holds the robot's long connection (advisory lock %s)", self.key)
        return True

    async def alive(self) -> bool:
        """Is the lock still ours? (Its connection still answers.)"""
        if not self.shared:
            return self.held
        if self._conn is None:
            return False
        try:
            await asyncio.wait_for(self._conn.execute("SELECT 1"), CHECK_TIMEOUT)
            return True
        except Exception as exc:
            log.error("wecom: the robot lock's connection failed (%r): giving up the long connection", exc)
            self.held = False
            return False

    async def release(self) -> None:
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,)), CHECK_TIMEOUT)
            await _close(conn)


async def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
