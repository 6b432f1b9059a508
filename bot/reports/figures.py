"""The report figures, one function each; every docstring gives the formula.

All figures are over a `Frame`: a scope (`scope.py`), a period [start, end) and `asof` = min(now, end),
the moment "open" and "overdue" are judged at. SQL selects and counts; durations in working time are
measured in Python with the work calendar (its holidays are data, not SQL). Cancelled tasks count
nowhere. Percentiles are nearest-rank (p90 = the ceil(0.9 n)-th smallest); the median is the middle
value, or the mean of the two middle ones.

On time means accepted by the original deadline (`tasks.original_deadline`, the one set first, which an
approved 延期申请 keeps while it moves `tasks.deadline`); a task accepted after it but by the extended
deadline is counted as `extended`, not on time; after the deadline in force, as `late`. The weekly
summary counts the same way.
"""

from __future__ import annotations

import itertools
import math
import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from collabbot.bot.calendar import WorkCalendar
from collabbot.bot.reports.period import Period
from collabbot.bot.reports.scope import Scope
from collabbot.storage.models import (
    ApprovalRequest,
    ApprovalStep,
    ApprovalVote,
    Department,
    ProgressReport,
    Project,
    Task,
    User,
    Wait,
)

WITHIN = timedelta(hours=2)  # the 2-hour answer rule
RESPONSE_KINDS = ("assign", "approval", "help")


@dataclass(frozen=True)
class Frame:
    s: Session
    scope: Scope
    period: Period
    now: datetime
    calendar: WorkCalendar

    @property
    def asof(self) -> datetime:
        return min(self.now, self.period.end)

    def shifted(self, periods_back: int) -> Frame:
        period = self.period
        for _ in range(periods_back):
            period = period.previous()
        return replace(self, period=period)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank: the ceil(q n)-th smallest value; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


class WorkClock:
    """Working time between many pairs of instants, fast: the calendar's working periods from `lo` to `hi`
    laid out once with the working time before each, so that one difference is two binary searches.
    It gives exactly `WorkCalendar.working_between` (tests compare them); instants outside [lo, hi] are
    clamped, so build it over every instant it will be asked about."""

    def __init__(self, calendar: WorkCalendar, lo: datetime, hi: datetime) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.before: list[int] = []
        total = 0
        day = lo.astimezone(calendar.tz).date() - timedelta(days=1)
        last = hi.astimezone(calendar.tz).date() + timedelta(days=1)
        while day <= last:
            for start, end in calendar._day_periods(day):
                a, b = _us(start), _us(end)
                self.starts.append(a)
                self.ends.append(b)
                self.before.append(total)
                total += b - a
            day += timedelta(days=1)

    def _at(self, x: int) -> int:
        i = bisect_right(self.starts, x) - 1
        if i < 0:
            return 0
        return self.before[i] + min(x, self.ends[i]) - self.starts[i]

    def seconds(self, a: datetime, b: datetime) -> float:
        """Working seconds in [a, b); zero when b <= a."""
        return max(0, self._at(_us(b)) - self._at(_us(a))) / 1_000_000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def work_clock(f: Frame, times: Sequence[datetime]) -> WorkClock:
    lo = min([*times, f.period.start])
    hi = max([*times, f.asof])
    return WorkClock(f.calendar, lo, hi)


def _raw(f: Frame, column: Any) -> Any:
    """`column` as the database's own sortable value: SQLite's stored text (its fixed-width format sorts as
    time does, and parsing 100,000 of them into datetimes is the slow part of a big report), PostgreSQL's
    timestamp. Compare it only with `_sort_key(f)` of an instant."""
    return type_coerce(column, String) if f.s.get_bind().dialect.name == "sqlite" else column


def _sort_key(f: Frame) -> Callable[[datetime], Any]:
    if f.s.get_bind().dialect.name == "sqlite":
        return lambda at: at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return lambda at: at


# --- tasks ------------------------------------------------------------------------------------------

def _in(column: ColumnElement[datetime] | object, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)  # type: ignore[operator]


def _due() -> ColumnElement[datetime]:
    """The original deadline (the deadline itself for rows that predate the column)."""
    return func.coalesce(Task.original_deadline, Task.deadline)


def _finished() -> ColumnElement[datetime]:
    """When the owner finished: the last hand-in (a task sent back is judged by its next one), not the
    reviewer's acceptance, whose delay is not the owner's; the acceptance for rows from before hand-ins
    were recorded."""
    return func.coalesce(Task.submitted_at, Task.done_at)


def _done_in(period: Period) -> ColumnElement[bool]:
    return and_(Task.status == "done", _in(Task.done_at, period))


