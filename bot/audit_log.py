"""The audit log made readable: what a refused attempt was (the same action name and entity as the
allowed one), an entity's trail (`操作记录 #N`, `log #A1`) for whoever may see the entity, and a
person's actions in a week or another period 报表 takes (`操作记录 @某人 上周`) for admins.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select

from collabbot.bot import texts
from collabbot.bot.commands import Command
from collabbot.bot.context import Ctx, Refused
from collabbot.bot.handlers.common import missing, not_allowed
from collabbot.bot.refs import entity_ref
from collabbot.bot.replies import CardAction, Reply
from collabbot.bot.reports.period import WORDS, Period, PeriodError, parse_period
from collabbot.storage.models import (
    ApprovalRequest,
    AuditEntry,
    CollectionRequest,
    Meeting,
    Milestone,
    Project,
    Risk,
    User,
)

MAX_LINES = 30  # the newest entries shown; the reply says how many more there are

# a command's name -> the audit action its success writes, so a refusal reads like the attempt it refused
COMMAND_ACTIONS: dict[str, str] = {
    "bind_project": "project.bind", "weekly_note": "project.weekly_note", "create_task": "task.create",
    "add_subtask": "task.create", "add_dependency": "task.depend", "remove_dependency": "task.undepend",
    "acknowledge": "task.acknowledge", "start_task": "task.start", "report_progress": "task.progress",
    "finish_task": "task.finish", "accept_task": "task.accept", "return_task": "task.return",
    "reassign_task": "task.reassign", "comment": "task.comment", "cancel_task": "task.cancel",
    "ask_help": "help.ask", "answer_help": "help.answer", "show_task": "task.view", "apply": "approval.submit",
    "show_approval": "approval.view", "approve": "approval.approve", "reject": "approval.reject",
    "withdraw": "approval.withdraw", "cancel_approval": "approval.cancel", "resubmit": "approval.resubmit",
    "report": "report.show", "export_report": "report.export", "urgent": "task.urgent", "audit_log": "log.view",
}
TAP_ACTIONS = {"ack": "acknowledge", "help_done": "answer"}
# the kinds of entity a trail can be asked for: (table name the handlers audit under, the sweep's short name)
KINDS = {"task": ("tasks", "task"), "approval": ("approval_requests", "approval"), "help": ("help_requests", "help")}
# the project's records, named in the text as #R1, #M1, #C1, #MS1, #P1: (model, its audit entity type)
RECORDS: dict[str, tuple[type, str]] = {"R": (Risk, "risks"), "M": (Meeting, "meetings"), "C": (CollectionRequest, "collections"),
                                        "MS": (Milestone, "milestones"), "P": (Project, "projects")}
RECORD_REF = re.compile(r"#(MS|[RMCP])(\d{1,9})(?!\d)", re.IGNORECASE)


def refused_as(name: str, cmd: Command | None, action: CardAction | None) -> tuple[str, str, int | None]:
    """(action, entity type, entity id) to audit a refused attempt under, as its success would be."""
    if action is not None:
        entity = {"wait": "waits", "help": "help_requests", "approval": "approval_requests"}.get(
            action.entity, "tasks" if action.entity == "task" else action.entity)
        short = "approval" if entity == "approval_requests" else action.entity
        return f"{short}.{TAP_ACTIONS.get(action.action, action.action)}", entity, action.entity_id
    if cmd is None:
        return name, "", None
    audited = COMMAND_ACTIONS.get(cmd.name, cmd.name)
    if cmd.name == "reassign_task" and cmd.approvals and not cmd.tasks:
        audited = "approval.transfer"
    if cmd.tasks:
        return audited, "tasks", cmd.tasks[0]
    if cmd.approvals:
        return audited, "approval_requests", cmd.approvals[0]
    if cmd.helps:
        return audited, "help_requests", cmd.helps[0]
    return audited, "", None


def _line(ctx: Ctx, entry: AuditEntry, names: dict[int, str], entity: bool) -> str:
    who = names.get(entry.actor_id, "") if entry.actor_id is not None else ctx.t("log_system")
    what = texts.history_verb(ctx.lang, entry.action.removesuffix(".skip"))
    if entry.action.endswith(".skip"):  # a rule the sweep set aside after it failed on this item
        what += ctx.t("log_skipped")
    if entity and entry.entity_id is not None:
        what += f" {entity_ref(entry.entity_type, entry.entity_id)}"
    outcome = "" if entry.outcome == "ok" else ctx.t(f"log_{entry.outcome}") if entry.outcome in (
        "refused", "error") else entry.outcome
    line = f"{ctx.fmt(entry.at)} {who} {what}{outcome}"
    return texts.labelled(ctx.lang, line, entry.reason) if entry.reason else line


def _may_view(ctx: Ctx, kind: str, entity_id: int) -> bool:
    """The entity's own visibility rule (a task's, an approval's, a help request's)."""
    from collabbot.bot.handlers.approvals.commands import _may_view as may_view_approval
    from collabbot.bot.handlers.queries import may_view_task

    if kind == "task":
        return may_view_task(ctx, ctx.task(entity_id, lock=False, to_read=True))
    if kind == "approval":
        req = ctx.s.get(ApprovalRequest, entity_id)
        if req is None:
            raise Refused("not_found_approval", id=entity_id)
        return may_view_approval(ctx, req)
    req = ctx.help_request(entity_id)
    return (ctx.actor.id in (req.requester_id, req.helper_id) or ctx.is_admin()
            or (ctx.chat is not None and ctx.chat.id == req.chat_id)
            or ctx.heads_department(ctx.actor, req.department_id))


def _say(ctx: Ctx, title: str, entries: list[AuditEntry], total: int, entity: bool) -> None:
    ids = {e.actor_id for e in entries if e.actor_id is not None}
    names = dict(ctx.s.execute(select(User.id, User.name).where(User.id.in_(ids))).all()) if ids else {}
    lines = [title] + [_line(ctx, e, names, entity) for e in reversed(entries)]
    if not entries:
        lines.append(ctx.t("none"))
    if total > len(entries):
        lines.append(ctx.t("log_more", n=total - len(entries)))
    ctx.say("\n".join(lines))


def show_log(ctx: Ctx, cmd: Command) -> Reply | None:
    """操作记录 #N / #A1 / #H1 (or a record: #R1, #M1, #C1, #MS1, #P1): the entity's trail; 操作记录 @某人 [本周|上周|…]:
    a person's actions in that period (admins)."""
    refs = [("task", i) for i in cmd.tasks] + [("approval", i) for i in cmd.approvals] + [
        ("help", i) for i in cmd.helps]
    if refs:
        kind, entity_id = refs[0]
        if not _may_view(ctx, kind, entity_id):
            why = {"task": "w_task_viewers", "approval": "w_approval_viewers"}.get(kind, "w_log_viewers")
            raise not_allowed(ctx, "a_view_log", ctx.t(why))
        where = (AuditEntry.entity_type.in_(KINDS[kind]), AuditEntry.entity_id == entity_id)
        title = ctx.t("log_title_entity", ref=entity_ref(kind, entity_id))
        entity = False
    elif cmd.mentions:
        if not ctx.is_admin():
            raise not_allowed(ctx, "a_view_log", ctx.t("w_admin"))
        person = ctx.mention(cmd.mentions[0])
        period, named = _period(ctx, cmd.text)
        where = (AuditEntry.actor_id == person.id, AuditEntry.at >= period.start, AuditEntry.at < period.end,
                 AuditEntry.at <= ctx.now)
        title = ctx.t("log_title_person", name=person.name, period=named)
        entity = True
    elif (record := RECORD_REF.search(cmd.text)) is not None:
        return _record_log(ctx, record.group(1).upper(), int(record.group(2)))
    else:
        raise missing(ctx, "log_subject")
    total = ctx.s.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    entries = list(ctx.s.scalars(select(AuditEntry).where(*where)
                                 .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(MAX_LINES)))
    _say(ctx, title, entries, total, entity)
    ctx.audit("log.view", entity_type=KINDS[refs[0][0]][0] if refs else "users",
              entity_id=refs[0][1] if refs else person.id)
    return None



