"""Every sentence exists in every language, with the same placeholders, so no reply fails in one language only."""

from __future__ import annotations

from string import Formatter

import pytest

from collabbot.bot import texts

TABLES = ("TEXTS", "STATUS", "PRIORITY", "APPROVAL_STATUS", "HISTORY_VERBS", "FIELDS")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("table", TABLES)
def test_every_key_exists_in_every_language(table: str) -> None:
    keys = {lang: set(getattr(cat, table)) for lang, cat in texts.CATALOGUES.items()}
    reference = keys[texts.DEFAULT_LANGUAGE]
    for lang, have in keys.items():
        assert have == reference, f"{table}: {lang} lacks {sorted(reference - have)}, has extra {sorted(have - reference)}"


def test_every_sentence_has_the_same_placeholders_in_every_language() -> None:
    default = texts.catalogue(texts.DEFAULT_LANGUAGE)
    for lang, cat in texts.CATALOGUES.items():
        for key, text in default.TEXTS.items():
            assert _placeholders(cat.TEXTS[key]) == _placeholders(text), f"{lang}:{key}"
        for key, (name, example) in default.FIELDS.items():
            assert _placeholders("".join(cat.FIELDS[key])) == _placeholders(name + example), f"{lang}:{key}"


def test_no_sentence_is_empty() -> None:
    for lang, cat in texts.CATALOGUES.items():
        for table in TABLES:
            for key, value in getattr(cat, table).items():
                parts = value if isinstance(value, tuple) else (value,)
                assert all(p.strip() for p in parts), f"{lang}:{table}:{key} is empty"


def test_t_formats_in_each_language_and_defaults_to_chinese() -> None:
    assert texts.t("zh", "not_found_task", id=7) == "找不到任务 #7。发送「我的任务」查看你的任务。"
    assert texts.t("en", "not_found_task", id=7) == "There is no task #7. Send \"my tasks\"."
    assert texts.t("fr", "none") == texts.t("zh", "none")
    assert texts.status_name("en", "blocked") == "blocked"
    assert texts.field_name("zh", "owner") == "负责人"
    assert texts.field_example("en", "unknown-field") == ""
    with pytest.raises(KeyError):
        texts.t("zh", "no-such-key")


def test_every_action_the_engine_audits_reads_as_words_in_the_trail() -> None:
    """操作记录 shows each entry's action through HISTORY_VERBS: an action without words there would
    show its code (task.create) to the people reading the trail."""
    import re
    from pathlib import Path

    from collabbot.bot.audit_log import COMMAND_ACTIONS

    root = Path(texts.__file__).resolve().parents[1]
    written = {m for path in root.rglob("*.py")
               for m in re.findall(r"""audit\(\s*["']([a-z_]+\.[a-z_]+)["']""", path.read_text(encoding="utf-8"))}
    written |= {m for path in root.rglob("*.py")
                for m in re.findall(r"""each\(\s*["'](rule\.[a-z_]+)["']""", path.read_text(encoding="utf-8"))}
    written |= set(COMMAND_ACTIONS.values()) | {"risk.update", "risk.close", "approval.approve", "approval.reject",
                                                "approval.withdraw"}
    assert {"task.create", "rule.nag", "collection.create"} <= written  # the scan finds what it should
    verbs = texts.catalogue(texts.DEFAULT_LANGUAGE).HISTORY_VERBS
    assert sorted(written - set(verbs)) == []
