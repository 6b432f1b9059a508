"""Workflow correctness through the console platform, on SQLite and PostgreSQL: reminders decided
when they are sent, waits that follow a reassigned task, dedupe keys per occurrence, the original
deadline, identity-based admins, task visibility and a readable audit log."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from collabbot.bot.config import ConfigError, load_config, parse_config
from collabbot.bot.events import CardActionEvent, ChatRef, UserRef
from collabbot.bot.people import is_admin
from collabbot.bot.replies import CardAction, Message
from collabbot.storage.models import ApprovalStep, AuditEntry, Identity, OutboxMessage, Task, User, Wait

from .conftest import ROOT, TZ, Harness

G = "in 新品上市群 as"
BUDGET = ("申请 市场活动预算审批 活动方案=双十二快闪店 预算金额=5万 预算明细=场地3万,物料2万 预期效果=新增会员5000 "
          "协作部门=技术部,设计部,运营部")


def lines_with(out: list[str], needle: str) -> list[str]:
    return [line for line in out if needle in line]


# --- 1. a reminder queued for the next working period is decided when it is sent ------------------

# (raised at, answered at): raised two working hours before a period's end, so the first nag falls due
# exactly at 12:00 / 18:00 and would go out at 13:30 / 09:00 the next morning; answered in between.
BOUNDARIES = [
    pytest.param((10, 0), (12, 30), id="noon"),
    pytest.param((16, 0), (20, 0), id="evening"),
]


def _at(hour_minute: tuple[int, int], day: int = 1) -> str:
    return f"clock 2026-12-{day:02d} {hour_minute[0]:02d}:{hour_minute[1]:02d}"


@pytest.mark.parametrize(("raised", "answered"), BOUNDARIES)
def test_an_acknowledgement_nag_queued_over_a_break_is_not_sent_once_acknowledged(
        make_harness, raised, answered) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, *raised, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10")
    h.run("wait 2h")  # the nag's due moment: the end of the period
    h.run(_at(answered), f"{G} 孙九: @bot 确认收到 #1")
    out = h.run("wait 1d")
    assert not lines_with(out, "请确认收到"), out
    assert not lines_with(out, "升级提醒") and not lines_with(out, "未回应"), out


@pytest.mark.parametrize(("raised", "answered"), BOUNDARIES)
def test_a_help_nag_queued_over_a_break_is_not_sent_once_answered(make_harness, raised, answered) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, *raised, tzinfo=TZ))
    h.run(f"{G} 李四: @bot 求助 设计部 需要一名设计师")
    h.run("wait 2h")
    h.run(_at(answered), f"{G} 周八: @bot 答复 #H1 已安排")
    out = h.run("wait 1d")
    assert not lines_with(out, "求助 #H1 还在等你答复"), out
    assert not lines_with(out, "周八"), out


@pytest.mark.parametrize(("raised", "answered"), BOUNDARIES)
def test_an_approval_nag_queued_over_a_break_is_not_sent_once_voted(make_harness, raised, answered) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, *raised, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部",
          f"{G} 吴十: @bot {BUDGET}")
    h.run("wait 2h")
    h.run(_at(answered), "dm as 张三: 同意 #A1")
    out = h.run("wait 2h")  # the next period's start, before the new stage's own nags fall due
    assert not lines_with(out, "张三（私聊）: 审批 #A1"), out
    assert not lines_with(out, "@张三"), out


@pytest.mark.parametrize(("raised", "answered"), BOUNDARIES)
def test_an_overdue_reason_nag_queued_over_a_break_is_not_sent_once_reported(make_harness, raised, answered) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-01 {raised[0]:02d}:{raised[1]:02d}",
          f"{G} 孙九: @bot 确认收到 #1", f"{G} 孙九: @bot 开始 #1")
    assert lines_with(h.run(_at(raised)), "已过截止时间")
    h.run("wait 2h")
    h.run(_at(answered), f"{G} 孙九: @bot 进度 #1 50% 商品图未到，明天补齐")
    out = h.run("wait 1d")
    assert not lines_with(out, "已延期，请回复原因"), out
    assert not lines_with(out, "未回应"), out


def test_an_overdue_warning_due_outside_working_time_is_not_sent_once_the_task_is_done(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-01 19:00",
          f"{G} 孙九: @bot 确认收到 #1", f"{G} 孙九: @bot 开始 #1")
    h.run("clock 2026-12-01 19:30")
    h.run(f"{G} 孙九: @bot 完成 #1 交付物 https://example.com/caigou")
    out = h.run("wait 1d")
    assert not lines_with(out, "已过截止时间") and not lines_with(out, "延期预警"), out


# --- 2. reassigning a task moves every open wait to the new owner ----------------------------------

def test_reassigning_an_overdue_task_moves_the_reason_wait_to_the_new_owner(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-01 09:30",
          f"{G} 孙九: @bot 确认收到 #1", f"{G} 孙九: @bot 开始 #1")
    assert lines_with(h.run("clock 2026-12-01 09:30"), "孙九（私聊）: 任务 #1「物料采购」已过截止时间")
    h.run(f"{G} 张三: @bot 转交 #1 @吴十 原因 人手调整")
    with h.db.transaction() as s:
        open_waits = {(w.kind, w.person.name) for w in s.scalars(
            select(Wait).where(Wait.entity_type == "task", Wait.answered_at.is_(None)))}
    assert open_waits == {("assign", "吴十"), ("overdue", "吴十")}
    out = h.run("wait 2d")
    assert not lines_with(out, "@孙九") and not lines_with(out, "孙九（私聊）"), out
    assert not lines_with(out, "孙九 的这件事"), out
    chased = lines_with(out, "任务 #1「物料采购」已延期，请回复原因")  # in the group with his 确认收到, one note a round
    assert any("新品上市群: @吴十" in line for line in chased), out
    h.run(f"{G} 吴十: @bot 进度 #1 30% 接手后重新排期")
    with h.db.transaction() as s:
        assert not s.scalars(select(Wait).where(Wait.kind == "overdue", Wait.answered_at.is_(None))).all()


# --- 3. dedupe keys name the occurrence ----------------------------------------------------------

def test_an_extended_task_that_falls_overdue_again_is_warned_again(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 快闪店物料设计 负责人 @王五 截止 12-03",
          f"{G} 王五: @bot 确认收到 #1", f"{G} 王五: @bot 开始 #1")
    out = h.run("clock 2026-12-04 09:30")
    assert len(lines_with(out, "王五（私聊）: 任务 #1「快闪店物料设计」已过截止时间")) == 1
    h.run(f"{G} 王五: @bot 申请 延期申请 #1 新截止日期=12-08 原因=商品图未到 补救措施=先出线框稿")
    assert "审批通过" in h.text("dm as 张三: 同意 #A1")
    out = h.run("clock 2026-12-09 09:30")
    assert len(lines_with(out, "王五（私聊）: 任务 #1「快闪店物料设计」已过截止时间（12-08 18:00）")) == 1, out
    assert len(lines_with(out, "张三（私聊）: 延期预警：任务 #1")) == 1, out


def test_an_application_can_be_filed_by_its_forms_name_alone(make_harness) -> None:
    """People write 延期申请 #1 …, the form's name, rather than 申请 延期申请 #1 …: both file it."""
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 快闪店物料设计 负责人 @王五 截止 12-03")
    out = h.text(f"{G} 王五: @bot 延期申请 #1 新截止日期=12-08 原因=商品图未到 补救措施=先出线框稿")
    assert "已提交审批 #A1「延期申请」" in out, out
    assert "还缺少：新截止日期、原因、补救措施" in h.text(f"{G} 王五: @bot /延期申请 #1")
    assert "没有「延期 #1 12-08」这个命令" in h.text(f"{G} 王五: @bot 延期 #1 12-08")  # only a form's exact name


