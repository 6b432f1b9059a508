"""The outbox: messages written in the transaction that caused them, claimed and sent by the worker.

`enqueue` inserts with the row's unique dedupe key and does nothing when that key exists, so a
re-run sweep or a second instance makes no second message. `claim` takes due rows for one worker:
on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so several instances never take the same row; every
claim also sets `claimed_until`, so a row whose worker died (kill -9 between claim and mark) is
taken again once that lease has run out.

Every claim draws a random `claim_token`; marking a row sent, failed or deferred only changes it
`WHERE id = … AND claim_token = …`, so a worker whose lease ran out (and whose row another worker
has claimed since) changes nothing: the functions say so by returning False.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collabbot.storage.installation import installation_id
from collabbot.storage.models import OutboxMessage, UtcDateTime


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
    idempotency_key: str = ""  # installation id + ":" + dedupe key: the platform's idempotency key
    claim_token: str = ""  # the lease this worker holds on the row


WORKING_TIME = "working_time"  # in a row's payload: sent in working time only (a rule's reminder, not a reply)


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
    # RETURNING, not rowcount: psycopg through SQLAlchemy 2.1's ORM insert reports rowcount -1
    return session.execute(_ENQUEUE[session.get_bind().dialect.name], values).first() is not None


# one statement per dialect, built once: the values are bound at execution (building the statement
# with its values each time cost more than the insert itself on the inbound hot path)
_ENQUEUE = {
    name: (dialect_insert(OutboxMessage).on_conflict_do_nothing(index_elements=["dedupe_key"])
           .returning(OutboxMessage.id))
    for name, dialect_insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def _claim_statement(dialect: str) -> Any:
    """The claim as one Core UPDATE … RETURNING, built once per dialect: the ORM's per-call statement
    building and bulk-update machinery cost more than the database's work for a batch."""
    t = OutboxMessage.__table__
    now = bindparam("now")
    due = (select(t.c.id)
           .where(t.c.status == "pending", t.c.not_before <= now,
                  or_(t.c.claimed_until.is_(None), t.c.claimed_until <= now))
           .order_by(t.c.not_before, t.c.id)
           .limit(bindparam("limit")))
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return (update(t).where(t.c.id.in_(due.scalar_subquery()))
            .values(claimed_until=bindparam("until"), claim_token=bindparam("token"))
            .returning(t.c.id, t.c.dedupe_key, t.c.platform, t.c.target_kind, t.c.target_id, t.c.target_name,
                       t.c.payload, t.c.card_key, t.c.attempts, t.c.created_at, t.c.not_before))


_CLAIM = {name: _claim_statement(name) for name in ("postgresql", "sqlite")}


def claim(session: Session, now: datetime, limit: int, lease: timedelta, *,
          installation: str | None = None) -> list[OutboxItem]:
    """Take up to `limit` due rows for this worker under a fresh claim token (the caller commits).

    `installation` is this database's installation id (read, or created, here when not given).
    """
    installation = installation or installation_id(session)
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # Read the batch off ix_outbox_pending in order and stop after `limit` rows. With a backlog the
        # planner may pick a bitmap scan instead, which visits every due row (and every dead index
        # entry of the rows sent since the last vacuum) and sorts them: the whole backlog per batch.
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    token = secrets.token_hex(8)
    rows = conn.execute(_CLAIM[dialect], {"now": now, "limit": limit, "until": now + lease, "token": token}).all()
    rows.sort(key=lambda r: (r.not_before, r.id))
    # the returned columns start with OutboxItem's own, in its order (one slice, not ten attribute reads)
    return [OutboxItem(*r[:10], f"{installation}:{r.dedupe_key}", token) for r in rows]


def _owned(item_id: int, claim_token: str | None) -> Any:
    """The row, and only while `claim_token` still holds it (no token: unconditionally, for admin tools)."""
    cond = OutboxMessage.id == item_id
    return cond if claim_token is None else cond & (OutboxMessage.claim_token == claim_token)


def _changed(session: Session, stmt: Any) -> bool:
    # RETURNING, not rowcount (see enqueue)
    return session.execute(stmt.returning(OutboxMessage.id).execution_options(synchronize_session=False)
                           ).first() is not None


def mark_sent(session: Session, item_id: int, now: datetime, platform_message_id: str | None,
              claim_token: str | None = None) -> bool:
    """Record a delivered row; False when the claim was lost (another worker holds the row now)."""
    return _changed(session, update(OutboxMessage).where(_owned(item_id, claim_token)).values(
        status="sent", sent_at=now, claimed_until=None, claim_token=None, attempts=OutboxMessage.attempts + 1,
        platform_message_id=platform_message_id, last_error=""))


