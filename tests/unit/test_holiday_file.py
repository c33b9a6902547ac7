"""The holiday calendar operators keep (``rules/calendar.yaml``): validated with file and line, it
overrides chinese-calendar for the years it lists, and a year in neither is flagged wherever a
figure or a due day depends on it (ledger, CLI, console, report, overdue notices)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from services.common.yaml_files import RulesError
from services.evaluation.holiday_file import CALENDAR_FILE, load_calendar
from services.evaluation.ledger import ItemState, LedgerItem, clock_readings, new_item, overdue
from services.evaluation.scoring import EvaluationConfig, evaluate
from services.evaluation.views import ViewContext, item_row, progress_document
from services.evaluation.working_days import WorkingCalendar
from tests.conftest import RULES
from tests.unit.ledger_kit import UNIT_NAMES, UNITS, at, routed

# Test data only (made up for these tests, NOT the State Council's 2027 arrangement, which
# rules/calendar.yaml deliberately leaves out until it is published): 元旦 on Friday 2027-01-01.
INVENTED_2027 = """\
years:
  - year: 2027
    source: 测试用数据（非官方安排）
    holidays:
      - {name: 元旦, from: 2027-01-01}
    workdays: []
"""


def calendar_dir(tmp_path: Path, text: str) -> Path:
    (tmp_path / CALENDAR_FILE).write_text(text, encoding="utf-8")
    return tmp_path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_calendar(calendar_dir(tmp_path, text))
    return [str(p) for p in caught.value.problems]


def test_the_shipped_2026_arrangement_agrees_with_chinese_calendar_on_every_day() -> None:
    entered, package = load_calendar(RULES), WorkingCalendar()
    assert 2026 in entered.years and "2026" in entered.years[2026].source
    day = date(2026, 1, 1)
    while day.year == 2026:
        assert entered.is_workday(day) == package.is_workday(day), day
        day += timedelta(days=1)
    assert entered.source_of(2026).startswith("rules/calendar.yaml")


def test_a_year_in_the_file_is_counted_from_the_file_not_estimated(tmp_path: Path) -> None:
    # the example: 2026-12-30 + 5 working days is 2027-01-07 once 元旦 2027 is known
    # (Monday–Friday alone gives 2027-01-06)
    assert WorkingCalendar().add_working_days(date(2026, 12, 30), 5) == date(2027, 1, 6)
    cal = load_calendar(calendar_dir(tmp_path, INVENTED_2027))
    assert not cal.is_workday(date(2027, 1, 1))
    assert cal.add_working_days(date(2026, 12, 30), 5) == date(2027, 1, 7)
    assert cal.years_without_data(date(2026, 12, 30), date(2027, 1, 7)) == ()
    assert cal.missing_years == set()


def test_the_file_overrides_the_package_for_a_year_both_have(tmp_path: Path) -> None:
    text = """\
years:
  - year: 2025
    source: 测试：覆盖软件包
    holidays:
      - {name: 测试假日, from: 2025-03-03, to: 2025-03-04}
    workdays: [2025-03-08]
