"""The read side of the ledger, for the web console and the CLI: plain frozen dataclasses with the
Chinese display names already in them, so that a template or a terminal line only prints.

Every function reads through a ``LedgerRepository`` by an index (a project's items, a unit's open
items, the items a unit must unblock, items by their task order, a 招引单位's projects, the rules
history, the unroutable items of a year), never the whole ledger. Who may see what is the caller's
business (the console checks the enterprise's access code or the unit's login); these functions
only read.

Overdue levels (电子监察): ``level`` of a line is the level its running clock stands at today
(``Cards`` of ``evaluation.yaml``: 预警 before the due day, 黄牌 once the limit has passed, 红牌 at the
configured severity), the same the sweep announces; a finished line, or a stopped clock, has none (a
clock that ended late says so with ``late``, 超时). ``overdue`` keeps what the sweep announced, as history.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from services.common.domain import MODE_NAMES_ZH, OVERDUE_LEVEL_NAMES_ZH, STAGE_NAMES_ZH, Request, ServiceMode, Stage
from services.evaluation.ledger import (
    CLOCK_NAMES_ZH,
    STATE_NAMES_ZH,
    Assessment,
    Cards,
    HistoryEntry,
    ItemState,
    LedgerItem,
    ProjectRecord,
    RequestOutcome,
    RulesRecord,
    UnroutableRecord,
    clock_readings,
    current_level,
    item_key,
    local_day,
)
from services.evaluation.repository import ORDER_STATES, LedgerRepository, order_state
from services.evaluation.working_days import WorkingCalendar, estimated_note

LEVELS = ("red", "yellow", "warning")
"""Overdue levels, worst first."""
TASK_ORDER_STATE_NAMES_ZH = {"to_issue": "待下发", "issued": "已下发，待接收", "accepted": "已接收", "closed": "已办结"}
REQUEST_LINE_NAMES_ZH = {Request.HANDLE: "办理", Request.CONSULT: "仅咨询"}
RULES_EVENT_NAMES_ZH = {"rules.activated": "规则生效", "rules.rejected": "规则修改被拒绝"}
UNROUTABLE_REASON_NAMES_ZH = {
    "no_rule": "没有适用的规则", "missing_fact": "缺少规则所需的项目事实", "invalid_fact": "项目事实取值不符合要求",
    "unknown_item": "服务事项清单中没有该事项", "retired_item": "该事项已停用", "duplicate_in_plan": "审批策划中重复",
    "not_required": "规则认定本项目无需办理",
}


@dataclass(frozen=True)
class ViewContext:
    """What a view needs besides the store: unit names (full or short, as the page wants them), the
    working-day calendar, the service-clock limit of ``evaluation.yaml`` and the day to count to;
    the cards and the task-order limit of ``evaluation.yaml`` (their defaults when not given)."""

    unit_names: Mapping[str, str]
    calendar: WorkingCalendar
    service_response_days: int
    today: date
    cards: Cards = field(default_factory=Cards)
    task_order_days: int | None = 2


@dataclass(frozen=True)
class ClockView:
    clock: str  # "service" (首问响应) or "statutory" (法定时限)
    name: str
    used: int  # working days, pauses excluded
    limit: int
    due: date
    running: bool
    late: bool
    start: date | None = None
    level: str | None = None  # the level this clock stands at now (a running clock only)
    level_name: str | None = None
    # years without holiday data the used days or the due day were estimated in (Monday–Friday), and
    # the note shown beside them: "2027 年节假日未录入，按周一至周五估算" ("" when nothing is estimated)
    estimated: tuple[int, ...] = ()
    estimated_note: str = ""


@dataclass(frozen=True)
class BlockerView:
    reason: str
    resolver: str
    resolver_name: str
    reported_by: str  # a unit code, or the enterprise's 统一社会信用代码
    reported_by_name: str
    opened_on: date
    closed_on: date | None
    by_enterprise: bool = False


@dataclass(frozen=True)
class TaskOrderView:
    number: str
    state: str  # issued / accepted / closed
    state_name: str
    automatic: bool
    assigned_to: str
    assigned_to_name: str
    specialist_name: str | None
    specialist_phone: str | None
    issued_on: date | None = None
    accepted_on: date | None = None


HISTORY_NAMES_ZH = {
    "item.routed": "分派", "item.ready": "具备办理条件", "item.contacted": "对接企业", "item.accepted": "受理",
    "item.progress": "报告进度", "item.blocked": "报告堵点/卡点", "item.unblocked": "解除堵点/卡点",
    "item.suspended": "中止（等待企业补正）", "item.resumed": "恢复办理", "item.completed": "办结",
    "item.delivered": "移交审批结果", "task_order.issued": "下发任务单", "task_order.accepted": "接收任务单",
    "item.rerouted": "重新分派", "item.withdrawn": "撤回（补充协议删除）",
}
"""What each entry of a ledger line's history is, as its page says it."""


