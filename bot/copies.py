"""Every sent copy of a card follows its entity.

A card is posted in several places (the group's copy of a task card, the owner's private copy, a
leader's approval card); the outbox rows that carried it record the card's key (`task:12`) and the
platform's message id. When a tap changes the entity, the engine — not the adapter — queues an
`update` row for every other sent copy, in the same transaction as the change, so a crash between
the answer and those rows cannot leave a copy showing a stale state with live buttons. The tapped
copy itself is updated by the callback's own answer (`Reply.card` with `Reply.parts`).

A copy's update not yet sent when a newer change comes is retired (marked sent, unsent): sent after
the newer one — a retry after a failure, a throttle's wait — it would put the older state back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collabbot.bot.replies import Card, Message, Part, card_to_json
from collabbot.storage import outbox
from collabbot.storage.models import OutboxMessage

UPDATE = "update"  # target_kind of an outbox row that edits a sent message (target_id = its message id)
COPY_SENT_AT = "copy_sent_at"  # in an update row's payload: when the message it changes was sent


@dataclass(frozen=True)
class SentCopy:
    row_id: int
    platform: str
    message_id: str
    parts: tuple[Part, ...]
    shows: dict[str, Any] | None  # the card as this copy shows it now (its last update, else as sent)
    target_kind: str = "chat"  # chat | user: who sees this copy (a card may differ per viewer)
    target_id: str = ""
    sent_at: datetime | None = None
    unsent: tuple[int, ...] = ()  # this copy's update rows still waiting to go out


def sent_copies(s: Session, card_key: str) -> list[SentCopy]:
    """The sent messages, on every platform, that show the card `card_key`, oldest first."""
    rows = list(s.execute(select(OutboxMessage.id, OutboxMessage.platform, OutboxMessage.platform_message_id,
                                 OutboxMessage.payload, OutboxMessage.target_kind, OutboxMessage.target_id,
                                 OutboxMessage.sent_at)
                          .where(OutboxMessage.card_key == card_key, OutboxMessage.status == "sent",
                                 OutboxMessage.target_kind.in_(("chat", "user")),
                                 OutboxMessage.platform_message_id.is_not(None))
                          .order_by(OutboxMessage.id)))
    shows = {(platform, mid): payload.get("card") for _, platform, mid, payload, _, _, _ in rows}
    unsent: dict[tuple[str, str], tuple[int, ...]] = {}
    if rows:  # later updates of those messages (queued or sent) say what they show now
        updates = s.execute(select(OutboxMessage.id, OutboxMessage.platform, OutboxMessage.target_id,
                                   OutboxMessage.payload, OutboxMessage.status)
                            .where(OutboxMessage.target_kind == UPDATE, OutboxMessage.status != "dead",
                                   OutboxMessage.target_id.in_([mid for _, _, mid, _, _, _, _ in rows]))
                            .order_by(OutboxMessage.id))
        for row_id, platform, mid, payload, status in updates:
            if (platform, mid) in shows:
                shows[(platform, mid)] = payload.get("card")
                if status == "pending":
                    unsent[(platform, mid)] = (*unsent.get((platform, mid), ()), row_id)
    return [SentCopy(row_id, platform, mid, Message.from_json(payload).parts, shows[(platform, mid)], kind, target,
                     sent_at, unsent.get((platform, mid), ()))
            for row_id, platform, mid, payload, kind, target, sent_at in rows]


def update_copies(s: Session, card: Card, *, key: str, now: datetime, except_message: tuple[str, str] | None = None,
                  copies: list[SentCopy] | None = None, view: Callable[[SentCopy], Card | None] | None = None) -> int:
    """Queue an update of every sent copy of `card` but `except_message` ((platform, message id)); `view`
    draws the card as a copy's viewer sees it (None: as `card`). `key` names the change, so a re-run
    queues nothing twice. How many were queued."""
    queued = 0
    retired: list[int] = []
    for copy in copies if copies is not None else sent_copies(s, card.key):
        if except_message == (copy.platform, copy.message_id):
            retired += copy.unsent  # the tapped copy rides the answer, newer than any of them
            continue
        shown = (view(copy) if view is not None else None) or card
        if copy.shows == card_to_json(shown):
            continue  # already showing this: nothing to change
        payload: dict[str, Any] = Message(copy.parts, shown).to_json()
        if copy.sent_at is not None:  # a platform may refuse to change a message sent too long ago
            payload[COPY_SENT_AT] = copy.sent_at.isoformat()
        if outbox.enqueue(s, dedupe_key=f"{key}:update:{copy.row_id}"[:200], platform=copy.platform,
                          target_kind=UPDATE, target_id=copy.message_id, target_name="", payload=payload, now=now):
            queued += 1
            retired += copy.unsent
    if retired:
        outbox.retire(s, retired, now)
    return queued


def tapped_copy(copies: list[SentCopy], platform: str, message_id: str) -> SentCopy | None:
    return next((c for c in copies if (c.platform, c.message_id) == (platform, message_id)), None)
