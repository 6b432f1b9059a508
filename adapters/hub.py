"""What every platform adapter is given: one way into the engine from the event loop.

`Hub.handle(event)` runs `Bot.handle` in the engine's own bounded thread pool (the engine and its
database calls are synchronous; they must never block the loop that answers callbacks within the
platforms' deadlines, nor starve `/healthz`, which uses the loop's default pool), then wakes the
delivery worker so the messages it queued go out at once. A call whose answer someone waits for (a
card tap: the answer carries the card) goes before the queued background work (`EngineGate`), so a
burst of messages never makes a tap miss its deadline.

The kit reaches the database only through here (the journal's queue operations, and the row types
`QueuedItem` and `OutboxItem` it hands over), never by importing `storage` itself.

`Hub.journal` makes inbound events durable before they are answered: writes from concurrent
callbacks are group-committed on one dedicated thread, so a burst costs a few transactions, not one
per callback, and never waits behind the engine's backlog.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from aiohttp import web

from collabbot.adapters.kit.spool import Spool
from collabbot.bot.app import Bot
from collabbot.bot.events import InboundEvent
from collabbot.bot.replies import Reply
from collabbot.scheduler.delivery import DeliveryWorker, Sender
from collabbot.storage import inbound
from collabbot.storage.db import Database
from collabbot.storage.inbound import QueuedItem as QueuedItem  # handed to the kit
from collabbot.storage.outbox import OutboxItem as OutboxItem  # handed to the kit

log = logging.getLogger(__name__)

T = TypeVar("T")
# The engine is CPU-bound Python: past the cores, threads only fight for the GIL with the loop that
# answers callbacks (bench/inbound.py, PostgreSQL, 200 creations/s: answer p99 192 ms with 4 threads,
# 111 ms with 2, for the same work done). Of the two, queued messages use one (EngineGate): the other
# is kept for taps, whose answer waits for the engine.
ENGINE_THREADS = 2
# How long a thread may hold the GIL while another asks for it (CPython's default: 5 ms). The loop
# that answers callbacks asks at every await, so with the engine's threads busy it waited up to 5 ms
# at each step of each request; at 1 ms the same closed-loop run answered about 15 % more creations
# a second (bench/inbound.py) for the same work done.
SWITCH_INTERVAL = 0.001
LEASE = inbound.DEFAULT_LEASE
# Answers have a deadline, queued work has none. When answering is saturated (BUSY callbacks or more
# being answered at once), a queued message's engine call waits until answering has been quiet for
# QUIET, and never more than YIELD_TO_ANSWERS: otherwise the engine thread takes half of the GIL from
# the loop. A closed loop of creations (bench/inbound.py) answered ~1,000/s without this and ~2,300-2,800/s
# with it; below saturation (200-400/s open loop) it never waits, so the engine's pace is unchanged.
BUSY = 8
QUIET = 0.002
YIELD_TO_ANSWERS = 0.25


def favour_the_loop() -> None:
    """Let the answering loop take the GIL from a busy engine thread sooner (a process-wide setting)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def settle_the_heap() -> None:
    """Before serving: what start-up built (modules, mappers, compiled statements, config) lives as long as
    the process, so the collector stops scanning it. A full collection over it paused every thread for
    40-70 ms under load, which was the p99 of the answers. Called before anything holds a lease or waits
    for an answer, since this one collection pauses every thread too."""
    gc.collect()
    gc.freeze()


class Ticket:
    """One durable row: its queue id once the database has it (it may first sit in the spool)."""

    def __init__(self, landed: asyncio.Future[list[int]], index: int) -> None:
        self.landed = landed
        self.index = index

    @property
    def id(self) -> int | None:
        if not self.landed.done() or self.landed.cancelled() or self.landed.exception() is not None:
            return None
        return self.landed.result()[self.index]


