"""The state machine: opening stages (skipping empty ones), votes, returns, stops, and the end of a flow."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from collabbot.bot import texts
from collabbot.bot.approval_templates import ApprovalTemplate
from collabbot.bot.approval_views import current_step, steps_of, votes_on, waiting_on
from collabbot.bot.context import Ctx, Refused, snapshot
from collabbot.bot.handlers.approvals.base import (
    card_for,
    mention_list,
    not_your_turn,
    require,
    slot_of,
    template_for,
    touch,
)
from collabbot.bot.handlers.common import MAX_TEXT, capped
from collabbot.bot.replies import Message, Part, Reply
from collabbot.bot.rules import approval_stages as rules
from collabbot.bot.rules import states
from collabbot.bot.waits import close_waits, open_wait
from collabbot.storage.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStep,
    ApprovalVote,
    Chat,
    Task,
    User,
    Wait,
)

HEAD_STAGES = ("dept_head", "countersign")  # stages decided by a department's head, as the head is now


def advance(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate) -> ApprovalStep | None:
    """Open the current stage, skipping stages left with nobody to ask; None when no stage is left.

    The caller announces, then calls `ask` to tell the open stage's approvers."""
    steps = steps_of(ctx.s, req)
    while req.stage_index < len(steps):
        step = steps[req.stage_index]
        stage = template.stages[req.stage_index] if req.stage_index < len(template.stages) else None
        approved_before = {v.voter_id for earlier in steps[:req.stage_index]
                           for v in votes_on(ctx.s, earlier).values() if v.decision == "approve"}
        _follow_heads(ctx, step)
        active = [a for a in step.approvers if a.active]
        left, why = rules.who_decides(step.mode, [a.user_id for a in active], req.initiator_id, approved_before,
                                      stage.on_self if stage else "keep")
        for a in active:
            if a.user_id not in left:
                a.active = False
                a.note = "skip:initiator" if a.user_id == req.initiator_id else "skip:approved_before"
        step.started_at = ctx.now
        if left:
            step.status = "pending"
            ctx.s.flush()
            return step
        step.status, step.note, step.decided_at = "skipped", why, ctx.now
        ctx.s.flush()
        ctx.audit("approval.skip", req, reason=ctx.t(f"skip_{why}"))
        req.stage_index += 1
    ctx.s.flush()
    return None


def ask(ctx: Ctx, req: ApprovalRequest, step: ApprovalStep, template: ApprovalTemplate) -> None:
    """Each undecided approver of the open step: a wait row and a private card (once per step)."""
    for user in waiting_on(ctx.s, step):
        open_wait(ctx, "approval", "approval", req.id, user, req.chat)
        text = ctx.t("approval_ask", name=req.initiator.name, id=req.id, template=req.template, stage=step.name)
        ctx.tell_user(user, Message((text,), card_for(ctx, req, user)), key=f"approval:{req.id}:step:{step.id}:ask:{user.id}")


def _project_chats(ctx: Ctx, req: ApprovalRequest) -> list[Chat]:
    """Where the outcome is posted: the request's group and the other groups of its project."""
    chats = [req.chat] if req.chat is not None and req.chat.active else []
    if req.project_id is not None:
        for chat in ctx.s.scalars(select(Chat).where(Chat.project_id == req.project_id, Chat.active.is_(True))
                                  .order_by(Chat.id)):
            if chat not in chats:
                chats.append(chat)
    return chats


def _extend_task(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate) -> str:
    """An approved 延期申请: the task's new deadline, its overdue warning cleared; the sentence to add."""
    task = None
    if req.task_id is not None:  # locked and read fresh: the owner may be changing it at this moment
        stmt = select(Task).where(Task.id == req.task_id).execution_options(populate_existing=True)
        task = ctx.s.scalar(stmt.with_for_update() if ctx.s.get_bind().dialect.name == "postgresql" else stmt)
    if task is None or task.status not in ("todo", "in_progress"):
        return ""
    before = snapshot(task)
    task.original_deadline = task.original_deadline or task.deadline  # kept for the on-time statistics
    task.extensions += 1
    task.deadline = datetime.fromisoformat(req.values[template.deadline_field])
    task.overdue_warned_at = None
    task.updated_at = ctx.now
    task.version += 1
    close_waits(ctx, "task", task.id, kind="overdue")
    ctx.s.flush()
    ctx.audit("task.extend", task, before, reason=ctx.t("extend_trail", when=ctx.fmt(task.deadline), id=req.id))
    return ctx.t("task_extended", id=task.id, title=task.title, when=ctx.fmt(task.deadline))


