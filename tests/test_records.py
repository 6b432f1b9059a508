"""The project's records through the console platform, on SQLite and PostgreSQL: 任务列表 (the
任务分工表) filtered and paged, every platform's card for it within that platform's limits."""

from __future__ import annotations

import pytest

from collabbot.bot.replies import Message
from collabbot.cards.render import PLATFORMS, render_message
from collabbot.storage.models import Meeting, OutboxMessage, Task

G = "in 新品上市群 as"
SETUP = (
    f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部 开始 12-01 结束 12-31",
    f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 协作 @王五 截止 12-10 优先级 高 交付物 H5链接",
    f"{G} 张三: @bot 新建任务 海报 负责人 @赵六 截止 12-03 12:00",
    f"{G} 张三: @bot 新建任务 文案 负责人 @吴十 截止 12-01 12:00",
    f"{G} 张三: @bot 依赖 #1 #2",
)


def test_the_task_list_is_the_projects_table_most_pressing_first(harness) -> None:
    harness.run(*SETUP, "wait 1d")
    out = harness.text(f"{G} 王五: @bot 任务列表")
    assert "任务分工表 · 新品上市" in out and "共 3 项" in out
    assert "#1 活动H5开发：阻塞 · 待启动｜负责人 李四｜截止 12-10 18:00｜协作 王五｜交付物 H5链接｜优先级 高｜依赖 #2" in out
    # 文案 is overdue, so it comes first; the blocked #1 before the plain todo #2
    assert out.index("#3 文案") < out.index("#1 活动H5开发") < out.index("#2 海报")
    assert "已延期" in out and "第 1/1 页" in out and "下一页" not in out


def test_filters_by_status_department_and_person(harness) -> None:
    harness.run(*SETUP, "wait 1d")
    by_status = harness.text(f"{G} 张三: @bot 任务列表 状态 已延期")
    assert "#3 文案" in by_status and "#1 活动H5开发" not in by_status and "共 1 项 · 已延期" in by_status
    blocked = harness.text(f"{G} 张三: @bot 任务列表 阻塞")
    assert "#1 活动H5开发" in blocked and "#2 海报" not in blocked
    by_dept = harness.text(f"{G} 张三: @bot 任务列表 部门 技术部")
    assert "#1 活动H5开发" in by_dept and "#3 文案" not in by_dept
    by_person = harness.text(f"{G} 张三: @bot 任务列表 @王五")  # a collaborator counts
    assert "#1 活动H5开发" in by_person and "#2 海报" not in by_person and "共 1 项 · 王五" in by_person
    # README's order: a mention after a department or a status is the person filter, not part of the name
    both = harness.text(f"{G} 张三: @bot 任务列表 部门 技术部 @王五")
    assert "#1 活动H5开发" in both and "共 1 项 · 技术部 · 王五" in both
    assert "共 1 项" in harness.text(f"{G} 张三: @bot 任务列表 状态 未完成 @王五")
    english = harness.text(f"{G} 张三: @bot tasks all status overdue")
    assert "#3 文案" in english and "#2 海报" not in english
    assert "看不懂状态「快好了」" in harness.text(f"{G} 张三: @bot 任务列表 状态 快好了")
    assert "找不到部门「宣传部」" in harness.text(f"{G} 张三: @bot 任务列表 部门 宣传部")
    assert "没有符合条件的任务" in harness.text(f"{G} 张三: @bot 任务列表 已取消")


