"""What a verified WeCom callback means, and how WeCom is answered (robot and app alike).

The kit's pipeline does the rest (stale rule, durable queue row, engine, deadline). This module knows:

* a robot tap is answered on its own frame (`aibot_respond_update_msg`, or the URL callback's
  passive answer) with the card as it now looks and the SAME task_id, for everyone (no `userids`),
  within WeCom's 5 s;
* an app tap is answered empty, and its card is replaced with `message/update_template_card` using
  the click's `ResponseCode` (72 h, once) — only that copy: the engine queued the others. The
  replacement is a durable follow-up (`CARD_UPDATE`), so a restart between the tap and the update
  still updates the card in place, and a tap the engine answered too late for the callback is updated
  once the engine's receipt has its answer; the click's code becomes the copy's latest
  (the kit's `CardCodes`), and a redelivered tap finds it used and changes nothing;
* "@名字" is resolved through the app's contact directory, read at start and every
  `directory_refresh_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from collabbot.adapters.hub import Hub
from collabbot.adapters.kit.pipeline import FollowUpFailed, InboundPipeline
from collabbot.adapters.kit.sender import RenderError, render
from collabbot.adapters.wecom import parse
from collabbot.adapters.wecom.client import WecomApiError, WecomClient
from collabbot.adapters.wecom.config import WecomSettings
from collabbot.adapters.wecom.contacts import directory
from collabbot.adapters.wecom.sender import WecomSender, render_card
from collabbot.bot.events import event_from_json, event_to_json
from collabbot.bot.replies import Message, Reply

log = logging.getLogger(__name__)

ANSWER_WITHIN = 4.0  # seconds: WeCom's limit is 5
CARD_UPDATE = "card_update"  # the follow-up that replaces a tapped app card
PLATFORM = parse.PLATFORM


class WecomInbound:
    def __init__(self, hub: Hub, settings: WecomSettings, client: WecomClient, sender: WecomSender) -> None:
        self.hub = hub
        self.settings = settings
        self.client = client
        self.sender = sender
        self.pipeline = InboundPipeline(hub, PLATFORM, answer_within=ANSWER_WITHIN,
                                        stale_seconds=settings.stale_message_seconds)
        self.directory: dict[str, str] = {}
        self._directory_at = 0.0
        self._directory_task: asyncio.Task[None] | None = None
        self.card_updates_failed = 0
        self.pipeline.follow_ups[CARD_UPDATE] = self._card_update

    async def start(self) -> None:
        await self.pipeline.start()
        await self.refresh_directory()
        self._directory_task = asyncio.create_task(self._refresh_forever(), name="wecom-directory")

    async def stop(self) -> None:
        if self._directory_task is not None:
            self._directory_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._directory_task
        await self.pipeline.stop()

    async def drain(self) -> None:
        await self.pipeline.drain()

    # --- the contact names ----------------------------------------------------------------------
    async def refresh_directory(self) -> bool:
        try:
            users = await self.client.users(await self.client.departments(self.settings.org_root_department))
        except WecomApiError as exc:
            log.warning("wecom: cannot read the contact directory (%s); \"@名字\" stays text until it can", exc)
            return False
        self.directory = directory(users)
        self._directory_at = time.monotonic()
        return True

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.directory_refresh_seconds)
            await self.refresh_directory()

    # --- the robot ------------------------------------------------------------------------------
    async def robot_body(self, body: Any) -> dict[str, Any] | None:
        """A robot callback body (long connection or URL callback) → the template card answering a tap,
        or None (nothing rides on the answer)."""
        try:
            parsed = parse.parse_robot(body, self.directory, self.settings.bot_name)
        except ValueError as exc:
            log.warning("wecom: malformed robot callback refused: %s", exc)
            return None
        what = parsed.what
        if isinstance(what, parse.Ignored | parse.Disconnected):
            log.debug("wecom: %s", what)
            return None
        if self.settings.robot_mode == "callback" and isinstance(body, dict) and isinstance(body.get("response_url"), str):
            chat = body.get("chatid") or (body.get("from") or {}).get("userid")
            if isinstance(chat, str):
                await self.sender.remember_response_url(chat, body["response_url"])
        if isinstance(what, parse.Tap):
            return self.card(await self.pipeline.handle(what.event), what.task_id)
        await self.pipeline.accept(what, parsed.sent_at)
        return None

    async def robot_frame(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        """The long connection's handler: the frame to answer on the callback's req_id, or None."""
        card = await self.robot_body(frame.get("body"))
        if card is None:
            return None
        return {"cmd": "aibot_respond_update_msg",
                "body": {"response_type": "update_template_card", "template_card": card}}

    def card(self, reply: Reply | None, task_id: str) -> dict[str, Any] | None:
        if reply is None or reply.message is None:
            return None
        try:
            return render_card(reply.message, task_id)
        except Exception:  # the tap itself is done: better no update than a failed answer
            log.exception("wecom: cannot render the updated card %s", reply.message.card)
            return None

    # --- the app --------------------------------------------------------------------------------
    async def app_document(self, doc: Mapping[str, Any]) -> None:
        """An app callback's decrypted XML document; answered empty once the event is queued."""
        try:
            parsed = parse.parse_app(doc, self.settings.corp_id, self.settings.agent_id, self.directory)
        except ValueError as exc:
            log.warning("wecom: malformed app callback refused: %s", exc)
            return
        what = parsed.what
        if isinstance(what, parse.Ignored | parse.Disconnected):
            log.debug("wecom: %s", what)
            return
        if isinstance(what, parse.Tap):
            reply = await self.pipeline.handle(what.event)
            if what.response_code:
                job: dict[str, Any] = {"copy": what.event.message_id, "task_id": what.task_id,
                                       "code": what.response_code}
                if reply is None:  # the engine was late: the follow-up asks it again (its receipt answers)
                    job["event"] = event_to_json(what.event)
                elif reply.message is not None and reply.message.card is not None:
                    job["message"] = reply.message.to_json()
                else:
                    return
                self.pipeline.spawn(self.pipeline.follow_up(CARD_UPDATE, job))
            return
        await self.pipeline.accept(what, parsed.sent_at)

    async def _card_update(self, payload: dict[str, Any]) -> None:
        """The follow-up: the tapped app card shows the engine's answer, changed with the tap's code."""
        try:
            copy, task_id, code = str(payload["copy"]), str(payload["task_id"]), str(payload["code"])
            stored = Message.from_json(payload["message"]) if "message" in payload else None
            event = event_from_json(payload["event"]) if stored is None else None
        except (KeyError, TypeError, ValueError) as exc:
            self.card_updates_failed += 1
            log.error("wecom: a tapped app card's update cannot be read (%r); dropped", exc)
            return None
        try:
            # the tap's answer was not ready in time: the engine's receipt gives it now, once it is
            message = stored if event is None else (await self.hub.handle(event)).message
            if message is None or message.card is None:
                return None
            card = render(render_card, message, task_id)
            await self.sender.codes.keep(copy, task_id, code)
            done = await self.sender.update_in_place(copy, card)
        except RenderError:
            self.card_updates_failed += 1
            log.exception("wecom: the tapped app card %s cannot be drawn; not updated", copy)
            return None
        except Exception as exc:  # transient (WeCom, the network, the database): tried again later
            raise FollowUpFailed(repr(exc)) from exc
        if not done:  # its code was used (a redelivered tap, or a newer change took it) or refused
            self.card_updates_failed += 1
        return None
