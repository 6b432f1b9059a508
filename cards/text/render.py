"""The console's text form of a card (`cards/text/card.j2`): a terminal shows long text well, but
every slot stays on its line, and user strings are escaped too (no control characters, no forged
lines)."""

from __future__ import annotations

from collabbot.bot.replies import Card
from collabbot.cards import escape
from collabbot.cards.caps import Caps
from collabbot.cards.view import card_view, render

TEXT_CAPS = Caps(title=200, status=20, field_name=40, field_value=2_000, fields=100, history_line=300, history=50,
                 note=1_000, text=2_000, label=40, buttons=20)


def render_text(card: Card) -> str:
    """The console's text form of a card, every user string on its own line."""
    return render("text", card.kind, card=card_view(card, escape.text, TEXT_CAPS))