def test_a_long_list_is_paged_and_every_platform_takes_each_page(harness) -> None:
    harness.run(SETUP[0], *(f"{G} 张三: @bot 新建任务 任务{n:02d} 负责人 @李四 截止 12-{n + 1:02d}" for n in range(1, 24)))
    first = harness.text(f"{G} 张三: @bot 任务列表")
    assert "共 23 项" in first and "第 1/3 页" in first and "下一页：任务列表 页 2" in first
    assert "#1 任务01" in first and "#10 任务10" in first and "#11 任务11" not in first
    third = harness.text(f"{G} 张三: @bot 任务列表 页 3")
    assert "#21 任务21" in third and "#23 任务23" in third and "#20 任务20" not in third and "第 3/3 页" in third
    assert "没有第 4 页（共 3 页）" in harness.text(f"{G} 张三: @bot 任务列表 页 4")
    assert "页码「0」不对" in harness.text(f"{G} 张三: @bot 任务列表 页 0")
    with harness.db.transaction() as s:
        row = s.query(OutboxMessage).filter(OutboxMessage.card_key.like("tasklist:%")).order_by(OutboxMessage.id).first()
        assert row is not None
        message = Message.from_json(row.payload)
    assert message.card is not None and len(message.card.fields) == 10
    for platform in PLATFORMS:
        assert render_message(platform, message)  # shortened where the platform needs it, never refused


def test_in_a_private_chat_the_list_asks_which_project(harness) -> None:
    assert "私聊里请写项目名，例如：任务列表 项目 项目名" in harness.text("dm as 张三: 任务列表")  # in the command typed


@pytest.mark.parametrize("text", ["任务列表 状态 进行中 部门 技术部", "tasks all status in_progress dept 技术部 page 2"])
def test_the_list_command_parses(text: str) -> None:
    from collabbot.bot.commands import parse
    cmd = parse(text)
    assert cmd.name == "list_tasks" and cmd.get("status") and cmd.get("department") == "技术部"


def test_an_urgent_matter_is_answered_within_the_configured_time_or_chased_hard(make_harness) -> None:
    from datetime import datetime

    from tests.conftest import TZ

    # Friday 17:00: the urgent rhythm runs at any hour, evenings and the weekend included
    h = make_harness(start=datetime(2026, 12, 4, 17, 0, tzinfo=TZ))
    h.run(SETUP[0])
    out = h.text(f"{G} 张三: @bot 紧急 客户投诉升级 负责人 @李四 协作部门 设计部,运营部")
    assert "紧急事务 #1「客户投诉升级」，请在 12-05 17:00 前响应" in out and "@周八" in out and "@孙九" in out
    with h.db.transaction() as s:
        rows = s.query(OutboxMessage).order_by(OutboxMessage.id).all()
        urgent = {(r.target_kind, r.target_name or r.target_id) for r in rows if r.payload.get("urgent")}
        task = s.get(Task, 1)
        assert task.urgent and task.priority == "high"
    assert ("user", "李四") in urgent and ("user", "周八") in urgent and ("user", "孙九") in urgent
    h.run(f"{G} 张三: @bot 新建任务 普通任务 负责人 @王五 截止 12-20")
    listed = h.text(f"{G} 张三: @bot 任务列表")
    assert listed.index("#1 客户投诉升级") < listed.index("#2 普通任务") and "紧急 · 待启动" in listed
    # an hour later (after working time): the first nag, urgent; an ordinary task's nag waits for Monday
    nag = h.text("wait 61m")
    assert "客户投诉升级" in nag and "普通任务" not in nag
    with h.db.transaction() as s:
        nags = [r for r in s.query(OutboxMessage).all() if r.dedupe_key.startswith("nag:task:1:")]
        assert nags and all(r.payload.get("urgent") for r in nags)
    # unanswered 24 hours: escalated to his supervisor (陈七), urgent, on Saturday evening
    esc = h.text("wait 23h")
    assert "陈七" in esc
    with h.db.transaction() as s:
        escalations = [r for r in s.query(OutboxMessage).all() if r.dedupe_key.startswith("escalate:task:1:")]
        assert escalations and any(r.payload.get("urgent") for r in escalations)
        assert not [r for r in s.query(OutboxMessage).all() if r.dedupe_key.startswith("nag:task:2:")]


