"""The console's views over a simulated year on the real store: 300 projects signed through 2026,
each planning every catalog item (and one advice-only line) routed by the real rules, every line
moved along by a fixed seed (prerequisites, 首问负责, task orders, 受理, blockers the units and the
enterprises reported, suspensions, the sweep's overdue cards). The same documents go into the
in-memory fake: every view must read the same from both, and a unit's board must be exactly that
unit's open lines. How long each view took is printed (run with ``-s``), never asserted."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, timedelta
from typing import Any, TypeVar

import pytest

from services.common.domain import ECON_DEV_BUREAU, Request
from services.common.messages import PlannedItem
from services.common.storage import Store
from services.evaluation.ledger import (
    Blocker,
    ItemState,
    LedgerItem,
    Pause,
    ProjectRecord,
    TaskOrderRecord,
    local_day,
    new_item,
    overdue,
    task_order_number,
    unroutable_record,
)
from services.evaluation.repository import (
    ITEMS,
    LedgerRepository,
    MemoryLedgerRepository,
    MongoLedgerRepository,
    item_doc,
)
from services.evaluation.views import (
    LEVELS,
    ViewContext,
    blockers_to_resolve,
    project_progress,
    recruiting_projects,
    task_orders,
    task_orders_to_issue,
    unit_board,
    unroutable_items,
)
from services.evaluation.working_days import WorkingCalendar
from services.router.routing import route_agreement
from services.router.rule_engine import RoutingEngine
from tests.conftest import ALUMINIUM, example
from tests.unit.ledger_kit import UNIT_NAMES, at

pytestmark = pytest.mark.integration

PROJECTS = 300
TODAY = date(2026, 12, 15)
SERVICE_DAYS = 2
RECRUITERS = ("econ_dev_bureau", "gov_service_bureau", "planning_construction_bureau", "public_utilities_bureau")
ZL = "zhenglian_company"
T = TypeVar("T")


def credit_code(n: int) -> str:
    return f"91150100MA{n:07d}X"


class Year:
    """The simulated year: projects, ledger lines, unroutable items, all built by a fixed seed."""

    def __init__(self, engine: RoutingEngine, seed: int = 2026) -> None:
        self.rng = random.Random(seed)
        self.calendar = WorkingCalendar()
        self.projects: list[ProjectRecord] = []
        self.items: list[LedgerItem] = []
        self.unroutable: list[Any] = []
        plan = (*(PlannedItem(item=code) for code in sorted(engine.book.catalog)),
                PlannedItem(item="PL-06", request=Request.CONSULT))
        base = example(ALUMINIUM)
        for n in range(PROJECTS):
            signed = date(2026, 1, 5) + timedelta(days=int(n * 340 / PROJECTS))
            credit = credit_code(n)
            enterprise = base.project.enterprise.model_copy(update={"credit_code": credit, "name": f"企业{n:03d}"})
            facts = {**base.project.facts, "annual_energy_tce": self.rng.choice([800, 3200, 6000, 12000])}
            project = base.project.model_copy(update={
                "code": f"HLXQ-2026-{n:04d}", "name": f"项目{n:03d}", "enterprise": enterprise, "facts": facts,
                "recruiting_unit": self.rng.choice(RECRUITERS)})
            extra = (PlannedItem(item="ZZ-99"),) if n % 25 == 0 else ()  # now and then a code not in the catalog
            agreement = base.model_copy(update={"agreement_id": f"A-{n:04d}", "project": project, "signed_on": signed,
                                                "plan": (*plan, *extra)})
            result = route_agreement(agreement, engine, lambda signed=signed: at(signed).astimezone(UTC))
            assert result.started is not None
            started = result.started
            self.projects.append(ProjectRecord(
                code=project.code, agreement_id=agreement.agreement_id, name=project.name, enterprise=enterprise.name,
                credit_code=credit, recruiting_unit=project.recruiting_unit, signed_on=signed,
                ledger_owner=ECON_DEV_BUREAU, items_planned=started.items_planned, items_routed=started.items_routed,
                items_unroutable=started.items_unroutable, rules_version=started.rules_version,
                started_at=started.occurred_at, recorded_at=started.occurred_at))
            self.unroutable += [unroutable_record(u, u.occurred_at) for u in result.unroutable]
            lines = [new_item(r) for r in result.routed]
            self.items += self.move(lines, signed, credit)

    def add(self, day: date, days: int) -> date:
        return self.calendar.add_working_days(day, days) if days > 0 else day

    def move(self, lines: list[LedgerItem], signed: date, credit: str) -> list[LedgerItem]:
        """Each line along its way up to TODAY, prerequisites first (a line waits until every
        prerequisite is delivered)."""
        delivered: dict[str, date] = {}
        done: dict[str, LedgerItem] = {}
        pending = list(lines)
        while pending:
            unfinished = {p.item_code for p in pending if p.request is Request.HANDLE}
            line = next(i for i in pending if not set(i.requires) & unfinished)
            pending.remove(line)
            moved = self.move_one(line, signed, {c: delivered[c] for c in line.requires if c in delivered}, credit)
            done[moved.key] = moved
            if moved.state is ItemState.DELIVERED and moved.request is Request.HANDLE and moved.delivered_on:
                delivered[moved.item_code] = moved.delivered_on
        return [done[i.key] for i in lines]

    def move_one(self, item: LedgerItem, signed: date, delivered: dict[str, date], credit: str) -> LedgerItem:
        rng = self.rng
        if any(code not in delivered for code in item.requires):
            return item  # waits
        ready = max([signed, *delivered.values()])
        if ready > TODAY:
            return item
        change: dict[str, Any] = {"state": ItemState.READY, "ready_on": ready}
        start = ready
        if item.task_order_required:
            issued = self.add(ready, rng.choice([0, 1, 2, 40]))
            if issued > TODAY:
                return self.finish(item, change)  # 经发局 has not issued it yet
            order = TaskOrderRecord(number=task_order_number(item.key), issued_by=ECON_DEV_BUREAU,
                                    assigned_to=item.responsible_unit, automatic=False, issued_on=issued)
            accepted = self.add(issued, rng.choice([0, 1, 1, 30]))
            if accepted > TODAY:
                return self.finish(item, {**change, "task_order": order})
            order = order.model_copy(update={"state": "accepted", "accepted_on": accepted, "specialist_name": "李专员",
                                             "specialist_phone": "13800000000"})
            change["task_order"] = order
            start = accepted
        contacted = self.add(start, rng.choice([0, 1, 1, 2, 3, 6]))
        if contacted > TODAY:
            return self.finish(item, change, blockable=True, credit=credit)
        change |= {"state": ItemState.CONTACTED, "contacted_on": contacted}
        if item.request is Request.CONSULT:
            finished = self.add(contacted, rng.choice([0, 1, 2]))
            if finished > TODAY:
                return self.finish(item, change)
            return self.finish(item, {**change, "state": ItemState.DELIVERED, "finished_on": finished,
                                      "delivered_on": finished, "results": ("咨询意见",)})
        accepted_on = self.add(contacted, rng.choice([0, 1, 2]))
        if accepted_on > TODAY:
            return self.finish(item, change, blockable=True, credit=credit)
        change |= {"state": ItemState.ACCEPTED, "accepted_on": accepted_on}
        finished = self.add(accepted_on, max(1, round(item.time_limit_days * rng.uniform(0.3, 1.7))))
        if finished > TODAY:
            return self.finish(item, change, blockable=True, credit=credit)
        delivered_on = self.add(finished, rng.choice([0, 1]))
        change |= {"state": ItemState.COMPLETED, "finished_on": finished}
        if delivered_on > TODAY:
            return self.finish(item, change)
        order = change.get("task_order")
        if order is not None:
            change["task_order"] = order.model_copy(update={"state": "closed", "closed_on": delivered_on})
        return self.finish(item, {**change, "state": ItemState.DELIVERED, "delivered_on": delivered_on,
                                  "results": ("批复文件",)})

    def finish(self, item: LedgerItem, change: dict[str, Any], blockable: bool = False, credit: str = "") -> LedgerItem:
        moved = item.model_copy(update=change)
        roll = self.rng.random()
        if blockable and roll < 0.12:  # a 堵点: the unit's own (someone else resolves it) or the enterprise's
            by_enterprise = roll < 0.04
            resolver = moved.responsible_unit if by_enterprise else self.rng.choice(sorted(UNIT_NAMES))
            blocker = Blocker(id=f"b-{moved.key}", reason="图审意见反复修改", resolver=resolver,
                              reported_by=credit if by_enterprise else moved.responsible_unit,
                              opened_on=TODAY - timedelta(days=self.rng.randint(0, 20)))
            moved = moved.model_copy(update={"state": ItemState.BLOCKED, "resume_to": moved.state, "blockers": (blocker,)})
        elif blockable and roll < 0.17:
            pause = Pause(from_day=TODAY - timedelta(days=self.rng.randint(0, 10)), reason="补正材料")
            moved = moved.model_copy(update={"state": ItemState.SUSPENDED, "resume_to": moved.state, "pauses": (pause,)})
        # the sweep's cards, as the service would have announced them by today
        now = at(TODAY, 18)
        while (found := overdue(moved, self.calendar, TODAY, SERVICE_DAYS, now)) is not None:
            moved = found.item
        return moved


async def timed(label: str, call: Callable[[], Awaitable[T]], timings: dict[str, list[float]]) -> T:
    began = time.perf_counter()
    result = await call()
    timings.setdefault(label, []).append(time.perf_counter() - began)
    return result


async def test_the_views_over_a_year_read_the_same_from_the_store_as_from_the_fake(
        store: Store, engine: RoutingEngine) -> None:
    year = Year(engine)
    items, projects = year.items, year.projects
    states = Counter(i.state.value for i in items)
    print(f"\nsimulated year: {len(projects)} projects, {len(items)} ledger lines {dict(states)}, "
          f"{len(year.unroutable)} unroutable")
    assert len(items) >= PROJECTS * 20 and states["waiting"] and states["delivered"] and states["blocked"]

    real = MongoLedgerRepository(store)
    await real.ensure()
    began = time.perf_counter()
    await store.db[ITEMS.name].insert_many([item_doc(i) for i in items])
    fake = MemoryLedgerRepository()
    fake.tables[ITEMS.name] = {i.key: item_doc(i) for i in items}
    repos: tuple[LedgerRepository, ...] = (real, fake)
    for repo in repos:
        for project in projects:
            await repo.add_project(project)
        for record in year.unroutable:
            await repo.add_unroutable(record)
    print(f"stored in {time.perf_counter() - began:.1f} s")

    ctx = ViewContext(unit_names=UNIT_NAMES, calendar=year.calendar, service_response_days=SERVICE_DAYS, today=TODAY)
    timings: dict[str, list[float]] = {}
    for unit in sorted(UNIT_NAMES):
        board = await timed("unit_board", lambda unit=unit: unit_board(real, ctx, unit), timings)
        assert board == await unit_board(fake, ctx, unit)
        expected = {i.key for i in items if i.responsible_unit == unit and i.is_open}
        assert [r.key for r in board if r.key in expected] == [r.key for r in board]
        assert len(board) == len(expected) and {r.key for r in board} == expected
        order = [(LEVELS.index(r.level) if r.level else 3, r.due or date.max) for r in board]
        assert order == sorted(order)

        unblock = await timed("blockers_to_resolve", lambda unit=unit: blockers_to_resolve(real, ctx, unit),
                              timings)
        assert unblock == await blockers_to_resolve(fake, ctx, unit)
        assert {r.key for r in unblock} == {i.key for i in items if any(b.resolver == unit for b in i.open_blockers)}

    to_issue = await timed("task_orders_to_issue", lambda: task_orders_to_issue(real, ctx), timings)
    assert to_issue == await task_orders_to_issue(fake, ctx) and to_issue
    assert {r.key for r in to_issue} == {i.key for i in items if i.task_order_required and i.task_order is None
                                         and i.is_open and i.state is not ItemState.WAITING}
    to_accept = await timed("task_orders(issued)", lambda: task_orders(real, ctx, assigned_to=ZL, state="issued"), timings)
    assert to_accept == await task_orders(fake, ctx, assigned_to=ZL, state="issued") and to_accept
    assert {r.key for r in to_accept} == {i.key for i in items if i.task_order and i.task_order.state == "issued"
                                          and i.task_order.assigned_to == ZL}
    every_order = await timed("task_orders", lambda: task_orders(real, ctx), timings)
    assert len(every_order) == sum(1 for i in items if i.task_order is not None)

    for unit in RECRUITERS:
        brought = await timed("recruiting_projects", lambda unit=unit: recruiting_projects(real, ctx, unit), timings)
        assert brought == await recruiting_projects(fake, ctx, unit)
        assert {p.project.code for p in brought} == {p.code for p in projects if p.recruiting_unit == unit}
    for project in projects[::30]:
        shown = await timed("project_progress", lambda code=project.code: project_progress(real, ctx, code), timings)
        assert shown is not None and shown == await project_progress(fake, ctx, project.code)
        assert shown.total == sum(1 for i in items if i.project_code == project.code)

    parked = await timed("unroutable_items", lambda: unroutable_items(real, today=TODAY), timings)
    assert parked == await unroutable_items(fake, today=TODAY)
    assert len(parked) == min(200, sum(1 for r in year.unroutable if local_day(r.decided_at).year in (2025, 2026)))

    for label, spent in timings.items():
        print(f"{label:<22} {len(spent):>3} calls, mean {1000 * sum(spent) / len(spent):7.1f} ms, "
              f"max {1000 * max(spent):7.1f} ms")

