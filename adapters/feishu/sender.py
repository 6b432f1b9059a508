"""The Feishu sender for the delivery worker: one outbox row → one Feishu API call.

A row addressed to a chat goes out with `receive_id_type=chat_id`, one to a person with `open_id`,
rendered by `cards/` (`render_message("feishu", …)`: text with real `<at>` mentions, or an
interactive card), and with the row's dedupe key as the message `uuid` so a resend after a crash
between "sent" and "marked sent" is dropped by Feishu (发送消息: the same uuid sends at most one
message per hour). Rows of kind `update` are this adapter's own: after a card tap it queues one per
other sent copy of the same card (the outbox's `card_key` and `platform_message_id` are the map
card → Feishu message ids), and the sender PATCHes that message in place.

An escalation to a person may also be sent 加急 (urgent_app) when `[feishu] urgent` asks for it; the
urgency is a courtesy on top of a message already delivered, so its failure (most often: the app
lacks the im:message.urgent permission) is logged and never makes the row fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from sqlalchemy import select

from collabbot.adapters.feishu.client import FeishuApiError, FeishuClient, message_uuid
from collabbot.adapters.feishu.config import FeishuSettings
from collabbot.bot.replies import Card, Message
from collabbot.scheduler.delivery import DeliveryError
from collabbot.storage.db import Database
from collabbot.storage.models import OutboxMessage, Task, Wait
from collabbot.storage.outbox import OutboxItem

log = logging.getLogger(__name__)

PLATFORM = "feishu"
UPDATE_KIND = "update"  # an outbox row that PATCHes a sent card (target_id = the Feishu message id)
T = TypeVar("T")


def render_message(message: Message) -> tuple[str, dict[str, Any]]:
    """(msg_type, content) of a message, by the Feishu templates in `cards/`."""
    from collabbot.cards import render

    rendered = render.render_message(PLATFORM, message)
    content = rendered["content"]
    return rendered["msg_type"], json.loads(content) if isinstance(content, str) else content


def render_card_of(message: Message) -> dict[str, Any]:
    """The card JSON that shows `message` (its text, if any, and its card) for an in-place update."""
    from collabbot.cards import render

    assert message.card is not None
    msg_type, content = render_message(message)
    return content if msg_type == "interactive" else render.render_card(PLATFORM, message.card)


class FeishuSender:
    platform = PLATFORM

    def __init__(self, client: FeishuClient, settings: FeishuSettings, db: Database | None = None) -> None:
        self.client = client
        self.settings = settings
        self.db = db

    async def _api(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except FeishuApiError as exc:
            raise DeliveryError(str(exc), transient=exc.transient, retry_after=exc.retry_after) from exc

    async def send(self, item: OutboxItem) -> str | None:
        message = Message.from_json(item.payload)
        if item.target_kind == UPDATE_KIND:
            if message.card is None:
                raise DeliveryError("an update row without a card", transient=False)
            await self._api(self.client.update_card(item.target_id, render_card_of(message)))
            return item.target_id
        if item.target_kind not in ("chat", "user"):
            raise DeliveryError(f"unknown target kind {item.target_kind!r}", transient=False)
        try:
            msg_type, content = render_message(message)
        except Exception as exc:  # a template error will not go away by retrying
            raise DeliveryError(f"cannot render {item.dedupe_key}: {exc!r}", transient=False) from exc
        id_type = "chat_id" if item.target_kind == "chat" else "open_id"
        message_id = await self._api(self.client.send_message(id_type, item.target_id, msg_type, content,
                                                              message_uuid(item.dedupe_key)))
        if await self._wants_urgent(item, message.card):
            try:
                refused = await self.client.urgent_app(message_id, [item.target_id])
                if refused:
                    log.warning("feishu: 加急 refused for %s on %s", refused, item.dedupe_key)
            except FeishuApiError as exc:
                log.warning("feishu: 加急 failed for %s (the message itself was sent): %s", item.dedupe_key, exc)
        return message_id

    async def _wants_urgent(self, item: OutboxItem, card: Card | None) -> bool:
        if self.settings.urgent == "off" or item.target_kind != "user" or card is None or card.kind != "escalation":
            return False
        if self.settings.urgent == "all":
            return True
        return self.db is not None and await asyncio.to_thread(high_priority_wait, self.db, card.key)


def high_priority_wait(db: Database, card_key: str) -> bool:
    """Is the escalation card `wait:<id>` about a high-priority task?"""
    kind, _, raw_id = card_key.partition(":")
    if kind != "wait" or not raw_id.isdigit():
        return False
    with db.transaction() as s:
        wait = s.get(Wait, int(raw_id))
        if wait is None or wait.entity_type != "task":
            return False
        return s.scalar(select(Task.priority).where(Task.id == wait.entity_id)) == "high"


def sent_copies(db: Database, card_key: str) -> list[tuple[str, dict[str, Any]]]:
    """(Feishu message id, payload) of every sent message that shows the card `card_key`."""
    with db.transaction() as s:
        rows = s.execute(select(OutboxMessage.platform_message_id, OutboxMessage.payload).where(
            OutboxMessage.card_key == card_key, OutboxMessage.platform == PLATFORM,
            OutboxMessage.status == "sent", OutboxMessage.target_kind.in_(("chat", "user")),
            OutboxMessage.platform_message_id.is_not(None)).order_by(OutboxMessage.id))
        return [(mid, payload) for mid, payload in rows]
