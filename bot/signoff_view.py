"""What the project card says about its sign-off (协同目标确认函): who of the participating departments' heads
has confirmed the goal, KPIs and scope, and who has not yet.

The sign-off is an approval request of the engine's own template (`approval_templates.SIGNOFF_TEMPLATE`),
so its state is read from the approval tables: the latest request of the project is the one that counts.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from collabbot.bot import texts
from collabbot.bot.approval_templates import SIGNOFF_TEMPLATE
from collabbot.bot.approval_views import Viewer, steps_of, votes_on
from collabbot.bot.rules import approval_stages as rules
from collabbot.storage.models import ApprovalRequest, Project


def latest_signoff(s: Session, project_id: int) -> ApprovalRequest | None:
    return s.scalar(select(ApprovalRequest).where(ApprovalRequest.project_id == project_id,
                                                  ApprovalRequest.template == SIGNOFF_TEMPLATE)
                    .order_by(ApprovalRequest.id.desc()).limit(1))


def confirmations(v: Viewer, req: ApprovalRequest) -> list[tuple[str, str]]:
    """(who, state) for each head asked: confirmed ✓, rejected ✗, confirmed by sending it, or waiting."""
    t = lambda key, **kw: texts.t(v.lang, key, **kw)  # noqa: E731
    steps = steps_of(v.s, req)
    out: list[tuple[str, str]] = []
    for step in steps:
        votes = votes_on(v.s, step)
        for a in step.approvers:
            who = f"{a.department.name} {a.user.name}" if a.department is not None else a.user.name
            vote = votes.get(a.user_id)
            if vote is not None:
                out.append((who, t("signoff_yes" if vote.decision == "approve" else "signoff_no")))
            elif a.note == "skip:initiator":
                out.append((who, t("signoff_by_sender")))
            elif a.active and req.status == rules.PENDING:
                out.append((who, t("signoff_waiting")))
            elif a.active:
                out.append((who, t("signoff_not_needed")))
    return out


def signoff_fields(v: Viewer, project: Project) -> list[tuple[str, str]]:
    """The project card's line: the latest sign-off's state and each head's answer."""
    req = latest_signoff(v.s, project.id)
    if req is None:
        return []
    rows = confirmations(v, req)
    done = sum(state == texts.t(v.lang, "signoff_yes") or state == texts.t(v.lang, "signoff_by_sender")
               for _, state in rows)
    state = texts.t(v.lang, f"signoff_{req.status}", id=req.id, done=done, n=len(rows))
    detail = texts.names(v.lang, (f"{who}{mark}" for who, mark in rows))
    return [(texts.t(v.lang, "f_signoff"), f"{state}：{detail}" if detail else state)]