def test_an_urgent_matter_answered_in_time_is_chased_no_more(make_harness) -> None:
    from datetime import datetime

    from tests.conftest import TZ

    h = make_harness(start=datetime(2026, 12, 4, 17, 0, tzinfo=TZ))
    h.run(SETUP[0], f"{G} 张三: @bot 紧急 服务器宕机 负责人 @李四", f"{G} 李四: @bot 确认收到 #1")
    h.run("wait 2d")
    with h.db.transaction() as s:
        chased = [r.dedupe_key for r in s.query(OutboxMessage).all() if r.dedupe_key.startswith(("nag:", "escalate:"))]
    assert chased == []
    assert "找不到部门「客服部」" in h.text(f"{G} 张三: @bot 紧急 投诉 负责人 @李四 协作部门 客服部")
    assert "负责人" in h.text(f"{G} 张三: @bot 紧急 投诉")


def test_the_risk_register_create_chase_answer_escalate_close(harness) -> None:
    harness.run(SETUP[0])
    out = harness.text(f"{G} 王五: @bot 风险 新增 描述 供应商交付延迟 可能性 高 影响 中 应对 启用备选供应商 负责人 @李四")
    assert "已登记风险 #R1，负责人 @李四" in out and "风险 #R1 供应商交付延迟" in out and "风险等级：高" in out
    assert "你是风险 #R1 的负责人" in out
    harness.run(f"{G} 王五: @bot 风险 新增 海报印刷色差 可能性 低 影响 低")  # 王五 owns it and owes the response
    listed = harness.text(f"{G} 张三: @bot 风险 列表")
    assert "风险记录表 · 新品上市" in listed and "未关闭 2 · 已关闭 0" in listed
    assert listed.index("#R1 供应商交付延迟") < listed.index("#R2 海报印刷色差")
    assert "确认风险 #R1 的应对" in harness.text("dm as 李四: 待我处理")
    # unanswered: nagged after two working hours, escalated to 李四's supervisor after 24 hours
    nag = harness.text("wait 2h")
    assert "风险 #R1 还在等你确认应对措施：供应商交付延迟" in nag
    esc = harness.text("wait 1d")
    assert "陈七" in esc and "风险 #R1 的应对待确认" in esc
    # the owner answers: no more reminders about it
    assert "风险 #R1 已更新" in harness.text(f"{G} 李四: @bot 风险 更新 #R1 可能性 低 应对 已签备选供应商")
    assert "确认风险 #R1" not in harness.text("dm as 李四: 待我处理")
    assert "你不能修改这个风险" in harness.text(f"{G} 赵六: @bot 风险 关闭 #R1")
    closed = harness.text(f"{G} 张三: @bot 风险 关闭 #R1")  # the coordinator
    assert "风险 #R1 已关闭" in closed
    assert "未关闭 1 · 已关闭 1" in harness.text(f"{G} 张三: @bot 风险 列表")
    assert "风险 #R1 已关闭，不能再修改" in harness.text(f"{G} 张三: @bot 风险 更新 #R1 影响 高")
    assert "风险 #R1 供应商交付延迟" in harness.text(f"{G} 张三: @bot 风险 #R1")


def test_the_risk_register_refuses_what_it_cannot_file(harness) -> None:
    harness.run(SETUP[0])
    assert "可能性" in harness.text(f"{G} 张三: @bot 风险 新增 供应商延迟 影响 中")
    assert "可能性" in harness.text(f"{G} 张三: @bot 风险 新增 供应商延迟 可能性 超高 影响 中")
    assert "风险描述" in harness.text(f"{G} 张三: @bot 风险 新增 可能性 高 影响 中")
    assert "找不到风险 #R9" in harness.text(f"{G} 张三: @bot 风险 关闭 #R9")
    assert "看不懂「删除」" in harness.text(f"{G} 张三: @bot 风险 删除 #R1")
    assert "风险记录表 · 新品上市" in harness.text("dm as 张三: 风险 列表")  # his only project, in private chat