@dataclass(frozen=True)
class HistoryView:
    """One entry of a ledger line's history: what was done, by whom (the unit, or the enterprise; the
    person who acted for it), when it happened and when the ledger recorded it, and what it said."""

    what: str
    by_name: str
    operator: str | None
    occurred_at: datetime
    recorded_at: datetime
    late: bool  # recorded more than a day after it happened (补录)
    from_state_name: str | None
    to_state_name: str
    detail: str  # the note, reason, results, 服务专员 or task order the request carried ("" if none)


@dataclass(frozen=True)
class ItemRow:
    """One ledger line as every page shows it."""

    key: str
    project_code: str
    item_code: str
    item_name: str
    request: Request
    stage: Stage
    stage_name: str
    mode: ServiceMode
    mode_name: str
    responsible_unit: str
    responsible_unit_name: str
    approving_authority_name: str
    materials: tuple[str, ...]
    fee_note: str | None
    time_limit_days: int
    state: ItemState
    state_name: str
    waiting_for: tuple[str, ...]  # prerequisites not yet delivered (only while waiting)
    clocks: tuple[ClockView, ...]
    overdue: tuple[str, ...]  # the levels the sweep announced, e.g. "statutory:yellow" (history)
    level: str | None  # the running clock's level now: "red" > "yellow" > "warning"
    blockers: tuple[BlockerView, ...]  # open ones
    results: tuple[str, ...]
    task_order: TaskOrderView | None
    task_order_required: bool
    task_order_to_issue: bool
    late_records: int
    request_name: str = "办理"
    approving_authority: str = ""
    overdue_names: tuple[str, ...] = ()  # the same, as people say them: "法定时限黄牌"
    level_name: str | None = None  # "黄牌"
    due: date | None = None  # when the running clock runs out
    running_clock: str | None = None
    due_note: str = ""  # beside ``due``: the years it was estimated in on Monday–Friday, if any
    ready_on: date | None = None
    delivered_on: date | None = None
    project_name: str = ""  # lists of many projects' lines say whose each line is
    enterprise_name: str = ""
    # the line's 服务专员: 政联公司's, named when it accepted the task order (专业跑腿), or 政务服务局's,
    # named when it contacted the enterprise (帮办代办, policy 四(一)); and the unit they work for
    specialist_name: str | None = None
    specialist_phone: str | None = None
    specialist_unit_name: str | None = None
    history: tuple[HistoryView, ...] = ()


@dataclass(frozen=True)
class ProjectProgress:
    project: ProjectRecord
    items: tuple[ItemRow, ...]
    delivered: int
    open_blockers: int
    level: str | None  # the highest level an open line stands at now
    total: int = 0
    level_name: str | None = None
    recruiting_unit_name: str = ""


@dataclass(frozen=True)
class RulesEventView:
    event_id: str
    type: str  # rules.activated / rules.rejected
    type_name: str
    occurred_at: datetime
    version: str | None  # activated: the version now in force
    previous_version: str | None
    attempted_version: str | None  # rejected: the version refused
    active_version: str | None  # rejected: the version that keeps routing
    problems: tuple[str, ...]
    rules: int | None
    items: int | None
    directory: str


@dataclass(frozen=True)
class ActiveRules:
    version: str
    since: datetime
    rules: int | None
    items: int | None


