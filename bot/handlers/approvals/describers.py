"""How an approval wait reads in 待我处理, in a nag and in an escalation (the sweep calls these)."""

from __future__ import annotations

from typing import Any

from collabbot.bot import texts
from collabbot.bot.approval_views import Viewer, current_step
from collabbot.bot.context import Ctx
from collabbot.storage.models import ApprovalRequest, Wait


def _wait_facts(src: Viewer, wait: Wait) -> tuple[ApprovalRequest, str] | None:
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


WAIT_DESCRIBERS = {"approval": describe_waiting, "approval:nag": describe_nag, "approval:what": describe_what}
