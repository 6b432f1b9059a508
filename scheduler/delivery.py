"""The delivery worker: drains the outbox through each platform's sender.

Claims due rows (SKIP LOCKED on PostgreSQL) under a lease and a random claim token, and sends them
one row at a time, each at the time its rate limits allow:

* **Limits.** Each sender declares its `limits` (scheduler/limits.py: per app, chat and user);
  a sender that declares none gets the [delivery] defaults. A row is sent once the sliding windows
  of all its keys take it now (the log in the `rate_slots` table on PostgreSQL, so all instances
  share one log per key): a quiet chat gets its whole burst at once, the next row waits for the
  window. A row whose time is further off than `hold` seconds goes back to the queue until then,
  with the target's later rows, spending no attempt ("deferred").
* **Outcomes.** A `Throttled` answer defers the row by the platform's reset time, or its limits'
  longest window, spending no attempt. Every other exception from `send` is an attempt: retried
  while it is transient and attempts remain (at once while the platform is healthy, with backoff
  and jitter while it is failing: scheduler/backoff.py), then the row is dead (visible to an
  admin: `collabbot outbox list/retry`). One row's failure never stops the rest of its batch.
* **Leases.** Claims are small (`batch_size`) and a row is held at most `hold` seconds, half the
  lease, before its send; while any row of a batch waits or sends, a heartbeat renews the lease of
  the batch's remaining rows every third of it (one statement by claim token), so a slow send never
  outlives its lease. Every mark updates `WHERE id AND claim_token` (the sends that finish
  together in one statement): if the lease was lost anyway (the process stalled), the mark changes
  nothing and is logged, and the platform idempotency key (installation id + dedupe key) makes the
  other worker's resend harmless.
* **Backlogs.** When a batch was full, its last marks and the claim of the next batch go in one
  transaction; that batch is delivered by the next `run_once`, or put back (no attempt spent) when
  the worker stops first.

Outcomes are counted in `counters` (sent, retried, throttled, deferred, dead, lost), which
`/metrics` prints. Database calls run in a worker thread so the event loop keeps answering callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from collabbot.bot.calendar import WorkCalendar
from collabbot.bot.clock import Clock
from collabbot.bot.config import DeliverySettings
from collabbot.scheduler import outage
from collabbot.scheduler.backoff import Health, retry_delay
from collabbot.scheduler.limits import (
    DatabaseSlots,
    Limit,
    MemorySlots,
    Slots,
    Window,
    default_limits,
    limit_keys,
    window_of,
)
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.installation import installation_id
from collabbot.storage.outbox import OutboxItem

log = logging.getLogger(__name__)

OUTCOMES = ("sent", "retried", "throttled", "deferred", "dead", "lost")
_PROCESS: Counter[str] = Counter({name: 0 for name in OUTCOMES})  # every worker of this process


def process_counters() -> dict[str, int]:
    """Delivery outcomes counted by every worker in this process since it started (for /metrics)."""
    return {name: _PROCESS[name] for name in OUTCOMES}


class DeliveryError(Exception):
    """A send that failed; `transient` ones are retried, the others go dead at once. `unreachable`: the
    platform says the bot is no longer in the target group, so the group is lost, not only the row."""

    def __init__(self, message: str, *, transient: bool = True, retry_after: float | None = None,
                 unreachable: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.unreachable = unreachable


class Throttled(DeliveryError):
    """The platform asked us to slow down: not a failure. The row waits `retry_after` seconds (None: the
    longest window of its limits) and is sent again without spending an attempt."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, transient=True, retry_after=retry_after)


class Sender(Protocol):
    """One platform's sender. It may also declare `limits: tuple[Limit, ...]` (absent: the [delivery] defaults)."""

    platform: str

    async def send(self, item: OutboxItem) -> str | None:
        """Deliver one outbox row; return the platform's message id. Raise DeliveryError on failure."""
        ...


