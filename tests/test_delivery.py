"""The delivery worker under faults: every message delivered, none twice (both databases)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from collabbot.bot.clock import ManualClock
from collabbot.bot.config import DeliverySettings
from collabbot.scheduler.backoff import retry_delay
from collabbot.scheduler.delivery import DeliveryError, DeliveryWorker
from collabbot.storage import outbox
from collabbot.storage.models import OutboxMessage
from collabbot.storage.outbox import OutboxItem

START = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


class FlakySender:
    """Fails, times out or rate-limits about `rate` of the sends; records the ones that went out."""

    platform = "fake"

    def __init__(self, rate: float, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.delivered: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    async def send(self, item: OutboxItem) -> str | None:
        roll = self.rng.random()
        if roll < self.rate / 3:
            self.failures["error"] += 1
            raise DeliveryError("HTTP 502", transient=True)
        if roll < 2 * self.rate / 3:
            self.failures["rate"] += 1
            raise DeliveryError("rate limited", transient=True, retry_after=1.0)
        if roll < self.rate:
            self.failures["timeout"] += 1
            await asyncio.sleep(1)  # longer than the worker's send timeout below
        self.delivered[item.dedupe_key] += 1
        return f"m-{item.id}"


def fill(db, n: int, now: datetime) -> None:
    with db.transaction() as s:
        for i in range(n):
            outbox.enqueue(s, dedupe_key=f"k:{i}", platform="fake", target_kind="chat", target_id=f"c{i % 40}",
                           target_name="c", payload={"parts": [f"m{i}"], "card": None}, now=now)


def test_thousand_messages_with_thirty_percent_faults_all_arrive_once(db) -> None:
    clock = ManualClock(START)
    fill(db, 1000, clock.now())
    sender = FlakySender(0.3)
    settings = DeliverySettings(max_attempts=30, base_delay_seconds=1, max_delay_seconds=30, batch_size=200,
                                per_chat_per_minute=10**6, per_platform_per_second=0)
    worker = DeliveryWorker(db, {"fake": sender}, settings, clock, rng=random.Random(1), send_timeout=0.01)

    async def run() -> None:
        for _ in range(200):
            await worker.drain()
            with db.transaction() as s:
                pending = s.scalar(select(func.count()).select_from(OutboxMessage)
                                   .where(OutboxMessage.status == "pending"))
            if not pending:
                return
            clock.advance(timedelta(seconds=31))

    asyncio.run(run())
    assert len(sender.delivered) == 1000
    assert max(sender.delivered.values()) == 1
    assert sum(sender.failures.values()) > 200  # the faults really happened
    with db.transaction() as s:
        statuses = dict(s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
    assert statuses == {"sent": 1000}


def test_permanent_failures_and_exhausted_retries_go_dead_and_can_be_retried(db) -> None:
    clock = ManualClock(START)
    fill(db, 3, clock.now())

    class Broken:
        platform = "fake"

        async def send(self, item: OutboxItem) -> str | None:
            raise DeliveryError("bad receive_id", transient=item.dedupe_key != "k:0")

    settings = DeliverySettings(max_attempts=2, base_delay_seconds=1, max_delay_seconds=1,
                                per_chat_per_minute=10**6, per_platform_per_second=0)
    worker = DeliveryWorker(db, {"fake": Broken()}, settings, clock, rng=random.Random(1))
    asyncio.run(worker.drain())
    with db.transaction() as s:
        rows = {r.dedupe_key: r for r in s.scalars(select(OutboxMessage))}
        assert rows["k:0"].status == "dead" and rows["k:0"].attempts == 1
        assert rows["k:1"].status == "pending" and rows["k:1"].attempts == 1
    clock.advance(timedelta(seconds=5))
    asyncio.run(worker.drain())
    with db.transaction() as s:
        assert {r.status for r in s.scalars(select(OutboxMessage))} == {"dead"}
        assert outbox.retry_dead(s, clock.now(), None) == 3
    with db.transaction() as s:
        assert {r.status for r in s.scalars(select(OutboxMessage))} == {"pending"}


def test_a_chat_over_its_limit_is_deferred_not_failed(db) -> None:
    clock = ManualClock(START)
    with db.transaction() as s:
        for i in range(5):
            outbox.enqueue(s, dedupe_key=f"k:{i}", platform="fake", target_kind="chat", target_id="one",
                           target_name="c", payload={"parts": ["x"], "card": None}, now=clock.now())
    sender = FlakySender(0.0)
    settings = replace(DeliverySettings(), per_chat_per_minute=3, per_platform_per_second=0)
    worker = DeliveryWorker(db, {"fake": sender}, settings, clock)
    asyncio.run(worker.drain())
    assert len(sender.delivered) == 3
    with db.transaction() as s:
        deferred = list(s.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending")))
        assert len(deferred) == 2 and all(r.attempts == 0 and r.not_before > clock.now() for r in deferred)


def test_backoff_grows_with_full_jitter_and_honours_retry_after() -> None:
    rng = random.Random(3)
    for attempt, bound in [(1, 2), (2, 4), (3, 8), (10, 600), (30, 600)]:
        delays = [retry_delay(attempt, 2, 600, rng) for _ in range(200)]
        assert max(delays) <= bound and min(delays) < bound / 4
    assert retry_delay(1, 2, 600, rng, retry_after=30) >= 30
