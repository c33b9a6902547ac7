"""Working-day arithmetic for statutory time limits (法定时限), on China's calendar with 调休.

Conventions (all dates are calendar dates, no times):

* Working days come from the operators' holiday file (``rules/calendar.yaml``, the State Council's
  annual arrangement, see ``services.evaluation.holiday_file``) for the years it lists, and from the
  ``chinese-calendar`` package for the other years: public holidays are not working days, and weekend
  days declared as make-up working days (调休) are. A year in the file is taken from the file alone.
* For a year with neither, Monday–Friday are taken as working days, as an *estimate* that is never
  silent: a log warning once per year, the year in ``WorkingCalendar.missing_years``, and every
  figure that depends on such a year says so (``years_without_data``; the ledger's clock readings
  carry the years their used days and their due day were estimated in).
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import chinese_calendar

from services.common.domain import estimated_note

__all__ = ["HolidayYear", "Pause", "WorkingCalendar", "estimated_note"]

logger = logging.getLogger(__name__)

Pause = tuple[date, date | None]

_ONE_DAY = timedelta(days=1)


def _missing_year_message(year: int) -> str:
    return (f"{year} 年的节假日安排尚未录入（rules/calendar.yaml 与 chinese-calendar 均无该年数据），"
            f"涉及 {year} 年的工作日暂按周一至周五估算，请按国务院办公厅公布的安排录入")


@dataclass(frozen=True)
class HolidayYear:
    """One year's arrangement as the State Council announced it: the days off (放假, weekends included
    as announced) and the weekend days that are working days (调休上班). Every other Monday–Friday is a
    working day, every other Saturday and Sunday is not. ``source`` names the notice."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays


class WorkingCalendar:
    """China's working days: the operators' file for the years it lists (``years``), chinese-calendar for
    the others. For a year with neither, falls back to Monday–Friday and says so loudly: a log warning
    once per year (Chinese and English), the year in `missing_years` / the message in `warnings`, and
    `years_without_data` for any span, so that every figure built on the estimate can be flagged."""

    def __init__(self, years: Mapping[int, HolidayYear] | None = None) -> None:
        self.years: dict[int, HolidayYear] = dict(years or {})
        self.missing_years: set[int] = set()
        self._cumulative: dict[int, list[int]] = {}
        self._has_data: dict[int, bool] = {}

    def has_data(self, year: int) -> bool:
        """Whether ``year``'s holidays are known (from the file or the package)."""
        found = self._has_data.get(year)
        if found is None:
            found = year in self.years
            if not found:
                try:
                    chinese_calendar.is_workday(date(year, 6, 1))
                    found = True
                except NotImplementedError:
                    found = False
            self._has_data[year] = found
        return found

    def years_without_data(self, start: date, end: date) -> tuple[int, ...]:
        """The years from ``start``'s to ``end``'s (either order) whose holidays are not known: a count
        or a due day over that span is an estimate on Monday–Friday there."""
        low, high = sorted((start.year, end.year))
        return tuple(year for year in range(low, high + 1) if not self.has_data(year))

    def source_of(self, year: int) -> str:
        """Where ``year``'s working days come from, as an operator reads it."""
        if year in self.years:
            return f"rules/calendar.yaml（{self.years[year].source}）"
        return "chinese-calendar 软件包" if self.has_data(year) else "无数据（按周一至周五估算）"

    @property
    def warnings(self) -> tuple[str, ...]:
        """One Chinese message per year whose holiday data is missing and was used, in year order."""
        return self.warnings_for(self.missing_years)

    @staticmethod
    def warnings_for(years: Iterable[int]) -> tuple[str, ...]:
        """One Chinese message per year of ``years`` (years without data), in year order."""
        return tuple(_missing_year_message(year) for year in sorted(set(years)))

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
        entered = self.years.get(day.year)
        if entered is not None:
            return entered.is_workday(day)
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
            "%s / No holiday data for %d in rules/calendar.yaml nor in chinese-calendar: working days are "
            "estimated as Monday to Friday (enter the State Council's arrangement in rules/calendar.yaml)",
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