@dataclass(frozen=True)
class UnroutableView:
    project_code: str
    project_name: str
    recruiting_unit: str
    item_code: str
    item_name: str  # "清单中无此事项" when the catalog does not know the code
    request: Request
    request_name: str
    reason_code: str
    reason_name: str
    reason: str
    facts: Mapping[str, Any]
    rules_version: str
    decided_at: datetime
    agreement_id: str


def context_from_rules(rules_dir: Path, today: date | None = None, *, short_names: bool = False,
                       calendar: WorkingCalendar | None = None) -> ViewContext:
    """A ``ViewContext`` from ``units.yaml`` (full names, or short ones as the CLI prints them) and
    ``evaluation.yaml``; ``today`` defaults to today in the New Area. ``RulesError`` lists every problem."""
    from services.common.rule_files import load_rulebook
    from services.evaluation.holiday_file import load_calendar
    from services.evaluation.scoring import load_config

    units = load_rulebook(rules_dir).units
    names = {code: unit.short_name if short_names else unit.name for code, unit in units.items()}
    config = load_config(rules_dir)
    return ViewContext(unit_names=names, calendar=calendar or load_calendar(rules_dir),
                       service_response_days=config.service_response_days,
                       today=today or local_day(datetime.now(UTC)), cards=config.cards,
                       task_order_days=config.task_order_issue_days)


# -- lines ---------------------------------------------------------------------------------------


def _rank(level: str | None) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def _worst(levels: Iterable[str]) -> str | None:
    found = sorted(set(levels) & set(LEVELS), key=_rank)
    return found[0] if found else None


def _name(ctx: ViewContext, code: str) -> str:
    return ctx.unit_names.get(code, code)


def item_row(item: LedgerItem, ctx: ViewContext, delivered: set[str] | frozenset[str] = frozenset(),
             enterprises: Mapping[str, str] | None = None) -> ItemRow:
    """A ledger line for display. ``delivered``: the item codes of the project's delivered (handled)
    lines, which say what a waiting item still waits for; ``enterprises``: credit code → enterprise
    name, for blockers the enterprise itself reported."""
    readings = clock_readings(item, ctx.calendar, ctx.today, ctx.service_response_days, ctx.task_order_days)
    running, level = current_level(item, readings, ctx.cards)
    clocks = []
    for clock, r in readings.items():
        now = level if clock == running else None
        clocks.append(ClockView(clock=clock, name=CLOCK_NAMES_ZH[clock], used=r.used, limit=r.limit, due=r.due_on,
                                running=r.end is None, late=r.late, start=r.start, level=now,
                                level_name=OVERDUE_LEVEL_NAMES_ZH[now] if now else None,
                                estimated=r.estimated, estimated_note=estimated_note(r.estimated)))
    announced = tuple(item.overdue_sent)
    enterprises = enterprises or {}
    blockers = tuple(
        BlockerView(reason=b.reason, resolver=b.resolver, resolver_name=_name(ctx, b.resolver), reported_by=b.reported_by,
                    reported_by_name=_name(ctx, b.reported_by) if b.reported_by in ctx.unit_names
                    else f"服务对象{('（' + enterprises[b.reported_by] + '）') if b.reported_by in enterprises else ''}",
                    opened_on=b.opened_on, closed_on=b.closed_on, by_enterprise=b.reported_by not in ctx.unit_names)
        for b in item.open_blockers)
    order = item.task_order
    specialist = (order.specialist_name, order.specialist_phone, order.assigned_to) \
        if order is not None and order.specialist_name else \
        (item.specialist_name, item.specialist_phone, item.responsible_unit) if item.specialist_name else (None, None, None)
    return ItemRow(
        key=item.key, project_code=item.project_code, item_code=item.item_code, item_name=item.item_name,
        request=item.request, request_name=REQUEST_LINE_NAMES_ZH[item.request], stage=item.stage,
        stage_name=STAGE_NAMES_ZH[item.stage], mode=item.mode, mode_name=MODE_NAMES_ZH[item.mode],
        responsible_unit=item.responsible_unit, responsible_unit_name=_name(ctx, item.responsible_unit),
        approving_authority=item.approving_authority, approving_authority_name=_name(ctx, item.approving_authority),
        materials=item.materials, fee_note=item.fee_note, time_limit_days=item.time_limit_days, state=item.state,
        state_name=STATE_NAMES_ZH[item.state],
        waiting_for=item.waiting_for(set(delivered)) if item.state is ItemState.WAITING else (),
        clocks=tuple(clocks), overdue=announced,
        overdue_names=tuple(CLOCK_NAMES_ZH[c] + OVERDUE_LEVEL_NAMES_ZH[lv] for c, lv in (s.split(":", 1) for s in announced)),
        level=level,
        level_name=OVERDUE_LEVEL_NAMES_ZH[level] if level else None,
        blockers=blockers, results=item.results,
        task_order=None if order is None else TaskOrderView(
            number=order.number, state=order.state, state_name=TASK_ORDER_STATE_NAMES_ZH[order.state],
            automatic=order.automatic, assigned_to=order.assigned_to, assigned_to_name=_name(ctx, order.assigned_to),
            specialist_name=order.specialist_name, specialist_phone=order.specialist_phone, issued_on=order.issued_on,
            accepted_on=order.accepted_on),
        task_order_required=item.task_order_required, task_order_to_issue=order_state(item) == "to_issue",
        late_records=sum(1 for h in item.history if h.late),
        due=readings[running].due_on if running in readings else None, running_clock=running,
        due_note=estimated_note(readings[running].estimated) if running in readings else "",
        ready_on=item.ready_on, delivered_on=item.delivered_on,
        specialist_name=specialist[0], specialist_phone=specialist[1],
        specialist_unit_name=_name(ctx, specialist[2]) if specialist[2] else None,
        history=tuple(_history(h, ctx, enterprises) for h in item.history))


