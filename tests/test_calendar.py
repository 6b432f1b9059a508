"""WorkCalendar: Chinese statutory holidays, config overrides and working-time arithmetic."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from collabbot.bot.calendar import WorkCalendar

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()
CAL_2027 = WorkCalendar.from_config({
    "extra_holidays": [f"2027-02-{day:02d}" for day in range(6, 13)],
    "extra_workdays": ["2027-02-14"],
})


def at(text: str, tz: ZoneInfo = SH) -> datetime:
    """'2026-09-30 17:30' as an aware datetime (Shanghai unless told)."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def d(text: str) -> date:
    return date.fromisoformat(text)


def days(first: str, last: str) -> list[date]:
    start, end = d(first), d(last)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# --- days --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("day", days("2026-02-15", "2026-02-23") + days("2026-10-01", "2026-10-07"))
def test_statutory_holidays_2026_are_off(day: date) -> None:
    assert not CAL.is_workday(day)


@pytest.mark.parametrize("day", ["2026-02-14", "2026-02-28", "2026-09-20", "2026-10-10"])
def test_make_up_weekend_days_2026_are_workdays(day: str) -> None:
    assert d(day).weekday() >= 5
    assert CAL.is_workday(d(day))


@pytest.mark.parametrize(("day", "expected"), [
    ("2026-02-13", True),   # Friday before the Spring Festival
    ("2026-02-24", True),   # back to work
    ("2026-03-01", False),  # an ordinary Sunday
    ("2026-09-30", True),   # eve of National Day
    ("2026-10-08", True),
    ("2026-10-11", False),  # Sunday after the make-up Saturday
])
def test_days_around_2026_holidays(day: str, expected: bool) -> None:
    assert CAL.is_workday(d(day)) is expected


@pytest.mark.parametrize(("day", "expected"), [
    *((day, False) for day in days("2027-02-06", "2027-02-12")),  # listed holidays, Mon-Fri among them
    ("2027-02-13", False),  # Saturday, not listed
    ("2027-02-14", True),   # listed make-up Sunday
    ("2027-02-15", True),   # Monday
    ("2027-02-05", True),   # Friday
    ("2027-10-01", True),   # a Friday: without data 2027 is plain Mon-Fri
    ("2027-10-02", False),  # Saturday
])
def test_2027_comes_from_config_lists_else_monday_to_friday(day: date | str, expected: bool) -> None:
    day = d(day) if isinstance(day, str) else day
    assert CAL_2027.is_workday(day) is expected


def test_2027_without_config_is_monday_to_friday() -> None:
    week = days("2027-02-08", "2027-02-14")
    assert [CAL.is_workday(day) for day in week] == [True] * 5 + [False] * 2


def test_config_lists_override_package_data() -> None:
    cal = WorkCalendar(extra_holidays=frozenset({d("2026-03-02")}),
                       extra_workdays=frozenset({d("2026-10-05")}))
    assert not cal.is_workday(d("2026-03-02"))
    assert cal.is_workday(d("2026-10-05"))
    assert cal.is_workday(d("2026-03-03"))


def test_holiday_data_coverage() -> None:
    assert CAL.has_holiday_data(2026)
    assert not CAL.has_holiday_data(2027)
    assert CAL_2027.has_holiday_data(2027)
    assert not CAL_2027.has_holiday_data(2028)


def test_coverage_warning_names_next_year_only() -> None:
    warnings = CAL.coverage_warnings(d("2026-11-25"))
    assert len(warnings) == 1
    assert "2027" in warnings[0] and "2026" not in warnings[0]
    assert "extra_holidays" in warnings[0] and "extra_workdays" in warnings[0]


def test_coverage_warnings_silenced_by_a_listed_holiday() -> None:
    cal = WorkCalendar.from_config({"extra_holidays": ["2027-01-01"]})
    assert cal.coverage_warnings(d("2026-11-25")) == []


def test_coverage_warnings_for_both_years() -> None:
    warnings = CAL_2027.coverage_warnings(d("2028-03-01"))
    assert [("2028" in w, "2029" in w) for w in warnings] == [(True, False), (False, True)]


