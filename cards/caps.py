"""Size caps, shared by every platform: how much of each slot a card gets, and the loop that renders
again with every cap halved until the platform's own limits are met.

A platform's numbers (its `Caps` and byte ceilings) are facts about that platform and live beside its
templates (`cards/<platform>/render.py`); the mechanism lives here once, so a long text is shortened
with "…" the same way everywhere instead of being refused by the platform.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625)

T = TypeVar("T")


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


def fit(build: Callable[[float], T], fits: Callable[[T], bool], what: str) -> T:
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
