"""Boards to work from, the overview and the Excel downloads, on the in-memory ledger: which lines a
filter keeps, in which order, one page at a time; what the overview counts; what a workbook holds."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
from openpyxl import load_workbook

from services.common.domain import Stage
from services.common.messages import AcceptItem, ReportBlocker
from services.console.boards import PAGE_SIZE, BadQuery, LineQuery, read_all, read_page, resolve
from services.console.exports import ITEM_COLUMNS, items_workbook, report_workbook
from services.console.overview import of_year, overview
from services.evaluation.handlers import handle, sweep
from services.evaluation.ledger import ItemState
from services.evaluation.report import SCORE_COLUMNS
from services.evaluation.repository import board_fields
from services.evaluation.scoring import evaluate_year
from services.evaluation.views import ViewContext
from tests.conftest import RULES
from tests.unit.ledger_kit import UNIT_NAMES, UNITS, at, ledger, request, routed, started

PLAN = "planning_construction_bureau"
UTIL = "public_utilities_bureau"
TODAY = date(2026, 12, 8)
OLD = date(2026, 9, 1)  # a line ready since then, never contacted: its service clock is long past red
RECENT = TODAY  # signed today: no clock has used a day yet


def context(book: Any) -> ViewContext:
    return ViewContext(unit_names=UNIT_NAMES, calendar=book.calendar, service_response_days=2, today=TODAY)


async def year_of_lines(book: Any) -> None:
    """P-OLD: two red lines of 规划建设局 (one blocked), one of 公共事业服务局; P-NEW (企业：新材料): a fresh line
    and one waiting for it; then the day's sweep announces the levels."""
    await handle(started("P-OLD", OLD), book, at(OLD))
    for item, unit, stage in (("EP-01", PLAN, Stage.ENGINEERING_PERMIT), ("EP-02", PLAN, Stage.ENGINEERING_PERMIT),
                              ("CP-03", UTIL, Stage.CONSTRUCTION_PERMIT)):
        await handle(routed("P-OLD", item, OLD, unit=unit, stage=stage), book, at(OLD))
    await handle(request(ReportBlocker, OLD, PLAN, project_code="P-OLD", item_code="EP-02", reason="图纸缺章",
                         resolver=UTIL), book, at(OLD))
    await handle(started("P-NEW", RECENT), book, at(RECENT))
    await handle(routed("P-NEW", "EP-01", RECENT), book, at(RECENT))
    await handle(routed("P-NEW", "EP-03", RECENT, requires=("EP-01",)), book, at(RECENT))
    await sweep(book, TODAY, at(TODAY))


async def test_lines_are_filtered_in_the_store_most_urgent_first_waiting_hidden_unless_asked() -> None:
    book = ledger()
    await year_of_lines(book)
    ctx = context(book)
    board = await read_page(book.repo, ctx, LineQuery(), {**LineQuery().where(), "responsible_unit": PLAN})
    assert [r.key for r in board.rows] == ["P-OLD/EP-01", "P-OLD/EP-02", "P-NEW/EP-01"]
    assert [r.level for r in board.rows[:2]] == ["red", "red"] and board.rows[2].level is None
    assert board.rows[0].project_name == "项目P-OLD" and board.rows[0].enterprise_name == "企业P-OLD"

    waiting = LineQuery(waiting=True)
    shown = await read_page(book.repo, ctx, waiting, {**waiting.where(), "responsible_unit": PLAN})
    assert shown.rows[-1].key == "P-NEW/EP-03" and shown.rows[-1].state is ItemState.WAITING and shown.total == 4

    red = LineQuery(level="red", state=ItemState.BLOCKED)
    assert [r.key for r in (await read_page(book.repo, ctx, red, red.where())).rows] == ["P-OLD/EP-02"]
    stage = LineQuery(stage=Stage.CONSTRUCTION_PERMIT)
    assert [r.responsible_unit for r in (await read_page(book.repo, ctx, stage, stage.where())).rows] == [UTIL]


