"""The engine under concurrency: real threads, each calling `Bot.handle` with its own event, released
together, on SQLite and a real PostgreSQL (the `db` fixture runs each test on both).

What must hold: two dependency commands that would close a cycle together never store it; two events of
one native approval instance lose no outcome; someone's first two messages (or a new group's first two
commands) make one user, one group and one project, and `Bot.handle` raises for none of them; an approved
extension and the owner's progress report both count; instances migrating together all start.

`COLLABBOT_RACE_REPEATS` sets how many times each race runs (the issue's figure: 100).
"""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from sqlalchemy import func, select, text

from collabbot.adapters.console import transcript as tr
from collabbot.bot.events import ApprovalEvent, ChatRef, MessageEvent, UserRef
from collabbot.bot.rules.deps import find_cycle
from collabbot.storage.db import Database
from collabbot.storage.migrate import current_revision, upgrade
from collabbot.storage.models import (
    ApprovalRequest,
    AuditEntry,
    Chat,
    Identity,
    OutboxMessage,
    Project,
    Task,
    TaskDependency,
    User,
)

from .conftest import Harness
from .pgserver import make_database
from .test_approvals_concurrency import at_once

REPEATS = int(os.environ.get("COLLABBOT_RACE_REPEATS", "5"))
G = "in 新品上市群 as"


def event(h: Harness, line: str) -> MessageEvent:
    """The event the console would send for a transcript line, not sent yet."""
    step = tr.parse_line(line)
    assert isinstance(step, tr.Say), line
    return h.console._message(step)


def count(h: Harness, stmt) -> int:
    with h.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(stmt.subquery())) or 0


def errors(h: Harness) -> int:
    return count(h, select(AuditEntry.id).where(AuditEntry.outcome == "error"))


def test_two_dependencies_that_would_close_a_cycle_at_once_store_one(harness: Harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三",
                *[f"{G} 张三: @bot 新建任务 T{i} 负责人 @李四" for i in range(1, 5)],
                f"{G} 张三: @bot 依赖 #1 #2", f"{G} 张三: @bot 依赖 #3 #4")
    for _ in range(REPEATS):
        replies = at_once(harness.bot, [event(harness, f"{G} 张三: @bot 依赖 #2 #3"),
                                        event(harness, f"{G} 张三: @bot 依赖 #4 #1")])
        assert all(r.toast_kind != "error" for r in replies)
        with harness.db.transaction() as s:
            edges: dict[int, set[int]] = {}
            for a, b in s.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id)):
                edges.setdefault(a, set()).add(b)
        added = [(a, b) for a, b in ((2, 3), (4, 1)) if b in edges.get(a, set())]
        assert len(added) == 1, edges  # one stands, the other was refused as a cycle
        assert not any(find_cycle({k: v - {b} if k == a else v for k, v in edges.items()}, a, b)
                       for a, bs in edges.items() for b in bs), f"a cycle was stored: {edges}"
        harness.run(f"{G} 张三: @bot 取消依赖 #{added[0][0]} #{added[0][1]}")
        harness.console.take_output()
    assert errors(harness) == 0


def native(instance: str, status: str) -> ApprovalEvent:
    return ApprovalEvent(f"native:{instance}:{status}", ChatRef("console", "", is_group=False),
                         UserRef("console", "吴十", "吴十"), f"console:{instance}", "人力支持申请", status,
                         {"支持部门": "技术部", "人数": "2", "技能要求": "前端", "支持时间": "12月第二周", "用途": "活动H5"})


def test_two_events_of_one_native_approval_at_once_lose_no_outcome(harness: Harness) -> None:
    for i in range(REPEATS):
        instance = f"RACE-{i}"
        replies = at_once(harness.bot, [native(instance, "pending"), native(instance, "approved")])
        assert all(r.toast_kind != "error" for r in replies), [r.toast for r in replies]
        with harness.db.transaction() as s:
            [req] = s.scalars(select(ApprovalRequest).where(ApprovalRequest.external_id == f"console:{instance}"))
            assert req.status == "approved", "the outcome was lost"
            told = s.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.dedupe_key.like(f"approval:{req.id}:%:approved:initiator")))
            assert told == 1
    assert errors(harness) == 0


