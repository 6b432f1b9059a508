"""Loading an approval request for a change (locked), and the small checks every action makes."""

from __future__ import annotations

from sqlalchemy import select

from collabbot.bot import texts
from collabbot.bot.approval_templates import ApprovalTemplate
from collabbot.bot.approval_views import approval_card, template_of, waiting_on
from collabbot.bot.commands import Command
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.handlers.common import missing
from collabbot.bot.replies import Card, Part
from collabbot.bot.rules import approval_stages as rules
from collabbot.storage.models import ApprovalApprover, ApprovalRequest, ApprovalStep, User

TASK_PAIR_NAMES = ("任务", "task")  # 延期申请 may name its task as a pair as well as with #12


def load(ctx: Ctx, approval_id: int) -> ApprovalRequest:
    """The request, locked for the rest of the transaction (PostgreSQL) and read fresh."""
    stmt = select(ApprovalRequest).where(ApprovalRequest.id == approval_id).execution_options(populate_existing=True)
    if ctx.s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    req = ctx.s.scalar(stmt)
    if req is None:
        raise Refused("not_found_approval", id=approval_id)
    return req


def one(ctx: Ctx, cmd: Command) -> ApprovalRequest:
    if not cmd.approvals:
        raise missing(ctx, "approval_id")
    return load(ctx, cmd.approvals[0])


def template_for(ctx: Ctx, req: ApprovalRequest) -> ApprovalTemplate:
    template = template_of(ctx.bot, req)
    if template is None:
        raise Refused("approval_template_gone", name=req.template)
    return template


def require(ctx: Ctx, req: ApprovalRequest, action: str, action_text: str) -> None:
    if not rules.can(action, req.status):
        raise Refused("approval_closed", id=req.id, status=texts.approval_status_name(ctx.lang, req.status),
                      action=ctx.t(action_text))


def slot_of(step: ApprovalStep, user_id: int) -> ApprovalApprover | None:
    return next((a for a in step.approvers if a.user_id == user_id and a.active), None)


def not_your_turn(ctx: Ctx, req: ApprovalRequest, step: ApprovalStep) -> Refused:
    who = texts.names(ctx.lang, (u.name for u in waiting_on(ctx.s, step))) or ctx.t("none")
    return Refused("not_your_turn", id=req.id, stage=step.name, who=who)


def touch(ctx: Ctx, req: ApprovalRequest) -> None:
    req.updated_at = ctx.now
    req.version += 1
    ctx.s.flush()


def card_for(ctx: Ctx, req: ApprovalRequest, viewer: User | None, *, result: bool = False) -> Card:
    return approval_card(ctx, req, viewer.id if viewer is not None else None, result=result)


def mention_list(ctx: Ctx, users: list[User]) -> list[Part]:
    parts: list[Part] = []
    for i, u in enumerate(users):
        parts += (["、"] if i else []) + [ctx.at(u)]
    return parts
