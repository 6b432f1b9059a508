"""Approval stages as pure functions: who still has to decide, whether a stage is complete, and which
actions a request's status allows.

A request moves 审批中 (pending) → 已通过 (approved) | 已驳回 (rejected) | 已退回 (returned, when the
template says "return to initiator"; resubmitting makes it pending again, from the first stage) |
已撤回 (withdrawn, by the initiator) | 已取消 (cancelled, by an admin). Within a pending request one
stage is current; it completes when every approver approved ("all": 会签, 初审, a named person) or
when any one did ("any": 或签). One rejection ends the stage and the round.

Worked example, 会签 of 陈七, 周八 and 孙九 where 张三 (the initiator's head) is also a head involved:
with `on_self = "skip"` 张三 approved in 初审 already, so only the other three must sign, and the
stage completes on the third approval — whichever order the approvals arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
RETURNED, WITHDRAWN, CANCELLED = "returned", "withdrawn", "cancelled"
FINAL = (APPROVED, REJECTED, WITHDRAWN, CANCELLED)

# action -> the request statuses it may act on
ALLOWED: dict[str, tuple[str, ...]] = {
    "approve": (PENDING,),
    "reject": (PENDING,),
    "transfer": (PENDING,),
    "withdraw": (PENDING, RETURNED),
    "cancel": (PENDING, RETURNED),
    "resubmit": (RETURNED,),
    "to_task": (APPROVED,),
}


def can(action: str, status: str) -> bool:
    return status in ALLOWED[action]


def who_decides(mode: str, candidates: Iterable[int], initiator: int, approved_before: set[int],
                on_self: str) -> tuple[list[int], str]:
    """(the approvers who must still decide, why the whole stage is skipped or "").

    With `on_self = "skip"`, the initiator does not approve their own request and someone who already
    approved earlier in this round is not asked again. For an "any" stage one earlier approval by
    any candidate already satisfies it. A stage left with nobody to ask is skipped; the reason is
    "initiator" or "approved_before".
    """
    people = list(dict.fromkeys(candidates))
    if on_self == "keep":
        return people, ""
    if mode == "any" and any(p in approved_before for p in people):
        return [], "approved_before"
    left = [p for p in people if p != initiator and p not in approved_before]
    if left:
        return left, ""
    return [], "initiator" if initiator in people else "approved_before"


def stage_outcome(mode: str, approvers: Iterable[int], approvals: set[int], rejections: set[int]) -> str:
    """PENDING, APPROVED or REJECTED for a stage with these active approvers and votes."""
    people = set(approvers)
    if rejections & people:
        return REJECTED
    if mode == "any":
        return APPROVED if approvals & people else PENDING
    return APPROVED if people and people <= approvals else PENDING


def after_rejection(on_reject: str) -> str:
    """The request's status once a stage rejected it."""
    return RETURNED if on_reject == "return_to_initiator" else REJECTED


def progress(mode: str, approvers: Iterable[int], approvals: set[int]) -> tuple[int, int]:
    """(approved, needed) for the card: 会签 2/3; an "any" stage needs one."""
    people = set(approvers)
    done = len(people & approvals)
    return (min(done, 1), 1) if mode == "any" else (done, len(people))
