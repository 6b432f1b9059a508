"""结项, the retrospective and the archive's search, end to end through the console on SQLite and PostgreSQL:
closing refuses while work is owed, archives every record and asks the coordinator for the retrospective,
which the nag and escalation rules chase until all three fields are given; 查找 finds records by their
Chinese words, with the department, type and time filters, and only in projects the person may read."""

from __future__ import annotations

from sqlalchemy import func, select

from collabbot.bot.commands import parse
from collabbot.storage.models import ArchiveRecord, OutboxMessage, ProjectArchive, Risk, Task, Wait

G = "in 新品上市群 as"
SETUP = (
    f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 12-01 结束 12-31",
    f"{G} 张三: @bot 新建任务 双十二市场推广方案 负责人 @李四 截止 12-10 交付物 方案PPT",
    f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @赵六 截止 12-12 部门 技术部",
    f"{G} 王五: @bot 风险 新增 描述 供应商交付延迟 可能性 高 影响 中 应对 启用备选供应商 负责人 @李四",
)


def _finish_all(h) -> None:
    for n, who in ((1, "李四"), (2, "赵六")):
        h.run(f"{G} {who}: @bot 开始 #{n}", f"{G} {who}: @bot 完成 #{n} 交付物 https://example.com/{n}",
              f"{G} 张三: @bot 通过 #{n}")


def test_closing_refuses_while_work_is_owed_and_only_for_the_coordinator(harness) -> None:
    harness.run(*SETUP)
    assert "你不能结项" in harness.text(f"{G} 李四: @bot 结项")
    out = harness.text(f"{G} 张三: @bot 结项")
    assert "还有 2 项没有结束：#1、#2" in out
    with harness.db.transaction() as s:
        assert s.query(ProjectArchive).count() == 0 and s.query(ArchiveRecord).count() == 0


def test_closing_archives_the_records_and_the_retrospective_is_chased_until_given(harness) -> None:
    harness.run(*SETUP)
    _finish_all(harness)
    out = harness.text(f"{G} 张三: @bot 结项")
    assert "项目「新品上市」已结项，4 条记录已归档到协作案例库" in out and "请写项目复盘" in out
    assert "项目复盘 · 新品上市" in out and "任务 2，完成 2，按时率 100%" in out and "风险 1" in out
    assert "已经结项了" in harness.text(f"{G} 张三: @bot 结项")
    with harness.db.transaction() as s:
        kinds = sorted(r.kind for r in s.query(ArchiveRecord).all())
        assert kinds == ["project", "risk", "task", "task"]  # the project, its tasks, its risk
        assert s.query(Risk).one().status == "closed"  # open risks end with the project, their waits too
        assert not s.query(Wait).filter(Wait.entity_type == "risk", Wait.answered_at.is_(None)).count()
        assert s.query(ProjectArchive).one().figures["done"] == 2
    assert "写项目「新品上市」的复盘" in harness.text("dm as 张三: 待我处理")
    # unanswered: nagged after two working hours, escalated to 张三's supervisor (赵总) after 24 hours
    nag = harness.text("wait 2h")
    assert "还在等你的复盘" in nag
    assert "赵总" in harness.text("wait 1d")
    # one field at a time: the wait stays until all three are given
    assert "你不能写这个复盘" in harness.text(f"{G} 李四: @bot 复盘 做得好的 很好")
    assert "还缺：不足、改进" in harness.text(f"{G} 张三: @bot 复盘 做得好的 各部门响应及时")
    with harness.db.transaction() as s:
        assert s.query(Wait).filter(Wait.entity_type == "retro", Wait.answered_at.is_(None)).count() == 1
    done = harness.text("dm as 张三: 复盘\n不足 接口联调晚了三天\n改进 提前一周对齐接口")
    assert "复盘已完成" in done and "接口联调晚了三天" in done and "各部门响应及时" in done
    assert "复盘" not in harness.text("dm as 张三: 待我处理")
    with harness.db.transaction() as s:
        archived = s.query(ProjectArchive).one()
        assert archived.fell_short == "接口联调晚了三天" and archived.improve == "提前一周对齐接口"
        assert s.query(Wait).filter(Wait.entity_type == "retro", Wait.answered_at.is_(None)).count() == 0
    chased = len([r for r in _rows(harness) if r.dedupe_key.startswith(("nag:retro", "escalate:retro"))])
    harness.run("wait 3d")
    assert len([r for r in _rows(harness) if r.dedupe_key.startswith(("nag:retro", "escalate:retro"))]) == chased
    # the retrospective is searchable, and shown to a member
    assert "复盘 #P1" in harness.text("dm as 张三: 查找 联调")
    assert "提前一周对齐接口" in harness.text(f"{G} 李四: @bot 复盘")
    assert "你不能查看这个复盘" in harness.text("dm as 孙九: 复盘 #P1")
    assert "「做得好的」写了两次" in harness.text(f"{G} 张三: @bot 复盘 做得好的 a 做得好的 b")


