"""A platform's own approval, mirrored: `ApprovalEvent`s of one instance make one request, its outcome
is announced once, and a late, repeated or out-of-order status changes nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import func, select

from collabbot.bot.events import ApprovalEvent, ChatRef, UserRef
from collabbot.bot.replies import CardAction, Message
from collabbot.storage.models import ApprovalRequest, AuditEntry, OutboxMessage

from .conftest import Harness

PRIVATE = ChatRef("console", "", is_group=False)
WU = UserRef("console", "吴十", "吴十")  # a demo-org member (市场部)
FORM = {"支持部门": "技术部", "人数": "2", "技能要求": "前端", "支持时间": "12月第二周", "用途": "活动H5",
        "无关字段": "dropped"}


def event(status: str, n: int = 0, instance: str = "INST-1", template: str = "人力支持申请") -> ApprovalEvent:
    return ApprovalEvent(f"native:{instance}:{status}:{n}", PRIVATE, WU, f"console:{instance}", template, status,
                         dict(FORM))


def requests(h: Harness) -> list[ApprovalRequest]:
    with h.db.transaction() as s:
        found = list(s.scalars(select(ApprovalRequest)))
        s.expunge_all()
        return found


def outbox(h: Harness) -> list[OutboxMessage]:
    with h.db.transaction() as s:
        found = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        s.expunge_all()
        return found


def test_one_instance_is_one_request_and_its_outcome_is_told_once(harness: Harness) -> None:
    harness.bot.handle(event("pending"))
    harness.bot.handle(event("pending", 1))  # the same status again, under another event id
    [req] = requests(harness)
    assert req.status == "pending" and req.external_id == "console:INST-1"
    assert req.values == {"支持部门": "技术部", "人数": "2", "技能要求": "前端", "支持时间": "12月第二周", "用途": "活动H5"}
    assert outbox(harness) == []  # the platform asks its approvers itself

    harness.bot.handle(event("approved"))
    [req] = requests(harness)
    assert req.status == "approved" and req.decided_at is not None
    told = outbox(harness)
    assert [m.target_id for m in told] == ["吴十"]
    message = Message.from_json(told[0].payload)
    assert "已通过" in message.plain_text
    assert message.card is not None and message.card.kind == "approval_result"
    # a resource request, approved: the initiator may turn it into a task in one tap
    assert [CardAction.unpack(b.value).action for b in message.card.buttons] == ["to_task"]  # type: ignore[union-attr]

    for late in (event("approved", 2), event("rejected"), event("pending", 3), event("withdrawn")):
        harness.bot.handle(late)
    assert [r.status for r in requests(harness)] == ["approved"]
    assert len(outbox(harness)) == 1


def test_the_first_event_may_already_be_final(harness: Harness) -> None:
    harness.bot.handle(event("rejected", instance="INST-2"))
    [req] = requests(harness)
    assert req.status == "rejected"
    [told] = outbox(harness)
    assert "驳回" in Message.from_json(told.payload).plain_text


def test_a_withdrawn_instance_is_closed_and_the_initiator_told(harness: Harness) -> None:
    harness.bot.handle(event("pending", instance="INST-3"))
    harness.bot.handle(event("withdrawn", instance="INST-3"))
    assert [r.status for r in requests(harness)] == ["withdrawn"]
    assert ["撤回" in Message.from_json(m.payload).plain_text for m in outbox(harness)] == [True]


def test_an_unknown_template_is_refused_audited_and_writes_nothing(harness: Harness) -> None:
    harness.bot.handle(event("approved", instance="INST-4", template="没有这个模板"))
    assert requests(harness) == [] and outbox(harness) == []
    with harness.db.transaction() as s:
        refused = s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "approval.native", AuditEntry.outcome == "refused"))
    assert refused == 1


def test_a_mirrored_request_shows_with_its_fields(harness: Harness) -> None:
    harness.bot.handle(event("pending", instance="INST-5"))
    out = harness.text("dm as 吴十: 审批 #A1")
    assert "人力支持申请" in out and "技术部" in out and "活动H5" in out


def test_a_mirrored_date_is_read_in_the_calendars_zone(harness: Harness) -> None:
    """A date typed into the platform's own form (12-10, 明天) means the calendar's day and hour, whatever
    zone the clock reads (production's reads UTC, as the suite's does)."""
    harness.bot.handle(ApprovalEvent("native:INST-9:pending:0", PRIVATE, WU, "console:INST-9", "设备/数据资源申请", "pending",
                                     {"资源类型": "设备", "时限": "12-10", "用途": "测试机"}))
    [req] = requests(harness)
    assert req.values["时限"] == "2026-12-10T18:00:00+08:00"