def mark_sent_many(session: Session, claim_token: str, now: datetime,
                   message_ids: dict[int, str | None]) -> set[int]:
    """`mark_sent` for several rows of one claim in one statement; the ids this claim still held."""
    if not message_ids:
        return set()
    conn = session.connection()
    if conn.dialect.name == "postgresql":  # one prepared statement for any number of rows
        params = {"ids": list(message_ids), "mids": list(message_ids.values()), "token": claim_token, "now": now}
        return set(conn.execute(_MARK_SENT_PG, params).scalars())
    t = OutboxMessage.__table__
    mid = case(message_ids, value=t.c.id) if any(v is not None for v in message_ids.values()) else None
    stmt = (update(t).where(t.c.id.in_(list(message_ids)), t.c.claim_token == claim_token)
            .values(status="sent", sent_at=now, claimed_until=None, claim_token=None, attempts=t.c.attempts + 1,
                    platform_message_id=mid, last_error="")
            .returning(t.c.id))
    return set(conn.execute(stmt).scalars())


_MARK_SENT_PG = text(
    "UPDATE outbox SET status = 'sent', sent_at = :now, claimed_until = NULL, claim_token = NULL,"
    " attempts = outbox.attempts + 1, platform_message_id = sent.mid, last_error = ''"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:mids AS varchar[])) AS sent(id, mid)"
    " WHERE outbox.id = sent.id AND outbox.claim_token = :token RETURNING outbox.id"
).bindparams(bindparam("now", type_=UtcDateTime()))


def retire(session: Session, ids: list[int], now: datetime) -> int:
    """Mark rows still waiting as sent without sending them (a newer row makes them pointless, or worse:
    an older card update sent after a newer one). A worker holding one loses its claim, so its outcome
    is not recorded. How many."""
    t = OutboxMessage.__table__
    return len(session.connection().execute(
        update(t).where(t.c.id.in_(ids), t.c.status == "pending")
        .values(status="sent", sent_at=now, claimed_until=None, claim_token=None, last_error="superseded")
        .returning(t.c.id)).all())


def release(session: Session, claim_token: str) -> int:
    """Put back, due at once and without spending an attempt, the rows still held under `claim_token`
    (a worker stopping with a batch it has claimed but not started); how many."""
    t = OutboxMessage.__table__
    return len(session.connection().execute(
        update(t).where(t.c.claim_token == claim_token, t.c.status == "pending")
        .values(claimed_until=None, claim_token=None).returning(t.c.id)).all())


def mark_failed(session: Session, item_id: int, error: str, retry_at: datetime | None,
                claim_token: str | None = None) -> bool:
    """Record a failed try: retry at `retry_at`, or dead (visible to an admin) when it is None.

    False when the claim was lost."""
    values: dict[str, Any] = dict(attempts=OutboxMessage.attempts + 1, last_error=error[:2000], claimed_until=None,
                                  claim_token=None)
    if retry_at is None:
        values["status"] = "dead"
    else:
        values["not_before"] = retry_at
    return _changed(session, update(OutboxMessage).where(_owned(item_id, claim_token)).values(**values))


def defer(session: Session, item_id: int, until: datetime, claim_token: str | None, reason: str = "") -> bool:
    """Put a row back until `until` WITHOUT counting an attempt (a throttle, a rate-limit wait)."""
    values: dict[str, Any] = dict(not_before=until, claimed_until=None, claim_token=None)
    if reason:
        values["last_error"] = reason[:2000]
    return _changed(session, update(OutboxMessage).where(_owned(item_id, claim_token), OutboxMessage.status == "pending")
                    .values(**values))


def renew(session: Session, item_id: int, claim_token: str, until: datetime) -> bool:
    """Extend this worker's lease on a row; False when the lease is already lost."""
    return _changed(session, update(OutboxMessage).where(_owned(item_id, claim_token), OutboxMessage.status == "pending")
                    .values(claimed_until=until))


def renew_claim(session: Session, claim_token: str, until: datetime) -> list[int]:
    """Extend the lease on every row still held under `claim_token` (one claim's batch); their ids."""
    return list(session.scalars(
        update(OutboxMessage).where(OutboxMessage.claim_token == claim_token, OutboxMessage.status == "pending")
        .values(claimed_until=until).returning(OutboxMessage.id).execution_options(synchronize_session=False)))


def prune_sent(session: Session, before: datetime, limit: int) -> int:
    """Delete up to `limit` rows sent before `before` (retention); returns how many."""
    old = (select(OutboxMessage.id).where(OutboxMessage.status == "sent", OutboxMessage.sent_at < before)
           .order_by(OutboxMessage.sent_at).limit(limit))
    result = session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(old.scalar_subquery()))
                             .returning(OutboxMessage.id).execution_options(synchronize_session=False))
    return len(result.all())


def retry_dead(session: Session, now: datetime, ids: list[int] | None = None) -> int:
    """Put dead rows back in the queue (all, or the given ids); returns how many."""
    stmt = update(OutboxMessage).where(OutboxMessage.status == "dead")
    if ids:
        stmt = stmt.where(OutboxMessage.id.in_(ids))
    result = session.execute(stmt.values(status="pending", not_before=now, attempts=0, claimed_until=None,
                                         claim_token=None))
    return result.rowcount or 0


def next_due(session: Session) -> datetime | None:
    """When the earliest pending row becomes due (the console uses it to step time)."""
    return session.scalar(
        select(OutboxMessage.not_before).where(OutboxMessage.status == "pending").order_by(OutboxMessage.not_before)
        .limit(1)
    )
