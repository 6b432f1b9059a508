"""Deadlines as people type them in a group chat -> an aware `datetime`, and back to short text.

`parse_when` reads one date, optionally followed by one time (with or without a space between), and
returns a datetime in the zone of `now`, or None when the text is not such an expression. It never
raises for any string; anything longer than `MAX_CHARS` is None without being looked at. Full-width
digits and `：／－．` are read as their ASCII forms, English words in any case.

Dates: `2026-12-01` `2026/12/01` `2026.12.01` `2026年12月1日` (or `号`); without a year `12-01` `12/1`
`12月1日` `12月1号` `12月1` mean the nearest occurrence, within half a year of today (`12-05` typed on
December 7th is two days ago, so a deadline is refused as past rather than moved a year on; `01-05`
typed in December is next January);
`今天` `today` `明天` `明日` `tomorrow` `后天` `大后天`, and the past `昨天` `昨日` `yesterday` `前天`;
`N天后` `in N days`; weekdays `周五` `星期五` `礼拜五` `周日`/`周天` `fri` `friday` (the next one, today
included), `本周五`/`这周五`/`this fri` (in the current Mon-Sun week, possibly already past),
`下周五`/`下星期五`/`下礼拜五`/`next fri` (in next week's Mon-Sun week), `上周五`/`last fri` (in last week's).
A time alone is no date (a deadline names its day); `parse_held_at` reads it as today's.

Times: `18:00` `9:30` `18点` `18点半` `9点30分` `9点30`; `上午10点` `中午12点` `下午3点` `晚上8点`
(also `凌晨` `早上` `傍晚`, and before `3:30`); `3pm` `10am` `3:30pm`. `晚上12点` is midnight at the end
of that day. Without a time the deadline is at `default_time` (18:00).

With `now` = Tuesday 2026-12-01 09:00 Asia/Shanghai:

>>> from zoneinfo import ZoneInfo
>>> now = datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
>>> str(parse_when("明天 10:00", now))
'2026-12-02 10:00:00+08:00'
>>> str(parse_when("周五下午3点", now))
'2026-12-04 15:00:00+08:00'
>>> str(parse_when("下周一", now))
'2026-12-07 18:00:00+08:00'
>>> str(parse_when("11-30", now))  # yesterday, not next year: the caller refuses a past deadline
'2026-11-30 18:00:00+08:00'
>>> str(parse_when("１２／１０ １８：３０", now))
'2026-12-10 18:30:00+08:00'
>>> print(parse_when("下周八", now), parse_when("12-01 25:00", now))
None None
>>> format_when(parse_when("12-10", now), now), format_when(parse_when("01-05", now), now)
('12-10 18:00', '2027-01-05 18:00')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta

__all__ = ["MAX_CHARS", "format_when", "parse_held_at", "parse_when"]

MAX_CHARS = 40
"""Longer input is not a date expression (and is not scanned at all)."""

_NORMALISE = str.maketrans(
    {**{chr(0xFF10 + i): str(i) for i in range(10)},
     "：": ":", "／": "/", "－": "-", "．": ".", "\u3000": " "}
)

# All patterns are ASCII-only for \d and \s, so no other script's digits sneak in.
_A = re.ASCII

_CN_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_EN_WEEKDAY = {
    "mon": 0, "monday": 0, "tue": 1, "tues": 1, "tuesday": 1, "wed": 2, "wednesday": 2,
    "thu": 3, "thur": 3, "thurs": 3, "thursday": 3, "fri": 4, "friday": 4,
    "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}
_CN_SMALL_NUMBER = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
                    "十": 10}
_DAY_WORDS = {"今天": 0, "今日": 0, "today": 0, "明天": 1, "明日": 1, "tomorrow": 1, "后天": 2, "大后天": 3,
              "昨天": -1, "昨日": -1, "yesterday": -1, "前天": -2}

_END_OF_NUMBER = r"(?!\d)"  # `12-0118:00` is not `12-01 18:00`


def _alternatives(words: Iterable[str]) -> str:
    """A regex alternation of `words`, longest first so `monday` wins over `mon`."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