@pytest.mark.parametrize(("day", "expected"), [
    ("2026-11-25", "2026-11-27"),  # an ordinary week: Friday
    ("2026-11-29", "2026-11-27"),  # Sunday belongs to the same Mon-Sun week
    ("2026-10-01", "2026-09-30"),  # Thu/Fri are National Day; Wednesday is the last workday
    ("2026-10-04", "2026-09-30"),  # Sunday of that week, itself a holiday
    ("2026-10-09", "2026-10-09"),  # the week after: Friday, though Saturday 10-10 is a make-up day
    ("2026-02-11", "2026-02-13"),  # Saturday 02-14 is a make-up day; Friday still wins
    ("2026-02-18", None),          # Spring Festival week: nothing Mon-Fri
    ("2026-02-28", "2026-02-27"),  # make-up Saturday 02-28 is not the week's last workday
    ("2027-02-10", None),          # config holidays cover the whole week
])
def test_last_workday_of_week(day: str, expected: str | None) -> None:
    cal = CAL_2027 if day.startswith("2027") else CAL
    assert cal.last_workday_of_week(d(day)) == (d(expected) if expected else None)


@pytest.mark.parametrize(("day", "expected"), [
    ("2026-09-30", "2026-10-08"),
    ("2026-10-09", "2026-10-10"),  # make-up Saturday
    ("2026-02-13", "2026-02-14"),
    ("2026-02-14", "2026-02-24"),
    ("2026-11-27", "2026-11-30"),
    ("2026-12-31", "2027-01-01"),  # 2027 without data: a Friday
])
def test_next_workday(day: str, expected: str) -> None:
    assert CAL.next_workday(d(day)) == d(expected)


# --- working time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "expected"), [
    ("2026-11-30 09:00", True),
    ("2026-11-30 11:59:59", True),
    ("2026-11-30 12:00", False),   # periods are [start, end)
    ("2026-11-30 12:30", False),
    ("2026-11-30 13:30", True),
    ("2026-11-30 18:00", False),
    ("2026-11-30 08:59", False),
    ("2026-11-29 10:00", False),   # Sunday
    ("2026-10-02 10:00", False),   # National Day
    ("2026-10-10 10:00", True),    # make-up Saturday
])
def test_is_working_time(moment: str, expected: bool) -> None:
    assert CAL.is_working_time(at(moment)) is expected


def test_is_working_time_accepts_any_zone() -> None:
    assert CAL.is_working_time(at("2026-11-30 02:00", ZoneInfo("UTC")))  # 10:00 in Shanghai
    assert not CAL.is_working_time(at("2026-11-30 10:00", ZoneInfo("UTC")))  # 18:00 in Shanghai


@pytest.mark.parametrize(("moment", "expected"), [
    ("2026-11-29 03:00", "2026-11-30 09:00"),  # Sunday night -> Monday morning
    ("2026-11-30 12:30", "2026-11-30 13:30"),  # lunch
    ("2026-11-30 12:00", "2026-11-30 13:30"),
    ("2026-11-30 10:15", "2026-11-30 10:15"),  # already working time
    ("2026-11-30 18:00", "2026-12-01 09:00"),
    ("2026-09-30 19:00", "2026-10-08 09:00"),  # over National Day
    ("2026-10-09 18:30", "2026-10-10 09:00"),  # make-up Saturday
])
def test_next_working_moment(moment: str, expected: str) -> None:
    result = CAL.next_working_moment(at(moment))
    assert result == at(expected)
    assert result.tzinfo == SH


