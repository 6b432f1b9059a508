"""WeCom callbacks (already authenticated and decrypted) → the engine's neutral events.

Pure functions: no I/O, no clock, so the long connection, the robot's URL callback and the app's
callback all parse alike and tests feed documented shapes straight in.

* The robot (智能机器人) sends JSON, the same body over the long connection (`aibot_msg_callback` /
  `aibot_event_callback` frames' `body`) and in its URL callback: `msgid`, `aibotid`, `chatid`,
  `chattype` ("group" / "single"), `from.userid`, `msgtype` and its content (`text.content`,
  `mixed.msg_item`, `voice.content`), or `msgtype: "event"` with `event.eventtype`
  (`template_card_event` {card_type, event_key, task_id}, `enter_chat`, `feedback_event`,
  `disconnected_event`).
* The app (自建应用) sends XML: `ToUserName`, `FromUserName`, `CreateTime`, `MsgType`, `Content`,
  `MsgId`, `AgentID`; events carry `Event` (`enter_agent`, `template_card_event` with `EventKey`,
  `TaskId`, `CardType`, `ResponseCode`).

A group message still holds the "@机器人名" text: it is removed. WeCom names the other people a
message @mentions only by their display name, so "@李四" is turned into a mention marker when the
name is one person's in the contact directory (`directory`: name → userid, read by the app); an
unknown or ambiguous name stays text, and the engine answers it as an unknown person.

Dedupe keys: `msgid` for robot messages, `MsgId` for app messages; app events have none, so theirs is
sender + create time (+ the card's task id and key for taps).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collabbot.bot.events import CardActionEvent, ChatRef, MessageEvent, UserRef, mention_marker, strip_markers

PLATFORM = "wecom"
MAX_TEXT = 8000
_AT = re.compile(r"@([^\s@]{1,40})")
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


class Malformed(ValueError):
    """A body that is not a WeCom callback we can read."""


@dataclass(frozen=True)
class Tap:
    """A template card button tapped: the neutral event, and what answering it needs."""

    event: CardActionEvent
    task_id: str
    response_code: str = ""  # the app's: update the card with it (72 h, once)


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class Disconnected:
    """The robot's `disconnected_event`: another connection subscribed with our bot id."""


@dataclass(frozen=True)
class Parsed:
    what: MessageEvent | Tap | Ignored | Disconnected
    sent_at: datetime | None = None


def robot_message_id(chat_id: str, task_id: str) -> str:
    """How a robot card is known to the engine: the chat it is in and its task_id (what a tap names)."""
    return f"robot|{chat_id}|{task_id}"


def app_message_id(userid: str, task_id: str) -> str:
    return f"app|{userid}|{task_id}"


def split_message_id(message_id: str) -> tuple[str, str, str]:
    """(kind, chat or user id, task_id) of a card's message id; ValueError for anything else."""
    kind, _, rest = message_id.partition("|")
    target, _, task_id = rest.rpartition("|")
    if kind not in ("robot", "app") or not target or not task_id:
        raise ValueError(f"not a WeCom card id: {message_id[:80]!r}")
    return kind, target, task_id