# Each date pattern is tried with `match` (anchored at the start); what follows it must be a time.
_YMD_SEP = re.compile(r"(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})" + _END_OF_NUMBER, _A)
_YMD_CN = re.compile(r"(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})(?:[日号]|" + _END_OF_NUMBER + ")", _A)
_MD_SEP = re.compile(r"(\d{1,2})[-/.](\d{1,2})" + _END_OF_NUMBER, _A)
_MD_CN = re.compile(r"(\d{1,2})月(\d{1,2})(?:[日号]|" + _END_OF_NUMBER + ")", _A)
_DAY_WORD = re.compile(_alternatives(_DAY_WORDS), _A)
_IN_DAYS_CN = re.compile(r"(\d{1,4}|[" + "".join(_CN_SMALL_NUMBER) + r"])\s*天之?后", _A)
_IN_DAYS_EN = re.compile(r"in\s+(\d{1,4})\s+days?(?![a-z])", _A)
_WEEKDAY_CN = re.compile(r"(?:([本这下上])个?)?(?:周|星期|礼拜)([" + "".join(_CN_WEEKDAY) + "])", _A)
_WEEKDAY_EN = re.compile(r"(?:(next|this|last)\s+)?(" + _alternatives(_EN_WEEKDAY) + r")(?![a-z])", _A)

# Times: the whole remainder must be exactly one of these.
_PERIODS = ("凌晨", "早上", "早晨", "上午", "中午", "下午", "傍晚", "晚上")
_PERIOD = "(?:(" + "|".join(_PERIODS) + r")\s*)?"
_TIME_COLON = re.compile(_PERIOD + r"(\d{1,2}):(\d{2})(?:\s*(am|pm))?", _A)
_TIME_CN = re.compile(_PERIOD + r"(\d{1,2})\s*[点时](?:(半)|整|(\d{1,2})分?)?", _A)
_TIME_AMPM = re.compile(r"(\d{1,2})\s*(am|pm)", _A)


def parse_when(text: str, now: datetime, *, default_time: time = time(18, 0)) -> datetime | None:
    """The moment `text` names, in `now`'s zone, or None if it is not a date (see the module doc).

    `now` must be timezone-aware; seconds and microseconds of the result are always 0.
    """
    if now.tzinfo is None:
        raise ValueError("parse_when needs an aware `now`")
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        return None
    # a sentence's end and "by" are no part of the date: 周五。 12-10前 12-10之前
    s = re.sub(r"(?:之前|以前|前)$", "", text.translate(_NORMALISE).strip().lower().rstrip("。.!！")).strip()
    if not s:
        return None
    found = _parse_date(s, now.date())
    if found is None:
        return None
    day, rest = found
    clock = _parse_time(rest.strip(), default_time)
    if clock is None:
        return None
    hour, minute, extra_days = clock
    try:
        return datetime.combine(day + timedelta(days=extra_days), time(hour, minute), tzinfo=now.tzinfo)
    except (ValueError, OverflowError):
        return None


_TIME_RANGE_END = re.compile(r"(\d{1,2}:\d{2})\s*(?:-|~|–|—|至|到)\s*\d{1,2}:\d{2}$", _A)
_BARE_WEEKDAY = re.compile(r"^(?:(?:周|星期|礼拜)[一二三四五六日天]|(?:" + _alternatives(_EN_WEEKDAY) + r")(?![a-z]))", _A)


def parse_held_at(text: str, now: datetime) -> datetime | None:
    """When something already happened (a meeting's 时间), read as `parse_when` reads a deadline but
    looking back: a weekday alone is the latest one (`周三` typed on Friday is two days ago, not next
    week's), a time alone is today's, and a time range (`14:00-15:00`) is its start."""
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        return None
    s = _TIME_RANGE_END.sub(r"\1", text.translate(_NORMALISE).strip().lower())
    found = parse_when(s, now) or parse_when(f"{now.month}-{now.day} {s}", now)  # a time alone: today's
    if found is not None and _BARE_WEEKDAY.match(s) and found.date() > now.date():
        found -= timedelta(days=7)
    return found


def format_when(dt: datetime, now: datetime) -> str:
    """`12-10 18:00` within `now`'s year, else `2027-01-05 18:00`; shown in `now`'s zone."""
    if dt.tzinfo is not None and now.tzinfo is not None:
        dt = dt.astimezone(now.tzinfo)
    hm = f"{dt.hour:02d}:{dt.minute:02d}"
    if dt.year == now.year:
        return f"{dt.month:02d}-{dt.day:02d} {hm}"
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {hm}"


# --- dates ------------------------------------------------------------------------------------------

def _parse_date(s: str, today: date) -> tuple[date, str] | None:
    """The date at the start of `s` and the text after it, or None."""
    for pattern, build in _DATE_FORMS:
        m = pattern.match(s)
        if m is not None:
            try:
                day = build(m, today)
            except (ValueError, OverflowError):
                return None
            return None if day is None else (day, s[m.end():])
    return None