def _rows(h) -> list[OutboxMessage]:
    with h.db.transaction() as s:
        rows = s.query(OutboxMessage).order_by(OutboxMessage.id).all()
        s.expunge_all()
        return rows


def test_search_by_a_two_character_word_with_filters_answered_privately(harness) -> None:
    harness.run(*SETUP)
    _finish_all(harness)
    harness.run(f"{G} 张三: @bot 结项")
    out = harness.text(f"{G} 李四: @bot 查找 推广")
    assert "查找结果已私聊发给你" in out and "任务 #1 双十二市场推广方案" in out and "共 1 条" in out
    rows = [r for r in _rows(harness) if r.card_key == f"search:{_user_id(harness, '李四')}"]
    assert rows and all(r.target_kind == "user" for r in rows)  # the results are the asker's, not the group's
    assert "风险 #R1 供应商交付延迟" in harness.text("dm as 李四: 查找 供应商")
    both = harness.text("dm as 张三: 查找 开发 部门 技术部 类型 任务 时间 2026-12")
    assert "任务 #2 活动H5开发" in both and "新品上市 · 任务 · 2026-12-01 · 市场部、技术部" in both
    assert "没有找到" in harness.text("dm as 张三: 查找 开发 部门 设计部")
    assert "没有找到" in harness.text("dm as 张三: 查找 开发 时间 2025")
    assert "没有找到" in harness.text("dm as 张三: 查找 开发 类型 风险")
    assert "没有找到" in harness.text("dm as 张三: 查找 场推")  # not a word: no LIKE scan
    assert "没有找到" in harness.text("dm as 孙九: 查找 推广")  # not a member of the project
    assert "看不懂类型「文件」" in harness.text("dm as 张三: 查找 推广 类型 文件")
    assert "看不懂时间「去年夏天」" in harness.text("dm as 张三: 查找 推广 时间 去年夏天")
    assert "找不到部门「宣传部」" in harness.text("dm as 张三: 查找 推广 部门 宣传部")
    assert "请写要查找的关键词" in harness.text("dm as 张三: 查找 ，。")
    assert "任务 #1" in harness.text('dm as 张三: 查找 推广"*')  # FTS syntax is punctuation here, dropped
    assert "没有找到" in harness.text('dm as 张三: 查找 推广" OR "供应商')  # OR is a word that must match too


def _user_id(h, name: str) -> int:
    from collabbot.storage.models import User
    with h.db.transaction() as s:
        return s.query(User).filter(User.name == name).one().id


def test_the_new_commands_parse() -> None:
    assert parse("结项").name == "close_project"
    assert parse("close project").name == "close_project"
    assert parse("复盘 做得好的 a").name == "retrospective"
    assert parse("retro #P1").name == "retrospective"
    assert parse("查找 推广 部门 市场部").name == "search_archive"
    assert parse("search launch").name == "search_archive"


def test_a_closed_project_takes_no_new_work_and_its_group_can_bind_the_next(harness) -> None:
    """After 结项 the project's records are final: new tasks and records are refused with what to type
    instead, reading still works, and 绑定项目 starts the group's next project (the old stays archived)."""
    g = "in 新品上市群 as"
    harness.text(f"{g} 张三: @bot 绑定项目 新品上市 协同负责人 @张三")
    assert "已结项" in harness.text(f"{g} 张三: @bot 结项")
    refused = harness.text(f"{g} 张三: @bot 新建任务 补一个 负责人 @李四 截止 12-10")
    assert "已于" in refused and "结项" in refused and "绑定项目 新项目名" in refused
    assert "结项" in harness.text(f"{g} 张三: @bot 风险 新增 描述 供应商延期 可能性 高 影响 中")
    assert "结项" in harness.text(f"{g} 张三: @bot 紧急 客户投诉升级 负责人 @李四")
    request = harness.text(f"{g} 李四: @bot 申请 人力支持申请 支持部门=技术部 人数=1 技能要求=x 支持时间=y 用途=z")
    assert "结项" in request and "已提交审批" not in request  # nor a request, which would stay open in the archive
    info = harness.text(f"{g} 张三: @bot 项目信息")
    assert "新品上市" in info and "已结项" in info  # still readable, shown as closed
    with harness.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Task)) == 0
    bound = harness.text(f"{g} 张三: @bot 绑定项目 二期 协同负责人 @张三")
    assert "已绑定项目「二期」" in bound
    assert "已创建任务 #1" in harness.text(f"{g} 张三: @bot 新建任务 二期首项 负责人 @李四 截止 12-10")
    with harness.db.transaction() as s:
        task = s.scalar(select(Task))
        assert task.project.name == "二期"
        assert s.scalar(select(ProjectArchive.project_id)) != task.project_id  # the old one stays archived