def test_next_working_moment_converts_other_zones() -> None:
    result = CAL.next_working_moment(at("2026-11-28 19:00", ZoneInfo("UTC")))  # Sunday 03:00 in Shanghai
    assert result == at("2026-11-30 09:00")
    assert result.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(("start", "hours", "expected"), [
    ("2026-09-30 17:30", 2, "2026-10-08 10:30"),   # 0.5h on 09-30, holiday week, 1.5h on 10-08
    ("2026-09-30 17:00", 2, "2026-10-08 10:00"),
    ("2026-10-08 10:30", 2, "2026-10-08 14:00"),   # the worked example: second nag, lunch not counted
    ("2026-10-08 14:00", 2, "2026-10-08 16:00"),   # the worked example: escalation
    ("2026-11-30 11:00", 2, "2026-11-30 14:30"),   # across lunch
    ("2026-11-30 10:00", 2, "2026-11-30 12:00"),   # ends exactly at a period's end: stays there
    ("2026-11-30 16:00", 2, "2026-11-30 18:00"),
    ("2026-11-30 16:00", 2.5, "2026-12-01 09:30"),
    ("2026-11-29 03:00", 2, "2026-11-30 11:00"),   # outside working time: counts from the next period
    ("2026-11-30 12:10", 1, "2026-11-30 14:30"),   # from lunch
    ("2026-11-30 12:10", 0, "2026-11-30 13:30"),
    ("2026-11-30 10:00", 0, "2026-11-30 10:00"),
    ("2026-11-30 09:00", 7.5, "2026-11-30 18:00"),  # one whole working day
    ("2026-11-27 17:00", 8.5, "2026-11-30 18:00"),  # Fri 1h + Mon 7.5h: the end of Monday, not Tuesday
    ("2026-11-27 17:00", 8.75, "2026-12-01 09:15"),
    ("2026-02-13 17:00", 2, "2026-02-14 10:00"),   # make-up Saturday counts
    ("2026-02-14 17:00", 2, "2026-02-24 10:00"),   # then the Spring Festival
])
def test_add_working(start: str, hours: float, expected: str) -> None:
    result = CAL.add_working(at(start), timedelta(hours=hours))
    assert result == at(expected)
    assert result.tzinfo == SH


def test_add_working_from_another_zone() -> None:
    start = at("2026-09-30 09:30", ZoneInfo("UTC"))  # 17:30 in Shanghai
    result = CAL.add_working(start, timedelta(hours=2))
    assert result == at("2026-10-08 10:30")
    assert result.tzinfo == SH


def test_add_working_across_years_into_config_data() -> None:
    # 2027-02-05 Fri 17:00: 1h that day, 02-06..02-13 off, Sunday 02-14 is a listed make-up day.
    assert CAL_2027.add_working(at("2027-02-05 17:00"), timedelta(hours=2)) == at("2027-02-14 10:00")


def test_add_working_large_delta_matches_working_between() -> None:
    start = at("2026-01-05 09:00")
    delta = timedelta(hours=7.5 * 240)  # about a working year; must not walk minute by minute
    end = CAL.add_working(start, delta)
    assert CAL.working_between(start, end) == delta
    assert CAL.is_working_time(end - timedelta(seconds=1))


@pytest.mark.parametrize("start", [
    "2026-09-30 17:30", "2026-11-30 11:00", "2026-11-29 03:00", "2026-02-13 12:45", "2026-12-31 17:59",
])
@pytest.mark.parametrize("minutes", [0, 1, 30, 150, 450, 451, 3000])
def test_add_working_and_working_between_agree(start: str, minutes: int) -> None:
    begin = at(start)
    end = CAL.add_working(begin, timedelta(minutes=minutes))
    assert CAL.working_between(begin, end) == timedelta(minutes=minutes)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("2026-09-30 17:30", "2026-10-08 10:30", timedelta(hours=2)),
    ("2026-11-30 11:00", "2026-11-30 14:30", timedelta(hours=2)),
    ("2026-11-30 00:00", "2026-12-01 00:00", timedelta(hours=7.5)),
    ("2026-11-28 00:00", "2026-11-30 00:00", timedelta(0)),         # weekend
    ("2026-10-01 00:00", "2026-10-08 00:00", timedelta(0)),         # National Day
    ("2026-11-30 12:00", "2026-11-30 13:30", timedelta(0)),         # lunch
    ("2026-11-30 11:30", "2026-11-30 11:30", timedelta(0)),
    ("2026-11-30 14:30", "2026-11-30 11:00", timedelta(0)),         # b before a
    ("2026-11-23 00:00", "2026-11-30 00:00", timedelta(hours=37.5)),  # an ordinary week
])
def test_working_between(a: str, b: str, expected: timedelta) -> None:
    assert CAL.working_between(at(a), at(b)) == expected


