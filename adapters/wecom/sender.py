"""The WeCom sender: groups through the robot, people through the app; WeCom's declared limits.

* A row for a chat goes out through the robot: `aibot_send_msg` on the long connection (markdown, or
  a `template_card`, after a markdown prelude when the text @mentions someone: a card cannot). WeCom
  accepts a push only in a conversation where someone has written to the robot, so a group we never
  heard from is refused here with a clear log line (binding the project there is that first message).
  In URL-callback mode the robot cannot push at all; it answers the latest message of the chat once
  through its `response_url` (valid an hour) and refuses the rest.
* A row for a person goes out through the app: `message/send` (text — markdown shows only in the
  WeCom client, not through WeChat —, markdown for a card with nothing to tap, or `template_card` of
  `button_interaction`), `enable_duplicate_check` on, `enable_id_trans` off.
* A card's `task_id` is made from the row's installation-unique idempotency key, so a resend after a
  crash carries the same task_id (WeCom refuses a task_id twice) and a tap names the copy it came from.
* An `update` row: WeCom changes a robot card in place only while answering a tap on it (within 5 s),
  so a group copy changed by a tap elsewhere is sent again in its current state, with a new task_id
  derived from the copy and its content (a retried row repeats it). An app card is changed in place
  with the latest response_code of its copy (the hub's `CardCodes`: kept in the database, 72 h, used once),
  after a restart too; without a valid one it is sent again like a group copy, and the new card's code
  is kept for the copy, so its next change is in place again.

Limits (智能机器人: 30 messages a minute and 1,000 an hour per chat, replies and pushes together;
应用消息: 30 a minute and 1,000 an hour per member, the excess silently dropped) are declared to the
kit's limiter, which paces every send under them. The limiter counts rows, and a row may be two
messages (the words that @mention, then the card; a card, then its chart), so half of each limit is
declared. An `update` row that sends the card again counts against its copy's chat or member.

A prelude that went out is remembered (in this process) under the row's task_id, so a row retried after
its card was throttled does not @mention the people again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from collabbot.adapters.hub import CardCodes
from collabbot.adapters.kit.sender import PlatformSender, render
from collabbot.adapters.wecom import media
from collabbot.adapters.wecom.client import WecomApiError, WecomClient, task_id_taken
from collabbot.adapters.wecom.config import WecomSettings
from collabbot.adapters.wecom.parse import PLATFORM, app_message_id, robot_message_id, split_message_id
from collabbot.adapters.wecom.robot import RobotConnection
from collabbot.bot.replies import Message
from collabbot.scheduler.delivery import DeliveryError
from collabbot.scheduler.limits import Limit

log = logging.getLogger(__name__)

LIMITS = (Limit("chat", 15, 60.0), Limit("chat", 500, 3600.0), Limit("user", 15, 60.0), Limit("user", 500, 3600.0))
PRELUDES_KEPT = 1024  # task_ids whose prelude went out, for retries of the same row
CODE_VALID = timedelta(hours=72) - timedelta(minutes=10)  # a response_code: 72 h, less a margin for clocks and calls
RESPONSE_URL_VALID = timedelta(seconds=3500)  # WeCom: a response_url may be used once within an hour
MARKDOWN_BYTES = 2_048  # the app's markdown and text limit (the robot allows 4,096)
TEXT_CHARS = 600


def response_url_key(chat_id: str) -> str:
    return f"response_url|{chat_id}"


def task_id_of(key: str) -> str:
    """A template card's task_id from an idempotency key: [A-Za-z0-9_@-], at most 128 bytes, stable."""
    return "cb-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def render_message(message: Message, task_id: str) -> dict[str, Any]:
    from collabbot.cards import render as cards

    rendered = cards.render_message(PLATFORM, message)  # a card with nothing to tap comes back as markdown
    if "template_card" in rendered:
        rendered["template_card"]["task_id"] = task_id
    return rendered


def render_text(message: Message) -> dict[str, Any]:
    """A private message's words as a `text` message: markdown is shown only in the WeCom client (not
    through WeChat), and a private message has nobody to @mention. User text stays neutralised."""
    from collabbot.cards import escape
    from collabbot.cards.view import text_of

    text, _ = text_of(message.parts, escape.wecom, TEXT_CHARS, lambda pid, name: "@" + name)
    while len(text.encode()) > MARKDOWN_BYTES:
        text = text[: int(len(text) * 0.9)] + "…"
    return {"msgtype": "text", "text": {"content": text or "…"}}


def render_markdown(message: Message) -> dict[str, Any]:
    """A card with nothing to tap, alone, as markdown (an update that is sent again)."""
    from collabbot.cards.wecom.render import markdown_card

    if message.card is None:
        raise ValueError("an update without a card")
    return markdown_card(message.card)


def render_card(message: Message, task_id: str) -> dict[str, Any]:
    """The template_card alone, showing `message`'s card, with the given task_id."""
    from collabbot.cards import render as cards

    assert message.card is not None
    card = cards.render_card(PLATFORM, message.card)
    card["task_id"] = task_id
    return card