class Journal:
    """Durable inbound rows: `put` returns once they are committed, or spooled to a local file when the
    database does not take them within `spool_after` seconds; `forget` deletes later, in a next commit."""

    def __init__(self, db: Database, spool: Spool | None = None, spool_after: float = 1.0) -> None:
        self.db = db
        self.spool = spool
        self.spool_after = spool_after
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="collabbot-journal")
        self._writer = inbound.QueueWriter(db.engine.dialect)
        self._puts: list[tuple[list[tuple[str, str, dict[str, Any]]], asyncio.Future[list[int]]]] = []
        self._forgotten: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        self._recovered = False
        self.commits = 0

    async def put(self, rows: list[tuple[str, str, dict[str, Any]]]) -> list[Ticket]:
        """Make (platform, kind, payload) rows durable (leased to this process); one ticket per row."""
        landed: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._puts.append((rows, landed))
        self._kick()
        tickets = [Ticket(landed, i) for i in range(len(rows))]
        if self.spool is None or not rows:
            await landed
            return tickets
        try:
            await asyncio.wait_for(asyncio.shield(landed), self.spool_after)
        except TimeoutError:
            spool = self.spool
            ids = await asyncio.to_thread(spool.append, rows)
            log.warning("inbound journal: the database did not take %s row(s) within %.1f s; spooled to %s",
                        len(rows), self.spool_after, spool.path)
            landed.add_done_callback(lambda f: None if f.cancelled() or f.exception() else spool.landed(ids))
        return tickets

    def forget(self, ticket: Ticket | int) -> None:
        """The row's work is done: delete it with a next commit (a crash before then only repeats work
        that the engine's receipt makes harmless)."""
        if isinstance(ticket, int):
            self._forgotten.append(ticket)
            self._kick()
        elif ticket.id is not None:
            self.forget(ticket.id)
        else:
            ticket.landed.add_done_callback(lambda _: ticket.id is not None and self.forget(ticket.id))

    async def recover(self) -> int:
        """Move the rows a previous process left in the spool into the queue; how many."""
        if self.spool is None or self._recovered:
            return 0
        self._recovered = True
        rows = await asyncio.to_thread(self.spool.pending)
        if rows:
            await self.run(inbound.put_many, rows, timedelta(0))  # unleased: any instance may take them now
            log.warning("inbound journal: %s row(s) recovered from the spool %s", len(rows), self.spool.path)
        await asyncio.to_thread(self.spool.reset)
        return len(rows)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(session, *args)` in its own transaction on the journal's thread."""
        def work() -> T:
            with self.db.transaction() as s:
                return fn(s, *args)
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def claim(self, platform: str, limit: int, *, ignore_leases: bool = False) -> list[QueuedItem]:
        """Rows of `platform` that nobody holds and are due, leased to this process (see `inbound.claim`)."""
        return await self.run(lambda s: inbound.claim(s, limit, LEASE, (platform,), ignore_leases=ignore_leases))

    async def retry(self, item_id: int, error: str, after: timedelta) -> None:
        """A follow-up that failed: due again after `after`, for any instance."""
        await self.run(inbound.retry, item_id, error, after)

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
        with self.db.raw_transaction(priority=True) as connection:  # an answer waits on it: before the engine
            ids = self._writer.write(connection, rows, LEASE, forgotten)
        self.commits += 1
        return ids

    async def settled(self) -> None:
        """Wait until every row put so far is committed and its spool mark written (tests, shutdown)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])
        await asyncio.sleep(0)  # the futures' done callbacks (spool marks, forgets) run on the next turn
        if self._puts or self._forgotten:
            await self.settled()

    def close(self) -> None:
        self._thread.shutdown(wait=True)


class EngineGate:
    """At most `slots` engine calls at once, of which at most `background` not urgent; among the
    waiting, an urgent call goes first, then in order.

    Background work (queued messages) is held to fewer threads than the engine has, so that a tap finds
    a thread free at once however long the backlog, and so that the backlog's threads do not fight each
    other and the answering loop for the GIL (bench/inbound.py: one background thread answered more
    creations a second, and worked more of them, than two)."""

    def __init__(self, slots: int, background: int | None = None) -> None:
        self.free = slots
        self.background = max(1, slots - 1) if background is None else background
        self.busy_background = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0

    async def enter(self, urgent: bool = False) -> None:
        self._seq += 1
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (0 if urgent else 1, self._seq, turn))
        self._dispatch()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave(urgent)  # the slot was handed over as the caller went away: pass it on
            else:
                self._waiting = [w for w in self._waiting if w[2] is not turn]
                heapq.heapify(self._waiting)
            raise

    def leave(self, urgent: bool = False) -> None:
        self.free += 1
        if not urgent:
            self.busy_background -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to the first waiters that may have one (urgent ones sort first)."""
        while self.free and self._waiting:
            rank, _, turn = self._waiting[0]
            if rank and self.busy_background >= self.background:
                return  # only background work waits, and it has its share
            heapq.heappop(self._waiting)
            if turn.done():
                continue  # its caller went away
            self.free -= 1
            if rank:
                self.busy_background += 1
            turn.set_result(None)


@dataclass
class Hub:
    bot: Bot
    worker: DeliveryWorker | None = None
    engine_threads: int = ENGINE_THREADS
    spool: Spool | None = None
    journal: Journal = field(init=False)
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.journal = Journal(self.bot.db, self.spool, self.bot.config.spool_after_seconds)
        self._pool = ThreadPoolExecutor(self.engine_threads, thread_name_prefix="collabbot-engine")
        self._gate = EngineGate(self.engine_threads)
        self.backlog = 0
        self.answering = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._answered = 0.0

    @contextmanager
    def answer(self) -> Iterator[None]:
        """Mark a callback being answered (the pipeline does, for messages and taps alike)."""
        self.answering += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self.answering -= 1
            self._answered = asyncio.get_running_loop().time()
            if not self.answering:
                self._quiet.set()

    async def _after_the_answers(self) -> None:
        """Queued work gives way to saturated answering (see BUSY), for YIELD_TO_ANSWERS at most."""
        if self.answering < BUSY:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + YIELD_TO_ANSWERS
        while (left := deadline - loop.time()) > 0:
            if self.answering:
                try:
                    await asyncio.wait_for(self._quiet.wait(), left)
                except TimeoutError:
                    return
            elif (calm := loop.time() - self._answered) < QUIET:
                await asyncio.sleep(min(QUIET - calm, left))
            else:
                return

    async def handle(self, event: InboundEvent, urgent: bool = False) -> Reply:
        """The engine's reply; `urgent` when someone waits for it (it goes before queued background work)."""
        self.backlog += 1
        try:
            await self._gate.enter(urgent)
            try:
                if not urgent:
                    await self._after_the_answers()
                reply = await asyncio.get_running_loop().run_in_executor(self._pool, self.bot.handle, event)
            finally:
                self._gate.leave(urgent)
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
