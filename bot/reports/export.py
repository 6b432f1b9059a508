"""The 导出 workbook as plain data: sheets of typed rows, each read with one query (plus one for a task's
collaborators and one for its dependencies) as Core rows, not ORM objects. Writing the file happens outside
the engine (`cards/workbook.py`), installed here by the composition root with `install_writer`, so the
engine never imports a file-format library.

Sheets: 任务, 进度, 审批, 部门统计, and the records' 风险, 会议行动项 and 收集, each within the scope and period."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, String, and_, exists, func, or_, select, text, type_coerce
from sqlalchemy.orm import aliased

from collabbot.bot import texts
from collabbot.bot.replies import Attachment
from collabbot.bot.reports import figures
from collabbot.bot.rules import states
from collabbot.storage.models import (
    ApprovalRequest,
    ApprovalStep,
    CollectionRequest,
    CollectionTarget,
    Department,
    Meeting,
    MeetingAction,
    ProgressReport,
    Project,
    Risk,
    Task,
    TaskCollaborator,
    TaskDependency,
    User,
)

# a column's type decides its cell format: text, int, number, percent (a share 0..1), datetime (local, naive),
# hours (working hours, a number)
COLUMN_TYPES = ("text", "int", "number", "percent", "datetime", "hours")


@dataclass(frozen=True)
class Sheet:
    name: str
    columns: tuple[tuple[str, str], ...]  # (header, type)
    rows: list[tuple[Any, ...]]


Writer = Callable[[list[Sheet], Path], None]
_writer: list[Writer] = []


def install_writer(writer: Writer) -> None:
    """The composition root hands the engine the function that writes a workbook file."""
    _writer[:] = [writer]


def writer() -> Writer | None:
    return _writer[0] if _writer else None


_dir: list[Path] = []


def install_dir(folder: Path | None) -> None:
    """The composition root names the export folder (`[reports] folder`); None: the default again."""
    _dir[:] = [] if folder is None else [folder]


def export_dir() -> Path:
    """Where workbooks are written: the installed folder, else $COLLABBOT_EXPORT_DIR, else <tmp>/collabbot-exports."""
    if _dir:
        return _dir[0]
    return Path(os.environ.get("COLLABBOT_EXPORT_DIR") or Path(tempfile.gettempdir()) / "collabbot-exports")


def file_name(scope_kind: str, scope_id: int | None, label: str) -> str:
    safe = re.sub(r"[^0-9A-Za-z~-]", "", label)
    return f"report-{scope_kind}-{scope_id or 0}-{safe}-{secrets.token_hex(4)}.xlsx"


def attachment(path: Path, scope_name: str, label: str, lang: str) -> Attachment:
    """The workbook as a message's file: shown as "报表-<scope>-<period>.xlsx", found again by its own name."""
    shown = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]', "", f"{scope_name}-{label}").strip(" .")[:80]
    return Attachment("file", f"{texts.t(lang, 'x_file_prefix')}-{shown or 'export'}.xlsx", ref=path.name)


def _tasks_in(f: figures.Frame) -> Any:
    """The tasks a period's workbook lists: in scope, not cancelled, existing in the period and not done before it."""
    p = f.period
    return and_(f.scope.tasks(), Task.status != "cancelled", Task.created_at < p.end,
                or_(Task.done_at.is_(None), Task.done_at >= p.start))


class LocalTimes:
    """Stored instants as the naive local datetimes a cell shows, fast: the database's own value is read
    (SQLite's UTC text, PostgreSQL's naive UTC timestamp), parsed in C, and moved by the zone's offset: one
    constant when the zone has had a single offset since FIXED_SINCE (Asia/Shanghai has, since 1991), else
    looked up once per minute of UTC time (offsets change on whole minutes). Going through aware datetimes
    for every cell was half of a 100,000-task export."""

    FIXED_SINCE = datetime(2000, 1, 1)  # naive UTC; earlier instants take the looked-up path

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.fixed = _fixed_offset(tz, self.FIXED_SINCE)
        self.offsets: dict[datetime, timedelta] = {}

    def __call__(self, value: str | datetime | None) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        if self.fixed is not None and value >= self.FIXED_SINCE:
            return value + self.fixed
        minute = value.replace(second=0, microsecond=0)
        offset = self.offsets.get(minute)
        if offset is None:
            offset = self.offsets[minute] = minute.replace(tzinfo=UTC).astimezone(self.tz).utcoffset() or timedelta()
        return value + offset


