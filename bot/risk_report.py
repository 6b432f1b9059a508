"""The monthly 协同风险报告: on the first working day of a month, each project's risks of the month before
(new, closed, still open, responses overdue) go privately to its coordinator and the heads involved.

Decided at send time by the sweep: the first sweep on or after that day's morning moment (the daily
prompt's time) reads the register as it is then; a sweep after downtime, later in the month, still
sends it. It fires once per month anywhere: a `job_runs` row (job, month) is inserted in the same
transaction as the messages, whose dedupe keys also name the month, the project and the person.
A project with no risk in the report (nothing new, closed or open) sends nothing.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from collabbot.bot import people, texts
from collabbot.bot.replies import Card, Message
from collabbot.storage.models import AuditEntry, Department, JobRun, Project, ProjectDepartment, Risk, User, Wait

if TYPE_CHECKING:
    from collabbot.bot.context import Engine

JOB = "risk_report"
LEVELS = ("high", "mid", "low")


def first_workday(bot: Engine, day: date) -> date:
    """The first working day of `day`'s month (New Year's Day and the National Day week are skipped)."""
    d = day.replace(day=1)
    while not bot.calendar.is_workday(d) and d.month == day.month:
        d += timedelta(days=1)
    return d


def report_time(bot: Engine, day: date) -> datetime:
    """When the month of `day` has its report: its first working day, at the daily prompt's time."""
    return datetime.combine(first_workday(bot, day), bot.config.rules.daily_prompt_time, tzinfo=bot.calendar.tz)


def _month_before(first: date) -> tuple[date, date]:
    last = first - timedelta(days=1)
    return last.replace(day=1), first


def _insert_once(s: Session, slot: str, now: datetime) -> bool:
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (insert(JobRun).values(job=JOB, slot=slot, ran_at=now)
            .on_conflict_do_nothing(index_elements=["job", "slot"]).returning(JobRun.id))
    return s.execute(stmt).first() is not None


def next_moment(bot: Engine, s: Session, now: datetime) -> datetime | None:
    """The next report's moment that has not run (this month's, else next month's): for the console's clock."""
    local = now.astimezone(bot.calendar.tz).date()
    for day in (local, (local.replace(day=28) + timedelta(days=4)).replace(day=1)):
        slot = day.strftime("%Y-%m")
        if s.scalar(select(JobRun.id).where(JobRun.job == JOB, JobRun.slot == slot)) is None:
            return report_time(bot, day)
    return None


def _level(risk: Risk) -> str:
    return min((risk.likelihood, risk.impact), key=LEVELS.index)


def monthly(bot: Engine, s: Session, now: datetime) -> int:
    """Send this month's report if it is due and was not sent; the number of messages queued."""
    tz = bot.calendar.tz
    today = now.astimezone(tz).date()
    if now < report_time(bot, today):
        return 0
    slot = today.strftime("%Y-%m")
    if not _insert_once(s, slot, now):
        return 0
    first, after = _month_before(today.replace(day=1))
    start = datetime.combine(first, time(0), tzinfo=tz)
    end = datetime.combine(after, time(0), tzinfo=tz)
    risks = list(s.scalars(select(Risk).where(Risk.created_at < end, or_(
        Risk.status == "open", Risk.created_at >= start, Risk.closed_at >= start)).order_by(Risk.id)
        .options(selectinload(Risk.owner), selectinload(Risk.project))))
    late = now - timedelta(hours=bot.config.rules.escalation_after_hours)
    overdue_ids = set(s.scalars(select(Wait.entity_id).where(Wait.entity_type == "risk", Wait.answered_at.is_(None),
                                                             Wait.raised_at <= late)))
    by_project: dict[int, list[Risk]] = {}
    for risk in risks:
        by_project.setdefault(risk.project_id, []).append(risk)
    lang = bot.config.language
    when = bot.calendar.next_working_moment(now)
    sent = 0
    for project_id, some in sorted(by_project.items()):
        project = some[0].project
        new = [r for r in some if start <= r.created_at < end]
        closed = [r for r in some if r.closed_at is not None and start <= r.closed_at < end]
        still = sorted((r for r in some if r.status == "open"), key=lambda r: (LEVELS.index(_level(r)), r.id))
        overdue = [r for r in still if r.id in overdue_ids]
        month = first.strftime("%Y-%m")  # the month before: the intro says so (上月), not 本月
        card = _card(lang, project, month, new, closed, still, overdue)
        for user in _recipients(s, project, some):
            key = f"riskreport:{slot}:project:{project_id}:user:{user.id}"
            intro = Message((texts.t(lang, "risk_report_intro", month=month),), card)
            sent += people.post_to_user(s, user, intro, key, now, not_before=when)
        s.add(AuditEntry(at=now, actor_id=None, action="rule.risk_report", entity_type="projects", entity_id=project_id,
                         outcome="ok", reason="", before=None,
                         after={"month": month, "new": len(new), "closed": len(closed),
                                "open": len(still), "overdue": len(overdue)}))
    return sent


def _recipients(s: Session, project: Project, risks: list[Risk]) -> list[User]:
    """The coordinator and the heads involved: of the project's departments and of the risks' owners."""
    dept_ids = set(s.scalars(select(ProjectDepartment.department_id).where(ProjectDepartment.project_id == project.id)))
    dept_ids |= {r.owner.department_id for r in risks if r.owner.department_id is not None}
    heads = s.scalars(select(User).join(Department, Department.head_id == User.id)
                      .where(Department.id.in_(dept_ids)).order_by(User.id)) if dept_ids else []
    found = ([project.coordinator] if project.coordinator is not None else []) + list(heads)
    return list({u.id: u for u in found}.values())


def _card(lang: str, project: Project, month: str, new: list[Risk], closed: list[Risk], still: list[Risk],
          overdue: list[Risk]) -> Card:
    def lines(risks: list[Risk]) -> str:
        shown = [texts.t(lang, "risk_report_line", id=r.id, text=r.description,
                         level=texts.priority_name(lang, _level(r)), owner=r.owner.name) for r in risks[:10]]
        more = f"… +{len(risks) - 10}" if len(risks) > 10 else ""
        return texts.items(lang, shown) + more or texts.t(lang, "none")

    fields = tuple((texts.t(lang, key, n=len(risks)), lines(risks)) for key, risks in (
        ("risk_report_new", new), ("risk_report_closed", closed), ("risk_report_open", still),
        ("risk_report_overdue", overdue)))
    worst = "red" if overdue or any(_level(r) == "high" for r in still) else ("orange" if still else "green")
    return Card(kind="risk_report", key=f"riskreport:{project.id}:{month}",
                title=texts.t(lang, "risk_report_title", name=project.name, month=month),
                status=texts.t(lang, "risk_report_status", open=len(still), overdue=len(overdue)),
                color=worst, fields=fields)
