"""Retention: old inbound receipts, sent outbox rows and idle rate-limit slots are deleted in batches.

Receipts only need to outlive a platform's retries (minutes), so 7 days is generous; sent outbox
rows are kept 30 days for `collabbot outbox list` and card updates (a card tapped a month later is
no longer updated in place). Dead rows stay until an admin retries them, and the audit log is
never pruned. Each batch is its own short transaction, so pruning a large backlog never holds locks
for long; a tick deletes at most `max_batches` batches per table and the next tick goes on.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from collabbot.bot.config import DeliverySettings
from collabbot.scheduler.limits import prune_in
from collabbot.storage import outbox
from collabbot.storage.db import Database
from collabbot.storage.models import InboundReceipt

log = logging.getLogger(__name__)

SLOT_IDLE = timedelta(days=1)


def prune_receipts(db: Database, before: datetime, limit: int) -> int:
    with db.transaction() as s:
        old = select(InboundReceipt.id).where(InboundReceipt.seen_at < before).order_by(InboundReceipt.seen_at) \
            .limit(limit)
        result = s.execute(delete(InboundReceipt).where(InboundReceipt.id.in_(old.scalar_subquery()))
                           .returning(InboundReceipt.id).execution_options(synchronize_session=False))
        return len(result.all())


def prune_sent(db: Database, before: datetime, limit: int) -> int:
    with db.transaction() as s:
        return outbox.prune_sent(s, before, limit)


def prune_slots(db: Database, before: datetime, limit: int) -> int:
    with db.transaction() as s:
        return prune_in(s, before, limit)


def prune(db: Database, now: datetime, settings: DeliverySettings, max_batches: int = 10) -> dict[str, int]:
    """Delete what is past its retention (at most `max_batches` batches per table); counts per table."""
    jobs = {
        "receipts": (prune_receipts, now - timedelta(days=settings.receipt_retention_days)),
        "outbox": (prune_sent, now - timedelta(days=settings.sent_retention_days)),
        "rate_slots": (prune_slots, now - SLOT_IDLE),
    }
    counts: dict[str, int] = {}
    for name, (fn, before) in jobs.items():
        total = 0
        for _ in range(max_batches):
            n = fn(db, before, settings.prune_batch)
            total += n
            if n < settings.prune_batch:
                break
        counts[name] = total
    if any(counts.values()):
        log.info("retention: pruned %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts
