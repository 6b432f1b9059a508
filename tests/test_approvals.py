"""Approval flows through the console platform: the transcript's golden output, happy paths, refusals
and malformed input of every approval command, on SQLite and PostgreSQL (the `db` fixture runs each
test on both). The pure stage rules and the template config are tested at the bottom."""

from __future__ import annotations

import difflib
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collabbot.adapters.console.transcript import TranscriptError
from collabbot.bot.approval_templates import builtin_templates, parse_value
from collabbot.bot.commands import Command, parse
from collabbot.bot.config import ConfigError, load_config, parse_config
from collabbot.bot.events import CardActionEvent, ChatRef, UserRef
from collabbot.bot.replies import CardAction
from collabbot.bot.rules import approval_stages as rules
from collabbot.storage.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStep,
    ApprovalVote,
    AuditEntry,
    OutboxMessage,
    Task,
    Wait,
)

from .conftest import EXAMPLES, ROOT, TZ, Harness

G = "in 新品上市群 as"
GOLDEN = Path(__file__).parent / "golden" / "approvals.out"
BUDGET = ("申请 市场活动预算审批 活动方案=双十二快闪店 预算金额=5万 预算明细=场地3万,物料2万 预期效果=新增会员5000 "
          "协作部门=技术部,设计部,运营部")


def count(db, model, *where) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def request(db, approval_id: int = 1) -> ApprovalRequest:
    with db.transaction() as s:
        req = s.get(ApprovalRequest, approval_id)
        assert req is not None
        s.expunge(req)
        return req


def bind(h: Harness) -> None:
    h.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部")


def budget(h: Harness, who: str = "吴十") -> str:
    bind(h)
    return h.text(f"{G} {who}: @bot {BUDGET}")


def through_countersign(h: Harness) -> None:
    budget(h)
    h.run("dm as 张三: 同意 #A1", "dm as 陈七: 同意 #A1", "dm as 周八: 同意 #A1", "dm as 孙九: 同意 #A1")


# --- the transcript -----------------------------------------------------------------------------

def test_the_transcript_matches_its_golden_output(harness) -> None:
    got = harness.script(EXAMPLES / "approvals.txt")
    if os.environ.get("COLLABBOT_UPDATE_GOLDEN"):
        GOLDEN.write_text("\n".join(got) + "\n", encoding="utf-8")
    want = GOLDEN.read_text(encoding="utf-8").splitlines()
    assert got == want, "\n".join(difflib.unified_diff(want, got, "golden", "now", lineterm="", n=2))


def test_the_transcript_leaves_the_expected_rows(harness) -> None:
    harness.script(EXAMPLES / "approvals.txt")
    budget_req, extension = request(harness.db, 1), request(harness.db, 2)
    assert (budget_req.status, budget_req.round, budget_req.values["预算金额"]) == ("approved", 2, "60000")
    assert extension.status == "approved"
    with harness.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.overdue_warned_at is None
        assert task.deadline is not None and task.deadline.astimezone(TZ).strftime("%m-%d %H:%M") == "12-08 18:00"
        # one vote per approver per step: round 1 张三, 陈七, 周八 (rejects); round 2 张三, 陈七, 周八, 孙九, 赵总
        assert s.scalar(select(func.count()).select_from(ApprovalVote).where(ApprovalVote.request_id == 1)) == 8
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.entity_type == "approval_requests",
                                                                 AuditEntry.outcome == "ok")))
    assert count(harness.db, Wait, Wait.entity_type == "approval", Wait.answered_at.is_(None)) == 0
    assert count(harness.db, Wait, Wait.entity_type == "task", Wait.kind == "overdue", Wait.answered_at.is_(None)) == 0
    # every approval action is in the audit log, refusals included
    assert actions.count("approval.approve") == 8 and actions.count("approval.reject") == 1
    assert actions.count("approval.submit") == 2 and actions.count("approval.resubmit") == 1
    assert count(harness.db, AuditEntry, AuditEntry.action == "approval.approve", AuditEntry.outcome == "refused") == 1
    assert count(harness.db, AuditEntry, AuditEntry.action == "approval.reject", AuditEntry.outcome == "refused") == 1


