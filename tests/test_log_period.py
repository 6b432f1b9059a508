"""`操作记录 @某人 <period>` (admins): the periods 报表 takes, 本周 by default; anything else is refused with what to
type, never silently read as this week. On SQLite, through the console with a manual clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from collabbot.bot.config import Config
from collabbot.storage.db import Database
from tests.conftest import TZ, Harness

G = "in 新品上市群 as"


def _acting(db: Database, lang: str) -> Harness:
    """李四 acts on 11-02 (earlier this month), 11-23 (last week) and 11-30 (this week); it is then 11-30."""
    h = Harness(db, replace(Config(), language=lang, admins=("console:赵总",)), datetime(2026, 11, 2, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 11-02 结束 12-31",
          f"{G} 张三: @bot 新建任务 甲 负责人 @李四 截止 12-20", f"{G} 李四: @bot 确认收到 #1",
          "clock 2026-11-23 10:00", f"{G} 李四: @bot 进度 #1 30%",
          "clock 2026-11-30 10:00", f"{G} 李四: @bot 进度 #1 60%")
    return h


@pytest.fixture
def h(sqlite_db: Database) -> Harness:
    return _acting(sqlite_db, "zh")


def test_a_persons_log_follows_the_period_asked(h: Harness) -> None:
    week = h.text("dm as 赵总: 操作记录 @李四")
    assert "李四 本周的操作记录：" in week and "11-30 10:00 李四 更新进度 #1" in week and "11-23" not in week, week
    assert h.text("dm as 赵总: 操作记录 @李四 本周") == week
    last = h.text("dm as 赵总: 操作记录 @李四 上周")
    assert "李四 上周的操作记录：" in last and "11-23 10:00 李四 更新进度 #1" in last, last
    assert "11-30" not in last.split("\n", 1)[1] and "11-02" not in last, last
    month = h.text("dm as 赵总: 操作记录 @李四 本月")
    assert all(line in month for line in ("11-02 09:00 李四 确认收到 #1", "11-23 10:00 李四 更新进度 #1",
                                          "11-30 10:00 李四 更新进度 #1")), month
    dates = h.text("dm as 赵总: 操作记录 @李四 2026-11-01~2026-11-15")
    assert "李四 2026-11-01~2026-11-15的操作记录：" in dates and "11-02 09:00 李四 确认收到 #1" in dates
    assert "11-23" not in dates, dates


def test_a_period_it_cannot_read_is_refused_with_what_to_type(h: Harness) -> None:
    for text in ("下周", "上周 和 本周", "2026-13-01~2026-12-01"):
        out = h.text(f"dm as 赵总: 操作记录 @李四 {text}")
        assert f"看不懂时间范围「{text}」。例如：操作记录 @某人 上周" in out and "操作记录：" not in out, out


def test_the_english_log_names_its_period(sqlite_db: Database) -> None:
    h = _acting(sqlite_db, "en")
    out = h.text("dm as 赵总: log @李四 last week")
    assert "What 李四 did (last week):" in out and "11-23 10:00 李四 reported #1" in out, out
    assert 'Unknown period "next year", e.g. log @someone last week' in h.text("dm as 赵总: log @李四 next year")
