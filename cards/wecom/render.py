"""WeCom: `{"msgtype": "markdown", "markdown": {...}}`, or `{"msgtype": "template_card",
"template_card": {...}}` with a markdown `"prelude"` to send first when the text mentions someone.

Limits (template_card button_interaction): ≤ 6 rows, ≤ 6 buttons, key ≤ 1,024 bytes, task_id ≤ 128
bytes of [A-Za-z0-9_@-]; markdown content ≤ 2,048 bytes (the app's limit; the robot allows 4,096).
The card's own text limits are only "建议" in WeCom's documents: `WECOM_LIMITS` are our ceilings.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from collabbot.bot.replies import At, Card, Message
from collabbot.cards import escape
from collabbot.cards.caps import Caps, fit, utf8_len
from collabbot.cards.view import Renderer, card_view, real_id, render_json, text_of

PLATFORM = "wecom"
WECOM_LIMITS = {"card_bytes": 8_000, "sub_title_text": 512, "quote_text": 256, "markdown_bytes": 2_048}
WECOM_CAPS = Caps(title=50, status=44, field_name=10, field_value=40, fields=20, history_line=60, history=3,
                  note=120, text=200, label=20, buttons=6)
WECOM_TEXT_CHARS = 600
# a card with nothing to tap goes as markdown (2,048 bytes), where a template card's row shows 40
# characters and its sub_title 512: a weekly summary's lists would be cut mid-item
WECOM_MARKDOWN_CAPS = Caps(title=50, status=44, field_name=10, field_value=400, fields=20, history_line=60,
                           history=3, note=200, text=400, label=20, buttons=0)

_TASK_ID_CHARS = re.compile(r"[^A-Za-z0-9_@-]+")


def wecom_task_id(key: str, copy_id: str = "") -> str:
    """A template card's task_id from its card key: only [A-Za-z0-9_@-], at most 128 bytes, stable for
    one key (an update must repeat it) and distinct for distinct keys (a hash of the whole key);
    `copy_id` tells apart several sent copies of one card, since WeCom refuses a task_id twice."""
    base = _TASK_ID_CHARS.sub("_", key).strip("_")[:80] or "card"
    task_id = f"{base}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if copy_id:
        task_id += "-" + (_TASK_ID_CHARS.sub("_", copy_id).strip("_")[:30] or "0")
    return task_id[:128]


def _card_fits(card: dict[str, Any]) -> bool:
    return (utf8_len(card) <= WECOM_LIMITS["card_bytes"]
            and len(card.get("sub_title_text", "")) <= WECOM_LIMITS["sub_title_text"]
            and len(card.get("quote_area", {}).get("quote_text", "")) <= WECOM_LIMITS["quote_text"])


def _at(pid: str, name: str) -> str:
    return f"<@{pid}>"


def _card(card: Card, quote: tuple[Any, ...] = (), copy_id: str = "") -> dict[str, Any]:
    task_id = wecom_task_id(card.key, copy_id)

    def build(scale: float) -> dict[str, Any]:
        caps = WECOM_CAPS.scaled(scale)
        text, _ = text_of(quote, escape.wecom, caps.text, _at, caps.name)
        return render_json(PLATFORM, card_view(card, escape.wecom, caps, text=text, task_id=task_id))

    return fit(build, _card_fits, f"card {card.key}")


def _markdown(parts: tuple[Any, ...]) -> dict[str, Any]:
    def build(scale: float) -> dict[str, Any]:
        text, _ = text_of(parts, escape.wecom, int(WECOM_TEXT_CHARS * scale), _at)
        return {"msgtype": "markdown", "markdown": {"content": text or "…"}}

    return fit(build, lambda m: utf8_len(m["markdown"]["content"]) <= WECOM_LIMITS["markdown_bytes"],
               "markdown message")


def markdown_card(card: Card, parts: tuple[Any, ...] = ()) -> dict[str, Any]:
    """A card with nothing to tap as one markdown message: the words (real mentions), the title in bold,
    a line per field, the latest history, the note."""
    def build(scale: float) -> dict[str, Any]:
        caps = WECOM_MARKDOWN_CAPS.scaled(scale)
        text, _ = text_of(parts, escape.wecom, caps.text, _at, caps.name)
        view = card_view(card, escape.wecom, caps, text=text)
        lines = [view.text] if view.text else []
        lines.append(f"**{view.title}**" + (f"　{view.status}" if view.status else ""))
        lines += [f"**{name}**{view.fields.colon}{value}" if name else value for name, value in view.fields]
        lines += ["…"] if view.more_fields else []
        lines += [f"· {line}" for line in view.history]
        lines += [f"> {view.note}"] if view.note else []
        return {"msgtype": "markdown", "markdown": {"content": "\n".join(lines)}}

    return fit(build, lambda m: utf8_len(m["markdown"]["content"]) <= WECOM_LIMITS["markdown_bytes"],
               f"card {card.key}")


def render_message(message: Message, *, copy_id: str = "") -> dict[str, Any]:
    """Markdown (a card with nothing to tap too), or a template card (after a markdown prelude when the
    text mentions someone)."""
    if message.card is None:
        return _markdown(message.parts)
    if not message.card.buttons:
        return markdown_card(message.card, message.parts)
    if any(isinstance(p, At) and real_id(p) for p in message.parts):
        # a template card cannot mention anyone: the words with their <@userid> go first, as markdown
        return {"msgtype": "template_card", "template_card": _card(message.card, (), copy_id),
                "prelude": _markdown(message.parts)}
    return {"msgtype": "template_card", "template_card": _card(message.card, message.parts, copy_id)}


def render_card(card: Card, *, copy_id: str = "") -> dict[str, Any]:
    """The template_card alone (an update in place)."""
    return _card(card, (), copy_id)


RENDERER = Renderer(message=render_message, card=render_card)