def _open_overdue_at(asof: datetime) -> ColumnElement[bool]:
    """Open at `asof` and past its deadline then: created before, not done before, deadline before, and not
    handed in by its deadline before `asof` (then the reviewer, not the owner, is the one taking time)."""
    return and_(Task.status != "cancelled", Task.created_at < asof, Task.deadline < asof,
                or_(Task.done_at.is_(None), Task.done_at >= asof),
                or_(Task.submitted_at.is_(None), Task.submitted_at > Task.deadline, Task.submitted_at >= asof))


@dataclass(frozen=True)
class TaskCounts:
    created: int
    done: int
    on_time: int
    extended: int
    late: int
    no_deadline: int
    open_overdue: int

    @property
    def on_time_rate(self) -> float | None:
        judged = self.on_time + self.extended + self.late
        return self.on_time / judged if judged else None


def task_counts(f: Frame) -> TaskCounts:
    """created = tasks with created_at in the period;
    done = status done with done_at in the period; of those, with a deadline:
    on_time = finished (the last hand-in) <= original deadline, extended = original deadline < finished <=
    deadline in force, late = finished > deadline in force; no_deadline = done without a deadline (not judged);
    open_overdue = created before asof, deadline in force before asof, not done before asof.
    on_time_rate = on_time / (on_time + extended + late)."""
    p = f.period
    done = _done_in(p)
    judged = and_(done, Task.deadline.is_not(None))
    on_time = and_(judged, _finished() <= _due())

    def count(cond: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    row = f.s.execute(select(
        count(_in(Task.created_at, p)), count(done), count(on_time),
        count(and_(judged, _finished() > _due(), _finished() <= Task.deadline)),
        count(and_(judged, _finished() > Task.deadline)), count(and_(done, Task.deadline.is_(None))),
        count(_open_overdue_at(f.asof)),
    ).where(f.scope.tasks(), Task.status != "cancelled")).one()
    return TaskCounts(*(int(v) for v in row))


@dataclass(frozen=True)
class Rate:
    id: int | None
    name: str
    on_time: int
    total: int
    extended: int

    @property
    def rate(self) -> float:
        return self.on_time / self.total


def on_time_rates(f: Frame, by: str) -> list[Rate]:
    """Per department (tasks.department_id), person (owner) or project: over the tasks done in the period
    with a deadline: on_time = finished (the last hand-in) <= original deadline, extended = after it but by the
    deadline in force,
    total = all of them, rate = on_time / total. Sorted by rate, worst first, then name."""
    key, name, join = {
        "department": (Task.department_id, Department.name, Department.id == Task.department_id),
        "person": (Task.owner_id, User.name, User.id == Task.owner_id),
        "project": (Task.project_id, Project.name, Project.id == Task.project_id),
    }[by]
    on_time = _finished() <= _due()
    extended = and_(_finished() > _due(), _finished() <= Task.deadline)
    rows = f.s.execute(
        select(key, name, func.sum(case((on_time, 1), else_=0)), func.count(),
               func.sum(case((extended, 1), else_=0)))
        .select_from(Task).outerjoin(name.class_, join)  # type: ignore[attr-defined]
        .where(f.scope.tasks(), _done_in(f.period), Task.deadline.is_not(None))
        .group_by(key, name)).all()
    rates = [Rate(r[0], r[1] or "-", int(r[2]), int(r[3]), int(r[4])) for r in rows]
    return sorted(rates, key=lambda r: (r.rate, r.name))


@dataclass(frozen=True)
class Overdue:
    id: int | None
    name: str
    count: int
    days: float  # the sum over its open overdue tasks of (asof - deadline), in calendar days


def overdue_top(f: Frame, limit: int = 10) -> list[Overdue]:
    """Per department: count = tasks open overdue at asof, days = sum of (asof - deadline) in days;
    ranked by count, then days, both descending."""
    rows = f.s.execute(select(Task.department_id, Department.name, Task.deadline)
                       .outerjoin(Department, Department.id == Task.department_id)
                       .where(f.scope.tasks(), _open_overdue_at(f.asof))).all()
    groups: dict[int | None, list[int]] = defaultdict(list)
    names: dict[int | None, str] = {}
    asof = f.asof.astimezone(UTC)
    for dept_id, name, deadline in rows:
        groups[dept_id].append((asof - deadline) // timedelta(microseconds=1))  # exact, whatever the rows' order
        names[dept_id] = name or "-"
    out = [Overdue(d, names[d], len(v), round(sum(v) / 86_400_000_000, 1)) for d, v in groups.items()]
    return sorted(out, key=lambda o: (-o.count, -o.days, o.name))[:limit]


# --- answering -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Response:
    kind: str
    answered: int
    open_late: int  # not answered, and older than the 2-hour rule at asof
    median_s: float | None
    p90_s: float | None
    within: float | None  # share answered within 2 working hours
    seconds: tuple[float, ...] = field(default=(), repr=False)


def response_times(f: Frame, kind: str) -> Response:
    """Waits of `kind` (assign, approval, help) raised in the period: for the answered ones, the working
    time raised_at -> answered_at; median and p90 of it; within = answered within 2 working hours /
    (answered + still open at asof after more than 2 working hours). A withdrawn wait (the task cancelled
    or reassigned, another approver decided) was never answered by its person: it counts neither way."""
    rows = f.s.execute(select(Wait.raised_at, Wait.answered_at).where(
        Wait.kind == kind, _in(Wait.raised_at, f.period), f.scope.waits(), Wait.withdrawn.is_(False))).all()
    asof = f.asof
    work = work_clock(f, [t for row in rows for t in row if t is not None and t <= asof])
    within_s = WITHIN.total_seconds()
    seconds, open_late = [], 0
    for raised, answered in rows:
        if answered is not None and answered <= asof:
            seconds.append(work.seconds(raised, answered))
        elif work.seconds(raised, asof) > within_s:
            open_late += 1
    quick = sum(1 for v in seconds if v <= WITHIN.total_seconds())
    judged = len(seconds) + open_late
    return Response(kind, len(seconds), open_late, median(seconds), percentile(seconds, 0.9),
                    quick / judged if judged else None, tuple(seconds))


def escalations(f: Frame) -> list[tuple[str, int]]:
    """Per department of the person who had to answer: waits escalated in the period (escalated_at in it)."""
    rows = f.s.execute(select(Department.name, func.count()).select_from(Wait)
                       .join(User, User.id == Wait.person_id).outerjoin(Department, Department.id == User.department_id)
                       .where(_in(Wait.escalated_at, f.period), f.scope.waits())
                       .group_by(Department.name)).all()
    return sorted(((n or "-", int(c)) for n, c in rows), key=lambda r: (-r[1], r[0]))


# --- approvals ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    name: str
    count: int
    median_s: float | None
    p90_s: float | None


def approval_stage_times(f: Frame) -> list[Stage]:
    """Per stage name: steps of requests in scope decided (approved or rejected) in the period, working time
    started_at -> decided_at; count, median, p90. Ordered by the stage's position, then name."""
    rows = f.s.execute(select(ApprovalStep.name, ApprovalStep.stage_index, ApprovalStep.started_at,
                              ApprovalStep.decided_at)
                       .join(ApprovalRequest, ApprovalRequest.id == ApprovalStep.request_id)
                       .where(f.scope.approvals(), ApprovalStep.status.in_(("approved", "rejected")),
                              ApprovalStep.started_at.is_not(None), _in(ApprovalStep.decided_at, f.period))).all()
    times: dict[str, list[float]] = defaultdict(list)
    order: dict[str, int] = {}
    work = work_clock(f, [t for row in rows for t in row[2:]])
    for name, index, started, decided in rows:
        times[name].append(work.seconds(started, decided))
        order[name] = min(order.get(name, index), index)
    return [Stage(n, len(times[n]), median(times[n]), percentile(times[n], 0.9))
            for n in sorted(times, key=lambda n: (order[n], n))]


def approver_holds(f: Frame, limit: int = 5) -> list[Stage]:
    """Per approver (name in `Stage.name`): votes cast in the period on requests in scope, working time
    step.started_at -> vote.created_at; ranked by median, longest first (admins see this)."""
    rows = f.s.execute(select(User.name, ApprovalStep.started_at, ApprovalVote.created_at)
                       .join(ApprovalStep, ApprovalStep.id == ApprovalVote.step_id)
                       .join(ApprovalRequest, ApprovalRequest.id == ApprovalVote.request_id)
                       .join(User, User.id == ApprovalVote.voter_id)
                       .where(f.scope.approvals(), ApprovalStep.started_at.is_not(None),
                              _in(ApprovalVote.created_at, f.period))).all()
    times: dict[str, list[float]] = defaultdict(list)
    work = work_clock(f, [t for row in rows for t in row[1:]])
    for name, started, voted in rows:
        times[name].append(work.seconds(started, voted))
    stages = [Stage(n, len(v), median(v), percentile(v, 0.9)) for n, v in times.items()]
    return sorted(stages, key=lambda st: (-(st.median_s or 0), st.name))[:limit]


# --- progress discipline ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Discipline:
    days: tuple[tuple[date, int, int], ...]  # (working day, tasks updated that day, tasks in progress that day)

    @property
    def share(self) -> float | None:
        total = sum(d[2] for d in self.days)
        return sum(d[1] for d in self.days) / total if total else None


def progress_discipline(f: Frame) -> Discipline:
    """For each working day d of the period up to asof: in progress = tasks started (put in progress) before
    the end of d and neither handed in for review nor done before it — the tasks the daily prompt asks
    about; updated = those of them with a progress report on d (local day). share = sum(updated) /
    sum(in progress)."""
    cal, tz = f.calendar, f.calendar.tz
    p, asof = f.period, f.asof
    # the period's working days and their ends, as sort keys comparable with the fetched instants
    days_in: list[date] = []
    ends: list[datetime] = []
    day = p.first_day
    while day <= p.last_day:
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
        if end > asof:
            break
        days_in.append(day)
        ends.append(end)
        day += timedelta(days=1)
    key = _sort_key(f)
    end_keys = [key(e) for e in ends]
    base = and_(f.scope.tasks(), Task.status != "cancelled", Task.started_at.is_not(None),
                Task.started_at < p.end, or_(Task.done_at.is_(None), Task.done_at >= p.start))
    started_col, submitted_col, done_col = _raw(f, Task.started_at), _raw(f, Task.submitted_at), _raw(f, Task.done_at)

    def over(started: Any, submitted: Any, done: Any) -> Any:
        """When the task stopped being in progress (handed in, or done), never before it started; None: not."""
        ends = [e for e in (submitted, done) if e is not None]
        return max(started, min(ends)) if ends else None

    tasks = f.s.execute(select(started_col, submitted_col, done_col).where(base)).all()
    started = sorted(a for a, _, _ in tasks)
    finished = sorted(e for e in (over(*t) for t in tasks) if e is not None)
    reports = f.s.execute(select(ProgressReport.task_id, _raw(f, ProgressReport.created_at), started_col,
                                 submitted_col, done_col)
                          .join(Task, Task.id == ProgressReport.task_id)
                          .where(base, _in(ProgressReport.created_at, p), ProgressReport.created_at < asof)).all()
    updated: dict[int, set[int]] = defaultdict(set)
    for task_id, at, began, submitted, done in reports:
        i = bisect_right(end_keys, at)  # the day whose end is the first after the report
        stopped = over(began, submitted, done)
        if i < len(end_keys) and began < end_keys[i] and (stopped is None or stopped >= end_keys[i]):
            updated[i].add(task_id)
    days = []
    for i, (day, end_key) in enumerate(zip(days_in, end_keys, strict=True)):
        if cal.is_workday(day):
            in_progress = bisect_left(started, end_key) - bisect_left(finished, end_key)
            days.append((day, len(updated.get(i, ())), in_progress))
    return Discipline(tuple(days))


# --- the trend --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrendWarning:
    department: str
    reason: str  # "falling" (on-time rate fell three periods in a row) or "doubled" (open overdue doubled)
    values: tuple[float, ...]
    department_id: int | None = None


def trend_warnings(f: Frame) -> list[TrendWarning]:
    """Per department, over this period and the three before it (same length): falling when the on-time
    rate fell three times in a row (r[-3] > r[-2] > r[-1] > r[0], each period having a rate); doubled when
    its open overdue count at this period's asof is at least twice the count at the previous period's end
    (which must be at least 1)."""
    rates: list[dict[str, float]] = []
    ids: dict[str, int | None] = {}
    for back in (3, 2, 1, 0):
        period_rates = on_time_rates(f.shifted(back), "department")
        rates.append({r.name: r.rate for r in period_rates})
        ids.update((r.name, r.id) for r in period_rates)
    out = []
    for name in sorted(rates[-1]):
        series = [r.get(name) for r in rates]
        if all(v is not None for v in series) and all(a > b for a, b in itertools.pairwise(series)):  # type: ignore[operator]
            out.append(TrendWarning(name, "falling", tuple(v for v in series if v is not None), ids.get(name)))
    now_top = overdue_top(f, limit=10_000)
    now_counts = {o.name: o.count for o in now_top}
    ids.update((o.name, o.id) for o in now_top)
    before_counts = {o.name: o.count for o in overdue_top(f.shifted(1), limit=10_000)}
    for name in sorted(now_counts):
        before = before_counts.get(name, 0)
        if before >= 1 and now_counts[name] >= 2 * before:
            out.append(TrendWarning(name, "doubled", (float(before), float(now_counts[name])), ids.get(name)))
    return out
