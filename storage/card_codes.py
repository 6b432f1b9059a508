"""One-time codes for changing a sent card in place, kept per copy (the `card_update_codes` table).

Some platforms change a card already sent only with a code they handed out when it was sent or tapped,
valid for a while and usable once (and some answer a conversation later only through such a one-time
key: it is kept here the same way, under a `message_id` of its own). Kept in memory such codes die with the process, and the copy is then
posted again instead of updated. Here only the latest code of each copy is kept: a newer one replaces
it, `take` marks it used in the same statement that reads it (two instances cannot both use it), and
`give_back` returns a code whose call failed before the platform saw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from collabbot.storage.models import CardUpdateCode

MAX_MESSAGE_ID = 200
MAX_CARD_ID = 128


@dataclass(frozen=True)
class Code:
    code: str
    card_id: str  # the platform's id of the card that shows the copy now


def keep(session: Session, platform: str, message_id: str, card_id: str, code: str, expires_at: datetime,
         now: datetime) -> bool:
    """Remember `code` as the copy's latest; False (nothing changed) when it is the code already kept, used or
    not: a platform's redelivery repeats the code it sent, and a used code must not come back to life.
    Expired rows of the platform are deleted on the way."""
    if not code or len(message_id) > MAX_MESSAGE_ID or len(card_id) > MAX_CARD_ID:
        return False
    session.execute(delete(CardUpdateCode).where(CardUpdateCode.platform == platform,
                                                 CardUpdateCode.expires_at <= now))
    known = session.scalar(select(CardUpdateCode.code).where(CardUpdateCode.platform == platform,
                                                             CardUpdateCode.message_id == message_id))
    if known == code:
        return False
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    values = {"card_id": card_id, "code": code, "expires_at": expires_at, "used": False}
    session.execute(insert(CardUpdateCode).values(platform=platform, message_id=message_id, **values)
                    .on_conflict_do_update(index_elements=["platform", "message_id"], set_=values))
    return True


def take(session: Session, platform: str, message_id: str, now: datetime) -> Code | None:
    """The copy's code, marked used; None when there is none, it was used, or it has expired."""
    row = session.execute(
        update(CardUpdateCode)
        .where(CardUpdateCode.platform == platform, CardUpdateCode.message_id == message_id,
               CardUpdateCode.used.is_(False), CardUpdateCode.expires_at > now)
        .values(used=True)
        .returning(CardUpdateCode.code, CardUpdateCode.card_id)
        .execution_options(synchronize_session=False)).first()
    return Code(row.code, row.card_id) if row is not None else None


def give_back(session: Session, platform: str, message_id: str, code: str) -> bool:
    """A taken code the platform never saw (its call failed on the way): usable again, unless a newer one
    replaced it meanwhile."""
    result = session.execute(
        update(CardUpdateCode)
        .where(and_(CardUpdateCode.platform == platform, CardUpdateCode.message_id == message_id,
                    CardUpdateCode.code == code))
        .values(used=False)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]
