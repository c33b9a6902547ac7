"""Routing a whole agreement: eligibility, the ledger line, task orders, one-time notice, stable ids."""

from __future__ import annotations

from collections import Counter

from services.common.messages import PlannedItem
from services.router.routing import route_agreement
from services.router.rule_engine import RoutingEngine
from tests.conftest import ALUMINIUM, COMPUTING, CONSULT_UNKNOWN, INELIGIBLE, example


def test_eligible_industrial_project_routes_every_planned_item(engine: RoutingEngine) -> None:
    agreement = example(ALUMINIUM)
    result = route_agreement(agreement, engine)
    assert result.rejected is None and not result.unroutable
    assert Counter(r.item.mode.value for r in result.routed) == {"joint": 11, "errand": 10, "assist": 2}
    started = result.started
    assert started is not None
    assert (started.ledger_owner, started.items_planned, started.items_routed) == ("econ_dev_bureau", 23, 23)
    assert started.rules_version == engine.version


def test_routed_item_carries_everything_the_unit_and_enterprise_need(engine: RoutingEngine) -> None:
    result = route_agreement(example(ALUMINIUM), engine)
    land = next(r.item for r in result.routed if r.item.item_code == "LT-02")
    catalog_item = engine.book.catalog["LT-02"]
    assert land.project_code == "HLXQ-2026-0031" and land.stage_name == "土地使用权出让"
    assert land.materials == catalog_item.materials and len(land.materials) >= 3
    assert land.time_limit_days == catalog_item.time_limit_days
    assert land.fees and "国有建设用地使用权出让价款" in land.fee_note and "非服务收费" in land.fee_note
    assert land.responsible_unit_name == "内蒙古政联招商服务有限公司"
    assert land.task_order_required and land.decision.evaluator == "econ_dev_bureau"
    free = next(r.item for r in result.routed if r.item.item_code == "MA-01")
    assert not free.task_order_required and "无需企业缴纳任何费用" in free.fee_note


def test_routed_items_wait_for_the_planned_items_the_catalog_says_they_require(engine: RoutingEngine) -> None:
    result = route_agreement(example(ALUMINIUM), engine)
    requires = {r.item.item_code: r.item.requires for r in result.routed}
    assert requires["MA-01"] == () and requires["MA-02"] == requires["MA-03"] == ("MA-01",)
    assert requires["LT-03"] == ("LT-02",)
    assert requires["EP-02"] == ("PL-01", "PL-05", "EP-01")  # PL-02 (核准) is not planned: not waited for
    assert requires["CP-01"] == ("EP-02", "EP-03")
    assert requires["CA-03"] == ("CP-01", "CP-02", "CP-03", "CP-04")  # previous_stage
    assert requires["CA-06"] == ("LT-03", "CA-03", "CA-04")


def test_large_energy_project_sends_energy_review_to_errand(engine: RoutingEngine) -> None:
    result = route_agreement(example(COMPUTING), engine)
    assert Counter(r.item.mode.value for r in result.routed) == {"assist": 2, "joint": 2, "errand": 6}
    review = next(r.item for r in result.routed if r.item.item_code == "PL-03")
    assert (review.mode.value, review.approving_authority) == ("errand", "regional_development_reform_commission")
    assert review.approving_authority_name == "内蒙古自治区发展和改革委员会"
    assert review.decision.rule_id == "errand.energy-review-regional"
    water = next(r.item for r in result.routed if r.item.item_code == "PL-08")
    assert (water.mode.value, water.time_limit_days, water.stage_name) == ("errand", 45, "立项用地规划许可")


def test_medium_energy_project_sends_energy_review_to_the_city_commission(engine: RoutingEngine) -> None:
    result = route_agreement(example(ALUMINIUM), engine)
    review = next(r.item for r in result.routed if r.item.item_code == "PL-03")
    assert (review.mode.value, review.approving_authority) == ("errand", "city_development_reform_commission")
    assert review.approving_authority_name == "呼和浩特市发展和改革委员会"


def test_ineligible_agreement_routes_nothing_and_says_why(engine: RoutingEngine) -> None:
    result = route_agreement(example(INELIGIBLE), engine)
    assert result.started is None and not result.routed and not result.unroutable
    assert result.rejected is not None
    assert any("未约定“企业零跑腿”服务" in r for r in result.rejected.reasons)
    assert any("企业自愿" in r for r in result.rejected.reasons)


def test_committee_decision_makes_a_project_without_the_clause_eligible(engine: RoutingEngine) -> None:
    agreement = example(COMPUTING)
    assert not agreement.eligibility.zero_errand_clause
    assert route_agreement(agreement, engine).rejected is None


