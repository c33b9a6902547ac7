"""Working days on China's calendar with 调休, pauses of the clock, and the fallback for years without data."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pytest

from services.evaluation.working_days import WorkingCalendar

LOGGER = "services.evaluation.working_days"


def test_national_day_2026_holidays_and_make_up_saturday() -> None:
    cal = WorkingCalendar()
    for day in range(1, 8):
        assert not cal.is_workday(date(2026, 10, day)), f"2026-10-{day:02d} is a National Day holiday"
    assert cal.is_workday(date(2026, 10, 8))
    assert cal.is_workday(date(2026, 10, 10))  # Saturday, 调休 working day
    assert not cal.is_workday(date(2026, 10, 11))  # Sunday
    assert cal.missing_years == set()
    assert cal.warnings == ()


def test_five_working_day_limit_across_national_day_2026_ends_on_october_12() -> None:
    cal = WorkingCalendar()
    # start 2026-09-29 (Tue), not counted
    # 09-30 Wed  day 1
    # 10-01..07  National Day holidays
    # 10-08 Thu  day 2
    # 10-09 Fri  day 3
    # 10-10 Sat  调休 working day, day 4
    # 10-11 Sun  not a working day
    # 10-12 Mon  day 5  -> due
    assert cal.add_working_days(date(2026, 9, 29), 5) == date(2026, 10, 12)
    assert cal.due_date(date(2026, 9, 29), 5) == date(2026, 10, 12)


def test_mid_autumn_2026_friday_is_a_holiday_and_sunday_before_is_a_make_up_day() -> None:
    # What chinese-calendar 1.11 says: 2026-09-25 (Fri) Mid-autumn holiday, 09-26/27 weekend off,
    # and Sunday 2026-09-20 is a 调休 working day (for National Day).
    cal = WorkingCalendar()
    assert not cal.is_workday(date(2026, 9, 25))
    assert not cal.is_workday(date(2026, 9, 26))
    assert not cal.is_workday(date(2026, 9, 27))
    assert not cal.is_workday(date(2026, 9, 19))  # Saturday
    assert cal.is_workday(date(2026, 9, 20))  # Sunday, 调休
    # Thu 09-24 + 1 working day skips the holiday Friday and the weekend
    assert cal.add_working_days(date(2026, 9, 24), 1) == date(2026, 9, 28)
    assert cal.working_days_between(date(2026, 9, 18), date(2026, 9, 21)) == 2  # 09-20 Sun, 09-21 Mon


def test_working_days_between_across_national_day_excludes_start_and_includes_end() -> None:
    cal = WorkingCalendar()
    # (09-30, 10-12]: 10-08, 10-09, 10-10 (调休), 10-12
    assert cal.working_days_between(date(2026, 9, 30), date(2026, 10, 12)) == 4
    # (09-29, 10-12]: additionally 09-30
    assert cal.working_days_between(date(2026, 9, 29), date(2026, 10, 12)) == 5
    assert cal.working_days_between(date(2026, 10, 1), date(2026, 10, 7)) == 0


def test_working_days_between_is_zero_when_end_is_not_after_start() -> None:
    cal = WorkingCalendar()
    assert cal.working_days_between(date(2026, 11, 3), date(2026, 11, 3)) == 0
    assert cal.working_days_between(date(2026, 11, 10), date(2026, 11, 3)) == 0


def test_adding_zero_working_days_returns_the_start_day_even_on_a_holiday() -> None:
    cal = WorkingCalendar()
    assert cal.add_working_days(date(2026, 11, 2), 0) == date(2026, 11, 2)
    assert cal.add_working_days(date(2026, 10, 3), 0) == date(2026, 10, 3)


def test_negative_limit_is_rejected() -> None:
    with pytest.raises(ValueError):
        WorkingCalendar().due_date(date(2026, 11, 2), -1)


def test_suspension_pauses_the_clock_and_pushes_the_due_date() -> None:
    cal = WorkingCalendar()
    start = date(2026, 11, 2)  # Monday
    # no pause: 11-03..06 (4), 11-09..13 (9), 11-16 (10)
    assert cal.due_date(start, 10) == date(2026, 11, 16)
    # pause (11-04, 11-06] stops the clock on 11-05 and 11-06: two working days later
    pauses = [(date(2026, 11, 4), date(2026, 11, 6))]
    assert cal.due_date(start, 10, pauses) == date(2026, 11, 18)
    # used on 11-09: unpaused 11-03, 04, 05, 06, 09 = 5; minus the 2 paused days
    today = date(2026, 11, 9)
    assert cal.working_days_used(start, today) == 5
    assert cal.working_days_used(start, today, pauses) == 3


def test_open_pause_without_today_raises_value_error() -> None:
    cal = WorkingCalendar()
    with pytest.raises(ValueError):
        cal.due_date(date(2026, 11, 2), 10, [(date(2026, 11, 4), None)])


def test_open_pause_with_today_extends_the_due_date_by_the_paused_days_so_far() -> None:
    cal = WorkingCalendar()
    start = date(2026, 11, 2)
    pauses = [(date(2026, 11, 4), None)]
    today = date(2026, 11, 9)
    # paused so far: 11-05, 11-06, 11-09 -> three working days after 11-16
    assert cal.due_date(start, 10, pauses, today=today) == date(2026, 11, 19)
    # used: 11-03, 11-04 only
    assert cal.working_days_used(start, today, pauses) == 2


def test_overlapping_pauses_are_not_double_counted() -> None:
    cal = WorkingCalendar()
    start = date(2026, 11, 2)
    pauses = [(date(2026, 11, 4), date(2026, 11, 6)), (date(2026, 11, 5), date(2026, 11, 10))]
    # union stops the clock on 11-05, 06, 09, 10: four working days
    assert cal.due_date(start, 10, pauses) == date(2026, 11, 20)
    # (11-02, 11-11]: 7 working days, 4 paused
    assert cal.working_days_used(start, date(2026, 11, 11), pauses) == 3
    # a pause nested inside another changes nothing
    nested = [*pauses, (date(2026, 11, 5), date(2026, 11, 6))]
    assert cal.due_date(start, 10, nested) == date(2026, 11, 20)


def test_pause_after_the_limit_was_reached_does_not_move_the_due_date() -> None:
    cal = WorkingCalendar()
    pauses = [(date(2026, 11, 20), date(2026, 11, 27))]
    assert cal.due_date(date(2026, 11, 2), 10, pauses) == date(2026, 11, 16)


def test_year_without_data_falls_back_to_monday_to_friday_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    cal = WorkingCalendar()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(5):
            assert cal.is_workday(date(2027, 1, 4))  # Monday
            assert not cal.is_workday(date(2027, 1, 9))  # Saturday
        assert cal.add_working_days(date(2027, 1, 8), 1) == date(2027, 1, 11)  # Fri + 1 -> Mon
        assert cal.working_days_between(date(2027, 1, 1), date(2027, 12, 31)) > 0
    assert cal.missing_years == {2027}
    assert len(cal.warnings) == 1
    assert "2027" in cal.warnings[0]
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(records) == 1
    assert "2027" in records[0].getMessage()
    assert "chinese-calendar" in records[0].getMessage()


def test_due_date_crossing_into_a_year_without_data_uses_the_fallback_there() -> None:
    cal = WorkingCalendar()
    # 2026-12-31 (Thu) is a working day; 2027-01-01 (Fri) has no data and counts as Mon–Fri
    assert cal.add_working_days(date(2026, 12, 30), 2) == date(2027, 1, 1)
    assert cal.missing_years == {2027}


def test_counting_by_year_tables_agrees_with_walking_day_by_day() -> None:
    """The look-up tables give what a day-by-day walk gives: random spans and pauses over 2025–2027."""
    import random

    calendar, rng = WorkingCalendar(), random.Random(7)
    base = date(2025, 1, 1)
    for _ in range(300):
        start = base + timedelta(days=rng.randint(0, 900))
        today = start + timedelta(days=rng.randint(0, 200))
        pauses = []
        for _ in range(rng.randint(0, 3)):
            begin = start + timedelta(days=rng.randint(-10, 150))
            pauses.append((begin, None if rng.random() < 0.2 else begin + timedelta(days=rng.randint(-2, 40))))
        walked = sum(1 for n in range(1, (today - start).days + 1)
                     if calendar.is_workday(d := start + timedelta(days=n))
                     and not any(a < d <= (b or today) for a, b in pauses))
        assert calendar.working_days_used(start, today, pauses) == walked, (start, today, pauses)