def test_the_console_cli_prints_the_same(tmp_path: Path) -> None:
    """The golden file is what a newcomer sees when running the example."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "collabbot.adapters.server", "console", "--echo", "--script",
                             str(EXAMPLES / "approvals.txt")], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == GOLDEN.read_text(encoding="utf-8").splitlines()


# --- submitting ---------------------------------------------------------------------------------

def test_apply_alone_lists_the_templates(harness) -> None:
    out = harness.text("dm as 吴十: 申请")
    assert "市场活动预算审批：活动方案、预算金额、预算明细、预期效果、方案链接（选填）、协作部门（选填）" in out
    assert "延期申请：新截止日期、原因、补救措施" in out
    assert count(harness.db, ApprovalRequest) == 0


def test_apply_creates_the_request_its_steps_and_asks_the_first_stage(harness) -> None:
    out = budget(harness)
    assert "已提交审批 #A1「市场活动预算审批」，当前环节：初审，审批人 @张三" in out
    assert "→ 张三（私聊）: 吴十 提交的审批 #A1「市场活动预算审批」等你审批（初审）" in out
    req = request(harness.db)
    assert (req.status, req.stage_index, req.round, req.version) == ("pending", 0, 1, 1)
    assert req.values["预算金额"] == "50000" and req.project_id is not None and req.chat_id is not None
    with harness.db.transaction() as s:
        steps = list(s.scalars(select(ApprovalStep).order_by(ApprovalStep.stage_index)))
        assert [(st.name, st.status, st.mode) for st in steps] == [
            ("初审", "pending", "all"), ("会签", "waiting", "all"), ("最终审批", "waiting", "all")]
        names = [[a.user.name for a in st.approvers] for st in steps]
        assert names == [["张三"], ["陈七", "周八", "孙九"], ["赵总"]]
    waits = count(harness.db, Wait, Wait.entity_type == "approval", Wait.answered_at.is_(None))
    assert waits == 1
    assert count(harness.db, AuditEntry, AuditEntry.action == "approval.submit") == 1


def test_template_names_may_be_shortened(harness) -> None:
    bind(harness)
    out = harness.text(f"{G} 吴十: @bot 申请 预算 活动方案=a 预算金额=1000 预算明细=b 预期效果=c")
    assert "已提交审批 #A1「市场活动预算审批」" in out


@pytest.mark.parametrize("text, expected", [
    ("申请 报销 金额=1", "没有「报销」这个审批模板。已有模板：市场活动预算审批、人力支持申请、设备/数据资源申请、延期申请"),
    ("申请 申请 x=1", "没有「申请」这个审批模板"),  # matches two templates: not a guess
    ("申请 预算 活动方案=a", "还缺少：预算金额、预算明细、预期效果。例如：申请 市场活动预算审批 活动方案=… 预算金额=5万"),
    ("申请 预算 活动方案=a 标题=b", "「市场活动预算审批」没有「标题」这个字段。可填：活动方案、预算金额"),
    ("申请 预算 活动方案=a 活动方案=b", "字段「活动方案」写了两次"),
    ("申请 预算 双十二 活动方案=a", "「双十二」不是字段。字段请写成 名称=值"),
    ("申请 预算 活动方案=a 预算金额=很多 预算明细=b 预期效果=c", "预算金额「很多」不是有效的金额。例如：预算金额=5万"),
    ("申请 预算 活动方案=a 预算金额=-5 预算明细=b 预期效果=c", "预算金额「-5」不是有效的金额"),
    ("申请 预算 活动方案=a 预算金额=1 预算明细=b 预期效果=c 方案链接=www.x.com", "方案链接「www.x.com」不是有效的链接"),
    ("申请 预算 活动方案=a 预算金额=1 预算明细=b 预期效果=c 协作部门=法务部", "找不到部门「法务部」"),
    ("申请 人力 支持部门=设计部 人数=两 技能要求=a 支持时间=b 用途=c", "人数「两」不是有效的数字"),
    ("申请 设备 资源类型=房子 数量=1 用途=a 时限=12-20 提供部门=技术部", "资源类型「房子」不是有效的选项（设备/数据/账号/其他）"),
    ("申请 设备 资源类型=设备 数量=1 用途=a 时限=下周八 提供部门=技术部", "时限「下周八」不是有效的日期"),
    ("申请 设备 资源类型=设备 数量=1 用途=a 时限=12-20 提供部门=", "还缺少：提供部门"),
    ("申请 预算 活动方案=" + "长" * 2001 + " 预算金额=1 预算明细=b 预期效果=c", "不是有效的文字（最多 2000 字）"),
])
def test_malformed_forms_say_what_to_type(harness, text: str, expected: str) -> None:
    out = harness.text(f"dm as 吴十: {text}")
    assert expected in out
    assert count(harness.db, ApprovalRequest) == 0
    assert count(harness.db, OutboxMessage, OutboxMessage.target_name != "吴十") == 0


def test_a_countersign_without_departments_is_refused(harness) -> None:
    # in a private chat there is no project to take the participating departments from
    out = harness.text("dm as 吴十: 申请 预算 活动方案=a 预算金额=1 预算明细=b 预期效果=c")
    assert "「会签」需要会签部门：请填写 协作部门=部门1,部门2" in out
    bind(harness)
    out = harness.text(f"{G} 吴十: @bot 申请 预算 活动方案=a 预算金额=1 预算明细=b 预期效果=c")
    assert "已提交审批 #A1" in out
    with harness.db.transaction() as s:
        step = s.scalar(select(ApprovalStep).where(ApprovalStep.stage_index == 1))
        assert step is not None
        # the project's 参与部门 市场部, 技术部, 设计部; 张三 (市场部) approves 初审 first and is then skipped
        assert [a.user.name for a in step.approvers] == ["张三", "陈七", "周八"]


def test_someone_without_a_department_or_head_is_told(make_harness) -> None:
    h = make_harness()
    out = h.text("dm as 赵六: 申请 人力 支持部门=财务部 人数=1 技能要求=a 支持时间=b 用途=c")
    assert "找不到部门「财务部」" in out
    with h.db.transaction() as s:
        from collabbot.storage.models import Department, User

        zhao = s.scalar(select(User).where(User.name == "赵六"))
        assert zhao is not None
        zhao.department_id = None
        s.scalar(select(Department).where(Department.name == "设计部")).head_id = None  # type: ignore[union-attr]
    assert "你还没有所属部门，无法安排「初审」" in h.text("dm as 赵六: 申请 人力 支持部门=设计部 人数=1 技能要求=a "
                                                   "支持时间=b 用途=c")
    assert "设计部还没有设置部门负责人" in h.text("dm as 李四: 申请 人力 支持部门=设计部 人数=1 技能要求=a 支持时间=b 用途=c")


# --- deciding -----------------------------------------------------------------------------------

def test_the_whole_flow_by_commands(harness) -> None:
    budget(harness)
    assert "已同意审批 #A1，初审已完成，进入会签：@陈七、@周八、@孙九" in harness.text("dm as 张三: 同意 #A1")
    assert "已同意审批 #A1（会签 1/3），还在等：周八、孙九。" in harness.text("dm as 陈七: approve #A1 ok")
    harness.run("dm as 周八: 同意 #A1")
    out = harness.text("dm as 孙九: 同意 #A1")
    assert "进入最终审批：@赵总" in out and "→ 赵总（私聊）" in out
    out = harness.text("dm as 赵总: 同意 #A1 注意控制成本")
    assert "已同意审批 #A1，审批通过。" in out
    assert "→ 吴十（私聊）: 你的审批 #A1「市场活动预算审批」已通过。" in out
    assert "→ 新品上市群: 审批 #A1「市场活动预算审批」已通过。发起人 @吴十" in out
    assert "12-01 09:00 赵总 同意（最终审批）：注意控制成本" in out
    req = request(harness.db)
    assert req.status == "approved" and req.decided_at is not None
    assert "审批 #A1 当前已通过，不能同意这个审批" in harness.text("dm as 赵总: 同意 #A1")


def test_not_your_turn_is_refused_audited_and_changes_nothing(harness) -> None:
    budget(harness)
    out = harness.text("dm as 陈七: 同意 #A1")
    assert "审批 #A1 现在是「初审」环节，轮到 张三 审批，你不能操作。" in out
    assert count(harness.db, ApprovalVote) == 0
    assert count(harness.db, AuditEntry, AuditEntry.action == "approval.approve", AuditEntry.outcome == "refused") == 1
    out = harness.text(f"{G} 李四: tap 驳回 #1")
    assert "仅 李四 可见: 审批 #A1 现在是「初审」环节，轮到 张三 审批" in out
    assert request(harness.db).version == 1


def test_a_repeated_or_stale_tap_casts_no_second_vote(harness) -> None:
    budget(harness)
    harness.run("dm as 张三: tap 同意 #1")
    # the console shows the updated card (no buttons); the platform may still show someone the old copy
    reply = harness.bot.handle(tap_event(harness, "张三", "approve", stage_index=0))
    assert "你已经同意过审批 #A1 的这一环节" in reply.toast and reply.card is not None and not reply.card.buttons
    # a copy still drawn for 初审 (a platform's old copy); 陈七 may decide 会签, but not through it
    stale = harness.bot.handle(tap_event(harness, "陈七", "approve", stage_index=0))
    assert "这张卡片已过期：审批 #A1 当前审批中" in stale.toast
    assert count(harness.db, ApprovalVote) == 1
    # every copy follows its request: the group's copy now shows 会签, with the buttons for whoever's turn it is
    shown = [c.card for c in harness.console.sender.cards if c.target == ("chat", "新品上市群")][-1]
    assert "会签" in shown.status and shown.buttons
    assert count(harness.db, AuditEntry, AuditEntry.action == "approval.tap_ignored") == 2


def tap_event(h: Harness, who: str, action: str, stage_index: int, event_id: str = "",
              approval_id: int = 1) -> CardActionEvent:
    """A tap on a card drawn for one step of a request, as a platform would deliver it."""
    with h.db.transaction() as s:
        step = s.scalar(select(ApprovalStep).where(ApprovalStep.request_id == approval_id,
                                                   ApprovalStep.stage_index == stage_index)
                        .order_by(ApprovalStep.round.desc()).limit(1))
        assert step is not None
        value = CardAction(action, "approval", approval_id, step.id).pack()
    return CardActionEvent(event_id or f"tap-{who}-{action}-{stage_index}-{os.urandom(4).hex()}",
                           ChatRef("console", f"dm:{who}", who, is_group=False), UserRef("console", who, who), value)


def test_a_retried_event_casts_one_vote(harness) -> None:
    budget(harness)
    event = tap_event(harness, "张三", "approve", stage_index=0, event_id="tap-1")
    first = harness.bot.handle(event)
    second = harness.bot.handle(event)
    assert first == second and first.card is not None and not first.card.buttons
    assert count(harness.db, ApprovalVote) == 1
    assert count(harness.db, OutboxMessage, OutboxMessage.dedupe_key.like("approval:1:step:%:ask:%")) == 4


def test_reject_needs_a_reason_and_ends_or_returns(harness) -> None:
    bind(harness)
    harness.run(f"{G} 吴十: @bot 申请 人力 支持部门=设计部 人数=1 技能要求=插画 支持时间=两周 用途=海报")
    assert "缺少驳回原因。例如：驳回 #A1 预算明细不清楚" in harness.text("dm as 张三: 驳回 #A1")
    out = harness.text("dm as 张三: tap 驳回 #1")
    assert "驳回需要写原因，请发送：驳回 #A1 原因 …" in out
    out = harness.text("dm as 张三: reject #A1 reason 人手已排满")
    assert "已驳回审批 #A1，审批结束。原因：人手已排满" in out
    assert "→ 吴十（私聊）: 你的审批 #A1「人力支持申请」被驳回：人手已排满" in out
    assert "→ 新品上市群: 审批 #A1「人力支持申请」已驳回。发起人 @吴十" in out
    assert request(harness.db).status == "rejected"
    assert "审批 #A1 当前已驳回，不能重新提交这个审批" in harness.text("dm as 吴十: 重新提交 #A1")


def test_resubmit_after_return(harness) -> None:
    budget(harness)
    harness.run("dm as 张三: 同意 #A1", "dm as 陈七: 驳回 #A1 缺少技术评估")
    assert request(harness.db).status == "returned"
    assert "你不能重新提交这个审批：只有发起人 吴十 可以" in harness.text("dm as 陈七: 重新提交 #A1")
    assert "预算金额「x」不是有效的金额" in harness.text("dm as 吴十: 重新提交 #A1 预算金额=x")
    assert "「说明」不是字段" in harness.text("dm as 吴十: 重新提交 #A1 说明")
    assert "审批 #A1 当前已退回修改，不能同意这个审批" in harness.text("dm as 张三: 同意 #A1")
    out = harness.text("dm as 吴十: resubmit #A1 预算明细=场地3万,物料2万,技术评估见附件")
    assert "审批 #A1「市场活动预算审批」已重新提交（第 2 轮），当前环节：初审，审批人 @张三" in out
    req = request(harness.db)
    assert (req.status, req.round, req.stage_index) == ("pending", 2, 0)
    assert req.values["预算明细"] == "场地3万,物料2万,技术评估见附件" and req.values["预算金额"] == "50000"
    assert count(harness.db, ApprovalStep) == 6


def test_or_sign_completes_with_one_approval(harness) -> None:
    harness.run("dm as 李四: 申请 设备 资源类型=设备 数量=3 用途=兼容性测试 时限=12-20 提供部门=设计部",
                "dm as 陈七: 同意 #A1", "dm as 周八: 同意 #A1")
    with harness.db.transaction() as s:
        step = s.scalar(select(ApprovalStep).where(ApprovalStep.stage_index == 2))
        assert step is not None and step.status == "pending" and step.mode == "any"
    assert count(harness.db, Wait, Wait.entity_type == "approval", Wait.answered_at.is_(None)) == 2
    out = harness.text("dm as 赵总: 同意 #A1")
    assert "审批通过" in out
    assert count(harness.db, Wait, Wait.entity_type == "approval", Wait.answered_at.is_(None)) == 0
    assert "审批 #A1 当前已通过" in harness.text("dm as 钱总: 同意 #A1")


def test_on_self_skip_for_the_initiator_and_earlier_approvers(harness) -> None:
    """张三 heads 市场部: his own 初审 is skipped, and so is his part of the 会签 of the project's departments."""
    bind(harness)
    out = harness.text(f"{G} 张三: @bot 申请 预算 活动方案=a 预算金额=1 预算明细=b 预期效果=c")
    assert "当前环节：会签，审批人 @陈七、@周八" in out
    assert "初审 自动跳过：审批人即发起人" in out
    with harness.db.transaction() as s:
        first = s.scalar(select(ApprovalStep).where(ApprovalStep.stage_index == 0))
        assert first is not None and (first.status, first.note) == ("skipped", "initiator")
    harness.run("dm as 陈七: 同意 #A1", "dm as 周八: 同意 #A1", "dm as 赵总: 同意 #A1")
    assert request(harness.db).status == "approved"