def test_unknown_recruiting_unit_is_rejected(engine: RoutingEngine) -> None:
    agreement = example(ALUMINIUM)
    agreement = agreement.model_copy(update={"project": agreement.project.model_copy(
        update={"recruiting_unit": "nobody"})})
    result = route_agreement(agreement, engine)
    assert result.rejected is not None and "nobody" in result.rejected.reasons[0]


def test_consult_item_and_unknown_code(engine: RoutingEngine) -> None:
    result = route_agreement(example(CONSULT_UNKNOWN), engine)
    assert Counter(r.item.mode.value for r in result.routed) == {"assist": 2, "consult": 2, "joint": 2}
    [parked] = result.unroutable
    assert (parked.item_code, parked.item_name, parked.unroutable.reason_code) == ("PL-99", None, "unknown_item")
    for code in ("PL-03", "PL-06"):  # 政联公司 gives advice on a task order too
        consult_errand = next(r.item for r in result.routed if r.item.item_code == code)
        assert consult_errand.task_order_required and consult_errand.responsible_unit == "zhenglian_company"
        assert consult_errand.decision.evaluated_as.value == "errand"


def test_a_retired_code_in_a_plan_is_parked_naming_its_replacement(engine: RoutingEngine) -> None:
    agreement = example(CONSULT_UNKNOWN)
    agreement = agreement.model_copy(update={"plan": (*agreement.plan, PlannedItem(item="EP-04"))})
    result = route_agreement(agreement, engine)
    [retired] = [u for u in result.unroutable if u.item_code == "EP-04"]
    assert retired.unroutable.reason_code == "retired_item"
    assert retired.unroutable.reason.startswith("事项 EP-04（人防工程设计审查）已停用：")
    assert retired.unroutable.reason.endswith("；请改为 EP-03（施工图联合审查）")


def test_an_energy_review_a_small_project_does_not_need_is_parked_as_not_required(engine: RoutingEngine) -> None:
    agreement = example(CONSULT_UNKNOWN)
    small = agreement.project.model_copy(update={"facts": {"annual_energy_tce": 600, "annual_electricity_10k_kwh": 300}})
    result = route_agreement(agreement.model_copy(update={"project": small}), engine)
    [review] = [u for u in result.unroutable if u.item_code == "PL-03"]
    assert (review.item_name, review.unroutable.reason_code) == ("固定资产投资项目节能审查", "not_required")
    assert "不单独进行节能审查" in review.unroutable.reason
    assert Counter(r.item.mode.value for r in result.routed) == {"assist": 2, "consult": 1, "joint": 2}


def test_duplicate_plan_line_is_parked_not_routed_twice(engine: RoutingEngine) -> None:
    agreement = example(CONSULT_UNKNOWN)
    agreement = agreement.model_copy(update={"plan": (*agreement.plan, PlannedItem(item="MA-01"))})
    result = route_agreement(agreement, engine)
    duplicate = [u for u in result.unroutable if u.unroutable.reason_code == "duplicate_in_plan"]
    assert len(duplicate) == 1 and "第 8 项与第 1 项重复" in duplicate[0].unroutable.reason


def test_advice_on_an_item_and_handling_it_are_two_lines_not_a_duplicate(engine: RoutingEngine) -> None:
    agreement = example(CONSULT_UNKNOWN)  # PL-06 is planned as advice only
    agreement = agreement.model_copy(update={"plan": (*agreement.plan, PlannedItem(item="PL-06"))})
    result = route_agreement(agreement, engine)
    lines = sorted((r.item.request.value, r.item.mode.value) for r in result.routed if r.item.item_code == "PL-06")
    assert lines == [("consult", "consult"), ("handle", "errand")]
    assert not [u for u in result.unroutable if u.unroutable.reason_code == "duplicate_in_plan"]
    advice = next(r.item for r in result.routed if r.item.item_code == "PL-06" and r.item.request.value == "consult")
    assert advice.requires == ()  # advice waits for nothing


def test_same_agreement_gives_the_same_ids_every_time(engine: RoutingEngine) -> None:
    first = route_agreement(example(CONSULT_UNKNOWN), engine)
    again = route_agreement(example(CONSULT_UNKNOWN), engine)
    ids = lambda r: ([r.started.event_id], [x.event_id for x in r.routed], [x.item.item_id for x in r.routed],  # noqa: E731
                     [x.event_id for x in r.unroutable])
    assert ids(first) == ids(again)
    other = route_agreement(example(CONSULT_UNKNOWN, suffix="other"), engine)
    assert not set(ids(first)[2]) & set(ids(other)[2])
