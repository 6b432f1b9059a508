"""How an approval wait reads in 待我处理, in a nag and in an escalation (the sweep calls these)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from collabbot.bot import texts
from collabbot.bot.approval_views import Viewer, current_step
from collabbot.bot.context import Ctx
from collabbot.bot.rules import approval_stages as rules
from collabbot.storage.models import ApprovalRequest, ApprovalStep, Wait


def prefetch(n: Any, waits: list[Wait]) -> None:
    """For a sweep: the requests behind many approval waits and their open stages, in two queries, kept
    in the sweep's `facts` so that describing each wait then reads no more rows."""
    ids = {w.entity_id for w in waits}
    if not ids:
        return
    requests = {r.id: r for r in n.s.scalars(select(ApprovalRequest).where(ApprovalRequest.id.in_(ids))
                                               .options(selectinload(ApprovalRequest.initiator)))}
    open_steps = {st.request_id: st for st in n.s.scalars(
        select(ApprovalStep).join(ApprovalRequest, ApprovalRequest.id == ApprovalStep.request_id)
        .where(ApprovalRequest.id.in_(ids), ApprovalRequest.status == rules.PENDING,
               ApprovalStep.round == ApprovalRequest.round, ApprovalStep.stage_index == ApprovalRequest.stage_index,
               ApprovalStep.status == "pending"))}
    for req_id in ids:
        req = requests.get(req_id)
        step = open_steps.get(req_id)
        n.facts[("approval", req_id)] = None if req is None else (
            req, step.name if step is not None else texts.approval_status_name(n.lang, req.status))


def _wait_facts(src: Viewer, wait: Wait) -> tuple[ApprovalRequest, str] | None:
    known = getattr(src, "facts", {})
    if ("approval", wait.entity_id) in known:
        return known[("approval", wait.entity_id)]
    req = src.s.get(ApprovalRequest, wait.entity_id)
    if req is None:
        return None
    step = current_step(src.s, req)
    return req, step.name if step is not None else texts.approval_status_name(src.lang, req.status)


def describe_waiting(ctx: Ctx, wait: Wait) -> str:
    facts = _wait_facts(ctx, wait)
    if facts is None:
        return ""
    req, stage = facts
    return ctx.t("waiting_approval", id=req.id, template=req.template, initiator=req.initiator.name, stage=stage,
                 since=ctx.fmt(wait.raised_at))


def describe_nag(n: Any, wait: Wait) -> str:  # n: the sweep's Notifier
    facts = _wait_facts(n, wait)
    if facts is None:
        return ""
    req, stage = facts
    return n.t("nag_approval", id=req.id, template=req.template, stage=stage, since=n.fmt(wait.raised_at))


def describe_what(n: Any, wait: Wait) -> str:
    facts = _wait_facts(n, wait)
    if facts is None:
        return ""
    req, stage = facts
    return n.t("what_approval", id=req.id, template=req.template, stage=stage)


WAIT_DESCRIBERS = {"approval": describe_waiting, "approval:nag": describe_nag, "approval:what": describe_what,
                   "approval:prefetch": prefetch}