def test_working_between_mixed_zones() -> None:
    a = at("2026-11-30 03:00", ZoneInfo("UTC"))  # 11:00 in Shanghai
    assert CAL.working_between(a, at("2026-11-30 14:30")) == timedelta(hours=2)


@pytest.mark.parametrize("call", [
    lambda: CAL.is_working_time(datetime(2026, 11, 30, 10, 0)),
    lambda: CAL.next_working_moment(datetime(2026, 11, 30, 10, 0)),
    lambda: CAL.add_working(datetime(2026, 11, 30, 10, 0), timedelta(hours=1)),
    lambda: CAL.working_between(datetime(2026, 11, 30, 10, 0), at("2026-11-30 12:00")),
    lambda: CAL.add_working(at("2026-11-30 10:00"), timedelta(hours=-1)),
])
def test_naive_datetimes_and_negative_deltas_are_rejected(call) -> None:
    with pytest.raises(ValueError):
        call()


# --- other zones and hours ---------------------------------------------------------------------------


def test_custom_hours_and_zone_with_daylight_saving() -> None:
    cal = WorkCalendar.from_config({"timezone": "Europe/Berlin", "working_hours": ["09:00-17:00"]})
    assert cal.periods == ((time(9), time(17)),)
    # Friday 2026-03-27 16:00 CET; clocks go forward on Sunday 03-29; Monday is CEST.
    result = cal.add_working(at("2026-03-27 16:00", cal.tz), timedelta(hours=2))
    assert result == at("2026-03-30 10:00", cal.tz)
    assert result.utcoffset() == timedelta(hours=2)
    assert cal.working_between(at("2026-03-27 16:00", cal.tz), result) == timedelta(hours=2)


# --- config ------------------------------------------------------------------------------------------


def test_from_config_defaults() -> None:
    assert WorkCalendar.from_config({}) == WorkCalendar()


def test_from_config_full() -> None:
    cal = WorkCalendar.from_config({
        "timezone": "Asia/Shanghai",
        "working_hours": ["08:30-12:00", "13:00-17:30"],
        "extra_holidays": ["2027-02-06", date(2027, 2, 7)],  # TOML may hand over real dates
        "extra_workdays": ["2027-02-14"],
    })
    assert cal.periods == ((time(8, 30), time(12)), (time(13), time(17, 30)))
    assert cal.extra_holidays == frozenset({d("2027-02-06"), d("2027-02-07")})
    assert cal.extra_workdays == frozenset({d("2027-02-14")})


@pytest.mark.parametrize(("section", "key"), [
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": 8}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"working_hours": "09:00-18:00"}, "working_hours"),
    ({"working_hours": []}, "working_hours"),
    ({"working_hours": ["9-12"]}, "working_hours"),
    ({"working_hours": ["09:00-25:00"]}, "working_hours"),
    ({"working_hours": ["12:00-09:00"]}, "working_hours"),
    ({"working_hours": ["09:00-09:00"]}, "working_hours"),
    ({"working_hours": ["09:00-12:00", "11:00-18:00"]}, "working_hours"),  # overlapping
    ({"working_hours": ["13:30-18:00", "09:00-12:00"]}, "working_hours"),  # unordered
    ({"extra_holidays": ["2027-02-30"]}, "extra_holidays"),
    ({"extra_holidays": ["06/02/2027"]}, "extra_holidays"),
    ({"extra_holidays": "2027-02-06"}, "extra_holidays"),
    ({"extra_workdays": [20270214]}, "extra_workdays"),
    ({"extra_holidays": ["2027-02-14"], "extra_workdays": ["2027-02-14"]}, "extra_workdays"),
    ({"workinghours": ["09:00-18:00"]}, "workinghours"),
])
def test_from_config_errors_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"^calendar\.{key}: \S"):
        WorkCalendar.from_config(section)


def test_constructor_rejects_bad_periods() -> None:
    with pytest.raises(ValueError):
        WorkCalendar(periods=())
    with pytest.raises(ValueError):
        WorkCalendar(periods=((time(13), time(18)), (time(9), time(12))))