class DeliveryWorker:
    def __init__(self, db: Database, senders: dict[str, Sender], settings: DeliverySettings, clock: Clock,
                 *, rng: random.Random | None = None, send_timeout: float = 10.0, slots: Slots | None = None,
                 sleep_until: Callable[[datetime], Awaitable[None]] | None = None,
                 calendar: WorkCalendar | None = None,
                 chat_unreachable: Callable[[str, str, int], None] | None = None) -> None:
        self.db = db
        self.chat_unreachable = chat_unreachable  # (platform, chat id, row id), after a group refused the bot
        self.calendar = calendar  # rows marked outbox.WORKING_TIME wait for it (None: nothing waits)
        self.senders = senders
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.send_timeout = send_timeout
        self.lease = timedelta(seconds=settings.claim_seconds)
        self.hold = settings.claim_seconds / 2
        self.slots: Slots = slots or (DatabaseSlots(db) if db.is_postgres else MemorySlots())
        self._sleep_until = sleep_until or self._wall_sleep_until
        defaults = default_limits(settings.per_chat_per_minute, settings.per_platform_per_second)
        self.limits: dict[str, tuple[Limit, ...]] = {}
        for name, sender in senders.items():
            declared = getattr(sender, "limits", None)
            self.limits[name] = tuple(declared) if declared is not None else defaults
        self.counters: Counter[str] = Counter({name: 0 for name in OUTCOMES})
        self._health: dict[str, Health] = {}  # each platform's recent send outcomes: is it failing?
        self.installation = ""
        self.wake = asyncio.Event()
        self._marks: list[tuple[OutboxItem, str | None, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._unmarked: set[int] = set()  # the current batch's rows whose outcome is not known yet
        self._claim_next = False  # the current batch was full: claim the next with its last marks
        self._prefetched: list[OutboxItem] = []  # claimed that way, delivered by the next run_once

    async def _wall_sleep_until(self, at: datetime) -> None:
        delay = (at - self.clock.now()).total_seconds()
        # a slot that is (all but) now still yields once: the batch's sends then start in claim order
        await asyncio.sleep(delay if delay > 0.001 else 0)

    # --- database calls (run in a thread) ----------------------------------------------------------
    def _claim(self) -> list[OutboxItem]:
        if not self.installation:
            with self.db.transaction() as s:
                self.installation = installation_id(s)
        with self.db.transaction() as s:
            return outbox.claim(s, self.clock.now(), self.settings.batch_size, self.lease,
                                installation=self.installation)

    def _mark_sent_many(self, token: str, message_ids: dict[int, str | None]) -> set[int]:
        with self.db.transaction() as s:
            return outbox.mark_sent_many(s, token, self.clock.now(), message_ids)

    def _mark_and_claim(self, by_token: dict[str, dict[int, str | None]]) -> tuple[set[int], list[OutboxItem]]:
        """The batch's last marks and the next batch's claim in one transaction (see `_flush_marks`)."""
        with self.db.transaction() as s:
            now = self.clock.now()
            held = set().union(*(outbox.mark_sent_many(s, token, now, ids) for token, ids in by_token.items()))
            return held, outbox.claim(s, now, self.settings.batch_size, self.lease, installation=self.installation)

    def _release(self, token: str) -> int:
        with self.db.transaction() as s:
            return outbox.release(s, token)

    async def _mark_sent(self, item: OutboxItem, message_id: str | None) -> bool:
        """Record a sent row; the sends that finish together are recorded in one statement."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._unmarked.discard(item.id)
        self._marks.append((item, message_id, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_marks())
        return await done

    async def _flush_marks(self) -> None:
        await asyncio.sleep(0)  # let the sends finishing in this turn of the loop join
        while self._marks:
            marks, self._marks = self._marks, []
            by_token: dict[str, dict[int, str | None]] = {}
            for item, message_id, _ in marks:
                by_token.setdefault(item.claim_token, {})[item.id] = message_id
            # the batch's last marks, when it was full (a backlog): the next batch is claimed in the same
            # transaction, which the worker would otherwise open at once after this one
            claim_next = self._claim_next and not self._unmarked and not self._marks
            try:
                held: set[int] = set()
                if claim_next:
                    self._claim_next = False
                    held, self._prefetched = await asyncio.to_thread(self._mark_and_claim, by_token)
                else:
                    for token, ids in by_token.items():
                        held |= await asyncio.to_thread(self._mark_sent_many, token, ids)
            except Exception as exc:
                for _, _, done in marks:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for item, _, done in marks:
                if not done.done():
                    done.set_result(item.id in held)

    def _mark_failed(self, item: OutboxItem, error: str, retry_at: datetime | None) -> bool:
        with self.db.transaction() as s:
            return outbox.mark_failed(s, item.id, error, retry_at, item.claim_token)

    def _defer(self, item: OutboxItem, until: datetime, reason: str) -> bool:
        with self.db.transaction() as s:
            return outbox.defer(s, item.id, until, item.claim_token, reason)

    def _renew(self, token: str) -> list[int]:
        with self.db.transaction() as s:
            return outbox.renew_claim(s, token, self.clock.now() + self.lease)

    async def _db(self, fn: Callable[..., bool], *args: object) -> bool:
        return await asyncio.to_thread(fn, *args)

    def _count(self, outcome: str, item: OutboxItem, held: bool) -> str:
        if not held:
            log.warning("outbox %s (%s %s): lease lost before %s was recorded; another worker has the row",
                        item.id, item.target_kind, item.target_id, outcome)
            outcome = "lost"
        self.counters[outcome] += 1
        _PROCESS[outcome] += 1
        return outcome

    def _health_of(self, platform: str) -> Health:
        health = self._health.get(platform)
        if health is None:
            health = self._health[platform] = Health()
        return health

    # --- one row -----------------------------------------------------------------------------------
    def _keys(self, item: OutboxItem) -> dict[str, tuple[Window, ...]]:
        paced_as = getattr(self.senders.get(item.platform), "paced_as", None)
        kind, target = paced_as(item.target_kind, item.target_id) if paced_as else (item.target_kind, item.target_id)
        return limit_keys(item.platform, kind, target, self.limits.get(item.platform, ()), self.settings.limit_margin)

    async def _take(self, item: OutboxItem, waited: datetime | None = None) -> tuple[datetime | None, bool]:
        """Reserve a send NOW in all of the row's windows: (the earliest time they allow, whether it was taken);
        (None, True) when no limit binds the row. `waited`: the time the row has just waited for, taken as
        now when the clock reads earlier (a clock that does not move with the wait, as in the console).

        Only "now" is ever taken, never a time ahead: the log then holds the sends' real times."""
        keys = self._keys(item)
        if not keys:
            return None, True

        def now() -> datetime:
            current = self.clock.now()
            return current if waited is None or current >= waited else waited

        if isinstance(self.slots, MemorySlots):
            return self.slots.reserve(keys, now(), 0.0)
        # "now" is read with the keys locked: a wait for a thread or for another instance must not make it stale
        return await asyncio.to_thread(self.slots.reserve, keys, now, 0.0)

    async def _finished(self, item: OutboxItem, at: datetime) -> None:
        """The send taken at `at` is over: the log records it as made now (the platform has counted it)."""
        keys, now = list(self._keys(item)), self.clock.now()
        try:
            if isinstance(self.slots, MemorySlots):
                self.slots.move(keys, at, now)
            else:
                await asyncio.to_thread(self.slots.move, keys, at, now)
        except Exception:
            log.exception("outbox %s: its send time was not recorded", item.id)

    async def _heartbeat(self, token: str, pending: set[int]) -> None:
        """Renew the lease of the batch's rows still waiting or sending, every third of it, in one statement."""
        while pending:
            await asyncio.sleep(self.settings.claim_seconds / 3)
            try:
                held = set(await asyncio.to_thread(self._renew, token))
            except Exception:
                log.exception("outbox: lease renewal failed")
                continue
            for item_id in sorted(pending - held):
                log.warning("outbox %s: lease lost while waiting or sending", item_id)
                pending.discard(item_id)

    async def _turn(self, item: OutboxItem) -> tuple[datetime | None, bool]:
        """Wait for the row's turn in its windows and take it: (its time, True), (None, True) when no limit
        binds it; or (when the turn comes, False) when that is further off than `hold`."""
        waited: datetime | None = None
        while True:
            at, taken = await self._take(item, waited)
            if taken or at is None or (at - self.clock.now()).total_seconds() > self.hold:
                return at, taken
            await self._sleep_until(at)
            waited = at

    async def deliver(self, item: OutboxItem, at: datetime | None = None) -> str:
        """Send one claimed row whose turn was taken at `at` (None: no limit binds it) and record the outcome
        (one of OUTCOMES)."""
        sender = self.senders.get(item.platform)
        if sender is None:
            held = await self._db(self._mark_failed, item, f"no sender for platform {item.platform!r}", None)
            return self._count("dead", item, held)
        try:
            async with asyncio.timeout(self.send_timeout):
                message_id = await sender.send(item)
        except Exception as exc:  # every exception is an attempt (or, a throttle, a wait)
            if at is not None:
                await self._finished(item, at)
            return await self._failed(item, exc)
        if at is not None:
            await self._finished(item, at)
        self._health_of(item.platform).record(False)
        return self._count("sent", item, await self._mark_sent(item, message_id))

    async def _failed(self, item: OutboxItem, exc: Exception) -> str:
        target = f"{item.target_kind} {item.target_id}"
        if isinstance(exc, Throttled):
            wait = exc.retry_after if exc.retry_after is not None else window_of(
                self.limits.get(item.platform, ()), item.target_kind)
            until = self.clock.now() + timedelta(seconds=max(wait, 0.05))
            log.info("outbox %s to %s throttled: waits %.2fs (%s)", item.id, target, wait, exc)
            return self._count("throttled", item, await self._db(self._defer, item, until, f"throttled: {exc}"))
        transient = not isinstance(exc, DeliveryError) or exc.transient
        attempt = item.attempts + 1
        health = self._health_of(item.platform)
        health.record(True)
        if transient and attempt < self.settings.max_attempts:
            retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
            # a healthy platform: the row's next try goes at its next free place, like the first retry
            delay = retry_delay(attempt if health.failing else 1, self.settings.base_delay_seconds,
                                self.settings.max_delay_seconds, self.rng, retry_after)
            log.info("outbox %s to %s failed (attempt %d of %d), retry in %.1fs: %r", item.id, target, attempt,
                     self.settings.max_attempts, delay, exc)
            held = await self._db(self._mark_failed, item, repr(exc), self.clock.now() + timedelta(seconds=delay))
            return self._count("retried", item, held)
        log.error("outbox %s to %s (%s) dead after %s attempts: %r", item.id, target, item.dedupe_key, attempt, exc)
        held = await self._db(self._mark_failed, item, repr(exc), None)
        if held and getattr(exc, "unreachable", False) and item.target_kind == "chat" and self.chat_unreachable:
            await asyncio.to_thread(self.chat_unreachable, item.platform, item.target_id, item.id)
        return self._count("dead", item, held)

    async def _guarded(self, item: OutboxItem, at: datetime | None, pending: set[int]) -> str:
        try:
            return await self.deliver(item, at)
        except Exception:  # the database failed while recording: the lease runs out, the row comes back
            log.exception("outbox %s: delivery not recorded", item.id)
            return "error"
        finally:
            pending.discard(item.id)
            self._unmarked.discard(item.id)

    # --- batches -----------------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Claim one batch and deliver it; the number of rows claimed.

        The batch's rows go target by target, concurrently across targets: each target's rows start in
        claim order (so one chat's messages keep their order), each as soon as its windows allow."""
        items, self._prefetched = self._prefetched or await asyncio.to_thread(self._claim), []
        if not items:
            return 0
        claimed = len(items)
        items = await self._out_of_hours(items)
        if not items:
            return claimed
        pending = {item.id for item in items}
        self._unmarked = set(pending)
        self._claim_next = claimed >= self.settings.batch_size
        beat = asyncio.create_task(self._heartbeat(items[0].claim_token, pending))
        try:
            await self._deliver_batch(items, pending)
        finally:
            self._claim_next = False
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        return claimed

    async def _out_of_hours(self, items: list[OutboxItem]) -> list[OutboxItem]:
        """The rows that may go now. A rule's reminder was timed for working time when written; come due
        outside it (the process was down, the platform failing), it waits for the next working moment
        rather than wake someone at 3 a.m. Not an attempt."""
        now = self.clock.now()
        if self.calendar is None or self.calendar.is_working_time(now):
            return items
        until = self.calendar.next_working_moment(now)
        kept = []
        for item in items:
            if item.payload.get(outbox.WORKING_TIME):
                self._count("deferred", item, await self._db(self._defer, item, until, "outside working time"))
            else:
                kept.append(item)
        return kept

    async def release(self) -> None:
        """Put back a batch claimed ahead and not started (the worker is stopping)."""
        items, self._prefetched = self._prefetched, []
        if items:
            await asyncio.to_thread(self._release, items[0].claim_token)

    async def _deliver_batch(self, items: list[OutboxItem], pending: set[int]) -> None:
        """Rows whose windows take them now start at once, in claim order; a target whose row must wait
        goes on, with its later rows, in a task of its own (so one full chat holds up no other)."""
        sends: list[asyncio.Task[str]] = []
        waiting: dict[tuple[str, str, str], list[OutboxItem]] = {}
        for item in items:
            target = (item.platform, item.target_kind, item.target_id)
            if target in waiting:
                waiting[target].append(item)
                continue
            if not self.limits.get(item.platform):  # no limit binds it: no turn to take
                sends.append(asyncio.create_task(self._guarded(item, None, pending)))
                continue
            try:
                at, taken = await self._take(item)
            except Exception:
                log.exception("outbox %s: no rate slot", item.id)
                taken, at = False, None
            if not taken:
                waiting[target] = [item]
                continue
            sends.append(asyncio.create_task(self._guarded(item, at, pending)))
            if at is not None:
                await asyncio.sleep(0)  # the send starts now, at its time, not after the next row's turn
        if waiting:
            await asyncio.gather(*(self._start_in_order(rows, pending, sends) for rows in waiting.values()))
        if sends:
            await asyncio.gather(*sends)

    async def _start_in_order(self, rows: list[OutboxItem], pending: set[int], sends: list[asyncio.Task[str]]) -> None:
        """Start one target's rows in order, each when its windows allow; when that is further off than
        `hold`, the row and the target's later rows go back to the queue until then (no attempt spent)."""
        for i, item in enumerate(rows):
            try:
                at, taken = await self._turn(item)
            except Exception:
                log.exception("outbox %s: no rate slot", item.id)
                for later in rows[i:]:
                    pending.discard(later.id)  # their lease runs out and they come back, in order
                return
            if not taken and at is not None:
                for later in rows[i:]:
                    pending.discard(later.id)
                    self._count("deferred", later, await self._db(self._defer, later, at, ""))
                return
            sends.append(asyncio.create_task(self._guarded(item, at, pending)))
            if at is not None:
                await asyncio.sleep(0)  # the send starts now, at its time, not after the next row's turn

    async def drain(self) -> int:
        """Deliver until nothing is due now (the console and tests use this)."""
        total = 0
        while True:
            n = await self.run_once()
            total += n
            if n == 0:
                return total

    async def run_forever(self, stop: asyncio.Event, idle_seconds: float = 1.0) -> None:
        try:
            await self._run(stop, idle_seconds)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release())

    async def _run(self, stop: asyncio.Event, idle_seconds: float) -> None:
        while not stop.is_set():
            try:
                n = await self.run_once()
            except Exception as exc:
                outage.report(log, "delivery batch failed", exc)
                n = 0
            if n == 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), await self._idle(idle_seconds))

    async def _idle(self, idle_seconds: float) -> float:
        """How long to sleep: until the earliest deferred row is due, at most `idle_seconds`."""
        def next_due() -> datetime | None:
            with self.db.transaction() as s:
                return outbox.next_due(s)

        try:
            due = await asyncio.to_thread(next_due)
        except Exception:
            return idle_seconds
        if due is None:
            return idle_seconds
        return min(idle_seconds, max(0.01, (due - self.clock.now()).total_seconds()))
