"""Every report figure against an independent plain-Python computation over the generated history
(tests/report_history.py), on SQLite and PostgreSQL; periods and the visibility rule."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

import pytest

from collabbot.bot.calendar import WorkCalendar
from collabbot.bot.reports import figures
from collabbot.bot.reports.period import Period, PeriodError, parse_period
from collabbot.bot.reports.scope import Scope, may_see
from collabbot.storage.db import Database
from collabbot.storage.models import User

from .report_history import NOW, TZ, History, StepRec, TaskRec, WaitRec, generate

CAL = WorkCalendar()


def test_periods_are_local_days_and_refuse_nonsense() -> None:
    week = parse_period("", NOW, TZ)
    assert (week.first_day, week.last_day) == (date(2026, 11, 30), date(2026, 12, 6))
    assert week.start == datetime(2026, 11, 30, tzinfo=TZ)
    assert parse_period("上周", NOW, TZ).first_day == date(2026, 11, 23)
    assert parse_period("本月", NOW, TZ).label == "2026-12-01~2026-12-31"
    assert parse_period("last month", NOW, TZ).label == "2026-11-01~2026-11-30"
    assert parse_period("本季度", NOW, TZ).label == "2026-10-01~2026-12-31"
    rng = parse_period("2026-10-01~2026-12-31", NOW, TZ)
    assert rng.end == datetime(2027, 1, 1, tzinfo=TZ)
    assert rng.previous().label == "2026-07-01~2026-09-30"
    assert parse_period("本月", NOW, TZ).previous().label == "2026-11-01~2026-11-30"
    assert parse_period("上月", NOW, TZ).previous().label == "2026-10-01~2026-10-31"
    assert week.previous().label == "2026-11-23~2026-11-29"
    # a month without its year, as people type it: the latest one that has begun
    assert parse_period("12月", NOW, TZ).label == parse_period("十二月", NOW, TZ).label == "2026-12-01~2026-12-31"
    assert parse_period("1月份", NOW, TZ).label == "2026-01-01~2026-01-31"
    for bad in ("明年", "2026-12-31~2026-10-01", "2020-01-01~2026-01-01", "2026-02-30~2026-03-01", "本周；drop",
                "2026-13", "技术部", "13月", "十三月"):
        with pytest.raises(PeriodError):
            parse_period(bad, NOW, TZ)
    with pytest.raises(PeriodError) as too_long:
        parse_period("2026-01-01~2027-06-01", NOW, TZ)
    assert too_long.value.reason == "too_long"
    # the forms 查找 always took are 报表's too (one reader of periods), and the README's dates without a year
    expected = {"上季度": "2026-07-01~2026-09-30", "今年": "2026-01-01~2026-12-31", "2026": "2026-01-01~2026-12-31",
                "2026-11": "2026-11-01~2026-11-30", "2026年11月": "2026-11-01~2026-11-30",
                "2026-09~2026-11": "2026-09-01~2026-11-30", "2026/11/01~2026/11/30": "2026-11-01~2026-11-30",
                "11-01~11-30": "2026-11-01~2026-11-30", "12-28~01-03": "2025-12-28~2026-01-03"}
    assert {text: parse_period(text, NOW, TZ).label for text in expected} == expected


# --- the independent computation -----------------------------------------------------------------

def _in(at: datetime | None, p: Period) -> bool:
    return at is not None and p.start <= at < p.end


def _task_pred(scope: Scope) -> Callable[[TaskRec], bool]:
    return {"all": lambda t: True, "project": lambda t: t.project == scope.id,
            "department": lambda t: t.dept == scope.id, "person": lambda t: t.owner == scope.id}[scope.kind]


def _wait_pred(scope: Scope) -> Callable[[WaitRec], bool]:
    return {"all": lambda w: True, "project": lambda w: w.project == scope.id,
            "department": lambda w: w.person_dept == scope.id, "person": lambda w: w.person == scope.id}[scope.kind]


def _step_pred(scope: Scope) -> Callable[[StepRec], bool]:
    return {"all": lambda st: True, "project": lambda st: st.project == scope.id,
            "department": lambda st: st.dept == scope.id, "person": lambda st: st.initiator == scope.id}[scope.kind]


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-9 * len(ordered) // 10)  # ceil(0.9 n) in integers
    return ordered[rank - 1]


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _work(a: datetime, b: datetime) -> float:
    return CAL.working_between(a, b).total_seconds()


def _finished(t: TaskRec) -> datetime | None:
    """Judged by the owner's hand-in, not the reviewer's acceptance."""
    return t.submitted or t.done


def _overdue_at(t: TaskRec, asof: datetime) -> bool:
    """Past its deadline at `asof`, not done then, and not handed in by the deadline before then."""
    return (t.created < asof and t.deadline is not None and t.deadline < asof and (t.done is None or t.done >= asof)
            and not (t.submitted is not None and t.submitted <= t.deadline and t.submitted < asof))


def expected_counts(h: History, scope: Scope, p: Period, asof: datetime) -> tuple[int, ...]:
    ts = [t for t in h.tasks if _task_pred(scope)(t) and t.status != "cancelled"]
    done = [t for t in ts if t.status == "done" and _in(t.done, p)]
    judged = [t for t in done if t.deadline is not None]
    on_time = [t for t in judged if _finished(t) <= (t.original or t.deadline)]  # type: ignore[operator]
    extended = [t for t in judged if (t.original or t.deadline) < _finished(t) <= t.deadline]  # type: ignore[operator]
    late = [t for t in judged if _finished(t) > t.deadline]  # type: ignore[operator]
    overdue = [t for t in ts if _overdue_at(t, asof)]
    return (len([t for t in ts if _in(t.created, p)]), len(done), len(on_time), len(extended), len(late), len([t for t in done if t.deadline is None]), len(overdue))


def expected_rates(h: History, scope: Scope, p: Period, by: str) -> dict[str, tuple[int, int, int]]:
    key = {"department": lambda t: h.depts[t.dept], "person": lambda t: h.users[t.owner][0],
           "project": lambda t: h.projects[t.project]}[by]
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for t in h.tasks:
        if _task_pred(scope)(t) and t.status == "done" and _in(t.done, p) and t.deadline is not None:
            row = out[key(t)]
            original = t.original or t.deadline
            row[0] += _finished(t) <= original  # type: ignore[operator]
            row[1] += 1
            row[2] += original < _finished(t) <= t.deadline  # type: ignore[operator]
    return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]


def expected_overdue(h: History, scope: Scope, asof: datetime) -> list[tuple[str, int, float]]:
    seconds: dict[str, list[int]] = defaultdict(list)
    for t in h.tasks:
        if _task_pred(scope)(t) and t.status != "cancelled" and _overdue_at(t, asof):
            seconds[h.depts[t.dept]].append(int((asof - t.deadline).total_seconds()))
    rows = [(name, len(v), round(sum(v) / 86400, 1)) for name, v in seconds.items()]
    rows.sort(key=lambda r: (-r[1], -r[2], r[0]))
    return rows


def expected_response(h: History, scope: Scope, p: Period, asof: datetime, kind: str) -> tuple[object, ...]:
    answered, open_late = [], 0
    for w in h.waits:
        if w.kind != kind or not _in(w.raised, p) or not _wait_pred(scope)(w):
            continue
        if w.answered is not None and w.answered <= asof:
            answered.append(_work(w.raised, w.answered))
        elif _work(w.raised, asof) > 7200:
            open_late += 1
    judged = len(answered) + open_late
    share = len([v for v in answered if v <= 7200]) / judged if judged else None
    return len(answered), open_late, _med(answered), _p90(answered), share


def expected_escalations(h: History, scope: Scope, p: Period) -> list[tuple[str, int]]:
    counts: dict[str, int] = defaultdict(int)
    for w in h.waits:
        if _in(w.escalated, p) and _wait_pred(scope)(w):
            counts[h.depts[w.person_dept]] += 1
    return sorted(counts.items(), key=lambda r: (-r[1], r[0]))


def expected_stages(h: History, scope: Scope, p: Period) -> dict[str, tuple[int, float | None, float | None]]:
    times: dict[str, list[float]] = defaultdict(list)
    for st in h.steps:
        if st.status in ("approved", "rejected") and _in(st.decided, p) and _step_pred(scope)(st):
            times[st.name].append(_work(st.started, st.decided))  # type: ignore[arg-type]
    return {n: (len(v), _med(v), _p90(v)) for n, v in times.items()}


def expected_holds(h: History, scope: Scope, p: Period) -> dict[str, tuple[int, float | None]]:
    times: dict[str, list[float]] = defaultdict(list)
    for st in h.steps:  # every decided step has its one vote, cast when it was decided
        if st.decided is not None and _in(st.decided, p) and _step_pred(scope)(st):
            times[st.voter_name].append(_work(st.started, st.decided))
    return {n: (len(v), _med(v)) for n, v in times.items()}


def expected_discipline(h: History, scope: Scope, p: Period, asof: datetime) -> list[tuple[date, int, int]]:
    out = []
    day = p.first_day
    while day <= p.last_day:
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=TZ)
        if end > asof:
            break
        if CAL.is_workday(day):
            active = [t for t in h.tasks if _task_pred(scope)(t) and t.status != "cancelled" and t.acked is not None
                      and t.acked < end and (_finished(t) is None or _finished(t) >= end)]
            updated = [t for t in active if any(r.astimezone(TZ).date() == day for r in t.reports)]
            out.append((day, len(updated), len(active)))
        day += timedelta(days=1)
    return out


def expected_trend(h: History, scope: Scope, p: Period, asof: datetime) -> list[tuple[str, str]]:
    periods = [p.previous().previous().previous(), p.previous().previous(), p.previous(), p]
    series = []
    for q in periods:
        rates = expected_rates(h, scope, q, "department")
        series.append({k: v[0] / v[1] for k, v in rates.items()})
    out = []
    for name in sorted(series[-1]):
        vals = [s.get(name) for s in series]
        if None not in vals and vals[0] > vals[1] > vals[2] > vals[3]:  # type: ignore[operator]
            out.append((name, "falling"))
    now = {n: c for n, c, _ in expected_overdue(h, scope, asof)}
    before = {n: c for n, c, _ in expected_overdue(h, scope, min(NOW, p.previous().end))}
    out += [(n, "doubled") for n in sorted(now) if before.get(n, 0) >= 1 and now[n] >= 2 * before[n]]
    return out


# --- the checks -----------------------------------------------------------------------------------

def _close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)


def _scopes(h: History) -> list[Scope]:
    dept = next(iter(h.depts))
    person = next(u for u in h.users if u not in h.heads.values())
    return [Scope("all"), Scope("project", next(iter(h.projects))), Scope("department", dept),
            Scope("person", person)]


@pytest.mark.parametrize("period_text", ["上月", "本季度", "2026-09-01~2026-11-30", "本周"])
def test_every_figure_matches_a_plain_computation(db: Database, period_text: str) -> None:
    h = generate(db)
    assert len(h.tasks) == 300 and len(h.depts) == 6
    period = parse_period(period_text, NOW, TZ)
    with db.transaction() as s:
        for scope in _scopes(h):
            f = figures.Frame(s, scope, period, NOW, CAL)
            asof = f.asof
            c = figures.task_counts(f)
            assert (c.created, c.done, c.on_time, c.extended, c.late, c.no_deadline, c.open_overdue) == \
                expected_counts(h, scope, period, asof), scope
            for by in ("department", "person", "project"):
                got = {r.name: (r.on_time, r.total, r.extended) for r in figures.on_time_rates(f, by)}
                assert got == expected_rates(h, scope, period, by), (scope, by)
            assert [(o.name, o.count, o.days) for o in figures.overdue_top(f, limit=100)] == \
                expected_overdue(h, scope, asof)
            for kind in figures.RESPONSE_KINDS:
                r = figures.response_times(f, kind)
                want = expected_response(h, scope, period, asof, kind)
                assert (r.answered, r.open_late) == want[:2], (scope, kind)
                assert all(_close(a, b) for a, b in zip((r.median_s, r.p90_s, r.within), want[2:], strict=True))
            assert figures.escalations(f) == expected_escalations(h, scope, period)
            assert {st.name: (st.count, st.median_s, st.p90_s) for st in figures.approval_stage_times(f)} == \
                expected_stages(h, scope, period)
            assert {st.name: (st.count, st.median_s) for st in figures.approver_holds(f, limit=1000)} == \
                expected_holds(h, scope, period)
            assert list(figures.progress_discipline(f).days) == expected_discipline(h, scope, period, asof)
            assert [(w.department, w.reason) for w in figures.trend_warnings(f)] == \
                expected_trend(h, scope, period, asof)
        # the history is rich enough that the figures are not trivially empty
        f = figures.Frame(s, Scope("all"), period, NOW, CAL)
        if period_text != "本周":
            assert figures.task_counts(f).done > 20 and figures.task_counts(f).extended > 0
            assert figures.approval_stage_times(f) and figures.escalations(f)
            assert figures.progress_discipline(f).share is not None


def test_visibility_follows_the_task_rule(db: Database) -> None:
    h = generate(db, tasks=40)
    dept = next(iter(h.depts))
    head = h.heads[dept]
    member = next(u for u, (_, d) in h.users.items() if d == dept and u != head)
    other_head = h.heads[list(h.depts)[-1]]
    with db.transaction() as s:
        def sees(viewer: int, scope: Scope, admin: bool = False) -> bool:
            return may_see(s, s.get(User, viewer), scope, admin)  # type: ignore[arg-type]

        assert sees(member, Scope("person", member)) and sees(head, Scope("person", member))
        assert not sees(other_head, Scope("person", member)) and sees(h.admin, Scope("person", member), True)
        assert sees(head, Scope("department", dept)) and not sees(member, Scope("department", dept))
        assert not sees(h.outsider, Scope("all")) and sees(h.admin, Scope("all"), True)
        project = next(iter(h.projects))
        assert sees(head, Scope("project", project))  # its coordinator
        assert not sees(h.outsider, Scope("project", project))
        owner = next(t.owner for t in h.tasks if t.project == project)
        assert sees(owner, Scope("project", project))


def test_the_work_clock_agrees_with_the_calendar() -> None:
    rng = random.Random(3)
    base = datetime(2026, 9, 25, tzinfo=TZ)  # across the National Day holiday and its make-up workdays
    times = [base + timedelta(minutes=rng.randrange(60 * 24 * 30), seconds=rng.randrange(60)) for _ in range(400)]
    clock = figures.WorkClock(CAL, min(times), max(times))
    for a, b in itertools.pairwise(times):
        assert clock.seconds(a, b) == CAL.working_between(a, b).total_seconds(), (a, b)


def test_a_falling_on_time_rate_and_doubled_overdue_are_named(db: Database) -> None:
    from collabbot.storage.models import Department, Task

    now = datetime(2026, 11, 27, 12, 0, tzinfo=TZ)  # a Friday: this week is 11-23..11-29
    with db.transaction() as s:
        dept = Department(name="技术部")
        s.add(dept)
        s.flush()
        user = User(name="李四", department_id=dept.id, created_at=now - timedelta(days=60))
        s.add(user)
        s.flush()

        def task(created: datetime, deadline: datetime, done: datetime | None) -> Task:
            return Task(title="t", initiator_id=user.id, owner_id=user.id, department_id=dept.id,
                        status="done" if done else "in_progress", deadline=deadline, done_at=done,
                        created_at=created, updated_at=created)

        for weeks_back, on_time in ((3, 4), (2, 3), (1, 2), (0, 1)):
            monday = datetime(2026, 11, 23, 10, 0, tzinfo=TZ) - timedelta(weeks=weeks_back)
            for i in range(4):
                done = monday + timedelta(days=1)
                deadline = done + timedelta(hours=1) if i < on_time else done - timedelta(hours=1)
                s.add(task(monday - timedelta(days=3), deadline, done))
        # open overdue: 1 at the end of last week, 2 now
        s.add(task(now - timedelta(days=20), now - timedelta(days=10), None))
        s.add(task(now - timedelta(days=5), now - timedelta(days=2), None))
    with db.transaction() as s:
        f = figures.Frame(s, Scope("department", dept.id, "技术部"), parse_period("本周", now, TZ), now, CAL)
        warnings = figures.trend_warnings(f)
        assert [(w.department, w.reason) for w in warnings] == [("技术部", "falling"), ("技术部", "doubled")]
        assert warnings[0].values == (1.0, 0.75, 0.5, 0.25) and warnings[1].values == (1.0, 2.0)
        last_week = figures.Frame(s, f.scope, parse_period("上周", now, TZ), now, CAL)
        assert figures.trend_warnings(last_week) == []  # two falls only, and no overdue before