async def test_a_page_reads_its_lines_only_and_the_last_page_when_asked_past_the_end() -> None:
    book = ledger()
    await handle(started("BIG", OLD), book, at(OLD))
    for n in range(PAGE_SIZE + 30):
        await handle(routed("BIG", f"X-{n:03d}", OLD), book, at(OLD))
    read: list[int] = []
    original = book.repo.open_lines

    async def spy(where: Any, skip: int = 0, limit: int | None = None) -> Any:
        found, total = await original(where, skip, limit)
        read.append(len(found))
        return found, total

    book.repo.open_lines = spy  # type: ignore[method-assign]
    second = await read_page(book.repo, context(book), LineQuery(page=2), LineQuery().where())
    assert (second.total, second.number, second.pages, len(second.rows)) == (PAGE_SIZE + 30, 2, 2, 30)
    assert read == [30]
    beyond = await read_page(book.repo, context(book), LineQuery(page=9), LineQuery().where())
    assert beyond.number == 2 and len(beyond.rows) == 30
    everything = await read_all(book.repo, context(book), LineQuery().where())
    assert len(everything) == PAGE_SIZE + 30


async def test_search_names_projects_or_else_catalog_items_and_refuses_too_many() -> None:
    book = ledger()
    await year_of_lines(book)
    from services.common.rule_files import load_rulebook

    catalog = load_rulebook(RULES).catalog
    by_enterprise = await resolve(book.repo, catalog, "企业p-new")
    assert by_enterprise.field == "project_code" and by_enterprise.codes == ("P-NEW",)
    found = await read_page(book.repo, context(book), LineQuery(text="企业P-NEW", waiting=True),
                            LineQuery(waiting=True).where(), by_enterprise)
    assert {r.project_code for r in found.rows} == {"P-NEW"} and found.total == 2
    item = next(iter(catalog.values()))
    by_item = await resolve(book.repo, catalog, item.name)
    assert by_item.field == "item_code" and item.code in by_item.codes
    nothing = await resolve(book.repo, catalog, "不存在的名称")
    assert nothing.codes == () and "没有" in nothing.described
    # a unit's own board searches its own projects only: 公共事业服务局 has lines on P-OLD, none on P-NEW
    assert (await resolve(book.repo, catalog, "企业p", UTIL)).codes == ("P-OLD",)
    others = await resolve(book.repo, catalog, "企业p-new", UTIL)
    assert others.codes == () and "P-NEW" not in others.described and "企业P-NEW" not in others.described
    for n in range(21):
        await handle(started(f"MANY-{n}", RECENT), book, at(RECENT))
    with pytest.raises(BadQuery, match="匹配的项目有 21 个"):
        await resolve(book.repo, catalog, "MANY")


def test_bad_filters_are_refused_with_the_field_the_value_and_the_choices() -> None:
    with pytest.raises(BadQuery) as refused:
        LineQuery.parse({"state": "done", "level": "purple", "page": "-1"})
    text = str(refused.value)
    assert "状态“done”不是可选的状态" in text and "可办理" in text
    assert "等级“purple”不是可选的等级（可选：红牌、黄牌、预警）" in text and "页码“-1”" in text
    with pytest.raises(BadQuery, match="承办单位“nobody”"):
        LineQuery.parse({"unit": "nobody"}, {PLAN: "规划建设局"})
    query = LineQuery.parse({"level": "red", "stage": "engineering_permit", "page": "3"})
    assert query.where() == {"waiting": False, "level": "red", "stage": "engineering_permit"}
    assert query.link(page=4) == "?level=red&stage=engineering_permit&page=4"
    assert LineQuery.parse({"state": "waiting"}).where() == {"state": "waiting"}, "asking for waiting lines shows them"


async def test_urgency_ranks_the_level_announced_for_the_running_clock_only() -> None:
    book = ledger()
    await year_of_lines(book)
    red = await book.repo.item("P-OLD/EP-01")
    assert red is not None and board_fields(red)["level"] == "red"
    # accepted: the service clock stops, its red card is history; the statutory clock has announced nothing
    await handle(request(AcceptItem, TODAY, PLAN, project_code="P-OLD", item_code="EP-01"), book, at(TODAY))
    accepted = await book.repo.item("P-OLD/EP-01")
    assert accepted is not None and board_fields(accepted)["level"] is None
    fresh, waiting = await book.repo.item("P-NEW/EP-01"), await book.repo.item("P-NEW/EP-03")
    assert fresh is not None and waiting is not None
    assert board_fields(red)["urgency"] < board_fields(fresh)["urgency"] < board_fields(waiting)["urgency"]


