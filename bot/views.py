"""What each card means: its title, coloured status, fields, history and buttons.

Built from the database rows for one person's language; the look is up to `cards/` templates.
Buttons appear only where they fit the state (确认收到 until acknowledged, 通过/退回 in review, …);
anyone may see them, the handler decides who may use them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from collabbot.bot import texts
from collabbot.bot.replies import Button, Card, CardAction
from collabbot.bot.rules import states
from collabbot.storage.models import AuditEntry, Comment, HelpRequest, ProgressReport, Task, TaskDependency, User

COLORS = {"todo": "blue", "in_progress": "blue", "review": "orange", "done": "green", "cancelled": "grey",
          "overdue": "red", "blocked": "grey"}
HISTORY_ITEMS = 5


def open_predecessors(s: Session, task_id: int) -> list[Task]:
    stmt = (
        select(Task)
        .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
        .where(TaskDependency.task_id == task_id, Task.status.not_in(states.CLOSED))
        .order_by(Task.id)
    )
    return list(s.scalars(stmt))


def blocked_ids(s: Session, task_ids: list[int]) -> set[int]:
    """Which of these tasks wait for an open predecessor, in one query."""
    if not task_ids:
        return set()
    # EXISTS per dependency row, not a join: PostgreSQL would hash the whole tasks table for the join
    open_predecessor = exists().where(Task.id == TaskDependency.depends_on_id, Task.status.not_in(states.CLOSED))
    stmt = select(TaskDependency.task_id).where(TaskDependency.task_id.in_(task_ids), open_predecessor)
    return set(s.scalars(stmt))


def predecessors(s: Session, task_id: int) -> list[Task]:
    stmt = (select(Task).join(TaskDependency, TaskDependency.depends_on_id == Task.id)
            .where(TaskDependency.task_id == task_id).order_by(Task.id))
    return list(s.scalars(stmt))


def status_label(lang: str, task: Task, now: datetime, blocked: bool) -> tuple[str, str]:
    """(label, colour) such as ("已延期 · 进行中", "red")."""
    flags = states.flags(task.status, task.deadline, now, blocked, task.submitted_at)
    label = " · ".join(texts.status_name(lang, f) for f in flags)
    if task.urgent and task.status in states.OPEN:
        return f"{texts.t(lang, 'urgent_flag')} · {label}", "red"
    return label, COLORS[flags[0]]


def _fmt(when: datetime | None, tz, now: datetime, lang: str) -> str:
    if when is None:
        return texts.t(lang, "none")
    local = when.astimezone(tz)
    return local.strftime("%m-%d %H:%M") if local.year == now.astimezone(tz).year else local.strftime("%Y-%m-%d %H:%M")


def _deadline(task: Task, tz, now: datetime, lang: str) -> str:
    """The deadline in force, and the original one beside it once an extension moved it; an open task
    without one says how to set it (not a bare 无)."""
    if task.deadline is None and task.status in states.OPEN:
        return texts.t(lang, "deadline_unset", id=task.id, example=(now.astimezone(tz) + timedelta(days=7)).strftime("%m-%d"))
    shown = _fmt(task.deadline, tz, now, lang)
    if not task.extensions or task.original_deadline is None:
        return shown
    return texts.t(lang, "deadline_extended", deadline=shown, original=_fmt(task.original_deadline, tz, now, lang),
                   n=task.extensions)


def task_card(s: Session, task: Task, lang: str, now: datetime, tz, *, full: bool = False,
              blocked: bool | None = None) -> Card:
    """The task card; `full` adds subtasks, dependencies, the latest progress and history.

    `blocked` may be given when the caller already knows it (the sweep loads it for many tasks at once).
    """
    t = lambda key, **kw: texts.t(lang, key, **kw)  # noqa: E731
    if blocked is None:
        blocked = bool(open_predecessors(s, task.id))
    label, color = status_label(lang, task, now, blocked)
    fields: list[tuple[str, str]] = [
        (t("f_owner"), task.owner.name),
        (t("f_deadline"), _deadline(task, tz, now, lang)),
        (t("f_priority"), texts.priority_name(lang, task.priority)),
        (t("f_progress"), f"{task.percent}%"),
    ]
    if task.collaborators:
        fields.append((t("f_collaborators"), texts.names(lang, (u.name for u in task.collaborators))))
    if task.project is not None:
        fields.append((t("f_project"), task.project.name))
    if task.department is not None:
        fields.append((t("f_dept"), task.department.name))
    if task.deliverable_expected:
        fields.append((t("f_deliverable_expected"), task.deliverable_expected))
    if task.deliverable:
        fields.append((t("f_deliverable"), task.deliverable))
    history: list[str] = []
    if full:
        fields.insert(0, (t("f_initiator"), task.initiator.name))
        if task.attachments:
            fields.append((t("f_attachments"), " ".join(task.attachments)))
        if task.remarks:
            fields.append((t("f_remarks"), task.remarks))
        if task.subtasks:
            subs = [f"#{st.id} {st.title}" + texts.paren(lang, f"{st.owner.name} · {texts.status_name(lang, st.status)}")
                    for st in task.subtasks]
            fields.append((t("f_subtasks"), texts.items(lang, subs)))
        deps = predecessors(s, task.id)
        if deps:
            fields.append((t("f_depends"), texts.names(lang, (f"#{d.id}{texts.paren(lang, texts.status_name(lang, d.status))}" for d in deps))))
        latest = s.scalar(select(ProgressReport).where(ProgressReport.task_id == task.id)
                          .order_by(ProgressReport.id.desc()).limit(1))
        if latest is not None:
            if latest.done_text:  # what the report says was done (进度 #1 60% 完成 首页 …)
                fields.append((t("f_done_text"), latest.done_text))
            if latest.next_step:
                fields.append((t("f_next"), latest.next_step))
            if latest.problems:
                fields.append((t("f_problems"), latest.problems))
            fields.append((t("f_updated"), _fmt(latest.created_at, tz, now, lang)))
        history = task_history(s, task, lang, now, tz)
    return Card(
        kind="task",
        key=f"task:{task.id}",
        title=t("task_card_title", id=task.id, title=task.title),
        status=label,
        color=color,
        fields=tuple(fields),
        history=tuple(history),
        buttons=task_buttons(task, lang),
    )


def task_buttons(task: Task, lang: str) -> tuple[Button, ...]:
    def b(key: str, action: str, style: str = "default") -> Button:
        return Button(texts.t(lang, key), CardAction(action, "task", task.id, task.version).pack(), style)

    if task.status in states.CLOSED:
        return ()
    if task.status == "review":
        return (b("b_accept", "accept", "primary"), b("b_return", "return", "danger"))
    buttons = []
    if task.acknowledged_at is None:
        buttons.append(b("b_ack", "ack", "primary"))
    elif task.status == "todo":
        buttons.append(b("b_start", "start", "primary"))
    buttons += [b("b_progress", "progress"), b("b_finish", "finish"), b("b_reassign", "reassign")]
    return tuple(buttons)


def task_history(s: Session, task: Task, lang: str, now: datetime, tz) -> list[str]:
    """The task's latest changes, read from the audit log (the one record of who did what, when)."""
    rows = s.execute(
        select(AuditEntry.at, AuditEntry.action, AuditEntry.reason, User.name, AuditEntry.after)
        .join(User, User.id == AuditEntry.actor_id, isouter=True)
        .where(AuditEntry.entity_type == "tasks", AuditEntry.entity_id == task.id, AuditEntry.outcome == "ok")
        .order_by(AuditEntry.id.desc()).limit(HISTORY_ITEMS)
    ).all()
    lines = []
    for at, action, reason, who, after in reversed(rows):
        verb = texts.history_verb(lang, action)
        line = f"{_fmt(at, tz, now, lang)} {who or '-'} {verb}"
        if action == "task.progress":  # the percent that report set (two in one minute are told apart)
            percent = after.get("percent") if isinstance(after, dict) else None
            line += f" {percent}%" if percent is not None else ""
        if reason:
            line = texts.labelled(lang, line, reason)
        lines.append(line)
    if len(rows) == HISTORY_ITEMS:  # not cut silently: say how many more there are and where to read them
        total = s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.entity_type == "tasks", AuditEntry.entity_id == task.id, AuditEntry.outcome == "ok")) or 0
        if total > HISTORY_ITEMS:
            lines.insert(0, texts.t(lang, "history_more", n=total - HISTORY_ITEMS, id=task.id))
    for c in s.scalars(select(Comment).where(Comment.task_id == task.id).order_by(Comment.id.desc()).limit(2)):
        lines.append(texts.t(lang, "history_comment", when=_fmt(c.created_at, tz, now, lang), who=c.author.name,
                             text=c.text))
    return lines


def help_card(req: HelpRequest, lang: str) -> Card:
    t = lambda key, **kw: texts.t(lang, key, **kw)  # noqa: E731
    fields = [(t("f_initiator"), req.requester.name), (t("f_request"), req.text)]
    if req.department is not None:
        fields.append((t("f_dept"), req.department.name))
    if req.task_id:
        fields.append((t("f_related_task"), f"#{req.task_id}"))
    buttons: tuple[Button, ...] = ()
    if req.status == "open":
        buttons = (Button(t("b_help_done"), CardAction("help_done", "help", req.id, 0).pack(), "primary"),)
    else:
        fields.append((t("b_help_done"), req.answer or "✓"))
    return Card(
        kind="help",
        key=f"help:{req.id}",
        title=t("help_card_title", id=req.id),
        status=t("help_state_open" if req.status == "open" else "help_state_answered"),  # a help request is not a task
        color="green" if req.status != "open" else "orange",
        fields=tuple(fields),
        buttons=buttons,
    )
