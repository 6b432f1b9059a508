"""DingTalk payloads (a Stream frame's `data`, or an HTTP callback's body) → the engine's neutral events.

Pure functions over dicts, so Stream and HTTP mode parse alike and tests feed documented samples in.

Robot messages (机器人接收消息, topic `/v1.0/im/bot/messages/get`): `msgId`, `conversationId`,
`conversationType` ("1" private, "2" group), `senderStaffId`, `createAt` (ms), `msgtype` (text,
richText, picture, …), `isInAtList`, `atUsers` [{dingtalkId, staffId}], `chatbotUserId`,
`sessionWebhook` + `sessionWebhookExpiredTime`. In a group only a message that @mentions the robot
(`isInAtList`) is addressed to it. The text names the people it mentions as "@<nick>": those tokens
are matched in order with `atUsers` (the robot's own entry, and its token if DingTalk left one,
removed) and become markers with a `UserRef` by staffId. People are keyed by `staffId` (the userId
the send, card and contact APIs take); a sender without one (outside the organisation) is ignored.

Card callbacks (topic `/v1.0/card/instances/callback`): `outTrackId` (the card instance, which is
our message id), `userId`, `content` = JSON {cardPrivateData: {actionIds, params: {action}}},
`spaceType` / `spaceId` where the card was tapped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collabbot.bot.events import CardActionEvent, ChatRef, MessageEvent, UserRef, mention_marker, strip_markers
from collabbot.bot.replies import CardAction

PLATFORM = "dingtalk"
MAX_TEXT = 8000
GROUP, PRIVATE = "2", "1"
_MENTION = re.compile(r"(?:(?<=\s)|^)@[^\s@]{1,64}")


class Malformed(ValueError):
    """A payload that is not a DingTalk message or callback we can read."""


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class SessionWebhook:
    """Where a reply to a message may go, with real @mentions, until `expires_at` (checked when used)."""

    conversation_id: str
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class Incoming:
    """A robot message: the event (or why it is ignored), when it was typed, and its session webhook."""

    what: MessageEvent | Ignored
    sent_at: datetime | None
    webhook: SessionWebhook | None


@dataclass(frozen=True)
class CardTap:
    event_id: str
    operator: UserRef
    value: str
    form: dict[str, str]
    out_track_id: str
    space_id: str
    is_group: bool

    def event(self) -> CardActionEvent:
        return CardActionEvent(event_id=self.event_id, chat=ChatRef(PLATFORM, self.space_id, "", self.is_group),
                               sender=self.operator, value=self.value, form=self.form, message_id=self.out_track_id)


def _millis(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def message_text(data: dict[str, Any]) -> str | None:
    """The plain text of a text or richText message; None for kinds that carry no command."""
    kind = data.get("msgtype")
    if kind == "text":
        text = data.get("text")
        content = text.get("content") if isinstance(text, dict) else None
        return content if isinstance(content, str) else None
    if kind == "richText":
        content = data.get("content")
        rich = content.get("richText") if isinstance(content, dict) else None
        if not isinstance(rich, list):
            return None
        return "".join(str(node.get("text", "")) for node in rich if isinstance(node, dict) and "text" in node)
    return None


def parse_message(data: Any) -> Incoming:
    if not isinstance(data, dict):
        raise Malformed("the message must be an object")
    msg_id = _str(data, "msgId")
    conversation = _str(data, "conversationId")
    kind = _str(data, "conversationType")
    if not msg_id or not conversation or kind not in (GROUP, PRIVATE):
        raise Malformed("msgId, conversationId and conversationType are required")
    sent_at = _millis(data.get("createAt"))
    webhook = None
    url, expires = _str(data, "sessionWebhook"), _millis(data.get("sessionWebhookExpiredTime"))
    if url and expires is not None:
        webhook = SessionWebhook(conversation, url, expires)
    sender = _str(data, "senderStaffId")
    if not sender:
        return Incoming(Ignored("the sender has no staffId (outside the organisation)"), sent_at, None)
    is_group = kind == GROUP
    if is_group and data.get("isInAtList") is not True:
        return Incoming(Ignored("a group message that does not @mention the robot"), sent_at, None)
    text = message_text(data)
    if text is None:
        return Incoming(Ignored(f"message type {str(data.get('msgtype'))[:40]!r} carries no command"), sent_at, None)
    text, refs = decode_mentions(strip_markers(text[:MAX_TEXT]), data.get("atUsers"), _str(data, "chatbotUserId"))
    chat = ChatRef(PLATFORM, conversation, _str(data, "conversationTitle")[:200], is_group)
    event = MessageEvent(event_id=msg_id, chat=chat, sender=UserRef(PLATFORM, sender, _str(data, "senderNick")[:60]),
                         text=text.strip(), mentions=refs, to_bot=True)
    return Incoming(event, sent_at, webhook)


def decode_mentions(text: str, at_users: Any, robot_id: str) -> tuple[str, tuple[UserRef, ...]]:
    """"@nick" tokens → markers, matched in order with `atUsers` (staffId known). The robot's entry is
    dropped, and so is its token when the text kept one (see below). Tokens beyond
    what the list explains (an "@" typed as text) stay text."""
    users = [u for u in at_users if isinstance(u, dict)] if isinstance(at_users, list) else []
    tokens = list(_MENTION.finditer(text))
    robot_at = [i for i, u in enumerate(users) if robot_id and _str(u, "dingtalkId") == robot_id]
    people = [u for i, u in enumerate(users) if i not in robot_at]
    # DingTalk removes the robot's own "@name" from the text; should one remain (as many tokens as entries,
    # the robot first, its token leading the text) it is dropped — an "@" typed mid-text never is
    leading = bool(tokens) and not text[:tokens[0].start()].strip()
    drop = {tokens[0].start()} if robot_at == [0] and len(tokens) == len(users) and leading else set()
    refs: list[UserRef] = []
    index_of: dict[str, int] = {}
    out, last, n = [], 0, 0
    for token in tokens:
        out.append(text[last:token.start()])
        last = token.end()
        if token.start() in drop:
            out.append(" ")
            continue
        user = people[n] if n < len(people) else None
        n += 1
        staff = _str(user, "staffId") if user else ""
        if not staff:
            out.append(token.group(0))  # not a person we can address (no staffId): keep the text
            continue
        if staff not in index_of:
            index_of[staff] = len(refs)
            refs.append(UserRef(PLATFORM, staff, token.group(0)[1:61]))
        out.append(f" {mention_marker(index_of[staff])} ")
    out.append(text[last:])
    return "".join(out), tuple(refs)


def packed_action(params: Any) -> str:
    candidates = list(params.values()) if isinstance(params, dict) else [params]
    return next((c for c in candidates if isinstance(c, str) and CardAction.unpack(c) is not None), "")


def parse_card_callback(event_id: str, data: Any) -> CardTap:
    if not isinstance(data, dict):
        raise Malformed("the card callback must be an object")
    user, track = _str(data, "userId"), _str(data, "outTrackId")
    if not user or not track:
        raise Malformed("userId and outTrackId are required")
    content: Any = data.get("content")
    if isinstance(content, str):
        try:
            content = json.loads(content) if content else {}
        except ValueError:
            raise Malformed("content is not JSON") from None
    private = content.get("cardPrivateData") if isinstance(content, dict) else None
    params = private.get("params") if isinstance(private, dict) else None
    params = params if isinstance(params, dict) else {}
    form = {str(k)[:100]: str(v)[:2000] for k, v in params.items()
            if isinstance(v, str | int | float) and not isinstance(v, bool) and k != "action"}
    space_type = _str(data, "spaceType").upper()
    return CardTap(event_id=event_id, operator=UserRef(PLATFORM, user), value=packed_action(params), form=form,
                   out_track_id=track, space_id=_str(data, "spaceId"), is_group="GROUP" in space_type)
