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
        self._cumulative: dict[int, list[int]] = {}

    @property
    def warnings(self) -> tuple[str, ...]:
        """One Chinese message per year whose holiday data is missing, in year order."""
        return tuple(_missing_year_message(year) for year in sorted(self.missing_years))

    def is_workday(self, day: date) -> bool:
        counts, n = self._year(day.year), day.timetuple().tm_yday
        return counts[n] > counts[n - 1]

    def _year(self, year: int) -> list[int]:
        """Cumulative working days of ``year``: entry k counts the working days among its first k days.

        Built once per year, so counting the working days between two dates is two look-ups however
        far apart they are (a year of ledger items is swept every few minutes)."""
        found = self._cumulative.get(year)
        if found is None:
            found = [0]
            day = date(year, 1, 1)
            while day.year == year:
                found.append(found[-1] + self._calendar_says(day))
                day += _ONE_DAY
            self._cumulative[year] = found
        return found

    def _calendar_says(self, day: date) -> bool:
        if day.year not in self.missing_years:
            try:
                return bool(chinese_calendar.is_workday(day))
            except NotImplementedError:
                self._note_missing_year(day.year)
        return day.weekday() < 5

    def _upto(self, day: date) -> int:
        """Working days from the start of ``day``'s year up to and including ``day``."""
        return self._year(day.year)[day.timetuple().tm_yday]

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
        if end <= start:
            return 0
        if start.year == end.year:
            return self._upto(end) - self._upto(start)
        count = self._year(start.year)[-1] - self._upto(start) + self._upto(end)
        for year in range(start.year + 1, end.year):
            count += self._year(year)[-1]
        return count

    def add_working_days(self, start: date, days: int) -> date:
        """The date on which `days` working days after `start` have elapsed (start not counted)."""
        return self.due_date(start, days)

    def working_days_used(self, start: date, today: date, pauses: Sequence[Pause] = ()) -> int:
        """Working days in (start, today] not inside a pause (open pauses run up to today)."""
        count = self.working_days_between(start, today)
        covered: list[tuple[date, date]] = []  # the pauses clipped to (start, today] and merged
        for from_day, to_day in sorted(_closed_intervals(pauses, today)):
            low, high = max(from_day, start), min(to_day, today)
            if high <= low:
                continue
            if covered and low <= covered[-1][1]:
                covered[-1] = (covered[-1][0], max(covered[-1][1], high))
            else:
                covered.append((low, high))
        return count - sum(self.working_days_between(low, high) for low, high in covered)

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
