"""The buttons of the approval cards: 同意 / 驳回 / 转交 (the latter two say what to type) and 一键转任务."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select

from collabbot.bot import texts
from collabbot.bot.approval_templates import display_value
from collabbot.bot.approval_views import current_step, fmt, votes_on
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.handlers.approvals.base import card_for, load, not_your_turn, require, slot_of, template_for, touch
from collabbot.bot.handlers.approvals.flow import decide
from collabbot.bot.handlers.approvals.forms import receiving_department
from collabbot.bot.handlers.common import MAX_TEXT, not_allowed
from collabbot.bot.handlers.task_creation import announce_assignment, new_task
from collabbot.bot.handlers.tasks import deadline_example
from collabbot.bot.replies import CardAction, Reply
from collabbot.bot.rules import approval_stages as rules
from collabbot.storage.models import ApprovalRequest, ApprovalStep, Department, Project, ProjectDepartment


def _ignored(ctx: Ctx, req: ApprovalRequest, text: str) -> Reply:
    """A stale or repeated tap: nothing changes; the tapper sees why and the card as it is now."""
    ctx.audit("approval.tap_ignored", req, outcome="refused", reason=text)
    return Reply(toast=text, toast_kind="warning", card=card_for(ctx, req, ctx.actor, result=req.status in rules.FINAL))


def _to_task(ctx: Ctx, req: ApprovalRequest) -> Reply:
    """一键转任务: an approved resource request becomes a task for the receiving department's head."""
    template = template_for(ctx, req)
    if template.kind != "resource":
        raise Refused("bad_button")
    if req.result_task_id is not None:
        return _ignored(ctx, req, ctx.t("to_task_done", id=req.id, task=req.result_task_id))
    require(ctx, req, "to_task", "a_to_task")
    dept = receiving_department(ctx, template, req.values)
    if not (ctx.actor.id == req.initiator_id or ctx.heads_department(ctx.actor, dept.id) or ctx.is_admin()):
        raise not_allowed(ctx, "a_to_task", ctx.t("w_to_task", dept=dept.name))
    if dept.head is None:
        raise Refused("no_head", dept=dept.name)
    deadline = None  # the request's date (支持到 / 时限) when it is still ahead; else the owner is asked to set one
    for spec in template.fields:
        if spec.type == "date" and req.values.get(spec.name):
            when = datetime.fromisoformat(req.values[spec.name])
            deadline = when if when > ctx.now else None
            break
    project = req.project or _receiving_project(ctx, dept)
    specs = {f.name: f for f in template.fields}
    remarks = "；".join(f"{k}：{display_value(specs.get(k), v, lambda d: fmt(d, ctx))}" for k, v in req.values.items())
    title = ctx.t("to_task_title", template=req.template, id=req.id)[:200]
    task = new_task(ctx, title=title, owner=dept.head, project=project, parent=None, deadline=deadline,
                     priority="mid", collaborators=[], department=dept, initiating_dept_id=req.department_id,
                     remarks=remarks[:MAX_TEXT])
    req.result_task_id = task.id
    ctx.audit("approval.to_task", req, reason=f"#{task.id}")
    touch(ctx, req)
    announce_assignment(ctx, task, ctx.t("task_created", id=task.id, title=task.title))
    toast = ctx.t("to_task_created", task=task.id, name=dept.head.name)
    if deadline is None:  # the tapper is told what to type; the owner's card says it too
        toast += ctx.t("to_task_no_deadline", id=task.id, example=deadline_example(ctx))
    return Reply(toast=toast, toast_kind="success", card=card_for(ctx, req, ctx.actor, result=True))


def _receiving_project(ctx: Ctx, dept: Department) -> Project | None:
    """A request filed outside any project: the one running project the receiving department takes part in
    (none when it takes part in several: the task is then the department's)."""
    today = ctx.local(ctx.now).date()
    involved = select(ProjectDepartment.project_id).where(ProjectDepartment.department_id == dept.id)
    found = list(ctx.s.scalars(select(Project).where(
        or_(Project.initiating_dept_id == dept.id, Project.id.in_(involved)),
        or_(Project.end_date.is_(None), Project.end_date >= today)).order_by(Project.id).limit(2)))
    return found[0] if len(found) == 1 else None


def card_action(ctx: Ctx, action: CardAction) -> Reply | None:
    """ACTIONS["approval"]: the buttons of the approval and approval_result cards."""
    req = load(ctx, action.entity_id)
    if action.action == "to_task":
        return _to_task(ctx, req)
    if action.action not in ("approve", "reject", "transfer"):
        raise Refused("bad_button")
    tapped = ctx.s.get(ApprovalStep, action.version)
    if tapped is None or tapped.request_id != req.id:
        raise Refused("bad_button")
    mine = votes_on(ctx.s, tapped).get(ctx.actor.id)
    if mine is not None and tapped.round != req.round:  # a card of an earlier round: answer from the current one
        now_step = current_step(ctx.s, req)
        return _ignored(ctx, req, ctx.t("approval_stale_round", id=req.id, old=tapped.round, round=req.round,
                                        stage=now_step.name if now_step is not None else
                                        texts.approval_status_name(ctx.lang, req.status)))
    if mine is not None:
        return _ignored(ctx, req, ctx.t("already_voted", id=req.id, decision=ctx.t(f"decision_{mine.decision}"),
                                        when=ctx.fmt(mine.created_at)))
    step = current_step(ctx.s, req)
    if step is None or step.id != tapped.id:
        return _ignored(ctx, req, ctx.t("approval_stale", id=req.id,
                                        status=texts.approval_status_name(ctx.lang, req.status)))
    if slot_of(step, ctx.actor.id) is None:
        raise not_your_turn(ctx, req, step)
    if action.action == "approve":
        return decide(ctx, req, "approve", "", via_card=True)
    hint = "hint_reject" if action.action == "reject" else "hint_transfer"
    return Reply(toast=ctx.t(hint, id=req.id))
