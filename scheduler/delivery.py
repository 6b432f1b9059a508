"""The delivery worker: drains the outbox through each platform's sender.

Claims due rows (SKIP LOCKED on PostgreSQL, a lease on every row), sends each through the sender
of its platform under per-platform and per-chat rate limits, and marks it sent; a transient failure
(timeout, 5xx, rate limit) is retried later with backoff and jitter, up to `max_attempts`, then the
row is dead and visible to an admin (`collabbot outbox list/retry`). The crash window between a send
and its mark is covered by passing the dedupe key as the platform's idempotency key where it has one.
Database calls run in a worker thread so the event loop keeps answering callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Protocol

from collabbot.bot.clock import Clock
from collabbot.bot.config import DeliverySettings
from collabbot.scheduler.backoff import retry_delay
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.outbox import OutboxItem

log = logging.getLogger(__name__)


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
    platform: str

    async def send(self, item: OutboxItem) -> str | None:
        """Deliver one outbox row; return the platform's message id. Raise DeliveryError on failure."""
        ...


class RateLimiter:
    """Per-platform messages per second (a smoothed pace) and per-chat messages per minute (a window).

    Per process: several instances each keep their own, so set the limits for one instance's share.
    """

    def __init__(self, per_second: float, per_chat_per_minute: int) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.per_chat = per_chat_per_minute
        self._next_slot = 0.0
        self._chats: dict[str, deque[float]] = defaultdict(deque)

    def chat_wait(self, chat_key: str) -> float:
        """Seconds until this chat may receive another message (0 when it may now)."""
        now = time.monotonic()
        window = self._chats[chat_key]
        while window and window[0] <= now - 60:
            window.popleft()
        return 0.0 if len(window) < self.per_chat else window[0] + 60 - now

    async def acquire(self, chat_key: str) -> None:
        now = time.monotonic()
        if self._next_slot > now:
            await asyncio.sleep(self._next_slot - now)
        self._next_slot = max(now, self._next_slot) + self.interval
        self._chats[chat_key].append(time.monotonic())


class DeliveryWorker:
    def __init__(self, db: Database, senders: dict[str, Sender], settings: DeliverySettings, clock: Clock,
                 *, rng: random.Random | None = None, send_timeout: float = 10.0) -> None:
        self.db = db
        self.senders = senders
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.send_timeout = send_timeout
        self.limiters = {name: RateLimiter(settings.per_platform_per_second, settings.per_chat_per_minute)
                         for name in senders}
        self.wake = asyncio.Event()

    def _claim(self) -> list[OutboxItem]:
        with self.db.transaction() as s:
            return outbox.claim(s, self.clock.now(), self.settings.batch_size,
                                timedelta(seconds=self.settings.claim_seconds))

    def _mark_sent(self, item: OutboxItem, message_id: str | None) -> None:
        with self.db.transaction() as s:
            outbox.mark_sent(s, item.id, self.clock.now(), message_id)

    def _mark_failed(self, item: OutboxItem, error: str, retry_at: datetime | None) -> None:
        with self.db.transaction() as s:
            outbox.mark_failed(s, item.id, error, retry_at)

    def _defer(self, item: OutboxItem, seconds: float) -> None:
        from sqlalchemy import update

        from collabbot.storage.models import OutboxMessage

        with self.db.transaction() as s:
            s.execute(update(OutboxMessage).where(OutboxMessage.id == item.id).values(
                not_before=self.clock.now() + timedelta(seconds=seconds), claimed_until=None))

    async def deliver(self, item: OutboxItem) -> str:
        """Send one claimed row and record the outcome: "sent", "retry", "dead" or "deferred"."""
        sender = self.senders.get(item.platform)
        if sender is None:
            await asyncio.to_thread(self._mark_failed, item, f"no sender for platform {item.platform!r}", None)
            return "dead"
        limiter = self.limiters[item.platform]
        chat_key = f"{item.target_kind}:{item.target_id}"
        wait = limiter.chat_wait(chat_key)
        if wait > 0:
            await asyncio.to_thread(self._defer, item, wait)
            return "deferred"
        await limiter.acquire(chat_key)
        try:
            message_id = await asyncio.wait_for(sender.send(item), self.send_timeout)
        except (DeliveryError, TimeoutError, OSError) as exc:
            transient = not isinstance(exc, DeliveryError) or exc.transient
            attempt = item.attempts + 1
            if transient and attempt < self.settings.max_attempts:
                retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
                delay = retry_delay(attempt, self.settings.base_delay_seconds, self.settings.max_delay_seconds,
                                    self.rng, retry_after)
                await asyncio.to_thread(self._mark_failed, item, repr(exc),
                                        self.clock.now() + timedelta(seconds=delay))
                return "retry"
            log.error("outbox %s dead after %s attempts: %r", item.dedupe_key, attempt, exc)
            await asyncio.to_thread(self._mark_failed, item, repr(exc), None)
            return "dead"
        await asyncio.to_thread(self._mark_sent, item, message_id)
        return "sent"

    async def run_once(self) -> int:
        """Claim one batch and deliver it; the number of rows claimed."""
        items = await asyncio.to_thread(self._claim)
        for item in items:
            await self.deliver(item)
        return len(items)

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
                    await asyncio.wait_for(self.wake.wait(), idle_seconds)
