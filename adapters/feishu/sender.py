"""The Feishu sender: its API calls for the kit's base sender, and Feishu's declared limits.

A row addressed to a chat goes out with `receive_id_type=chat_id`, one to a person with `open_id`,
rendered by `cards/` (text with real `<at>` mentions, or an interactive card), with the row's
installation-unique idempotency key as the message `uuid`, so a resend after a crash between
"sent" and "marked sent" is dropped by Feishu (发送消息: the same uuid sends at most one message per
hour). An `update` row PATCHes a sent card in place.

A message the rules marked urgent goes to a person as 加急 (urgent_app) as well; the urgency is a
courtesy on top of a message already delivered, so its failure (most often: the app lacks the
im:message.urgent permission) is logged and never makes the row fail.

Limits (发送消息 → 使用限制; 频控策略): 50 messages a second per app, 5 a second per chat and per user.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from collabbot.adapters.feishu import media
from collabbot.adapters.feishu.client import FeishuApiError, FeishuClient, message_uuid
from collabbot.adapters.feishu.config import FeishuSettings
from collabbot.adapters.kit.sender import PlatformSender, render
from collabbot.bot.replies import Message
from collabbot.scheduler.limits import Limit

log = logging.getLogger(__name__)

PLATFORM = "feishu"
GONE = (230011, 230031)  # 更新已发送的消息卡片: the message was recalled; it was sent more than 14 days ago
# 发送消息: 50 a second and 1,000 a minute per app (either throttles); 5 a second per chat and per user
LIMITS = (Limit("app", 50, 1.0), Limit("app", 1000, 60.0), Limit("chat", 5, 1.0), Limit("user", 5, 1.0))


def render_message(message: Message) -> tuple[str, dict[str, Any]]:
    """(msg_type, content) of a message, by the Feishu templates in `cards/`."""
    from collabbot.cards import render as cards

    rendered = cards.render_message(PLATFORM, message)
    content = rendered["content"]
    return rendered["msg_type"], json.loads(content) if isinstance(content, str) else content


def render_card_of(message: Message) -> dict[str, Any]:
    """The card JSON that shows `message` (its text, if any, and its card) for an in-place update."""
    from collabbot.cards import render as cards

    assert message.card is not None
    msg_type, content = render_message(message)
    return content if msg_type == "interactive" else cards.render_card(PLATFORM, message.card)


class FeishuSender(PlatformSender):
    platform = PLATFORM
    limits = LIMITS
    native_charts = True  # a card's bars are drawn by the card's own chart element
    updates_within = timedelta(days=14) - timedelta(hours=1)  # 更新已发送的消息卡片: messages of the last 14 days
    file_limit = media.MAX_FILE_BYTES

    def __init__(self, client: FeishuClient, settings: FeishuSettings) -> None:
        self.client = client
        self.settings = settings

    async def update(self, message_id: str, message: Message) -> None:
        try:
            await self.client.update_card(message_id, render(render_card_of, message))
        except FeishuApiError as exc:
            if exc.code not in GONE:
                raise
            # nothing left to change (recalled, or past Feishu's 14 days): done, not a dead row for the admin
            log.info("feishu: card %s not updated: %s", message_id, exc)

    async def post(self, target_kind: str, target_id: str, message: Message, idempotency_key: str) -> str | None:
        msg_type, content = render(render_message, message)
        id_type = "chat_id" if target_kind == "chat" else "open_id"
        message_id = await self.client.send_message(id_type, target_id, msg_type, content,
                                                    message_uuid(idempotency_key))
        if message.urgent and target_kind == "user":
            try:
                refused = await self.client.urgent_app(message_id, [target_id])
                if refused:
                    log.warning("feishu: 加急 refused for %s", refused)
            except FeishuApiError as exc:
                log.warning("feishu: 加急 failed (the message itself was sent): %s", exc)
        return message_id

    # --- attachments: image and file messages (上传图片 / 上传文件, then msg_type image / file) ---------------
    async def upload_image(self, png: bytes, name: str, target_kind: str) -> str:
        return await self.client.upload_image(png, name)

    async def post_image(self, target_kind: str, target_id: str, key: str, idempotency_key: str) -> str | None:
        return await self.client.send_message("chat_id" if target_kind == "chat" else "open_id", target_id, "image",
                                              {"image_key": key}, message_uuid(idempotency_key))

    async def upload_file(self, data: bytes, name: str, target_kind: str) -> str:
        return await media.upload_file(self.client, data, name)

    async def post_file(self, target_kind: str, target_id: str, key: str, name: str,
                        idempotency_key: str) -> str | None:
        return await self.client.send_message("chat_id" if target_kind == "chat" else "open_id", target_id, "file",
                                              {"file_key": key}, message_uuid(idempotency_key))
