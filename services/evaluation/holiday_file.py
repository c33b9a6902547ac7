"""The holiday calendar operators keep: ``rules/calendar.yaml``, the State Council's annual arrangement
(国务院办公厅关于某年部分节假日安排的通知) of public holidays and 调休 working days.

A year listed here is taken from here alone and overrides the ``chinese-calendar`` package; a year
listed neither here nor in the package is estimated on Monday–Friday and flagged wherever a figure
depends on it (``services.evaluation.working_days``). Validated on load: every problem names the
file, the line and the year, in Chinese (``services.common.yaml_files``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.common.domain import YEAR_MAX, YEAR_MIN, Day, Name, Text
from services.common.yaml_files import Located, Problem, RulesError, read_located, validate_located
from services.evaluation.working_days import HolidayYear, WorkingCalendar

CALENDAR_FILE = "calendar.yaml"
_WEEKDAYS_ZH = "一二三四五六日"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Holiday(_Strict):
    """One holiday of the notice: its name and its days off, ``from`` … ``to`` inclusive (one day: ``to`` omitted)."""

    name: Name
    from_: Day = Field(alias="from")
    to: Day | None = None

    def days(self) -> list[date]:
        last = self.to or self.from_
        return [self.from_ + timedelta(days=n) for n in range((last - self.from_).days + 1)]


class CalendarYear(_Strict):
    year: int = Field(ge=YEAR_MIN, le=YEAR_MAX)
    source: Text = Field(description="the notice: its title, number and date")
    holidays: tuple[Holiday, ...] = Field(min_length=1, max_length=20)
    workdays: tuple[Day, ...] = Field(default=(), max_length=20, description="调休上班的周六、周日")


class CalendarFile(_Strict):
    years: tuple[CalendarYear, ...] = ()


def _weekday(day: date) -> str:
    return f"{day.isoformat()}（周{_WEEKDAYS_ZH[day.weekday()]}）"


def _check(parsed: CalendarFile, source: Located) -> list[Problem]:
    """What the schema cannot say: one entry per year, each day in its year, a holiday that runs
    forward, a 调休 working day that is a weekend day and not also a holiday."""
    problems: list[Problem] = []
    seen: set[int] = set()
    for index, entry in enumerate(parsed.years):
        subject = f"{entry.year} 年"

        def problem(path: Sequence[int | str], message: str, _index: int = index, _subject: str = subject) -> None:
            problems.append(Problem(source.file, source.line(["years", _index, *path]), _subject, message))

        if entry.year in seen:
            problem(["year"], f"year: {entry.year} 年已在前面列出（每年只写一条，放假与调休上班都写在其中）")
        seen.add(entry.year)
        off: set[date] = set()
        for h, holiday in enumerate(entry.holidays):
            if holiday.to is not None and holiday.to < holiday.from_:
                problem(["holidays", h, "to"], f"holidays[{h + 1}]（{holiday.name}）：结束日 {holiday.to} 早于开始日 "
                                               f"{holiday.from_}")
                continue
            if (holiday.to or holiday.from_) - holiday.from_ > timedelta(days=15):
                problem(["holidays", h, "to"], f"holidays[{h + 1}]（{holiday.name}）：{holiday.from_} 至 {holiday.to} "
                                               "超过 16 天，不像一次假期（日期写错了？）")
            for day in holiday.days():
                if day.year != entry.year:
                    problem(["holidays", h], f"holidays[{h + 1}]（{holiday.name}）：{day} 不在 {entry.year} 年内"
                                             "（每个日期写在它所在年份的条目下）")
                    break
            off.update(holiday.days())
        for w, day in enumerate(entry.workdays):
            if day.year != entry.year:
                problem(["workdays", w], f"workdays[{w + 1}]：{day} 不在 {entry.year} 年内（每个日期写在它所在年份的条目下）")
            elif day.weekday() < 5:
                problem(["workdays", w], f"workdays[{w + 1}]：{_weekday(day)} 本来就是工作日；workdays 只写调休上班的"
                                         "周六、周日")
            elif day in off:
                problem(["workdays", w], f"workdays[{w + 1}]：{_weekday(day)} 同时写在了放假日期（holidays）中")
    return problems


def load_holiday_years(rules_dir: str | Path) -> dict[int, HolidayYear]:
    """The years of ``calendar.yaml`` in ``rules_dir``; none if the file does not exist (every year is
    then the package's, or estimated). ``RulesError`` lists every problem, with file and line."""
    path = Path(rules_dir) / CALENDAR_FILE
    if not path.exists():
        return {}
    source, _ = read_located(path)
    parsed = validate_located(source, CalendarFile, "years", "年度")
    problems = _check(parsed, source)
    if problems:
        raise RulesError(problems)
    return {entry.year: HolidayYear(year=entry.year,
                                    holidays=frozenset(d for h in entry.holidays for d in h.days()),
                                    workdays=frozenset(entry.workdays), source=entry.source)
            for entry in parsed.years}


def load_calendar(rules_dir: str | Path) -> WorkingCalendar:
    """The working-day calendar of ``rules_dir``: its ``calendar.yaml`` over the chinese-calendar package."""
    return WorkingCalendar(load_holiday_years(rules_dir))
