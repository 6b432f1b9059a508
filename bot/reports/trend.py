"""The trend warning of the weekly summary: which departments to name, and the admins' private note.

The warning itself is `figures.trend_warnings` over the whole company for this week (a department's own
tasks in every project, against the three weeks before). A department is named in the summary of every
project it takes part in (listed with the project, its initiating department, or responsible for one of
its tasks), and each admin hears about it privately once per week and department: the outbox's dedupe
key carries the week, the department and the admin, so a second sweep or instance adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select, union
from sqlalchemy.orm import Session

from collabbot.bot import texts
from collabbot.bot.calendar import WorkCalendar
from collabbot.bot.replies import Message
from collabbot.bot.reports import figures
from collabbot.bot.reports.period import parse_period
from collabbot.bot.reports.scope import Scope
from collabbot.storage.models import Identity, Project, ProjectDepartment, Task, User


class Notifier(Protocol):
    """What the admins' note needs of the sweep's `Notifier` (bot/sweep.py), which it is handed."""

    s: Session
    lang: str

    def t(self, key: str, **values: object) -> str: ...
    def send_window(self, outside_ok: bool = False) -> datetime: ...
    def to_user(self, user: User, message: Message, key: str, not_before: datetime, platform: str = "") -> bool: ...
    def _row(self, key: str, platform: str, kind: str, target_id: str, name: str, message: Message,
             not_before: datetime, anytime: bool = False) -> None: ...


def line(lang: str, w: figures.TrendWarning) -> str:
    """One warning as a sentence with its figures: rates as percentages, counts as counts."""
    if w.reason == "falling":
        values = " → ".join(f"{round(100 * v)}%" for v in w.values)
        return texts.t(lang, "trend_line_falling", name=w.department, values=values)
    before, now = w.values
    return texts.t(lang, "trend_line_doubled", name=w.department, before=int(before), now=int(now))


def project_departments(s: Session, project_ids: set[int]) -> dict[int, set[int]]:
    """The departments taking part in each project: listed with it, its initiating department, or responsible
    for one of its tasks (not cancelled)."""
    if not project_ids:
        return {}
    ids = sorted(project_ids)
    rows = s.execute(union(
        select(ProjectDepartment.project_id, ProjectDepartment.department_id)
        .where(ProjectDepartment.project_id.in_(ids)),
        select(Project.id, Project.initiating_dept_id).where(Project.id.in_(ids), Project.initiating_dept_id.is_not(None)),
        select(Task.project_id, Task.department_id).where(Task.project_id.in_(ids), Task.department_id.is_not(None),
                                                          Task.status != "cancelled"),
    )).all()
    out: dict[int, set[int]] = {}
    for project_id, dept_id in rows:
        out.setdefault(project_id, set()).add(dept_id)
    return out


@dataclass
class WeeklyTrend:
    """This week's warnings, and for each project the lines its summary shows."""

    warnings: list[figures.TrendWarning] = field(default_factory=list)
    by_project: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, s: Session, calendar: WorkCalendar, now: datetime, project_ids: set[int], lang: str) -> WeeklyTrend:
        week = parse_period("", now, calendar.tz)
        warnings = figures.trend_warnings(figures.Frame(s, Scope("all"), week, now, calendar))
        trend = cls(warnings)
        if not warnings:
            return trend
        for project_id, depts in project_departments(s, project_ids).items():
            named = [line(lang, w) for w in warnings if w.department_id in depts]
            if named:
                trend.by_project[project_id] = named
        return trend

    def tell_admins(self, n: Notifier, admins: tuple[str, ...], slot: str) -> int:
        """Each admin (a configured platform identity) gets one private message per department warned this
        week; an admin the bot has not met yet is written to by that identity directly. How many rows."""
        if not self.warnings or not admins:
            return 0
        by_dept: dict[int | None, list[figures.TrendWarning]] = {}
        for w in self.warnings:
            by_dept.setdefault(w.department_id, []).append(w)
        known = {f"{platform}:{ident}": (user, platform) for user, platform, ident in n.s.execute(
            select(User, Identity.platform, Identity.platform_user_id).join(Identity, Identity.user_id == User.id)
            .where(Identity.platform.in_({a.split(":", 1)[0] for a in admins})))
            if f"{platform}:{ident}" in admins}
        when = n.send_window()
        sent: set[str] = set()
        count = 0
        for admin in admins:
            platform, _, ident = admin.partition(":")
            user = known.get(admin, (None, platform))[0]
            target = f"user:{user.id}" if user is not None else f"{platform}:{ident}"
            if target in sent or not ident:  # an admin listed under two identities hears it once
                continue
            sent.add(target)
            for dept_id, warned in by_dept.items():
                lines = texts.items(n.lang, (line(n.lang, w) for w in warned))
                message = Message((n.t("trend_admin", week=slot, dept=warned[0].department, lines=lines),))
                key = f"trend:{slot}:dept:{dept_id or 0}:{target}"
                if user is not None:
                    count += n.to_user(user, message, key, when, platform=platform)
                else:
                    n._row(key, platform, "user", ident, ident, message, when)
                    count += 1
        return count
