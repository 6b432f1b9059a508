"""What a verified Feishu callback does: one engine call, an answer, and the work that may wait.

Shared by the webhook and the long connection, so both behave alike. The answer is built from the
engine's `Reply` only; the engine call is one short transaction (run in a worker thread by the Hub),
and nothing here waits on an outbound HTTP call before answering: Feishu wants an answer within 3 s
(card callbacks included: 卡片回传交互 → "3 秒内响应"). Should the database be slow, the answer goes
out empty after `ANSWER_WITHIN` seconds and the engine finishes on its own (its receipt makes a retry
harmless).

After a card tap whose reply carries the updated card, every OTHER sent copy of that card (the
group's copy of a task card tapped in private chat, say) gets an `update` outbox row, written after
the answer, which the delivery worker sends as a PATCH under the usual retries and rate limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from sqlalchemy import select

from collabbot.adapters.feishu import parse
from collabbot.adapters.feishu.client import FeishuApiError, FeishuClient
from collabbot.adapters.feishu.config import FeishuSettings
from collabbot.adapters.feishu.sender import PLATFORM, UPDATE_KIND, render_card_of, sent_copies
from collabbot.adapters.hub import Hub
from collabbot.bot.events import ApprovalEvent, ChatRef, InboundEvent, MessageEvent, UserRef
from collabbot.bot.replies import Message, Reply
from collabbot.storage import outbox
from collabbot.storage.models import Chat

log = logging.getLogger(__name__)

ANSWER_WITHIN = 2.5  # seconds: Feishu's limit is 3
TOAST_TYPES = ("success", "info", "warning", "error")


class FeishuInbound:
    def __init__(self, hub: Hub, settings: FeishuSettings, client: FeishuClient) -> None:
        self.hub = hub
        self.client = client
        self.settings = settings
        self.bot_open_id = settings.bot_open_id
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("feishu: background work failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the background work (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- entry points ---------------------------------------------------------------------------
    def parse(self, data: Any) -> parse.Callback:
        return parse.parse_callback(data, self.bot_open_id, self.settings.approvals)

    async def handle_payload(self, payload: bytes) -> dict[str, Any] | None:
        """The long connection's entry: a plaintext schema 2.0 body (the socket itself is authenticated)."""
        try:
            callback = self.parse(json.loads(payload))
        except (ValueError, parse.Malformed) as exc:
            log.warning("feishu: malformed frame refused: %s", exc)
            return None
        return await self.dispatch(callback)

    async def dispatch(self, callback: parse.Callback) -> dict[str, Any]:
        what = callback.what
        if isinstance(what, parse.Challenge):
            return {"challenge": what.challenge}
        if isinstance(what, parse.Ignored):
            log.debug("feishu: %s ignored: %s", callback.event_type, what.reason)
            return {}
        if isinstance(what, parse.ApprovalInstance):
            # the event carries codes and a status only: the form and the initiator are fetched after the answer
            self.spawn(self._approval(what))
            return {}
        if isinstance(what, parse.CardTap):
            return await self._card_tap(what)
        if isinstance(what, MessageEvent) and self._stale(callback.sent_at):
            log.warning("feishu: message %s sent at %s arrived too late; not executed", what.event_id,
                        callback.sent_at)
            return {}
        await self._engine(what)
        return {}

    def _stale(self, sent_at: datetime | None) -> bool:
        """After a reconnect Feishu may flush queued events, and it retries for hours: a command typed
        long ago is not run blindly (PLATFORM-NOTES, long connection)."""
        limit = self.settings.stale_message_seconds
        if not limit or sent_at is None:
            return False
        return (self.hub.bot.clock.now() - sent_at).total_seconds() > limit

    async def _engine(self, event: InboundEvent) -> Reply | None:
        """The engine's reply, or None when it did not come within ANSWER_WITHIN (it still completes)."""
        task = self.spawn(self.hub.handle(event))
        try:
            return await asyncio.wait_for(asyncio.shield(task), ANSWER_WITHIN)
        except TimeoutError:
            log.warning("feishu: %s took longer than %.1f s; answered empty", event.event_id, ANSWER_WITHIN)
            return None

    # --- Feishu's own approvals -----------------------------------------------------------------
    async def _approval(self, what: parse.ApprovalInstance) -> None:
        """The instance's details, then one `ApprovalEvent`. Its id is instance + status, so Feishu's
        retries and its duplicate events under new ids change nothing; a fetch that fails is logged
        and left to Feishu's own retry of the event."""
        status = parse.NATIVE_STATUS.get(what.status)
        if status is None or not what.instance_code:
            log.info("feishu: approval instance %r status %r ignored", what.instance_code, what.status)
            return
        try:
            detail = await self.client.approval_instance(what.instance_code)
        except FeishuApiError as exc:
            log.error("feishu: cannot read approval instance %s: %s", what.instance_code, exc)
            return
        open_id = detail.get("open_id")
        if not isinstance(open_id, str) or not open_id:
            log.error("feishu: approval instance %s has no initiator open_id", what.instance_code)
            return
        event = ApprovalEvent(f"approval:{what.instance_code}:{status}"[:200], ChatRef(PLATFORM, "", is_group=False),
                              UserRef(PLATFORM, open_id), f"{PLATFORM}:{what.instance_code}", what.template, status,
                              parse.approval_form(detail.get("form")))
        await self.hub.handle(event)

    # --- card taps ------------------------------------------------------------------------------
    async def _card_tap(self, tap: parse.CardTap) -> dict[str, Any]:
        db = self.hub.bot.db
        is_group = bool(tap.chat_id) and await asyncio.to_thread(_known_group, db, tap.chat_id)
        reply = await self._engine(tap.event(is_group))
        if reply is None:
            return {}
        answer: dict[str, Any] = {}
        if reply.toast:
            kind = reply.toast_kind if reply.toast_kind in TOAST_TYPES else "info"
            answer["toast"] = {"type": kind, "content": reply.toast}
        if reply.card is not None:
            card = reply.card
            copies = await asyncio.to_thread(sent_copies, db, card.key)
            tapped = next((Message.from_json(p) for mid, p in copies if mid == tap.message_id), None)
            shown = Message(tapped.parts if tapped else (), card)
            try:
                answer["card"] = {"type": "raw", "data": render_card_of(shown)}
            except Exception:  # the tap itself is done: answer its toast rather than a 500
                log.exception("feishu: cannot render the updated card %s", card.key)
            others = [(mid, p) for mid, p in copies if mid != tap.message_id]
            if others:
                self.spawn(self._update_copies(tap.event_id, others, card))
        return answer

    async def _update_copies(self, event_id: str, copies: list[tuple[str, dict[str, Any]]], card: Any) -> None:
        now = self.hub.bot.clock.now()

        def enqueue() -> int:
            written = 0
            with self.hub.bot.db.transaction() as s:
                for message_id, payload in copies:
                    shown = Message(Message.from_json(payload).parts, card)
                    written += outbox.enqueue(
                        s, dedupe_key=f"feishu:update:{event_id}:{message_id}"[:200], platform=PLATFORM,
                        target_kind=UPDATE_KIND, target_id=message_id, target_name="", payload=shown.to_json(),
                        now=now)
            return written

        if await asyncio.to_thread(enqueue) and self.hub.worker is not None:
            self.hub.worker.wake.set()


def _known_group(db: Any, chat_id: str) -> bool:
    """A tap's chat is a group when the engine knows it as one (private chats never get a Chat row)."""
    with db.transaction() as s:
        return s.scalar(select(Chat.id).where(Chat.platform == PLATFORM, Chat.platform_chat_id == chat_id)) is not None
