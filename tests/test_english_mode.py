"""`[bot] language = "en"`: the bot's own words and punctuation are English everywhere the reports and the
project records show them; only the data (people's and departments' names) stays as typed. On SQLite,
through the console with a manual clock."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from collabbot.bot import texts
from collabbot.bot.config import Config
from collabbot.bot.replies import Card
from collabbot.cards import workbook
from collabbot.cards.render import PLATFORMS, render_card, render_text
from collabbot.storage.db import Database
from tests.conftest import TZ, Harness

G = "in 新品上市群 as"
# the punctuation Chinese text uses between pieces; none of the data below has any
CJK_PUNCTUATION = re.compile(r"[、；（）：，「」]")


def bot_words(out: str) -> str:
    """What the bot wrote, without the console's own framing of a private message ("→ 李四（私聊）:")."""
    return out.replace("（私聊）", "")


@pytest.fixture
def h(sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("COLLABBOT_EXPORT_DIR", str(tmp_path / "exports"))
    workbook.install()
    config = replace(Config(), language="en", admins=("console:赵总",))
    harness = Harness(sqlite_db, config, datetime(2026, 11, 23, 9, 0, tzinfo=TZ))  # a Monday
    harness.run(
        f"{G} 张三: @bot project bind Launch coordinator @张三 departments 市场部,技术部,设计部 start 11-23 end 12-31",
        f"{G} 张三: @bot task new API dev owner @李四 collab @王五 @赵六 due 11-24 18:00",
        f"{G} 张三: @bot task new Ad plan owner @吴十 due 11-24 12:00",
        f"{G} 李四: @bot ack #1",
        f"{G} 李四: @bot done #1 deliverable https://x/1",
        f"{G} 张三: @bot accept #1",
        f"{G} 王五: @bot accept #1",  # refused: its reason shows in the log
    )
    yield harness


def test_the_report_card_is_english_to_its_punctuation(h: Harness) -> None:
    h.run("clock 2026-11-25 16:00")  # #2 overdue, its owner escalated
    out = h.text(f"{G} 张三: @bot report")
    assert "技术部 ▓▓▓▓▓▓▓▓▓▓ 100% (1/1)" in out, out
    assert "Most overdue departments: 市场部: 1 overdue, " in out and "1 tasks" not in out, out
    assert not CJK_PUNCTUATION.search(bot_words(out)), out


def test_project_info_minutes_and_the_log_join_with_english_punctuation(h: Harness) -> None:
    assert "Departments: 市场部, 技术部, 设计部" in h.text(f"{G} 张三: @bot project info")
    minutes = h.text(f"{G} 张三: @bot minutes topic Review time 11-23 14:00 departments 市场部 summary ok "
                     f"decision plan B\n  action content H5 revamp owner @李四 due 12-10")
    assert "Minutes #M1 recorded. Action items made tasks: 1. @李四" in minutes, minutes
    log = h.text(f"{G} 张三: @bot log #1")
    assert re.search(r"王五 accepted \(refused\): \S", log), log
    for out in (minutes, log):
        assert not CJK_PUNCTUATION.search(bot_words(out)), out


def test_a_collection_card_and_its_announcement(h: Harness) -> None:
    out = h.text(f"{G} 张三: @bot collect Monthly data targets 市场部,技术部 due 11-26 18:00")
    assert "from: @张三, @陈七" in out, out
    assert "Requested by: 张三" in out and "技术部 陈七: not submitted" in out, out
    h.run(f"{G} 陈七: @bot done #C1 https://y")
    listed = h.text(f"{G} 张三: @bot collect list")
    assert "waiting for 张三" in listed, listed
    for text in (out, listed):
        assert not CJK_PUNCTUATION.search(bot_words(text)), text


def test_the_workbook_joins_collaborators_and_flags_the_overdue_in_english(h: Harness) -> None:
    h.run("clock 2026-11-24 13:00")
    found = re.search(r"Report exported: (\S+\.xlsx)", h.text(f"{G} 张三: @bot export"))
    assert found
    tasks = openpyxl.load_workbook(found[1]).worksheets[0]
    rows = {row[0]: row for row in tasks.iter_rows(min_row=2, values_only=True)}
    assert rows["#1 API dev"][2] == "王五, 赵六"
    assert rows["#2 Ad plan"][7] == "overdue · to do"


def test_the_punctuation_helpers_follow_the_language() -> None:
    assert texts.names("zh", ["市场部", "技术部"]) == "市场部、技术部"
    assert texts.names("en", ["市场部", "技术部"]) == "市场部, 技术部"
    assert texts.items("en", ["#1 A", "#2 B"]) == "#1 A; #2 B" and texts.items("zh", ["#1 甲", "#2 乙"]) == "#1 甲；#2 乙"
    assert "#4 Ad plan" + texts.paren("en", "吴十") == "#4 Ad plan (吴十)"
    assert "#4 广告" + texts.paren("zh", "吴十") == "#4 广告（吴十）"
    assert texts.labelled("en", "技术部", "on track") == "技术部: on track"
    assert texts.labelled("zh", "技术部", "按计划") == "技术部：按计划"


def _last_field(platform: str, card: Card) -> str:
    """How the card's last field reads on `platform` (WeCom shows its first six as rows, the rest as text)."""
    if platform == "text":
        return render_text(card)
    return json.dumps(render_card(platform, card), ensure_ascii=False)


@pytest.mark.parametrize("platform", [*PLATFORMS, "text"])
def test_a_cards_colon_follows_its_language_not_its_field_names(platform: str) -> None:
    """An English card whose field names are all Chinese data (a collection's 市场部 张三) takes ": ", and a
    Chinese card whose field names are all English data (a task list's #4 Ad plan) takes "："."""
    people = tuple((f"部门{i} 张三", "not submitted") for i in range(8))
    english = _last_field(platform, Card(kind="collection", key="collection:1", title="Collection #C1 Data",
                                         fields=people))
    assert re.search(r"部门7 张三(\*\*)?: not submitted", english), english
    assert "张三：" not in english and "张三**：" not in english, english
    titles = tuple((f"#{i} Ad plan", "待启动") for i in range(8))
    chinese = _last_field(platform, Card(kind="task_list", key="tasklist:1", title="任务分工表 · Launch",
                                         fields=titles))
    assert re.search(r"#7 Ad plan(\*\*)?：待启动", chinese), chinese


def test_help_lines_and_a_tasks_history_use_english_punctuation(h: Harness) -> None:
    helped = [line for line in "\n".join(h.run(f"{G} 张三: @bot help")).splitlines() if line.startswith("• ")]
    assert helped and all("：" not in line.split(" / ")[0] + line.split(": ", 1)[0] for line in helped), helped
    assert any(line.startswith("• ack / 确认收到: ack") for line in helped), helped
    created = "\n".join(h.run(f"{G} 张三: @bot task new Banner owner @李四 due 12-10"))
    task = re.search(r"Created task #(\d+)", created).group(1)  # type: ignore[union-attr]
    h.run(f"{G} 张三: @bot reassign #{task} @赵六 reason 李四 away")
    shown = "\n".join(h.run(f"dm as 张三: task #{task}"))
    history = [line for line in shown.splitlines() if " reassigned" in line]
    assert history and all("：" not in line for line in history), shown