def test_an_open_high_risk_appears_in_the_weekly_summary(harness) -> None:
    harness.run(SETUP[0],
                f"{G} 张三: @bot 风险 新增 供应商交付延迟 可能性 中 影响 高 应对 备选供应商",
                f"{G} 张三: @bot 风险 新增 海报印刷色差 可能性 低 影响 低 应对 打样",
                f"{G} 张三: @bot 风险 新增 场地取消 可能性 高 影响 高 应对 备选场地",
                f"{G} 张三: @bot 风险 关闭 #R3")
    out = harness.run("wait 4d")  # Friday 12-04 17:00
    start = [i for i, line in enumerate(out) if "本周周报如下" in line]
    assert len(start) == 1, out
    card = "\n".join(out[start[0]:start[0] + 14])
    assert "未关闭的高风险：#R1 供应商交付延迟（张三）" in card
    assert "海报印刷色差" not in card and "场地取消" not in card


def test_meeting_minutes_turn_action_items_into_tasks_chased_like_any_task(harness) -> None:
    from dataclasses import replace

    from collabbot.adapters.console.transcript import parse_line

    harness.run(SETUP[0])
    # one multi-line message, as typed in the chat
    step = parse_line(f"{G} 张三: @bot 会议纪要")
    text = ("@bot 会议纪要 主题 双十二方案评审 时间 12-01 14:00 参与部门 市场部,技术部 摘要 比较了两个方案 决议 采用方案B\n"
            "行动项 内容 完成H5改版 负责人 @李四 截止 12-10\n"
            "行动项 内容 准备物料清单 负责人 @王五 截止 12-08 18:00")
    harness.console.run(replace(step, text=text))
    out = "\n".join(harness.console.take_output())
    assert "已记录会议纪要 #M1，2 个行动项已转为任务：" in out and "@李四" in out and "@王五" in out
    assert "会议纪要 #M1 双十二方案评审" in out and "决议：采用方案B" in out and "参与部门：市场部,技术部" in out
    assert "行动项 #1 完成H5改版：负责人 李四｜截止 12-10 18:00｜待启动" in out
    assert "会议纪要 #M1「双十二方案评审」的行动项交给你了" in out
    # the action items are tasks: linked back, acknowledged, chased
    assert "来自会议纪要 #M1「双十二方案评审」" in harness.text(f"{G} 张三: @bot 任务 #2")
    harness.run(f"{G} 李四: @bot 确认收到 #1", f"{G} 李四: @bot 完成 #1 交付物 https://h5.example.com",
                f"{G} 张三: @bot 通过 #1")
    nag = harness.text("wait 2h")
    assert "准备物料清单" in nag and "完成H5改版" not in nag
    shown = harness.text(f"{G} 张三: @bot 会议 #M1")
    assert "行动项 1/2 已完成" in shown and "行动项 #1 完成H5改版：负责人 李四｜截止 12-10 18:00｜已完成" in shown
    assert "行动项 #2 准备物料清单：负责人 王五｜截止 12-08 18:00｜待启动" in shown


def test_minutes_on_one_line_and_their_refusals(harness) -> None:
    harness.run(SETUP[0])
    out = harness.text(f"{G} 张三: @bot 会议纪要 主题 周会 行动项 内容 对接物流 负责人 @赵六 截止 12-09")
    assert "已记录会议纪要 #M1，1 个行动项已转为任务" in out
    # 行动项： right before its text, and fields after Chinese commas, as typed on a phone
    out = harness.text(f"{G} 张三: @bot 会议纪要 主题 周会 决议 无\n行动项：完成H5改版，负责人 @李四，截止 12-10")
    assert "已记录会议纪要 #M2，1 个行动项已转为任务" in out, out
    assert "第 1 个行动项缺少负责人" in harness.text(f"{G} 张三: @bot 会议纪要 主题 周会 行动项 内容 对接物流 截止 12-09")
    assert "会议主题" in harness.text(f"{G} 张三: @bot 会议纪要 行动项 内容 对接物流 负责人 @赵六")
    assert "找不到部门「宣传部」" in harness.text(f"{G} 张三: @bot 会议纪要 主题 周会 参与部门 宣传部")
    assert "找不到会议纪要 #M9" in harness.text(f"{G} 张三: @bot 会议 #M9")
    with harness.db.transaction() as s:
        assert s.query(Task).count() == 2  # a refused set of minutes leaves no task behind


