"""What an approval card means: its title, coloured status, the form, the flow, the decision trail and
the buttons for whoever looks at it.

Two kinds: `approval` (a request in flight, with 同意 / 驳回 / 转交 for the current step) and
`approval_result` (the outcome with its trail, and 一键转任务 for an approved resource request).
A card is drawn for a viewer: the buttons appear only while the step is open and the viewer still has
to decide it (or for everyone, `viewer_id=None`, on a group's copy — the handler decides who may act).
Each button carries the id of the step it was drawn for in the `CardAction` version slot, so a tap on
a card drawn for an earlier step is recognised as stale while the others of a 会签 keep working.

The trail is read from the audit log, the one record of who did what and when.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from collabbot.bot import texts
from collabbot.bot.approval_templates import ApprovalTemplate, display_value, system_templates, templates_of
from collabbot.bot.replies import Button, Card, CardAction
from collabbot.bot.rules import approval_stages as rules
from collabbot.storage.models import ApprovalRequest, ApprovalStep, ApprovalVote, AuditEntry, User

COLORS = {"pending": "orange", "approved": "green", "rejected": "red", "returned": "orange",
          "withdrawn": "grey", "cancelled": "grey"}
STEP_MARKS = {"approved": " ✓", "rejected": " ✗"}


class Viewer(Protocol):
    """Anything that knows the session, the language, now and the bot (a handler's Ctx, the sweep's Notifier)."""

    s: Session
    now: datetime
    lang: str
    bot: Any


def template_of(bot: Any, req: ApprovalRequest) -> ApprovalTemplate | None:
    """The request's template as configured now (None when it was removed from the config since)."""
    return next((t for t in (*templates_of(bot.config), *system_templates()) if t.name == req.template), None)


def steps_of(s: Session, req: ApprovalRequest, round_: int | None = None) -> list[ApprovalStep]:
    stmt = select(ApprovalStep).where(ApprovalStep.request_id == req.id,
                                      ApprovalStep.round == (req.round if round_ is None else round_))
    return list(s.scalars(stmt.order_by(ApprovalStep.stage_index)))


def current_step(s: Session, req: ApprovalRequest) -> ApprovalStep | None:
    """The step now open for decisions, or None when the request is not pending."""
    if req.status != rules.PENDING:
        return None
    return s.scalar(select(ApprovalStep).where(ApprovalStep.request_id == req.id, ApprovalStep.round == req.round,
                                               ApprovalStep.stage_index == req.stage_index,
                                               ApprovalStep.status == "pending"))


def votes_on(s: Session, step: ApprovalStep) -> dict[int, ApprovalVote]:
    return {v.voter_id: v for v in s.scalars(select(ApprovalVote).where(ApprovalVote.step_id == step.id))}


def waiting_on(s: Session, step: ApprovalStep) -> list[User]:
    """The active approvers of `step` who have not decided yet."""
    voted = votes_on(s, step)
    return [a.user for a in step.approvers if a.active and a.user_id not in voted]


def fmt(when: datetime | None, v: Viewer) -> str:
    if when is None:
        return texts.t(v.lang, "none")
    tz = v.bot.calendar.tz
    local = when.astimezone(tz)
    return local.strftime("%m-%d %H:%M") if local.year == v.now.astimezone(tz).year else local.strftime("%Y-%m-%d %H:%M")


def status_label(v: Viewer, req: ApprovalRequest, step: ApprovalStep | None) -> str:
    label = texts.approval_status_name(v.lang, req.status)
    return f"{label} · {step.name}" if step is not None else label


def _flow(v: Viewer, req: ApprovalRequest, steps: list[ApprovalStep]) -> str:
    parts = []
    for step in steps:
        mark = STEP_MARKS.get(step.status, "")
        if step.status == "skipped":
            mark = texts.t(v.lang, "step_skipped")
        elif step.status == "pending":
            votes = votes_on(v.s, step)
            approvals = {uid for uid, vote in votes.items() if vote.decision == "approve"}
            done, need = rules.progress(step.mode, [a.user_id for a in step.approvers if a.active], approvals)
            mark = texts.paren(v.lang, f"{done}/{need}") if need > 1 else texts.t(v.lang, "step_pending")
        parts.append(f"{step.name}{mark}")
    return " → ".join(parts)