def _history(entry: HistoryEntry, ctx: ViewContext, enterprises: Mapping[str, str]) -> HistoryView:
    event = entry.events[0] if entry.events else {}
    if entry.request_id is None and (entry.type in ("item.routed", "item.ready") or event.get("automatic")):
        by_name = "系统（按服务规则）"  # what the ledger decided itself: no unit asked for it
    elif entry.type == "item.withdrawn":
        by_name = f"补充协议（{event.get('agreement_id', '')}）"
    elif entry.by in ctx.unit_names:
        by_name = _name(ctx, entry.by)
    else:  # the enterprise reports under its 统一社会信用代码
        by_name = "服务对象" + (f"（{enterprises[entry.by]}）" if entry.by in enterprises else "")
    details = []
    if event.get("specialist_name"):
        details.append(f"服务专员 {event['specialist_name']}（{event.get('specialist_phone') or ''}）")
    if entry.type == "task_order.issued" and event.get("number"):
        details.append(f"任务单 {event['number']}" + ("（按评价规则自动下发）" if event.get("automatic") else ""))
    if event.get("reason") and entry.type != "item.rerouted":
        details.append(str(event["reason"]))
    if entry.type == "item.blocked" and event.get("resolver"):
        details.append(f"须由{_name(ctx, str(event['resolver']))}解决")
    if entry.type == "item.rerouted" and event.get("to_unit"):
        details.append(f"{_name(ctx, str(event.get('from_unit')))} → {_name(ctx, str(event['to_unit']))}"
                       f"（{event.get('reason') or ''}）")
    if event.get("results"):
        details.append("移交：" + "；".join(str(r) for r in event["results"]))
    if event.get("note"):
        details.append(str(event["note"]))
    return HistoryView(what=HISTORY_NAMES_ZH.get(entry.type, entry.type), by_name=by_name, operator=entry.operator,
                       occurred_at=entry.occurred_at, recorded_at=entry.recorded_at, late=entry.late,
                       from_state_name=STATE_NAMES_ZH[entry.from_state] if entry.from_state else None,
                       to_state_name=STATE_NAMES_ZH[entry.to_state], detail="；".join(details))


def _delivered_codes(items: Iterable[LedgerItem]) -> set[str]:
    return {i.item_code for i in items if i.state is ItemState.DELIVERED and i.request is Request.HANDLE}


def _stage_order(row: ItemRow) -> tuple[int, str, str]:
    return list(Stage).index(row.stage), row.item_code, row.request.value


def _board_order(row: ItemRow) -> tuple[int, date, str]:
    return _rank(row.level), row.due or date.max, row.key


