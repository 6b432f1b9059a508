"""What a DingTalk robot message or card callback means, and how DingTalk is answered.

Shared by Stream and HTTP mode. The kit's pipeline does the rest (stale rule, durable queue row,
engine, deadline). Deduplication: a robot message's event id is its `msgId`, so a message that
arrives twice (DingTalk does not redeliver robot messages, but an HTTP sender may retry and several
connections may see one) finds the engine's receipt and changes nothing; recently seen frame
`messageId`s are also skipped here, before any work. A card tap's event id is the
frame's `messageId` (Stream) or the callback's own id, and its answer is the tapped card's new
`cardParamMap` (`{"cardData": {"cardParamMap": …}, "cardUpdateOptions": {"updateCardDataByKey":
true}}`), within DingTalk's 2 s; every other copy is updated through the outbox. A tap the engine
could not finish in time is answered empty, and its copy updated through the API once it has.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from typing import Any

from collabbot.adapters.dingtalk import parse
from collabbot.adapters.dingtalk.config import DingTalkSettings
from collabbot.adapters.dingtalk.sender import PLATFORM, SessionWebhooks, card_only
from collabbot.adapters.hub import Hub
from collabbot.adapters.kit.pipeline import InboundPipeline, LateUpdate
from collabbot.bot.replies import Reply

log = logging.getLogger(__name__)

ROBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"
SEEN_FRAMES = 4096


class DingTalkInbound:
    def __init__(self, hub: Hub, settings: DingTalkSettings, webhooks: SessionWebhooks,
                 late_update: LateUpdate | None = None) -> None:
        self.hub = hub
        self.settings = settings
        self.webhooks = webhooks
        self.pipeline = InboundPipeline(hub, PLATFORM, answer_within=settings.answer_within_seconds,
                                        stale_seconds=settings.stale_message_seconds, late_update=late_update)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0

    async def drain(self) -> None:
        await self.pipeline.drain()

    def first_time(self, frame_id: str) -> bool:
        """False for a frame id seen lately (a frame sent again: nothing to work twice)."""
        if not frame_id:
            return True
        if frame_id in self._seen:
            self._seen.move_to_end(frame_id)
            self.duplicates += 1
            return False
        self._seen[frame_id] = None
        if len(self._seen) > SEEN_FRAMES:
            self._seen.popitem(last=False)
        return True

    def forget(self, frame_id: str) -> None:
        """A frame that could not be kept: if DingTalk sends it again, it is worked then."""
        self._seen.pop(frame_id, None)

    async def robot_message(self, data: Any) -> None:
        """A robot message (verified by the socket or the HTTP sign): the engine gets it; the answer is empty."""
        try:
            incoming = parse.parse_message(data)
        except parse.Malformed as exc:
            log.warning("dingtalk: malformed robot message ignored: %s", exc)
            return
        if incoming.webhook is not None and not isinstance(incoming.what, parse.Ignored):
            self.webhooks.remember(incoming.webhook)
        if isinstance(incoming.what, parse.Ignored):
            log.debug("dingtalk: message ignored: %s", incoming.what.reason)
            return
        await self.pipeline.accept(incoming.what, incoming.sent_at)

    async def card_callback(self, event_id: str, data: Any) -> dict[str, Any]:
        """A card tap: the tapped card's new parameters, or {} (nothing to change / not ready in time)."""
        if not event_id:
            event_id = "tap:" + hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:40]
        try:
            tap = parse.parse_card_callback(event_id, data)
        except parse.Malformed as exc:
            log.warning("dingtalk: malformed card callback ignored: %s", exc)
            return {}
        return self.answer(await self.pipeline.handle(tap.event()))

    def answer(self, reply: Reply | None) -> dict[str, Any]:
        if reply is None or reply.message is None or reply.message.card is None:
            return {}
        try:
            params = card_only(reply.message)
        except Exception:  # the tap itself is done; the other copies follow through the outbox
            log.exception("dingtalk: cannot render the updated card %s", reply.message.card.key)
            return {}
        return {"cardData": {"cardParamMap": params}, "cardUpdateOptions": {"updateCardDataByKey": True}}
