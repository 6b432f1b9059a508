"""Platform-neutral outbound things: messages, cards, buttons and the callback's `Reply`.

A *message* is posted into a chat or to a person through the outbox. A `Reply` is only what rides
on a callback's own response: nothing, a toast for the tapper, or the tapped card updated in place.
A card's meaning (title, status, fields, history, buttons and their action values) is decided here
in `bot/`; its look is decided by the templates in `cards/`.

Button values are `CardAction`s packed as short strings ("v1|ack|task|12|3"): a version of the
format, the action, the entity and the entity's version when the card was drawn, so that a tap on
a stale card is refused instead of acting on a state the tapper never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CARD_ACTION_FORMAT = "v1"
MAX_ACTION_VALUE = 200


@dataclass(frozen=True)
class At:
    """A real mention of one person, resolved to the platform's id when the message is enqueued."""

    user_id: int
    platform_user_id: str = ""
    name: str = ""


Part = str | At


@dataclass(frozen=True)
class CardAction:
    action: str
    entity: str
    entity_id: int
    version: int = 0

    def pack(self) -> str:
        packed = f"{CARD_ACTION_FORMAT}|{self.action}|{self.entity}|{self.entity_id}|{self.version}"
        if len(packed) > MAX_ACTION_VALUE:
            raise ValueError("card action too long")
        return packed

    @classmethod
    def unpack(cls, value: str) -> CardAction | None:
        """The action a button carried, or None for anything we did not pack ourselves."""
        if not isinstance(value, str) or len(value) > MAX_ACTION_VALUE:
            return None
        parts = value.split("|")
        if len(parts) != 5 or parts[0] != CARD_ACTION_FORMAT:
            return None
        _, action, entity, entity_id, version = parts
        if not (action.isascii() and action.replace("_", "").isalnum() and entity.isascii() and entity.isalpha()):
            return None
        if not (_ascii_digits(entity_id) and _ascii_digits(version)) or len(entity_id) > 9 or len(version) > 9:
            return None
        return cls(action, entity, int(entity_id), int(version))


def _ascii_digits(text: str) -> bool:
    """0-9 only: str.isdigit() also takes "²" and "١", which int() then refuses or misreads."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True)
class Button:
    label: str
    value: str  # a packed CardAction
    style: str = "default"  # default | primary | danger


@dataclass(frozen=True)
class Card:
    kind: str  # task | approval | approval_result | help | prompt | escalation | summary | notice
    key: str  # which entity the card shows, e.g. "task:12": a tap updates the cards with this key
    title: str
    status: str = ""
    color: str = "blue"  # blue | green | orange | red | grey
    fields: tuple[tuple[str, str], ...] = ()
    history: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()
    note: str = ""
    chart: tuple[tuple[str, int], ...] = ()  # bars (label, percent 0-100), for platforms that draw charts


@dataclass(frozen=True)
class Chart:
    """What a chart shows, as plain data: a renderer outside the engine draws it (bars or lines)."""

    kind: str  # bar | line
    title: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]  # (legend name, one value per label)
    unit: str = ""  # "%": the axis runs 0-100

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "labels": list(self.labels),
                "series": [[name, list(values)] for name, values in self.series], "unit": self.unit}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Chart:
        return cls(str(data["kind"]), str(data["title"]), tuple(str(x) for x in data.get("labels", [])),
                   tuple((str(name), tuple(float(v) for v in values)) for name, values in data.get("series", [])),
                   str(data.get("unit", "")))


ATTACHMENT_KINDS = ("chart", "file")


@dataclass(frozen=True)
class Attachment:
    """A chart or a file that goes with a message. The outbox row keeps what is needed to make it again:
    a chart's data (drawn when it is sent), or a file's name in the export folder (`ref`, never a path:
    a workbook can be megabytes, too big for a JSON row). A file attachment *is* the message where the
    platform takes files: the message's words are then only its text form (the console prints them)."""

    kind: str  # chart | file
    name: str  # what the person sees: the file's name
    chart: Chart | None = None
    ref: str = ""  # a file: its name in the export folder

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.chart is not None:
            data["chart"] = self.chart.to_json()
        if self.ref:
            data["ref"] = self.ref
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        kind = str(data["kind"])
        if kind not in ATTACHMENT_KINDS:
            raise ValueError(f"unknown attachment kind {kind!r}")
        chart = data.get("chart")
        return cls(kind, str(data.get("name", "")), None if chart is None else Chart.from_json(chart),
                   str(data.get("ref", "")))


