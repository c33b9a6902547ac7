"""Boards to work from: a unit's open lines (its board) and everyone's (the overview's lists), filtered
by state, card level, stage, project and unit, searched, waiting lines hidden unless asked for, most
urgent first, one page at a time.

Every page is read in the store: the filters are equalities on the line's document
(``repository.LINE_FILTERS``), sorted by its ``urgency`` and skipped and limited there, so a page reads
its 100 lines, never all of a unit's. A search is resolved first to the projects (code, name or
enterprise) or, when no project matches, the catalog items (code or name) it names, and each of those
is one more equality; a search that names too many is refused with the reason rather than read
whole. Bad parameters get a Chinese message naming the field, the value and what it may be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from services.common.domain import OVERDUE_LEVEL_NAMES_ZH, STAGE_NAMES_ZH, CatalogItem, Stage
from services.evaluation import views
from services.evaluation.ledger import FINISHED, STATE_NAMES_ZH, ItemState, LedgerItem
from services.evaluation.repository import BOARD_LEVELS, LedgerRepository, board_fields

PAGE_SIZE = 100
MAX_MATCHES = 20
"""A search naming more projects (or items) than this is refused: each is one look-up."""
EXPORT_PAGE = 500
MAX_EXPORT = 20_000
OPEN_STATES = tuple(s for s in ItemState if s not in FINISHED)
LEVEL_CHOICES = {level: OVERDUE_LEVEL_NAMES_ZH[level] for level in BOARD_LEVELS}


class BadQuery(ValueError):
    """A filter the page cannot apply; the message (Chinese) says which, what was given and what may be."""


@dataclass(frozen=True)
class LineQuery:
    """What a board or a list of the overview is asked for (``?state=&level=&stage=&project=&unit=&q=&waiting=1&page=``)."""

    state: ItemState | None = None
    level: str | None = None
    stage: Stage | None = None
    project: str = ""
    unit: str = ""
    text: str = ""
    waiting: bool = False
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str], units: Mapping[str, str] | None = None) -> LineQuery:
        """From the address's parameters; ``units`` (code → name): the units that may be chosen (None: no
        unit filter on this page). ``BadQuery`` with every problem found."""
        problems: list[str] = []

        def choice(name: str, label: str, options: Mapping[str, str]) -> str | None:
            value = params.get(name, "").strip()
            if value and value not in options:
                problems.append(f"{label}“{value[:40]}”不是可选的{label}（可选：{'、'.join(options.values())}）")
                return None
            return value or None

        state = choice("state", "状态", {s.value: STATE_NAMES_ZH[s] for s in OPEN_STATES})
        level = choice("level", "等级", LEVEL_CHOICES)
        stage = choice("stage", "审批阶段", {s.value: STAGE_NAMES_ZH[s] for s in Stage})
        unit = choice("unit", "承办单位", units) if units is not None else None
        project = params.get("project", "").strip()
        if len(project) > 64:
            problems.append(f"项目编码过长（{len(project)} 个字符，至多 64 个）")
        text = params.get("q", "").strip()
        if len(text) > 40:
            problems.append(f"搜索内容过长（{len(text)} 个字，至多 40 个）")
        page_text = params.get("page", "1").strip() or "1"
        if not page_text.isdigit() or len(page_text) > 5 or int(page_text) < 1:
            problems.append(f"页码“{page_text[:10]}”须为 1 至 99999 的整数")
            page_text = "1"
        if problems:
            raise BadQuery("；".join(problems) + "。")
        return cls(state=ItemState(state) if state else None, level=level, stage=Stage(stage) if stage else None,
                   project=project, unit=unit or "", text=text, waiting=params.get("waiting") == "1",
                   page=int(page_text))

    def where(self) -> dict[str, Any]:
        """The equalities on the line's document (``repository.LINE_FILTERS``) these filters are."""
        where: dict[str, Any] = {}
        if self.unit:
            where["responsible_unit"] = self.unit
        if self.state is not None:
            where["state"] = self.state.value
        elif not self.waiting:
            where["waiting"] = False  # waiting for prerequisites: nothing to do yet, shown when asked
        if self.level:
            where["level"] = self.level
        if self.stage is not None:
            where["stage"] = self.stage.value
        if self.project:
            where["project_code"] = self.project
        return where

    def link(self, **changes: Any) -> str:
        """The query string of these filters with ``changes`` (e.g. ``page=2``), empty values left out."""
        values = {"state": self.state.value if self.state else "", "level": self.level or "",
                  "stage": self.stage.value if self.stage else "", "project": self.project, "unit": self.unit,
                  "q": self.text, "waiting": "1" if self.waiting else "", "page": "" if self.page == 1 else self.page}
        values |= changes
        kept = {k: v for k, v in values.items() if v not in ("", None) and not (k == "page" and v == 1)}
        return "?" + urlencode(kept) if kept else "?"

    @property
    def filtered(self) -> bool:
        return bool(self.state or self.level or self.stage or self.project or self.unit or self.text or self.waiting)


