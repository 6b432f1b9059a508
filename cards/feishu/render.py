"""Feishu: `{"msg_type": "text" | "interactive", "content": {...}}` (the sender JSON-encodes it).

Limits (发送消息): card content at most 30 KB (code 230025), text 150 KB; a JSON 2.0 card holds at most
200 elements. We stop short of 30 KB: the content travels JSON-escaped inside the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collabbot.bot.replies import Card, Message
from collabbot.cards import escape
from collabbot.cards.caps import Caps, fit, utf8_len
from collabbot.cards.view import Renderer, card_view, render_json, text_of

PLATFORM = "feishu"
FEISHU_CARD_BYTES = 28_000
FEISHU_TEXT_BYTES = 140_000
FEISHU_MAX_ELEMENTS = 200
FEISHU_CAPS = Caps(title=100, status=16, field_name=40, field_value=1_000, fields=50, history_line=200,
                   history=10, note=500, text=3_000, label=30, buttons=20)
FEISHU_TEXT_CHARS = 5_000


def _text_at(pid: str, name: str) -> str:
    return f'<at user_id="{pid}">{name}</at>'


def _card_at(pid: str, name: str) -> str:
    return f"<at id={pid}></at>"


def feishu_elements(node: Any) -> Iterator[dict[str, Any]]:
    """Every component of a card body (nested ones too): what Feishu's 200-element limit counts."""
    if isinstance(node, dict):
        if "tag" in node:
            yield node
        for child in node.values():
            yield from feishu_elements(child)
    elif isinstance(node, list):
        for child in node:
            yield from feishu_elements(child)


def _card_fits(card: dict[str, Any]) -> bool:
    return (utf8_len(card) <= FEISHU_CARD_BYTES
            and sum(1 for _ in feishu_elements(card.get("body"))) <= FEISHU_MAX_ELEMENTS)


def _card(card: Card, parts: tuple[Any, ...] = ()) -> dict[str, Any]:
    def build(scale: float) -> dict[str, Any]:
        caps = FEISHU_CAPS.scaled(scale)
        text, _ = text_of(parts, escape.feishu, caps.text, _card_at, caps.name)
        return render_json(PLATFORM, card_view(card, escape.feishu, caps, text=text))

    return fit(build, _card_fits, f"card {card.key}")


def render_message(message: Message, *, copy_id: str = "") -> dict[str, Any]:
    """A text message, or an interactive card with the message's text on top."""
    if message.card is not None:
        return {"msg_type": "interactive", "content": _card(message.card, message.parts)}

    def build(scale: float) -> dict[str, Any]:
        text, _ = text_of(message.parts, escape.feishu, int(FEISHU_TEXT_CHARS * scale), _text_at)
        return {"msg_type": "text", "content": {"text": text or "…"}}

    return fit(build, lambda m: utf8_len(m["content"]) <= FEISHU_TEXT_BYTES, "text message")


def render_card(card: Card, *, copy_id: str = "") -> dict[str, Any]:
    """The card JSON alone (an update in place)."""
    return _card(card)


RENDERER = Renderer(message=render_message, card=render_card)