def test_minutes_keep_who_attended_and_refuse_what_no_field_took(harness) -> None:
    """Who attended is what people write first in minutes: it has its field, and the summary and decisions
    after it are kept. Words no field takes are refused by name, never dropped while "recorded" is said."""
    harness.run(SETUP[0], "clock 2026-12-04 15:00")  # a Friday
    out = harness.text(f"{G} 张三: @bot 会议纪要 主题 周会 时间 周三 14:00-15:00 参会 张三 @李四 摘要 讨论了上线 "
                       "决议 周五上线")
    assert "已记录会议纪要 #M1" in out, out
    assert "会议时间：12-02 14:00" in out  # Wednesday gone, not the next one; the range's start
    assert "参会：张三、李四" in out.replace("参会：李四、张三", "参会：张三、李四")
    assert "摘要：讨论了上线" in out and "决议：周五上线" in out
    refused = harness.text(f"{G} 张三: @bot 会议纪要 主题 周会 时间 12-03 10:00 说明 见附件 摘要 x")
    assert "没看懂「说明 见附件 摘要 x」" in refused, refused
    assert "会议时间：12-04 10:00" in harness.text(f"{G} 张三: @bot 会议纪要 主题 早会 时间 10:00")  # today's
    assert "会议时间：12-03 14:00" in harness.text(f"{G} 张三: @bot 会议纪要 主题 复盘会 时间 昨天 14:00")
    with harness.db.transaction() as s:
        assert s.query(Meeting).count() == 3


def test_milestones_listed_at_risk_when_their_task_is_late_and_in_the_weekly_summary(harness) -> None:
    harness.run(*SETUP)
    assert "已设里程碑「方案初稿」12-15" in harness.text(f"{G} 张三: @bot 里程碑 方案初稿 12-15")
    assert "（任务 #2）" in harness.text(f"{G} 张三: @bot 里程碑 #2 海报定稿 12-04 18:00")
    listed = harness.text(f"{G} 张三: @bot 里程碑")
    assert "关键里程碑 · 新品上市" in listed and listed.index("海报定稿") < listed.index("方案初稿")
    assert "有风险" not in listed
    harness.run("wait 2d4h")  # 12-03 13:00: 海报 (#2) was due 12-03 12:00 and is late; 文案 too
    listed = harness.text(f"{G} 张三: @bot 里程碑")
    assert "12-04 18:00 海报定稿：⚠ 有风险" in listed and "12-15 18:00 方案初稿：⚠ 有风险" in listed
    out = "\n".join(harness.run("wait 1d5h"))
    assert "近期里程碑：12-04 18:00 海报定稿；12-15 18:00 方案初稿" in out
    assert "截止" in harness.text(f"{G} 张三: @bot 里程碑 方案初稿 截止 13-45")
    assert "截止" in harness.text(f"{G} 张三: @bot 里程碑 方案初稿")


