"""``item.reroute``: 政务服务局 moves an open item no unit has accepted to the unit the active rules
name; the ledger refuses it for anyone else and for items accepted or further on."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from services.common.domain import ServiceMode
from services.common.messages import (
    AcceptItem,
    AcceptTaskOrder,
    CompleteItem,
    ContactEnterprise,
    DeliverResults,
    IssueTaskOrder,
    ReportBlocker,
    ReportProgress,
    RerouteItem,
)
from services.evaluation.handlers import handle, sweep
from services.evaluation.ledger import ItemState
from services.evaluation.scoring import EvaluationConfig
from tests.unit.ledger_kit import at, ledger, request, routed, started
from tests.unit.test_ledger import item, sent

PLAN = "planning_construction_bureau"
GOV = "gov_service_bureau"
NEW = "public_utilities_bureau"
MON = date(2026, 11, 2)  # a Monday
WED = MON + timedelta(days=2)


def reroute(day: date, by: str = GOV, code: str = "PRJ1", item_code: str = "EP-01", **changes: Any) -> RerouteItem:
    fields: dict[str, Any] = {"mode": ServiceMode.JOINT, "responsible_unit": NEW, "approving_authority": NEW,
                              "evaluated_as": ServiceMode.JOINT, "evaluator": GOV, "task_order_required": False,
                              "rule_id": "joint.new", "rules_version": "v2"} | changes
    result: RerouteItem = request(RerouteItem, day, by, project_code=code, item_code=item_code, **fields)
    return result


async def _book(*items: Any, config: EvaluationConfig | None = None) -> Any:
    book = ledger(config)
    await handle(started("PRJ1", MON), book, at(MON))
    for routed_item in items or (routed("PRJ1", "EP-01", MON),):
        await handle(routed_item, book, at(MON))
    return book


async def _do(book: Any, model: Any, day: date, by: str = PLAN, item_code: str = "EP-01", **extra: Any) -> str:
    return await handle(request(model, day, by, project_code="PRJ1", item_code=item_code, **extra), book, at(day))


async def test_a_ready_item_moves_to_the_new_unit_and_its_service_clock_starts_again() -> None:
    book = await _book()
    assert await handle(reroute(WED), book, at(WED)) == "applied"
    moved = await item(book, "PRJ1/EP-01")
    assert (moved.state, moved.responsible_unit, moved.approving_authority, moved.mode) == (
        ItemState.READY, NEW, NEW, ServiceMode.JOINT)
    assert (moved.rule_id, moved.rules_version, moved.ready_on) == ("joint.new", "v2", WED)
    assert moved.history[-1].type == "item.rerouted" and moved.history[-1].by == GOV
    [event] = sent(book, "item.rerouted")
    assert (event.from_unit, event.to_unit, event.state, event.from_rules_version) == (PLAN, NEW, "ready", "test")
    assert event.materials == ("材料",) and event.reason == "规则版本变更"
    # only the new unit may now act on it (首问负责)
    assert await _do(book, ContactEnterprise, WED, by=PLAN) == "refused"
    assert await _do(book, ContactEnterprise, WED, by=NEW) == "applied"


async def test_a_contacted_item_is_ready_again_for_the_new_unit() -> None:
    book = await _book()
    assert await _do(book, ContactEnterprise, MON) == "applied"
    assert await handle(reroute(WED), book, at(WED)) == "applied"
    moved = await item(book, "PRJ1/EP-01")
    assert (moved.state, moved.contacted_on, moved.ready_on) == (ItemState.READY, None, WED)
    assert sent(book, "item.rerouted")[0].state == "ready"


async def test_a_waiting_item_keeps_waiting_under_its_new_unit() -> None:
    book = await _book(routed("PRJ1", "EP-02", MON, requires=("EP-01",)), routed("PRJ1", "EP-01", MON))
    assert await handle(reroute(WED, item_code="EP-02"), book, at(WED)) == "applied"
    moved = await item(book, "PRJ1/EP-02")
    assert (moved.state, moved.responsible_unit, moved.ready_on) == (ItemState.WAITING, NEW, None)


async def test_the_old_units_service_clock_levels_are_forgotten() -> None:
    book = await _book()
    late = MON + timedelta(days=30)
    assert {e.clock for e in await sweep(book, late, at(late))} == {"service"}
    assert await handle(reroute(late), book, at(late)) == "applied"
    moved = await item(book, "PRJ1/EP-01")
    assert not [s for s in moved.overdue_sent if s.startswith("service:")]
    assert await sweep(book, late, at(late)) == []  # the new unit's clock starts today


@pytest.mark.parametrize("steps, state", [
    ([(AcceptItem, {})], "已受理"),
    ([(AcceptItem, {}), (ReportProgress, {"note": "审查中"})], "办理中"),
    ([(AcceptItem, {}), (CompleteItem, {})], "已办结"),
    ([(AcceptItem, {}), (CompleteItem, {}), (DeliverResults, {"results": ("批复",)})], "已移交"),
    ([(ReportBlocker, {"reason": "缺少规划条件", "resolver": GOV})], "堵点/卡点"),
])
async def test_an_item_accepted_or_held_up_is_not_moved(steps: list[tuple[Any, dict[str, Any]]], state: str) -> None:
    book = await _book()
    for model, extra in steps:
        assert await _do(book, model, MON, **extra) == "applied"
    before = await item(book, "PRJ1/EP-01")
    assert await handle(reroute(WED), book, at(WED)) == "refused"
    reason = sent(book, "request.refused")[-1].reason
    assert f"当前状态为“{state}" in reason and "不能重新分派" in reason
    after = await item(book, "PRJ1/EP-01")
    assert (after.responsible_unit, after.state, after.version) == (PLAN, before.state, before.version)
    assert not sent(book, "item.rerouted")


@pytest.mark.parametrize("by", [PLAN, NEW, "econ_dev_bureau", "91150100MA0000001X"])
async def test_only_the_gov_service_bureau_reroutes(by: str) -> None:
    book = await _book()
    assert await handle(reroute(WED, by=by), book, at(WED)) == "refused"
    assert "重新分派由" in sent(book, "request.refused")[-1].reason
    assert (await item(book, "PRJ1/EP-01")).responsible_unit == PLAN


async def test_an_unchanged_decision_or_an_unknown_unit_is_refused() -> None:
    book = await _book()
    same = reroute(WED, mode=ServiceMode.JOINT, responsible_unit=PLAN, approving_authority=PLAN)
    assert await handle(same, book, at(WED)) == "refused"
    assert "无需重新分派" in sent(book, "request.refused")[-1].reason
    assert await handle(reroute(WED, responsible_unit="no_such_unit"), book, at(WED)) == "refused"
    assert "不在单位名录" in sent(book, "request.refused")[-1].reason


async def test_a_task_order_issued_but_not_accepted_is_withdrawn() -> None:
    book = await _book(routed("PRJ1", "EP-01", MON, unit="zhenglian_company", mode=ServiceMode.ERRAND))
    assert await _do(book, IssueTaskOrder, MON, by="econ_dev_bureau") == "applied"
    assert await handle(reroute(WED), book, at(WED)) == "applied"
    moved = await item(book, "PRJ1/EP-01")
    assert moved.task_order is None and not moved.task_order_required and moved.responsible_unit == NEW
    assert sent(book, "item.rerouted")[0].withdrawn_task_order == "RWD-PRJ1-EP-01"


async def test_a_task_order_accepted_keeps_the_item_where_it_is() -> None:
    book = await _book(routed("PRJ1", "EP-01", MON, unit="zhenglian_company", mode=ServiceMode.ERRAND))
    assert await _do(book, IssueTaskOrder, MON, by="econ_dev_bureau") == "applied"
    assert await _do(book, AcceptTaskOrder, MON, by="zhenglian_company", specialist_name="赵专员",
                     specialist_phone="13900000000") == "applied"
    assert await handle(reroute(WED), book, at(WED)) == "refused"
    assert "已由" in sent(book, "request.refused")[-1].reason and "接收" in sent(book, "request.refused")[-1].reason
    assert (await item(book, "PRJ1/EP-01")).responsible_unit == "zhenglian_company"


async def test_an_item_moved_to_an_errand_gets_its_task_order_when_the_rules_issue_them() -> None:
    book = await _book(config=EvaluationConfig(auto_issue_task_orders=True))
    to_errand = reroute(WED, mode=ServiceMode.ERRAND, responsible_unit="zhenglian_company",
                        approving_authority=PLAN, evaluated_as=ServiceMode.ERRAND, evaluator="econ_dev_bureau",
                        task_order_required=True)
    assert await handle(to_errand, book, at(WED)) == "applied"
    moved = await item(book, "PRJ1/EP-01")
    assert moved.task_order is not None and moved.task_order.assigned_to == "zhenglian_company"


async def test_a_redelivered_reroute_changes_nothing_more() -> None:
    book = await _book()
    command = reroute(WED)
    assert await handle(command, book, at(WED)) == "applied"
    version = (await item(book, "PRJ1/EP-01")).version
    assert await handle(command, book, at(WED)) == "duplicate"
    assert (await item(book, "PRJ1/EP-01")).version == version


async def test_a_units_own_system_cannot_reroute_in_the_gov_service_bureaus_name() -> None:
    book = await _book()
    book.unit_systems = {"zeroerrand-unit.planning_construction_bureau": PLAN}
    forged = reroute(WED, responsible_unit=PLAN, mode=ServiceMode.ASSIST)
    assert await handle(forged, book, at(WED), publisher="zeroerrand-unit.planning_construction_bureau") == "refused"
    assert "只能以本单位名义" in sent(book, "request.refused")[-1].reason
    # the operators' CLI (a user not in the map) may send it for 政务服务局
    assert await handle(reroute(WED), book, at(WED), publisher="zeroerrand-operator") == "applied"
