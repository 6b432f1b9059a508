"""What every platform's templates see, shared: the `CardView` (a card with every string escaped by
`cards/escape.py` and cut to the platform's `Caps`), the message text with real mentions, and the
Jinja2 environment that finds `cards/<platform>/<kind>.j2`.

Templates receive a `CardView` whose every string is already escaped for that platform and
shortened, and they emit JSON, putting each string through `tojson`: cards are built as data, so no
user text can break out of its slot. A card's meaning (title, fields, buttons and their packed
`CardAction`s) comes from `bot/`; which platform field shows what is decided in the templates.

Real mentions (`At`) are the one thing not escaped: each platform builds them in its own syntax,
through `text_of`, from a platform user id that must look like one (`real_id`), never from text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, TemplateNotFound, select_autoescape

from collabbot.bot.replies import At, Card, CardAction, Message
from collabbot.cards import escape
from collabbot.cards.caps import Caps

COLORS = ("blue", "green", "orange", "red", "grey")
STYLES = ("default", "primary", "danger")
MAX_MENTIONS = 20
MAX_BARS = 30  # a chart's bars: one per department

_KIND = re.compile(r"[a-z][a-z0-9_]{0,30}")
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
_PLATFORM_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
EVERYONE = {"all", "everyone", "here", "所有人"}  # ids the platforms read as "everyone": never a mention

Escaper = Callable[..., str]


@dataclass(frozen=True)
class Renderer:
    """One platform's two doors: a whole message for its send API, and a card alone (an update in
    place, the answer to a tap). `copy_id` tells apart sent copies where the platform needs it."""

    message: RenderMessage
    card: RenderCard


class RenderMessage(Protocol):
    def __call__(self, message: Message, *, copy_id: str = "") -> dict[str, Any]: ...


class RenderCard(Protocol):
    def __call__(self, card: Card, *, copy_id: str = "") -> dict[str, Any]: ...


class Fields(tuple[tuple[str, str], ...]):
    """A card's (name, value) fields, carrying the colon of the card's language for the templates' `colon`
    filter (the templates hand it the fields alone)."""

    colon: str

    def __new__(cls, fields: tuple[tuple[str, str], ...], colon: str) -> Fields:
        made = super().__new__(cls, fields)
        made.colon = colon
        return made


def colon(fields: Any) -> str:
    """The colon between a field's name and its value: "负责人：李四" on a card written in Chinese,
    "Owner: 李四" on one written in English, whatever language the names in it are (see `card_colon`)."""
    if isinstance(fields, Fields):
        return fields.colon
    names = [name for name, _ in fields if name]
    return ": " if names and not any(_CJK.search(name) for name in names) else "："


def card_colon(card: Card) -> str:
    """The colon of `card`'s language, which its title tells: every title begins with the bot's own words
    ("任务 #1 …", "Task #1 …", "收集 #C1 …"), while a field's name may be data in either language (an English
    card's "市场部 张三", a Chinese card's "#4 Ad plan"). A title without a letter: its field names decide."""
    first = next((ch for ch in str(card.title) if ch.isalpha()), "")
    if not first:
        return colon(card.fields)
    return "：" if _CJK.match(first) else ": "


@cache
def environment() -> Environment:
    """One Jinja2 environment for all templates: strict (a missing slot is an error, not a blank)."""
    env = Environment(
        loader=PackageLoader("collabbot.cards", ""),
        autoescape=select_autoescape(enabled_extensions=(), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["colon"] = colon
    return env


def template(platform: str, kind: str) -> Template:
    """`cards/<platform>/<kind>.j2`, falling back to `cards/<platform>/card.j2`: a kind gets its own
    template only where its look differs (the weekly summary)."""
    env = environment()
    try:
        return env.get_template(f"{platform}/{kind}.j2")
    except TemplateNotFound:
        return env.get_template(f"{platform}/card.j2")


def render(platform: str, kind: str, **data: Any) -> str:
    """A template rendered with `data` as it is (the console's text form takes `render_text`)."""
    return template(platform, kind).render(kind=kind, **data)


def render_json(platform: str, view: CardView, **extra: Any) -> Any:
    """A JSON template rendered for `view` and parsed back: what the platform's API will get."""
    return json.loads(template(platform, view.kind).render(view=view, **extra))


@dataclass(frozen=True)
class ButtonView:
    label: str
    value: str  # the packed CardAction, checked
    style: str  # default | primary | danger


@dataclass(frozen=True)
class CardView:
    """A card with every string escaped and shortened for one platform."""

    kind: str
    key: str
    title: str
    status: str
    color: str
    fields: tuple[tuple[str, str], ...]
    more_fields: int  # fields left out for want of room
    history: tuple[str, ...]  # the latest lines, oldest first
    more_history: int
    note: str
    buttons: tuple[ButtonView, ...]
    text: str = ""  # the message's own text parts, mentions in the platform's card syntax
    task_id: str = ""  # WeCom only
    chart: tuple[tuple[str, int], ...] = ()  # bars (label, 0-100): Feishu draws them as a chart element


def _button_views(card: Card, esc: Escaper, caps: Caps) -> tuple[ButtonView, ...]:
    out: list[ButtonView] = []
    seen: set[str] = set()
    for b in card.buttons:
        if not isinstance(b.value, str) or CardAction.unpack(b.value) is None:
            raise ValueError(f"button {b.label!r} of {card.key!r} does not carry a packed CardAction")
        if b.value in seen:  # WeCom wants unique keys, and two buttons doing one thing help nobody
            continue
        seen.add(b.value)
        label = esc(b.label, caps.label, oneline=True) or "…"
        out.append(ButtonView(label, b.value, b.style if b.style in STYLES else "default"))
    return tuple(out[: caps.buttons])


def card_view(card: Card, esc: Escaper, caps: Caps, *, text: str = "", task_id: str = "") -> CardView:
    """What a template gets of `card`: escaped by `esc`, cut to `caps`."""
    raw_fields = [(n, v) for n, v in card.fields if str(n).strip() or str(v).strip()]
    fields = Fields(tuple((esc(n, caps.field_name, oneline=True), esc(v, caps.field_value, max_lines=20))
                          for n, v in raw_fields[: caps.fields]), card_colon(card))
    raw_history = [line for line in card.history if str(line).strip()]
    kept = raw_history[-caps.history:]
    history = tuple(esc(line, caps.history_line, oneline=True) for line in kept)
    return CardView(
        kind=card.kind if _KIND.fullmatch(card.kind or "") else "card",
        key=card.key,
        title=esc(card.title, caps.title, oneline=True) or "…",
        status=esc(card.status, caps.status, oneline=True),
        color=card.color if card.color in COLORS else "blue",
        fields=fields,
        more_fields=len(raw_fields) - len(fields),
        history=history,
        more_history=len(raw_history) - len(kept),
        note=esc(card.note, caps.note, max_lines=10),
        buttons=_button_views(card, esc, caps),
        text=text,
        task_id=task_id,
        chart=tuple((esc(label, caps.field_name, oneline=True) or "-", max(0, min(100, int(value))))
                    for label, value in card.chart[:MAX_BARS]),
    )


def real_id(at: At) -> str | None:
    """The platform id of a mention when it looks like one (anything else is shown as a name, inert)."""
    pid = at.platform_user_id
    if not isinstance(pid, str) or not _PLATFORM_ID.fullmatch(pid) or pid.lstrip("@").lower() in EVERYONE:
        return None
    return pid


def text_of(parts: tuple[Any, ...], esc: Escaper, limit: int, mention: Callable[[str, str], str],
            name_limit: int = 32) -> tuple[str, list[At]]:
    """The message's text: its str parts escaped (at most `limit` characters of them, "…" when cut),
    its `At`s as real mentions by `mention(platform_id, escaped_name)`; and the mentioned `At`s."""
    out: list[str] = []
    mentioned: list[At] = []
    left = limit
    for part in parts:
        if isinstance(part, At):
            name = esc(part.name, name_limit, oneline=True)
            pid = real_id(part)
            if pid is not None and len(mentioned) < MAX_MENTIONS:
                out.append(mention(pid, name))
                mentioned.append(part)
            else:
                out.append(esc("@" + (part.name or ""), name_limit + 1, oneline=True))
            continue
        if left <= 0:
            continue
        piece = esc(part, left, strip=False, max_lines=60)
        out.append(piece)
        left -= len(piece)
        if piece.endswith(escape.ELLIPSIS) and not str(part).rstrip().endswith(escape.ELLIPSIS):
            left = 0  # cut here: nothing after the "…"
    return "".join(out).strip(), mentioned