def test_on_self_keep_asks_again(make_harness) -> None:
    templates = [{"name": "采购", "fields": [{"name": "物品", "type": "text"}],
                  "stages": [{"name": "初审", "kind": "dept_head", "on_self": "keep"},
                             {"name": "复核", "kind": "person", "person": "张三", "on_self": "keep"}]}]
    config = parse_config({"approval_templates": templates})
    h = make_harness(config)
    out = h.text("dm as 张三: 申请 采购 物品=打印机")
    assert "当前环节：初审，审批人 @张三" in out
    assert "进入复核：@张三" in h.text("dm as 张三: 同意 #A1")
    assert "审批通过" in h.text("dm as 张三: 同意 #A1")


def test_transfer_hands_the_step_on(harness) -> None:
    budget(harness)
    harness.run("dm as 张三: 同意 #A1")
    assert "缺少转交对象" in harness.text("dm as 陈七: 转交 #A1 原因 出差")
    assert "缺少转交原因" in harness.text("dm as 陈七: 转交 #A1 @李四")
    assert "不能转交给自己" in harness.text("dm as 陈七: 转交 #A1 @陈七 原因 x")
    assert "不能转交给发起人 吴十" in harness.text("dm as 陈七: 转交 #A1 @吴十 原因 x")
    assert "周八 已经是这一环节的审批人" in harness.text("dm as 陈七: 转交 #A1 @周八 原因 x")
    assert "轮到 陈七、周八、孙九 审批，你不能操作" in harness.text("dm as 李四: 转交 #A1 @赵六 原因 x")
    out = harness.text("dm as 陈七: 转交 #A1 @李四 原因 出差期间代批")
    assert "已将审批 #A1（会签）转交给 @李四" in out
    assert "→ 李四（私聊）: 陈七 将审批 #A1「市场活动预算审批」（会签）转交给你：出差期间代批" in out
    assert "陈七 转交（会签）：交给 李四，出差期间代批" in out
    assert "轮到 周八、孙九、李四 审批" in harness.text("dm as 陈七: 同意 #A1")
    with harness.db.transaction() as s:
        waiting = sorted(s.scalars(select(Wait.person_id).where(Wait.entity_type == "approval",
                                                                Wait.answered_at.is_(None))))
        assert len(waiting) == 3
    harness.run("dm as 李四: tap 同意 #1", "dm as 周八: 同意 #A1", "dm as 孙九: 同意 #A1")
    assert request(harness.db).stage_index == 2
    # a task 转交 still works as before
    harness.run(f"{G} 张三: @bot 新建任务 物料 负责人 @李四")
    assert "任务 #1 已转交给 @赵六" in harness.text(f"{G} 张三: @bot 转交 #1 @赵六")