def test_someones_first_two_messages_at_once_make_one_user_and_neither_fails(harness: Harness) -> None:
    for i in range(REPEATS):
        who = f"新同事{i}"
        replies = at_once(harness.bot, [MessageEvent(uuid.uuid4().hex, ChatRef("console", f"dm:{who}", who, False),
                                                     UserRef("console", who, who), "我的任务") for _ in range(2)])
        assert all(r.toast_kind != "error" for r in replies)
        assert count(harness, select(User.id).where(User.name == who)) == 1
        assert count(harness, select(Identity.id).where(Identity.platform_user_id == who)) == 1
    assert errors(harness) == 0


def test_two_first_commands_in_a_new_group_make_one_group_and_one_project(harness: Harness) -> None:
    for i in range(REPEATS):
        group = f"新群{i}"
        replies = at_once(harness.bot, [event(harness, f"in {group} as 张三: @bot 新建任务 甲{i} 负责人 @李四"),
                                        event(harness, f"in {group} as 王五: @bot 新建任务 乙{i} 负责人 @李四")])
        assert all(r.toast_kind != "error" for r in replies)
        with harness.db.transaction() as s:
            [chat] = s.scalars(select(Chat).where(Chat.platform_chat_id == group))
            assert chat.project_id is not None
            projects = set(s.scalars(select(Task.project_id).where(Task.title.in_((f"甲{i}", f"乙{i}")))))
            assert projects == {chat.project_id}, "two projects for one group"
            assert s.scalar(select(func.count()).select_from(Project).where(Project.name == group)) == 1
    assert errors(harness) == 0


def test_an_approved_extension_and_the_owners_progress_report_at_once_both_count(harness: Harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三")
    for i in range(REPEATS):
        harness.run(f"{G} 张三: @bot 新建任务 延{i} 负责人 @李四 截止 12-10")
        with harness.db.transaction() as s:
            task_id = s.scalar(select(Task.id).where(Task.title == f"延{i}"))
        harness.run(f"dm as 李四: 开始 #{task_id}",
                    f"dm as 李四: 申请 延期申请 #{task_id} 新截止日期=12-20 原因=接口延后 补救措施=加人")
        with harness.db.transaction() as s:
            approval_id = s.scalar(select(func.max(ApprovalRequest.id)))
            version = s.get(Task, task_id).version  # type: ignore[union-attr]
        at_once(harness.bot, [event(harness, f"dm as 张三: 同意 #A{approval_id}"),
                              event(harness, f"dm as 李四: 进度 #{task_id} 40%")])
        with harness.db.transaction() as s:
            task = s.get(Task, task_id)
            assert task is not None and task.percent == 40 and task.deadline is not None
            assert task.deadline.astimezone(harness.config.calendar.tz).day == 20
            assert task.version == version + 2, "one change overwrote the other"
        harness.console.take_output()
    assert errors(harness) == 0


def test_progress_on_a_task_still_waiting_for_another_keeps_it_to_do(harness: Harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三",
                f"{G} 张三: @bot 新建任务 接口 负责人 @王五", f"{G} 张三: @bot 新建任务 页面 负责人 @李四",
                f"{G} 张三: @bot 依赖 #2 #1")
    out = harness.text(f"{G} 李四: @bot 进度 #2 30%")
    assert "仍在等待 #1 完成" in out
    with harness.db.transaction() as s:
        task = s.get(Task, 2)
        assert task is not None and (task.status, task.percent) == ("todo", 30)
    harness.run(f"{G} 王五: @bot 完成 #1 交付物 done", f"{G} 张三: @bot 通过 #1")
    harness.run(f"{G} 李四: @bot 进度 #2 50%")
    with harness.db.transaction() as s:
        assert s.get(Task, 2).status == "in_progress"  # type: ignore[union-attr]


@pytest.mark.parametrize("instances", [2, 3])
def test_instances_migrating_a_new_postgresql_database_at_once_all_start(pg_url: str, instances: int) -> None:
    for i in range(max(1, REPEATS // 2)):
        url = make_database(pg_url, f"migrate_race_{instances}_{i}", replace=True)
        databases = [Database(url) for _ in range(instances)]
        barrier = threading.Barrier(instances)
        failures: list[BaseException] = []

        def run(db: Database, barrier: threading.Barrier, failures: list[BaseException]) -> None:
            try:
                barrier.wait(timeout=10)
                upgrade(db.engine)
            except BaseException as exc:  # surfaced below
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(db, barrier, failures)) for db in databases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        try:
            assert failures == []
            with databases[0].engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
            assert current_revision(databases[0].engine) is not None
        finally:
            for db in databases:
                db.dispose()
