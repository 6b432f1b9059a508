"""Working time for Chinese companies: which days are workdays and which hours count.

Nags are counted in working time and nothing is pushed outside it unless a rule says so
(README, "How it chases"). China's statutory holidays and make-up workdays (调休) come from the
`chinese_calendar` package; for a year it does not cover yet, or for company-specific days, the
`[calendar]` config section lists extra holidays and workdays. Beyond both, Monday–Friday are workdays.

All arithmetic is done on UTC instants, so a zone with daylight saving time counts real elapsed time;
working periods are wall-clock times in `WorkCalendar.tz`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar

__all__ = ["WorkCalendar"]

_DEFAULT_TZ = ZoneInfo("Asia/Shanghai")
_DEFAULT_PERIODS: tuple[tuple[time, time], ...] = ((time(9, 0), time(12, 0)), (time(13, 30), time(18, 0)))
_CONFIG_KEYS = ("timezone", "working_hours", "extra_holidays", "extra_workdays")
_RANGE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@lru_cache(maxsize=64)
def _package_covers(year: int) -> bool:
    """Whether the installed `chinese_calendar` has holiday data for `year`."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


@lru_cache(maxsize=8192)
def _package_is_workday(d: date) -> bool:
    """`chinese_calendar.is_workday`, cached (the package rescans its tables on every call)."""
    return bool(chinese_calendar.is_workday(d))


def _check_periods(periods: tuple[tuple[time, time], ...]) -> None:
    """Raise ValueError unless `periods` is a non-empty, ordered list of non-overlapping ranges."""
    if not periods:
        raise ValueError("at least one working period is needed")
    previous_end: time | None = None
    for start, end in periods:
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError("working periods must be naive wall-clock times")
        if not start < end:
            raise ValueError(f"{start:%H:%M}-{end:%H:%M} must end after it starts")
        if previous_end is not None and start < previous_end:
            raise ValueError(f"{start:%H:%M}-{end:%H:%M} overlaps or comes before the previous period")
        previous_end = end