def _fixed_offset(tz: ZoneInfo, since: datetime) -> timedelta | None:
    """The zone's one offset from `since` (naive UTC) to 2100, sampled every ten days; None when it has several."""
    at, end = since.replace(tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    seen = set()
    while at < end and len(seen) < 2:
        seen.add(at.astimezone(tz).utcoffset())
        at += timedelta(days=10)
    return seen.pop() if len(seen) == 1 else None


def _stored(f: figures.Frame, column: Any) -> Any:
    """`column` as the database stores it, skipping the aware-datetime conversion (LocalTimes reads it)."""
    return type_coerce(column, String if f.s.get_bind().dialect.name == "sqlite" else DateTime())


def _columns(t: Callable[[str], str], key: str, types: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(zip(t(key).split("|"), types, strict=True))


def _task_sheets(f: figures.Frame, lang: str, local: LocalTimes) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """任务 and 进度: one row per task of the period, with its latest progress report, in one query."""
    conn = f.s.connection()
    ids = select(Task.id).where(_tasks_in(f)).scalar_subquery()
    collaborators: dict[int, list[str]] = {}
    for task_id, name in conn.execute(select(TaskCollaborator.task_id, User.name)
                                      .join(User, User.id == TaskCollaborator.user_id)
                                      .where(TaskCollaborator.task_id.in_(ids)).order_by(User.id)):
        collaborators.setdefault(task_id, []).append(name)
    deps: dict[int, list[str]] = {}
    for task_id, dep in conn.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id)
                                     .where(TaskDependency.task_id.in_(ids)).order_by(TaskDependency.depends_on_id)):
        deps.setdefault(task_id, []).append(f"#{dep}")
    last = (select(ProgressReport.task_id, func.max(ProgressReport.id).label("id"))
            .where(ProgressReport.task_id.in_(ids)).group_by(ProgressReport.task_id).subquery())
    # waiting for an open predecessor, as 任务列表 marks it (bot/views.py blocked_ids, over the period's ids)
    blocked = set(conn.scalars(select(TaskDependency.task_id).where(TaskDependency.task_id.in_(ids), exists().where(
        Task.id == TaskDependency.depends_on_id, Task.status.not_in(states.CLOSED)))))
    owner = aliased(User)
    stmt = (select(Task.id, Task.title, owner.name, Department.name, _stored(f, Task.deadline),
                   _stored(f, Task.original_deadline), Task.deliverable_expected, Task.priority, Task.status,
                   Task.urgent, _stored(f, Task.submitted_at), Task.percent, _stored(f, Task.updated_at),
                   ProgressReport.next_step, ProgressReport.problems, _stored(f, ProgressReport.created_at))
            .join(owner, owner.id == Task.owner_id).outerjoin(Department, Department.id == Task.department_id)
            .outerjoin(last, last.c.task_id == Task.id).outerjoin(ProgressReport, ProgressReport.id == last.c.id)
            .where(_tasks_in(f)).order_by(Task.id))
    now = local(f.now)  # naive local, as the deadlines are read
    statuses: dict[tuple[tuple[str, ...], bool], str] = {}
    priorities: dict[str, str] = {}
    task_rows, progress_rows = [], []
    no_names: list[str] = []
    for (task_id, title, owner_name, dept, deadline, original, deliverable, priority, status, urgent, submitted,
         percent, updated, next_step, problems, reported) in conn.execute(stmt).all():
        name = f"#{task_id} {title}"
        due = local(deadline)
        shown = (tuple(states.flags(status, due, now, task_id in blocked, local(submitted) if submitted else None)),
                 bool(urgent) and status in states.OPEN)
        status_name = statuses.get(shown) or statuses.setdefault(shown, _status_label(lang, *shown))
        task_rows.append((name, owner_name, texts.names(lang, collaborators.get(task_id, no_names)), due, deliverable,
                          priorities.get(priority) or priorities.setdefault(priority, texts.priority_name(lang, priority)),
                          " ".join(deps.get(task_id, no_names)), status_name, local(original) if original else due))
        progress_rows.append((name, dept or "", owner_name, status_name, percent / 100, next_step or "",
                              problems or "", local(reported if reported is not None else updated)))
    return task_rows, progress_rows


def _status_label(lang: str, flags: tuple[str, ...], urgent: bool) -> str:
    """A task's state as 任务列表 shows it (bot/views.py status_label), e.g. 已延期 · 进行中: a sheet filtered by its
    status column finds the overdue and blocked tasks the cards show, not only the stored state."""
    label = " · ".join(texts.status_name(lang, flag) for flag in flags)
    return f"{texts.t(lang, 'urgent_flag')} · {label}" if urgent else label


