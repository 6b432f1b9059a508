"""DingTalk: `{"msgKey": "sampleText", "msgParam": "<JSON>", "at": {...}}` for a text message, or
`{"cardParamMap": {...}, "atUserIds": {userId: name}}` for a card (createAndDeliver).

Limits (createAndDeliver): cardParamMap values are strings, a key at most 100 bytes, a value at most
1 KB; the generic template has six button slots and four body blocks.
"""

from __future__ import annotations

import json
from typing import Any

from collabbot.bot.replies import At, Card, Message
from collabbot.cards import escape
from collabbot.cards.caps import Caps, fit, utf8_len
from collabbot.cards.view import Renderer, card_view, real_id, render_json, text_of

PLATFORM = "dingtalk"
DINGTALK_VALUE_BYTES = 1_000
DINGTALK_KEY_BYTES = 100
DINGTALK_BUTTON_SLOTS = 6
DINGTALK_BODY_BLOCKS = 4
DINGTALK_TEXT_BYTES = 4_000  # our ceiling for a robot text message
DINGTALK_CAPS = Caps(title=60, status=16, field_name=30, field_value=280, fields=30, history_line=120, history=6,
                     note=300, text=300, label=20, buttons=DINGTALK_BUTTON_SLOTS)
DINGTALK_TEXT_CHARS = 1_200


def _spill(params: dict[str, str], key: str, blocks: int, limit: int) -> dict[str, str]:
    """`params[key]` split at line ends over key1…key<blocks>, each at most `limit` bytes; whatever
    is left over stays in the last block (and makes the map not fit, so the caps shrink)."""
    lines = params.pop(key).split("\n")
    out = [""] * blocks
    i = 0
    for line in lines:
        candidate = line if not out[i] else out[i] + "\n" + line
        if len(candidate.encode()) > limit and out[i] and i + 1 < blocks:
            i += 1
            candidate = line
        out[i] = candidate
    for n, value in enumerate(out, 1):
        params[f"{key}{n}"] = value
    return params


def _fits(params: dict[str, Any]) -> bool:
    return all(isinstance(k, str) and len(k.encode()) <= DINGTALK_KEY_BYTES and isinstance(v, str)
               and len(v.encode()) <= DINGTALK_VALUE_BYTES for k, v in params.items())


def _card(card: Card, parts: tuple[Any, ...] = ()) -> tuple[dict[str, str], list[At]]:
    mentioned: list[At] = []

    def build(scale: float) -> dict[str, str]:
        caps = DINGTALK_CAPS.scaled(scale)
        text, mentioned[:] = text_of(parts, escape.dingtalk, caps.text, lambda pid, name: f"@{name}", caps.name)
        params = render_json(PLATFORM, card_view(card, escape.dingtalk, caps, text=text),
                             slots=DINGTALK_BUTTON_SLOTS)
        return _spill(params, "body", DINGTALK_BODY_BLOCKS, DINGTALK_VALUE_BYTES)

    params = fit(build, _fits, f"card {card.key}")
    return params, mentioned


def render_message(message: Message, *, copy_id: str = "") -> dict[str, Any]:
    """A robot text message, or a card's parameter map with the people it mentions."""
    if message.card is not None:
        params, mentioned = _card(message.card, message.parts)
        # createAndDeliver's imGroupOpenDeliverModel.atUserIds: {userId: name}
        at_ids = {pid: escape.dingtalk(a.name, 32, oneline=True) for a in mentioned if (pid := real_id(a))}
        return {"cardParamMap": params, "atUserIds": at_ids}

    return text_message(message)


def text_message(message: Message, *, real_mentions: bool = True) -> dict[str, Any]:
    """A robot text message. A robot send cannot mention anyone; through a sessionWebhook "@<userId>"
    in the text together with at.atUserIds does, and isAtAll stays false whatever the text says.
    `real_mentions=False` (a send that cannot mention) writes "@name" instead of the id."""

    def build(scale: float) -> dict[str, Any]:
        text, mentioned = text_of(message.parts, escape.dingtalk, int(DINGTALK_TEXT_CHARS * scale),
                                  (lambda pid, name: f"@{pid}") if real_mentions else (lambda pid, name: f"@{name}"))
        ids = list(dict.fromkeys(pid for a in mentioned if (pid := real_id(a))))
        return {"msgKey": "sampleText", "msgParam": json.dumps({"content": text or "…"}, ensure_ascii=False),
                "at": {"atUserIds": ids, "isAtAll": False}}

    return fit(build, lambda m: utf8_len(m["msgParam"]) <= DINGTALK_TEXT_BYTES, "text message")


def render_card(card: Card, *, copy_id: str = "") -> dict[str, Any]:
    """The cardParamMap alone (an update in place)."""
    return _card(card)[0]


RENDERER = Renderer(message=render_message, card=render_card)