def _period(ctx: Ctx, text: str) -> tuple[Period, str]:
    """The period `操作记录 @某人 …` asks for, as 报表 reads it (本周 by default), and how the title names it: the
    word in the reply's language, or the dates. Other text is refused with what to type, never read as 本周."""
    try:
        period = parse_period(text, ctx.now, ctx.bot.calendar.tz)
    except PeriodError:
        raise Refused("log_bad_period", value=text.strip()[:30]) from None
    key = WORDS.get(" ".join(text.split()).lower(), "this_week" if not text.strip() else "")
    words = [w for w, k in WORDS.items() if k == key and w.isascii() == (ctx.lang == "en")]
    return period, words[0] if words else period.label


def _record_log(ctx: Ctx, letter: str, record_id: int) -> Reply | None:
    """操作记录 #R1 / #M1 / #C1 / #MS1 / #P1: a project record's trail, for whoever may see its project."""
    from collabbot.bot.handlers.records import may_see_project

    model, entity_type = RECORDS[letter]
    found = ctx.s.get(model, record_id)
    ref = f"#{letter}{record_id}"
    if found is None:
        raise Refused("log_no_record", ref=ref)
    if not may_see_project(ctx, found.id if model is Project else found.project_id):
        raise not_allowed(ctx, "a_view_log", ctx.t("w_project_members"))
    where = (AuditEntry.entity_type == entity_type, AuditEntry.entity_id == record_id)
    total = ctx.s.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    entries = list(ctx.s.scalars(select(AuditEntry).where(*where)
                                 .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(MAX_LINES)))
    _say(ctx, ctx.t("log_title_entity", ref=ref), entries, total, False)
    ctx.audit("log.view", entity_type=entity_type, entity_id=record_id)
    return None