async def test_overview_counts_levels_per_unit_and_stage_and_lists_overdue_and_blocked() -> None:
    book = ledger()
    await year_of_lines(book)
    names = {code: unit.short_name for code, unit in UNITS.items()}
    view = await overview(book.repo, context(book), names, 2026)
    assert view.cells[(PLAN, "engineering_permit")] == {"red": 2}
    assert view.cells[(UTIL, "construction_permit")] == {"red": 1}
    assert view.totals == {"red": 3} and view.open_lines == 5 and view.all_projects == 2
    assert [u for u, _ in view.units] == [PLAN, UTIL], "units.yaml's order"
    assert view.overdue[0].total == 3 and view.overdue[1].total == 0
    assert [r.key for r in view.blocked.rows] == ["P-OLD/EP-02"]
    old = next(p for p in view.projects if p.project.code == "P-OLD")
    assert (old.open_lines, old.blocked, old.level) == (3, 1, "red")
    assert [p.project.code for p in view.projects] == ["P-NEW", "P-OLD"], "latest signed first"
    assert [p.project.code for p in (await overview(book.repo, context(book), names, 2026, "公共事业")).projects] \
        == ["P-OLD"], "a unit with open lines finds the project"
    assert (await overview(book.repo, context(book), names, 2025)).all_projects == 0
    project = await book.repo.project("P-OLD")
    assert project is not None and of_year(project, 2027), "not all handed over: still a project of the next year"


async def test_workbooks_have_chinese_headers_and_the_rows_the_page_shows() -> None:
    book = ledger()
    await year_of_lines(book)
    rows = (await read_page(book.repo, context(book), LineQuery(), {**LineQuery().where(), "responsible_unit": PLAN})).rows
    sheet = load_workbook(io.BytesIO(items_workbook("承办事项", "规划建设局承办事项", rows))).active
    assert sheet is not None and sheet.title == "承办事项" and sheet["A1"].value == "规划建设局承办事项"
    assert [c.value for c in sheet[2]] == list(ITEM_COLUMNS)
    first = {h: c.value for h, c in zip(ITEM_COLUMNS, sheet[3], strict=True)}
    assert first["等级"] == "红牌" and first["项目名称"] == "项目P-OLD" and first["企业"] == "企业P-OLD"
    assert first["承办单位"] == UNIT_NAMES[PLAN] and first["计时"] == "首问响应" and first["时限（工作日）"] == 2
    assert first["已用工作日"] > 2 and first["到期日"] is not None
    blocked = next(r for r in sheet.iter_rows(min_row=3, values_only=True) if r[4] == "EP-02")
    assert "图纸缺章" in str(blocked[ITEM_COLUMNS.index("未解决的堵点/卡点")])
    assert sheet.max_row == 2 + len(rows)

    report = await evaluate_year(book.repo, 2026, book.config, UNITS, book.calendar, TODAY, at(TODAY))
    workbook = load_workbook(io.BytesIO(report_workbook(report)))
    assert workbook.sheetnames == ["服务单位得分", "审批阶段按时办结", "堵点卡点成因", "评价意见", "未计分的测评"]
    scores = workbook["服务单位得分"]
    assert [c.value for c in scores[2]] == list(SCORE_COLUMNS)
    assert [r[0] for r in scores.iter_rows(min_row=3, values_only=True)] == [s.provider_name for s in report.scores]


def test_text_people_typed_stays_text_in_a_workbook_never_a_formula() -> None:
    from openpyxl import Workbook

    from services.console.exports import _bytes, _fill

    book = Workbook()
    typed = ["=HYPERLINK(\"http://evil.example\",\"点此\")", "+1+1", "-2", "@SUM(A1)", "图纸缺章"]
    _fill(book.active, "堵点", "堵点/卡点", ["原因"], [[text] for text in typed])  # type: ignore[arg-type]
    sheet = load_workbook(io.BytesIO(_bytes(book))).active
    assert sheet is not None
    cells = [row[0] for row in sheet.iter_rows(min_row=3)]
    assert [c.value for c in cells] == typed
    assert [c.data_type for c in cells] == ["s"] * len(typed)  # "f" would be a live formula