def overdue_chase(ctx: Ctx, req: ApprovalRequest, answered: bool) -> None:
    """A 延期申请 gives the overdue task's reason and remedy: filed, it answers the owner's overdue chase;
    rejected, returned or withdrawn, they are owed again and chased anew (README, "How it chases people")."""
    if req.task_id is None:  # only an extension request is raised on a task
        return
    if answered:
        close_waits(ctx, "task", req.task_id, kind="overdue")
        return
    task = ctx.s.get(Task, req.task_id)
    if (task is None or task.overdue_warned_at is None or task.status not in ("todo", "in_progress")
            or not states.is_overdue(task.status, task.deadline, ctx.now)):
        return  # not warned yet: the overdue rule opens the chase when it warns
    chased = ctx.s.scalar(select(Wait.id).where(Wait.entity_type == "task", Wait.entity_id == task.id,
                                                Wait.kind == "overdue", Wait.answered_at.is_(None)).limit(1))
    if chased is None:
        open_wait(ctx, "overdue", "task", task.id, task.owner, task.chat)


def finish(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate, status: str, reason: str = "") -> None:
    """The flow ended (approved or rejected): effects, then the initiator and the project's groups hear it."""
    req.status = status
    req.decided_at = ctx.now
    close_waits(ctx, "approval", req.id, withdrawn=True)
    touch(ctx, req)
    extra = _extend_task(ctx, req, template) if status == rules.APPROVED and template.kind == "extension" else ""
    if status != rules.APPROVED:
        overdue_chase(ctx, req, answered=False)
    card = card_for(ctx, req, None, result=True)
    mine = ctx.t(f"approval_mine_{status}", id=req.id, template=req.template, reason=reason)
    ctx.tell_user(req.initiator, Message((mine + extra,), card), key=f"approval:{req.id}:r{req.round}:{status}:initiator")
    headline = ctx.t(f"approval_result_{status}", id=req.id, template=req.template)
    # every approver of the round (the involved departments' heads among them) hears it privately, once,
    # whether or not they are in the project's group
    involved = ctx.s.scalars(select(User).join(ApprovalApprover, ApprovalApprover.user_id == User.id)
                             .join(ApprovalStep, ApprovalStep.id == ApprovalApprover.step_id)
                             .where(ApprovalStep.request_id == req.id, ApprovalStep.round == req.round,
                                    User.id.not_in((req.initiator_id, ctx.actor.id))).distinct().order_by(User.id))
    for user in involved:
        ctx.tell_user(user, Message((headline + req.initiator.name + (extra and "\n" + extra),), card),
                      key=f"approval:{req.id}:r{req.round}:{status}:approver:{user.id}")
    for chat in _project_chats(ctx, req):
        ctx.tell_chat(chat, Message((headline, ctx.at(req.initiator), extra and "\n" + extra), card),
                      key=f"approval:{req.id}:r{req.round}:{status}:chat:{chat.id}")


def return_to_initiator(ctx: Ctx, req: ApprovalRequest, step: ApprovalStep, reason: str) -> None:
    req.status = rules.RETURNED
    close_waits(ctx, "approval", req.id, withdrawn=True)
    overdue_chase(ctx, req, answered=False)  # until it is resubmitted
    touch(ctx, req)
    text = ctx.t("approval_returned_mine", id=req.id, template=req.template, name=ctx.actor.name, stage=step.name,
                 reason=reason)
    ctx.tell_user(req.initiator, Message((text,), card_for(ctx, req, req.initiator)),
                  key=f"approval:{req.id}:r{req.round}:returned:initiator")
    if req.chat is not None and req.chat.active and (ctx.chat is None or ctx.chat.id != req.chat.id):
        ctx.tell_chat(req.chat, Message((ctx.t("approval_returned_group", id=req.id, template=req.template,
                                                reason=reason),)), key=f"approval:{req.id}:r{req.round}:returned:chat")


