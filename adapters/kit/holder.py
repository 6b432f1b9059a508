"""One holder across instances: for a platform connection only one `collabbot serve` may keep open.

WeCom, say, allows one live long connection per robot: a second `aibot_subscribe` kicks the first
(`disconnected_event`). With several instances on one PostgreSQL, two would kick each other forever,
so an instance opens the socket only while it holds a session-level advisory lock
(`pg_try_advisory_lock`), named for what it guards, on a connection of its own, outside the pool:

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

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for `name` (e.g. "wecom:robot:<bot id>")."""
    digest = hashlib.sha256(f"collabbot:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Holder:
    """The right to keep one thing open, held by at most one instance at a time: `platform`'s `what`
    (for the logs), locked under `name`."""

    def __init__(self, url: str | None, platform: str, what: str, name: str) -> None:
        self.url = url  # the PostgreSQL server's (libpq form, `Hub.lock_url`); None: one process, held at once
        self.platform = platform
        self.what = what
        self.key = lock_key(name)
        self._conn: Any = None
        self.held = False

    @property
    def shared(self) -> bool:
        return self.url is not None

    async def acquire(self) -> bool:
        """Take the lock if nobody holds it; True while we hold it."""
        if not self.shared:
            self.held = True
            return True
        if self.held and await self.alive():
            return True
        await self.release()
        import psycopg

        try:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=int(CHECK_TIMEOUT))
        except Exception as exc:
            log.warning("%s: cannot reach PostgreSQL for the lock on %s: %r", self.platform, self.what, exc)
            return False
        try:
            cur = await asyncio.wait_for(conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)), CHECK_TIMEOUT)
            row = await cur.fetchone()
        except Exception as exc:
            log.warning("%s: asking for the lock on %s failed: %r", self.platform, self.what, exc)
            await _close(conn)
            return False
        if not row or not row[0]:
            await _close(conn)
            return False
        self._conn, self.held = conn, True
        log.info("%s: this instance holds %s (advisory lock %s)", self.platform, self.what, self.key)
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
            log.error("%s: the lock's connection failed (%r): giving up %s", self.platform, exc, self.what)
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