async def _rows(repo: LedgerRepository, ctx: ViewContext, items: Sequence[LedgerItem]) -> list[ItemRow]:
    """Rows for items of many projects, each with its project's and enterprise's names: which
    prerequisites of the waiting ones are delivered is looked up by their projects (ids only), the
    projects by their codes (those of these items only)."""
    needed = sorted({item_key(i.project_code, code) for i in items if i.state is ItemState.WAITING
                     for code in i.requires})
    delivered_keys = await repo.delivered_keys(needed) if needed else set()
    projects = {p.code: p for p in await repo.projects(sorted({i.project_code for i in items}))}
    enterprises = {p.credit_code: p.enterprise for p in projects.values()}
    rows = []
    for item in items:
        delivered = {code for code in item.requires if item_key(item.project_code, code) in delivered_keys}
        row = item_row(item, ctx, delivered, enterprises)
        project = projects.get(item.project_code)
        if project is not None:
            row = replace(row, project_name=project.name, enterprise_name=project.enterprise)
        rows.append(row)
    return rows


async def line_rows(repo: LedgerRepository, ctx: ViewContext, items: Sequence[LedgerItem]) -> list[ItemRow]:
    """Rows of lines read elsewhere (a page of ``open_lines``), in the order given, with their names."""
    return await _rows(repo, ctx, items)


# -- pages ---------------------------------------------------------------------------------------


def _progress(project: ProjectRecord, items: Sequence[LedgerItem], ctx: ViewContext) -> ProjectProgress:
    delivered = _delivered_codes(items)
    enterprises = {project.credit_code: project.enterprise}
    rows = tuple(sorted((item_row(i, ctx, delivered, enterprises) for i in items), key=_stage_order))
    level = _worst(r.level for r in rows if r.level)
    return ProjectProgress(
        project=project, items=rows, delivered=sum(1 for r in rows if r.state is ItemState.DELIVERED),
        open_blockers=sum(len(r.blockers) for r in rows), level=level, total=len(rows),
        level_name=OVERDUE_LEVEL_NAMES_ZH[level] if level else None,
        recruiting_unit_name=_name(ctx, project.recruiting_unit))


async def project_progress(repo: LedgerRepository, ctx: ViewContext, project_code: str) -> ProjectProgress | None:
    """The enterprise's page (一项一码): every planned line of its project, by stage then item code."""
    project = await repo.project(project_code)
    if project is None:
        return None
    return _progress(project, await repo.project_items(project_code), ctx)


def progress_document(progress: ProjectProgress) -> dict[str, Any]:
    """A project's progress as JSON-ready data (``zeroerrand ledger show --json``): the project record
    and, per line, its state, prerequisites, both clocks with their due dates, task order, announced
    overdue levels, open blockers and back-filled records."""
    return {"project": progress.project.model_dump(mode="json"), "items": [{
        "item": r.item_code, "request": r.request.value, "name": r.item_name, "stage": r.stage_name, "mode": r.mode_name,
        "unit": r.responsible_unit_name, "state": r.state_name, "waiting_for": list(r.waiting_for),
        "clocks": {c.clock: {"name": c.name, "used": c.used, "limit": c.limit, "due": c.due.isoformat(),
                             "running": c.running, "late": c.late, "estimated_years": list(c.estimated),
                             **({"estimated_note": c.estimated_note} if c.estimated else {})} for c in r.clocks},
        "task_order": None if r.task_order is None else {
            "number": r.task_order.number, "state": r.task_order.state, "automatic": r.task_order.automatic,
            "specialist": r.task_order.specialist_name, "phone": r.task_order.specialist_phone},
        "task_order_required": r.task_order_required,
        "overdue": list(r.overdue),
        "blockers": [{"reason": b.reason, "resolver": b.resolver_name} for b in r.blockers],
        "late_records": r.late_records} for r in progress.items]}


async def unit_board(repo: LedgerRepository, ctx: ViewContext, unit: str) -> list[ItemRow]:
    """A unit's board: the open items it is responsible for, worst overdue level first (red, yellow,
    warning, none), then the earliest due day of the running clock (none last)."""
    return sorted(await _rows(repo, ctx, await repo.unit_items(unit, open_only=True)), key=_board_order)