def take_over_as_head(ctx: Ctx, req: ApprovalRequest, step: ApprovalStep) -> ApprovalApprover | None:
    """A department's head changed after the step was filed (an org sync): its new head, acting on it, takes
    the part the old head holds, as a 转交 by the organisation would. None when the actor heads no such part."""
    if step.kind not in HEAD_STAGES:
        return None
    voted = votes_on(ctx.s, step)
    for slot in step.approvers:
        dept = slot.department
        if (slot.active and slot.user_id not in voted and dept is not None and dept.head_id == ctx.actor.id
                and slot.user_id != ctx.actor.id and (slot.delegated_from_id is None or slot.note == "head_changed")):
            # (a part someone handed on with 转交 stays with whom they chose)
            holder = slot.user
            _move_slot(ctx, step, slot, ctx.actor.id)
            close_waits(ctx, "approval", req.id, person_id=holder.id)
            open_wait(ctx, "approval", "approval", req.id, ctx.actor, req.chat)
            ctx.audit("approval.head_takeover", req, reason=ctx.t("head_takeover_trail", name=holder.name,
                                                                  dept=dept.name))
            return slot_of(step, ctx.actor.id)
    return None


def _move_slot(ctx: Ctx, step: ApprovalStep, slot: ApprovalApprover, to_id: int) -> None:
    """The part `slot` holds now `to_id`'s, the department's head now (its row kept, marked, for the trail)."""
    slot.active, slot.note = False, f"head_changed:{to_id}"
    existing = next((a for a in step.approvers if a.user_id == to_id), None)
    if existing is not None:
        existing.active, existing.delegated_from_id, existing.note = True, slot.user_id, "head_changed"
    else:
        ctx.s.add(ApprovalApprover(step_id=step.id, user_id=to_id, department_id=slot.department_id, active=True,
                                   delegated_from_id=slot.user_id, note="head_changed", created_at=ctx.now))
    ctx.s.flush()
    ctx.s.refresh(step)


def _follow_heads(ctx: Ctx, step: ApprovalStep) -> None:
    """A stage decided by department heads, opening now: each part goes to its department's head as the org
    is today (a sync may have changed one since the request was filed), not to whoever headed it then."""
    if step.kind not in HEAD_STAGES:
        return
    for slot in [a for a in step.approvers if a.active]:
        head = slot.department.head_id if slot.department is not None else None
        if head is not None and head != slot.user_id:
            _move_slot(ctx, step, slot, head)


def decide(ctx: Ctx, req: ApprovalRequest, decision: str, comment: str, via_card: bool) -> Reply | None:
    """One approver's 同意 or 驳回 on the current step, and whatever it completes."""
    template = template_for(ctx, req)
    require(ctx, req, decision, "a_approve" if decision == "approve" else "a_reject")
    step = current_step(ctx.s, req)
    assert step is not None  # a pending request always has its step open
    mine = votes_on(ctx.s, step).get(ctx.actor.id)
    if mine is not None:
        raise Refused("already_voted", id=req.id, decision=ctx.t(f"decision_{mine.decision}"), when=ctx.fmt(mine.created_at))
    if slot_of(step, ctx.actor.id) is None and take_over_as_head(ctx, req, step) is None:
        raise not_your_turn(ctx, req, step)
    capped(ctx, comment, "reject_reason", MAX_TEXT)
    try:
        with ctx.s.begin_nested():
            ctx.s.add(ApprovalVote(request_id=req.id, step_id=step.id, voter_id=ctx.actor.id, decision=decision,
                                   comment=comment, created_at=ctx.now))
            ctx.s.flush()
    except IntegrityError:  # the same person's other copy got there first (guarded by the row lock too)
        raise Refused("already_voted", id=req.id, decision=ctx.t(f"decision_{decision}"), when=ctx.fmt(ctx.now)) from None
    close_waits(ctx, "approval", req.id, person_id=ctx.actor.id)
    ctx.audit(f"approval.{decision}", req, reason=comment)
    votes = votes_on(ctx.s, step)
    approvals = {uid for uid, v in votes.items() if v.decision == "approve"}
    rejections = {uid for uid, v in votes.items() if v.decision == "reject"}
    active = [a.user_id for a in step.approvers if a.active]
    outcome = rules.stage_outcome(step.mode, active, approvals, rejections)
    after: ApprovalStep | None = None
    if outcome == rules.PENDING:
        done, need = rules.progress(step.mode, active, approvals)
        waiting = texts.names(ctx.lang, (u.name for u in waiting_on(ctx.s, step)))
        parts: list[Part] = [ctx.t("approval_approved_partial", id=req.id, stage=step.name, done=done, need=need,
                             waiting=waiting)]
    elif outcome == rules.APPROVED:
        step.status, step.decided_at = "approved", ctx.now
        close_waits(ctx, "approval", req.id, withdrawn=True)
        req.stage_index += 1
        after = advance(ctx, req, template)
        parts = ([ctx.t("approval_approved_final", id=req.id)] if after is None else
                 [ctx.t("approval_approved_next", id=req.id, stage=step.name, next=after.name),
                  *mention_list(ctx, waiting_on(ctx.s, after))])
    else:
        step.status, step.decided_at = "rejected", ctx.now
        returned = rules.after_rejection(template.on_reject) == rules.RETURNED
        parts = [ctx.t("approval_rejected_return", id=req.id, name=req.initiator.name, reason=comment) if returned
                 else ctx.t("approval_rejected_end", id=req.id, reason=comment)]
    touch(ctx, req)
    if not via_card:
        ctx.say(*parts)  # the decider's confirmation first, then what it set off
    if outcome == rules.APPROVED and after is None:
        finish(ctx, req, template, rules.APPROVED)
    elif outcome == rules.REJECTED:
        if rules.after_rejection(template.on_reject) == rules.RETURNED:
            return_to_initiator(ctx, req, step, comment)
        else:
            finish(ctx, req, template, rules.REJECTED, comment)
    elif after is not None:
        ask(ctx, req, after, template)
    if not via_card:
        return None
    toast = "".join(p if isinstance(p, str) else f"@{p.name}" for p in parts)
    return Reply(toast=toast, toast_kind="success", card=card_for(ctx, req, ctx.actor, result=req.status in rules.FINAL))


