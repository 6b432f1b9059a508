"""Every sentence the bot says: one catalogue per language (`zh.py`, the default, and `en.py`).

`t(lang, key, **values)` formats one. Keep replies short (people read them on phones) and make every
refusal say what to type instead. A new sentence goes into every catalogue with the same key and the same
`{placeholders}`; tests/test_texts.py refuses a catalogue that lacks one. The punctuation the bot puts
between pieces of data (、；（）：) is its own words too: `names`, `items`, `paren` and `labelled` write it
in the reply's language.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from collabbot.bot.texts import en, zh

CATALOGUES: dict[str, ModuleType] = {"zh": zh, "en": en}
DEFAULT_LANGUAGE = "zh"


def catalogue(lang: str) -> ModuleType:
    """The catalogue of `lang`; an unknown language reads Chinese, the default."""
    return CATALOGUES.get(lang, CATALOGUES[DEFAULT_LANGUAGE])


def t(lang: str, key: str, **values: Any) -> str:
    text: str = catalogue(lang).TEXTS[key]
    return text.format(**values) if values else text


def names(lang: str, parts: Iterable[str]) -> str:
    """Names in a row, as the language writes them: 市场部、技术部 / 市场部, 技术部 (the names stay as typed)."""
    return t(lang, "sep_names").join(parts)


def items(lang: str, parts: Iterable[str]) -> str:
    """Whole entries on one line (a list's items): #1 甲；#2 乙 / #1 A; #2 B."""
    return t(lang, "sep_items").join(parts)


def paren(lang: str, text: str) -> str:
    """An aside after a word, with its own space in English: 海报（王五） / poster (王五)."""
    return t(lang, "paren", text=text)


def labelled(lang: str, label: str, text: str) -> str:
    """A label and its text inside a line (a card field's colon is the template's): 技术部：… / 技术部: …"""
    return t(lang, "labelled", label=label, text=text)


def status_name(lang: str, status: str) -> str:
    return catalogue(lang).STATUS[status]


def priority_name(lang: str, priority: str) -> str:
    return catalogue(lang).PRIORITY.get(priority, priority)


def approval_status_name(lang: str, status: str) -> str:
    return catalogue(lang).APPROVAL_STATUS.get(status, status)


def history_verb(lang: str, action: str) -> str:
    return catalogue(lang).HISTORY_VERBS.get(action, action)


def field_name(lang: str, field: str) -> str:
    entry = catalogue(lang).FIELDS.get(field)
    return field if entry is None else entry[0]


def field_example(lang: str, field: str) -> str:
    entry = catalogue(lang).FIELDS.get(field)
    return "" if entry is None else entry[1]