def test_withdraw_and_cancel(make_harness) -> None:
    h = make_harness(admins=("console:孙九",))
    budget(h)
    assert "你不能撤回这个审批：只有发起人 吴十 可以" in h.text("dm as 张三: 撤回 #A1")
    out = h.text("dm as 吴十: withdraw #A1")
    assert "审批 #A1「市场活动预算审批」已撤回。" in out
    assert "→ 张三（私聊）: 吴十 撤回了审批 #A1「市场活动预算审批」，无需再审批。" in out
    assert "→ 新品上市群: 审批 #A1「市场活动预算审批」已撤回。" in out
    assert count(h.db, Wait, Wait.entity_type == "approval", Wait.answered_at.is_(None)) == 0
    assert "审批 #A1 当前已撤回，不能撤回这个审批" in h.text("dm as 吴十: 撤回 #A1")
    h.run(f"{G} 吴十: @bot {BUDGET}")
    assert "你不能取消这个审批：只有管理员可以" in h.text("dm as 吴十: 取消审批 #A2")
    out = h.text("dm as 孙九: 取消审批 #A2 原因 活动取消")
    assert "审批 #A2「市场活动预算审批」已取消。活动取消" in out
    assert "→ 吴十（私聊）: 管理员 孙九 取消了审批 #A2" in out
    assert request(h.db, 2).status == "cancelled"
    assert "找不到审批 #A9" in h.text("dm as 孙九: 取消审批 #A9")
    assert "缺少审批编号" in h.text("dm as 孙九: 取消审批")