@dataclass(frozen=True)
class Message:
    """Text with real mentions, optionally followed by a card, and optionally an attachment."""

    parts: tuple[Part, ...] = ()
    card: Card | None = None
    urgent: bool = False  # the rules decided it deserves the platform's strongest alert (加急, DING)
    attachment: Attachment | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "parts": [{"user_id": p.user_id, "platform_user_id": p.platform_user_id, "name": p.name, "at": True}
                      if isinstance(p, At) else p for p in self.parts],
            "card": None if self.card is None else card_to_json(self.card),
        }
        if self.urgent:
            data["urgent"] = True
        if self.attachment is not None:  # absent otherwise: rows written before attachments read the same
            data["attachment"] = self.attachment.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        parts: list[Part] = []
        for p in data.get("parts", []):
            if isinstance(p, dict):
                parts.append(At(p["user_id"], p.get("platform_user_id", ""), p.get("name", "")))
            else:
                parts.append(str(p))
        card, attachment = data.get("card"), data.get("attachment")
        return cls(tuple(parts), None if card is None else card_from_json(card), bool(data.get("urgent", False)),
                   None if attachment is None else Attachment.from_json(attachment))

    @property
    def plain_text(self) -> str:
        return "".join(p if isinstance(p, str) else f"@{p.name}" for p in self.parts)


def card_to_json(card: Card) -> dict[str, Any]:
    # written out by hand: dataclasses.asdict's deep copy was the sweep's hottest spot
    return {
        "kind": card.kind, "key": card.key, "title": card.title, "status": card.status, "color": card.color,
        "fields": [[k, v] for k, v in card.fields],
        "history": list(card.history),
        "buttons": [{"label": b.label, "value": b.value, "style": b.style} for b in card.buttons],
        "note": card.note,
        "chart": [[label, value] for label, value in card.chart],
    }


def card_from_json(data: dict[str, Any]) -> Card:
    return Card(
        kind=data["kind"],
        key=data["key"],
        title=data["title"],
        status=data.get("status", ""),
        color=data.get("color", "blue"),
        fields=tuple((str(k), str(v)) for k, v in data.get("fields", [])),
        history=tuple(data.get("history", [])),
        buttons=tuple(Button(**b) for b in data.get("buttons", [])),
        note=data.get("note", ""),
        chart=tuple((str(label), int(value)) for label, value in data.get("chart", [])),
    )


@dataclass(frozen=True)
class Reply:
    """What goes back on the callback's own response."""

    toast: str = ""
    toast_kind: str = "info"  # success | info | warning | error
    card: Card | None = None  # the tapped card, updated in place
    extra: dict[str, Any] = field(default_factory=dict)
    parts: tuple[Part, ...] = ()  # the text the tapped message showed above its card (kept on update)

    @property
    def message(self) -> Message | None:
        """The tapped message as it should now look: its text, then the updated card."""
        return None if self.card is None else Message(self.parts, self.card)

    def to_json(self) -> dict[str, Any]:
        return {
            "toast": self.toast,
            "toast_kind": self.toast_kind,
            "card": None if self.card is None else card_to_json(self.card),
            "parts": Message(self.parts).to_json()["parts"],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Reply:
        if not data:
            return cls()
        card = data.get("card")
        parts = Message.from_json({"parts": data.get("parts") or []}).parts
        return cls(data.get("toast", ""), data.get("toast_kind", "info"), None if card is None else card_from_json(card),
                   parts=parts)
