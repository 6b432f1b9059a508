"""Feishu callback bodies (already verified and decrypted) → the engine's neutral events.

Pure functions over dicts: no I/O, no clock, no aiohttp, so the webhook and the long connection
parse alike and the tests can feed captured payloads straight in. Mentions are decoded here, once
(at the edge, so the engine sees the same text on every platform): Feishu writes `@_user_1` placeholders in the text and lists who they are in
`message.mentions` (开放平台 → 接收消息 im.message.receive_v1); the bot's own mention is removed and
sets `to_bot`, every other one becomes `mention_marker(i)` with a `UserRef`. Our private-use marker
characters are stripped from the user's text first, so nobody can type a forged mention.

Shapes (Feishu's event schema 2.0: {schema, header: {event_id, event_type, create_time, token, …},
event}; approval's legacy schema 1.0: {uuid, token, ts, type: "event_callback", event: {type, …}};
the URL check: {challenge, token, type: "url_verification"}).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collabbot.adapters.kit.webhook import loads
from collabbot.bot.events import (
    CardActionEvent,
    ChatRef,
    MemberEvent,
    MessageEvent,
    UserRef,
    mention_marker,
    strip_markers,
)
from collabbot.bot.replies import CardAction

PLATFORM = "feishu"
MAX_TEXT = 8000
CHAT_DISBANDED = "im.chat.disbanded_v1"  # 群解散: every member, the bot included, is gone from the group
_PLACEHOLDER = re.compile(r"@_user_\d+")
OPEN_ID = re.compile(r"ou_[A-Za-z0-9_-]{1,64}")  # 用户身份概述: an open_id is "ou_" and letters/digits


class Malformed(ValueError):
    """A body that is not a Feishu callback we can read (answered 400)."""


@dataclass(frozen=True)
class Challenge:
    challenge: str


@dataclass(frozen=True)
class CardTap:
    """A card button tap; whether its chat is a group is decided by the caller (it knows our chats)."""

    event_id: str
    operator: UserRef
    value: str  # the packed CardAction, or "" when the button carried none of ours
    form: dict[str, str]
    message_id: str
    chat_id: str

    def event(self, is_group: bool) -> CardActionEvent:
        return CardActionEvent(event_id=self.event_id, chat=ChatRef(PLATFORM, self.chat_id, "", is_group),
                               sender=self.operator, value=self.value, form=self.form, message_id=self.message_id)


@dataclass(frozen=True)
class ApprovalInstance:
    """A Feishu approval instance changed status (审批实例状态变更)."""

    event_id: str
    approval_code: str
    instance_code: str
    status: str  # PENDING | APPROVED | REJECTED | CANCELED | DELETED | …
    template: str  # the linked CollabBot template, "" when the code is not linked


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class Callback:
    """One parsed body: its token (to check), its type, and what it means."""

    token: str
    event_type: str
    event_id: str
    sent_at: datetime | None  # when the user acted (a message's create_time), for the staleness check
    what: Challenge | MessageEvent | CardTap | MemberEvent | ApprovalInstance | Ignored


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{where} must be an object")
    return value


def _text(value: Any, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise Malformed(f"{where} must be a non-empty string")
    return value


def _millis(value: Any) -> datetime | None:
    """Feishu's millisecond timestamps arrive as strings (or numbers in some SDK models)."""
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def parse_callback(data: Any, bot_open_id: str, approvals: dict[str, str] | None = None) -> Callback:
    body = _dict(data, "body")
    if body.get("type") == "url_verification":
        return Callback(str(body.get("token", "")), "url_verification", "",
                        None, Challenge(_text(body.get("challenge"), "challenge")))
    if body.get("schema") == "2.0":
        header = _dict(body.get("header"), "header")
        event_type = _text(header.get("event_type"), "header.event_type")
        event_id = _text(header.get("event_id"), "header.event_id")
        token = str(header.get("token", ""))
        event = _dict(body.get("event"), "event")
        return _schema2(token, event_type, event_id, event, bot_open_id, approvals or {})
    if body.get("type") == "event_callback" and isinstance(body.get("event"), dict):
        # schema 1.0: still used by the approval instance event (审批 → 订阅审批事件)
        event = body["event"]
        event_type = str(event.get("type", ""))
        event_id = _text(body.get("uuid"), "uuid")
        token = str(body.get("token", ""))
        if event_type == "approval_instance":
            return Callback(token, event_type, event_id, None, _approval(event_id, event, approvals or {}))
        return Callback(token, event_type, event_id, None, Ignored(f"schema 1.0 event {event_type!r}"))
    raise Malformed("not a Feishu callback (no schema 2.0 header, no url_verification)")