def test_a_task_blocked_again_hears_it_is_unblocked_again(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 设计稿 负责人 @王五 截止 12-10",
          f"{G} 张三: @bot 新建任务 开发 负责人 @李四 截止 12-10",
          f"{G} 张三: @bot 新建任务 补充素材 负责人 @王五 截止 12-10",
          f"{G} 张三: @bot 依赖 #2 #1")
    h.run(f"{G} 王五: @bot 完成 #1 交付物 https://example.com/a")
    out = h.run(f"{G} 张三: @bot 验收 #1")
    assert len(lines_with(out, "李四（私聊）")) == 1, out
    h.run(f"{G} 张三: @bot 依赖 #2 #3", f"{G} 王五: @bot 完成 #3 交付物 https://example.com/b")
    out = h.run(f"{G} 张三: @bot 验收 #3")
    assert len(lines_with(out, "李四（私聊）")) == 1, out
    assert lines_with(out, "新品上市群: @李四"), out


# --- 4. the original deadline --------------------------------------------------------------------

def test_an_extension_keeps_the_original_deadline_on_the_card_and_in_the_on_time_rate(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 11, 30, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 快闪店物料设计 负责人 @王五 截止 12-01",
          f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-03",
          f"{G} 王五: @bot 开始 #1", f"{G} 王五: @bot 开始 #2",
          f"{G} 王五: @bot 申请 延期申请 #1 新截止日期=12-03 原因=商品图未到 补救措施=先出线框稿")
    assert "审批通过" in h.text("dm as 张三: 同意 #A1")
    card = h.text("dm as 王五: 任务 #1")
    assert "截止：12-03 18:00（原 12-01 18:00，已延期 1 次）" in card, card
    with h.db.transaction() as s:
        task = s.get(Task, 1)
        assert (task.original_deadline.astimezone(TZ).day, task.deadline.astimezone(TZ).day, task.extensions) == (1, 3, 1)
    h.run("clock 2026-12-02 10:00", f"{G} 王五: @bot 完成 #1 交付物 https://example.com/a",
          f"{G} 王五: @bot 完成 #2 交付物 https://example.com/b",
          f"{G} 张三: @bot 验收 #1", f"{G} 张三: @bot 验收 #2")
    h.run("clock 2026-12-04 19:00")
    with h.db.transaction() as s:
        [summary] = [Message.from_json(m.payload).card for m in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("summary:%")))]
    assert summary is not None and summary.chart == (("设计部", 50),)
    assert ("按时完成率", "设计部 1/2（50%，延期 1）") in summary.fields, summary.fields


