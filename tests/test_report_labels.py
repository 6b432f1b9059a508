"""What the reports' figures say they are: the response time's "(n)" is what its share is over, the workbook's
status column flags the overdue and blocked tasks as 任务列表 does, and the monthly risk report calls the month
it covers 上月. On SQLite, through the console with a manual clock."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from collabbot.bot.config import Config
from collabbot.cards import workbook
from collabbot.storage.db import Database
from tests.conftest import TZ, Harness

G = "in 新品上市群 as"
BIND = f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部 开始 11-02 结束 12-31"


def _harness(db: Database, start: datetime, **config: object) -> Harness:
    return Harness(db, replace(Config(), **config), start)


def test_the_response_times_count_is_what_the_share_is_over(sqlite_db: Database) -> None:
    """Three assignments answered (in 1, 2 and 5 working hours) and one never: 2 of 4 within two hours."""
    h = _harness(sqlite_db, datetime(2026, 11, 30, 9, 0, tzinfo=TZ))
    h.run(BIND, "clock 2026-11-30 17:30", f"{G} 张三: @bot 新建任务 A 负责人 @李四 截止 12-20",
          "clock 2026-12-01 09:30", f"{G} 李四: @bot 确认收到 #1",
          "clock 2026-12-01 11:00", f"{G} 张三: @bot 新建任务 B 负责人 @赵六 截止 12-20",
          "clock 2026-12-01 14:30", f"{G} 赵六: @bot 确认收到 #2",
          "clock 2026-12-02 09:00", f"{G} 张三: @bot 新建任务 C 负责人 @王五 截止 12-20",
          "clock 2026-12-02 15:30", f"{G} 王五: @bot 确认收到 #3",
          "clock 2026-12-03 09:00", f"{G} 张三: @bot 新建任务 D 负责人 @吴十 截止 12-20",
          "clock 2026-12-04 16:00")
    out = h.text(f"{G} 张三: @bot 报表")
    assert "指派：中位 2.0h · P90 5.0h · 2小时内 50%（4）" in out, out


@pytest.fixture
def exported(sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLLABBOT_EXPORT_DIR", str(tmp_path / "exports"))
    workbook.install()

    def export(lang: str) -> openpyxl.Workbook:
        h = _harness(sqlite_db, datetime(2026, 12, 1, 9, 0, tzinfo=TZ), language=lang)
        h.run(BIND, f"{G} 张三: @bot 新建任务 甲 负责人 @李四 截止 12-02 18:00",
              f"{G} 张三: @bot 新建任务 乙 负责人 @王五 截止 12-20", f"{G} 张三: @bot 新建任务 丙 负责人 @赵六 截止 12-18",
              f"{G} 张三: @bot 依赖 #2 #3", f"{G} 赵六: @bot 完成 #3 交付物 https://x", "clock 2026-12-03 10:00")
        found = re.search(r"(?:报表已导出：|Report exported: )(\S+\.xlsx)", h.text(f"{G} 张三: @bot 导出"))
        assert found
        return openpyxl.load_workbook(found[1])

    return export


def test_the_workbooks_status_flags_the_overdue_and_the_blocked(exported) -> None:
    book = exported("zh")
    tasks = {row[0]: row[7] for row in book["任务"].iter_rows(min_row=2, values_only=True)}
    assert tasks == {"#1 甲": "已延期 · 待启动", "#2 乙": "阻塞 · 待启动", "#3 丙": "待审核"}
    progress = {row[0]: row[3] for row in book["进度"].iter_rows(min_row=2, values_only=True)}
    assert progress["#1 甲"] == "已延期 · 待启动"


def test_the_english_workbooks_status_is_english(exported) -> None:
    tasks = {row[0]: row[7] for row in exported("en").worksheets[0].iter_rows(min_row=2, values_only=True)}
    assert tasks["#1 甲"] == "overdue · to do" and tasks["#2 乙"] == "blocked · to do"


@pytest.mark.parametrize("lang, intro, line", [
    ("zh", "上月（2026-11）协同风险报告：", "#R1 供应商延迟（高，李四）；#R2 人手不足（中，王五）"),
    ("en", "Last month's risk report (2026-11):", "#R1 supplier late (high, 李四); #R2 short of hands (mid, 王五)"),
])
def test_the_monthly_risk_report_says_it_is_about_last_month(sqlite_db: Database, lang: str, intro: str,
                                                             line: str) -> None:
    h = _harness(sqlite_db, datetime(2026, 11, 2, 9, 0, tzinfo=TZ), language=lang)
    first, second = ("供应商延迟", "人手不足") if lang == "zh" else ("supplier late", "short of hands")
    h.run(BIND, f"{G} 张三: @bot 风险 新增 描述 {first} 可能性 高 影响 高 应对 备选 负责人 @李四",
          f"{G} 张三: @bot 风险 新增 描述 {second} 可能性 中 影响 低 应对 借调 负责人 @王五",
          "clock 2026-11-30 23:59")
    out = h.text("wait 10h30m")  # Tuesday 12-01, after the morning moment: November's report
    assert intro in out and line in out, out
    assert "本月协同风险报告" not in out and "This month's risk report" not in out