def test_one_tap_task_for_an_approved_resource_request(harness) -> None:
    bind(harness)
    harness.run(f"{G} 李四: @bot 申请 人力 支持部门=设计部 人数=1 技能要求=插画 支持时间=两周 用途=活动海报",
                "dm as 陈七: 同意 #A1")
    out = harness.text("dm as 周八: 同意 #A1")
    assert "[一键转任务]" in out
    [old_button] = [b.value for c in harness.console.sender.cards if c.target == ("user", "李四")
                    for b in c.card.buttons if b.label == "一键转任务"][-1:]
    assert "只有发起人、设计部负责人或管理员可以" in harness.text(f"{G} 赵六: tap 一键转任务 #1")
    out = harness.text(f"{G} 李四: tap 一键转任务 #1")
    assert "已创建任务 #1，负责人 周八" in out
    assert "已创建任务 #1「落实人力支持申请 #A1」，负责人 @周八" in out
    with harness.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.owner.name == "周八" and task.department is not None
        assert task.department.name == "设计部" and "用途：活动海报" in task.remarks
    # every copy of the result follows: 李四's private copy no longer offers the button ...
    with pytest.raises(TranscriptError):
        harness.run("dm as 李四: tap 一键转任务 #1")
    # ... and a tap on a platform's old copy of it changes nothing
    reply = harness.bot.handle(CardActionEvent("old-copy-tap", ChatRef("console", "dm:李四", "李四", is_group=False),
                                               UserRef("console", "李四", "李四"), old_button))
    assert "已经转为任务 #1" in reply.toast
    assert count(harness.db, Task) == 1
    assert request(harness.db).result_task_id == 1


def test_queries_and_viewing(harness) -> None:
    budget(harness)
    out = harness.text("dm as 张三: 待我审批")
    assert "#A1 市场活动预算审批｜吴十｜初审｜12-01 09:00 起" in out
    assert "审批 #A1「市场活动预算审批」（吴十 发起，初审，12-01 09:00 起）" in harness.text("dm as 张三: 待我处理")
    out = harness.text("dm as 吴十: approvals")
    assert "没有等你审批的事项" in out and "#A1 市场活动预算审批｜审批中 · 初审" in out
    out = harness.text("dm as 吴十: 审批 #A1")
    assert "审批 #A1 市场活动预算审批 【审批中 · 初审】" in out and "[同意]" not in out
    assert "[同意] [驳回] [转交]" in harness.text("dm as 张三: 审批 #A1")
    assert "你不能查看这个审批" in harness.text("dm as 赵六: 审批 #A1")
    assert "市场活动预算审批" in harness.text(f"{G} 赵六: @bot 审批 #A1")  # asked in the request's own group
    assert "找不到审批 #A7" in harness.text("dm as 吴十: 审批 #A7")
    assert "缺少审批编号" in harness.text("dm as 吴十: 审批 #7")  # a task's number is not an approval's
    help_text = harness.text("dm as 吴十: 帮助")
    assert "申请 / apply" in help_text and "待我审批 / approvals" in help_text and "转交 #A1 @李四" in help_text


