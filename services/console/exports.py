"""The console's downloads: a board, the task orders, a project's ledger and the annual report as
Excel workbooks (.xlsx, openpyxl), with Chinese headers, so that a section chief can sort, filter and
print them, or send them on, without copying a web page.

Every workbook is made from the rows the page shows (``views.ItemRow``, the report's own tables), so a
download says what the page says; nothing here reads the store.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import date
from urllib.parse import quote

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from starlette.responses import Response

from services.evaluation.annual import AnnualReport
from services.evaluation.report import report_tables, title
from services.evaluation.views import ItemRow

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ITEM_COLUMNS: tuple[str, ...] = (
    "等级", "项目编码", "项目名称", "企业", "事项编码", "事项名称", "办理/咨询", "审批阶段", "服务方式", "承办单位",
    "状态", "等待的前置事项", "计时", "已用工作日", "时限（工作日）", "到期日", "未解决的堵点/卡点", "任务单", "服务专员",
    "服务专员电话", "移交日期",
)
_HEADER_FILL = PatternFill("solid", fgColor="DDE6F0")
_WIDEST = 60  # characters: a long blocker reason wraps instead of making a column a screen wide


def item_values(row: ItemRow) -> list[str | int | date | None]:
    """One line as a row of ``ITEM_COLUMNS``."""
    clock = next((c for c in row.clocks if c.clock == row.running_clock), None)
    order = row.task_order
    return [
        row.level_name or "", row.project_code, row.project_name, row.enterprise_name, row.item_code, row.item_name,
        row.request_name, row.stage_name, row.mode_name, row.responsible_unit_name, row.state_name,
        "、".join(row.waiting_for), clock.name if clock else "", clock.used if clock else None,
        clock.limit if clock else row.time_limit_days, row.due,
        "；".join(f"{b.reason}（须由{b.resolver_name}解决，{b.opened_on} 起）" for b in row.blockers),
        f"{order.number}（{order.state_name}）" if order else ("待下发" if row.task_order_to_issue else ""),
        order.specialist_name if order else None, order.specialist_phone if order else None, row.delivered_on,
    ]


def items_workbook(sheet_title: str, heading: str, rows: Iterable[ItemRow]) -> bytes:
    """A workbook of one sheet: ``heading`` in its first row, then ``ITEM_COLUMNS`` and a row per line."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    _fill(sheet, sheet_title, heading, ITEM_COLUMNS, (item_values(row) for row in rows))
    return _bytes(book)


def report_workbook(report: AnnualReport) -> bytes:
    """The annual report's tables, a sheet each (服务单位得分, 审批阶段, 堵点/卡点成因, 评价意见, 未计分的测评),
    as ``zeroerrand report`` writes them to CSV."""
    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    for name, header, rows in report_tables(report):
        _fill(book.create_sheet(), name, title(report), header, rows)
    return _bytes(book)


FORMULA_STARTS = ("=", "+", "-", "@")


def _fill(sheet: Worksheet, name: str, heading: str, header: Sequence[str],
          rows: Iterable[Sequence[str | int | float | date | None]]) -> None:
    sheet.title = _sheet_name(name)
    sheet.append([heading])
    sheet["A1"].font = Font(bold=True, size=13)
    sheet.append(list(header))
    for cell in sheet[2]:
        cell.font, cell.fill = Font(bold=True), _HEADER_FILL
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    widths = [_width(h) for h in header]
    for values in rows:
        sheet.append(list(values))
        widths = [max(w, _width(v)) for w, v in zip(widths, values, strict=False)]
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = min(width + 2, _WIDEST)
    for row in sheet.iter_rows(min_row=3):
        for cell in row:
            if isinstance(cell.value, date):
                cell.number_format = "yyyy-mm-dd"
            elif isinstance(cell.value, str) and cell.value.startswith(FORMULA_STARTS):
                # text people typed (an enterprise's 堵点, a 测评 comment) stays text: openpyxl would store
                # "=HYPERLINK(…)" as a live formula in a workbook the bureaus open
                cell.data_type = "s"
    sheet.freeze_panes = "A3"
    if sheet.max_row > 2:
        sheet.auto_filter.ref = f"A2:{get_column_letter(len(header))}{sheet.max_row}"


def _width(value: object) -> int:
    """Display columns of a cell (a Chinese character takes two)."""
    text = value.isoformat() if isinstance(value, date) else "" if value is None else str(value)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _sheet_name(name: str) -> str:
    """Excel allows 31 characters and none of []:*?/\\ in a sheet's name."""
    return "".join("_" if ch in "[]:*?/\\" else ch for ch in name)[:31] or "Sheet"


def _bytes(book: Workbook) -> bytes:
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def xlsx_response(data: bytes, filename: str) -> Response:
    """The workbook as a download named ``filename`` (Chinese names as RFC 6266 ``filename*``)."""
    fallback = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in filename)
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
    return Response(data, media_type=XLSX, headers={"content-disposition": disposition})
