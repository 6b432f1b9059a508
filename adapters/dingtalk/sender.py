"""The DingTalk sender: which API each outbox row goes through, and DingTalk's declared limits.

* a card (to a group or a person): `createAndDeliver` from the one generic template, `callbackType`
  STREAM (HTTP mode: HTTP with our route key), `openSpaceId` `dtv1.card//IM_GROUP.<conversationId>`
  or `dtv1.card//IM_ROBOT.<userId>`, the people it mentions as `atUserIds` (a real @), and the row's
  installation-unique key (hashed) as `outTrackId`, which is also the id later updates use.
  `param.cardAlreadyExist` on a resend means the first attempt created it: sent. A 200 whose
  `deliverResults[].success` is false is a failure, and a permanent one: a retry under the same
  outTrackId would only be told the card exists, and count an undelivered card as sent.
* a card update row: `PUT /v1.0/card/instances` (every copy is its own card instance).
* text to a group, by default (`group_text = "card"`): a card whose only content is the text, with
  `atUserIds`. DingTalk's robot sends have no idempotency key, so a resend after a crash between
  "sent" and "marked sent" would post twice; a card's outTrackId makes it once, and its mentions
  are real. With `group_text = "robot"`: `groupMessages/send`, which cannot @mention; text that
  mentions someone then goes through the session webhook of the group's latest message to the
  robot while it is valid (host in `session_webhook_hosts`, not expired), else as the card.
* text to a person: `oToMessages/batchSend` with that one user; a user reported flow-controlled is
  a throttle (retried, never counted as sent), one reported invalid a permanent failure (not in the
  organisation, or not reachable by the robot: sending again changes nothing).
* urgent to a person, with `[dingtalk] ding = true`: a DING (`robot/ding/send`) as well; the
  message itself is already delivered, so a failing DING is logged, never a failed row.

Limits: the robot's 20 messages a minute per group (then a 10-minute block), and DingTalk's
per-app QPS for the send APIs (20 a second) as the app limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from collabbot.adapters.dingtalk import media
from collabbot.adapters.dingtalk.client import DingTalkApiError, DingTalkClient
from collabbot.adapters.dingtalk.config import DingTalkSettings
from collabbot.adapters.dingtalk.parse import SessionWebhook
from collabbot.adapters.kit.sender import PlatformSender, render
from collabbot.bot.clock import Clock
from collabbot.bot.replies import Card, Message
from collabbot.cards import escape
from collabbot.scheduler.delivery import DeliveryError
from collabbot.scheduler.limits import Limit

log = logging.getLogger(__name__)

PLATFORM = "dingtalk"
GROUP_PER_WINDOW = 20
APP_QPS = 20
NOT_IN_GROUP = ("不在群", "not in the group", "group.disbanded", "已解散")  # a card's delivery refused: the group is lost
ALREADY_EXISTS = "param.cardAlreadyExist"
WEBHOOK_MARGIN_SECONDS = 30.0
TEXT_KIND = "text"  # the card `kind` of text drawn as a card (a template may show it without a header)  # a session webhook this close to its expiry is not used


def limits_for(settings: DingTalkSettings) -> tuple[Limit, ...]:
    return (Limit("app", APP_QPS, 1.0), Limit("chat", GROUP_PER_WINDOW, settings.group_limit_seconds))


def out_track_id(idempotency_key: str) -> str:
    """The row's key as an outTrackId: short, and only characters DingTalk accepts there."""
    return "cb-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def card_params(message: Message) -> tuple[dict[str, str], dict[str, str]]:
    """(cardParamMap, atUserIds) of a message with a card, or of text drawn as a card."""
    from collabbot.cards import render as cards

    if message.card is None:
        message = Message(message.parts, Card(kind=TEXT_KIND, key=TEXT_KIND, title=""), message.urgent)
    rendered = cards.render_message(PLATFORM, message)
    return rendered["cardParamMap"], rendered["atUserIds"]


