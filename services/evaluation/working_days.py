"""Working-day arithmetic for statutory time limits (法定时限), on China's calendar with 调休.

Conventions (all dates are calendar dates, no times):

* Working days come from the ``chinese-calendar`` package: public holidays are not working days, and
  weekend days declared as make-up working days (调休) are. For a year the package has no data for,
  Monday–Friday are taken as working days and the gap is reported loudly: a log warning once per year,
  the year in ``WorkingCalendar.missing_years`` and a Chinese message in ``WorkingCalendar.warnings``.
* The start day is never counted. ``working_days_between(start, end)`` counts working days ``d`` with
  ``start < d <= end``; a limit of N working days starting on ``start`` is reached on the day the N-th
  working day after ``start`` has elapsed (``add_working_days``). A limit of 0 is reached on ``start``.
* A pause (suspension, 中止/补正 etc.) is a pair ``(from_day, to_day)``: the clock is stopped on working
  days ``d`` with ``from_day < d <= to_day``, i.e. the day the pause begins still counts and the day it
  ends does not. ``to_day`` ``None`` means the pause is still open, and it runs up to ``today``. Pauses
  may overlap; a day inside several pauses is subtracted once. A pause with ``to_day <= from_day`` is empty.
* ``due_date`` is ``start`` plus the limit in working days, pushed later by every working day spent in a
  pause before the limit is reached. A pause that begins after the limit was reached does not move it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta

import chinese_calendar

logger = logging.getLogger(__name__)

Pause = tuple[date, date | None]

_ONE_DAY = timedelta(days=1)


def _missing_year_message(year: int) -> str:
    return f"{year} 年的节假日数据缺失，按周一至周五计算工作日（chinese-calendar 需要更新）"


class WorkingCalendar:
    """China's working days (holidays and 调休 from chinese-calendar). For a year the package has no
    data for, falls back to Monday–Friday and says so loudly: a log warning once per year (Chinese and
    English), and the year is listed in `missing_years` / the message in `warnings` so reports can show it."""

    def __init__(self) -> None:
        self.missing_years: set[int] = set()

    @property
    def warnings(self) -> tuple[str, ...]:
        """One Chinese message per year whose holiday data is missing, in year order."""
        return tuple(_missing_year_message(year) for year in sorted(self.missing_years))

    def is_workday(self, day: date) -> bool:
        if day.year not in self.missing_years:
            try:
                return bool(chinese_calendar.is_workday(day))
            except NotImplementedError:
                self._note_missing_year(day.year)
        return day.weekday() < 5

    def _note_missing_year(self, year: int) -> None:
        self.missing_years.add(year)
        logger.warning(
            "%s / No holiday data for %d in chinese-calendar: working days are taken as Monday to Friday "
            "(update the chinese-calendar package)",
            _missing_year_message(year),
            year,
        )

    def working_days_between(self, start: date, end: date) -> int:
        """Working days d with start < d <= end; 0 if end <= start."""
        count = 0
        day = start + _ONE_DAY
        while day <= end:
            if self.is_workday(day):
                count += 1
            day += _ONE_DAY
        return count

    def add_working_days(self, start: date, days: int) -> date:
        """The date on which `days` working days after `start` have elapsed (start not counted)."""
        return self.due_date(start, days)

    def working_days_used(self, start: date, today: date, pauses: Sequence[Pause] = ()) -> int:
        """Working days in (start, today] not inside a pause (open pauses run up to today)."""
        intervals = _closed_intervals(pauses, today)
        count = 0
        day = start + _ONE_DAY
        while day <= today:
            if self.is_workday(day) and not _paused(day, intervals):
                count += 1
            day += _ONE_DAY
        return count

    def due_date(self, start: date, limit_days: int, pauses: Sequence[Pause] = (), today: date | None = None) -> date:
        """The date on which `limit_days` unpaused working days after `start` have elapsed.

        An open pause (to_day None) counts as running up to `today`, which is then required."""
        if limit_days < 0:
            raise ValueError(f"limit_days must not be negative, got {limit_days}")
        intervals = _closed_intervals(pauses, today)
        count = 0
        day = start
        while count < limit_days:
            day += _ONE_DAY
            if self.is_workday(day) and not _paused(day, intervals):
                count += 1
        return day


def _closed_intervals(pauses: Sequence[Pause], today: date | None) -> list[tuple[date, date]]:
    intervals: list[tuple[date, date]] = []
    for from_day, to_day in pauses:
        if to_day is None:
            if today is None:
                raise ValueError(f"an open pause (from {from_day.isoformat()}) needs `today` to count the paused days")
            to_day = today
        if to_day > from_day:
            intervals.append((from_day, to_day))
    return intervals


def _paused(day: date, intervals: Sequence[tuple[date, date]]) -> bool:
    return any(from_day < day <= to_day for from_day, to_day in intervals)
