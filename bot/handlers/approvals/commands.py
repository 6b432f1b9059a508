"""The approval commands: 申请, 同意, 驳回, 转交 #A, 撤回, 取消审批, 重新提交, 审批 #A, 待我审批."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, exists, select

from collabbot.bot import texts
from collabbot.bot.approval_templates import ApprovalTemplate, example_value, find_template, templates_of
from collabbot.bot.approval_views import current_step, votes_on, waiting_on
from collabbot.bot.commands import Command
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.handlers.approvals.base import (
    TASK_PAIR_NAMES,
    card_for,
    not_your_turn,
    one,
    require,
    slot_of,
    template_for,
    touch,
)
from collabbot.bot.handlers.approvals.flow import HEAD_STAGES, advance, announce_round, decide, stop
from collabbot.bot.handlers.approvals.forms import (
    create_round,
    example,
    plan_stages,
    read_pairs,
    receiving_department,
    word,
)
from collabbot.bot.handlers.common import capped, missing, not_allowed, people, present, refuse_if_closed
from collabbot.bot.replies import Message, Reply
from collabbot.bot.rules import approval_stages as rules
from collabbot.bot.waits import close_waits, open_wait
from collabbot.storage.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStep,
    ApprovalVote,
    Department,
    Project,
    Task,
)


def _list_templates(ctx: Ctx) -> None:
    lines = [ctx.t("approval_templates")]
    for template in templates_of(ctx.bot.config):
        names = texts.names(ctx.lang, (f.name + ("" if f.required else ctx.t("approval_optional")) for f in template.fields))
        lines.append(ctx.t("approval_template_line", name=template.name, fields=names))
    ctx.say("\n".join(lines))


def _extension_task(ctx: Ctx, cmd: Command, template: ApprovalTemplate, values: dict[str, str]) -> Task:
    refs = list(cmd.tasks)
    for name, raw in cmd.pairs:
        if name in TASK_PAIR_NAMES and raw.strip().lstrip("#").isdigit():
            refs.append(int(raw.strip().lstrip("#")))
    if not refs:
        raise missing(ctx, "extension_task")
    task = ctx.task(refs[0])
    if task.owner_id != ctx.actor.id:
        raise not_allowed(ctx, "a_extend", ctx.t("w_owner_only", name=task.owner.name))
    if task.status not in ("todo", "in_progress"):
        raise Refused("bad_state", id=task.id, status=texts.status_name(ctx.lang, task.status), action=ctx.t("a_extend"))
    new = datetime.fromisoformat(values[template.deadline_field])
    if new <= ctx.now:
        raise Refused("deadline_past", when=ctx.fmt(new))
    if task.deadline is not None and new <= task.deadline:
        raise Refused("extension_not_later", when=ctx.fmt(new), current=ctx.fmt(task.deadline))
    if task.parent is not None and task.parent.deadline is not None and new > task.parent.deadline:
        raise Refused("deadline_after_parent", when=ctx.fmt(task.parent.deadline))  # as when it was set
    open_one = ctx.s.scalar(select(ApprovalRequest.id).where(
        ApprovalRequest.task_id == task.id, ApprovalRequest.template == template.name,
        ApprovalRequest.status.in_((rules.PENDING, rules.RETURNED))).limit(1))
    if open_one is not None:
        raise Refused("extension_pending", task=task.id, id=open_one)
    return task


def apply(ctx: Ctx, cmd: Command) -> Reply | None:
    """申请 <模板> 字段=值 …: file a request and ask its first stage."""
    if not cmd.text and not cmd.pairs:
        _list_templates(ctx)
        return None
    first, _, rest = cmd.text.partition(" ")
    templates = templates_of(ctx.bot.config)
    template = find_template(templates, first)
    if template is None:
        raise Refused("unknown_approval_template", name=(first or cmd.text)[:40],
                      known=texts.names(ctx.lang, (t.name for t in templates)) or ctx.t("none"))
    if rest.strip():
        raise Refused("approval_free_text", text=rest.strip()[:40], example=example(ctx, template))
    values, _ = read_pairs(ctx, template, cmd.pairs, {})
    task = _extension_task(ctx, cmd, template, values) if template.kind == "extension" else None
    if template.kind == "resource":
        receiving_department(ctx, template, values)
    chat = ctx.chat or (task.chat if task is not None else None)
    project = None
    if ctx.chat is not None and ctx.chat.project_id is not None:
        project = ctx.s.get(Project, ctx.chat.project_id)
    elif task is not None:
        project = task.project
    if project is not None:
        refuse_if_closed(ctx, project)  # a closed project takes no new work, requests included
    plan = plan_stages(ctx, template, values, project, task)
    req = ApprovalRequest(template=template.name, initiator_id=ctx.actor.id, department_id=ctx.actor.department_id,
                          chat_id=chat.id if chat else None, project_id=project.id if project else None,
                          task_id=task.id if task else None, values=values, status=rules.PENDING, round=1,
                          stage_index=0, version=1, created_at=ctx.now, updated_at=ctx.now)
    ctx.s.add(req)
    ctx.s.flush()
    ctx.s.refresh(req)
    create_round(ctx, req, template, plan)
    ctx.audit("approval.submit", req)
    step = advance(ctx, req, template)
    announce_round(ctx, req, template, step, "approval_submitted")
    return None


def approve_command(ctx: Ctx, cmd: Command) -> Reply | None:
    return decide(ctx, one(ctx, cmd), "approve", cmd.text, via_card=False)


def reject_command(ctx: Ctx, cmd: Command) -> Reply | None:
    req = one(ctx, cmd)
    reason = " ".join(x for x in (cmd.get("reason"), cmd.text) if x).strip()
    if not reason:
        raise missing(ctx, "reject_reason")
    return decide(ctx, req, "reject", reason, via_card=False)


def transfer(ctx: Ctx, cmd: Command) -> Reply | None:
    """转交 #A12 @某人 原因: hand my part of the current step to someone else. The leader an escalation
    about an approver reached may hand that approver's part on (an approver away for a week holds no
    request hostage)."""
    req = one(ctx, cmd)
    template_for(ctx, req)
    require(ctx, req, "transfer", "a_transfer")
    step = current_step(ctx.s, req)
    assert step is not None
    slot = slot_of(step, ctx.actor.id)
    if slot is None:
        led = [u for u in waiting_on(ctx.s, step) if ctx.escalated_to(u)]
        if len(led) != 1:
            raise not_your_turn(ctx, req, step)
        slot = slot_of(step, led[0].id)
        assert slot is not None
    holder = slot.user
    mine = votes_on(ctx.s, step).get(holder.id)
    if mine is not None:
        raise Refused("already_voted", id=req.id, decision=ctx.t(f"decision_{mine.decision}"), when=ctx.fmt(mine.created_at))
    targets = people(ctx, cmd, "owner") or [ctx.mention(i) for i in cmd.mentions]
    if len(targets) != 1:
        raise missing(ctx, "transfer_target")
    target = present(ctx, targets[0])
    if target.id in (ctx.actor.id, holder.id):
        raise Refused("transfer_self")
    if target.id == req.initiator_id:
        raise Refused("transfer_initiator", name=target.name)
    reason = capped(ctx, " ".join(x for x in (cmd.get("reason"), cmd.text) if x).strip(), "transfer_reason")
    if not reason:
        raise missing(ctx, "transfer_reason")
    existing = next((a for a in step.approvers if a.user_id == target.id), None)
    if existing is not None and (existing.active or target.id in votes_on(ctx.s, step)):
        raise Refused("already_approver", name=target.name)
    slot.active, slot.note = False, f"transferred:{target.id}"
    if existing is not None:
        existing.active, existing.delegated_from_id, existing.note = True, holder.id, reason
    else:
        ctx.s.add(ApprovalApprover(step_id=step.id, user_id=target.id, department_id=slot.department_id, active=True,
                                   delegated_from_id=holder.id, note=reason, created_at=ctx.now))
    ctx.s.flush()
    ctx.s.refresh(step)
    close_waits(ctx, "approval", req.id, person_id=holder.id)
    open_wait(ctx, "approval", "approval", req.id, target, req.chat)
    ctx.audit("approval.transfer", req, reason=ctx.t("transfer_trail", name=target.name, reason=reason))
    touch(ctx, req)
    ctx.say(ctx.t("approval_transferred", id=req.id, stage=step.name), ctx.at(target))
    notice = ctx.t("approval_transfer_notice", name=ctx.actor.name, id=req.id, template=req.template, stage=step.name,
                   reason=reason)
    ctx.tell_user(target, Message((notice,), card_for(ctx, req, target)))
    if holder.id != ctx.actor.id:  # handed on by their leader: the approver learns it is off their desk
        ctx.tell_user(holder, Message((ctx.t("approval_transferred_away", name=ctx.actor.name, id=req.id,
                                             template=req.template, to=target.name, reason=reason),)))
    return None


def withdraw(ctx: Ctx, cmd: Command) -> Reply | None:
    req = one(ctx, cmd)
    if req.initiator_id != ctx.actor.id:
        raise not_allowed(ctx, "a_withdraw", ctx.t("w_initiator_only", name=req.initiator.name))
    require(ctx, req, "withdraw", "a_withdraw")
    stop(ctx, req, rules.WITHDRAWN, "")
    return None


def cancel(ctx: Ctx, cmd: Command) -> Reply | None:
    req = one(ctx, cmd)
    if not ctx.is_admin():
        raise not_allowed(ctx, "a_cancel_approval", ctx.t("w_admin"))
    require(ctx, req, "cancel", "a_cancel_approval")
    reason = capped(ctx, " ".join(x for x in (cmd.get("reason"), cmd.text) if x).strip(), "reason")
    if not reason:  # like a rejection: whoever loses their request hears why
        raise missing(ctx, "reason")
    stop(ctx, req, rules.CANCELLED, reason)
    return None


def resubmit(ctx: Ctx, cmd: Command) -> Reply | None:
    """重新提交 #A12 字段=值 …: the initiator amends a returned request; a new round starts at the first stage."""
    req = one(ctx, cmd)
    template = template_for(ctx, req)
    if req.initiator_id != ctx.actor.id:
        raise not_allowed(ctx, "a_resubmit", ctx.t("w_initiator_only", name=req.initiator.name))
    require(ctx, req, "resubmit", "a_resubmit")
    if req.project is not None:
        refuse_if_closed(ctx, req.project)  # a closed project takes no new round of anything
    if cmd.text:
        raise Refused("approval_free_text", text=cmd.text[:40], example=f"{word(ctx, 'resubmit')} #A{req.id} "
                      + " ".join(f"{f.name}={example_value(f)}" for f in template.fields[:1]))
    values, changed = read_pairs(ctx, template, cmd.pairs, dict(req.values))
    task = ctx.task(req.task_id) if req.task_id is not None else None
    if task is not None and template.kind == "extension":
        new = datetime.fromisoformat(values[template.deadline_field])
        if new <= ctx.now or (task.deadline is not None and new <= task.deadline):
            raise Refused("extension_not_later", when=ctx.fmt(new), current=ctx.fmt(task.deadline))
    if template.kind == "resource":
        receiving_department(ctx, template, values)
    plan = plan_stages(ctx, template, values, req.project, task)
    req.values = values
    req.round += 1
    req.stage_index = 0
    req.status = rules.PENDING
    req.decided_at = None
    touch(ctx, req)
    create_round(ctx, req, template, plan)
    ctx.audit("approval.resubmit", req, reason="；".join(changed))
    step = advance(ctx, req, template)
    announce_round(ctx, req, template, step, "approval_resubmitted")
    return None