class WecomSender(PlatformSender):
    platform = PLATFORM

    def __init__(self, client: WecomClient, settings: WecomSettings, robot: RobotConnection | None,
                 bound: Callable[[str], bool], codes: CardCodes, *, limits: tuple[Limit, ...] = LIMITS) -> None:
        self.client = client
        self.settings = settings
        self.robot = robot
        self.bound = bound  # has anyone written to the robot in this group?
        self.limits = limits
        self.unbound_refused = 0
        self.codes = codes  # each app card copy's latest response_code
        self._preludes_sent: dict[str, None] = {}  # task_ids, oldest first

    def paced_as(self, target_kind: str, target_id: str) -> tuple[str, str]:
        if target_kind != "update":
            return target_kind, target_id
        try:
            kind, target, _ = split_message_id(target_id)
        except ValueError:
            return target_kind, target_id
        return ("chat" if kind == "robot" else "user"), target

    async def _prelude_once(self, task_id: str, send: Callable[[], Any]) -> None:
        """Send a row's prelude unless an earlier attempt of the row already did."""
        if task_id in self._preludes_sent:
            return
        await send()
        self._preludes_sent[task_id] = None
        if len(self._preludes_sent) > PRELUDES_KEPT:
            del self._preludes_sent[next(iter(self._preludes_sent))]

    # --- rows -----------------------------------------------------------------------------------
    async def post(self, target_kind: str, target_id: str, message: Message, idempotency_key: str) -> str | None:
        task_id = task_id_of(idempotency_key)
        rendered = render(render_message, message, task_id)
        if target_kind == "chat":
            return await self._to_chat(target_id, rendered, task_id)
        if "prelude" in rendered:
            rendered["prelude"] = render(render_text, message)
        elif message.card is None:
            rendered = render(render_text, message)
        return await self._to_user(target_id, rendered, task_id)

    async def update(self, message_id: str, message: Message) -> None:
        try:
            kind, target, _ = split_message_id(message_id)
        except ValueError as exc:
            raise DeliveryError(str(exc), transient=False) from exc
        if message.card is None or not message.card.buttons:  # as posted: markdown, sent again
            rendered = render(render_markdown, message)
            new_task_id = task_id_of(message_id + json.dumps(rendered, ensure_ascii=False, sort_keys=True))
        else:
            card = render(render_card, message, "")
            if kind == "app" and await self.update_in_place(message_id, card):
                return
            new_task_id = task_id_of(message_id + json.dumps(card, ensure_ascii=False, sort_keys=True))
            card["task_id"] = new_task_id
            rendered = {"msgtype": "template_card", "template_card": card}
        if kind == "robot":
            await self._to_chat(target, rendered, new_task_id)
        else:
            await self._to_user(target, rendered, new_task_id, copy=message_id)

    async def update_in_place(self, message_id: str, card: dict[str, Any]) -> bool:
        """Replace the app card copy `message_id` with `card` using the copy's latest response_code; False
        when it has no valid unused code, or WeCom refuses it (the caller decides whether to send again).
        A transient failure gives the code back and raises."""
        _, userid, _ = split_message_id(message_id)
        code = await self.codes.take(message_id)
        if code is None:
            log.info("wecom: no valid response_code for the app card %s (used, or older than 72 h)", message_id)
            return False
        card["task_id"] = code.card_id
        try:
            await self.client.update_template_card(code.code, userid, card)
        except WecomApiError as exc:
            if exc.transient or exc.throttle:
                await self.codes.give_back(message_id, code.code)
                raise
            log.info("wecom: the app card %s cannot be updated in place (%s)", message_id, exc)
            return False
        return True

    # --- the robot (groups) ---------------------------------------------------------------------
    async def _to_chat(self, chat_id: str, rendered: dict[str, Any], task_id: str) -> str:
        if not self.bound(chat_id):
            self.unbound_refused += 1
            log.error("wecom: not posting to group %s: nobody has written to the robot there, and WeCom accepts "
                      "the robot's pushes only where someone has; binding the project (its first @message to the "
                      "robot in that group) makes the group reachable", chat_id)
            raise DeliveryError(f"group {chat_id} has never written to the robot", transient=False)
        parts = [rendered["prelude"]] if "prelude" in rendered else []
        parts.append({k: v for k, v in rendered.items() if k != "prelude"})
        if self.settings.robot_mode == "callback":
            await self._answer_once(chat_id, parts)
        else:
            assert self.robot is not None
            robot = self.robot
            for i, part in enumerate(parts):
                msgtype = part["msgtype"]
                if i < len(parts) - 1:
                    await self._prelude_once(task_id, lambda p=part, m=msgtype, n=i: robot.push(
                        chat_id, m, p[m], req_id=f"{task_id}-{n}"))
                    continue
                try:
                    await robot.push(chat_id, msgtype, part[msgtype], req_id=f"{task_id}-{i}")
                except WecomApiError as exc:
                    if msgtype != "template_card" or not task_id_taken(exc):
                        raise
                    log.info("wecom: robot card %s in %s was delivered by an earlier attempt", task_id, chat_id)
        return robot_message_id(chat_id, task_id)

    async def remember_response_url(self, chat_id: str, url: str) -> None:
        """URL-callback mode: the latest message's response_url, the only way the robot can speak later; kept
        in the database, so a restart or another instance can still use it."""
        host = urlparse(url).hostname or ""
        allowed = urlparse(self.settings.base_url).hostname or ""
        if urlparse(url).scheme not in ("https", "http") or host != allowed:
            log.warning("wecom: a response_url on an unexpected host %r ignored", host[:80])
            return
        await self.codes.keep(response_url_key(chat_id), "", url, RESPONSE_URL_VALID)

    async def _answer_once(self, chat_id: str, parts: list[dict[str, Any]]) -> None:
        taken = await self.codes.take(response_url_key(chat_id))
        if taken is None:
            log.error("wecom: the robot is in URL-callback mode and cannot push to group %s (it may only answer a "
                      "message within an hour, once); use the long connection (robot_mode = \"websocket\")", chat_id)
            raise DeliveryError(f"callback mode: no response_url for {chat_id}", transient=False)
        part = parts[-1]  # one answer only: the card (or the text), without a mention prelude
        target = urlparse(taken.code)
        path = target.path + (f"?{target.query}" if target.query else "")
        try:
            status, _, text = await self.client.exchange("POST", path, json=part)
            self.client.answer("POST", "response_url", status, text)
        except Exception as exc:  # unless WeCom refused it for good, the URL stays usable for the retry
            if not isinstance(exc, WecomApiError) or exc.transient or exc.throttle:
                await self.codes.give_back(response_url_key(chat_id), taken.code)
            raise

    # --- the app (people) -----------------------------------------------------------------------
    async def _to_user(self, userid: str, rendered: dict[str, Any], task_id: str, *, copy: str = "") -> str:
        """Send to one member; a card's response_code is kept for its copy (`copy`: the copy a resent card
        replaces, else the new card itself)."""
        if "prelude" in rendered:
            prelude = rendered["prelude"]
            await self._prelude_once(task_id, lambda: self.client.send(userid, prelude["msgtype"],
                                                                       prelude[prelude["msgtype"]]))
        msgtype = rendered["msgtype"]
        try:
            answer = await self.client.send(userid, msgtype, rendered[msgtype])
        except WecomApiError as exc:
            if msgtype != "template_card" or not task_id_taken(exc):
                raise
            log.info("wecom: app card %s to %s was delivered by an earlier attempt", task_id, userid)
            return app_message_id(userid, task_id)  # its response code went with that attempt: a change resends
        if msgtype == "template_card":
            code = answer.get("response_code")
            if isinstance(code, str) and code:
                try:
                    await self.codes.keep(copy or app_message_id(userid, task_id), task_id, code)
                except Exception:  # the card went out: a lost code costs only a later resend instead of an edit
                    log.warning("wecom: cannot keep the response_code of the app card %s", task_id, exc_info=True)
            return app_message_id(userid, task_id)
        return app_message_id(userid, str(answer.get("msgid") or task_id))

    # --- attachments: images and files (the app's media/upload for people, the robot's upload for groups) --
    file_limit = media.MAX_FILE_BYTES

    def takes_images(self, target_kind: str) -> bool:
        """A group gets pushes only on the long connection (in URL-callback mode the robot answers once)."""
        return target_kind == "user" or (self.settings.robot_mode != "callback" and self.robot is not None)

    def takes_files(self, target_kind: str) -> bool:
        return self.takes_images(target_kind)

    async def upload_image(self, png: bytes, name: str, target_kind: str) -> str:
        return await self._upload(png, "image", name, target_kind)

    async def upload_file(self, data: bytes, name: str, target_kind: str) -> str:
        return await self._upload(data, "file", name, target_kind)

    async def _upload(self, data: bytes, kind: str, name: str, target_kind: str) -> str:
        if target_kind == "chat":
            assert self.robot is not None
            return await media.robot_upload(self.robot, data, kind, name)
        return await media.app_upload(self.client, data, kind, name)

    async def post_image(self, target_kind: str, target_id: str, key: str, idempotency_key: str) -> str | None:
        return await self._media_message(target_kind, target_id, "image", key, idempotency_key)

    async def post_file(self, target_kind: str, target_id: str, key: str, name: str,
                        idempotency_key: str) -> str | None:
        return await self._media_message(target_kind, target_id, "file", key, idempotency_key)

    async def _media_message(self, target_kind: str, target_id: str, msgtype: str, media_id: str,
                             idempotency_key: str) -> str:
        task_id = task_id_of(idempotency_key)
        rendered = {"msgtype": msgtype, msgtype: {"media_id": media_id}}
        if target_kind == "chat":
            return await self._to_chat(target_id, rendered, task_id)
        answer = await self.client.send(target_id, msgtype, rendered[msgtype])
        return app_message_id(target_id, str(answer.get("msgid") or task_id))
