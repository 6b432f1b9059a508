"""The 报表 card: the headline figures as short lines with text bars (every platform shows text), and
the chart's data (on-time rate by department) for the platforms or renderers that draw it."""

from __future__ import annotations

from collabbot.bot import texts
from collabbot.bot.replies import Attachment, Card, Chart
from collabbot.bot.reports import charts, figures
from collabbot.bot.reports.scope import Scope

BAR_WIDTH = 10
MAX_LINES = 6  # per field: a card is read on a phone


def bar(share: float, width: int = BAR_WIDTH) -> str:
    filled = max(0, min(width, round(share * width)))
    return "▓" * filled + "░" * (width - filled)


def pct(share: float | None) -> str:
    return "-" if share is None else f"{round(100 * share)}%"


def hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.1f}h"


def scope_name(lang: str, scope: Scope) -> str:
    return texts.t(lang, "report_scope_all") if scope.kind == "all" else scope.name


def report_card(f: figures.Frame, lang: str, *, admin: bool) -> Card:
    """The figures of `f` as a card; `admin` adds who holds approvals longest."""
    t = lambda key, **v: texts.t(lang, key, **v)  # noqa: E731
    none = t("none")
    counts = figures.task_counts(f)
    rates = figures.on_time_rates(f, "department")
    lines = lambda items: "\n".join(items[:MAX_LINES]) or none  # noqa: E731
    fields = [
        (t("report_tasks"), t("report_tasks_line", created=counts.created, done=counts.done, on_time=counts.on_time,
                              extended=counts.extended, late=counts.late, overdue=counts.open_overdue)),
        (t("report_on_time", rate=pct(counts.on_time_rate)),
         lines([f"{r.name} {bar(r.rate)} {pct(r.rate)}{texts.paren(lang, f'{r.on_time}/{r.total}')}" for r in rates]))
        if counts.on_time_rate is not None else (t("summary_on_time"), t("report_none_done")),
        (t("report_overdue_top"), lines([t("report_overdue_line", name=o.name, count=o.count, days=o.days)
                                         for o in figures.overdue_top(f, limit=MAX_LINES)])),
        (t("report_response"), lines([
            t("report_response_line", what=t(f"report_kind_{r.kind}"), median=hours(r.median_s), p90=hours(r.p90_s),
              within=pct(r.within), n=r.answered + r.open_late)  # what `within` is a share of
            for r in (figures.response_times(f, k) for k in figures.RESPONSE_KINDS) if r.answered or r.open_late])),
        (t("report_stages"), lines([t("report_stage_line", name=st.name, median=hours(st.median_s),
                                      p90=hours(st.p90_s), n=st.count) for st in figures.approval_stage_times(f)])),
        (t("report_discipline"), pct(figures.progress_discipline(f).share)),
    ]
    escalated = figures.escalations(f)
    if escalated:
        fields.append((t("report_escalations"), texts.items(lang, (f"{n} {c}" for n, c in escalated[:MAX_LINES]))))
    warnings = figures.trend_warnings(f)
    if warnings:
        fields.append((t("report_trend"), lines([t(f"report_trend_{w.reason}", name=w.department) for w in warnings])))
    if admin:
        holders = figures.approver_holds(f, limit=3)
        if holders:
            fields.append((t("report_holders"), texts.items(lang, (f"{h.name} {hours(h.median_s)}" for h in holders))))
    return Card(kind="report", key=f"report:{f.scope.kind}:{f.scope.id or 0}:{f.period.label}",
                title=t("report_title", scope=scope_name(lang, f.scope), period=f.period.label),
                color="red" if warnings else "blue", fields=tuple(fields),
                chart=tuple((r.name, round(100 * r.rate)) for r in rates))


def report_chart(f: figures.Frame, lang: str) -> Attachment | None:
    """The picture sent with the card. A project's: its burn-up (scope and done, day by day), which the
    card's text cannot show, once the period has two days of it. Otherwise the card's own chart (on-time
    rate by department) for the platforms that cannot draw it in a card. None: nothing to draw."""
    spec = charts.burn_up(f, lang) if f.scope.kind == "project" else None
    if spec is None or len(spec.labels) < 2 or not any(v for _, values in spec.series for v in values):
        spec = charts.on_time_by_department(f, lang)
    if not spec.labels:
        return None
    chart = Chart(spec.kind, spec.title, spec.labels, spec.series, spec.unit)
    return Attachment("chart", f"{spec.title}.png", chart=chart)
