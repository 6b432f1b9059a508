"""Deadline text -> aware datetime: every accepted form, the refusals, and never an exception."""

from __future__ import annotations

import doctest
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collabbot.bot import dates
from collabbot.bot.dates import MAX_CHARS, format_when, parse_when

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=TZ)  # a Tuesday
LATE_DEC = datetime(2026, 12, 28, 10, 0, tzinfo=TZ)  # a Monday, for the year rollover


def at(y: int, mo: int, d: int, h: int = 18, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=TZ)


def check(text: str, now: datetime, expected: datetime | None) -> None:
    got = parse_when(text, now)
    assert got == expected, text
    if got is not None:
        assert got.tzinfo is now.tzinfo
        assert got.second == 0 and got.microsecond == 0


ABSOLUTE = [
    ("2026-12-01", at(2026, 12, 1)),
    ("2026/12/01", at(2026, 12, 1)),
    ("2026.12.01", at(2026, 12, 1)),
    ("2026-1-5", at(2026, 1, 5)),  # in the past: returned anyway, the caller decides
    ("2027/3/9", at(2027, 3, 9)),
    ("2026年12月1日", at(2026, 12, 1)),
    ("2026年12月1号", at(2026, 12, 1)),
    ("2027年1月20日", at(2027, 1, 20)),
    ("2026年12月1", at(2026, 12, 1)),
    ("12-01", at(2026, 12, 1)),  # today is not before today
    ("12-10", at(2026, 12, 10)),
    ("12/1", at(2026, 12, 1)),
    ("12.10", at(2026, 12, 10)),  # as people type it on a phone
    ("12-10前", at(2026, 12, 10)),  # "by 12-10"
    ("周五。", at(2026, 12, 4)),
    ("12/31", at(2026, 12, 31)),
    ("12月1日", at(2026, 12, 1)),
    ("12月1号", at(2026, 12, 1)),
    ("12月1", at(2026, 12, 1)),
    ("12月25日", at(2026, 12, 25)),
    ("11-30", at(2026, 11, 30)),  # yesterday, not next year: the caller refuses a past deadline
    ("06-01", at(2027, 6, 1)),  # about half a year either way: the one to come
    ("08-01", at(2026, 8, 1)),  # nearer as gone than as to come
    ("01-05", at(2027, 1, 5)),
    ("1月5日", at(2027, 1, 5)),
    ("2/28", at(2027, 2, 28)),
    ("  12-10  ", at(2026, 12, 10)),
    ("\u300012-10\t", at(2026, 12, 10)),
    ("１２－１０", at(2026, 12, 10)),
    ("１２／１０", at(2026, 12, 10)),
    ("２０２６－１２－２０", at(2026, 12, 20)),
    ("１２月１０日", at(2026, 12, 10)),
]

RELATIVE = [
    ("今天", at(2026, 12, 1)),
    ("今日", at(2026, 12, 1)),
    ("today", at(2026, 12, 1)),
    ("TODAY", at(2026, 12, 1)),
    ("明天", at(2026, 12, 2)),
    ("明日", at(2026, 12, 2)),
    ("tomorrow", at(2026, 12, 2)),
    ("Tomorrow", at(2026, 12, 2)),
    ("后天", at(2026, 12, 3)),
    ("大后天", at(2026, 12, 4)),
    ("3天后", at(2026, 12, 4)),
    ("3 天后", at(2026, 12, 4)),
    ("10天之后", at(2026, 12, 11)),
    ("0天后", at(2026, 12, 1)),
    ("两天后", at(2026, 12, 3)),
    ("三天后", at(2026, 12, 4)),
    ("31天后", at(2027, 1, 1)),
    ("in 3 days", at(2026, 12, 4)),
    ("In 1 day", at(2026, 12, 2)),
    ("in 10 days", at(2026, 12, 11)),
    ("３天后", at(2026, 12, 4)),
]

