"""Mirroring a request of a platform's own approval app, so its outcome is announced as ours is."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from collabbot.bot import locks, texts
from collabbot.bot.approval_templates import ApprovalTemplate, parse_value, templates_of
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.events import ApprovalEvent
from collabbot.bot.handlers.approvals.base import touch
from collabbot.bot.handlers.approvals.flow import finish
from collabbot.bot.handlers.common import MAX_TEXT
from collabbot.bot.replies import Message, Reply
from collabbot.bot.rules import approval_stages as rules
from collabbot.storage.models import ApprovalRequest


def native(ctx: Ctx, event: ApprovalEvent) -> Reply:
    """A request of a platform's own approval app, linked to a template: mirrored here, so 审批 #A shows
    it and its outcome is announced (and a resource request offers 一键转任务) as for ours. The
    platform runs the flow: the mirror has no stages, and a status after the final one changes nothing
    (events come at least once, and not always in order)."""
    template = next((t for t in templates_of(ctx.bot.config) if t.name == event.template), None)
    if template is None:
        raise Refused("unknown_approval_template", name=event.template[:40],
                      known=texts.names(ctx.lang, (t.name for t in templates_of(ctx.bot.config))))
    # Two events of one instance (submitted, approved) may arrive at the same moment: they take turns on
    # the instance, so the second finds the first's mirror instead of failing to insert its own.
    locks.hold(ctx.s, f"approval-instance:{event.external_id}")
    stmt = (select(ApprovalRequest).where(ApprovalRequest.external_id == event.external_id)
            .execution_options(populate_existing=True))
    if ctx.s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    req = ctx.s.scalar(stmt)
    if req is None:
        req = _mirror(ctx, event, template)
        if req is None:  # inserted meanwhile by an instance that does not take the lock: read theirs
            req = ctx.s.scalar(stmt)
            assert req is not None
    if req.status in rules.FINAL or event.status not in rules.FINAL:
        return Reply()
    if event.status in (rules.APPROVED, rules.REJECTED):
        ctx.audit(f"approval.{'approve' if event.status == rules.APPROVED else 'reject'}", req,
                  reason=event.external_id)
        finish(ctx, req, template, event.status, ctx.t("native_decided"))
        return Reply()
    req.status, req.decided_at = event.status, ctx.now
    ctx.audit(f"approval.{'withdraw' if event.status == rules.WITHDRAWN else 'cancel'}", req, reason=event.external_id)
    touch(ctx, req)
    ctx.tell_user(req.initiator, Message((ctx.t(f"approval_{event.status}", id=req.id, template=req.template,
                                                reason=""),)),
                  key=f"approval:{req.id}:r{req.round}:{event.status}:initiator")
    return Reply()


def _mirror(ctx: Ctx, event: ApprovalEvent, template: ApprovalTemplate) -> ApprovalRequest | None:
    """The new mirror of the instance, or None when its external id is already taken."""
    specs = {f.name: f for f in template.fields}
    values = {name: parse_value(specs[name], raw, ctx.local(ctx.now)) or raw.strip()[:MAX_TEXT]
              for name, raw in event.values.items() if name in specs and raw.strip()}
    req = ApprovalRequest(template=template.name, initiator_id=ctx.actor.id, department_id=ctx.actor.department_id,
                          values=values, status=rules.PENDING, round=1, stage_index=0, version=1,
                          created_at=ctx.now, updated_at=ctx.now, external_id=event.external_id)
    try:
        with ctx.s.begin_nested():
            ctx.s.add(req)
            ctx.s.flush()
    except IntegrityError:
        return None
    ctx.s.refresh(req)
    ctx.audit("approval.native", req, reason=event.external_id)
    return req