def _schema2(token: str, event_type: str, event_id: str, event: dict[str, Any], bot_open_id: str,
             approvals: dict[str, str]) -> Callback:
    if event_type == "im.message.receive_v1":
        message = _dict(event.get("message"), "event.message")
        sent_at = _millis(message.get("create_time"))
        return Callback(token, event_type, event_id, sent_at, parse_message(event, bot_open_id))
    if event_type == "card.action.trigger":
        return Callback(token, event_type, event_id, None, parse_card_action(event_id, event))
    if event_type in ("im.chat.member.bot.added_v1", "im.chat.member.bot.deleted_v1", CHAT_DISBANDED):
        chat_id = _text(event.get("chat_id"), "event.chat_id")
        operator = _open_id(event.get("operator_id"))
        member = MemberEvent(event_id=event_id, chat=ChatRef(PLATFORM, chat_id, str(event.get("name") or "")[:200], True),
                             added=event_type.endswith("added_v1"), disbanded=event_type == CHAT_DISBANDED,
                             operator=UserRef(PLATFORM, operator) if operator else None)
        return Callback(token, event_type, event_id, None, member)
    if event_type == "approval.instance.status_changed_v4":
        return Callback(token, event_type, event_id, None, _approval(event_id, event, approvals))
    if event_type == "application.bot.menu_v6":
        return Callback(token, event_type, event_id, None, parse_menu(event_id, event))
    return Callback(token, event_type, event_id, None, Ignored(f"event type {event_type!r} is not used"))


def parse_menu(event_id: str, event: dict[str, Any]) -> MessageEvent | Ignored:
    """机器人自定义菜单事件 (application.bot.menu_v6): a tap on the bot's menu is the command named by the
    item's `event_key` (at most 30 characters, e.g. "我的任务", "/待我处理" or "help"), typed by the
    operator in a private chat with the bot; the answer reaches them privately."""
    operator = _dict(event.get("operator"), "event.operator")
    open_id = _open_id(operator.get("operator_id"))
    if not open_id:
        raise Malformed("event.operator.operator_id.open_id is missing")
    key = strip_markers(str(event.get("event_key") or "")).strip()[:30]
    if not key:
        return Ignored("a menu event without an event_key")
    name = str(operator.get("operator_name") or "")[:60]
    return MessageEvent(event_id=event_id, chat=ChatRef(PLATFORM, f"menu:{open_id}", "", is_group=False),
                        sender=UserRef(PLATFORM, open_id, name), text=key, to_bot=True)


def _open_id(user_id: Any) -> str:
    """A person's open_id, or "" when there is none or it is not shaped like one (`all`, say: an id that
    is not `ou_…` must never reach a mention)."""
    value = user_id.get("open_id") if isinstance(user_id, dict) else None
    return value if isinstance(value, str) and OPEN_ID.fullmatch(value) else ""


def _approval(event_id: str, event: dict[str, Any], approvals: dict[str, str]) -> ApprovalInstance | Ignored:
    code = str(event.get("approval_code") or "")
    if code not in approvals:
        return Ignored(f"approval {code!r} is not linked to a template ([feishu.approvals])")
    return ApprovalInstance(event_id, code, str(event.get("instance_code") or ""), str(event.get("status") or ""),
                            approvals[code])


# Feishu's instance statuses -> the engine's (approval_stages): CANCELED is the initiator's 撤回
NATIVE_STATUS = {"PENDING": "pending", "APPROVED": "approved", "REJECTED": "rejected", "CANCELED": "withdrawn",
                 "DELETED": "cancelled"}


def approval_form(form: Any) -> dict[str, str]:
    """An instance's `form` (a JSON string of widgets {id, name, type, value}) as field name -> text.
    Values that are not plain (attachments, tables) are left out; a malformed form gives {}."""
    try:
        widgets = loads(form) if isinstance(form, str) else form
    except ValueError:
        return {}
    values: dict[str, str] = {}
    for widget in widgets if isinstance(widgets, list) else []:
        if not isinstance(widget, dict) or not isinstance(widget.get("name"), str):
            continue
        value = widget.get("value")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            continue
        values[widget["name"].strip()[:100]] = str(value)[:2000]
    return values


