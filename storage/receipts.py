"""Inbound receipts: the first sight of each platform event, and the reply it got.

A platform that redelivers an event (its retry, or two copies arriving together) gets the stored reply
instead of a second run. Both statements run for every event, so they are Core statements built once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collabbot.storage.models import InboundReceipt

_T = InboundReceipt.__table__
_FIRST = {name: dialect_insert(_T).on_conflict_do_nothing(index_elements=["platform", "event_id"]).returning(_T.c.id)
          for name, dialect_insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))}
_STORED = select(_T.c.reply).where(_T.c.platform == bindparam("platform"), _T.c.event_id == bindparam("event_id"))
_REPLY = update(_T).where(_T.c.id == bindparam("receipt_id")).values(reply=bindparam("reply"))


def first_sight(session: Session, platform: str, event_id: str, now: datetime) -> tuple[int | None, Any]:
    """(the new receipt's id, None) the first time this event is seen; (None, its stored reply) after.

    A copy arriving while the first is being handled waits on the unique key until that transaction ends,
    then reads the reply it committed."""
    conn = session.connection()
    receipt_id = conn.execute(_FIRST[conn.dialect.name],
                              {"platform": platform, "event_id": event_id, "seen_at": now}).scalar()
    if receipt_id is not None:
        return receipt_id, None
    return None, stored(session, platform, event_id)[1]


def stored(session: Session, platform: str, event_id: str) -> tuple[bool, Any]:
    """(whether the event was seen, the reply stored for it)."""
    row = session.connection().execute(_STORED, {"platform": platform, "event_id": event_id}).first()
    return (False, None) if row is None else (True, row.reply)


def set_reply(session: Session, receipt_id: int, reply: dict[str, Any]) -> None:
    session.connection().execute(_REPLY, {"receipt_id": receipt_id, "reply": reply})
