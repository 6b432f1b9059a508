"""The 导出 workbook as plain data: sheets of typed rows, read with a few queries. Writing the file
(openpyxl) happens outside the engine (`cards/workbook.py`), installed here by the composition root
with `install_writer`, so the engine never imports a file-format library."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import aliased

from collabbot.bot import texts
from collabbot.bot.replies import Attachment
from collabbot.bot.reports import figures
from collabbot.storage.models import (
    ApprovalRequest,
    ApprovalStep,
    Department,
    ProgressReport,
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


def sheets(f: figures.Frame, lang: str) -> list[Sheet]:
    t = lambda key: texts.t(lang, key)  # noqa: E731
    tz = f.calendar.tz

    def local(at: datetime | None) -> datetime | None:
        return None if at is None else at.astimezone(tz).replace(tzinfo=None)

    s = f.s
    ids = select(Task.id).where(_tasks_in(f)).scalar_subquery()
    collaborators: dict[int, list[str]] = {}
    for task_id, name in s.execute(select(TaskCollaborator.task_id, User.name).join(User, User.id == TaskCollaborator.user_id)
                                   .where(TaskCollaborator.task_id.in_(ids))):
        collaborators.setdefault(task_id, []).append(name)
    deps: dict[int, list[str]] = {}
    for task_id, dep in s.execute(select(TaskDependency.task_id, TaskDependency.depends_on_id)
                                  .where(TaskDependency.task_id.in_(ids))):
        deps.setdefault(task_id, []).append(f"#{dep}")
    last = (select(ProgressReport.task_id, func.max(ProgressReport.id).label("id"))
            .where(ProgressReport.task_id.in_(ids)).group_by(ProgressReport.task_id).subquery())
    reports = {r.task_id: r for r in s.execute(
        select(ProgressReport.task_id, ProgressReport.next_step, ProgressReport.problems, ProgressReport.created_at)
        .join(last, last.c.id == ProgressReport.id))}
    owner = aliased(User)
    task_rows, progress_rows = [], []
    for task in s.execute(select(Task.id, Task.title, owner.name.label("owner"), Department.name.label("dept"),
                                 Task.deadline, Task.original_deadline, Task.deliverable_expected, Task.priority, Task.status, Task.percent,
                                 Task.updated_at)
                          .join(owner, owner.id == Task.owner_id).outerjoin(Department, Department.id == Task.department_id)
                          .where(_tasks_in(f)).order_by(Task.id)):
        status = texts.status_name(lang, task.status)
        task_rows.append((f"#{task.id} {task.title}", task.owner, "、".join(collaborators.get(task.id, ())),
                          local(task.deadline), task.deliverable_expected, texts.priority_name(lang, task.priority),
                          " ".join(deps.get(task.id, ())), status, local(task.original_deadline or task.deadline)))
        rep = reports.get(task.id)
        progress_rows.append((f"#{task.id} {task.title}", task.dept or "", task.owner, status, task.percent / 100,
                              rep.next_step if rep else "", rep.problems if rep else "",
                              local(rep.created_at if rep else task.updated_at)))
    initiator = aliased(User)
    approval_rows = []
    for row in s.execute(select(ApprovalRequest.id, ApprovalRequest.template, initiator.name, ApprovalRequest.status,
                                ApprovalRequest.created_at, ApprovalStep.name, ApprovalStep.status,
                                ApprovalStep.started_at, ApprovalStep.decided_at)
                         .join(initiator, initiator.id == ApprovalRequest.initiator_id)
                         .outerjoin(ApprovalStep, ApprovalStep.request_id == ApprovalRequest.id)
                         .where(f.scope.approvals(), or_(figures._in(ApprovalRequest.created_at, f.period),
                                                         figures._in(ApprovalRequest.decided_at, f.period)))
                         .order_by(ApprovalRequest.id, ApprovalStep.round, ApprovalStep.stage_index)):
        rid, template, who, status, created, stage, stage_status, started, decided = row
        took = (f.calendar.working_between(started, decided).total_seconds() / 3600
                if started is not None and decided is not None else None)
        approval_rows.append((f"A{rid}", template, who, texts.approval_status_name(lang, status), local(created),
                              stage or "", stage_status or "", local(started), local(decided), took))
    overdue = {o.name: o for o in figures.overdue_top(f, limit=10_000)}
    dept_rows = []
    for r in sorted(figures.on_time_rates(f, "department"), key=lambda r: r.name):
        o = overdue.pop(r.name, None)
        dept_rows.append((r.name, r.total, r.on_time, r.rate, r.extended, o.count if o else 0, o.days if o else 0.0))
    for o in overdue.values():
        dept_rows.append((o.name, 0, 0, None, 0, o.count, o.days))
    return [
        Sheet(t("x_sheet_tasks"), tuple(zip(t("x_task_columns").split("|"), (
            "text", "text", "text", "datetime", "text", "text", "text", "text", "datetime"), strict=True)), task_rows),
        Sheet(t("x_sheet_progress"), tuple(zip(t("x_progress_columns").split("|"), (
            "text", "text", "text", "text", "percent", "text", "text", "datetime"), strict=True)), progress_rows),
        Sheet(t("x_sheet_approvals"), tuple(zip(t("x_approval_columns").split("|"), (
            "text", "text", "text", "text", "datetime", "text", "text", "datetime", "datetime", "hours"), strict=True)),
              approval_rows),
        Sheet(t("x_sheet_departments"), tuple(zip(t("x_department_columns").split("|"), (
            "text", "int", "int", "percent", "int", "int", "number"), strict=True)), dept_rows),
    ]