# NOW is Tuesday 12-01: this week is Mon 11-30 .. Sun 12-06, next week Mon 12-07 .. Sun 12-13.
WEEKDAYS = [
    ("周一", at(2026, 12, 7)),
    ("周二", at(2026, 12, 1)),  # today is that weekday: today
    ("周三", at(2026, 12, 2)),
    ("周四", at(2026, 12, 3)),
    ("周五", at(2026, 12, 4)),
    ("周六", at(2026, 12, 5)),
    ("周日", at(2026, 12, 6)),
    ("周天", at(2026, 12, 6)),
    ("星期一", at(2026, 12, 7)),
    ("星期五", at(2026, 12, 4)),
    ("星期日", at(2026, 12, 6)),
    ("星期天", at(2026, 12, 6)),
    ("礼拜一", at(2026, 12, 7)),
    ("礼拜三", at(2026, 12, 2)),
    ("礼拜天", at(2026, 12, 6)),
    ("本周一", at(2026, 11, 30)),  # already past: still returned
    ("本周五", at(2026, 12, 4)),
    ("这周五", at(2026, 12, 4)),
    ("这周日", at(2026, 12, 6)),
    ("本星期三", at(2026, 12, 2)),
    ("这个礼拜六", at(2026, 12, 5)),
    ("下周一", at(2026, 12, 7)),
    ("下周二", at(2026, 12, 8)),
    ("下周五", at(2026, 12, 11)),
    ("下周日", at(2026, 12, 13)),
    ("下星期一", at(2026, 12, 7)),
    ("下礼拜一", at(2026, 12, 7)),
    ("下个星期三", at(2026, 12, 9)),
    ("mon", at(2026, 12, 7)),
    ("tue", at(2026, 12, 1)),
    ("wed", at(2026, 12, 2)),
    ("thu", at(2026, 12, 3)),
    ("fri", at(2026, 12, 4)),
    ("sat", at(2026, 12, 5)),
    ("sun", at(2026, 12, 6)),
    ("monday", at(2026, 12, 7)),
    ("Tuesday", at(2026, 12, 1)),
    ("wednesday", at(2026, 12, 2)),
    ("THURSDAY", at(2026, 12, 3)),
    ("Friday", at(2026, 12, 4)),
    ("saturday", at(2026, 12, 5)),
    ("sunday", at(2026, 12, 6)),
    ("next mon", at(2026, 12, 7)),
    ("next monday", at(2026, 12, 7)),
    ("Next Friday", at(2026, 12, 11)),
    ("next  sun", at(2026, 12, 13)),
    ("this fri", at(2026, 12, 4)),
    ("this monday", at(2026, 11, 30)),
]

TIMES = [
    ("12-10 18:00", at(2026, 12, 10, 18, 0)),
    ("12-10 9:30", at(2026, 12, 10, 9, 30)),
    ("12-10 09:05", at(2026, 12, 10, 9, 5)),
    ("12-10 0:00", at(2026, 12, 10, 0, 0)),
    ("12-10 23:59", at(2026, 12, 10, 23, 59)),
    ("2026-12-10 18:00", at(2026, 12, 10, 18, 0)),
    ("2026/12/10 8:15", at(2026, 12, 10, 8, 15)),
    ("12月10日18:00", at(2026, 12, 10, 18, 0)),
    ("12月10号 18点", at(2026, 12, 10, 18, 0)),
    ("明天18:00", at(2026, 12, 2, 18, 0)),
    ("明天 9:30", at(2026, 12, 2, 9, 30)),
    ("明天18点", at(2026, 12, 2, 18, 0)),
    ("明天18点半", at(2026, 12, 2, 18, 30)),
    ("明天 9点30分", at(2026, 12, 2, 9, 30)),
    ("明天9点30", at(2026, 12, 2, 9, 30)),
    ("明天9点5分", at(2026, 12, 2, 9, 5)),
    ("明天10点整", at(2026, 12, 2, 10, 0)),
    ("明天18时", at(2026, 12, 2, 18, 0)),
    ("明天下午3点", at(2026, 12, 2, 15, 0)),
    ("明天 下午3点半", at(2026, 12, 2, 15, 30)),
    ("明天下午3:30", at(2026, 12, 2, 15, 30)),
    ("明天下午15点", at(2026, 12, 2, 15, 0)),
    ("明天上午10点", at(2026, 12, 2, 10, 0)),
    ("明天早上8点", at(2026, 12, 2, 8, 0)),
    ("明天凌晨2点", at(2026, 12, 2, 2, 0)),
    ("明天中午12点", at(2026, 12, 2, 12, 0)),
    ("明天中午1点", at(2026, 12, 2, 13, 0)),
    ("明天傍晚6点", at(2026, 12, 2, 18, 0)),
    ("明天晚上8点", at(2026, 12, 2, 20, 0)),
    ("明天晚上20:30", at(2026, 12, 2, 20, 30)),
    ("明天晚上12点", at(2026, 12, 3, 0, 0)),  # the midnight that ends tomorrow
    ("明天凌晨12点", at(2026, 12, 2, 0, 0)),  # the small hours: the midnight that starts tomorrow, not noon
    ("明天 24:00", at(2026, 12, 3, 0, 0)),  # "by the end of tomorrow"
    ("明天24点", at(2026, 12, 3, 0, 0)),
    ("tomorrow 3pm", at(2026, 12, 2, 15, 0)),
    ("tomorrow 10am", at(2026, 12, 2, 10, 0)),
    ("tomorrow 3:30pm", at(2026, 12, 2, 15, 30)),
    ("tomorrow 3:30 PM", at(2026, 12, 2, 15, 30)),
    ("tomorrow 12am", at(2026, 12, 2, 0, 0)),
    ("tomorrow 12pm", at(2026, 12, 2, 12, 0)),
    ("fri 3pm", at(2026, 12, 4, 15, 0)),
    ("next monday 10am", at(2026, 12, 7, 10, 0)),
    ("周五下午3点", at(2026, 12, 4, 15, 0)),
    ("下周一 上午10点", at(2026, 12, 7, 10, 0)),
    ("本周五18:00", at(2026, 12, 4, 18, 0)),
    ("3天后 10:00", at(2026, 12, 4, 10, 0)),
    ("in 2 days 9am", at(2026, 12, 3, 9, 0)),
    ("１２－１０ １８：００", at(2026, 12, 10, 18, 0)),
    ("明天１８：３０", at(2026, 12, 2, 18, 30)),
    ("明天１８点", at(2026, 12, 2, 18, 0)),
]