def _year_month_day(m: re.Match[str], today: date) -> date:
    return date(int(m["y"]), int(m["m"]), int(m["d"]))


def _month_day(m: re.Match[str], today: date) -> date | None:
    """The occurrence of month-day nearest to today (the later one on a tie): a date a few days gone is
    that date, for the caller to refuse as past or to take as a start, never the same day next year."""
    month, day = int(m.group(1)), int(m.group(2))
    candidates = []
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:  # 02-30, 13-01, or 02-29 in a common year
            continue
    if not candidates:
        return None
    return min(candidates, key=lambda d: (abs((d - today).days), d < today))


def _day_word(m: re.Match[str], today: date) -> date:
    return today + timedelta(days=_DAY_WORDS[m.group(0)])


def _in_days(m: re.Match[str], today: date) -> date:
    n = m.group(1)
    return today + timedelta(days=int(n) if n.isdigit() else _CN_SMALL_NUMBER[n])


def _weekday(which: str | None, weekday: int, today: date) -> date:
    """`which` None: next occurrence (today included); "this": in this Mon-Sun week; "next": next week's;
    "last": last week's."""
    if which is None:
        return today + timedelta(days=(weekday - today.weekday()) % 7)
    monday = today - timedelta(days=today.weekday())
    return monday + timedelta(days=weekday + {"next": 7, "last": -7}.get(which, 0))


def _weekday_cn(m: re.Match[str], today: date) -> date:
    which = {"本": "this", "这": "this", "下": "next", "上": "last"}.get(m.group(1) or "")
    return _weekday(which, _CN_WEEKDAY[m.group(2)], today)


def _weekday_en(m: re.Match[str], today: date) -> date:
    return _weekday(m.group(1), _EN_WEEKDAY[m.group(2)], today)


_DATE_FORMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], date], date | None]], ...] = (
    (_YMD_SEP, _year_month_day),
    (_YMD_CN, _year_month_day),
    (_MD_SEP, _month_day),
    (_MD_CN, _month_day),
    (_DAY_WORD, _day_word),
    (_IN_DAYS_CN, _in_days),
    (_IN_DAYS_EN, _in_days),
    (_WEEKDAY_CN, _weekday_cn),
    (_WEEKDAY_EN, _weekday_en),
)


# --- times ------------------------------------------------------------------------------------------

def _parse_time(s: str, default: time) -> tuple[int, int, int] | None:
    """(hour, minute, days to add) for the time text `s`; `default` when `s` is empty; None if invalid."""
    if not s:
        return default.hour, default.minute, 0
    if m := _TIME_COLON.fullmatch(s):
        period, hour, minute, ampm = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if period and ampm:
            return None
    elif m := _TIME_CN.fullmatch(s):
        period, hour, ampm = m.group(1), int(m.group(2)), None
        minute = 30 if m.group(3) else int(m.group(4) or 0)
    elif m := _TIME_AMPM.fullmatch(s):
        period, hour, minute, ampm = None, int(m.group(1)), 0, m.group(2)
    else:
        return None
    if minute > 59:
        return None
    if ampm:
        if not 1 <= hour <= 12:
            return None
        return hour % 12 + (12 if ampm == "pm" else 0), minute, 0
    if period:
        return _with_period(period, hour, minute)
    if hour == 24 and minute == 0:  # 24:00, 24点: the midnight that ends the day
        return 0, 0, 1
    return (hour, minute, 0) if hour <= 23 else None


def _with_period(period: str, hour: int, minute: int) -> tuple[int, int, int] | None:
    """A 12- or 24-hour clock hour read with a Chinese time of day (`下午3点` -> 15:00)."""
    if period == "凌晨":  # the small hours: 凌晨12点 is the midnight that starts the day, not noon
        return (hour % 12, minute, 0) if hour <= 12 else None
    if period in ("早上", "早晨", "上午"):
        return (hour, minute, 0) if hour <= 12 else None
    if period == "中午":
        if 1 <= hour <= 2:
            return hour + 12, minute, 0
        return (hour, minute, 0) if 11 <= hour <= 13 else None
    if period in ("下午", "傍晚"):
        if 1 <= hour <= 11:
            return hour + 12, minute, 0
        return (hour, minute, 0) if 12 <= hour <= 23 else None
    # 晚上: evening hours only; 晚上12点 is the midnight that ends the day.
    if 6 <= hour <= 11:
        return hour + 12, minute, 0
    if hour == 12:
        return 0, minute, 1
    return (hour, minute, 0) if 18 <= hour <= 23 else None