def _str(value: Any, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (required and not value):
        raise Malformed(f"{where} must be a non-empty string")
    return value[:400]


def _seconds(value: Any) -> datetime | None:
    try:
        seconds = int(value)
        # some robot bodies carry milliseconds
        return datetime.fromtimestamp(seconds / 1000 if seconds > 10**11 else seconds, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def clean(text: str) -> str:
    """User text as the engine may read it: no forged markers, no invisible or bidi characters."""
    return _INVISIBLE.sub("", strip_markers(text))[:MAX_TEXT]


def mentions(text: str, directory: Mapping[str, str], bot_name: str = "", *,
             strip_leading: bool = False) -> tuple[str, tuple[UserRef, ...]]:
    """Remove the robot's own "@name", and turn "@名字" of a known person into a marker."""
    if bot_name:
        text = re.sub(r"@" + re.escape(bot_name) + r"(?=\s|$)", " ", text)
    elif strip_leading:
        # no name configured: in a group the robot only hears messages that @ it, so the first @word is it,
        # unless that word names a person in the directory
        m = re.match(r"\s*@(\S+)", text)
        if m and m.group(1) not in directory:
            text = text[m.end():]
    found: list[UserRef] = []

    def marker(m: re.Match[str]) -> str:
        word = m.group(1)
        # the longest known name at the start of the word ("@李四截止" typed without a space)
        for end in range(len(word), 0, -1):
            userid = directory.get(word[:end])
            if userid:
                found.append(UserRef(PLATFORM, userid, word[:end]))
                return mention_marker(len(found) - 1) + (" " + word[end:] if end < len(word) else "")
        return m.group(0)

    return _AT.sub(marker, text).strip(), tuple(found)


def parse_robot(body: Any, directory: Mapping[str, str] | None = None, bot_name: str = "") -> Parsed:
    if not isinstance(body, dict):
        raise Malformed("body must be an object")
    msgtype = _str(body.get("msgtype"), "msgtype")
    sender = body.get("from")
    userid = _str(sender.get("userid") if isinstance(sender, dict) else None, "from.userid")
    chattype = body.get("chattype") or "single"
    is_group = chattype == "group"
    chat_id = _str(body.get("chatid"), "chatid") if is_group else _str(body.get("chatid") or userid, "chatid")
    sent_at = _seconds(body.get("create_time"))  # events only: a message carries no send time, so a stale one is not told apart
    chat = ChatRef(PLATFORM, chat_id, "", is_group) if is_group else ChatRef(PLATFORM, userid, "", False)
    user = UserRef(PLATFORM, userid)
    if msgtype == "event":
        event = body.get("event")
        if not isinstance(event, dict):
            raise Malformed("event must be an object")
        kind = _str(event.get("eventtype"), "event.eventtype")
        if kind == "disconnected_event":
            return Parsed(Disconnected())
        if kind != "template_card_event":
            return Parsed(Ignored(f"robot event {kind[:40]} needs no answer"))
        # the tap's task_id and event_key, under `template_card_event` (as devices send it) or on the event
        # itself (as the official long-connection SDKs read it): either is taken
        card = event.get("template_card_event", event)
        if not isinstance(card, dict):
            raise Malformed("template_card_event must be an object")
        task_id = _str(card.get("task_id"), "task_id")
        key = _str(card.get("event_key"), "event_key", required=False)
        msgid = _str(body.get("msgid"), "msgid", required=False) or f"{userid}:{task_id}:{key}:{body.get('create_time')}"
        tap = CardActionEvent(f"robot:{msgid}", chat, user, key, {}, robot_message_id(chat.platform_chat_id, task_id))
        return Parsed(Tap(tap, task_id), sent_at)
    msgid = _str(body.get("msgid"), "msgid")
    if msgtype == "text":
        text = _str((body.get("text") or {}).get("content") if isinstance(body.get("text"), dict) else None,
                    "text.content", required=False)
    elif msgtype == "voice":  # WeCom transcribes voice messages for the robot
        text = _str((body.get("voice") or {}).get("content") if isinstance(body.get("voice"), dict) else None,
                    "voice.content", required=False)
    elif msgtype == "mixed":
        items = (body.get("mixed") or {}).get("msg_item") if isinstance(body.get("mixed"), dict) else None
        if not isinstance(items, list):
            raise Malformed("mixed.msg_item must be a list")
        text = " ".join(str(i["text"].get("content", "")) for i in items
                        if isinstance(i, dict) and i.get("msgtype") == "text" and isinstance(i.get("text"), dict))
    else:
        return Parsed(Ignored(f"robot {msgtype[:20]} messages carry no command"), sent_at)
    text, people = mentions(clean(text), directory or {}, bot_name, strip_leading=is_group)
    return Parsed(MessageEvent(f"robot:{msgid}", chat, user, text, people, True), sent_at)


def parse_app(doc: Mapping[str, Any], corp_id: str, agent_id: int,
              directory: Mapping[str, str] | None = None) -> Parsed:
    """The app's decrypted XML (already read into a dict)."""
    def field(name: str, required: bool = True) -> str:
        value = doc.get(name)
        return _str(value if isinstance(value, str) else None, name, required=required)

    if field("ToUserName") != corp_id:
        raise Malformed("ToUserName is not our CorpID")
    agent = field("AgentID", required=False)
    if agent and agent != str(agent_id):
        return Parsed(Ignored(f"a callback for another app ({agent[:20]})"))
    userid = field("FromUserName")
    created = field("CreateTime", required=False)
    sent_at = _seconds(created)
    user = UserRef(PLATFORM, userid)
    private = ChatRef(PLATFORM, userid, "", False)
    msgtype = field("MsgType")
    if msgtype == "event":
        event = field("Event")
        if event == "template_card_event":
            task_id, key = field("TaskId"), field("EventKey", required=False)
            tap = CardActionEvent(f"app:{userid}:{created}:{task_id}:{key}"[:200], private, user, key, {},
                                  app_message_id(userid, task_id))
            return Parsed(Tap(tap, task_id, field("ResponseCode", required=False)), sent_at)
        if event == "enter_agent":
            return Parsed(Ignored("enter_agent: the person opened the app; nothing to say until they write"), sent_at)
        return Parsed(Ignored(f"app event {event[:40]} needs no answer"), sent_at)
    if msgtype != "text":
        return Parsed(Ignored(f"app {msgtype[:20]} messages carry no command"), sent_at)
    text, people = mentions(clean(field("Content", required=False)), directory or {})
    return Parsed(MessageEvent(f"app:{field('MsgId')}", private, user, text, people, True), sent_at)
