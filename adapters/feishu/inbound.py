"""What a verified Feishu callback means, and how Feishu is answered.

Shared by the webhook and the long connection, so both behave alike. The kit's pipeline does the
rest (stale rule, durable queue row, engine, deadline); this module only knows Feishu: which
callbacks are challenges, events, card taps or approval changes, and the shape of the answer to a
card tap (卡片回传交互: within 3 s, `{}` or `{"toast": {type, content}, "card": {"type": "raw",
"data": <card>}}`).

Feishu's own approvals: the event carries codes and a status only, so the instance's form and
initiator are fetched after the answer, as a durable follow-up with retries (Feishu does not retry
an event we answered 200).
"""

from __future__ import annotations

import logging
from typing import Any

from collabbot.adapters.feishu import parse
from collabbot.adapters.feishu.client import FeishuApiError, FeishuClient
from collabbot.adapters.feishu.config import FeishuSettings
from collabbot.adapters.feishu.sender import PLATFORM, render_card_of
from collabbot.adapters.hub import Hub
from collabbot.adapters.kit.pipeline import FollowUpFailed, InboundPipeline, LateUpdate
from collabbot.adapters.kit.webhook import loads
from collabbot.bot import texts
from collabbot.bot.events import ApprovalEvent, ChatRef, UserRef
from collabbot.bot.replies import Reply

log = logging.getLogger(__name__)

ANSWER_WITHIN = 2.5  # seconds, by default ([feishu] answer_within_seconds): Feishu's limit is 3
TOAST_TYPES = ("success", "info", "warning", "error")
APPROVAL_FETCH = "feishu.approval"


class FeishuInbound:
    def __init__(self, hub: Hub, settings: FeishuSettings, client: FeishuClient,
                 late_update: LateUpdate | None = None) -> None:
        self.hub = hub
        self.client = client
        self.settings = settings
        self.bot_open_id = settings.bot_open_id
        self.pipeline = InboundPipeline(hub, PLATFORM, answer_within=settings.answer_within_seconds,
                                        stale_seconds=settings.stale_message_seconds, late_update=late_update)
        self.pipeline.follow_ups[APPROVAL_FETCH] = self._approval

    async def drain(self) -> None:
        """Wait for the background work (tests, shutdown)."""
        await self.pipeline.drain()

    # --- entry points ---------------------------------------------------------------------------
    def parse(self, data: Any) -> parse.Callback:
        return parse.parse_callback(data, self.bot_open_id, self.settings.approvals)

    async def handle_payload(self, payload: bytes) -> dict[str, Any] | None:
        """The long connection's entry: a plaintext schema 2.0 body (the socket itself is authenticated)."""
        try:
            callback = self.parse(loads(payload))
        except ValueError as exc:  # parse.Malformed is a ValueError too
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
            if parse.NATIVE_STATUS.get(what.status) is None or not what.instance_code:
                log.info("feishu: approval instance %r status %r ignored", what.instance_code, what.status)
                return {}
            await self.pipeline.follow_up(APPROVAL_FETCH, {"instance": what.instance_code, "status": what.status,
                                                           "template": what.template})
            return {}
        if isinstance(what, parse.CardTap):
            return self.answer(await self.pipeline.handle(what.event(bool(what.chat_id))))
        await self.pipeline.accept(what, callback.sent_at)
        return {}

    def answer(self, reply: Reply | None) -> dict[str, Any]:
        """A card tap's answer: the toast, and the tapped card as it now looks (only that copy: the
        engine queued the updates of the others). Without a reply in time the approver still learns at
        once that the tap counted; the late update brings the card."""
        if reply is None:  # the engine missed the deadline: say the tap was taken, the card follows
            return {"toast": {"type": "info", "content": texts.t(self.hub.bot.config.language, "tap_late")}}
        answer: dict[str, Any] = {}
        if reply.toast:
            kind = reply.toast_kind if reply.toast_kind in TOAST_TYPES else "info"
            answer["toast"] = {"type": kind, "content": reply.toast}
        if reply.message is not None:
            try:
                answer["card"] = {"type": "raw", "data": render_card_of(reply.message)}
            except Exception:  # the tap itself is done: answer its toast rather than a 500
                log.exception("feishu: cannot render the updated card %s", reply.message.card)
        return answer

    # --- Feishu's own approvals -----------------------------------------------------------------
    async def _approval(self, job: dict[str, Any]) -> ApprovalEvent | None:
        """The instance's details, then one `ApprovalEvent`. Its id is instance + status, so Feishu's
        retries and its duplicate events under new ids change nothing."""
        code, status = str(job["instance"]), parse.NATIVE_STATUS[job["status"]]
        try:
            detail = await self.client.approval_instance(code)
        except FeishuApiError as exc:
            if exc.transient:
                raise FollowUpFailed(str(exc)) from exc
            log.error("feishu: cannot read approval instance %s: %s", code, exc)
            return None
        open_id = detail.get("open_id")
        if not isinstance(open_id, str) or not open_id:
            log.error("feishu: approval instance %s has no initiator open_id", code)
            return None
        return ApprovalEvent(f"approval:{code}:{status}"[:200], ChatRef(PLATFORM, "", is_group=False),
                             UserRef(PLATFORM, open_id), f"{PLATFORM}:{code}", str(job["template"]), status,
                             parse.approval_form(detail.get("form")))
