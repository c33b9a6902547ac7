"""The overview (总览) for 政务服务局, 经发局 and the 管委会's leaders: every project of the year, searchable
by project, enterprise, code or unit; the 预警/黄牌/红牌 standing now per unit and stage, each count a link
to its lines; the overdue (黄牌, 红牌) and blocked lines.

The counts are made from a few fields of each open line (``open_line_fields``: unit, stage, state and the
level the overdue sweep announced), not from the lines themselves; the lists are a page each of
``open_lines``. A project of the year: signed in it, or signed before and not yet all handed over when
it began.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from services.common.domain import STAGE_NAMES_ZH, Stage
from services.console.boards import LinePage, LineQuery, read_page
from services.evaluation import views
from services.evaluation.ledger import ItemState, ProjectRecord, local_day
from services.evaluation.repository import BOARD_LEVELS, LedgerRepository

LIST_SIZE = 20
"""Lines in each list of the overview; the link under it opens them all."""
_COUNTED = ("project_code", "responsible_unit", "stage", "state", "level")


@dataclass(frozen=True)
class ProjectLine:
    """A project of the year on the overview: its open lines, and the worst level one of them stands at."""

    project: ProjectRecord
    recruiting_unit_name: str
    open_lines: int
    blocked: int
    level: str | None
    units: tuple[str, ...]  # names of the units with open lines


@dataclass(frozen=True)
class Cell:
    unit: str
    stage: Stage
    counts: Mapping[str, int]  # level → open lines at it


@dataclass(frozen=True)
class Overview:
    year: int
    projects: tuple[ProjectLine, ...]  # of the year, matching the search, latest signed first
    all_projects: int  # of the year
    units: tuple[tuple[str, str], ...]  # (code, name) of the units with open lines, in units.yaml's order
    stages: tuple[tuple[Stage, str], ...]
    cells: Mapping[tuple[str, str], Mapping[str, int]]  # (unit, stage) → level → count
    unit_totals: Mapping[str, Mapping[str, int]]
    stage_totals: Mapping[str, Mapping[str, int]]
    totals: Mapping[str, int]
    open_lines: int
    overdue: tuple[LinePage, ...]  # 红牌, then 黄牌
    blocked: LinePage


def of_year(project: ProjectRecord, year: int) -> bool:
    """Signed in ``year``, or before it and not all handed over before it began."""
    if project.signed_on.year > year:
        return False
    if project.signed_on.year == year:
        return True
    return project.delivered_at is None or local_day(project.delivered_at).year >= year


def _matches(line: ProjectLine, text: str) -> bool:
    wanted = text.casefold()
    p = line.project
    return any(wanted in value.casefold()
               for value in (p.code, p.name, p.enterprise, p.recruiting_unit, line.recruiting_unit_name, *line.units))


async def overview(repo: LedgerRepository, ctx: views.ViewContext, unit_names: Mapping[str, str], year: int,
                   text: str = "") -> Overview:
    """The overview of ``year``; ``text`` narrows its projects (code, name, enterprise, 招引单位 or a unit
    with open lines), ``unit_names`` (code → name, units.yaml's order) names the units."""
    fields = await repo.open_line_fields({}, _COUNTED)
    by_project: dict[str, list[Mapping[str, object]]] = {}
    for line in fields:
        by_project.setdefault(str(line["project_code"]), []).append(line)

    projects = []
    for project in await repo.all_projects():
        if not of_year(project, year):
            continue
        lines = by_project.get(project.code, [])
        levels = {str(line["level"]) for line in lines if line.get("level")}
        projects.append(ProjectLine(
            project=project, recruiting_unit_name=unit_names.get(project.recruiting_unit, project.recruiting_unit),
            open_lines=len(lines), blocked=sum(1 for line in lines if line["state"] == ItemState.BLOCKED.value),
            level=next((lv for lv in BOARD_LEVELS if lv in levels), None),
            units=tuple(sorted({unit_names.get(str(line["responsible_unit"]), str(line["responsible_unit"]))
                                for line in lines}))))
    projects.sort(key=lambda p: (p.project.signed_on, p.project.code), reverse=True)
    shown = tuple(p for p in projects if not text or _matches(p, text))

    cells: dict[tuple[str, str], Counter[str]] = {}
    unit_totals: dict[str, Counter[str]] = {}
    stage_totals: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for line in fields:
        unit, stage, level = str(line["responsible_unit"]), str(line["stage"]), line.get("level")
        cells.setdefault((unit, stage), Counter())
        unit_totals.setdefault(unit, Counter())
        if level:
            cells[(unit, stage)][str(level)] += 1
            unit_totals[unit][str(level)] += 1
            stage_totals.setdefault(stage, Counter())[str(level)] += 1
            totals[str(level)] += 1
    order = list(unit_names)
    units = tuple((code, unit_names.get(code, code))
                  for code in sorted(unit_totals, key=lambda c: (order.index(c) if c in order else len(order), c)))

    overdue = tuple([await read_page(repo, ctx, LineQuery(level=level), {"level": level}, size=LIST_SIZE)
                     for level in ("red", "yellow")])
    blocked = await read_page(repo, ctx, LineQuery(state=ItemState.BLOCKED), {"state": ItemState.BLOCKED.value},
                              size=LIST_SIZE)
    return Overview(year=year, projects=shown, all_projects=len(projects), units=units,
                    stages=tuple((s, STAGE_NAMES_ZH[s]) for s in Stage), cells=cells, unit_totals=unit_totals,
                    stage_totals=stage_totals, totals=totals, open_lines=len(fields), overdue=overdue, blocked=blocked)


def years(today: date, first: int = 2025) -> Sequence[int]:
    """The years the overview offers, this one first."""
    return list(range(today.year, first - 1, -1))