@dataclass(frozen=True)
class WorkCalendar:
    """Workdays and working hours in one time zone."""

    tz: ZoneInfo = _DEFAULT_TZ
    periods: tuple[tuple[time, time], ...] = _DEFAULT_PERIODS
    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        _check_periods(self.periods)

    # --- days --------------------------------------------------------------------------------------

    def is_workday(self, d: date) -> bool:
        """Config lists win; else the package's data when it covers the year; else Monday–Friday."""
        if d in self.extra_workdays:
            return True
        if d in self.extra_holidays:
            return False
        if _package_covers(d.year):
            return _package_is_workday(d)
        return d.weekday() < 5

    def has_holiday_data(self, year: int) -> bool:
        """True when the package covers `year` or the config lists at least one holiday in it."""
        return _package_covers(year) or any(d.year == year for d in self.extra_holidays)

    def coverage_warnings(self, today: date) -> list[str]:
        """One sentence for this year and next year each if nothing says which days are holidays."""
        return [
            f"No holiday data for {year}: only Monday–Friday count as workdays. List {year}'s holidays "
            f"and make-up workdays under [calendar] extra_holidays / extra_workdays in the config."
            for year in (today.year, today.year + 1)
            if not self.has_holiday_data(year)
        ]

    def next_workday(self, d: date) -> date:
        """The first workday strictly after `d`."""
        d += timedelta(days=1)
        while not self.is_workday(d):
            d += timedelta(days=1)
        return d

    def add_workdays(self, d: date, n: int) -> date:
        """The day `n` workdays after `d` (before it when `n` < 0), days off not counted; with `n` == 0,
        `d` itself when it is a workday, else the workday before it: a due date never falls on a day off."""
        step = 1 if n > 0 else -1
        left = abs(n)
        if left == 0 and not self.is_workday(d):
            left = 1
        while left:
            d += timedelta(days=step)
            left -= self.is_workday(d)
        return d

    def last_workday_of_week(self, d: date) -> date | None:
        """The latest workday Monday–Friday of the week containing `d` (make-up weekends never count)."""
        monday = d - timedelta(days=d.weekday())
        for offset in range(4, -1, -1):
            day = monday + timedelta(days=offset)
            if self.is_workday(day):
                return day
        return None

    # --- instants ----------------------------------------------------------------------------------

    def is_working_time(self, at: datetime) -> bool:
        """Whether `at` lies inside a working period [start, end) of a workday."""
        instant = self._utc(at)
        day = instant.astimezone(self.tz).date()
        return any(start <= instant < end for start, end in self._day_periods(day))

    def next_working_moment(self, at: datetime) -> datetime:
        """`at` itself if it is working time, else the start of the next working period."""
        instant = self._utc(at)
        for start, end in self._periods_from(instant):
            if instant < end:
                return self._local(max(instant, start))
        raise AssertionError("unreachable: _periods_from never ends")  # pragma: no cover

    def add_working(self, start: datetime, delta: timedelta) -> datetime:
        """`start` plus `delta` of working time; a result at a period's end stays there."""
        if delta < timedelta(0):
            raise ValueError("delta must not be negative")
        cursor = self._utc(start)
        remaining = delta
        day = cursor.astimezone(self.tz).date()
        # Skip whole days at once while the remainder is longer than what is left of the day.
        while True:
            available = sum(
                (max(timedelta(0), end - max(begin, cursor)) for begin, end in self._day_periods(day)),
                timedelta(0),
            )
            if remaining <= available:
                break
            remaining -= available
            day += timedelta(days=1)
            cursor = max(cursor, datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC))
        for begin, end in self._periods_from(cursor, day):
            if end <= cursor:
                continue
            begin = max(begin, cursor)
            available = end - begin
            if remaining <= available:
                return self._local(begin + remaining)
            remaining -= available
        raise AssertionError("unreachable: _periods_from never ends")  # pragma: no cover

    def working_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time in [a, b); zero when b <= a."""
        lo, hi = self._utc(a), self._utc(b)
        total = timedelta(0)
        if hi <= lo:
            return total
        day = lo.astimezone(self.tz).date()
        last = hi.astimezone(self.tz).date()
        while day <= last:
            for start, end in self._day_periods(day):
                overlap = min(end, hi) - max(start, lo)
                if overlap > timedelta(0):
                    total += overlap
            day += timedelta(days=1)
        return total

    # --- config ------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> WorkCalendar:
        """Build from the `[calendar]` config section; ValueError("calendar.<key>: ...") on bad values."""
        if not isinstance(section, dict):
            raise ValueError("calendar: must be a table")
        for key in section:
            if key not in _CONFIG_KEYS:
                raise ValueError(f"calendar.{key}: unknown key (expected one of {', '.join(_CONFIG_KEYS)})")
        tz = _DEFAULT_TZ
        if "timezone" in section:
            name = section["timezone"]
            if not isinstance(name, str) or not name:
                raise ValueError("calendar.timezone: must be a time zone name such as \"Asia/Shanghai\"")
            try:
                tz = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"calendar.timezone: unknown time zone {name!r}") from None
        periods = _DEFAULT_PERIODS
        if "working_hours" in section:
            periods = _parse_periods(section["working_hours"])
        holidays = _parse_dates("extra_holidays", section.get("extra_holidays", []))
        workdays = _parse_dates("extra_workdays", section.get("extra_workdays", []))
        both = sorted(holidays & workdays)
        if both:
            raise ValueError(f"calendar.extra_workdays: {both[0].isoformat()} is also in extra_holidays")
        return cls(tz=tz, periods=periods, extra_holidays=holidays, extra_workdays=workdays)

    # --- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _utc(at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"naive datetime {at.isoformat()}: a timezone-aware datetime is needed")
        return at.astimezone(UTC)

    def _local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def _day_periods(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The working periods of `day` as UTC instants; empty on a day off."""
        return _day_periods(self, day)

    def _periods_from(
        self, instant: datetime, day: date | None = None
    ) -> Iterator[tuple[datetime, datetime]]:
        """Working periods from `day` (default: `instant`'s local day) on, without end."""
        if day is None:
            day = instant.astimezone(self.tz).date()
        while True:
            yield from self._day_periods(day)
            day += timedelta(days=1)


@lru_cache(maxsize=4096)
def _day_periods(calendar: WorkCalendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """Cached: a sweep of 1,000 nags asks for the same few days thousands of times."""
    if not calendar.is_workday(day):
        return ()
    return tuple(
        (datetime.combine(day, start, tzinfo=calendar.tz).astimezone(UTC),
         datetime.combine(day, end, tzinfo=calendar.tz).astimezone(UTC))
        for start, end in calendar.periods
    )


def _parse_periods(value: Any) -> tuple[tuple[time, time], ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(
            'calendar.working_hours: must be a non-empty list like ["09:00-12:00", "13:30-18:00"]'
        )
    periods = []
    for text in value:
        match = _RANGE_RE.match(text)
        if match is None:
            raise ValueError(f"calendar.working_hours: {text!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if not (h1 < 24 and m1 < 60 and h2 < 24 and m2 < 60):
            raise ValueError(f"calendar.working_hours: {text!r} is not a valid time range")
        periods.append((time(h1, m1), time(h2, m2)))
    result = tuple(periods)
    try:
        _check_periods(result)
    except ValueError as exc:
        raise ValueError(f"calendar.working_hours: {exc}") from None
    return result


def _parse_dates(key: str, value: Any) -> frozenset[date]:
    if not isinstance(value, list):
        raise ValueError(f'calendar.{key}: must be a list of dates like ["2027-02-06"]')
    days = set()
    for item in value:
        if isinstance(item, date) and not isinstance(item, datetime):
            days.add(item)  # an unquoted TOML date
            continue
        if not isinstance(item, str) or not _DATE_RE.match(item.strip()):
            raise ValueError(f"calendar.{key}: {item!r} is not a YYYY-MM-DD date")
        try:
            days.add(date.fromisoformat(item.strip()))
        except ValueError:
            raise ValueError(f"calendar.{key}: {item!r} is not a valid date") from None
    return frozenset(days)