# NOW is Monday 12-28: this week is Mon 12-28 .. Sun 01-03, next week Mon 01-04 .. Sun 01-10.
ROLLOVER = [
    ("01-05", at(2027, 1, 5)),
    ("1/5", at(2027, 1, 5)),
    ("1月5日", at(2027, 1, 5)),
    ("1月5号 9:00", at(2027, 1, 5, 9, 0)),
    ("12-31", at(2026, 12, 31)),
    ("12-28", at(2026, 12, 28)),
    ("12-27", at(2026, 12, 27)),  # yesterday (a deadline there is refused as past), not next December
    ("2026-12-27", at(2026, 12, 27)),
    ("周一", at(2026, 12, 28)),
    ("周五", at(2027, 1, 1)),
    ("本周日", at(2027, 1, 3)),
    ("下周一", at(2027, 1, 4)),
    ("next sun", at(2027, 1, 10)),
    ("后天", at(2026, 12, 30)),
    ("大后天", at(2026, 12, 31)),
    ("5天后", at(2027, 1, 2)),
]

INVALID = [
    "",
    "   ",
    "abc",
    "明白",
    "下周八",
    "周八",
    "星期",
    "13-01",
    "02-30",
    "00-10",
    "12-00",
    "12-32",
    "2026-02-30",
    "2026-13-01",
    "2026年2月30日",
    "2026-12/01",  # mixed separators
    "12.1.1",
    "12-01 25:00",
    "12-01 24:01",
    "12-01 18:60",
    "12-01 18:5",
    "12-0118:00",
    "明天 25点",
    "明天下午13点半分",
    "明天上午13点",
    "明天晚上3点",
    "明天中午5点",
    "明天 13pm",
    "明天 0am",
    "明天 下午3pm",
    "明天 下午",
    "明天 abc",
    "明天明天",
    "12-10 18:00 18:00",
    "18:00",  # a time without a date
    "下午3点",
    "3pm",
    "in days",
    "in 3",
    "mond",
    "next",
    "next week",
    "十五天后",
    "12345天后",
    "9999-12-31 晚上12点",  # would roll past the last representable day
    "0000-01-01",
    "١٢-١٠",  # Arabic-Indic digits are not normalised
    "x" * (MAX_CHARS + 1),
    "12-10" + " " * MAX_CHARS,
    "1" * 10_000,
    "明天" * 5_000,
    "\x00\x01\xff\ud800",
]


@pytest.mark.parametrize("text, expected", ABSOLUTE)
def test_absolute_dates(text: str, expected: datetime) -> None:
    check(text, NOW, expected)


@pytest.mark.parametrize("text, expected", RELATIVE)
def test_relative_days(text: str, expected: datetime) -> None:
    check(text, NOW, expected)


@pytest.mark.parametrize("text, expected", WEEKDAYS)
def test_weekdays(text: str, expected: datetime) -> None:
    check(text, NOW, expected)


@pytest.mark.parametrize("text, expected", TIMES)
def test_dates_with_times(text: str, expected: datetime) -> None:
    check(text, NOW, expected)


@pytest.mark.parametrize("text, expected", ROLLOVER)
def test_year_rollover(text: str, expected: datetime) -> None:
    check(text, LATE_DEC, expected)


@pytest.mark.parametrize("text", INVALID, ids=lambda t: repr(t[:20]) + (f"..{len(t)}" if len(t) > 20 else ""))
def test_not_a_date(text: str) -> None:
    assert parse_when(text, NOW) is None


@pytest.mark.parametrize("text, now, expected", [
    ("02-29", NOW, None),  # neither 2026 nor 2027 has one
    ("02-29", datetime(2027, 3, 1, tzinfo=TZ), at(2028, 2, 29)),
    ("02-29", datetime(2028, 2, 1, tzinfo=TZ), at(2028, 2, 29)),
    ("2028-02-29", NOW, at(2028, 2, 29)),
    ("2027-02-29", NOW, None),
])
def test_leap_day(text: str, now: datetime, expected: datetime | None) -> None:
    check(text, now, expected)


