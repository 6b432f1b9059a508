"""The outbox: messages written in the transaction that caused them, claimed and sent by the worker.

`enqueue` inserts with the row's unique dedupe key and does nothing when that key exists, so a
re-run sweep or a second instance makes no second message. `claim` takes due rows for one worker:
on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so several instances never take the same row; every
claim also sets `claimed_until`, so a row whose worker died (kill -9 between claim and mark) is
taken again once that lease has run out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collabbot.storage.models import OutboxMessage


@dataclass(frozen=True)
class OutboxItem:
    """A claimed row, detached from the session, for the sender."""

    id: int
    dedupe_key: str
    platform: str
    target_kind: str
    target_id: str
    target_name: str
    payload: dict[str, Any]
    card_key: str | None
    attempts: int
    created_at: datetime


def enqueue(
    session: Session,
    *,
    dedupe_key: str,
    platform: str,
    target_kind: str,
    target_id: str,
    target_name: str,
    payload: dict[str, Any],
    now: datetime,
    not_before: datetime | None = None,
    card_key: str | None = None,
) -> bool:
    """Insert one message unless its dedupe key exists; True when a row was written."""
    values = dict(
        dedupe_key=dedupe_key,
        platform=platform,
        target_kind=target_kind,
        target_id=target_id,
        target_name=target_name,
        payload=payload,
        card_key=card_key,
        status="pending",
        attempts=0,
        not_before=not_before or now,
        created_at=now,
        last_error="",
    )
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (insert(OutboxMessage).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(OutboxMessage.id))
    # RETURNING, not rowcount: psycopg through SQLAlchemy 2.1's ORM insert reports rowcount -1
    return session.execute(stmt).first() is not None


def claim(session: Session, now: datetime, limit: int, lease: timedelta) -> list[OutboxItem]:
    """Take up to `limit` due rows for this worker (the caller commits)."""
    stmt = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.not_before <= now,
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= now),
        )
        .order_by(OutboxMessage.not_before, OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    until = now + lease
    for row in rows:
        row.claimed_until = until
    session.flush()
    return [
        OutboxItem(r.id, r.dedupe_key, r.platform, r.target_kind, r.target_id, r.target_name, r.payload,
                   r.card_key, r.attempts, r.created_at)
        for r in rows
    ]


def mark_sent(session: Session, item_id: int, now: datetime, platform_message_id: str | None) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == item_id)
        .values(status="sent", sent_at=now, claimed_until=None, attempts=OutboxMessage.attempts + 1,
                platform_message_id=platform_message_id, last_error="")
    )


def mark_failed(session: Session, item_id: int, error: str, retry_at: datetime | None) -> None:
    """Record a failed try: retry at `retry_at`, or dead (visible to an admin) when it is None."""
    values: dict[str, Any] = dict(attempts=OutboxMessage.attempts + 1, last_error=error[:2000], claimed_until=None)
    if retry_at is None:
        values["status"] = "dead"
    else:
        values["not_before"] = retry_at
    session.execute(update(OutboxMessage).where(OutboxMessage.id == item_id).values(**values))


def retry_dead(session: Session, now: datetime, ids: list[int] | None = None) -> int:
    """Put dead rows back in the queue (all, or the given ids); returns how many."""
    stmt = update(OutboxMessage).where(OutboxMessage.status == "dead")
    if ids:
        stmt = stmt.where(OutboxMessage.id.in_(ids))
    result = session.execute(stmt.values(status="pending", not_before=now, attempts=0, claimed_until=None))
    return result.rowcount or 0


def next_due(session: Session) -> datetime | None:
    """When the earliest pending row becomes due (the console uses it to step time)."""
    return session.scalar(
        select(OutboxMessage.not_before).where(OutboxMessage.status == "pending").order_by(OutboxMessage.not_before)
        .limit(1)
    )