def test_an_unanswered_step_is_nagged_and_escalated(harness) -> None:
    budget(harness)
    out = harness.text("wait 2h")
    assert "→ 新品上市群: @张三 审批 #A1「市场活动预算审批」还在等你审批（初审，12-01 09:00 起）" in out
    out = harness.text("wait 1d")
    assert "→ 赵总（私聊）: 张三 的这件事已超过 24 小时未回应，请跟进" in out
    assert "审批 #A1「市场活动预算审批」（初审）待审批" in out
    harness.run("dm as 张三: 同意 #A1")
    with harness.db.transaction() as s:
        first = s.scalar(select(ApprovalStep).where(ApprovalStep.stage_index == 0))
        assert first is not None and first.status == "approved"
        zhang = first.approvers[0].user_id
        assert not s.scalar(select(func.count()).select_from(Wait).where(
            Wait.person_id == zhang, Wait.entity_type == "approval", Wait.answered_at.is_(None)))


# --- 延期申请 ----------------------------------------------------------------------------------------

def test_extension_moves_the_deadline(harness) -> None:
    bind(harness)
    harness.run(f"{G} 张三: @bot 新建任务 物料 负责人 @王五 截止 12-03")
    assert "缺少任务编号" in harness.text(f"{G} 王五: @bot 申请 延期 新截止日期=12-08 原因=a 补救措施=b")
    assert "只有负责人 王五 可以" in harness.text(f"{G} 李四: @bot 申请 延期 #1 新截止日期=12-08 原因=a 补救措施=b")
    assert "要晚于当前截止时间 12-03 18:00" in harness.text(f"{G} 王五: @bot 申请 延期 #1 新截止日期=12-02 原因=a 补救措施=b")
    assert "找不到任务 #9" in harness.text(f"{G} 王五: @bot 申请 延期 #9 新截止日期=12-08 原因=a 补救措施=b")
    out = harness.text(f"{G} 王五: @bot 申请 延期 任务=#1 新截止日期=12-08 原因=缺图 补救措施=先出线框")
    assert "已提交审批 #A1「延期申请」，当前环节：任务发起人审批，审批人 @张三" in out
    assert "关联任务：#1 物料（当前截止 12-03 18:00）" in out
    assert "已有一个未结束的延期申请 #A1" in harness.text(f"{G} 王五: @bot 申请 延期 #1 新截止日期=12-09 原因=a 补救措施=b")
    out = harness.text("dm as 张三: 同意 #A1")
    assert "任务 #1「物料」的截止时间已改为 12-08 18:00" in out
    with harness.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.deadline is not None
        assert task.deadline.astimezone(TZ).strftime("%m-%d %H:%M") == "12-08 18:00" and task.version == 2
    assert "张三 批准延期：新截止 12-08 18:00（审批 #A1）" in harness.text("dm as 王五: 任务 #1")


def test_a_subtask_is_not_extended_past_its_parent(harness) -> None:
    """The bound a subtask's deadline has when it is set holds for an extension too."""
    harness.run(f"{G} 张三: @bot 新建任务 父 负责人 @李四 截止 12-10",
                f"{G} 李四: @bot 子任务 #1 子 负责人 @李四 截止 12-09")
    out = harness.text(f"{G} 李四: @bot 申请 延期 #2 新截止日期=12-25 原因=a 补救措施=b")
    assert "子任务截止时间不能晚于主任务（12-10 18:00）" in out and "已提交审批" not in out
    assert "已提交审批" in harness.text(f"{G} 李四: @bot 申请 延期 #2 新截止日期=12-10 原因=a 补救措施=b")


def test_a_rejected_extension_keeps_the_deadline(harness) -> None:
    harness.run(f"{G} 张三: @bot 新建任务 物料 负责人 @王五 截止 12-03",
                f"{G} 王五: @bot 申请 延期 #1 新截止日期=12-08 原因=a 补救措施=b")
    out = harness.text("dm as 张三: 驳回 #A1 不能再晚了")
    assert "审批结束" in out
    with harness.db.transaction() as s:
        task = s.get(Task, 1)
        assert task is not None and task.deadline is not None and task.deadline.day == 3
    assert "#1 物料" in harness.text(f"{G} 王五: @bot 申请 延期 #1 新截止日期=12-09 原因=a 补救措施=b")


def test_the_owner_who_initiated_the_task_extends_it_at_once(harness) -> None:
    harness.run(f"{G} 张三: @bot 新建任务 物料 负责人 @张三 截止 12-03")
    out = harness.text(f"{G} 张三: @bot 申请 延期 #1 新截止日期=12-08 原因=a 补救措施=b")
    assert "各环节均无需他人审批，已自动通过" in out
    assert "任务 #1「物料」的截止时间已改为 12-08 18:00" in out