def _may_view(ctx: Ctx, req: ApprovalRequest) -> bool:
    if ctx.actor.id == req.initiator_id or ctx.is_admin():
        return True
    if ctx.chat is not None and ctx.chat.id == req.chat_id:
        return True
    return bool(ctx.s.scalar(select(exists().where(
        ApprovalApprover.user_id == ctx.actor.id, ApprovalApprover.step_id == ApprovalStep.id,
        ApprovalStep.request_id == req.id))))


def show(ctx: Ctx, cmd: Command) -> Reply | None:
    """审批 #A12: the card with its whole trail (the result card once the flow ended)."""
    req = one(ctx, cmd)
    if not _may_view(ctx, req):
        raise not_allowed(ctx, "a_view_approval", ctx.t("w_approval_viewers"))
    ctx.say(card=card_for(ctx, req, None if ctx.chat else ctx.actor, result=req.status in rules.FINAL))
    return None


def _waiting_for(ctx: Ctx, user_id: int) -> Sequence[Row[tuple[ApprovalRequest, ApprovalStep]]]:
    """(request, step) pairs whose open step waits for `user_id`'s decision, oldest first: as an approver,
    or as the head now of a department whose part its former head still holds (`flow.take_over_as_head`)."""
    voted = exists().where(ApprovalVote.step_id == ApprovalStep.id, ApprovalVote.voter_id == user_id)
    holder_voted = exists().where(ApprovalVote.step_id == ApprovalStep.id,
                                  ApprovalVote.voter_id == ApprovalApprover.user_id)
    mine = (ApprovalApprover.user_id == user_id) & ~voted
    succeeded = (ApprovalApprover.user_id != user_id) & ApprovalStep.kind.in_(HEAD_STAGES) & ~holder_voted & \
        ApprovalApprover.department_id.in_(select(Department.id).where(Department.head_id == user_id)) & \
        (ApprovalApprover.delegated_from_id.is_(None) | (ApprovalApprover.note == "head_changed"))
    asked = exists().where(ApprovalApprover.step_id == ApprovalStep.id, ApprovalApprover.active.is_(True),
                           mine | succeeded)
    return ctx.s.execute(
        select(ApprovalRequest, ApprovalStep)
        .join(ApprovalStep, (ApprovalStep.request_id == ApprovalRequest.id) & (ApprovalStep.round == ApprovalRequest.round)
              & (ApprovalStep.stage_index == ApprovalRequest.stage_index))
        .where(ApprovalRequest.status == rules.PENDING, ApprovalStep.status == "pending", asked)
        .order_by(ApprovalRequest.id)
    ).all()


