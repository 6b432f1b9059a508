"""What each report chart shows, decided by the engine as plain data; `cards/charts.py` draws it as a PNG
(the engine never imports a plotting library). Titles and labels are in the report's language."""

from __future__ import annotations

import itertools
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import select

from collabbot.bot import texts
from collabbot.bot.reports import figures
from collabbot.storage.models import Task

RESPONSE_BINS_H = (0.5, 1, 2, 4, 8, 24)  # working hours: the distribution's buckets (the last is open-ended)


@dataclass(frozen=True)
class ChartSpec:
    kind: str  # bar | line
    title: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]  # (legend name, one value per label)
    unit: str = ""  # "%" for rates: the axis then runs 0-100


def on_time_by_department(f: figures.Frame, lang: str) -> ChartSpec:
    rates = figures.on_time_rates(f, "department")
    return ChartSpec("bar", texts.t(lang, "chart_on_time"), tuple(r.name for r in rates),
                     ((texts.t(lang, "chart_on_time_series"), tuple(round(100 * r.rate, 1) for r in rates)),), "%")


def overdue_by_department(f: figures.Frame, lang: str) -> ChartSpec:
    top = figures.overdue_top(f)
    return ChartSpec("bar", texts.t(lang, "chart_overdue"), tuple(o.name for o in top),
                     ((texts.t(lang, "chart_overdue_series"), tuple(float(o.count) for o in top)),))


def response_distribution(f: figures.Frame, lang: str) -> ChartSpec:
    """Answered waits per bucket of working hours, one series per kind (assignments, approvals, help)."""
    edges = (0.0, *RESPONSE_BINS_H)
    labels = (*(f"{a:g}-{b:g}h" for a, b in itertools.pairwise(edges)), f">{edges[-1]:g}h")
    series = []
    for kind in figures.RESPONSE_KINDS:
        counts = [0] * len(labels)
        for seconds in figures.response_times(f, kind).seconds:
            h = seconds / 3600
            counts[next((i for i, edge in enumerate(RESPONSE_BINS_H) if h <= edge), len(labels) - 1)] += 1
        series.append((texts.t(lang, f"report_kind_{kind}"), tuple(float(c) for c in counts)))
    return ChartSpec("bar", texts.t(lang, "chart_response"), labels, tuple(series))


def burn_up(f: figures.Frame, lang: str) -> ChartSpec:
    """Per day of the period up to asof: scope = tasks created by the day's end (not cancelled), done = of
    those, accepted by the day's end."""
    rows = f.s.execute(select(Task.created_at, Task.done_at).where(f.scope.tasks(), Task.status != "cancelled",
                                                                    Task.created_at < f.period.end)).all()
    tz = f.calendar.tz
    created = sorted(c for c, _ in rows)
    finished = sorted(d for _, d in rows if d is not None)
    labels, scope, done = [], [], []
    day = f.period.first_day
    while day <= f.period.last_day:
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
        if end - timedelta(days=1) > f.asof:
            break
        labels.append(day.strftime("%m-%d"))
        scope.append(float(bisect_left(created, end)))
        done.append(float(bisect_left(finished, end)))
        day += timedelta(days=1)
    return ChartSpec("line", texts.t(lang, "chart_burn_up"), tuple(labels),
                     ((texts.t(lang, "chart_scope"), tuple(scope)), (texts.t(lang, "chart_done"), tuple(done))))
