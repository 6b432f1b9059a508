"""Marking a milestone done, and the record commands in a private chat (the project named, or the person's
only one), through the console on SQLite and PostgreSQL."""

from __future__ import annotations

from collabbot.bot.commands import parse
from collabbot.storage.models import AuditEntry, Meeting, Milestone, OutboxMessage, Risk, Task, WeeklyNote

G = "in 新品上市群 as"
G2 = "in 双十二大促群 as"
BIND = f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部"
TASK = f"{G} 张三: @bot 新建任务 海报 负责人 @李四 截止 12-03 18:00"


def test_a_milestone_is_marked_done_by_number_name_or_task_and_leaves_the_warnings(harness) -> None:
    out = harness.text(BIND, TASK, f"{G} 张三: @bot 里程碑 方案初稿 12-15", f"{G} 张三: @bot 里程碑 #1 海报定稿 12-04")
    assert "已设里程碑「方案初稿」12-15 18:00（#MS1）" in out and "（任务 #1）（#MS2）" in out
    # the task's owner marks his task's milestone; someone else may not mark the project's
    assert "🏁 里程碑「海报定稿」（#MS2）已完成，李四 确认" in harness.text(f"{G} 李四: @bot 里程碑 完成 #1")
    refused = harness.text(f"{G} 李四: @bot 里程碑 完成 方案初稿")
    assert "你不能标记这个里程碑完成：只有项目协同负责人、设立人、相关任务负责人和管理员可以" in refused
    assert "找不到里程碑「方案终稿」。未完成的有：方案初稿" in harness.text(f"{G} 张三: @bot 里程碑 完成 方案终稿")
    listed = harness.text(f"{G} 张三: @bot 里程碑")
    assert "#MS2 12-04 18:00 海报定稿：✓ 已完成 12-01 09:00（任务 #1）" in listed and "已完成 1/2" in listed
    assert "#MS1 12-15 18:00 方案初稿：正常" in listed
    # a milestone done is no longer put at risk when its task goes late (the project's one still is)
    harness.run("wait 3d")
    with harness.db.transaction() as s:
        warned = {r.dedupe_key.split(":milestone:")[1].split(":")[0] for r in s.query(OutboxMessage)
                  if ":milestone:" in r.dedupe_key}
    assert warned == {"1"}
    late = harness.text(f"{G} 张三: @bot 里程碑 完成 #MS1")
    assert "🏁 里程碑「方案初稿」（#MS1）已完成，张三 确认" in late
    assert "已于 12-04 09:00 由 张三 标记完成" in harness.text(f"{G} 张三: @bot 里程碑 完成 #MS1")
    # `里程碑 完成验收 12-20` still adds a milestone named 完成验收
    assert "已设里程碑「完成验收」" in harness.text(f"{G} 张三: @bot 里程碑 完成验收 12-20")
    with harness.db.transaction() as s:
        m = s.get(Milestone, 1)
        assert m.status == "done" and m.done_by_id is not None and m.done_at is not None
        assert [a.outcome for a in s.query(AuditEntry).filter(AuditEntry.action == "milestone.done")] == ["ok", "ok"]


def test_milestone_done_parses_in_english() -> None:
    cmd = parse("milestone done #MS3")
    assert cmd.name == "milestone" and cmd.text == "done #MS3"


def test_record_commands_work_in_a_private_chat_for_the_persons_only_project(harness) -> None:
    harness.run(BIND, TASK)
    listed = harness.text("dm as 李四: 任务列表")  # 李四 is on one project only
    assert "→ 李四（私聊）:" in listed and "任务分工表 · 新品上市" in listed and "#1 海报" in listed
    risk = harness.text("dm as 李四: 风险 新增 描述 供应商交付延迟 可能性 高 影响 中")
    assert "→ 李四（私聊）: 已登记风险 #R1" in risk and "→ 新品上市群: 已登记风险 #R1" in risk  # the group sees it
    assert "风险 #R1 供应商交付延迟" in harness.text("dm as 李四: 风险 #R1")
    assert "已设里程碑「方案初稿」12-15 18:00（#MS1）" in harness.text("dm as 张三: 里程碑 方案初稿 12-15")
    milestones = harness.text("dm as 张三: 里程碑")
    assert "关键里程碑 · 新品上市" in milestones and "方案初稿" in milestones
    minutes = harness.text("dm as 张三: 会议纪要 主题 方案评审 决议 采用方案B\n行动项 内容 改H5 负责人 @李四 截止 12-10")
    assert "→ 新品上市群: 已记录会议纪要 #M1" in minutes and "→ 张三（私聊）: 已记录会议纪要 #M1" in minutes
    urgent = harness.text("dm as 张三: 紧急 服务器宕机 负责人 @赵六")
    assert "→ 新品上市群: 🚨 紧急事务 #3「服务器宕机」" in urgent and "→ 张三（私聊）: 🚨 紧急事务 #3" in urgent
    with harness.db.transaction() as s:
        group = s.get(Task, 1).chat_id
        assert s.get(Risk, 1).chat_id == group and s.get(Meeting, 1).chat_id == group
        assert s.get(Task, 3).chat_id == group and s.get(Task, 3).urgent


def test_in_a_private_chat_the_project_is_named_when_there_are_several(harness) -> None:
    harness.run(BIND, TASK, f"{G2} 张三: @bot 绑定项目 双十二大促 协同负责人 @张三",
                f"{G2} 张三: @bot 新建任务 直播间 负责人 @李四 截止 12-10")
    several = harness.text("dm as 李四: 任务列表")
    assert "你参与了多个项目（新品上市、双十二大促），请写项目名" in several
    named = harness.text("dm as 李四: 任务列表 项目 双十二大促")
    assert "任务分工表 · 双十二大促" in named and "直播间" in named and "海报" not in named
    assert "风险记录表 · 新品上市" in harness.text("dm as 李四: 风险 列表 项目：新品上市")
    assert "找不到项目「大促」" in harness.text("dm as 李四: 任务列表 项目 大促")


