"""Turns the engine's neutral `Message` and `Card` into what one platform's API takes.

Each platform's rendering sits beside its templates, in `cards/<platform>/render.py`; what they share
lives once: escaping (`cards/escape.py`), size caps and the shrink-until-it-fits loop
(`cards/caps.py`), and the view the templates see (`cards/view.py`). Here are only the doors and the
dict they dispatch through: adding a platform is one new folder and one entry in `RENDERERS`.

`render_text(card)` is the console's plain-text form (`cards/text/`).
"""

from __future__ import annotations

from typing import Any

from collabbot.bot.replies import Card, Message
from collabbot.cards.dingtalk import render as dingtalk
from collabbot.cards.feishu import render as feishu
from collabbot.cards.feishu.render import feishu_elements
from collabbot.cards.text.render import render_text
from collabbot.cards.view import Renderer, render
from collabbot.cards.wecom import render as wecom
from collabbot.cards.wecom.render import wecom_task_id

RENDERERS: dict[str, Renderer] = {
    "feishu": feishu.RENDERER,
    "dingtalk": dingtalk.RENDERER,
    "wecom": wecom.RENDERER,
}
PLATFORMS = tuple(RENDERERS)

__all__ = ["PLATFORMS", "RENDERERS", "Renderer", "feishu_elements", "render", "render_card", "render_message",
           "render_text", "renderer", "wecom_task_id"]


def renderer(platform: str) -> Renderer:
    """The platform's renderer, or a clear refusal for a platform without card templates."""
    try:
        return RENDERERS[platform]
    except KeyError:
        raise ValueError(f"no card templates for platform {platform!r}") from None


def render_message(platform: str, message: Message, *, copy_id: str = "") -> dict[str, Any]:
    """What one platform's send API takes for `message` (the shapes: each `cards/<platform>/render.py`).

    `copy_id` tells apart several sent copies of one card where the platform needs unique ids (WeCom).
    """
    return renderer(platform).message(message, copy_id=copy_id)


def render_card(platform: str, card: Card, *, copy_id: str = "") -> dict[str, Any]:
    """The card alone: Feishu's card JSON, DingTalk's cardParamMap, WeCom's template_card (for an
    update in place, e.g. the answer to a tap)."""
    return renderer(platform).card(card, copy_id=copy_id)