def card_only(message: Message) -> dict[str, str]:
    """The cardParamMap that shows `message` in place of a sent card (an update, a tap's answer)."""
    return card_params(message)[0]


def text(message: Message, *, real_mentions: bool) -> dict[str, Any]:
    from collabbot.cards.dingtalk.render import text_message

    return text_message(message, real_mentions=real_mentions)


class SessionWebhooks:
    """The latest session webhook of each group, kept in memory (each instance knows those it received)."""

    def __init__(self, hosts: tuple[str, ...], max_entries: int = 10_000) -> None:
        self.hosts = hosts
        self.max_entries = max_entries
        self._by_chat: dict[str, SessionWebhook] = {}

    def allowed(self, url: str) -> bool:
        """https on an allowed host name, or exactly an origin ("http://host:port") the config lists."""
        parsed = urlparse(url)
        if parsed.username or parsed.password or not parsed.hostname:
            return False
        origin = f"{parsed.scheme}://{parsed.netloc}".lower()
        return (parsed.scheme == "https" and parsed.hostname.lower() in self.hosts) or origin in self.hosts

    def remember(self, webhook: SessionWebhook) -> bool:
        """Keep it if its URL is allowed; False when refused."""
        if not self.allowed(webhook.url):
            log.warning("dingtalk: session webhook on host %r refused", urlparse(webhook.url).hostname)
            return False
        if len(self._by_chat) >= self.max_entries:
            self._by_chat.pop(next(iter(self._by_chat)))
        self._by_chat.pop(webhook.conversation_id, None)
        self._by_chat[webhook.conversation_id] = webhook
        return True

    def valid(self, conversation_id: str, now: datetime) -> SessionWebhook | None:
        webhook = self._by_chat.get(conversation_id)
        if webhook is None or (webhook.expires_at - now).total_seconds() < WEBHOOK_MARGIN_SECONDS:
            return None
        return webhook


