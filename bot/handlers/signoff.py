"""Project sign-off (协同目标确认函): after 绑定项目, each participating department's head confirms the
project's goal, KPIs and scope.

It is an approval of the engine's own template (`approval_templates.SIGNOFF_TEMPLATE`): one 会签 stage of
the heads of the departments named, so everything approvals do applies unchanged — the private card with
同意 / 驳回 / 转交, the waits that nag and escalate, 待我审批, the trail, every copy of the card following.
Whoever sends it (the coordinator, normally) confirms for their own department by sending it.

A sign-off is sent when the project has something to confirm (a goal, KPIs or a scope) and departments
to confirm it; a later 绑定项目 that changes any of these (or the departments) replaces a sign-off still
in progress and asks again; one that changes nothing asks nobody. A rejected sign-off is asked again
only once the content changes (the coordinator amends it with 绑定项目 目标 …).
The project card shows each head's answer (`bot/signoff_view.py`); its copies follow every answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from collabbot.bot.approval_templates import SIGNOFF_TEMPLATE, ApprovalTemplate, system_templates
from collabbot.bot.approval_views import approval_card, current_step, waiting_on
from collabbot.bot.commands import Command
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.copies import SentCopy, update_copies
from collabbot.bot.handlers import projects
from collabbot.bot.handlers.approvals.flow import advance, announce_round
from collabbot.bot.handlers.approvals.forms import create_round, plan_stages
from collabbot.bot.replies import Card, CardAction, Message, Reply
from collabbot.bot.rules import approval_stages as rules
from collabbot.bot.signoff_view import latest_signoff
from collabbot.bot.waits import close_waits
from collabbot.storage.models import ApprovalRequest, Identity, Project


def template() -> ApprovalTemplate:
    return next(t for t in system_templates() if t.name == SIGNOFF_TEMPLATE)


def content(project: Project) -> dict[str, str]:
    """What the heads confirm, as the request's form values."""
    values = {"参与部门": ",".join(d.name for d in sorted(project.departments, key=lambda d: d.id))}
    for name, value in (("目标", project.goal), ("KPI", project.kpis), ("范围", project.scope)):
        if value:
            values[name] = value
    return values


def bind_project(ctx: Ctx, cmd: Command) -> Reply | None:
    """绑定项目 …, then the sign-off when the goal, KPIs, scope or departments call for one."""
    reply = projects.bind_project(ctx, cmd)
    assert ctx.chat is not None and ctx.chat.project_id is not None  # bind_project refuses anything else
    project = ctx.s.get(Project, ctx.chat.project_id)
    if project is not None:
        ctx.s.refresh(project)
        start_if_needed(ctx, project)
    return reply


def start_if_needed(ctx: Ctx, project: Project) -> ApprovalRequest | None:
    if not project.departments or not (project.goal or project.kpis or project.scope):
        return None
    values = content(project)
    last = latest_signoff(ctx.s, project.id)
    if last is not None and last.values == values and last.status in (rules.PENDING, rules.APPROVED,
                                                                        rules.REJECTED):
        return None  # nothing new to confirm
    try:
        with ctx.s.begin_nested():
            if last is not None and last.status == rules.PENDING:
                _supersede(ctx, last)
            return _start(ctx, project, values)
    except Refused as refusal:  # a department without a head: the project is bound all the same
        ctx.say(ctx.t("signoff_not_sent", why=ctx.t(refusal.key, **refusal.values)))
        return None


def _start(ctx: Ctx, project: Project, values: dict[str, str]) -> ApprovalRequest:
    flow = template()
    plan = plan_stages(ctx, flow, values, project, None)
    req = ApprovalRequest(template=flow.name, initiator_id=ctx.actor.id, department_id=ctx.actor.department_id,
                          chat_id=ctx.chat.id if ctx.chat else None, project_id=project.id, task_id=None,
                          values=values, status=rules.PENDING, round=1, stage_index=0, version=1,
                          created_at=ctx.now, updated_at=ctx.now)
    ctx.s.add(req)
    ctx.s.flush()
    ctx.s.refresh(req)
    create_round(ctx, req, flow, plan)
    ctx.audit("approval.submit", req)
    step = advance(ctx, req, flow)
    announce_round(ctx, req, flow, step, "signoff_submitted")
    return req


def _supersede(ctx: Ctx, req: ApprovalRequest) -> None:
    """The goal changed while the heads were confirming it: the old letter is void, its cards lose their
    buttons, and whoever still had to answer is told not to."""
    step = current_step(ctx.s, req)
    told = waiting_on(ctx.s, step) if step is not None else []
    if step is not None:
        step.status, step.decided_at = "void", ctx.now
    req.status, req.decided_at, req.updated_at, req.version = rules.CANCELLED, ctx.now, ctx.now, req.version + 1
    close_waits(ctx, "approval", req.id, withdrawn=True)
    ctx.s.flush()
    ctx.audit("approval.cancel", req, reason=ctx.t("signoff_superseded_reason"))
    for user in told:
        ctx.tell_user(user, Message((ctx.t("signoff_superseded", id=req.id),)), key=f"approval:{req.id}:superseded:{user.id}")
    update_copies(ctx.s, approval_card(ctx, req, None), key=f"{ctx.event_key}:signoff:{req.id}", now=ctx.now,
                  view=lambda copy: approval_card(ctx, req, _viewer_id(ctx, copy)))


def _viewer_id(ctx: Ctx, copy: SentCopy) -> int | None:
    if copy.target_kind != "user":
        return None
    return ctx.s.scalar(select(Identity.user_id).where(Identity.platform == copy.platform,
                                                       Identity.platform_user_id == copy.target_id))


def follow_project_card(ctx: Ctx, request_id: int | None) -> None:
    """After an answer to a sign-off, every sent copy of the project's card shows who has confirmed."""
    if request_id is None:
        return
    req = ctx.s.get(ApprovalRequest, request_id)
    if req is None or req.template != SIGNOFF_TEMPLATE or req.project_id is None:
        return
    project = ctx.s.get(Project, req.project_id)
    if project is not None:
        card: Card = projects.project_card(ctx, project)
        update_copies(ctx.s, card, key=f"{ctx.event_key}:project:{project.id}", now=ctx.now)


def following(handler: Callable[[Ctx, Any], Reply | None]) -> Callable[[Ctx, Any], Reply | None]:
    """An approval command or tap, then the project card's copies when it answered a sign-off."""
    def run(ctx: Ctx, subject: Any) -> Reply | None:
        reply = handler(ctx, subject)
        if isinstance(subject, CardAction):
            follow_project_card(ctx, subject.entity_id)
        elif isinstance(subject, Command) and subject.approvals:
            follow_project_card(ctx, subject.approvals[0])
        return reply
    return run
