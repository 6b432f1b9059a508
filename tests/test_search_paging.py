"""查找 pages as 任务列表 does: ten results a page, `页 2` / `page 2` for the next, and a footer that says what to
type for it (the filters typed kept); a page past the end is refused with how many there are. On SQLite."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from collabbot.bot.config import Config
from collabbot.storage.db import Database
from tests.conftest import TZ, Harness

G = "in 新品上市群 as"


def _archived(db: Database, **config: object) -> Harness:
    """Twelve archived tasks 推广物料1…12 of one project, day, department and type: no filter tells them apart."""
    h = Harness(db, replace(Config(), **config), datetime(2026, 11, 2, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部 开始 11-02 结束 12-31")
    for i in range(1, 13):
        h.run(f"{G} 张三: @bot 新建任务 推广物料{i} 负责人 @吴十 截止 11-10", f"{G} 吴十: @bot 完成 #{i} 交付物 https://x",
              f"{G} 张三: @bot 通过 #{i}")
    h.run(f"{G} 张三: @bot 结项")
    return h


@pytest.fixture
def h(sqlite_db: Database) -> Harness:
    return _archived(sqlite_db)


def test_search_shows_ten_and_says_how_to_get_the_next_page(h: Harness) -> None:
    first = h.text("dm as 张三: 查找 推广")
    assert "共 12 条" in first and "任务 #12 推广物料12：" in first and "任务 #3 推广物料3：" in first
    assert "任务 #2 推广物料2：" not in first
    assert "第 1/2 页；下一页：查找 推广 页 2" in first, first
    second = h.text("dm as 张三: 查找 推广 页 2")
    assert "共 12 条" in second and "任务 #2 推广物料2：" in second and "任务 #1 推广物料1：" in second
    assert "任务 #3 推广物料3：" not in second and "第 2/2 页" in second and "下一页" not in second, second
    assert "任务 #2 推广物料2：" in h.text("dm as 张三: 查找 推广 页：2")  # the colon form, as for any field


def test_the_next_page_keeps_the_filters_typed(h: Harness) -> None:
    out = h.text("dm as 张三: 查找 推广 部门 市场部 类型 任务")
    assert "下一页：查找 推广 部门 市场部 类型 任务 页 2" in out, out
    assert "任务 #1 推广物料1：" in h.text("dm as 张三: 查找 推广 部门 市场部 页 2 类型 任务")


def test_a_page_past_the_end_or_not_a_number_is_refused(h: Harness) -> None:
    assert "没有第 3 页（共 2 页）" in h.text("dm as 张三: 查找 推广 页 3")
    assert "页码「x」不对，例如：查找 推广 页 2" in h.text("dm as 张三: 查找 推广 页：x")
    assert "页码「0」不对" in h.text("dm as 张三: 查找 推广 页 0")


def test_english_search_pages_with_its_page_word(sqlite_db: Database) -> None:
    h = _archived(sqlite_db, language="en")
    first = h.text("dm as 张三: search 推广")
    assert "page 1/2; next: search 推广 page 2" in first, first
    second = h.text("dm as 张三: search 推广 page 2")
    assert "task #1 推广物料1: " in second and "task #3 推广物料3" not in second, second
    refused = h.text("dm as 张三: search 推广 type file")
    assert "one of: task, approval, risk, meeting, collection, retro, project" in refused, refused