async def blockers_to_resolve(repo: LedgerRepository, ctx: ViewContext, unit: str) -> list[ItemRow]:
    """The open items with an open blocker ``unit`` must resolve, the longest-standing first."""
    items = [i for i in await repo.resolver_items(unit) if i.is_open and any(b.resolver == unit for b in i.open_blockers)]
    rows = await _rows(repo, ctx, items)
    return sorted(rows, key=lambda r: (min(b.opened_on for b in r.blockers if b.resolver == unit), r.key))


async def task_orders_to_issue(repo: LedgerRepository, ctx: ViewContext) -> list[ItemRow]:
    """经济发展招商服务局's list: items that need a 专业跑腿 task order, no longer wait and have none
    (ready, or blocked or suspended while ready), the longest-ready first."""
    rows = await _rows(repo, ctx, await repo.task_order_items(state="to_issue"))
    return sorted(rows, key=lambda r: (r.ready_on or date.max, r.key))


async def task_orders(repo: LedgerRepository, ctx: ViewContext, *, assigned_to: str | None = None,
                      state: str | None = None) -> list[ItemRow]:
    """Items with an issued task order, optionally of one assignee and one order state (``issued``:
    政联公司's orders to accept; ``accepted``, ``closed``), the earliest issued first."""
    if state is not None and state not in ORDER_STATES[1:]:
        raise ValueError(f"任务单状态只能是 {'、'.join(ORDER_STATES[1:])}，而不是 {state!r}")
    rows = await _rows(repo, ctx, await repo.task_order_items(state=state, assigned_to=assigned_to))
    return sorted(rows, key=lambda r: (r.task_order.issued_on if r.task_order and r.task_order.issued_on else date.max,
                                       r.key))


async def recruiting_projects(repo: LedgerRepository, ctx: ViewContext, unit: str) -> list[ProjectProgress]:
    """A 招引单位's page: the progress of every project it brought in, the latest signed first."""
    found = [_progress(p, await repo.project_items(p.code), ctx) for p in await repo.recruiting_unit_projects(unit)]
    return sorted(found, key=lambda p: (p.project.signed_on, p.project.code), reverse=True)


# -- 政务服务局: the rules and what they could not place ---------------------------------------------


def _rules_view(record: RulesRecord) -> RulesEventView:
    return RulesEventView(
        event_id=record.event_id, type=record.type, type_name=RULES_EVENT_NAMES_ZH[record.type],
        occurred_at=record.occurred_at, version=record.version, previous_version=record.previous_version,
        attempted_version=record.attempted_version, active_version=record.active_version, problems=record.problems,
        rules=record.rules, items=record.items, directory=record.directory)


FIRST_POLL_S = 0.005


async def request_outcome(repo: LedgerRepository, request_id: str, wait_s: float,
                          poll_s: float = 0.1) -> RequestOutcome | None:
    """What the ledger made of a request (applied or refused), waiting up to ``wait_s`` for it;
    None if it is still pending then (or not yet received)."""
    return (await request_outcomes(repo, [request_id], wait_s, poll_s))[request_id]


