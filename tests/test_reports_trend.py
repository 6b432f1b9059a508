"""The trend warning in the weekly summary and to the admins, through the console platform and the real
sweep, on SQLite and PostgreSQL: a department whose on-time rate fell three weeks in a row and whose open
overdue count doubled is named in its projects' summaries (not in a project it has no part in), and each
admin hears about it privately once per week and department."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from collabbot.bot.replies import Message
from collabbot.bot.reports.trend import WeeklyTrend
from collabbot.bot.sweep import Notifier
from collabbot.storage.models import Chat, Department, OutboxMessage, Task, User

from .conftest import TZ

G = "in 新品上市群 as"
FRIDAY = datetime(2026, 12, 4, 9, 0, tzinfo=TZ)  # this week is 11-30..12-06; the summary goes out at 17:00


def _falling_history(h) -> None:
    """技术部: 4, 3, 2, then 1 of 4 tasks on time in the last four weeks; 1 task open overdue at the end of
    last week, 2 now. 设计部: always on time."""
    with h.db.transaction() as s:
        dept = s.scalar(select(Department).where(Department.name == "技术部"))
        design = s.scalar(select(Department).where(Department.name == "设计部"))
        li = s.scalar(select(User).where(User.name == "李四"))
        wang = s.scalar(select(User).where(User.name == "王五"))
        project_id = s.scalar(select(Chat.project_id).where(Chat.name == "新品上市群"))

        def task(owner: User, dept_id: int, created: datetime, deadline: datetime, done: datetime | None) -> Task:
            return Task(title="t", initiator_id=owner.id, owner_id=owner.id, department_id=dept_id,
                        project_id=project_id, status="done" if done else "in_progress", deadline=deadline,
                        done_at=done, created_at=created, updated_at=created)

        for weeks_back, on_time in ((3, 4), (2, 3), (1, 2), (0, 1)):
            monday = datetime(2026, 11, 30, 10, 0, tzinfo=TZ) - timedelta(weeks=weeks_back)
            for i in range(4):
                done = monday + timedelta(days=1)
                deadline = done + timedelta(hours=1) if i < on_time else done - timedelta(hours=1)
                s.add(task(li, dept.id, monday - timedelta(days=3), deadline, done))
                s.add(task(wang, design.id, monday - timedelta(days=3), done + timedelta(hours=1), done))
        s.add(task(li, dept.id, datetime(2026, 11, 10, 10, 0, tzinfo=TZ), datetime(2026, 11, 20, 18, 0, tzinfo=TZ), None))
        s.add(task(li, dept.id, datetime(2026, 11, 28, 10, 0, tzinfo=TZ), datetime(2026, 12, 2, 18, 0, tzinfo=TZ), None))


def _rows(h, like: str) -> list[OutboxMessage]:
    with h.db.transaction() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like(like))
                              .order_by(OutboxMessage.dedupe_key)))
        s.expunge_all()
    return rows


def test_a_falling_department_is_named_in_its_projects_summary_and_to_each_admin_once(make_harness) -> None:
    h = make_harness(start=FRIDAY, admins=("console:赵总", "feishu:ou_boss"))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 2026-11-01 结束 2026-12-31",
          "in 双十二大促群 as 孙九: @bot 绑定项目 双十二 协同负责人 @孙九 参与部门 运营部 开始 2026-11-01 结束 2026-12-31")
    _falling_history(h)
    h.clock.advance(timedelta(hours=8, minutes=10))  # Friday 17:10, past the summary's spread
    h.bot.sweep()

    summaries = {m.target_name: Message.from_json(m.payload).card for m in _rows(h, "summary:%")}
    assert set(summaries) == {"新品上市群", "双十二大促群"}
    fields = dict(summaries["新品上市群"].fields)  # type: ignore[union-attr]
    assert fields["趋势预警"] == ("技术部：按时完成率连续三期下降（100% → 75% → 50% → 25%）；"
                              "技术部：逾期未完成数翻倍（1 → 2）")
    assert "趋势预警" not in dict(summaries["双十二大促群"].fields)  # type: ignore[union-attr]  # 技术部 has no part

    admin_rows = _rows(h, "trend:%")
    assert [(m.platform, m.target_kind, m.target_id) for m in admin_rows] == [
        ("feishu", "user", "ou_boss"), ("console", "user", "赵总")]
    assert all(m.dedupe_key.startswith("trend:2026-W49:dept:") for m in admin_rows)
    text = Message.from_json(admin_rows[1].payload).plain_text
    assert text == ("趋势预警（2026-W49）：技术部：按时完成率连续三期下降（100% → 75% → 50% → 25%）；"
                    "技术部：逾期未完成数翻倍（1 → 2）。查看：报表 部门 技术部")

    # a second sweep, and the same warning worked out again by another instance, add nothing
    h.bot.sweep()
    with h.db.transaction() as s:
        now = h.clock.now()
        n = Notifier(h.bot, s, now)
        trend = WeeklyTrend.load(s, h.bot.calendar, now, set(), n.lang)
        assert [(w.department, w.reason) for w in trend.warnings] == [("技术部", "falling"), ("技术部", "doubled")]
        assert trend.tell_admins(n, h.bot.config.admins, "2026-W49") == 2
        n.flush()
    assert [m.id for m in _rows(h, "trend:%")] == [m.id for m in admin_rows]
    assert len(_rows(h, "summary:%")) == 2


def test_no_warning_no_field_and_no_admin_message(make_harness) -> None:
    h = make_harness(start=FRIDAY, admins=("console:赵总",))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 2026-11-01 结束 2026-12-31",
          f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 截止 12-03 18:00")
    h.run("wait 8h10m")
    [summary] = [Message.from_json(m.payload).card for m in _rows(h, "summary:%")]
    assert summary is not None and "趋势预警" not in dict(summary.fields)
    assert _rows(h, "trend:%") == []