def _approval_rows(f: figures.Frame, lang: str, local: LocalTimes) -> list[tuple[Any, ...]]:
    """审批: each request open at some time in the period (as the 风险 sheet), with its stages, a stage's time
    in working hours. A request stuck for weeks stays on every week's sheet until it is decided."""
    initiator = aliased(User)
    rows = f.s.connection().execute(
        select(ApprovalRequest.id, ApprovalRequest.template, initiator.name, ApprovalRequest.status,
               ApprovalRequest.created_at, ApprovalStep.name, ApprovalStep.status, ApprovalStep.started_at,
               ApprovalStep.decided_at)
        .join(initiator, initiator.id == ApprovalRequest.initiator_id)
        .outerjoin(ApprovalStep, ApprovalStep.request_id == ApprovalRequest.id)
        .where(f.scope.approvals(), ApprovalRequest.created_at < f.period.end,
               or_(ApprovalRequest.decided_at.is_(None), ApprovalRequest.decided_at >= f.period.start))
        .order_by(ApprovalRequest.id, ApprovalStep.round, ApprovalStep.stage_index)).all()
    work = figures.work_clock(f, [at for row in rows for at in row[7:9] if at is not None])
    out = []
    for rid, template, who, status, created, stage, stage_status, started, decided in rows:
        took = work.seconds(started, decided) / 3600 if started is not None and decided is not None else None
        out.append((f"A{rid}", template, who, texts.approval_status_name(lang, status), local(created),
                    stage or "", texts.approval_status_name(lang, stage_status) if stage_status else "", local(started),
                    local(decided), took))
    return out


def _department_rows(f: figures.Frame) -> list[tuple[Any, ...]]:
    overdue = {o.name: o for o in figures.overdue_top(f, limit=10_000)}
    rows = []
    for r in sorted(figures.on_time_rates(f, "department"), key=lambda r: r.name):
        o = overdue.pop(r.name, None)
        rows.append((r.name, r.total, r.on_time, r.rate, r.extended, o.count if o else 0, o.days if o else 0.0))
    for o in overdue.values():
        rows.append((o.name, 0, 0, None, 0, o.count, o.days))
    return rows


def _risk_rows(f: figures.Frame, lang: str, local: LocalTimes) -> list[tuple[Any, ...]]:
    """风险: the risk register's rows open at some time in the period (raised before its end, not closed
    before its start). Scope: the project's; a department's or a person's by the risk's owner."""
    p, sc = f.period, f.scope
    owner = aliased(User)
    where = [Risk.created_at < p.end, or_(Risk.closed_at.is_(None), Risk.closed_at >= p.start)]
    if sc.kind == "project":
        where.append(Risk.project_id == sc.id)
    elif sc.kind == "department":
        where.append(owner.department_id == sc.id)
    elif sc.kind == "person":
        where.append(Risk.owner_id == sc.id)
    level = lambda v: texts.priority_name(lang, v)  # noqa: E731
    levels = ("high", "mid", "low")
    out = []
    for rid, project, desc, likelihood, impact, response, owner_name, status, created, closed in f.s.connection().execute(
            select(Risk.id, Project.name, Risk.description, Risk.likelihood, Risk.impact, Risk.response, owner.name,
                   Risk.status, _stored(f, Risk.created_at), _stored(f, Risk.closed_at))
            .join(owner, owner.id == Risk.owner_id).join(Project, Project.id == Risk.project_id)
            .where(*where).order_by(Risk.id)):
        worst = min((likelihood, impact), key=lambda v: levels.index(v) if v in levels else len(levels))
        out.append((f"#R{rid}", project, desc, level(likelihood), level(impact), level(worst), response, owner_name,
                    texts.t(lang, f"x_risk_{'closed' if status == 'closed' else 'open'}"), local(created), local(closed)))
    return out


def _action_rows(f: figures.Frame, lang: str, local: LocalTimes) -> list[tuple[Any, ...]]:
    """会议行动项: each action of a meeting whose task the 任务 sheet lists (the same scope and period rule)."""
    owner = aliased(User)
    out = []
    for mid, topic, held, created, task_id, title, owner_name, deadline, status, done in f.s.connection().execute(
            select(Meeting.id, Meeting.topic, _stored(f, Meeting.held_at), _stored(f, Meeting.created_at), Task.id,
                   Task.title, owner.name, _stored(f, Task.deadline), Task.status, _stored(f, Task.done_at))
            .join(MeetingAction, MeetingAction.meeting_id == Meeting.id).join(Task, Task.id == MeetingAction.task_id)
            .join(owner, owner.id == Task.owner_id).where(_tasks_in(f)).order_by(Meeting.id, Task.id)):
        out.append((f"#M{mid} {topic}", local(held if held is not None else created), f"#{task_id} {title}",
                    owner_name, local(deadline), texts.status_name(lang, status), local(done)))
    return out