"""
    cal = load_calendar(calendar_dir(tmp_path, text))
    assert WorkingCalendar().is_workday(date(2025, 3, 3))
    assert not cal.is_workday(date(2025, 3, 3)) and not cal.is_workday(date(2025, 3, 4))
    assert cal.is_workday(date(2025, 3, 8))  # a Saturday declared a working day
    assert cal.is_workday(date(2025, 10, 8)) is True  # the package's 国庆 does not apply: the file has the year alone


def test_without_the_file_every_year_is_the_packages(tmp_path: Path) -> None:
    cal = load_calendar(tmp_path)
    assert cal.years == {}
    assert not cal.is_workday(date(2026, 10, 1))


@pytest.mark.parametrize(("text", "expected"), [
    ("years:\n  - year: 2026\n    source: 通知\n    holidays:\n      - {name: 元旦, from: 2026-01-01}\n"
     "    workdays: [2026-01-05]\n",
     ":6 [2026 年] workdays[1]：2026-01-05（周一） 本来就是工作日"),
    ("years:\n  - year: 2026\n    source: 通知\n    holidays:\n      - {name: 元旦, from: 2025-12-31, to: 2026-01-01}\n",
     ":5 [2026 年] holidays[1]（元旦）：2025-12-31 不在 2026 年内"),
    ("years:\n  - year: 2026\n    source: 通知\n    holidays:\n      - {name: 春节, from: 2026-02-23, to: 2026-02-15}\n",
     ":5 [2026 年] holidays[1]（春节）：结束日 2026-02-15 早于开始日 2026-02-23"),
    ("years:\n  - year: 2026\n    source: 通知\n    holidays:\n      - {name: 元旦, from: 2026-01-03}\n"
     "    workdays: [2026-01-03]\n",
     "同时写在了放假日期（holidays）中"),
    ("years:\n  - year: 2026\n    source: 通知\n    holidays:\n      - {name: 元旦, from: 2026-01-01}\n"
     "  - year: 2026\n    source: 通知\n    holidays:\n      - {name: 元旦, from: 2026-01-01}\n",
     ":6 [2026 年] year: 2026 年已在前面列出"),
    ("years:\n  - year: 2026\n    sourse: 通知\n    holidays:\n      - {name: 元旦, from: 2026-01-01}\n",
     ":3 [年度 第1条] years[1].sourse: 不认识的字段"),
    ("years:\n  - year: 2026\n    source: 通知\n    holidays:\n      - {name: 元旦, from: 2026-13-01}\n",
     ":5 [年度 第1条] years[1].holidays[1].from:"),
])
def test_a_bad_calendar_file_is_refused_naming_file_line_and_year(tmp_path: Path, text: str, expected: str) -> None:
    shown = "\n".join(problems_of(tmp_path, text))
    assert str(tmp_path / CALENDAR_FILE) in shown
    assert expected in shown, shown


# -- a year with neither the file's nor the package's data is flagged, never silent ----------------


def _accepted(on: date, limit: int, finished: date | None = None) -> LedgerItem:
    item = new_item(routed("PRJ-CAL", "EP-03", on, limit=limit))
    return item.model_copy(update={"state": ItemState.COMPLETED if finished else ItemState.ACCEPTED,
                                   "ready_on": on, "contacted_on": on, "accepted_on": on, "finished_on": finished})


def test_a_due_day_in_a_year_without_data_is_flagged_in_the_ledger_and_its_json() -> None:
    cal = WorkingCalendar()  # chinese-calendar 1.11 has no 2027, and no file here
    item = _accepted(date(2026, 12, 28), 5)
    statutory = clock_readings(item, cal, date(2026, 12, 30), 2)["statutory"]
    assert statutory.due_on.year == 2027
    assert statutory.due_estimated == (2027,) and statutory.used_estimated == ()
    row = item_row(item, ViewContext(UNIT_NAMES, cal, 2, date(2026, 12, 30)))
    [clock] = [c for c in row.clocks if c.clock == "statutory"]
    assert clock.estimated == (2027,)
    assert clock.estimated_note == "2027 年节假日未录入，按周一至周五估算"
    assert row.due_note == clock.estimated_note
    [service] = [c for c in row.clocks if c.clock == "service"]
    assert service.estimated == () and service.estimated_note == ""


def test_with_the_year_entered_the_same_due_day_is_not_flagged(tmp_path: Path) -> None:
    cal = load_calendar(calendar_dir(tmp_path, INVENTED_2027))
    item = _accepted(date(2026, 12, 28), 5)
    statutory = clock_readings(item, cal, date(2026, 12, 30), 2)["statutory"]
    assert statutory.estimated == ()
    assert statutory.due_on == date(2027, 1, 5)  # 12-29, 12-30, 12-31, (01-01 元旦), 01-04, 01-05


def test_an_overdue_notice_carries_the_years_its_due_day_was_estimated_in() -> None:
    item = _accepted(date(2026, 12, 30), 1)
    found = overdue(item, WorkingCalendar(), date(2026, 12, 31), 2, datetime(2026, 12, 31, 3, tzinfo=UTC))
    assert found is not None
    [event] = found.events
    assert event.due_on == date(2026, 12, 31) and event.estimated_years == ()
    later = _accepted(date(2026, 12, 30), 2)  # 预警 with one day left, due 2027-01-01
    found = overdue(later, WorkingCalendar(), date(2026, 12, 31), 2, datetime(2026, 12, 31, 3, tzinfo=UTC))
    assert found is not None
    [event] = found.events
    assert event.due_on.year == 2027 and event.estimated_years == (2027,)


def test_the_report_warns_only_about_years_its_figures_count_days_in() -> None:
    config = EvaluationConfig()
    now = datetime(2027, 1, 10, tzinfo=UTC)
    # finished in 2026, its due day was in 2027: the on-time figure counts only 2026's days
    finished = _accepted(date(2026, 12, 28), 10, finished=date(2026, 12, 31))
    cal = WorkingCalendar()
    report = evaluate(2026, [finished], [], config, UNITS, cal, date(2026, 12, 31), now)
    assert report.calendar_warnings == ()
    assert 2027 in cal.missing_years  # the due day touched 2027, which is not a figure of the report
    # still open in 2027: the 2026 report reads its clock as of 31 December, so no 2027 day is in its
    # figures either; the 2027 report counts 2027's days, estimated, and says so
    still_open = _accepted(date(2026, 12, 28), 10)
    report = evaluate(2026, [still_open], [], config, UNITS, WorkingCalendar(), date(2027, 1, 8), now)
    assert report.calendar_warnings == ()
    report = evaluate(2027, [still_open], [], config, UNITS, WorkingCalendar(), date(2027, 1, 8), now)
    assert len(report.calendar_warnings) == 1 and "2027" in report.calendar_warnings[0]


def test_the_ledger_show_json_names_the_estimated_years() -> None:
    from services.evaluation.ledger import ProjectRecord
    from services.evaluation.views import ProjectProgress

    item = _accepted(date(2026, 12, 28), 5)
    row = item_row(item, ViewContext(UNIT_NAMES, WorkingCalendar(), 2, date(2026, 12, 30)))
    record = ProjectRecord(code="PRJ-CAL", agreement_id="A", name="项目", enterprise="企业", credit_code="X",
                           recruiting_unit="econ_dev_bureau", signed_on=date(2026, 12, 28), ledger_owner="econ_dev_bureau",
                           items_planned=1, items_routed=1, items_unroutable=0, rules_version="t",
                           started_at=at(date(2026, 12, 28)), recorded_at=at(date(2026, 12, 28)))
    document = progress_document(ProjectProgress(project=record, items=(row,), delivered=0, open_blockers=0,
                                                 level=None))
    clocks = document["items"][0]["clocks"]
    assert clocks["statutory"]["estimated_years"] == [2027]
    assert clocks["statutory"]["estimated_note"].startswith("2027 年节假日未录入")
    assert clocks["service"]["estimated_years"] == []