# --- English ------------------------------------------------------------------------------------

def test_english_replies(make_harness) -> None:
    h = make_harness(language="en")
    bind(h)
    out = h.text(f"{G} 吴十: @bot apply 预算 活动方案=a 预算金额=1")
    assert "Missing: 预算明细, 预期效果. For example: apply 市场活动预算审批" in out
    out = h.text(f"{G} 吴十: @bot {BUDGET}")
    assert "Approval #A1 \"市场活动预算审批\" submitted; now at 初审, approver(s) @张三" in out
    assert "Approval #A1 is at \"初审\": it is 张三's turn, not yours." in h.text("dm as 陈七: approve #A1")


# --- the grammar ----------------------------------------------------------------------------------

def test_generic_pairs_parse_only_for_forms() -> None:
    cmd = parse("申请 市场活动预算审批 活动方案=双十二 快闪店 预算金额＝5万 方案链接=https://a.example/x?v=1&w=2")
    assert isinstance(cmd, Command)
    assert cmd.text == "市场活动预算审批"
    assert cmd.pairs == (("活动方案", "双十二 快闪店"), ("预算金额", "5万"), ("方案链接", "https://a.example/x?v=1&w=2"))
    cmd = parse("重新提交 #A3 预算明细=场地,物料 https://b.example/?a=b")
    assert isinstance(cmd, Command) and cmd.approvals == (3,)
    assert cmd.pairs == (("预算明细", "场地,物料 https://b.example/?a=b"),) and cmd.links == ("https://b.example/?a=b",)
    # every other command keeps such tokens as text, as before
    cmd = parse("评论 #1 a=b")
    assert isinstance(cmd, Command) and cmd.text == "a=b" and cmd.pairs == ()
    cmd = parse("驳回 #A2 原因 预算=不清楚")
    assert isinstance(cmd, Command) and cmd.fields == {"reason": "预算=不清楚"}


@pytest.mark.parametrize("text, name", [("同意 #A1", "approve"), ("approve #A1", "approve"), ("驳回 #A1 x", "reject"),
                                        ("撤回 #A1", "withdraw"), ("审批 #A1", "show_approval"),
                                        ("approval #A1", "show_approval"), ("approvals", "my_approvals"),
                                        ("待我审批", "my_approvals"), ("取消审批 #A1", "cancel_approval"),
                                        ("approval cancel #A1", "cancel_approval"), ("cancel #1", "cancel_task"),
                                        ("重新提交 #A1", "resubmit"), ("转交 #A1 @x", "reassign_task")])
def test_approval_aliases(text: str, name: str) -> None:
    cmd = parse(text)
    assert isinstance(cmd, Command) and cmd.name == name


# --- the rules and the templates --------------------------------------------------------------------

def test_who_decides() -> None:
    assert rules.who_decides("all", [1, 2, 3], initiator=9, approved_before={2}, on_self="skip") == ([1, 3], "")
    assert rules.who_decides("all", [9], initiator=9, approved_before=set(), on_self="skip") == ([], "initiator")
    assert rules.who_decides("all", [2], initiator=9, approved_before={2}, on_self="skip") == ([], "approved_before")
    assert rules.who_decides("any", [1, 2], initiator=9, approved_before={2}, on_self="skip") == ([], "approved_before")
    assert rules.who_decides("any", [9, 1], initiator=9, approved_before=set(), on_self="skip") == ([1], "")
    assert rules.who_decides("all", [9, 2], initiator=9, approved_before={2}, on_self="keep") == ([9, 2], "")


def test_stage_outcome_and_progress() -> None:
    assert rules.stage_outcome("all", [1, 2], {1}, set()) == rules.PENDING
    assert rules.stage_outcome("all", [1, 2], {1, 2}, set()) == rules.APPROVED
    assert rules.stage_outcome("all", [1, 2], {1}, {2}) == rules.REJECTED
    assert rules.stage_outcome("any", [1, 2], {2}, set()) == rules.APPROVED
    assert rules.stage_outcome("any", [1, 2], set(), {1}) == rules.REJECTED
    assert rules.stage_outcome("all", [1], {5}, set()) == rules.PENDING  # votes of people no longer asked don't count
    assert rules.progress("all", [1, 2, 3], {1, 3}) == (2, 3)
    assert rules.progress("any", [1, 2], {1, 2}) == (1, 1)
    assert rules.after_rejection("return_to_initiator") == rules.RETURNED
    assert rules.after_rejection("end") == rules.REJECTED
    assert rules.can("resubmit", "returned") and not rules.can("approve", "returned")


@pytest.mark.parametrize("kind, raw, stored", [
    ("money", "5万", "50000"), ("money", "¥50,000元", "50000"), ("money", "1.5k", "1500"), ("money", "12.50", "12.5"),
    ("money", "-1", None), ("money", "五万", None), ("number", "3", "3"), ("number", "1,200", "1200"),
    ("number", "3人", None), ("link", "https://x.example/a", "https://x.example/a"), ("link", "x.example", None),
    ("date", "12-20", "2026-12-20T18:00:00+08:00"), ("date", "不知道", None), ("text", "  ", None),
])
def test_field_values(kind: str, raw: str, stored: str | None) -> None:
    from collabbot.bot.approval_templates import FieldSpec

    assert parse_value(FieldSpec("x", kind), raw, datetime(2026, 12, 1, 9, 0, tzinfo=TZ)) == stored