def my_approvals(ctx: Ctx, cmd: Command) -> Reply | None:
    """待我审批: what waits for my decision, and my own requests still open."""
    lines = []
    for req, step in _waiting_for(ctx, ctx.actor.id):
        lines.append(ctx.t("approval_line", id=req.id, template=req.template, initiator=req.initiator.name,
                           stage=step.name, since=ctx.fmt(step.started_at)))
    out = [ctx.t("approvals_title"), *lines, ctx.t("approvals_hint")] if lines else [ctx.t("approvals_empty")]
    mine = list(ctx.s.scalars(select(ApprovalRequest).where(
        ApprovalRequest.initiator_id == ctx.actor.id,
        ApprovalRequest.status.in_((rules.PENDING, rules.RETURNED))).order_by(ApprovalRequest.id)))
    if mine:
        out.append(ctx.t("approvals_mine_title"))
        for req in mine:
            step = current_step(ctx.s, req)
            out.append(ctx.t("approval_mine_line", id=req.id, template=req.template,
                             status=texts.approval_status_name(ctx.lang, req.status) + (f" · {step.name}" if step else "")))
    ctx.say("\n".join(out))
    return None


HELP_LINES: tuple[tuple[str, str, str], ...] = (
    ("apply", "申请 市场活动预算审批 活动方案=双十二快闪店 预算金额=5万 预算明细=场地3万,物料2万 预期效果=新增会员5000 "
     "协作部门=技术部,设计部（只发「申请」看全部模板）", "apply 市场活动预算审批 活动方案=… 预算金额=50000 … (send apply alone for the templates)"),
    ("my_approvals", "待我审批", "approvals"),
    ("show_approval", "审批 #A1", "approval #A1"),
    ("approve", "同意 #A1 同意执行", "approve #A1 looks good"),
    ("reject", "驳回 #A1 预算明细不清楚", "reject #A1 the budget lacks detail"),
    ("reassign_task", "转交 #A1 @李四 原因 出差期间代批", "reassign #A1 @Li reason travelling"),
    ("withdraw", "撤回 #A1", "withdraw #A1"),
    ("resubmit", "重新提交 #A1 预算金额=6万", "resubmit #A1 预算金额=60000"),
    ("cancel_approval", "取消审批 #A1 原因 活动取消（管理员）", "approval cancel #A1 reason called off (admins)"),
)
