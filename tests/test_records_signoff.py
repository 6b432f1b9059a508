"""Project sign-off (协同目标确认函) end to end through the console, on SQLite and PostgreSQL: sent after
绑定项目, confirmed by each participating department's head on a card, chased and escalated like any
approval, replaced when the goal changes; the project card shows who has confirmed, on every platform."""

from __future__ import annotations

from collabbot.bot.replies import Message
from collabbot.cards.render import PLATFORMS, render_message
from collabbot.storage.models import ApprovalRequest, AuditEntry, Department, OutboxMessage

G = "in 新品上市群 as"
BIND = (f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部 目标 双十二GMV破千万 "
        "KPI 转化率3% 范围 线上全渠道")


def _project_updates(harness) -> list[Message]:
    with harness.db.transaction() as s:
        rows = [r for r in s.query(OutboxMessage).filter(OutboxMessage.target_kind == "update").order_by(OutboxMessage.id)
                if (r.payload.get("card") or {}).get("key") == "project:1"]
        return [Message.from_json(r.payload) for r in rows]


def _signoff_line(message: Message) -> str:
    assert message.card is not None
    return dict(message.card.fields)["目标确认"]


def test_sent_after_binding_confirmed_on_cards_chased_and_shown_on_the_project_card(harness) -> None:
    out = harness.text(BIND)
    assert "范围：线上全渠道" in out
    assert "📝 已发出协同目标确认函 #A1，请各参与部门负责人确认目标、KPI 和范围（部门确认）：@陈七、@周八" in out
    assert "→ 陈七（私聊）: 张三 提交的审批 #A1「协同目标确认函」等你审批（部门确认）" in out
    assert "目标：双十二GMV破千万" in out and "KPI：转化率3%" in out and "参与部门：市场部,技术部,设计部" in out
    # the coordinator heads 市场部: sending it is his department's confirmation
    shown = harness.text(f"{G} 王五: @bot 项目信息")
    assert "目标确认：确认中 #A1（1/3）：市场部 张三 ✓（发起）、技术部 陈七 待确认、设计部 周八 待确认" in shown

    tapped = harness.text("dm as 陈七: tap 同意")
    assert "已同意审批 #A1（部门确认 1/2），还在等：周八" in tapped
    # every sent copy of the project card follows the answer
    updates = _project_updates(harness)
    assert updates and all("技术部 陈七 ✓" in _signoff_line(m) and "（2/3）" in _signoff_line(m) for m in updates)

    # 周八 does not answer: nagged like any approver, then escalated to his supervisor
    nag = harness.text("wait 2h")
    assert "@周八 审批 #A1「协同目标确认函」还在等你审批" in nag
    escalated = harness.text("wait 1d")
    assert "→ 赵总（私聊）:" in escalated and "周八" in escalated

    done = harness.text("dm as 周八: 同意 #A1 没问题")
    assert "你的审批 #A1「协同目标确认函」已通过" in done and "→ 新品上市群: 审批 #A1「协同目标确认函」已通过" in done
    last = _project_updates(harness)[-1]
    assert _signoff_line(last).startswith("已全部确认 #A1：") and "设计部 周八 ✓" in _signoff_line(last)
    assert "已全部确认 #A1" in harness.text(f"{G} 张三: @bot 项目信息")
    # binding again without changing what was confirmed asks nobody
    again = harness.text(f"{G} 张三: @bot 绑定项目 结束 12-31")
    assert "协同目标确认函" not in again
    with harness.db.transaction() as s:
        assert s.query(ApprovalRequest).count() == 1
        actions = [a.action for a in s.query(AuditEntry).filter(AuditEntry.entity_type == "approval_requests")]
    assert actions == ["approval.submit", "approval.approve", "approval.approve"]


def test_a_changed_goal_replaces_the_letter_in_progress(harness) -> None:
    harness.run(BIND, "dm as 陈七: 同意 #A1")
    out = harness.text(f"{G} 张三: @bot 绑定项目 目标 双十二GMV破两千万")
    assert "→ 周八（私聊）: 协同目标确认函 #A1 的内容已修改，旧函作废，无需再确认" in out
    assert "陈七（私聊）: 协同目标确认函 #A1" not in out  # he had answered already
    assert "📝 已发出协同目标确认函 #A2" in out and "目标：双十二GMV破两千万" in out
    with harness.db.transaction() as s:
        assert s.get(ApprovalRequest, 1).status == "cancelled" and s.get(ApprovalRequest, 2).status == "pending"
    # the old letter's cards lost their buttons: each copy's latest update shows none
    with harness.db.transaction() as s:
        latest = {r.target_id: Message.from_json(r.payload) for r in s.query(OutboxMessage).filter(
            OutboxMessage.target_kind == "update").order_by(OutboxMessage.id)
            if (r.payload.get("card") or {}).get("key") == "approval:1"}
    assert latest and all(m.card is not None and not m.card.buttons for m in latest.values())
    assert "审批 #A1 当前已取消，不能同意这个审批" in harness.text("dm as 周八: 同意 #A1")
    assert "确认中 #A2（1/3）" in harness.text(f"{G} 张三: @bot 项目信息")


def test_a_rejection_waits_for_an_amended_goal(harness) -> None:
    harness.run(BIND)
    out = harness.text("dm as 周八: 驳回 #A1 范围要含线下门店")
    assert "你的审批 #A1「协同目标确认函」被驳回：范围要含线下门店" in out
    assert "有部门驳回 #A1，请调整后重新绑定：市场部 张三 ✓（发起）、技术部 陈七 —、设计部 周八 ✗ 驳回" in harness.text(
        f"{G} 张三: @bot 项目信息")
    assert "协同目标确认函" not in harness.text(f"{G} 张三: @bot 绑定项目 开始 12-01")
    amended = harness.text(f"{G} 张三: @bot 绑定项目 范围 线上全渠道和线下门店")
    assert "📝 已发出协同目标确认函 #A2" in amended


def test_nothing_to_confirm_or_nobody_to_ask(harness) -> None:
    plain = harness.text(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部")
    assert "协同目标确认函" not in plain  # no goal, KPI or scope yet
    only_mine = harness.text(f"{G} 张三: @bot 绑定项目 参与部门 市场部 目标 上市")
    assert "协同目标确认函 #A1 无需其他部门确认，已生效" in only_mine
    with harness.db.transaction() as s:
        s.query(Department).filter(Department.name == "运营部").one().head_id = None
    headless = harness.text(f"{G} 张三: @bot 绑定项目 参与部门 市场部,运营部")
    assert "项目「新品上市」信息已更新" in headless  # bound all the same
    assert "协同目标确认函未发出：运营部还没有设置部门负责人" in headless


def test_every_platform_renders_the_letter_and_the_project_card(harness) -> None:
    harness.run(BIND, "dm as 陈七: tap 同意")
    with harness.db.transaction() as s:
        rows = [r for r in s.query(OutboxMessage).order_by(OutboxMessage.id)
                if (r.payload.get("card") or {}).get("kind") in ("approval", "project")]
        messages = [Message.from_json(r.payload) for r in rows]
    assert any(m.card is not None and m.card.kind == "project" and "目标确认" in dict(m.card.fields) for m in messages)
    for message in messages:
        for platform in PLATFORMS:
            assert render_message(platform, message)