def test_the_example_config_ships_the_builtin_templates() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.approval_templates == builtin_templates()
    names = [t.name for t in builtin_templates()]
    assert names == ["市场活动预算审批", "人力支持申请", "设备/数据资源申请", "延期申请"]
    budget_template = builtin_templates()[0]
    assert [s.kind for s in budget_template.stages] == ["dept_head", "countersign", "role"]
    assert budget_template.stages[2].people == ("赵总",) and budget_template.on_reject == "return_to_initiator"


def test_roles_override_the_builtins() -> None:
    config = parse_config({"approval_roles": {"运营总监": "孙九"}})
    assert config.approval_templates[0].stages[2].people == ("孙九",)


@pytest.mark.parametrize("templates, roles, key", [
    ("x", None, "approval_templates"),
    ([{"fields": [], "stages": [{"name": "a", "kind": "dept_head"}]}], None, "approval_templates[0].name"),
    ([{"name": "a b", "stages": [{"name": "a", "kind": "dept_head"}]}], None, "approval_templates[0].name"),
    ([{"name": "a"}], None, "approval_templates[0].stages"),
    ([{"name": "a", "stages": [{"name": "s", "kind": "boss"}]}], None, "approval_templates[0].stages[0].kind"),
    ([{"name": "a", "stages": [{"name": "s", "kind": "role", "role": "CEO"}]}], None,
     "approval_templates[0].stages[0].role"),
    ([{"name": "a", "stages": [{"name": "s", "kind": "dept_head", "on_self": "maybe"}]}], None,
     "approval_templates[0].stages[0].on_self"),
    ([{"name": "a", "stages": [{"name": "s", "kind": "dept_head", "people": ["x"]}]}], None,
     "approval_templates[0].stages[0].people"),
    ([{"name": "a", "stages": [{"name": "s", "kind": "any_of", "people": []}]}], None,
     "approval_templates[0].stages[0].people"),
    ([{"name": "a", "stages": [{"name": "s", "kind": "countersign", "departments_field": "部门"}]}], None,
     "approval_templates[0].stages[0].departments_field"),
    ([{"name": "a", "stages": [{"name": "s", "kind": "task_initiator"}]}], None, "approval_templates[0].stages[0].kind"),
    ([{"name": "a", "fields": [{"name": "x", "type": "colour"}], "stages": [{"name": "s", "kind": "dept_head"}]}],
     None, "approval_templates[0].fields[0].type"),
    ([{"name": "a", "fields": [{"name": "x", "type": "choice"}], "stages": [{"name": "s", "kind": "dept_head"}]}],
     None, "approval_templates[0].fields[0].choices"),
    ([{"name": "a", "fields": [{"name": "x y"}], "stages": [{"name": "s", "kind": "dept_head"}]}],
     None, "approval_templates[0].fields[0].name"),
    ([{"name": "a", "fields": [{"name": "x"}, {"name": "x"}], "stages": [{"name": "s", "kind": "dept_head"}]}],
     None, "approval_templates[0].fields[1].name"),
    ([{"name": "a", "kind": "resource", "stages": [{"name": "s", "kind": "dept_head"}]}], None,
     "approval_templates[0].receiving_department_field"),
    ([{"name": "a", "kind": "extension", "fields": [{"name": "d", "type": "text"}], "deadline_field": "d",
       "stages": [{"name": "s", "kind": "task_initiator"}]}], None, "approval_templates[0].deadline_field"),
    ([{"name": "a", "colour": "red", "stages": [{"name": "s", "kind": "dept_head"}]}], None, "approval_templates[0].colour"),
    ([{"name": "a", "stages": [{"name": "s", "kind": "dept_head"}]}] * 2, None, "approval_templates[1].name"),
    ([], {"运营总监": 3}, "approval_roles.运营总监"),
])
def test_bad_templates_name_the_key(templates, roles, key: str) -> None:
    data = {"approval_templates": templates}
    if roles is not None:
        data["approval_roles"] = roles
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert err.value.key == key


def test_a_template_removed_from_the_config_is_explained(make_harness) -> None:
    h = make_harness()
    budget(h)
    templates = [{"name": "采购", "fields": [{"name": "物品"}], "stages": [{"name": "初审", "kind": "dept_head"}]}]
    h.bot.config = replace(h.config, approval_templates=parse_config({"approval_templates": templates}).approval_templates)
    assert "审批模板「市场活动预算审批」已不在配置中" in h.text("dm as 张三: 同意 #A1")
    assert "审批 #A1 市场活动预算审批" in h.text("dm as 吴十: 审批 #A1")  # still shown, with its values


def test_the_trail_survives_a_day_change(harness) -> None:
    budget(harness)
    harness.clock.set(harness.clock.now() + timedelta(days=1))
    out = harness.text("dm as 张三: 同意 #A1 好")
    assert "12-01 09:00 吴十 提交" in out and "12-02 09:00 张三 同意（初审）：好" in out
    with harness.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(ApprovalApprover)) == 5
