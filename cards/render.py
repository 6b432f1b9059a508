"""Turns the engine's neutral `Message` and `Card` into what one platform's API takes, through Jinja2.

Templates live in `cards/<platform>/<kind>.j2`, falling back to `cards/<platform>/card.j2`; a kind
gets its own template only where its look differs (the weekly summary). They receive a `CardView`
whose every string is already escaped for that platform (`cards/escape.py`) and shortened, and they
emit JSON, putting each string through `tojson`: cards are built as data, so no user text can break
out of its slot. A card's meaning (title, fields, buttons and their packed `CardAction`s) comes from
`bot/`; which platform field shows what is decided in the templates.

Sizes are the renderer's job: each slot has a cap, and when the rendered whole is still too big for
the platform (Feishu: 30 KB per card and 200 elements; DingTalk: 1 KB per card parameter; WeCom: the
ceilings in `WECOM_LIMITS`) it renders again with every cap halved, so a long text is shortened with
"…" here instead of being refused by the platform.

Real mentions (`At`) are the one thing not escaped: they are built here, in each platform's syntax,
from a platform user id that must look like one, never from text.

`render(platform, kind, **data)` is the console's plain-text renderer (`cards/text/card.j2`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, TemplateNotFound, select_autoescape

from collabbot.bot.replies import At, Card, CardAction, Message
from collabbot.cards import escape

PLATFORMS = ("feishu", "dingtalk", "wecom")
COLORS = ("blue", "green", "orange", "red", "grey")
STYLES = ("default", "primary", "danger")
SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625)

# Feishu (发送消息): card content at most 30 KB (code 230025), text 150 KB; a JSON 2.0 card holds at
# most 200 elements. We stop short of 30 KB: the content travels JSON-escaped inside the request.
FEISHU_CARD_BYTES = 28_000
FEISHU_TEXT_BYTES = 140_000
FEISHU_MAX_ELEMENTS = 200
# DingTalk (createAndDeliver): cardParamMap values are strings, a key at most 100 bytes, a value at
# most 1 KB; the generic template has six button slots and four body blocks.
DINGTALK_VALUE_BYTES = 1_000
DINGTALK_KEY_BYTES = 100
DINGTALK_BUTTON_SLOTS = 6
DINGTALK_BODY_BLOCKS = 4
DINGTALK_TEXT_BYTES = 4_000  # our ceiling for a robot text message
# WeCom (template_card button_interaction): ≤ 6 rows, ≤ 6 buttons, key ≤ 1,024 bytes, task_id ≤ 128
# bytes of [A-Za-z0-9_@-]; markdown content ≤ 2,048 bytes (the app's limit; the robot allows 4,096).
# The card's own text limits are only "建议" in WeCom's documents: these are our ceilings.
WECOM_LIMITS = {"card_bytes": 8_000, "sub_title_text": 512, "quote_text": 256, "markdown_bytes": 2_048}

_KIND = re.compile(r"[a-z][a-z0-9_]{0,30}")
_PLATFORM_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_TASK_ID_CHARS = re.compile(r"[^A-Za-z0-9_@-]+")
MAX_MENTIONS = 20
MAX_BARS = 30  # a chart's bars: one per department


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("collabbot.cards", ""),
        autoescape=select_autoescape(enabled_extensions=(), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    return env


def _template(platform: str, kind: str) -> Template:
    env = environment()
    try:
        return env.get_template(f"{platform}/{kind}.j2")
    except TemplateNotFound:
        return env.get_template(f"{platform}/card.j2")


def render(platform: str, kind: str, **data: Any) -> str:
    """A template rendered with `data` as it is (the console's text form takes `render_text`)."""
    return _template(platform, kind).render(kind=kind, **data)



# --- the data the templates see ----------------------------------------------------------------

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


@dataclass(frozen=True)
class Caps:
    """How much of each slot a platform gets, in characters (counts for the lists)."""

    title: int
    status: int
    field_name: int
    field_value: int
    fields: int
    history_line: int
    history: int
    note: int
    text: int
    label: int
    buttons: int
    name: int = 32  # a mentioned person's display name

    def scaled(self, scale: float) -> Caps:
        """Every long slot cut to `scale` of its cap (labels and button counts stay: they are actions)."""
        if scale >= 1:
            return self

        def s(value: int, floor: int) -> int:
            return max(floor, int(value * scale))

        return replace(self, title=s(self.title, 12), status=s(self.status, 8), field_value=s(self.field_value, 8),
                       fields=s(self.fields, 1), history_line=s(self.history_line, 8), history=s(self.history, 1),
                       note=s(self.note, 8), text=s(self.text, 16))


Escaper = Callable[..., str]

# the console's text form: a terminal shows long text well, but every slot stays on its line
TEXT_CAPS = Caps(title=200, status=20, field_name=40, field_value=2_000, fields=100, history_line=300, history=50,
                 note=1_000, text=2_000, label=40, buttons=20)
FEISHU_CAPS = Caps(title=100, status=16, field_name=40, field_value=1_000, fields=50, history_line=200,
                   history=10, note=500, text=3_000, label=30, buttons=20)
FEISHU_TEXT_CHARS = 5_000
DINGTALK_CAPS = Caps(title=60, status=16, field_name=30, field_value=280, fields=30, history_line=120, history=6,
                     note=300, text=300, label=20, buttons=DINGTALK_BUTTON_SLOTS)
DINGTALK_TEXT_CHARS = 1_200
WECOM_CAPS = Caps(title=50, status=44, field_name=10, field_value=40, fields=20, history_line=60, history=3,
                  note=120, text=200, label=20, buttons=6)
WECOM_TEXT_CHARS = 600


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
    fields = tuple((esc(n, caps.field_name, oneline=True), esc(v, caps.field_value, max_lines=20))
                   for n, v in raw_fields[: caps.fields])
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
    return pid if isinstance(pid, str) and _PLATFORM_ID.fullmatch(pid) else None


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


def _render_json(platform: str, view: CardView, **extra: Any) -> Any:
    return json.loads(_template(platform, view.kind).render(view=view, **extra))


def _fit(build: Callable[[float], Any], fits: Callable[[Any], bool], what: str) -> Any:
    """The first rendering, with caps scaled down step by step, that the platform will take."""
    for scale in SCALES:
        out = build(scale)
        if fits(out):
            return out
    raise ValueError(f"{what} does not fit the platform's limits even when shortened")


def utf8_len(value: Any) -> int:
    """Bytes of `value` as the API receives it (strings as is, the rest as compact-enough JSON)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return len(text.encode())


# --- Feishu -------------------------------------------------------------------------------------

def _feishu_text_at(pid: str, name: str) -> str:
    return f'<at user_id="{pid}">{name}</at>'


def _feishu_card_at(pid: str, name: str) -> str:
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


def _feishu_card_fits(card: dict[str, Any]) -> bool:
    return (utf8_len(card) <= FEISHU_CARD_BYTES
            and sum(1 for _ in feishu_elements(card.get("body"))) <= FEISHU_MAX_ELEMENTS)


def _feishu_card(card: Card, parts: tuple[Any, ...] = ()) -> dict[str, Any]:
    def build(scale: float) -> dict[str, Any]:
        caps = FEISHU_CAPS.scaled(scale)
        text, _ = text_of(parts, escape.feishu, caps.text, _feishu_card_at, caps.name)
        return _render_json("feishu", card_view(card, escape.feishu, caps, text=text))

    return _fit(build, _feishu_card_fits, f"card {card.key}")


def _feishu_message(message: Message) -> dict[str, Any]:
    if message.card is not None:
        return {"msg_type": "interactive", "content": _feishu_card(message.card, message.parts)}

    def build(scale: float) -> dict[str, Any]:
        text, _ = text_of(message.parts, escape.feishu, int(FEISHU_TEXT_CHARS * scale), _feishu_text_at)
        return {"msg_type": "text", "content": {"text": text or "…"}}

    return _fit(build, lambda m: utf8_len(m["content"]) <= FEISHU_TEXT_BYTES, "text message")


# --- DingTalk -----------------------------------------------------------------------------------

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


def _dingtalk_fits(params: dict[str, Any]) -> bool:
    return all(isinstance(k, str) and len(k.encode()) <= DINGTALK_KEY_BYTES and isinstance(v, str)
               and len(v.encode()) <= DINGTALK_VALUE_BYTES for k, v in params.items())


def _dingtalk_card(card: Card, parts: tuple[Any, ...] = ()) -> tuple[dict[str, str], list[At]]:
    mentioned: list[At] = []

    def build(scale: float) -> dict[str, str]:
        caps = DINGTALK_CAPS.scaled(scale)
        text, mentioned[:] = text_of(parts, escape.dingtalk, caps.text, lambda pid, name: f"@{name}", caps.name)
        params = _render_json("dingtalk", card_view(card, escape.dingtalk, caps, text=text),
                              slots=DINGTALK_BUTTON_SLOTS)
        return _spill(params, "body", DINGTALK_BODY_BLOCKS, DINGTALK_VALUE_BYTES)

    params = _fit(build, _dingtalk_fits, f"card {card.key}")
    return params, mentioned


def _dingtalk_message(message: Message) -> dict[str, Any]:
    if message.card is not None:
        params, mentioned = _dingtalk_card(message.card, message.parts)
        # createAndDeliver's imGroupOpenDeliverModel.atUserIds: {userId: name}
        at_ids = {pid: escape.dingtalk(a.name, 32, oneline=True) for a in mentioned if (pid := real_id(a))}
        return {"cardParamMap": params, "atUserIds": at_ids}

    def build(scale: float) -> dict[str, Any]:
        # a robot message cannot mention anyone; through a sessionWebhook "@<userId>" in the text
        # together with at.atUserIds does, and isAtAll stays false whatever the text says
        text, mentioned = text_of(message.parts, escape.dingtalk, int(DINGTALK_TEXT_CHARS * scale),
                                  lambda pid, name: f"@{pid}")
        ids = list(dict.fromkeys(pid for a in mentioned if (pid := real_id(a))))
        return {"msgKey": "sampleText", "msgParam": json.dumps({"content": text or "…"}, ensure_ascii=False),
                "at": {"atUserIds": ids, "isAtAll": False}}

    return _fit(build, lambda m: utf8_len(m["msgParam"]) <= DINGTALK_TEXT_BYTES, "text message")


# --- WeCom --------------------------------------------------------------------------------------

def wecom_task_id(key: str, copy_id: str = "") -> str:
    """A template card's task_id from its card key: only [A-Za-z0-9_@-], at most 128 bytes, stable for
    one key (an update must repeat it) and distinct for distinct keys (a hash of the whole key);
    `copy_id` tells apart several sent copies of one card, since WeCom refuses a task_id twice."""
    base = _TASK_ID_CHARS.sub("_", key).strip("_")[:80] or "card"
    task_id = f"{base}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if copy_id:
        task_id += "-" + (_TASK_ID_CHARS.sub("_", copy_id).strip("_")[:30] or "0")
    return task_id[:128]


def _wecom_card_fits(card: dict[str, Any]) -> bool:
    return (utf8_len(card) <= WECOM_LIMITS["card_bytes"]
            and len(card.get("sub_title_text", "")) <= WECOM_LIMITS["sub_title_text"]
            and len(card.get("quote_area", {}).get("quote_text", "")) <= WECOM_LIMITS["quote_text"])


def _wecom_at(pid: str, name: str) -> str:
    return f"<@{pid}>"


def _wecom_card(card: Card, quote: tuple[Any, ...] = (), copy_id: str = "") -> dict[str, Any]:
    task_id = wecom_task_id(card.key, copy_id)

    def build(scale: float) -> dict[str, Any]:
        caps = WECOM_CAPS.scaled(scale)
        text, _ = text_of(quote, escape.wecom, caps.text, _wecom_at, caps.name)
        return _render_json("wecom", card_view(card, escape.wecom, caps, text=text, task_id=task_id))

    return _fit(build, _wecom_card_fits, f"card {card.key}")


def _wecom_markdown(parts: tuple[Any, ...]) -> dict[str, Any]:
    def build(scale: float) -> dict[str, Any]:
        text, _ = text_of(parts, escape.wecom, int(WECOM_TEXT_CHARS * scale), _wecom_at)
        return {"msgtype": "markdown", "markdown": {"content": text or "…"}}

    return _fit(build, lambda m: utf8_len(m["markdown"]["content"]) <= WECOM_LIMITS["markdown_bytes"],
                "markdown message")


def _wecom_message(message: Message, copy_id: str = "") -> dict[str, Any]:
    if message.card is None:
        return _wecom_markdown(message.parts)
    if any(isinstance(p, At) and real_id(p) for p in message.parts):
        # a template card cannot mention anyone: the words with their <@userid> go first, as markdown
        return {"msgtype": "template_card", "template_card": _wecom_card(message.card, (), copy_id),
                "prelude": _wecom_markdown(message.parts)}
    return {"msgtype": "template_card", "template_card": _wecom_card(message.card, message.parts, copy_id)}


# --- the doors ----------------------------------------------------------------------------------

def render_message(platform: str, message: Message, *, copy_id: str = "") -> dict[str, Any]:
    """What one platform's send API takes for `message`:

    * feishu: `{"msg_type": "text" | "interactive", "content": {...}}` (the sender JSON-encodes it);
    * dingtalk: `{"msgKey": "sampleText", "msgParam": "<JSON>", "at": {...}}` for text, or
      `{"cardParamMap": {...}, "atUserIds": {userId: name}}` for a card (createAndDeliver);
    * wecom: `{"msgtype": "markdown", "markdown": {...}}`, or `{"msgtype": "template_card",
      "template_card": {...}}` with a markdown `"prelude"` to send first when the text mentions someone.

    `copy_id` tells apart several sent copies of one card where the platform needs unique ids (WeCom).
    """
    if platform == "feishu":
        return _feishu_message(message)
    if platform == "dingtalk":
        return _dingtalk_message(message)
    if platform == "wecom":
        return _wecom_message(message, copy_id)
    raise ValueError(f"no card templates for platform {platform!r}")


def render_card(platform: str, card: Card, *, copy_id: str = "") -> dict[str, Any]:
    """The card alone: Feishu's card JSON, DingTalk's cardParamMap, WeCom's template_card (for an
    update in place, e.g. the answer to a tap)."""
    if platform == "feishu":
        return _feishu_card(card)
    if platform == "dingtalk":
        return _dingtalk_card(card)[0]
    if platform == "wecom":
        return _wecom_card(card, (), copy_id)
    raise ValueError(f"no card templates for platform {platform!r}")


def render_text(card: Card) -> str:
    """The console's text form of a card (`cards/text/card.j2`), every user string on its own line."""
    return render("text", card.kind, card=card_view(card, escape.text, TEXT_CAPS))
