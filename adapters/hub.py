"""What every platform adapter is given: one way into the engine from the event loop.

`Hub.handle(event)` runs `Bot.handle` in the engine's own bounded thread pool (the engine and its
database calls are synchronous; they must never block the loop that answers callbacks within the
platforms' deadlines, nor starve `/healthz`, which uses the loop's default pool), then wakes the
delivery worker so the messages it queued go out at once.

`Hub.journal` makes inbound events durable before they are answered: writes from concurrent
callbacks are group-committed on one dedicated thread, so a burst costs a few transactions, not one
per callback, and never waits behind the engine's backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web

from collabbot.bot.app import Bot
from collabbot.bot.events import InboundEvent
from collabbot.bot.replies import Reply
from collabbot.scheduler.delivery import DeliveryWorker, Sender
from collabbot.storage import inbound
from collabbot.storage.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
ENGINE_THREADS = 4  # SQLite has one writer anyway; PostgreSQL gains little beyond the cores
LEASE = inbound.DEFAULT_LEASE


class Journal:
    """Durable inbound rows: `put` waits for its commit; `forget` deletes later, in the next commit."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="collabbot-journal")
        self._puts: list[tuple[list[tuple[str, str, dict[str, Any]]], asyncio.Future[list[int]]]] = []
        self._forgotten: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0

    async def put(self, rows: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
        """Insert (platform, kind, payload) rows leased to this process; returns once they are committed."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._puts.append((rows, future))
        self._kick()
        return await future

    def forget(self, row_id: int) -> None:
        """The row's work is done: delete it with the next commit (a crash before then only repeats
        work that the engine's receipt makes harmless)."""
        self._forgotten.append(row_id)
        self._kick()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(session, *args)` in its own transaction on the journal's thread."""
        def work() -> T:
            with self.db.transaction() as s:
                return fn(s, *args)
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._puts or self._forgotten:
            puts, self._puts = self._puts, []
            forgotten, self._forgotten = self._forgotten, []
            rows = [row for batch, _ in puts for row in batch]
            try:
                ids = await loop.run_in_executor(self._thread, self._commit, rows, forgotten)
            except Exception as exc:
                log.exception("inbound journal: commit of %s row(s) failed", len(rows))
                for _, future in puts:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for batch, future in puts:
                if not future.done():
                    future.set_result(ids[start:start + len(batch)])
                start += len(batch)

    def _commit(self, rows: list[tuple[str, str, dict[str, Any]]], forgotten: list[int]) -> list[int]:
        with self.db.transaction() as s:
            ids = inbound.put_many(s, rows, LEASE) if rows else []
            if forgotten:
                inbound.delete_many(s, forgotten)
        self.commits += 1
        return ids

    def close(self) -> None:
        self._thread.shutdown(wait=True)


@dataclass
class Hub:
    bot: Bot
    worker: DeliveryWorker | None = None
    engine_threads: int = ENGINE_THREADS
    journal: Journal = field(init=False)
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.journal = Journal(self.bot.db)
        self._pool = ThreadPoolExecutor(self.engine_threads, thread_name_prefix="collabbot-engine")
        self.backlog = 0

    async def handle(self, event: InboundEvent) -> Reply:
        self.backlog += 1
        try:
            reply = await asyncio.get_running_loop().run_in_executor(self._pool, self.bot.handle, event)
        finally:
            self.backlog -= 1
        if self.worker is not None:
            self.worker.wake.set()
        return reply

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.journal.close()


class PlatformAdapter(Protocol):
    """One platform: its webhook routes and/or long connection, and its sender."""

    platform: str
    sender: Sender

    def add_routes(self, app: web.Application) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