def announce_round(ctx: Ctx, req: ApprovalRequest, template: ApprovalTemplate, step: ApprovalStep | None,
                    key: str) -> None:
    """After 申请 / 重新提交: where it stands, said where it was asked, then the approvers are asked."""
    overdue_chase(ctx, req, answered=True)
    if step is None:
        ctx.say(ctx.t(key + "_done", id=req.id, template=req.template, round=req.round))
        finish(ctx, req, template, rules.APPROVED)
        return
    headline = ctx.t(key, id=req.id, template=req.template, stage=step.name, round=req.round)
    ctx.say(headline, *mention_list(ctx, waiting_on(ctx.s, step)), card=card_for(ctx, req, None if ctx.chat else ctx.actor))
    ask(ctx, req, step, template)


def stop(ctx: Ctx, req: ApprovalRequest, status: str, reason: str, notice: str = "") -> None:
    """撤回 / 取消审批: the open step is void, its approvers are told (`notice`, else who stopped it), the
    request's group hears it."""
    step = current_step(ctx.s, req)
    told = waiting_on(ctx.s, step) if step is not None else []
    if step is not None:
        step.status, step.decided_at = "void", ctx.now
    req.status = status
    req.decided_at = ctx.now
    close_waits(ctx, "approval", req.id, withdrawn=True)
    overdue_chase(ctx, req, answered=False)
    ctx.audit(f"approval.{'withdraw' if status == rules.WITHDRAWN else 'cancel'}", req, reason=reason)
    touch(ctx, req)
    text = ctx.t(f"approval_{status}", id=req.id, template=req.template, reason=reason)
    ctx.say(text)
    notice = notice or ctx.t(f"approval_{status}_notice", name=ctx.actor.name, id=req.id, template=req.template)
    for user in told:
        if user.id != ctx.actor.id:
            ctx.tell_user(user, Message((notice,)), key=f"approval:{req.id}:r{req.round}:{status}:{user.id}")
    if req.initiator_id != ctx.actor.id:
        ctx.tell_user(req.initiator, Message((notice,)), key=f"approval:{req.id}:r{req.round}:{status}:initiator")
    if req.chat is not None and req.chat.active and (ctx.chat is None or ctx.chat.id != req.chat.id):
        ctx.tell_chat(req.chat, Message((text,)), key=f"approval:{req.id}:r{req.round}:{status}:chat")


def void_extensions(ctx: Ctx, task: Task, why: str) -> None:
    """The task's open 延期申请 no longer asks anything (the task was cancelled, or moved to another
    owner, who asks for their own): cancelled, and its approvers are told why, so that nobody is chased
    for it or hears it approved."""
    for req in ctx.s.scalars(select(ApprovalRequest).where(ApprovalRequest.task_id == task.id,
                                                           ApprovalRequest.status.in_(rules.ALLOWED["cancel"]))):
        stop(ctx, req, rules.CANCELLED, why,
             ctx.t("approval_void_notice", id=req.id, template=req.template, why=why))
