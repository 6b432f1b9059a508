"""The delivery worker: drains the outbox through each platform's sender.

Claims due rows (SKIP LOCKED on PostgreSQL) under a lease and a random claim token, and sends them
one row at a time, each at the time its rate limits allow:

* **Limits.** Each sender declares its `limits` (scheduler/limits.py: per app, chat and user);
  a sender that declares none gets the [delivery] defaults. Every row reserves a time in the sliding
  windows of all its keys before it is sent (in the `rate_slots` table on PostgreSQL, so all
  instances share one log per key): a quiet chat gets its whole burst at once. A row whose time is
  further off than `hold` seconds goes back to the queue until then, spending no attempt ("deferred").
* **Outcomes.** A `Throttled` answer defers the row by the platform's reset time, or its limits'
  longest window, spending no attempt. Every other exception from `send` is an attempt: retried
  with backoff and jitter while it is transient and attempts remain, then the row is dead (visible
  to an admin: `collabbot outbox list/retry`). One row's failure never stops the rest of its batch.
* **Leases.** Claims are small (`batch_size`) and a row is held at most `hold` seconds, half the
  lease, before its send; while any row of a batch waits or sends, a heartbeat renews the lease of
  the batch's remaining rows every third of it (one statement by claim token), so a slow send never
  outlives its lease. Every mark updates `WHERE id AND claim_token` (the sends that finish
  together in one statement): if the lease was lost anyway (the process stalled), the mark changes
  nothing and is logged, and the platform idempotency key (installation id + dedupe key) makes the
  other worker's resend harmless.

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

from collabbot.bot.clock import Clock
from collabbot.bot.config import DeliverySettings
from collabbot.scheduler.backoff import retry_delay
from collabbot.scheduler.limits import (
    DatabaseSlots,
    Limit,
    MemorySlots,
    Slots,
    default_limits,
    limit_keys,
    slack_of,
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
    """A send that failed; `transient` ones are retried, the others go dead at once."""

    def __init__(self, message: str, *, transient: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


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
                 sleep_until: Callable[[datetime], Awaitable[None]] | None = None) -> None:
        self.db = db
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
        self.installation = ""
        self.wake = asyncio.Event()
        self._marks: list[tuple[OutboxItem, str | None, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

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

    async def _mark_sent(self, item: OutboxItem, message_id: str | None) -> bool:
        """Record a sent row; the sends that finish together are recorded in one statement."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
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
            try:
                held: set[int] = set()
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

    # --- one row -----------------------------------------------------------------------------------
    async def _slot(self, item: OutboxItem, replacing: datetime | None = None) -> tuple[datetime, bool, float | None]:
        """This row's send time under its limits, whether it was taken (within `hold`), and how late the
        send may start (None: the row has no limits). `replacing`: the row's earlier time, given up."""
        limits = self.limits.get(item.platform, ())
        keys = limit_keys(item.platform, item.target_kind, item.target_id, limits, self.settings.limit_margin)
        if not keys:
            return self.clock.now(), True, None
        slack = slack_of(limits, item.target_kind, self.settings.limit_margin)
        if isinstance(self.slots, MemorySlots):
            at, taken = self.slots.reserve(keys, self.clock.now(), self.hold, replacing)
        else:  # "now" is read in the thread: a wait for a free thread must not make the slot stale
            slots = self.slots
            at, taken = await asyncio.to_thread(lambda: slots.reserve(keys, self.clock.now(), self.hold, replacing))
        return at, taken, slack

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

    async def deliver(self, item: OutboxItem, slot: tuple[datetime, float] | None = None) -> str:
        """Send one claimed row at its rate slot (time, slack) and record the outcome (one of OUTCOMES).

        A send that could not start within the slack of its slot (a busy process) gives the slot up and
        takes the next free one, so a late send never crowds the next."""
        sender = self.senders.get(item.platform)
        if sender is None:
            held = await self._db(self._mark_failed, item, f"no sender for platform {item.platform!r}", None)
            return self._count("dead", item, held)
        if slot is None:  # no limits: go now, in claim order with the rest of the batch
            await self._sleep_until(self.clock.now())
        while slot is not None:
            at, slack = slot
            await self._sleep_until(at)
            late = (self.clock.now() - at).total_seconds()
            if late <= slack:
                break
            log.info("outbox %s to %s %s missed its rate slot by %.3fs; takes the next", item.id, item.target_kind,
                     item.target_id, late)
            at, taken, new_slack = await self._slot(item, replacing=at)
            if not taken:
                return self._count("deferred", item, await self._db(self._defer, item, at, ""))
            slot = (at, new_slack or 0.0)
        try:
            async with asyncio.timeout(self.send_timeout):
                message_id = await sender.send(item)
        except Exception as exc:  # every exception is an attempt (or, a throttle, a wait)
            return await self._failed(item, exc)
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
        if transient and attempt < self.settings.max_attempts:
            retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
            delay = retry_delay(attempt, self.settings.base_delay_seconds, self.settings.max_delay_seconds,
                                self.rng, retry_after)
            log.info("outbox %s to %s failed (attempt %d of %d), retry in %.1fs: %r", item.id, target, attempt,
                     self.settings.max_attempts, delay, exc)
            held = await self._db(self._mark_failed, item, repr(exc), self.clock.now() + timedelta(seconds=delay))
            return self._count("retried", item, held)
        log.error("outbox %s to %s (%s) dead after %s attempts: %r", item.id, target, item.dedupe_key, attempt, exc)
        return self._count("dead", item, await self._db(self._mark_failed, item, repr(exc), None))

    async def _guarded(self, item: OutboxItem, slot: tuple[datetime, float] | None, pending: set[int]) -> str:
        try:
            return await self.deliver(item, slot)
        except Exception:  # the database failed while recording: the lease runs out, the row comes back
            log.exception("outbox %s: delivery not recorded", item.id)
            return "error"
        finally:
            pending.discard(item.id)

    # --- batches -----------------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Claim one batch and deliver it; the number of rows claimed.

        Slots are taken in the batch's order (so one chat's messages keep their order); each row is then
        sent at its slot, concurrently with the others."""
        items = await asyncio.to_thread(self._claim)
        if not items:
            return 0
        pending = {item.id for item in items}
        beat = asyncio.create_task(self._heartbeat(items[0].claim_token, pending))
        try:
            await self._deliver_batch(items, pending)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        return len(items)

    async def _deliver_batch(self, items: list[OutboxItem], pending: set[int]) -> None:
        sends: list[asyncio.Task[str]] = []
        for item in items:
            try:
                at, taken, slack = await self._slot(item)
                if not taken:
                    pending.discard(item.id)
                    held = await self._db(self._defer, item, at, "")
                    self._count("deferred", item, held)
                    continue
            except Exception:
                pending.discard(item.id)
                log.exception("outbox %s: no rate slot", item.id)
                continue
            slot = None if slack is None else (at, slack)
            sends.append(asyncio.create_task(self._guarded(item, slot, pending)))
        if sends:
            await asyncio.gather(*sends)

    async def drain(self) -> int:
        """Deliver until nothing is due now (the console and tests use this)."""
        total = 0
        while True:
            n = await self.run_once()
            total += n
            if n == 0:
                return total

    async def run_forever(self, stop: asyncio.Event, idle_seconds: float = 1.0) -> None:
        while not stop.is_set():
            try:
                n = await self.run_once()
            except Exception:
                log.exception("delivery batch failed")
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
