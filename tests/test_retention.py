"""Retention (both databases): old receipts and sent rows go in batches from the scheduler's tick;
dead rows, recent rows and the audit log stay."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select

from collabbot.bot.config import DeliverySettings
from collabbot.scheduler.delivery import DeliveryWorker
from collabbot.scheduler.retention import prune
from collabbot.scheduler.runner import Runner
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.models import AuditEntry, InboundReceipt, OutboxMessage, RateSlot

from .conftest import Harness


def seed(db: Database, now: datetime) -> None:
    """Receipts 10 and 2 days old, sent rows 40 and 5 days old, an old dead row, an old audit entry, slots."""
    with db.transaction() as s:
        for i, age in enumerate([10] * 5 + [2] * 3):
            s.add(InboundReceipt(platform="feishu", event_id=f"ev-{i}", seen_at=now - timedelta(days=age), reply=None))
        for i, age in enumerate([40] * 5 + [5] * 2 + [40]):
            at = now - timedelta(days=age)
            outbox.enqueue(s, dedupe_key=f"k:{i}", platform="console", target_kind="chat", target_id="g",
                           target_name="g", payload={"parts": ["x"], "card": None}, now=at)
        s.add(AuditEntry(at=now - timedelta(days=400), action="task.create", entity_type="task", entity_id=1))
        s.add(RateSlot(key="feishu:chat:old", next_at=now - timedelta(days=3)))
        s.add(RateSlot(key="feishu:chat:new", next_at=now))
    with db.transaction() as s:
        for row in s.scalars(select(OutboxMessage)):
            if row.dedupe_key == "k:7":
                outbox.mark_failed(s, row.id, "gone", None)
            else:
                outbox.mark_sent(s, row.id, row.created_at, None)


def count(db: Database, model: type) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_prune_keeps_recent_rows_dead_rows_and_the_audit_in_batches(db: Database) -> None:
    now = datetime.fromisoformat("2026-12-01T01:00:00+00:00")
    seed(db, now)
    settings = DeliverySettings(prune_batch=2)
    assert prune(db, now, settings, max_batches=2) == {"receipts": 4, "outbox": 4, "rate_slots": 1}
    assert prune(db, now, settings, max_batches=2) == {"receipts": 1, "outbox": 1, "rate_slots": 0}
    assert (count(db, InboundReceipt), count(db, OutboxMessage), count(db, AuditEntry)) == (3, 3, 1)
    with db.transaction() as s:
        kept = {r.dedupe_key: r.status for r in s.scalars(select(OutboxMessage))}
    assert kept == {"k:5": "sent", "k:6": "sent", "k:7": "dead"}
    longer = replace(settings, receipt_retention_days=30, sent_retention_days=60)
    assert prune(db, now, longer) == {"receipts": 0, "outbox": 0, "rate_slots": 0}


def test_the_scheduler_tick_prunes(db: Database) -> None:
    harness = Harness(db)
    now = harness.clock.now()
    seed(db, now)

    async def tick() -> None:
        runner = Runner(harness.bot, DeliveryWorker(db, {}, harness.config.delivery, harness.clock))
        await runner.tick()

    asyncio.run(tick())
    assert count(db, InboundReceipt) == 3 and count(db, AuditEntry) >= 1
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.dedupe_key.in_(["k:0", "k:1", "k:2", "k:3", "k:4"]))) == 0