@dataclass(frozen=True)
class Search:
    """A search resolved to what the store can look up by equality: ``field`` is ``project_code`` or
    ``item_code``, ``codes`` the ones matched (none: nothing matched)."""

    text: str
    field: str
    codes: tuple[str, ...]
    names: tuple[str, ...] = ()

    @property
    def described(self) -> str:
        what = "项目" if self.field == "project_code" else "事项"
        if not self.codes:
            return f"没有编码、名称或企业含“{self.text}”的项目，也没有编码或名称含它的事项。"
        return f"“{self.text}”匹配{what}：{'、'.join(self.names)}。"


async def resolve(repo: LedgerRepository, catalog: Mapping[str, CatalogItem], text: str,
                  unit: str | None = None) -> Search:
    """The projects whose code, name or enterprise contains ``text`` (any case); if none, the catalog items
    whose code or name does. ``BadQuery`` if more than ``MAX_MATCHES`` match. With ``unit`` (a unit's own
    board), only the projects it has open lines on: a search must not tell a unit of others' projects."""
    wanted = text.casefold()
    among = None if unit is None else {i.project_code for i in await repo.unit_items(unit)}
    projects = [p for p in await repo.all_projects()
                if (among is None or p.code in among)
                and any(wanted in value.casefold() for value in (p.code, p.name, p.enterprise))]
    if projects:
        found = Search(text, "project_code", tuple(p.code for p in projects),
                       tuple(f"{p.code} {p.name}" for p in projects))
    else:
        items = [i for i in catalog.values() if wanted in i.code.casefold() or wanted in i.name.casefold()]
        found = Search(text, "item_code", tuple(i.code for i in items), tuple(f"{i.code} {i.name}" for i in items))
    if len(found.codes) > MAX_MATCHES:
        what = "项目" if found.field == "project_code" else "事项"
        raise BadQuery(f"搜索“{text}”匹配的{what}有 {len(found.codes)} 个，超过 {MAX_MATCHES} 个：请输入更完整的名称或编码，"
                       "或改用上方的筛选条件。")
    return found


@dataclass(frozen=True)
class LinePage:
    """One page of lines, most urgent first, and where it stands among all that match."""

    rows: tuple[views.ItemRow, ...]
    total: int
    number: int
    size: int = PAGE_SIZE
    search: Search | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))


async def read_page(repo: LedgerRepository, ctx: views.ViewContext, query: LineQuery, where: Mapping[str, Any],
                    search: Search | None = None, size: int = PAGE_SIZE) -> LinePage:
    """The page ``query.page`` of the open lines matching ``where`` (and the search), read in the store."""
    number = query.page
    items, total = await _lines(repo, where, search, (number - 1) * size, size)
    last = max(1, -(-total // size))
    if number > last:  # past the end (the list got shorter): the last page
        number = last
        items, total = await _lines(repo, where, search, (number - 1) * size, size)
    rows = await views.line_rows(repo, ctx, items)
    return LinePage(rows=tuple(rows), total=total, number=number, size=size, search=search)


async def read_all(repo: LedgerRepository, ctx: views.ViewContext, where: Mapping[str, Any],
                   search: Search | None = None) -> list[views.ItemRow]:
    """Every matching line (an export), read a page of ``EXPORT_PAGE`` at a time, at most ``MAX_EXPORT``."""
    rows: list[views.ItemRow] = []
    while len(rows) < MAX_EXPORT:
        items, total = await _lines(repo, where, search, len(rows), EXPORT_PAGE)
        rows += await views.line_rows(repo, ctx, items)
        if not items or len(rows) >= total:
            break
    return rows


async def _lines(repo: LedgerRepository, where: Mapping[str, Any], search: Search | None, skip: int,
                 limit: int) -> tuple[list[LedgerItem], int]:
    if search is None:
        return await repo.open_lines(where, skip, limit)
    # one look-up per project (or item) the search named, each its first skip + limit lines at most; they
    # do not overlap (a line has one project and one item), so the counts add up
    found: list[LedgerItem] = []
    total = 0
    for code in _codes(search, where):
        items, count = await repo.open_lines({**where, search.field: code}, 0, skip + limit)
        found += items
        total += count
    found.sort(key=lambda i: (board_fields(i)["urgency"], i.key))
    return found[skip:skip + limit], total


def _codes(search: Search, where: Mapping[str, Any]) -> Sequence[str]:
    fixed = where.get(search.field)
    return [c for c in search.codes if fixed is None or c == fixed]