def test_a_private_chat_shows_only_the_projects_a_person_belongs_to(harness) -> None:
    harness.run(BIND, TASK, f"{G} 李四: @bot 风险 新增 描述 供应商交付延迟 可能性 高 影响 中",
                f"{G} 张三: @bot 会议纪要 主题 方案评审 决议 采用方案B")
    assert "你不是项目「新品上市」的成员，看不到它的记录" in harness.text("dm as 赵六: 任务列表 项目 新品上市")
    assert "找不到风险 #R1" in harness.text("dm as 赵六: 风险 #R1")
    assert "找不到会议纪要 #M1" in harness.text("dm as 赵六: 会议 #M1")
    assert "私聊里请写项目名" in harness.text("dm as 赵六: 风险 列表")  # no project of his own
    assert "会议纪要 #M1 方案评审" in harness.text("dm as 陈七: 会议 #M1")  # head of a participating department
    with harness.db.transaction() as s:
        refused = s.query(AuditEntry).filter(AuditEntry.outcome == "refused").count()
    assert refused >= 4


def test_a_project_named_in_another_group_is_only_for_its_members(harness) -> None:
    """`项目 新品上市` typed in 双十二大促群 names 新品上市: as in a private chat, only its members (and
    admins) may read or change it from there, and what they add is told in its own group."""
    harness.run(BIND, f"{G2} 孙九: @bot 绑定项目 双十二大促 协同负责人 @孙九", TASK)
    refusal = "你不是项目「新品上市」的成员，不能从这里查看或改动它。请到它的项目群里 @我，或找协同负责人 张三。"
    for line in (f"{G2} 钱总: @bot 任务列表 项目 新品上市",
                 f"{G2} 钱总: @bot 风险 新增 描述 x 可能性 高 影响 高 负责人 @李四 项目 新品上市",
                 f"{G2} 钱总: @bot 紧急 假紧急 负责人 @李四 项目 新品上市",
                 f"{G2} 钱总: @bot 新建任务 插一脚 负责人 @李四 截止 12-10 项目 新品上市"):
        assert refusal in harness.text(line), line
    with harness.db.transaction() as s:
        assert s.query(Risk).count() == 0 and s.query(Task).count() == 1
    # a member may, and the project's own group hears of it
    out = harness.text(f"{G2} 李四: @bot 风险 新增 描述 接口延期 可能性 高 影响 高 负责人 @李四 项目 新品上市")
    assert "→ 新品上市群: 已登记风险 #R1" in out and "→ 双十二大促群: 已登记风险 #R1" in out, out


def test_labels_are_taken_off_only_when_they_stand_apart_and_a_head_writes_a_weekly_note_privately(harness) -> None:
    harness.run(BIND, TASK)
    risk = harness.text(f"{G} 张三: @bot 风险 新增 描述性文档缺失导致验收延误 可能性 高 影响 中 负责人 @李四")
    assert "风险 #R1 描述性文档缺失导致验收延误" in risk, risk  # 描述 is its first word, not a label
    assert "风险 #R2 供应商延期" in harness.text(f"{G} 张三: @bot 风险 新增 描述：供应商延期 可能性 高 影响 中")
    # 本周总结 in a private chat names its project like the other records (or takes the head's only one)
    assert "已记录技术部本周协作总结" in harness.text("dm as 陈七: 本周总结 接口联调完成 项目 新品上市")
    with harness.db.transaction() as s:
        [note] = s.query(WeeklyNote).all()
        assert note.text == "接口联调完成"
    assert "你不是项目「新品上市」的成员" in harness.text("dm as 孙九: 本周总结 运营准备完成 项目 新品上市")


def test_a_milestone_whose_day_has_gone_is_missed_in_the_list_and_the_summary(harness) -> None:
    harness.run(BIND)
    assert "已经过去了" in harness.text(f"{G} 张三: @bot 里程碑 发布会 11-20")  # typed on 12-01: already gone
    harness.run(f"{G} 张三: @bot 里程碑 方案初稿 12-02", "clock 2026-12-04 16:00")
    assert "#MS1 12-02 18:00 方案初稿：✗ 已逾期：到期未标记完成" in harness.text(f"{G} 张三: @bot 里程碑")
    harness.run("wait 2h")  # this Friday's summary
    summary = harness.text("wait 7d")  # next Friday's: a week on, it is still open, so still there
    assert "本周周报如下" in summary and "12-02 18:00 方案初稿（已逾期）" in summary, summary


def test_a_weekly_note_is_the_taking_part_departments_and_keeps_the_names_in_it(harness) -> None:
    harness.run(BIND)
    assert "参与部门的负责人" in harness.text(f"{G} 孙九: @bot 本周总结 运营准备完成")  # 运营部 takes no part
    harness.run(f"{G} 陈七: @bot 本周总结 接口联调完成，@李四 辛苦了")
    with harness.db.transaction() as s:
        [note] = s.query(WeeklyNote).all()
        assert note.text.startswith("接口联调完成") and note.text.endswith("@李四 辛苦了"), note.text


def test_a_risk_closed_in_a_private_chat_is_told_in_the_group(harness) -> None:
    harness.run(BIND, f"{G} 张三: @bot 风险 新增 供应商延期 可能性 高 影响 中")
    out = harness.text("dm as 张三: 风险 关闭 #R1")
    assert "→ 新品上市群:" in out and "#R1" in out.split("→ 新品上市群:")[1], out
