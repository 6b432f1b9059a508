"""Platform-neutral inbound events: what an adapter hands to `Bot.handle`.

An event answers only: who, in which chat, what was said or tapped, and the platform's id for it
(for deduplication). Mentions are decoded once, at the edge: the adapter replaces each mention in
the text by a marker `MENTION_OPEN + index + MENTION_CLOSE` (private-use characters that the adapter
first strips from anything the user typed), and lists the people in `mentions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MENTION_OPEN = "\ue000"
MENTION_CLOSE = "\ue001"


def mention_marker(index: int) -> str:
    return f"{MENTION_OPEN}{index}{MENTION_CLOSE}"


def strip_markers(text: str) -> str:
    """Remove our private-use marker characters from user text, so nobody can forge a mention."""
    return text.replace(MENTION_OPEN, "").replace(MENTION_CLOSE, "")


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

    @property
    def platform(self) -> str:
        return self.chat.platform


@dataclass(frozen=True)
class MemberEvent:
    """The bot was added to or removed from a group."""

    event_id: str
    chat: ChatRef
    added: bool
    operator: UserRef | None = None

    @property
    def platform(self) -> str:
        return self.chat.platform


InboundEvent = MessageEvent | CardActionEvent | MemberEvent
