"""The commands people send most cost a known number of SQL statements, and none loads lazily.

A lazy load is a statement the code does not show (a relationship read after its object was loaded),
and on the inbound path every statement is engine time a burst queues behind. Each command below is
measured inside `Bot.handle` on both databases: the statements it issued and the lazy loads among
them. A budget is what the command costs today; a change that adds statements must raise it here, on
purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from .conftest import Harness

G = "in 新品上市群 as"
BUDGETS = [  # (what, transcript line, most statements)
    ("the group's first command (binds the group)", f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 协作 @王五 截止 12-10",
     23),
    ("新建任务", f"{G} 张三: @bot 新建任务 物料设计 负责人 @李四 截止 12-10", 18),  # with: is the project closed?
    ("a tap on 确认收到", "dm as 李四: tap 确认收到", 16),
    ("我的任务", "dm as 李四: 我的任务", 9),
    ("进度", f"{G} 李四: @bot 进度 #2 50% 初稿完成", 20),
]


class Meter:
    def __init__(self) -> None:
        self.on = False
        self.statements: list[str] = []
        self.lazy: list[str] = []

    @contextmanager
    def measuring(self) -> Iterator[None]:
        self.statements.clear()
        self.lazy.clear()
        self.on = True
        try:
            yield
        finally:
            self.on = False


@contextmanager
def metered(h: Harness) -> Iterator[Meter]:
    """Count what `Bot.handle` issues (the harness's own reads and deliveries are not counted)."""
    meter = Meter()

    def statement(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        if meter.on:
            meter.statements.append(sql)

    def orm(state: ORMExecuteState) -> None:
        if meter.on and state.is_select and state.lazy_loaded_from is not None:
            meter.lazy.append(f"{type(state.lazy_loaded_from.obj()).__name__}: {state.statement}")

    handle = h.bot.handle

    def measured(event: Any) -> Any:
        with meter.measuring():
            return handle(event)

    event.listen(h.db.engine, "before_cursor_execute", statement)
    event.listen(Session, "do_orm_execute", orm)
    h.bot.handle = measured  # type: ignore[method-assign]
    try:
        yield meter
    finally:
        h.bot.handle = handle  # type: ignore[method-assign]
        event.remove(h.db.engine, "before_cursor_execute", statement)
        event.remove(Session, "do_orm_execute", orm)


def test_the_hot_commands_stay_within_their_statement_budgets_and_never_load_lazily(harness: Harness) -> None:
    with metered(harness) as meter:
        for what, line, budget in BUDGETS:
            out = harness.text(line)
            assert "出错" not in out, (what, out)
            assert meter.statements, what  # the meter saw the command
            assert meter.lazy == [], (what, meter.lazy)
            assert len(meter.statements) <= budget, (what, len(meter.statements), meter.statements)


def test_a_list_costs_the_same_statements_however_many_tasks_it_shows(harness: Harness) -> None:
    """我的任务 and 待我处理 read their tasks in a fixed number of queries (no query per task)."""
    def costs() -> tuple[int, int]:
        with metered(harness) as meter:
            harness.text("dm as 李四: 我的任务")
            mine = len(meter.statements)
            harness.text("dm as 李四: 待我处理")
            return mine, len(meter.statements)

    harness.text(f"{G} 张三: @bot 新建任务 第一项 负责人 @李四 截止 12-10")
    costs()  # once first: who asks is remembered from then on (bot/known.py), as in the measurement below
    few = costs()
    for i in range(12):
        harness.text(f"{G} 张三: @bot 新建任务 第{i + 2}项 负责人 @李四 截止 12-1{i % 9}")
    assert costs() == few
