"""Every task command through the console platform: happy paths, refusals and malformed input,
on SQLite and PostgreSQL (the `db` fixture runs each test on both)."""

from __future__ import annotations

from sqlalchemy import func, select

from collabbot.storage.models import (
    AuditEntry,
    Comment,
    HelpRequest,
    InboundReceipt,
    OutboxMessage,
    Project,
    Task,
    TaskDependency,
    Wait,
)

G = "in 新品上市群 as"


def count(db, model, *where) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def task(db, task_id: int) -> Task:
    with db.transaction() as s:
        t = s.get(Task, task_id)
        assert t is not None
        s.expunge(t)
        return t


def create(h, owner: str = "李四", extra: str = "截止 12-10") -> str:
    return h.text(f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @{owner} 协作 @王五 {extra} 优先级 高")


def test_create_task_binds_the_group_and_tells_the_owner(harness) -> None:
    out = create(harness)
    assert "本群已自动绑定项目「新品上市群」" in out
    assert "已创建任务 #1「活动H5开发」，负责人 @李四，协作 @王五" in out
    assert "→ 李四（私聊）: 你有一个新任务，请确认收到" in out
    assert "[确认收到]" in out
    t = task(harness.db, 1)
    assert (t.status, t.priority, t.percent) == ("todo", "high", 0)
    assert t.deadline is not None and t.deadline.astimezone(harness.bot.calendar.tz).strftime("%m-%d %H:%M") == "12-10 18:00"
    assert count(harness.db, Wait, Wait.kind == "assign", Wait.answered_at.is_(None)) == 1
    assert count(harness.db, AuditEntry, AuditEntry.action == "task.create") == 1


def test_acknowledge_by_tap_updates_the_card_and_closes_the_wait(harness) -> None:
    create(harness)
    out = harness.text(f"{G} 李四: tap 确认收到")
    assert "仅 李四 可见: 已确认收到任务 #1" in out
    assert "卡片已更新" in out
    assert task(harness.db, 1).acknowledged_at is not None
    assert count(harness.db, Wait, Wait.answered_at.is_(None)) == 0


def test_only_the_owner_may_acknowledge_and_the_refusal_is_audited(harness) -> None:
    create(harness)
    out = harness.text(f"{G} 王五: tap 确认收到")
    assert "你不能确认这个任务：只有负责人 李四 可以" in out
    assert task(harness.db, 1).acknowledged_at is None
    assert count(harness.db, AuditEntry, AuditEntry.outcome == "refused") == 1


def test_a_tap_on_an_older_card_is_judged_on_the_current_state(harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 确认收到 #1")
    out = harness.text("dm as 李四: tap 确认收到")  # his copy, drawn before the acknowledgement: said so, refreshed
    assert "任务 #1 已经确认过了" in out and "卡片已更新" in out and "[确认收到]" not in out.split("卡片已更新")[1]
    assert count(harness.db, AuditEntry, AuditEntry.action == "task.acknowledge") == 1


def test_missing_and_malformed_fields_say_which_with_an_example(harness) -> None:
    assert "缺少负责人。例如：新建任务" in harness.text(f"{G} 张三: @bot 新建任务 活动页")
    assert "缺少任务标题" in harness.text(f"{G} 张三: @bot 新建任务 负责人 @李四")
    out = harness.text(f"{G} 张三: @bot 新建任务 活动页 负责人 @李四 截止 下周八")
    assert "截止时间「下周八」看不懂。例如：截止 12-10 18:00" in out
    assert "优先级「超高」看不懂" in harness.text(f"{G} 张三: @bot 新建任务 活动页 负责人 @李四 优先级 超高")
    assert "截止时间 11-30 18:00 已经过去了" in harness.text(f"{G} 张三: @bot 新建任务 活动页 负责人 @李四 截止 2026-11-30")
    assert count(harness.db, Task) == 0
    assert count(harness.db, Project) == 0  # the auto-bind rolled back with the refused command


def test_unknown_command_suggests(harness) -> None:
    out = harness.text(f"{G} 张三: @bot 新建任物 活动页")
    assert "没有「新建任物 活动页」这个命令。你是不是想用：新建任务" in out


def test_an_unknown_command_suggests_the_english_names_in_english(make_harness) -> None:
    h = make_harness(language="en")
    out = h.text(f"{G} 张三: @bot acknowlege #1")
    assert 'There is no command "acknowlege #1". Did you mean: ' in out, out
    names = out.split("Did you mean: ")[1].split("?")[0].split(", ")
    assert "ack" in names and all(name.isascii() for name in names), out  # the English names, not 确认收到


def test_group_chatter_without_a_mention_is_ignored(harness) -> None:
    assert harness.run(f"{G} 张三: 新建任务 活动页 负责人 @李四") == []
    assert count(harness.db, InboundReceipt) == 0


def test_subtasks_dependencies_and_cycles(harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 子任务 #1 视觉设计 负责人 @王五 截止 12-04",
                f"{G} 李四: @bot 子任务 #1 前端开发 负责人 @赵六 截止 12-08")
    assert task(harness.db, 2).parent_id == 1
    assert "#3 需等待 #2 完成" in harness.text(f"{G} 李四: @bot 依赖 #3 #2")
    assert "#3 已经在等待 #2 完成，无需重复设置" in harness.text(f"{G} 李四: @bot 依赖 #3 #2")  # said, not blank
    out = harness.text(f"{G} 李四: @bot 依赖 #2 #3")
    assert "会形成循环：#2 → #3 → #2" in out
    harness.run(f"{G} 李四: @bot 子任务 #1 测试 负责人 @赵六 截止 12-09", f"{G} 李四: @bot 依赖 #4 #3")
    assert "#2 → #4 → #3 → #2" in harness.text(f"{G} 李四: @bot 依赖 #2 #4")
    assert count(harness.db, TaskDependency) == 2
    assert "子任务截止时间不能晚于主任务" in harness.text(f"{G} 李四: @bot 子任务 #1 X 负责人 @赵六 截止 12-20")
    assert "任务不能依赖自己" in harness.text(f"{G} 李四: @bot 依赖 #2 #2")
    assert "你不能设置这个任务的依赖" in harness.text(f"{G} 吴十: @bot 依赖 #2 #4")
    assert "已取消：#3 不再等待 #2" in harness.text(f"{G} 李四: @bot 取消依赖 #3 #2")


def test_blocked_task_cannot_start_or_finish(harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 子任务 #1 设计 负责人 @王五", f"{G} 李四: @bot 子任务 #1 开发 负责人 @赵六",
                f"{G} 李四: @bot 依赖 #3 #2")
    out = harness.text(f"{G} 赵六: @bot 开始 #3")
    assert "任务 #3 还在等待前置任务完成：#2「设计」" in out
    assert "阻塞" in harness.text("dm as 赵六: 任务 #3")


def test_progress_finish_accept_and_unblock(harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 子任务 #1 设计 负责人 @王五", f"{G} 李四: @bot 子任务 #1 开发 负责人 @赵六",
                f"{G} 李四: @bot 依赖 #3 #2")
    out = harness.text(f"{G} 王五: @bot 进度 #2 60% 完成 首页 下一步 活动页 问题 缺商品图")
    assert "任务 #2 进度已更新：60%" in out
    t = task(harness.db, 2)
    assert (t.status, t.percent) == ("in_progress", 60)
    assert "缺少交付物" in harness.text(f"{G} 王五: @bot 完成 #2")
    out = harness.text(f"{G} 王五: @bot 完成 #2 交付物 https://design.example.com/v1")
    assert "任务 #2 已提交，等待 李四 验收" in out
    assert "→ 李四（私聊）: 任务 #2「设计」已提交，请验收" in out
    assert "你不能验收这个任务" in harness.text(f"{G} 吴十: @bot 通过 #2")
    out = harness.text(f"{G} 李四: @bot 通过 #2")
    assert "任务 #2「设计」已验收通过" in out
    assert "→ 赵六（私聊）: @赵六 任务 #3「开发」的前置任务都已完成，可以开始了" in out
    assert task(harness.db, 2).status == "done"


def test_parent_cannot_finish_with_open_subtasks_and_return_needs_a_reason(harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 子任务 #1 设计 负责人 @王五")
    assert "还有未完成的子任务：#2" in harness.text(f"{G} 李四: @bot 完成 #1 交付物 x")
    harness.run(f"{G} 王五: @bot 完成 #2 交付物 稿件", f"{G} 李四: @bot 通过 #2",
                f"{G} 李四: @bot 完成 #1 交付物 https://h5.example.com")
    assert "缺少原因" in harness.text(f"{G} 张三: @bot 退回 #1")
    out = harness.text(f"{G} 张三: @bot 退回 #1 原因 缺少埋点")
    assert "任务 #1 被退回，原因：缺少埋点" in out
    assert task(harness.db, 1).status == "in_progress"
    assert "不能验收这个任务" in harness.text(f"{G} 张三: @bot 通过 #1")  # not in review any more


def test_a_returned_task_shows_the_share_last_reported_short_of_done(harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 进度 #1 60% 完成 首页", f"{G} 李四: @bot 进度 #1 100% 完成 全部",
                f"{G} 李四: @bot 完成 #1 交付物 https://h5.example.com")
    assert task(harness.db, 1).percent == 100
    harness.run(f"{G} 张三: @bot 退回 #1 原因 缺少埋点")
    assert (task(harness.db, 1).status, task(harness.db, 1).percent) == ("in_progress", 60)
    create(harness)  # #2: handed in without a single progress report
    harness.run(f"{G} 李四: @bot 完成 #2 交付物 稿件", f"{G} 张三: @bot 退回 #2 原因 不全")
    assert task(harness.db, 2).percent == 0


def test_progress_is_for_the_owner_and_percent_is_checked(harness) -> None:
    create(harness)
    assert "只有负责人 李四 可以" in harness.text(f"{G} 王五: @bot 进度 #1 30%")
    assert "缺少完成比例" in harness.text(f"{G} 李四: @bot 进度 #1 完成 首页")
    assert "完成比例要在 0 到 100 之间" in harness.text(f"{G} 李四: @bot 进度 #1 150%")
    assert "找不到任务 #99" in harness.text(f"{G} 李四: @bot 进度 #99 30%")


def test_reassign_rules(harness) -> None:
    create(harness)
    assert "你不能转交这个任务" in harness.text(f"{G} 吴十: @bot 转交 #1 @赵六")
    # 陈七 heads 技术部: may move the task within the department, not outside it
    assert "你不能转交这个任务" in harness.text(f"{G} 陈七: @bot 转交 #1 @吴十")
    out = harness.text(f"{G} 陈七: @bot 转交 #1 @赵六 原因 人手调整")
    assert "任务 #1 已转交给 @赵六（原负责人 李四）" in out
    assert "→ 赵六（私聊）: 你有一个新任务" in out
    t = task(harness.db, 1)
    assert t.owner_id != 0 and t.acknowledged_at is None
    with harness.db.transaction() as s:
        waits = list(s.scalars(select(Wait).order_by(Wait.id)))
        assert [w.answered_at is None for w in waits] == [False, True]
    assert "已经是任务 #1 的负责人" in harness.text(f"{G} 张三: @bot 转交 #1 @赵六")
    # to another department: the work is that department's now, and so are its figures
    assert "已转交给 @吴十" in harness.text(f"{G} 张三: @bot 转交 #1 @吴十")
    with harness.db.transaction() as s:
        assert s.get(Task, 1).department.name == "市场部"


def test_comment_mentions_and_help_requests(harness) -> None:
    create(harness)
    out = harness.text(f"{G} 王五: @bot 评论 #1 @李四 请看一下设计稿")
    assert "#1 评论：请看一下设计稿 @李四" in out
    assert count(harness.db, Comment) == 1
    out = harness.text(f"{G} 李四: @bot 求助 设计部 需要一名设计师支援 #1")
    assert "已向 设计部负责人 发出求助 #H1" in out
    assert "→ 周八（私聊）: 李四 向你求助 #H1：需要一名设计师支援" in out
    assert "这条求助是发给 周八 的" in harness.text(f"{G} 王五: @bot 答复 #H1 好")
    # an answer with nothing in it is asked for, not taken (it would close the request)
    assert "缺少答复内容。例如：答复 #H3 已安排小王支援" in harness.text(f"{G} 周八: @bot 答复 #H1")
    out = harness.text("dm as 周八: tap 已处理")
    assert "求助 #H1 已处理" in out
    with harness.db.transaction() as s:
        req = s.get(HelpRequest, 1)
        assert req is not None and req.status == "answered"
    assert "找不到部门「法务部」" in harness.text(f"{G} 李四: @bot 求助 法务部 需要审合同")


def test_queries(harness) -> None:
    create(harness)
    harness.run(f"{G} 张三: @bot 新建任务 物料 负责人 @李四 截止 12-02")
    harness.clock.set(harness.clock.now().replace(day=3))
    out = harness.text("dm as 李四: 我的任务")
    assert out.index("【已延期】") < out.index("#2 物料") < out.index("【待启动】") < out.index("#1 活动H5开发")
    out = harness.text("dm as 李四: 待我处理")
    assert "确认收到任务 #1「活动H5开发」" in out and "任务 #2「物料」已延期" in out
    out = harness.text("dm as 李四: 任务 #1")
    assert "发起人：张三" in out and "创建" in out
    assert "你现在没有进行中的任务" in harness.text("dm as 吴十: 我的任务")
    out = harness.text("dm as 吴十: 帮助")
    assert "新建任务 / task new" in out and "待我处理 / todo" in out


def test_project_binding_and_permissions(harness) -> None:
    out = harness.text(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 目标 上线 "
                       "KPI 转化3% 开始 12-01 结束 12-31")
    assert "已绑定项目「新品上市」" in out and "参与部门：市场部、技术部" in out
    assert "你不能修改本群的项目" in harness.text(f"{G} 李四: @bot 绑定项目 别的名字")
    assert "找不到部门「财务部」" in harness.text(f"{G} 张三: @bot 绑定项目 参与部门 财务部")
    assert "项目「新品上市」信息已更新" in harness.text(f"{G} 张三: @bot 绑定项目 目标 双十二上线")
    assert "请在项目群里" in harness.text("dm as 张三: 绑定项目 X")
    with harness.db.transaction() as s:
        project = s.scalar(select(Project))
        assert project is not None and project.goal == "双十二上线" and str(project.end_date) == "2026-12-31"


def test_a_retried_event_changes_nothing(harness) -> None:
    from collabbot.bot.events import ChatRef, MessageEvent, UserRef, mention_marker

    event = MessageEvent("evt-1", ChatRef("console", "新品上市群", "新品上市群"), UserRef("console", "张三", "张三"),
                         f"新建任务 A 负责人 {mention_marker(0)}", (UserRef("console", "李四", "李四"),))
    harness.bot.handle(event)
    before = count(harness.db, OutboxMessage)
    harness.bot.handle(event)
    assert count(harness.db, Task) == 1
    assert count(harness.db, OutboxMessage) == before


def test_admin_may_do_anything(make_harness) -> None:
    h = make_harness(admins=("console:孙九",))
    create(h)
    assert "已确认收到任务 #1" in h.text(f"{G} 孙九: @bot 确认收到 #1")
    assert "任务 #1 已取消" in h.text(f"{G} 孙九: @bot 取消任务 #1")


def test_english_replies_when_configured(make_harness) -> None:
    h = make_harness(language="en")
    out = h.text(f"{G} 张三: @bot task new Campaign-H5 owner @李四 due fri priority high")
    assert "Created task #1 \"Campaign-H5\", owner @李四" in out
    assert "[Acknowledge]" in out
    assert "Missing the owner. For example: task new" in h.text(f"{G} 张三: @bot task new X")
    assert "There is no command" in h.text(f"{G} 张三: @bot frobnicate")
    out = h.text("dm as 李四: help")
    assert out.count("•") >= 20 and "task new / 新建任务" in out


def test_project_info_and_weekly_note_permissions(harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 目标 双十二上线")
    out = harness.text(f"{G} 李四: @bot 项目信息")
    assert "项目「新品上市」" in out and "目标：双十二上线" in out
    assert "只有部门负责人可以" in harness.text(f"{G} 李四: @bot 本周总结 完成联调")
    assert "已记录技术部本周协作总结" in harness.text(f"{G} 陈七: @bot 本周总结 完成联调")
    assert "本群还没有绑定项目" in harness.text("in 双十二大促群 as 张三: @bot 项目信息")


def test_only_the_initiator_the_coordinator_or_an_admin_cancels(harness) -> None:
    """The refusal names who may cancel: the owner is not among them (nor said to be)."""
    create(harness)
    out = harness.text(f"{G} 李四: @bot 取消任务 #1")
    assert "只有发起人、协同负责人或管理员可以" in out and "负责人、协同" not in out
    assert task(harness.db, 1).status != "cancelled"
    assert "任务 #1 已取消" in harness.text(f"{G} 张三: @bot 取消任务 #1")


def test_a_cancelled_task_is_shown_as_cancelled_and_refused_as_such(harness) -> None:
    """Not "找不到任务": its card (已取消, no buttons) and its trail can still be read; acting on it is refused
    with what it is and what to send instead."""
    create(harness)
    harness.run(f"{G} 张三: @bot 取消任务 #1")
    shown = harness.text(f"{G} 李四: @bot 任务 #1")
    assert "任务 #1 活动H5开发 【已取消】" in shown and "[确认收到]" not in shown
    assert "张三 取消" in harness.text(f"{G} 李四: @bot 操作记录 #1")
    assert "任务 #1 已取消，不能再操作。发送「任务 #1」查看。" in harness.text(f"{G} 李四: @bot 确认收到 #1")
    assert "找不到任务 #9" in harness.text(f"{G} 李四: @bot 任务 #9")


def test_cancelling_a_task_cancels_its_open_subtasks_and_stops_the_help_it_asked_for(harness) -> None:
    create(harness)
    harness.run(f"{G} 李四: @bot 子任务 #1 视觉设计 负责人 @王五 截止 12-04",
                f"{G} 李四: @bot 子任务 #2 切图 负责人 @赵六 截止 12-04",
                f"{G} 李四: @bot 求助 设计部 需要一名设计师支援 #1")
    out = harness.text(f"{G} 张三: @bot 取消任务 #1")
    assert "任务 #1 已取消。子任务 #2、#3 一并取消。" in out
    assert "→ 王五（私聊）: 任务 #2「视觉设计」已随主任务 #1 取消，无需再处理。" in out
    assert [task(harness.db, i).status for i in (1, 2, 3)] == ["cancelled"] * 3
    with harness.db.transaction() as s:  # nobody is chased any more: the subtasks' owners, the design head
        assert s.scalar(select(func.count()).select_from(Wait).where(Wait.answered_at.is_(None))) == 0


def test_taking_a_task_on_oneself_needs_no_acknowledgement(harness) -> None:
    create(harness)
    out = harness.text(f"{G} 张三: @bot 转交 #1 @张三")
    assert "请确认收到" not in out and task(harness.db, 1).acknowledged_at is not None


def test_a_reassignment_made_in_private_is_announced_in_the_tasks_group(harness) -> None:
    create(harness)
    out = harness.text("dm as 张三: 转交 #1 @赵六")
    assert "→ 新品上市群: 任务 #1 已转交给 @赵六" in out and "→ 张三（私聊）: 任务 #1 已转交给 @赵六" in out