def _collection_rows(f: figures.Frame, lang: str, local: LocalTimes,
                     reader: Reader | None) -> list[tuple[Any, ...]]:
    """收集: one row per person asked, for the requests open at some time in the period. Scope: the
    project's; a department's by the department asked (or the person's own); a person's own. What was
    submitted is private to its requester (and the person who submitted it): only a workbook sent
    privately to one of them, or to an admin, shows it; any other says who submitted when, not what."""
    p, sc = f.period, f.scope
    requester, target = aliased(User), aliased(User)
    where = [CollectionRequest.created_at < p.end,
             or_(CollectionRequest.closed_at.is_(None), CollectionRequest.closed_at >= p.start)]
    if sc.kind == "project":
        where.append(CollectionRequest.project_id == sc.id)
    elif sc.kind == "department":
        where.append(func.coalesce(CollectionTarget.department_id, target.department_id) == sc.id)
    elif sc.kind == "person":
        where.append(CollectionTarget.user_id == sc.id)
    out = []
    hidden = texts.t(lang, "x_collect_private")
    for (cid, title, who, deadline, status, person, dept, submitted, content, links, requester_id,
         target_id) in f.s.connection().execute(
            select(CollectionRequest.id, CollectionRequest.title, requester.name,
                   _stored(f, CollectionRequest.deadline), CollectionRequest.status, target.name, Department.name,
                   _stored(f, CollectionTarget.submitted_at), CollectionTarget.content, CollectionTarget.links,
                   CollectionRequest.requester_id, CollectionTarget.user_id)
            .join(requester, requester.id == CollectionRequest.requester_id)
            .join(CollectionTarget, CollectionTarget.collection_id == CollectionRequest.id)
            .join(target, target.id == CollectionTarget.user_id)
            .outerjoin(Department, Department.id == func.coalesce(CollectionTarget.department_id, target.department_id))
            .where(*where).order_by(CollectionRequest.id, CollectionTarget.id)):
        shown = " ".join([content or "", *(str(x) for x in links or ())]).strip()
        if shown and not (reader is not None and (reader.admin or reader.user_id in (requester_id, target_id))):
            shown = hidden
        out.append((f"#C{cid} {title}", who, local(deadline), texts.t(lang, f"x_collect_{status}"), person,
                    dept or "", local(submitted), shown))
    return out


PG_WORK_MEM = "64MB"  # the whole company's task sheet sorts ~80,000 rows: in memory, not in temp files (-0.2 s)


@dataclass(frozen=True)
class Reader:
    """Whom a workbook is sent to privately (None: to a group): what is private to someone shows only to them."""

    user_id: int
    admin: bool = False


def sheets(f: figures.Frame, lang: str, reader: Reader | None = None) -> list[Sheet]:
    t = lambda key: texts.t(lang, key)  # noqa: E731
    local = LocalTimes(f.calendar.tz)
    if f.s.get_bind().dialect.name == "postgresql":  # for this transaction only
        f.s.execute(text(f"SET LOCAL work_mem = '{PG_WORK_MEM}'"))
    task_rows, progress_rows = _task_sheets(f, lang, local)
    return [
        Sheet(t("x_sheet_tasks"), _columns(t, "x_task_columns", (
            "text", "text", "text", "datetime", "text", "text", "text", "text", "datetime")), task_rows),
        Sheet(t("x_sheet_progress"), _columns(t, "x_progress_columns", (
            "text", "text", "text", "text", "percent", "text", "text", "datetime")), progress_rows),
        Sheet(t("x_sheet_approvals"), _columns(t, "x_approval_columns", (
            "text", "text", "text", "text", "datetime", "text", "text", "datetime", "datetime", "hours")),
              _approval_rows(f, lang, local)),
        Sheet(t("x_sheet_departments"), _columns(t, "x_department_columns", (
            "text", "int", "int", "percent", "int", "int", "number")), _department_rows(f)),
        Sheet(t("x_sheet_risks"), _columns(t, "x_risk_columns", (
            "text", "text", "text", "text", "text", "text", "text", "text", "text", "datetime", "datetime")),
              _risk_rows(f, lang, local)),
        Sheet(t("x_sheet_actions"), _columns(t, "x_action_columns", (
            "text", "datetime", "text", "text", "datetime", "text", "datetime")), _action_rows(f, lang, local)),
        Sheet(t("x_sheet_collections"), _columns(t, "x_collection_columns", (
            "text", "text", "datetime", "text", "text", "text", "datetime", "text")), _collection_rows(f, lang, local, reader)),
    ]
