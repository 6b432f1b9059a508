"""A report's period: 本周 (default), 上周, 本月, 上月, 本季度, 上季度, 今年, a year (`2026`), a month
(`2026-11`), months (`2026-09~2026-11`), or days (`2026-10-01~2026-12-31`, `/` or `.` between the numbers
as well; without the year, `11-01~11-30` is the latest such range that has begun). 报表, 导出, 查找 and
操作记录 all read periods here.

A period is the half-open interval [start, end) of local days in the calendar's time zone, kept as aware
datetimes so that SQL compares it with the stored UTC times directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS = 366  # a longer range is refused: a report is about a season, not the whole history

WORDS: dict[str, str] = {
    "本周": "this_week", "this week": "this_week", "上周": "last_week", "last week": "last_week",
    "本月": "this_month", "this month": "this_month", "上月": "last_month", "last month": "last_month",
    "本季度": "this_quarter", "本季": "this_quarter", "this quarter": "this_quarter",
    "上季度": "last_quarter", "上季": "last_quarter", "last quarter": "last_quarter",
    "今年": "this_year", "本年": "this_year", "本年度": "this_year", "this year": "this_year",
}
_D = r"[-/.]"
_TO = r"\s*[~～至到-]\s*"
_RANGE = re.compile(rf"^(\d{{4}}){_D}(\d{{1,2}}){_D}(\d{{1,2}}){_TO}(\d{{4}}){_D}(\d{{1,2}}){_D}(\d{{1,2}})$")
_DAYS = re.compile(rf"^(\d{{1,2}}){_D}(\d{{1,2}}){_TO}(\d{{1,2}}){_D}(\d{{1,2}})$")  # without the year
_YEAR = re.compile(r"^(\d{4})年?$")
_MONTH = re.compile(r"^(\d{4})[-/.年](\d{1,2})月?$")
# a month without its year (`12月`, `十二月`): the latest one that has begun, as for a range of days
_BARE_MONTH = re.compile(r"^(\d{1,2}|十[一二]?|[一二三四五六七八九])月(?:份)?$")
_CN_MONTHS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10, "十一": 11,
              "十二": 12}
_MONTHS = re.compile(rf"^(\d{{4}}){_D}(\d{{1,2}}){_TO}(\d{{4}}){_D}(\d{{1,2}})$")


class PeriodError(ValueError):
    """Not a period we understand, or one we refuse (reversed, too long: `reason` "too_long")."""

    def __init__(self, text: str, reason: str = "unknown") -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive
    first_day: date
    last_day: date  # inclusive, for showing

    @property
    def label(self) -> str:
        return f"{self.first_day.isoformat()}~{self.last_day.isoformat()}"

    def previous(self) -> Period:
        """The period just before this one (the trend compares these): as many whole months when this one is
        whole months (上月 before 本月, the previous quarter before 本季度), else as many days."""
        after = self.last_day + timedelta(days=1)
        if self.first_day.day == 1 and after.day == 1:
            months = (after.year - self.first_day.year) * 12 + after.month - self.first_day.month
            return from_days(_month_start(self.first_day, months), self.first_day - timedelta(days=1),
                             self.start.tzinfo)  # type: ignore[arg-type]
        days = (self.last_day - self.first_day).days + 1
        return from_days(self.first_day - timedelta(days=days), self.first_day - timedelta(days=1),
                         self.start.tzinfo)  # type: ignore[arg-type]


def from_days(first: date, last: date, tz: ZoneInfo) -> Period:
    start = datetime.combine(first, time(0), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
    return Period(start=start, end=end, first_day=first, last_day=last)


def _month_start(d: date, back: int = 0) -> date:
    month = d.month - 1 - back
    return date(d.year + month // 12, month % 12 + 1, 1)


def named(word: str, today: date, tz: ZoneInfo) -> Period:
    """One of WORDS' periods around `today` (weeks start on Monday)."""
    monday = today - timedelta(days=today.weekday())
    if word == "this_week":
        return from_days(monday, monday + timedelta(days=6), tz)
    if word == "last_week":
        return from_days(monday - timedelta(days=7), monday - timedelta(days=1), tz)
    if word == "this_month":
        first = _month_start(today)
        return from_days(first, _month_start(first, -1) - timedelta(days=1), tz)
    if word == "last_month":
        first = _month_start(today, 1)
        return from_days(first, _month_start(today) - timedelta(days=1), tz)
    if word in ("this_quarter", "last_quarter"):
        first = _month_start(date(today.year, 3 * ((today.month - 1) // 3) + 1, 1), 3 if word == "last_quarter" else 0)
        return from_days(first, _month_start(first, -3) - timedelta(days=1), tz)
    if word == "this_year":
        return from_days(date(today.year, 1, 1), date(today.year, 12, 31), tz)
    raise PeriodError(word)


def _month_end(first: date) -> date:
    return _month_start(first, -1) - timedelta(days=1)


def _days(words: str, today: date) -> tuple[date, date] | None:
    """The first and last day a year, month, months or days range names; None: not one of those forms."""
    if m := _YEAR.match(words):
        return date(int(m[1]), 1, 1), date(int(m[1]), 12, 31)
    if m := _MONTH.match(words):
        first = date(int(m[1]), int(m[2]), 1)
        return first, _month_end(first)
    if m := _BARE_MONTH.match(words):
        month = int(m[1]) if m[1].isdigit() else _CN_MONTHS[m[1]]
        first = date(today.year if month <= today.month else today.year - 1, month, 1)
        return first, _month_end(first)
    if m := _MONTHS.match(words):
        return date(int(m[1]), int(m[2]), 1), _month_end(date(int(m[3]), int(m[4]), 1))
    if m := _RANGE.match(words):
        return date(int(m[1]), int(m[2]), int(m[3])), date(int(m[4]), int(m[5]), int(m[6]))
    if m := _DAYS.match(words):  # the latest such range that has begun: a report is about what happened
        year = today.year if (int(m[1]), int(m[2])) <= (today.month, today.day) else today.year - 1
        first = date(year, int(m[1]), int(m[2]))
        last = date(year, int(m[3]), int(m[4]))
        return first, last if last >= first else date(year + 1, int(m[3]), int(m[4]))
    return None


def parse_period(text: str, now: datetime, tz: ZoneInfo) -> Period:
    """The period `text` names; an empty text is 本周. Raises PeriodError for anything else."""
    words = " ".join(text.split()).lower()
    today = now.astimezone(tz).date()
    if not words:
        return named("this_week", today, tz)
    if words in WORDS:
        return named(WORDS[words], today, tz)
    try:
        days = _days(words, today)
    except ValueError as exc:  # a 13th month, a 30th of February
        raise PeriodError(text) from exc
    if days is None:
        raise PeriodError(text)
    first, last = days
    if last < first:
        raise PeriodError(text)
    if (last - first).days + 1 > MAX_DAYS:
        raise PeriodError(text, "too_long")
    return from_days(first, last, tz)