def test_default_time_is_used_without_a_time_and_trimmed_to_minutes() -> None:
    assert parse_when("明天", NOW, default_time=time(9, 0)) == at(2026, 12, 2, 9, 0)
    assert parse_when("明天", NOW, default_time=time(23, 59, 59, 999)) == at(2026, 12, 2, 23, 59)
    assert parse_when("明天 10:00", NOW, default_time=time(9, 0)) == at(2026, 12, 2, 10, 0)


def test_result_is_in_the_zone_of_now() -> None:
    utc_now = NOW.astimezone(UTC)  # 01:00 UTC, the same day
    got = parse_when("12-10 18:00", utc_now)
    assert got == datetime(2026, 12, 10, 18, 0, tzinfo=UTC)
    assert got is not None and got.tzinfo is UTC
    ny = ZoneInfo("America/New_York")
    late = datetime(2026, 12, 1, 23, 0, tzinfo=ny)  # already 12-02 in Shanghai; still 12-01 here
    assert parse_when("今天", late) == datetime(2026, 12, 1, 18, 0, tzinfo=ny)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_when("明天", datetime(2026, 12, 1, 9, 0))


def test_today_is_returned_even_when_its_default_time_has_passed() -> None:
    evening = datetime(2026, 12, 1, 20, 0, tzinfo=TZ)
    assert parse_when("今天", evening) == at(2026, 12, 1)
    assert parse_when("12-01", evening) == at(2026, 12, 1)
    assert parse_when("周二", evening) == at(2026, 12, 1)


@pytest.mark.parametrize("dt, now, expected", [
    (at(2026, 12, 10), NOW, "12-10 18:00"),
    (at(2026, 1, 2, 9, 5), NOW, "01-02 09:05"),
    (at(2027, 1, 5), NOW, "2027-01-05 18:00"),
    (at(2027, 1, 5), LATE_DEC, "2027-01-05 18:00"),
    (at(2025, 12, 31, 23, 59), NOW, "2025-12-31 23:59"),
    (datetime(2026, 12, 10, 10, 0, tzinfo=UTC), NOW, "12-10 18:00"),  # shown in now's zone
    (datetime(2026, 12, 31, 16, 30, tzinfo=UTC), NOW, "2027-01-01 00:30"),
])
def test_format_when(dt: datetime, now: datetime, expected: str) -> None:
    assert format_when(dt, now) == expected


def test_module_docstring_examples() -> None:
    result = doctest.testmod(dates)
    assert result.attempted > 0 and result.failed == 0


ALPHABET = ("0123456789０１２３-/.:：－／ amptodyinxsnextwfrhu"
            "年月日号点时半分整上下午中晚凌早周星期礼拜一二三四五六日天本这个今明后大之")


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(), st.text(alphabet=ALPHABET, max_size=MAX_CHARS + 5)),
       offset=st.integers(min_value=0, max_value=3 * 366))
def test_never_raises_and_returns_none_or_aware(text: str, offset: int) -> None:
    now = NOW + timedelta(days=offset)
    got = parse_when(text, now)
    assert got is None or (got.tzinfo is now.tzinfo and got.utcoffset() is not None
                           and got.second == 0 and got.microsecond == 0)


@settings(max_examples=200, deadline=None)
@given(day=st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
       hour=st.integers(0, 23), minute=st.integers(0, 59))
def test_full_dates_round_trip(day: date, hour: int, minute: int) -> None:
    expected = datetime.combine(day, time(hour, minute), tzinfo=TZ)
    for text in (f"{day.year:04d}-{day.month:02d}-{day.day:02d} {hour:02d}:{minute:02d}",
                 f"{day.year:04d}年{day.month}月{day.day}日{hour}点{minute}分"):
        assert parse_when(text, NOW) == expected, text


def _valid(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


@settings(max_examples=300, deadline=None)
@given(offset=st.integers(min_value=0, max_value=3 * 366), month=st.integers(1, 12), day=st.integers(1, 31))
def test_month_day_is_the_nearest_occurrence(offset: int, month: int, day: int) -> None:
    """No other occurrence of the month-day is nearer to today; of two as near, the one to come."""
    now = NOW + timedelta(days=offset)
    today = now.date()
    occurrences = [d for y in range(today.year - 2, today.year + 3) if (d := _valid(y, month, day)) is not None]
    got = parse_when(f"{month:02d}-{day:02d}", now)
    if got is None:
        assert not any(abs((d - today).days) <= 366 for d in occurrences)  # 02-29 with no leap year near
        return
    found = got.date()
    assert (found.month, found.day) == (month, day)
    for other in occurrences:
        assert abs((other - today).days) > abs((found - today).days) or other == found or (
            abs((other - today).days) == abs((found - today).days) and found > today)
