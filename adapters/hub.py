"""What every platform adapter is given: one way into the engine from the event loop.

The engine and its database calls are synchronous: they run on threads of their own, never on the
loop that answers callbacks within the platforms' deadlines (nor on the loop's default pool, which
`/healthz` uses). Queued work (a message answered once durable, a follow-up) goes to `Hub.backlog`, one
long-lived thread working in order; a call whose answer someone waits for (a card tap: the answer
carries the card) runs at once on a thread kept for it, so a burst of messages never makes a tap miss
its deadline. Either way the delivery worker is woken afterwards, so the messages the engine queued go
out at once.

The kit reaches the database only through here (the journal's queue operations, a platform's card codes,
the URL an instance-wide lock connects to, and the row types `QueuedItem`, `OutboxItem` and `Code` it
hands over), never by importing `storage` itself.

`Hub.journal` makes inbound events durable before they are answered: writes from concurrent
callbacks are group-committed on one dedicated thread, so a burst costs a few transactions, not one
per callback, and never waits behind the engine's backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

from aiohttp import web

from collabbot.adapters.kit.spool import Spool
from collabbot.bot.app import Bot
from collabbot.bot.clock import Clock
from collabbot.bot.events import InboundEvent
from collabbot.bot.replies import Reply
from collabbot.scheduler.delivery import DeliveryWorker, Sender
from collabbot.storage import card_codes, inbound
from collabbot.storage.card_codes import Code as Code  # handed to the kit
from collabbot.storage.db import Database
from collabbot.storage.inbound import QueuedItem as QueuedItem  # handed to the kit
from collabbot.storage.outbox import OutboxItem as OutboxItem  # handed to the kit

log = logging.getLogger(__name__)

T = TypeVar("T")
Done = Callable[[Reply | BaseException], None]  # a queued call's completion, run on the loop
# The engine is CPU-bound Python: past the cores, threads only fight for the GIL with the loop that
# answers callbacks (bench/inbound.py, PostgreSQL, 200 creations/s: answer p99 192 ms with 4 threads,
# 111 ms with 2, for the same work done). So queued work has one thread (Backlog), and the calls someone
# waits for (taps) ENGINE_THREADS: two, because a tap's transaction on PostgreSQL waits on round trips
# (closed loop of taps: 81 answers/s with one thread, about 210 with two).
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
# Before each journal commit the flusher lets the loop run this many more turns, so that the callbacks it
# has already read join the commit. Without it a busy loop committed 2-4 rows at a time, and each commit's
# hand-off to the journal thread cost more than its rows: a closed loop of queries answered about 3,900 a
# second instead of 4,800-5,400 (bench/inbound.py, SQLite). Idle, two turns cost a few microseconds.
GATHER_TURNS = 2


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
        self._writer = inbound.queue_writer(db)
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
            for _ in range(GATHER_TURNS):  # callbacks the loop has ready join this commit
                await asyncio.sleep(0)
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
        ids = self._writer.write(rows, LEASE, forgotten)
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
        self._writer.close()


class Backlog:
    """Queued engine work (messages, follow-ups) on one long-lived thread, in arrival order.

    A task, a future and an executor call per queued event cost the answering loop more than the rest of
    its hand-off (bench/inbound.py, closed loop of creations: about a fifth of the loop's time); here the
    loop puts the event on a queue, and the thread hands results back in batches, one wake-up of the loop
    per batch. Being one thread, the backlog never takes the thread kept for taps, and never has two of its
    calls fight each other and the answering loop for the GIL."""

    def __init__(self, run: Callable[[InboundEvent], Reply], give_way: Callable[[], None],
                 delivered: Callable[[], None]) -> None:
        self._run = run
        self._give_way = give_way
        self._delivered = delivered
        self._items: queue.SimpleQueue[tuple[InboundEvent, Done] | None] = queue.SimpleQueue()
        self._results: list[tuple[Done, Reply | BaseException]] = []
        self._lock = threading.Lock()
        self._posted = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._idle: asyncio.Event | None = None
        self.pending = 0  # put and not yet handed back (the loop's count)

    def put(self, event: InboundEvent, done: Done) -> None:
        """Work `event` after what is queued; `done(reply or exception)` runs on the loop afterwards."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._work, name="collabbot-backlog", daemon=True)
            self._thread.start()
        self.pending += 1
        if self._idle is not None:
            self._idle.clear()
        self._items.put((event, done))

    async def settled(self) -> None:
        """Wait until everything put so far has been worked and handed back."""
        while self.pending:
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            await self._idle.wait()

    def close(self) -> None:
        """Work what is queued, then stop the thread (results no longer reach a stopped loop)."""
        if self._thread is not None:
            self._items.put(None)
            self._thread.join()

    def _work(self) -> None:
        while (item := self._items.get()) is not None:
            event, done = item
            result: Reply | BaseException
            try:
                self._give_way()
                result = self._run(event)
            except BaseException as exc:  # handed to `done`: the caller decides
                result = exc
            with self._lock:
                self._results.append((done, result))
                post, self._posted = not self._posted, True
            if post:
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # the loop is closed: the rows are resumed next start
                    self._loop.call_soon_threadsafe(self._hand_back)

    def _hand_back(self) -> None:
        with self._lock:
            results, self._results, self._posted = self._results, [], False
        self.pending -= len(results)
        for done, result in results:
            try:
                done(result)
            except Exception:
                log.exception("engine backlog: a completion callback failed")
        self._delivered()
        if not self.pending and self._idle is not None:
            self._idle.set()


class CardCodes:
    """A platform's one-time codes for changing a sent card (or answering a chat) later, in the database.

    WeCom, say, changes an app card already sent only with a response_code: `message/send` gives one for
    each `button_interaction` card, a tap's callback another; each is valid 72 hours and usable once. Kept
    in memory they died with the process, and after a restart every changed card was posted again. In the
    database (storage/card_codes.py) only the latest code of each copy is kept (a tap's replaces the
    send's), under the id the engine knows the copy by, with the id of the card that shows it now; any
    instance may use it."""

    def __init__(self, db: Database, clock: Clock, platform: str, valid: timedelta) -> None:
        self.db = db
        self.clock = clock
        self.platform = platform
        self.valid = valid  # how long the platform honours a code, less a margin

    async def keep(self, message_id: str, task_id: str, code: str, valid: timedelta | None = None) -> bool:
        """Remember `code` as the copy's latest; False when it is the one already kept (a redelivered tap)."""
        now = self.clock.now()
        until = now + (self.valid if valid is None else valid)
        return await asyncio.to_thread(self._run, card_codes.keep, self.platform, message_id, task_id, code, until,
                                       now)

    async def take(self, message_id: str) -> Code | None:
        """The copy's code, now used; None when it has none that is still valid and unused."""
        return await asyncio.to_thread(self._run, card_codes.take, self.platform, message_id, self.clock.now())

    async def give_back(self, message_id: str, code: str) -> None:
        """The call with `code` failed before the platform took it: usable again."""
        await asyncio.to_thread(self._run, card_codes.give_back, self.platform, message_id, code)

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with self.db.transaction() as s:
            return fn(s, *args)


class Answering:
    """How many callbacks are being answered, and when the last answer went: a context manager entered
    once per callback, so a plain object rather than a generator (it is on every answer's path)."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *_: object) -> None:
        self.count -= 1
        self.last = time.monotonic()


@dataclass
class Hub:
    bot: Bot
    worker: DeliveryWorker | None = None
    engine_threads: int = ENGINE_THREADS
    spool: Spool | None = None
    journal: Journal = field(init=False)
    backlog: Backlog = field(init=False)
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.journal = Journal(self.bot.db, self.spool, self.bot.config.spool_after_seconds)
        self.backlog = Backlog(self.bot.handle, self._after_the_answers, self._wake_delivery)
        self._pool = ThreadPoolExecutor(self.engine_threads, thread_name_prefix="collabbot-engine")
        self.urgent = 0
        self._answering = Answering()

    def card_codes(self, platform: str, valid: timedelta) -> CardCodes:
        """`platform`'s one-time card codes, valid `valid` (less a margin) from when they are kept."""
        return CardCodes(self.bot.db, self.bot.clock, platform, valid)

    @property
    def lock_url(self) -> str | None:
        """What an instance-wide lock (the kit's `Holder`) connects to: the PostgreSQL server, in libpq's
        form; None on SQLite, whose file belongs to one process, so the lock is simply held."""
        return self.bot.db.libpq_url

    @property
    def waiting(self) -> int:
        """Engine calls queued or under way (`/metrics`)."""
        return self.backlog.pending + self.urgent

    @property
    def answering(self) -> int:
        """Callbacks being answered now."""
        return self._answering.count

    def answer(self) -> Answering:
        """Mark a callback being answered (the pipeline does, for messages and taps alike)."""
        return self._answering

    def _after_the_answers(self) -> None:
        """On the backlog's thread: queued work gives way to saturated answering (see BUSY), for
        YIELD_TO_ANSWERS at most. The counters are the loop's; reading them from here is safe."""
        answering = self._answering
        if answering.count < BUSY:
            return
        deadline = time.monotonic() + YIELD_TO_ANSWERS
        while (now := time.monotonic()) < deadline:
            if not answering.count and now - answering.last >= QUIET:
                return
            time.sleep(QUIET / 2)

    def queue(self, event: InboundEvent, done: Done) -> None:
        """Work `event` in the background, after the backlog; `done(reply or exception)` on the loop."""
        self.backlog.put(event, done)

    async def handle(self, event: InboundEvent, urgent: bool = False) -> Reply:
        """The engine's reply; `urgent` when someone waits for it (it does not queue behind the backlog)."""
        if not urgent:
            replied: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self.backlog.put(event, partial(_settle, replied))
            return await replied
        self.urgent += 1
        try:
            reply = await asyncio.get_running_loop().run_in_executor(self._pool, self.bot.handle, event)
        finally:
            self.urgent -= 1
        self._wake_delivery()
        return reply

    def _wake_delivery(self) -> None:
        if self.worker is not None:
            self.worker.wake.set()

    def close(self) -> None:
        self.backlog.close()
        self._pool.shutdown(wait=True)
        self.journal.close()


def _settle(future: asyncio.Future[Reply], result: Reply | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class PlatformAdapter(Protocol):
    """One platform: its webhook routes and/or long connection, and its sender."""

    platform: str
    sender: Sender

    def add_routes(self, app: web.Application) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