class DingTalkSender(PlatformSender):
    platform = PLATFORM
    file_limit = media.MAX_FILE_BYTES

    def __init__(self, client: DingTalkClient, settings: DingTalkSettings, clock: Clock,
                 webhooks: SessionWebhooks | None = None) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.webhooks = webhooks or SessionWebhooks(settings.session_webhook_hosts)
        self.limits = limits_for(settings)
        self.paths: dict[str, int] = {"card": 0, "group_text": 0, "session_webhook": 0, "text_as_card": 0,
                                      "private_text": 0, "ding": 0}

    async def update(self, message_id: str, message: Message) -> None:
        await self.client.update_card(message_id, render(card_only, message))

    async def post(self, target_kind: str, target_id: str, message: Message, idempotency_key: str) -> str | None:
        if message.card is not None:
            self.paths["card"] += 1
            message_id = await self._card(target_kind, target_id, message, idempotency_key)
        elif target_kind == "chat":
            message_id = await self._group_text(target_id, message, idempotency_key)
        else:
            self.paths["private_text"] += 1
            rendered = render(lambda m: text(m, real_mentions=False), message)
            key, invalid, limited = await self.client.batch_send([target_id], rendered["msgKey"], rendered["msgParam"])
            if limited:
                raise DingTalkApiError(f"batchSend: {target_id} flow-controlled", throttle=True, retry_after=60.0)
            if invalid:
                raise DeliveryError(f"batchSend: {target_id} reported invalid", transient=False)
            message_id = key or None
        if message.urgent and target_kind == "user" and self.settings.ding:
            try:
                # plain text, but a right-to-left override in a title must not turn it round either
                await self.client.ding([target_id], escape.shorten(escape.clean(message.plain_text), 500) or "…")
                self.paths["ding"] += 1
            except DingTalkApiError as exc:
                log.warning("dingtalk: DING failed (the message itself was sent): %s", exc)
        return message_id

    async def _group_text(self, conversation_id: str, message: Message, idempotency_key: str) -> str | None:
        if self.settings.group_text == "card":
            self.paths["text_as_card"] += 1
            return await self._card("chat", conversation_id, message, idempotency_key)
        rendered = render(lambda m: text(m, real_mentions=True), message)
        if not rendered["at"]["atUserIds"]:
            self.paths["group_text"] += 1
            return await self.client.group_send(conversation_id, rendered["msgKey"], rendered["msgParam"]) or None
        webhook = self.webhooks.valid(conversation_id, self.clock.now())
        if webhook is not None:
            self.paths["session_webhook"] += 1
            content = json.loads(rendered["msgParam"])["content"]
            await self.client.session_send(webhook.url, {"msgtype": "text", "text": {"content": content},
                                                         "at": rendered["at"]})
            return None
        self.paths["text_as_card"] += 1
        return await self._card("chat", conversation_id, message, idempotency_key)

    async def _card(self, target_kind: str, target_id: str, message: Message, idempotency_key: str) -> str:
        params, at_ids = render(card_params, message)
        track = out_track_id(idempotency_key)
        body: dict[str, Any] = {
            "cardTemplateId": self.settings.card_template_id, "outTrackId": track,
            "cardData": {"cardParamMap": params},
            "callbackType": "HTTP" if self.settings.mode == "http" else "STREAM",
        }
        if self.settings.mode == "http":
            body["callbackRouteKey"] = self.settings.card_route_key
        if target_kind == "chat":
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{target_id}"
            body["imGroupOpenSpaceModel"] = {"supportForward": False}
            deliver: dict[str, Any] = {"robotCode": self.settings.robot}
            if at_ids:
                deliver["atUserIds"] = at_ids
            body["imGroupOpenDeliverModel"] = deliver
        else:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{target_id}"
            body["imRobotOpenSpaceModel"] = {"supportForward": False}
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT", "robotCode": self.settings.robot}
        try:
            result = await self.client.create_and_deliver(body)
        except DingTalkApiError as exc:
            if str(exc.code) == ALREADY_EXISTS:
                log.info("dingtalk: card %s already exists (an earlier attempt created it): sent", track)
                return track
            raise
        failed = [r for r in result.get("deliverResults") or [] if isinstance(r, dict) and r.get("success") is False]
        if failed:
            reason = "; ".join(str(r.get("errorMsg") or "?")[:120] for r in failed)
            raise DeliveryError(f"createAndDeliver {track}: not delivered ({reason})", transient=False,
                                unreachable=target_kind == "chat" and any(w in reason for w in NOT_IN_GROUP))
        return track

    # --- attachments: media/upload, then sampleImageMsg / sampleFile through the robot ---------------------
    async def upload_image(self, png: bytes, name: str, target_kind: str) -> str:
        return await media.upload(self.client, png, "image", name)

    async def upload_file(self, data: bytes, name: str, target_kind: str) -> str:
        return await media.upload(self.client, data, "file", name)

    async def post_image(self, target_kind: str, target_id: str, key: str, idempotency_key: str) -> str | None:
        return await self._robot_send(target_kind, target_id, "sampleImageMsg", media.image_param(key))

    async def post_file(self, target_kind: str, target_id: str, key: str, name: str,
                        idempotency_key: str) -> str | None:
        return await self._robot_send(target_kind, target_id, "sampleFile", media.file_param(key, name))

    async def _robot_send(self, target_kind: str, target_id: str, msg_key: str, msg_param: str) -> str | None:
        self.paths["media"] = self.paths.get("media", 0) + 1
        if target_kind == "chat":
            return await self.client.group_send(target_id, msg_key, msg_param) or None
        key, invalid, limited = await self.client.batch_send([target_id], msg_key, msg_param)
        if limited:
            raise DingTalkApiError(f"batchSend: {target_id} flow-controlled", throttle=True, retry_after=60.0)
        if invalid:
            raise DeliveryError(f"batchSend: {target_id} reported invalid", transient=False)
        return key or None