def test_what_was_submitted_to_a_collection_is_not_searchable_its_title_is(harness) -> None:
    """A submission is its requester's alone: the archive indexes the request's title and who was asked."""
    harness.run(*SETUP, f"{G} 张三: @bot 收集 薪资数据 对象 技术部 截止 12-03 18:00",
                "dm as 陈七: 提交 #C1 李四月薪三万五")
    _finish_all(harness)
    harness.run(f"{G} 张三: @bot 结项")
    assert "没有找到" in harness.text("dm as 李四: 查找 月薪三万五")
    assert "收集 #C1 薪资数据" in harness.text("dm as 李四: 查找 薪资")


def test_closing_ends_everything_a_returned_request_a_help_request_notes_and_milestones(harness) -> None:
    """A returned request may come back, so it is owed; an open help request ends with the project (nobody
    is chased for support to a project that is over); afterwards nothing new starts in it."""
    budget = "申请 市场活动预算审批 活动方案=快闪店 预算金额=5万 预算明细=场地 预期效果=会员 协作部门=技术部"
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部",
                f"{G} 张三: @bot 里程碑 方案初稿 12-15", f"{G} 吴十: @bot {budget}", "dm as 张三: 同意 #A1",
                "dm as 陈七: 驳回 #A1 预算不清")
    refused = harness.text(f"{G} 张三: @bot 结项")
    assert "还有 1 项没有结束：#A1" in refused and "撤回 #A编号" in refused, refused
    harness.run(f"{G} 吴十: @bot 撤回 #A1", f"{G} 李四: @bot 求助 技术部 需要接口文档")
    closed = harness.text(f"{G} 张三: @bot 结项")
    assert "已结项" in closed, closed
    with harness.db.transaction() as s:
        assert s.scalar(select(Wait.id).where(Wait.entity_type == "help", Wait.answered_at.is_(None))) is None
    harness.run("wait 3d")
    assert "求助 #H1" not in harness.text("dm as 陈七: 待我处理")
    for line in (f"{G} 李四: @bot 求助 技术部 还需要一个后端", f"{G} 陈七: @bot 本周总结 接口联调完成",
                 f"{G} 张三: @bot 里程碑 完成 #MS1", f"{G} 张三: @bot 里程碑 上线 12-20"):
        said = harness.text(line)
        assert "已于" in said and "结项" in said, (line, said)


def test_closing_from_a_private_chat_is_told_in_the_group_and_asks_the_coordinator_once(harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三")
    out = harness.text("dm as 张三: 结项 项目 新品上市")
    assert "→ 新品上市群: 项目「新品上市」已结项" in out, out
    assert out.count("→ 张三（私聊）") == 1, out  # the request for the retrospective, not the news twice


def test_a_name_mentioned_in_a_retrospective_stays_a_name(harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三", f"{G} 张三: @bot 结项")
    out = harness.text(f"{G} 张三: @bot 复盘\n做得好的：沟通及时\n不足：@李四 联调晚了\n改进：提前对齐")
    assert "@李四 联调晚了" in out and "0 联调晚了" not in out, out
    with harness.db.transaction() as s:
        assert s.scalar(select(ProjectArchive.fell_short)) == "@李四 联调晚了"


def test_a_project_number_tells_nobody_outside_it_what_the_project_is(harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三")
    said = harness.text("dm as 钱总: 复盘 #P1")
    assert "你不能查看这个复盘" in said and "新品上市" not in said, said
    assert "还没有结项" in harness.text("dm as 张三: 复盘 #P1")  # its coordinator is told why
