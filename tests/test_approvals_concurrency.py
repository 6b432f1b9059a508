"""Approvals under concurrency, with real threads each calling `Bot.handle` with its own event, on SQLite
and a real PostgreSQL (the `db` fixture runs each test on both), repeated several times.

What must hold: the three heads of a 会签 tapping at the same moment all count, the stage completes once
and the next stage is asked once; one person's tap and command racing cast one vote; a platform's
retry racing the original casts one vote; two 或签 approvers at once end the flow once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select

from collabbot.bot.app import Bot
from collabbot.bot.events import CardActionEvent, ChatRef, InboundEvent, MessageEvent, UserRef
from collabbot.bot.replies import CardAction, Reply
from collabbot.storage.models import (
    ApprovalRequest,
    ApprovalStep,
    ApprovalVote,
    AuditEntry,
    OutboxMessage,
    User,
    Wait,
)

from .conftest import Harness

G = "in 新品上市群 as"
REPEATS = 5
BUDGET = ("申请 市场活动预算审批 活动方案=快闪店 预算金额=5万 预算明细=场地,物料 预期效果=拉新 "
          "协作部门=技术部,设计部,运营部")


def at_once(bot: Bot, events: Sequence[InboundEvent]) -> list[Reply]:
    """Handle every event in its own thread, all released together; their replies, in order."""
    barrier = threading.Barrier(len(events))
    replies: list[Reply | None] = [None] * len(events)
    errors: list[BaseException] = []

    def run(i: int, event: InboundEvent) -> None:
        try:
            barrier.wait(timeout=10)
            replies[i] = bot.handle(event)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, e)) for i, e in enumerate(events)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert all(r is not None for r in replies)
    return replies  # type: ignore[return-value]


def dm(who: str) -> ChatRef:
    return ChatRef("console", f"dm:{who}", who, is_group=False)


def tap(h: Harness, who: str, approval_id: int, stage_index: int, action: str = "approve") -> CardActionEvent:
    with h.db.transaction() as s:
        step = s.scalar(select(ApprovalStep).where(ApprovalStep.request_id == approval_id,
                                                   ApprovalStep.stage_index == stage_index))
        assert step is not None
        value = CardAction(action, "approval", approval_id, step.id).pack()
    return CardActionEvent(uuid.uuid4().hex, dm(who), UserRef("console", who, who), value)


def say(who: str, text: str) -> MessageEvent:
    return MessageEvent(uuid.uuid4().hex, dm(who), UserRef("console", who, who), text)


def scalar(h: Harness, stmt):
    with h.db.transaction() as s:
        return s.scalar(stmt)


def user_id(h: Harness, name: str) -> int:
    return scalar(h, select(User.id).where(User.name == name))


def file_budget(h: Harness) -> int:
    h.run(f"{G} 吴十: @bot {BUDGET}")
    approval_id = scalar(h, select(func.max(ApprovalRequest.id)))
    h.run(f"dm as 张三: 同意 #A{approval_id}")
    return approval_id


def test_countersign_heads_tapping_at_once_all_count_and_the_next_stage_is_asked_once(harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部")
    boss = user_id(harness, "赵总")
    for _ in range(REPEATS):
        approval_id = file_budget(harness)
        replies = at_once(harness.bot, [tap(harness, who, approval_id, 1) for who in ("陈七", "周八", "孙九")])
        assert all(r.toast_kind == "success" for r in replies), [r.toast for r in replies]
        toasts = [r.toast for r in replies]
        completed = [t for t in toasts if "会签已完成" in t]
        assert len(completed) == 1, toasts
        # the other two counted one vote each, in some order: one "1/3" and one "2/3", never two alike
        counts = sorted(t.split("（会签 ")[1][:3] for t in toasts if "（会签 " in t and "会签已完成" not in t)
        assert counts == ["1/3", "2/3"], toasts
        with harness.db.transaction() as s:
            req = s.get(ApprovalRequest, approval_id)
            assert req is not None and (req.status, req.stage_index) == ("pending", 2)
            steps = list(s.scalars(select(ApprovalStep).where(ApprovalStep.request_id == approval_id)
                                   .order_by(ApprovalStep.stage_index)))
            assert [st.status for st in steps] == ["approved", "approved", "pending"]
            assert s.scalar(select(func.count()).select_from(ApprovalVote).where(ApprovalVote.step_id == steps[1].id)) == 3
            asked = s.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.dedupe_key.like(f"approval:{approval_id}:step:{steps[2].id}:ask:%")))
            assert asked == 1
            waits = s.scalar(select(func.count()).select_from(Wait).where(
                Wait.entity_type == "approval", Wait.entity_id == approval_id, Wait.answered_at.is_(None)))
            assert waits == 1
            assert s.scalar(select(Wait.person_id).where(Wait.entity_type == "approval", Wait.entity_id == approval_id,
                                                         Wait.answered_at.is_(None))) == boss
            audited = s.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.entity_id == approval_id, AuditEntry.action == "approval.approve"))
            assert audited == 4  # 初审 + three 会签 votes
        harness.console.settle()
        harness.console.take_output()


def test_one_persons_tap_and_command_racing_cast_one_vote(harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部")
    def refusals() -> int:
        return scalar(harness, select(func.count()).select_from(AuditEntry).where(
            AuditEntry.outcome == "refused", AuditEntry.action.in_(("approval.approve", "approval.tap_ignored")))) or 0

    for _ in range(REPEATS):
        approval_id = file_budget(harness)
        before = refusals()  # counted per repeat: a total would let repeats 2-5 pass on the first one's
        replies = at_once(harness.bot, [tap(harness, "陈七", approval_id, 1), say("陈七", f"同意 #A{approval_id}")])
        with harness.db.transaction() as s:
            step = s.scalar(select(ApprovalStep).where(ApprovalStep.request_id == approval_id,
                                                       ApprovalStep.stage_index == 1))
            assert step is not None and step.status == "pending"
            assert s.scalar(select(func.count()).select_from(ApprovalVote).where(ApprovalVote.step_id == step.id)) == 1
        assert refusals() == before + 1, [r.toast for r in replies]


def test_a_retry_racing_its_original_casts_one_vote(harness) -> None:
    harness.run(f"{G} 张三: @bot 绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部,设计部")
    for _ in range(REPEATS):
        approval_id = file_budget(harness)
        event = tap(harness, "周八", approval_id, 1)
        first, second = at_once(harness.bot, [event, event])
        assert first == second and "会签 1/3" in first.toast
        votes = scalar(harness, select(func.count()).select_from(ApprovalVote).where(
            ApprovalVote.request_id == approval_id, ApprovalVote.voter_id == user_id(harness, "周八")))
        assert votes == 1


def test_two_or_sign_approvers_at_once_end_the_flow_once(harness) -> None:
    for n in range(1, REPEATS + 1):
        harness.run("dm as 李四: 申请 设备 资源类型=设备 数量=1 用途=测试 时限=12-20 提供部门=设计部",
                    f"dm as 陈七: 同意 #A{n}", f"dm as 周八: 同意 #A{n}")
        replies = at_once(harness.bot, [tap(harness, "钱总", n, 2), tap(harness, "赵总", n, 2)])
        assert sum("审批通过" in r.toast for r in replies) == 1, [r.toast for r in replies]
        with harness.db.transaction() as s:
            req = s.get(ApprovalRequest, n)
            assert req is not None and req.status == "approved"
            assert s.scalar(select(func.count()).select_from(ApprovalVote).where(ApprovalVote.request_id == n)) == 3
            results = s.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.dedupe_key == f"approval:{n}:r1:approved:initiator"))
            assert results == 1
