"""Platform-neutral inbound events: what an adapter hands to `Bot.handle`.

An event answers only: who, in which chat, what was said or tapped, and the platform's id for it
(for deduplication). Mentions are decoded once, at the edge: the adapter replaces each mention in
the text by a marker `MENTION_OPEN + index + MENTION_CLOSE` (private-use characters that the adapter
first strips from anything the user typed), and lists the people in `mentions`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from functools import cache
from typing import Any

MENTION_OPEN = "\ue000"
MENTION_CLOSE = "\ue001"


def mention_marker(index: int) -> str:
    return f"{MENTION_OPEN}{index}{MENTION_CLOSE}"


MARKER = re.compile(f"{MENTION_OPEN}(\\d{{1,6}}){MENTION_CLOSE}")
MAX_EVENT_ID = 200  # the receipts' column


def strip_markers(text: str) -> str:
    """Remove our private-use marker characters from user text, so nobody can forge a mention."""
    return text.replace(MENTION_OPEN, "").replace(MENTION_CLOSE, "")


def show_markers(text: str, names: list[str]) -> str:
    """User text as a person should see it quoted back: each marker as "@name", stray markers gone."""
    def name(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return f"@{names[i]}" if i < len(names) else ""

    return strip_markers(MARKER.sub(name, text))


@dataclass(frozen=True)
class UserRef:
    """A person as the platform names them."""

    platform: str
    platform_user_id: str
    name: str = ""


@dataclass(frozen=True)
class ChatRef:
    platform: str
    platform_chat_id: str
    name: str = ""
    is_group: bool = True


@dataclass(frozen=True)
class MessageEvent:
    event_id: str
    chat: ChatRef
    sender: UserRef
    text: str
    mentions: tuple[UserRef, ...] = ()
    to_bot: bool = True  # in a group: was the bot @mentioned? (private chats: always)

    @property
    def platform(self) -> str:
        return self.chat.platform


@dataclass(frozen=True)
class CardActionEvent:
    """A tap on a card button; `value` is the packed `CardAction` the button carried."""

    event_id: str
    chat: ChatRef
    sender: UserRef
    value: str
    form: dict[str, str] = field(default_factory=dict)
    message_id: str = ""  # the platform's id of the tapped message: the copy the callback's answer updates

    @property
    def platform(self) -> str:
        return self.chat.platform


@dataclass(frozen=True)
class MemberEvent:
    """The bot was added to or removed from a group, or the group was disbanded (`disbanded`, not `added`)."""

    event_id: str
    chat: ChatRef
    added: bool
    operator: UserRef | None = None
    disbanded: bool = False

    @property
    def platform(self) -> str:
        return self.chat.platform


@dataclass(frozen=True)
class ApprovalEvent:
    """A platform's own approval instance (its approval app decides, not our stages) changed, for a
    definition the config links to one of our templates. `status` is ours (pending, approved, rejected, withdrawn, cancelled); `values`
    are its form's fields by name; `chat` is a private pseudo-chat (nobody typed anything anywhere)."""

    event_id: str
    chat: ChatRef
    sender: UserRef  # the initiator
    external_id: str  # "<platform>:<instance code>", the same for every event of one instance
    template: str
    status: str
    values: dict[str, str] = field(default_factory=dict)

    @property
    def platform(self) -> str:
        return self.chat.platform


InboundEvent = MessageEvent | CardActionEvent | MemberEvent | ApprovalEvent


@cache
def _names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names (`fields` is slow, and this is on every callback's path)."""
    return tuple(f.name for f in fields(cls))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, tuple):
        return tuple(_clean(v) for v in value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{name: _clean(getattr(value, name)) for name in _names(type(value))})
    return value


def sanitized(event: InboundEvent) -> InboundEvent:
    """The event as the engine may store it: no U+0000 anywhere (PostgreSQL text cannot hold one, and
    no person means one), and an event id that fits its column: a longer one becomes a prefix plus its
    hash, so a retry of the same event still finds its receipt."""
    event = _clean(event)
    if len(event.event_id) > MAX_EVENT_ID:
        digest = hashlib.sha256(event.event_id.encode()).hexdigest()
        event = replace(event, event_id=f"{event.event_id[:MAX_EVENT_ID - 65]}:{digest}")
    return event


_KINDS: dict[str, type] = {"message": MessageEvent, "tap": CardActionEvent, "member": MemberEvent,
                           "approval": ApprovalEvent}


def _ref_json(ref: UserRef | ChatRef | None) -> dict[str, Any] | None:
    return None if ref is None else {name: getattr(ref, name) for name in _names(type(ref))}


def event_to_json(event: InboundEvent) -> dict[str, Any]:
    """The event as JSON, for the durable inbound queue (a restart resumes the event from its row)."""
    kind = next(k for k, cls in _KINDS.items() if isinstance(event, cls))
    data: dict[str, Any] = {"kind": kind}
    for name in _names(type(event)):
        value = getattr(event, name)
        if isinstance(value, UserRef | ChatRef):
            value = _ref_json(value)
        elif isinstance(value, tuple):
            value = [_ref_json(v) for v in value]
        data[name] = value
    return data


def event_from_json(data: dict[str, Any]) -> InboundEvent:
    """The inverse of `event_to_json`; ValueError for anything it did not write."""
    cls = _KINDS.get(data.get("kind", "")) if isinstance(data, dict) else None
    if cls is None:
        raise ValueError(f"not an inbound event: {str(data)[:80]!r}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "chat":
            value = ChatRef(**value)
        elif f.name in ("sender", "operator") and value is not None:
            value = UserRef(**value)
        elif f.name == "mentions":
            value = tuple(UserRef(**m) for m in value)
        values[f.name] = value
    return cls(**values)