def _approvers(v: Viewer, step: ApprovalStep) -> str:
    votes = votes_on(v.s, step)
    names = []
    for a in step.approvers:
        if a.active:
            names.append(a.user.name + (" ✓" if a.user_id in votes else ""))
    joiner = "、" if step.mode == "all" else " / "
    return joiner.join(names)


def trail(v: Viewer, req: ApprovalRequest) -> list[str]:
    """Every decision on the request, oldest first: "12-01 09:30 张三 同意（初审）：没问题"."""
    stage_names = {(st.round, st.stage_index): st.name
                   for st in v.s.scalars(select(ApprovalStep).where(ApprovalStep.request_id == req.id))}
    rows = v.s.execute(
        select(AuditEntry.at, AuditEntry.action, AuditEntry.reason, AuditEntry.after, User.name)
        .join(User, User.id == AuditEntry.actor_id, isouter=True)
        .where(AuditEntry.entity_type == ApprovalRequest.__tablename__, AuditEntry.entity_id == req.id,
               AuditEntry.outcome == "ok")
        .order_by(AuditEntry.id)
    ).all()
    lines = []
    for at, action, reason, after, who in rows:
        verb = texts.history_verb(v.lang, action)
        stage = ""
        if action in ("approval.approve", "approval.reject", "approval.transfer", "approval.skip") and after:
            stage = stage_names.get((after.get("round"), after.get("stage_index")), "")
        if action == "approval.skip":
            line = f"{fmt(at, v)} {stage} {verb}"
        else:
            line = f"{fmt(at, v)} {who or '-'} {verb}" + (texts.paren(v.lang, stage) if stage else "")
        lines.append(texts.labelled(v.lang, line, reason) if reason else line)
    return lines


def approval_card(v: Viewer, req: ApprovalRequest, viewer_id: int | None, *, result: bool = False) -> Card:
    """The request's card as `viewer_id` sees it (None: a group's copy, buttons for whoever's turn it is)."""
    t = lambda key, **kw: texts.t(v.lang, key, **kw)  # noqa: E731
    template = template_of(v.bot, req)
    step = current_step(v.s, req)
    initiator = req.initiator.name + (texts.paren(v.lang, req.department.name) if req.department is not None else "")
    fields: list[tuple[str, str]] = [(t("f_initiator"), initiator)]
    if req.task is not None:
        task = f"#{req.task.id} {req.task.title}"
        if req.status == rules.PENDING and req.task.deadline is not None:
            task += t("current_deadline", when=fmt(req.task.deadline, v))
        fields.append((t("f_task"), task))
    specs = {f.name: f for f in template.fields} if template is not None else {}
    order = [f.name for f in template.fields] if template is not None else list(req.values)
    for name in order:
        if req.values.get(name):
            fields.append((name, display_value(specs.get(name), req.values[name], lambda d: fmt(d, v))))
    if req.project is not None:
        fields.append((t("f_project"), req.project.name))
    steps = steps_of(v.s, req)
    if steps:
        fields.append((t("f_flow"), _flow(v, req, steps)))
    if step is not None:
        fields.append((t("f_approvers"), _approvers(v, step)))
    if req.result_task_id is not None:
        fields.append((t("f_result_task"), f"#{req.result_task_id}"))
    buttons: tuple[Button, ...] = ()
    if step is not None and not result:
        undecided = {u.id for u in waiting_on(v.s, step)}
        if viewer_id is None or viewer_id in undecided:
            def b(key: str, action: str, style: str) -> Button:
                return Button(t(key), CardAction(action, "approval", req.id, step.id).pack(), style)
            buttons = (b("b_approve", "approve", "primary"), b("b_reject", "reject", "danger"),
                       b("b_transfer", "transfer", "default"))
    if (result and req.status == rules.APPROVED and template is not None and template.kind == "resource"
            and req.result_task_id is None):
        buttons = (Button(t("b_to_task"), CardAction("to_task", "approval", req.id, req.version).pack(), "primary"),)
    title_key = "approval_result_title" if result else "approval_card_title"
    return Card(
        kind="approval_result" if result else "approval",
        key=f"approval:{req.id}",
        title=t(title_key, id=req.id, template=req.template),
        status=status_label(v, req, step),
        color=COLORS.get(req.status, "blue"),
        fields=tuple(fields),
        history=tuple(trail(v, req)),
        buttons=buttons,
    )