# --- 5. admins by identity -----------------------------------------------------------------------

def test_admins_are_platform_identities_and_a_name_resolves_through_the_org_file(tmp_path) -> None:
    assert parse_config({"bot": {"admins": ["feishu:ou_1"]}}).admins == ("feishu:ou_1",)
    assert parse_config({"bot": {"admins": ["张三"]}}).admins == ("console:张三",)  # the demo org's one 张三
    org = tmp_path / "org.toml"
    org.write_text('[[departments]]\nname = "市场部"\nhead = "张三"\n\n'
                   '[[people]]\nname = "张三"\ndepartment = "市场部"\n[people.ids]\nfeishu = "ou_a"\n\n'
                   '[[people]]\nname = "李四"\ndepartment = "市场部"\n', encoding="utf-8")
    assert parse_config({"bot": {"admins": ["张三"], "org_file": str(org)}}).admins == ("console:张三", "feishu:ou_a")
    twice = tmp_path / "twice.toml"  # a name two people share is ambiguous: refused
    twice.write_text(org.read_text(encoding="utf-8") + '\n[[people]]\nname = "李四"\ndepartment = "市场部"\n',
                     encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bot\.admins.*李四.*listed twice"):
        parse_config({"bot": {"admins": ["李四"], "org_file": str(twice)}})
    with pytest.raises(ConfigError, match=r"bot\.admins\[0\].*nobody"):
        parse_config({"bot": {"admins": ["王大锤"], "org_file": str(org)}})
    with pytest.raises(ConfigError, match=r"bot\.admins\[0\].*no user id"):
        parse_config({"bot": {"admins": ["feishu:"]}})


def test_a_second_person_with_an_admins_name_is_not_an_admin(make_harness) -> None:
    h: Harness = make_harness(admins=("console:孙九",))
    with h.db.transaction() as s:
        namesake = User(name="孙九", created_at=h.clock.now())
        s.add(namesake)
        s.flush()
        s.add(Identity(platform="feishu", platform_user_id="ou_other", user_id=namesake.id))
        s.flush()
        admin = s.scalar(select(User).join(Identity).where(Identity.platform == "console",
                                                           Identity.platform_user_id == "孙九"))
        assert is_admin(s, admin, h.config.admins)
        assert not is_admin(s, namesake, h.config.admins)


# --- 6. who may see a task -----------------------------------------------------------------------

def test_a_task_is_shown_only_to_those_who_may_see_it(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 快闪店物料设计 负责人 @王五 截止 12-10 备注 供应商报价 3 万")
    refused = h.text("dm as 钱总: 任务 #1")
    assert "你不能查看这个任务" in refused and "供应商报价" not in refused, refused
    assert "供应商报价" in h.text("dm as 王五: 任务 #1")  # the owner
    assert "供应商报价" in h.text("dm as 张三: 任务 #1")  # the initiator
    assert "供应商报价" in h.text("dm as 周八: 任务 #1")  # the owner's department head
    with h.db.transaction() as s:
        refusal = s.scalars(select(AuditEntry).where(AuditEntry.outcome == "refused")).all()
    assert len(refusal) == 1
    admin = make_harness(admins=("console:钱总",))
    admin.run(f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-10")
    assert "你不能查看" not in admin.text("dm as 钱总: 任务 #1")


# --- 7. the audit log, readable ------------------------------------------------------------------

def test_a_refusal_is_audited_under_the_attempted_action_and_entity(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10", f"{G} 李四: @bot 确认收到 #1",
          f"{G} 孙九: @bot 确认收到 #1")
    with h.db.transaction() as s:
        rows = [(e.action, e.entity_type, e.entity_id, e.outcome, e.reason != "") for e in s.scalars(
            select(AuditEntry).where(AuditEntry.action == "task.acknowledge").order_by(AuditEntry.id))]
    assert rows == [("task.acknowledge", "tasks", 1, "refused", True), ("task.acknowledge", "tasks", 1, "ok", False)]


def test_an_entitys_trail_and_a_persons_week_can_be_read(make_harness) -> None:
    h: Harness = make_harness(admins=("console:赵总",))
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10", f"{G} 李四: @bot 确认收到 #1",
          f"{G} 孙九: @bot 确认收到 #1")
    trail = h.text("dm as 张三: 操作记录 #1")
    assert "操作记录 #1：" in trail
    assert "张三 创建" in trail and "孙九 确认收到" in trail, trail  # the actions in words, not their codes
    assert "task." not in trail, trail
    assert "李四 确认收到（已拒绝）：你不能" in trail, trail
    assert trail.index("张三 创建") < trail.index("孙九 确认收到")  # oldest first
    assert "操作记录 #1" in h.text("dm as 张三: log #1")
    assert "你不能查看这些操作记录" in h.text("dm as 钱总: 操作记录 #1")
    week = h.text(f"{G} 赵总: @bot 操作记录 @孙九 本周")
    assert "孙九 本周的操作记录" in week and "孙九 确认收到 #1" in week, week
    assert "张三 创建" not in week
    assert "只有管理员可以" in h.text(f"{G} 张三: @bot 操作记录 @孙九 本周")


def test_a_project_records_trail_can_be_read_by_who_may_see_the_project(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三",
          f"{G} 张三: @bot 风险 新增 描述 供应商延期 可能性 高 影响 中 负责人 @李四",
          f"{G} 张三: @bot 风险 更新 #R1 应对 启用备选供应商",
          f"{G} 张三: @bot 收集 月度经营数据 对象 市场部 截止 12-04 18:00")
    risk = h.text(f"{G} 张三: @bot 操作记录 #R1")
    assert "操作记录 #R1：" in risk and risk.index("张三 登记风险") < risk.index("张三 更新风险"), risk
    assert "张三 发起收集" in h.text(f"{G} 李四: @bot log #C1")
    assert "张三 绑定项目" in h.text(f"{G} 张三: @bot 操作记录 #P1")
    assert "找不到 #R9" in h.text(f"{G} 张三: @bot 操作记录 #R9")
    assert "你不能查看这些操作记录" in h.text("dm as 钱总: 操作记录 #R1")  # not in the project


# --- 8. the rest ---------------------------------------------------------------------------------

def test_an_admin_cancelling_an_approval_gives_a_reason(make_harness) -> None:
    h: Harness = make_harness(admins=("console:孙九",))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部", f"{G} 吴十: @bot {BUDGET}")
    assert "缺少原因" in h.text("dm as 孙九: 取消审批 #A1")
    out = h.text("dm as 孙九: 取消审批 #A1 原因 活动取消")
    assert "活动取消" in out and "缺少原因" not in out


def test_a_long_task_history_says_how_much_more_there_is(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10", f"{G} 孙九: @bot 确认收到 #1")
    h.run(*(f"{G} 孙九: @bot 进度 #1 {10 * i}% 第 {i} 批" for i in range(1, 8)))
    card = h.text("dm as 张三: 任务 #1")
    assert "还有更早的 4 条，见 操作记录 #1" in card, card


def test_next_weeks_deadlines_are_listed_by_date(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 11, 30, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 晚的 负责人 @王五 截止 12-10", f"{G} 张三: @bot 新建任务 早的 负责人 @王五 截止 12-08")
    h.run("clock 2026-12-04 19:00")
    with h.db.transaction() as s:
        [summary] = [Message.from_json(m.payload).card for m in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("summary:%")))]
    assert summary is not None
    assert dict(summary.fields)["一周内到期"].startswith("#2 早的"), summary.fields


def test_a_tap_on_an_earlier_rounds_card_answers_from_the_current_round(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部", f"{G} 吴十: @bot {BUDGET}",
          "dm as 张三: 同意 #A1", "dm as 陈七: 驳回 #A1 缺少技术评估",
          "dm as 吴十: 重新提交 #A1 预算明细=场地3万,物料2万,技术评估见附件", "dm as 张三: 同意 #A1", "dm as 陈七: 同意 #A1")
    with h.db.transaction() as s:
        old = s.scalar(select(ApprovalStep).where(ApprovalStep.request_id == 1, ApprovalStep.round == 1,
                                                  ApprovalStep.stage_index == 1))
        value = CardAction("reject", "approval", 1, old.id).pack()
    reply = h.bot.handle(CardActionEvent("tap-old-round", ChatRef("console", "dm:陈七", "陈七", is_group=False),
                                         UserRef("console", "陈七", "陈七"), value))
    assert "你已经驳回过" not in reply.toast
    assert "这张卡片是审批 #A1 第 1 轮的，已过期：现在是第 2 轮「会签」" in reply.toast, reply.toast


def test_the_approval_result_reaches_every_approver_privately_once(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部", f"{G} 吴十: @bot {BUDGET}",
          "dm as 张三: 同意 #A1", "dm as 陈七: 同意 #A1", "dm as 周八: 同意 #A1", "dm as 孙九: 同意 #A1")
    out = h.run("dm as 赵总: 同意 #A1 注意控制成本")
    for name in ("张三", "陈七", "周八", "孙九"):
        assert len(lines_with(out, f"→ {name}（私聊）: 审批 #A1「市场活动预算审批」已通过。发起人 吴十")) == 1, (name, out)
    assert not lines_with(out, "→ 赵总（私聊）: 审批 #A1「市场活动预算审批」已通过"), out  # the decider has the reply


def test_only_the_coordinator_or_the_receiving_head_hands_a_task_to_another_department(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 接口联调 负责人 @李四 截止 12-10")  # 李四: 技术部 (head 陈七)
    out = h.text(f"{G} 李四: @bot 转交 #1 @王五 原因 设计部更合适")  # 王五: 设计部
    assert "把任务交给其他部门，只有协同负责人、接收部门的负责人或管理员可以" in out, out
    assert "已转交" not in out
    assert "你不能" not in h.text(f"{G} 周八: @bot 转交 #1 @王五 原因 设计部接手")  # 设计部's head
    with h.db.transaction() as s:
        assert s.get(Task, 1).owner.name == "王五"


def test_a_new_tasks_announcement_names_collaborators_as_such(make_harness) -> None:
    h: Harness = make_harness()
    out = h.text(f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 协作 @王五 @赵六 截止 12-10")
    assert "已创建任务 #1「活动H5开发」，负责人 @李四，协作 @王五、@赵六" in out, out


def test_project_info_in_a_private_chat_asks_for_the_projects_name(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部")
    out = h.text("dm as 张三: 项目信息")
    assert "私聊里请写项目名" in out and "本群" not in out, out
    assert "找不到项目「旧项目」" in h.text("dm as 张三: 项目信息 旧项目")
    assert "新品上市" in h.text("dm as 张三: 项目信息 新品上市")


# --- wording: the help card, the escalation card, the weekly summary's headings ----------------------

def test_the_help_card_shows_its_own_state_and_names_the_related_task(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @李四 截止 12-10")
    out = h.text(f"{G} 李四: @bot 求助 设计部 需要一名设计师支援 #1")
    card = out[out.index("求助 #H1 【"):]
    assert card.startswith("求助 #H1 【待答复】"), out
    assert "【待启动】" not in card and "#：#1" not in card and "关联任务：#1" in card, out
    out = h.text("dm as 周八: tap 已处理")
    assert "求助 #H1 【已答复】" in out and "【已完成】" not in out, out


def test_the_escalation_card_says_unanswered_once(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10")
    out = "\n".join(h.run("wait 1d2h"))
    assert "升级提醒：孙九 【未回应】" in out, out
    assert "未回应 【未回应】" not in out


def test_a_task_awaiting_review_has_its_own_heading_in_the_weekly_summary(make_harness) -> None:
    h: Harness = make_harness(start=datetime(2026, 11, 30, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-10", f"{G} 张三: @bot 新建任务 接口 负责人 @李四 截止 12-10",
          f"{G} 李四: @bot 进度 #2 30%", f"{G} 王五: @bot 完成 #1 交付物 https://example.com/poster")
    h.run("clock 2026-12-04 19:00")
    with h.db.transaction() as s:
        [summary] = [Message.from_json(m.payload).card for m in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("summary:%")))]
    assert summary is not None
    fields = dict(summary.fields)
    assert "#1" not in fields["进行中"] and fields["进行中"].startswith("#2 接口"), fields
    assert fields["待审核"] == "#1 海报（王五）", fields


# --- 一键转任务: the task has the request's (or the receiving department's) project and a deadline -----

HR_REQUEST = "申请 人力 支持部门=设计部 人数=1 技能要求=插画 支持时间=两周 用途=活动海报"


def test_a_one_tap_task_from_a_private_request_joins_the_receiving_departments_project(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部",
          f"dm as 李四: {HR_REQUEST}", "dm as 陈七: 同意 #A1", "dm as 周八: 同意 #A1")
    out = h.text("dm as 李四: tap 一键转任务 #1")
    assert "已创建任务 #1，负责人 周八。还没有截止时间：发送「截止 #1 12-08」设置。" in out, out
    with h.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.project is not None and task.project.name == "新品上市"
        assert task.chat is not None and task.chat.name == "新品上市群"
    card = h.text("dm as 周八: 任务 #1")
    assert "截止：未设置（发送「截止 #1 12-08」设置）" in card and "截止：无" not in card, card
    assert "你不能设置这个任务的截止时间" in h.text("dm as 王五: 截止 #1 12-10")
    assert "截止时间 11-30 18:00 已经过去了" in h.text("dm as 周八: 截止 #1 2026-11-30")
    assert "任务 #1 的截止时间已设为 12-10 18:00。" in h.text("dm as 周八: 截止 #1 12-10")
    with h.db.transaction() as s:
        task = s.get(Task, 1)
        assert task.deadline == task.original_deadline == datetime(2026, 12, 10, 18, 0, tzinfo=TZ)
    assert "已有截止时间 12-10 18:00；改期请提交延期申请：申请 延期申请 #1 新截止日期=… 原因=… 补救措施=…" in h.text("dm as 李四: 截止 #1 12-12")
    assert "截止：12-10 18:00" in h.text("dm as 周八: 任务 #1")


def test_a_one_tap_task_takes_the_requests_date_as_its_deadline(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部",
          f"{G} 李四: @bot 申请 设备 资源类型=设备 数量=2 用途=拍摄 时限=12-09 提供部门=设计部",
          "dm as 陈七: 同意 #A1", "dm as 周八: 同意 #A1", "dm as 钱总: 同意 #A1")
    out = h.text(f"{G} 李四: tap 一键转任务 #1")
    assert "还没有截止时间" not in out, out
    with h.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.project is not None and task.project.name == "新品上市"
        assert task.deadline is not None and task.deadline.astimezone(TZ).strftime("%m-%d %H:%M") == "12-09 18:00"
        assert task.original_deadline == task.deadline


def test_an_english_prompt_to_set_a_deadline(make_harness) -> None:
    h: Harness = make_harness(language="en")
    h.run(f"{G} 张三: @bot task new Poster owner @王五")
    assert 'not set (send "due #1 12-08" to set it)' in h.text("dm as 王五: task #1")
    assert "Task #1 is now due 12-10 18:00." in h.text("dm as 王五: due #1 12-10")


# --- task templates: offsets in working days; the README's example on config.example.toml -------------

def _deadlines(h: Harness) -> dict[str, str]:
    with h.db.transaction() as s:
        return {t.title: t.deadline.astimezone(TZ).strftime("%Y-%m-%d %a %H:%M")
                for t in s.scalars(select(Task).order_by(Task.id)) if t.deadline is not None}


def test_the_readme_template_example_works_with_the_example_config(make_harness) -> None:
    h: Harness = make_harness(config=load_config(ROOT / "config.example.toml"))
    out = h.text(f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 截止 12-14 模板 H5开发支持")
    assert "已创建任务 #1「活动H5开发」（模板「H5开发支持」，含 3 个子任务），负责人 @李四" in out, out
    assert "负责人（模板" not in out
    # the parent is due Monday 12-14; 5 and 2 working days before it, not calendar days (12-12 is a Saturday)
    assert _deadlines(h) == {"活动H5开发": "2026-12-14 Mon 18:00", "视觉设计": "2026-12-07 Mon 18:00",
                             "前端开发": "2026-12-10 Thu 18:00", "测试验收": "2026-12-14 Mon 18:00"}


def test_a_template_without_a_deadline_counts_working_days_from_today(make_harness) -> None:
    h: Harness = make_harness(config=load_config(ROOT / "config.example.toml"))
    h.run(f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 模板 H5开发支持")  # due_in_days = 10
    got = _deadlines(h)
    assert got["活动H5开发"] == "2026-12-15 Tue 18:00", got
    assert got["视觉设计"] == "2026-12-08 Tue 18:00" and got["前端开发"] == "2026-12-11 Fri 18:00", got


def test_a_template_subtask_never_falls_due_on_a_holiday_or_a_weekend(make_harness) -> None:
    h: Harness = make_harness(config=load_config(ROOT / "config.example.toml"),
                              start=datetime(2026, 9, 21, 9, 0, tzinfo=TZ))
    h.run(f"{G} 张三: @bot 新建任务 国庆活动页 负责人 @李四 截止 2026-10-11 12:00 模板 H5开发支持")
    got = _deadlines(h)
    # due Sunday 10-11: the last subtask on the make-up Saturday before it; five working days back skip
    # 国庆 (10-01..10-07): 10-10, 10-09, 10-08, 09-30, 09-29
    assert got["测试验收"] == "2026-10-10 Sat 12:00", got
    assert got["前端开发"] == "2026-10-09 Fri 12:00", got
    assert got["视觉设计"] == "2026-09-29 Tue 12:00", got
    with h.db.transaction() as s:
        cal = h.bot.calendar
        for t in s.scalars(select(Task).where(Task.parent_id.is_not(None))):
            assert cal.is_workday(t.deadline.astimezone(TZ).date()), t.title


# --- a tap on a card made stale by an unrelated change is carried out --------------------------------

def _buttons(h: Harness, target: tuple[str, str], label: str) -> list[str]:
    """The values of every button `label` on the cards `target` was sent, oldest first (as the platform keeps them)."""
    return [b.value for c in h.console.sender.cards if c.target == target for b in c.card.buttons if b.label == label]


def _tap(h: Harness, person: str, value: str):
    return h.bot.handle(CardActionEvent(f"tap-{person}-{len(h.console.sender.cards)}-{value[-12:]}",
                                        ChatRef("console", f"dm:{person}", person, is_group=False),
                                        UserRef("console", person, person), value))


def test_an_acknowledgement_tap_after_a_subtask_and_a_dependency_is_carried_out(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 活动H5开发 负责人 @李四 截止 12-10", f"{G} 张三: @bot 新建任务 物料 负责人 @王五 截止 12-08")
    [ack] = _buttons(h, ("user", "李四"), "确认收到")  # the owner's private card, drawn at version 1
    h.run(f"{G} 张三: @bot 子任务 #1 接口联调 负责人 @赵六 截止 12-08", f"{G} 张三: @bot 依赖 #1 #2")
    with h.db.transaction() as s:
        assert s.get(Task, 1).version > CardAction.unpack(ack).version  # type: ignore[union-attr]
    reply = _tap(h, "李四", ack)
    assert reply.toast == "已确认收到任务 #1「活动H5开发」。" and reply.toast_kind == "success", reply.toast
    with h.db.transaction() as s:
        assert s.get(Task, 1).acknowledged_at is not None
        assert not list(s.scalars(select(Wait).where(Wait.entity_type == "task", Wait.entity_id == 1,
                                                     Wait.answered_at.is_(None))))
    out = h.run("wait 1d2h")
    assert not lines_with(out, "任务 #1「活动H5开发」"), out  # neither nagged nor escalated afterwards
    assert lines_with(out, "请确认收到任务 #3"), out  # (the others' reminders still go out)
    # the same button again: already done, said so, nothing changes
    again = _tap(h, "李四", ack)
    assert again.toast == "任务 #1 已经确认过了。", again.toast
    with h.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "task.acknowledge", AuditEntry.outcome == "ok")) == 1


def test_an_accept_tap_on_an_earlier_submission_is_stale(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-10", f"{G} 王五: @bot 完成 #1 交付物 https://example.com/v1")
    [first] = _buttons(h, ("user", "张三"), "通过")  # as a platform that missed the later update still shows it
    h.run(f"{G} 张三: @bot 退回 #1 原因 颜色不对", f"{G} 王五: @bot 完成 #1 交付物 https://example.com/v2")
    latest = _buttons(h, ("user", "张三"), "通过")[-1]
    assert first != latest
    h.run(f"{G} 张三: @bot 评论 #1 收到，今天看")  # an unrelated change after the second submission
    reply = _tap(h, "张三", first)
    assert "卡片已过期" in reply.toast and reply.card is not None, reply.toast
    with h.db.transaction() as s:
        assert s.get(Task, 1).status == "review"
    reply = _tap(h, "张三", latest)
    assert reply.toast == "任务 #1「海报」已验收通过。", reply.toast
    with h.db.transaction() as s:
        assert s.get(Task, 1).status == "done"


def test_a_card_version_from_the_future_is_refused(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-10")
    reply = _tap(h, "王五", CardAction("ack", "task", 1, 99).pack())
    assert "卡片已过期" in reply.toast
    with h.db.transaction() as s:
        assert s.get(Task, 1).acknowledged_at is None


# --- the daily prompt is decided at the group's own moment, not up to its spread minutes before ------

def test_a_progress_report_in_the_prompts_spread_minutes_keeps_the_task_out_of_it(make_harness) -> None:
    from dataclasses import replace

    from collabbot.bot.config import RuleSettings
    from collabbot.bot.sweep import _spread

    h: Harness = make_harness(rules=replace(RuleSettings(), daily_prompt_spread_minutes=30))
    h.run(f"{G} 张三: @bot 新建任务 接口 负责人 @李四 截止 12-20", f"{G} 张三: @bot 新建任务 海报 负责人 @王五 截止 12-20",
          f"{G} 李四: @bot 开始 #1", f"{G} 王五: @bot 开始 #2")
    moment = datetime(2026, 12, 1, 10, 0, tzinfo=TZ) + _spread("prompt:1", 30)  # the group's (chat 1's) moment
    assert moment.minute >= 10, moment  # room to report in between
    out = h.run("clock 2026-12-01 10:05")  # the prompt time has passed, the group's moment has not
    assert not lines_with(out, "今日进度提醒"), out
    h.run(f"{G} 李四: @bot 进度 #1 50% 联调中")
    out = h.run("wait 1h")
    prompt = lines_with(out, "新品上市群: 今日进度提醒")
    assert len(prompt) == 1 and prompt[0].startswith(f"[{moment:%m-%d %H:%M}]"), out
    assert "#2 海报" in "\n".join(out) and "#1 接口" not in "\n".join(out), out
    assert not lines_with(out, "→ 李四（私聊）: 今天请更新"), out
    assert lines_with(out, "→ 王五（私聊）: 今天请更新任务 #2"), out
    out = h.run("wait 3h")  # decided once a day
    assert not lines_with(out, "今日进度提醒"), out
    with h.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("prompt:%:chat:%"))) == 1


# --- approval stages match approvers by platform identity ------------------------------------------

def test_approvers_in_the_config_are_identities_and_a_bad_name_is_one_line_at_load(tmp_path) -> None:
    config = parse_config({"approval_roles": {"运营总监": "feishu:ou_zhao"}})
    final = config.approval_templates[0].stages[2]
    assert final.people == ("feishu:ou_zhao",) and final.identities == (("feishu:ou_zhao",),)
    assert parse_config({}).approval_templates[0].stages[2].identities == (("console:赵总",),)  # the demo org's
    with pytest.raises(ConfigError, match=r"^approval_roles\.运营总监: '王大锤' is nobody in the org file") as exc:
        parse_config({"approval_roles": {"运营总监": "王大锤"}})
    assert "\n" not in str(exc.value)
    own = [{"name": "采购", "fields": [], "stages": [{"name": "终审", "kind": "person", "person": "王大锤"}]}]
    with pytest.raises(ConfigError, match=r"^approval_templates\[0\]\.stages\[0\]\.person: '王大锤' is nobody"):
        parse_config({"approval_templates": own})
    twice = tmp_path / "twice.toml"  # an org file where a name is ambiguous: refused, naming the key
    twice.write_text('[[departments]]\nname = "运营部"\nhead = "赵总"\n\n'
                     '[[people]]\nname = "赵总"\ndepartment = "运营部"\n\n[[people]]\nname = "赵总"\ndepartment = "运营部"\n',
                     encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^approval_templates\[0\]\.stages\[0\]\.person: .*赵总.*listed twice") as exc:
        parse_config({"bot": {"org_file": str(twice)},
                      "approval_templates": [{**own[0], "stages": [{"name": "终审", "kind": "person", "person": "赵总"}]}]})
    assert "\n" not in str(exc.value)


def test_a_second_person_with_an_approvers_name_is_not_asked(make_harness) -> None:
    h: Harness = make_harness()
    with h.db.transaction() as s:
        namesake = User(name="赵总", created_at=h.clock.now())
        s.add(namesake)
        s.flush()
        s.add(Identity(platform="feishu", platform_user_id="ou_other_zhao", user_id=namesake.id))
        namesake_id = namesake.id
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部")
    out = h.text(f"{G} 吴十: @bot {BUDGET}")
    assert "已提交审批 #A1" in out and "不在组织中" not in out, out
    h.run("dm as 张三: 同意 #A1", "dm as 陈七: 同意 #A1", "dm as 周八: 同意 #A1", "dm as 孙九: 同意 #A1")
    with h.db.transaction() as s:
        final = s.scalar(select(ApprovalStep).where(ApprovalStep.request_id == 1, ApprovalStep.stage_index == 2))
        [approver] = final.approvers
        assert approver.user_id != namesake_id
        assert [(i.platform, i.platform_user_id) for i in approver.user.identities] == [("console", "赵总")]
    assert "已同意审批 #A1，审批通过" in h.text("dm as 赵总: 同意 #A1")


def test_an_approver_given_as_an_identity_is_asked_whatever_the_name(make_harness) -> None:
    h: Harness = make_harness(config=parse_config({"approval_roles": {"运营总监": "console:钱总"}}))
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部", f"{G} 吴十: @bot {BUDGET}",
          "dm as 张三: 同意 #A1", "dm as 陈七: 同意 #A1", "dm as 周八: 同意 #A1")
    out = h.text("dm as 孙九: 同意 #A1")
    assert "进入最终审批：@钱总" in out, out
    assert "审批通过" not in h.text("dm as 赵总: 同意 #A1")  # the built-in's 赵总 is not the 运营总监 here
    with h.db.transaction() as s:
        final = s.scalar(select(ApprovalStep).where(ApprovalStep.request_id == 1, ApprovalStep.stage_index == 2))
        assert [a.user.name for a in final.approvers] == ["钱总"]
    assert "审批通过" in h.text("dm as 钱总: 同意 #A1")


# --- every copy of a card follows its entity after a typed command, as after a tap --------------------

def _shown(h: Harness, target: tuple[str, str], key: str):
    return [c.card for c in h.console.sender.cards if c.target == target and c.card.key == key]


def test_the_groups_approval_card_follows_a_vote_typed_in_a_private_chat(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部", f"{G} 吴十: @bot {BUDGET}")
    [group_copy] = _shown(h, ("chat", "新品上市群"), "approval:1")
    assert group_copy.status == "审批中 · 初审"
    h.run("dm as 张三: 同意 #A1")
    [group_copy] = _shown(h, ("chat", "新品上市群"), "approval:1")
    assert group_copy.status == "审批中 · 会签", group_copy.status
    [next_approver] = _shown(h, ("user", "陈七"), "approval:1")
    assert next_approver.status == "审批中 · 会签" and next_approver.buttons


def test_a_task_acknowledged_by_a_typed_command_updates_every_copy(make_harness) -> None:
    h: Harness = make_harness()
    h.run(f"{G} 张三: @bot 新建任务 物料采购 负责人 @孙九 截止 12-10", "dm as 孙九: 确认收到 #1")
    [card] = _shown(h, ("chat", "新品上市群"), "task:1")
    assert "确认收到" not in [b.label for b in card.buttons] and "开始" in [b.label for b in card.buttons], card