async def request_outcomes(repo: LedgerRepository, request_ids: Sequence[str], wait_s: float,
                           poll_s: float = 0.1) -> dict[str, RequestOutcome | None]:
    """What the ledger made of each request, waiting up to ``wait_s`` in all until every one is
    settled (one look-up a poll); None for one still pending then (or not yet received)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    settled: dict[str, RequestOutcome] = {}
    pause = min(FIRST_POLL_S, poll_s)  # most requests are decided within milliseconds: look soon, then less often
    while True:
        waiting = [i for i in dict.fromkeys(request_ids) if i not in settled]  # only what is still open
        settled |= {o.request_id: o for o in await repo.outcomes(waiting) if o.status != "pending"}
        if len(settled) == len(set(request_ids)) or loop.time() >= deadline:
            return {request_id: settled.get(request_id) for request_id in request_ids}
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 2, poll_s)


async def rules_history(repo: LedgerRepository, limit: int = 100) -> list[RulesEventView]:
    """The latest rules activated and rejected, newest first."""
    found = [*await repo.rules_events("rules.activated", limit), *await repo.rules_events("rules.rejected", limit)]
    found.sort(key=lambda r: (r.occurred_at, r.event_id), reverse=True)
    return [_rules_view(r) for r in found[:limit]]


async def active_rules_version(repo: LedgerRepository) -> ActiveRules | None:
    """The rules version the router announced last as active (None before any)."""
    latest = await repo.rules_events("rules.activated", 1)
    if not latest or latest[0].version is None:
        return None
    record, version = latest[0], latest[0].version
    return ActiveRules(version=version, since=record.occurred_at, rules=record.rules, items=record.items)


def _unroutable_view(record: UnroutableRecord) -> UnroutableView:
    return UnroutableView(
        project_code=record.project_code, project_name=record.project_name, recruiting_unit=record.recruiting_unit,
        item_code=record.item_code, item_name=record.item_name or "清单中无此事项", request=record.request,
        request_name=REQUEST_LINE_NAMES_ZH[record.request], reason_code=record.reason_code,
        reason_name=UNROUTABLE_REASON_NAMES_ZH.get(record.reason_code, record.reason_code), reason=record.reason,
        facts=json.loads(record.facts_json), rules_version=record.rules_version, decided_at=record.decided_at,
        agreement_id=record.agreement_id)


async def unroutable_items(repo: LedgerRepository, limit: int = 200, *, today: date | None = None) -> list[UnroutableView]:
    """The latest items no rule could place, newest first: this year's, then last year's if this
    year's are fewer than ``limit``."""
    year = (today or local_day(datetime.now(UTC))).year
    found = await repo.unroutable(year, limit)
    if len(found) < limit:
        found += await repo.unroutable(year - 1, limit - len(found))
    return [_unroutable_view(r) for r in found]


# -- 差评整改 (policy 五(六)): the rated unit's page, and its evaluators' --------------------------

RATER_NAMES_ZH = {"enterprise": "服务对象", "recruiting_unit": "项目招引单位"}


@dataclass(frozen=True)
class RectificationView:
    """A 差评 and its rectification: who rated which unit's service on which project, when it must be
    rectified, and whether (and when) it was, in time or late."""

    assessment_id: str
    project_code: str
    provider: str
    provider_name: str
    rater_name: str
    year: int
    total: float
    comment: str | None
    rated_on: date
    rectify_by: date | None
    rectified_on: date | None
    rectification: str | None
    late: bool  # rectified after its deadline, or still open past it
    state_name: str


def _rectification(a: Assessment, ctx: ViewContext) -> RectificationView:
    if a.rectified_on is not None:
        late = a.rectify_by is not None and a.rectified_on > a.rectify_by
        state = "逾期整改" if late else "已按期整改"
    else:
        late = a.rectify_by is not None and ctx.today > a.rectify_by
        state = "逾期未整改" if late else "待整改"
    return RectificationView(
        assessment_id=a.assessment_id, project_code=a.project_code, provider=a.provider,
        provider_name=_name(ctx, a.provider), rater_name=RATER_NAMES_ZH.get(a.rater, a.rater), year=a.year,
        total=a.total, comment=a.comment, rated_on=local_day(a.occurred_at), rectify_by=a.rectify_by,
        rectified_on=a.rectified_on, rectification=a.rectification, late=late, state_name=state)


def _open_first(found: Iterable[RectificationView]) -> list[RectificationView]:
    return sorted(found, key=lambda r: (r.rectified_on is not None, r.rectify_by or date.max, r.assessment_id))


async def rectifications_of(repo: LedgerRepository, ctx: ViewContext, provider: str) -> list[RectificationView]:
    """The 差评 of ``provider``'s service, the open ones first (earliest deadline first), then those rectified."""
    return _open_first(_rectification(a, ctx) for a in await repo.bad_assessments(provider))


async def rectifications_evaluated_by(repo: LedgerRepository, ctx: ViewContext, evaluator: str,
                                      years: Sequence[int]) -> list[RectificationView]:
    """The 差评 of ``years`` of the services ``evaluator`` evaluates (政务服务局: 帮办代办 and 联审联批,
    经发局: 专业跑腿), as it follows their rectification."""
    found = [a for year in years for a in await repo.assessments(year) if a.bad and evaluator in a.evaluators]
    return _open_first(_rectification(a, ctx) for a in found)