def test_a_late_task_warns_of_the_milestones_behind_it(harness) -> None:
    harness.run(*SETUP, f"{G} 张三: @bot 里程碑 #2 海报定稿 12-04 18:00", f"{G} 张三: @bot 里程碑 上线 12-20",
                f"{G} 张三: @bot 里程碑 #1 联调完成 12-09")
    first = harness.text("wait 5h")  # 12-01 14:00 (after lunch): 文案 (#3) is late, and the project's 上线 is due after it
    assert "⚠ 里程碑「上线」（12-20 18:00）有风险：任务 #3「文案」已逾期" in first
    assert "海报定稿" not in first and "联调完成" not in first
    second = harness.text("wait 2d")  # 海报 (#2) is late: its own milestone and 上线
    assert "⚠ 里程碑「海报定稿」（12-04 18:00）有风险：任务 #2「海报」已逾期" in second
    assert "里程碑「上线」（12-20 18:00）有风险：任务 #2" in second and "联调完成" not in second
    with harness.db.transaction() as s:
        warned = [r.dedupe_key for r in s.query(OutboxMessage).all() if ":milestone:" in r.dedupe_key]
    assert len(warned) == len(set(warned)) == 6  # group and coordinator, once per milestone and late task


def test_a_name_inside_a_risk_description_stays_there_and_does_not_make_its_owner(harness) -> None:
    harness.run(SETUP[0])
    out = harness.text(f"{G} 张三: @bot 风险 新增 描述 @王五 那边设计人手不足 可能性 高 影响 高 应对 外包")
    assert "风险 #R1 @王五 那边设计人手不足" in out and "负责人：张三" in out, out
    out = harness.text(f"{G} 张三: @bot 风险 新增 描述 物料延期 可能性 高 影响 中 @李四")  # after it: the owner
    assert "风险 #R2 物料延期" in out and "负责人：李四" in out, out


def test_meetings_are_listed_and_late_tasks_found_by_the_word_people_use(harness) -> None:
    harness.run(*SETUP, f"{G} 张三: @bot 会议纪要 主题 周会 时间 12-01 10:00", f"{G} 张三: @bot 会议纪要 主题 评审会")
    listed = harness.text(f"{G} 李四: @bot 会议 列表")
    assert "会议纪要 · 新品上市" in listed and "#M2 评审会" in listed and "#M1 周会：12-01 10:00" in listed, listed
    assert "#M2 评审会" in harness.text(f"{G} 李四: @bot 会议")
    harness.run("wait 1d")
    late = harness.text(f"{G} 张三: @bot 任务列表 逾期")  # the reports' word for it
    assert "看不懂状态" not in late and "#3 文案" in late, late


def test_an_action_items_task_fields_count_as_they_would_in_a_new_task(harness) -> None:
    harness.run(SETUP[0])
    out = harness.text(f"{G} 张三: @bot 会议纪要 主题 评审\n行动项 内容 修复支付bug 负责人 @李四 截止 12-10 优先级 高 "
                       "交付物 修复说明 备注 先修iOS")
    assert "已记录会议纪要 #M1，1 个行动项已转为任务" in out, out
    with harness.db.transaction() as s:
        task = s.query(Task).one()
        assert (task.priority, task.deliverable_expected) == ("high", "修复说明")
        assert task.remarks.startswith("先修iOS；") and "#M1" in task.remarks


def test_a_risk_named_without_its_hash_is_answered_with_the_command_typed(harness) -> None:
    harness.run(SETUP[0], f"{G} 张三: @bot 风险 新增 供应商延期 可能性 高 影响 中")
    said = harness.text(f"{G} 张三: @bot 风险 更新 R1 应对 备选供应商")
    assert "请写风险编号（#R 加数字），例如：风险 更新 #R1" in said, said  # not 风险 关闭, which would close it


def test_the_word_action_item_inside_a_multiline_summary_is_part_of_it(harness) -> None:
    harness.run(SETUP[0])
    out = harness.text(f"{G} 张三: @bot 会议纪要 主题 评审 摘要 确认了三个 行动项 的负责人\n"
                       "行动项 内容 对接物流 负责人 @赵六 截止 12-09")
    assert "已记录会议纪要 #M1，1 个行动项已转为任务" in out and "摘要：确认了三个 行动项 的负责人" in out, out