def message_text(message_type: str, content: str) -> str | None:
    """The plain text of a text or rich-text (post) message, placeholders kept; None for other kinds."""
    try:
        data = loads(content)
    except (TypeError, ValueError):
        raise Malformed("message.content is not JSON") from None
    if not isinstance(data, dict):
        raise Malformed("message.content is not an object")
    if message_type == "text":
        text = data.get("text")
        return text if isinstance(text, str) else None
    if message_type == "post":
        # 富文本: {"title": …, "content": [[{"tag": "text", "text": …}, {"tag": "at", "user_id": "@_user_1"}, …], …]}
        lines = [data["title"]] if isinstance(data.get("title"), str) and data["title"] else []
        paragraphs = data.get("content") or []
        if not isinstance(paragraphs, list):
            raise Malformed("a post's content is not a list of paragraphs")
        for paragraph in paragraphs:
            if not isinstance(paragraph, list):
                continue
            words = []
            for node in paragraph:
                if not isinstance(node, dict):
                    continue
                if node.get("tag") == "at":
                    words.append(f" {node.get('user_id', '')} ")
                elif node.get("tag") in ("text", "a", "md"):
                    words.append(str(node.get("text", "")))
            lines.append("".join(words))
        return "\n".join(lines)
    return None


def parse_message(event: dict[str, Any], bot_open_id: str) -> MessageEvent | Ignored:
    """A text or post message → MessageEvent, its event id being Feishu's message id.

    Feishu may deliver the same message again under a new event_id (开放平台 → 事件订阅 → 常见问题:
    "重复推送"), so the message id is the event id the engine deduplicates on.
    """
    sender = _dict(event.get("sender"), "event.sender")
    if sender.get("sender_type") != "user":
        return Ignored("not sent by a person")
    sender_id = _open_id(sender.get("sender_id"))
    if not sender_id:
        raise Malformed("event.sender.sender_id.open_id is missing")
    message = _dict(event.get("message"), "event.message")
    message_id = _text(message.get("message_id"), "message.message_id")
    chat_id = _text(message.get("chat_id"), "message.chat_id")
    chat_type = str(message.get("chat_type") or "")
    text = message_text(str(message.get("message_type") or ""), _text(message.get("content"), "message.content"))
    if text is None:
        return Ignored(f"message type {message.get('message_type')!r} carries no command")
    text = strip_markers(text[:MAX_TEXT])
    mentions = message.get("mentions") if isinstance(message.get("mentions"), list) else []
    by_key = {m["key"]: m for m in mentions if isinstance(m, dict) and isinstance(m.get("key"), str)}
    refs: list[UserRef] = []
    index_of: dict[str, int] = {}
    to_bot = chat_type == "p2p"

    def replace(match: re.Match[str]) -> str:
        nonlocal to_bot
        key = match.group(0)
        mention = by_key.get(key)
        open_id = _open_id(mention.get("id")) if mention else ""
        if not open_id:
            return key  # not a person we can resolve (e.g. a user outside the tenant): keep the text
        if open_id == bot_open_id or (not bot_open_id and mention.get("mentioned_type") == "bot"):
            to_bot = True
            return " "
        if key not in index_of:
            refs.append(UserRef(PLATFORM, open_id, str(mention.get("name") or "")[:60]))
            index_of[key] = len(refs) - 1
        return f" {mention_marker(index_of[key])} "

    text = _PLACEHOLDER.sub(replace, text)
    chat = ChatRef(PLATFORM, chat_id, "", is_group=chat_type != "p2p")
    return MessageEvent(event_id=message_id, chat=chat, sender=UserRef(PLATFORM, sender_id), text=text.strip(),
                        mentions=tuple(refs), to_bot=to_bot)


def packed_action(value: Any) -> str:
    """Our packed CardAction from a button's callback value (a string, or any string inside an object)."""
    candidates = [value] if isinstance(value, str) else list(value.values()) if isinstance(value, dict) else []
    return next((c for c in candidates if isinstance(c, str) and CardAction.unpack(c) is not None), "")


def parse_card_action(event_id: str, event: dict[str, Any]) -> CardTap:
    """card.action.trigger (卡片回传交互): operator, action.value, action.form_value, context."""
    operator = _open_id(event.get("operator"))
    if not operator:
        raise Malformed("event.operator.open_id is missing")
    action = _dict(event.get("action"), "event.action")
    context = event.get("context") if isinstance(event.get("context"), dict) else {}
    form_raw = action.get("form_value") if isinstance(action.get("form_value"), dict) else {}
    form = {str(k)[:100]: str(v)[:2000] for k, v in form_raw.items() if isinstance(v, str | int | float)}
    return CardTap(event_id=event_id, operator=UserRef(PLATFORM, operator), value=packed_action(action.get("value")),
                   form=form, message_id=str(context.get("open_message_id") or ""),
                   chat_id=str(context.get("open_chat_id") or ""))
