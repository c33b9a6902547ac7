"""Every catalog item is routed the way the policy says (section 四), under the shipped rules."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.domain import PREVIOUS_STAGE, Decision, Jurisdiction, Request, ServiceMode, Stage, Unroutable
from services.common.rule_files import load_rulebook
from services.router.rule_engine import RoutingEngine
from tests.conftest import RULES

BOOK = load_rulebook(RULES)
SMALL_PROJECT = {"annual_energy_tce": 1200}
LARGE_PROJECT = {"annual_energy_tce": 126000}
TINY_PROJECT = {"annual_energy_tce": 300, "annual_electricity_10k_kwh": 120}
ELECTRIC_PROJECT = {"annual_energy_tce": 800, "annual_electricity_10k_kwh": 650}

REGIONAL = "regional_development_reform_commission"
CITY = "city_development_reform_commission"


def energy_tier(facts: dict[str, Any]) -> str | None:
    """NDRC Order 2023 No. 2, written independently of routing.yaml: the reviewing authority, or None."""
    energy, electricity = facts["annual_energy_tce"], facts.get("annual_electricity_10k_kwh")
    if energy >= 10000:
        return REGIONAL
    if energy < 1000 and electricity is not None and electricity < 500:
        return None
    return CITY


def policy_expectation(item_code: str, facts: dict[str, Any]) -> tuple[ServiceMode, str, str] | None:
    """The policy's one-line rule: (mode, unit, authority), or None when the item is not needed."""
    item = BOOK.catalog[item_code]
    owner, jurisdiction = item.owner, item.jurisdiction
    if item_code == "PL-03":
        tier = energy_tier(facts)
        if tier is None:
            return None
        owner, jurisdiction = tier, BOOK.units[tier].jurisdiction
    if jurisdiction in (Jurisdiction.OUTSIDE, Jurisdiction.DISPATCHED):
        return ServiceMode.ERRAND, "zhenglian_company", owner
    if owner == "gov_service_bureau":
        return ServiceMode.ASSIST, owner, owner
    return ServiceMode.JOINT, owner, owner


PROJECTS = [SMALL_PROJECT, LARGE_PROJECT, TINY_PROJECT, ELECTRIC_PROJECT]
PROJECT_IDS = ["small", "large", "tiny", "electric"]


@pytest.mark.parametrize("facts", PROJECTS, ids=PROJECT_IDS)
@pytest.mark.parametrize("item_code", sorted(BOOK.catalog))
def test_every_catalog_item_is_routed_as_the_policy_says(engine: RoutingEngine, item_code: str,
                                                        facts: dict[str, Any]) -> None:
    expected = policy_expectation(item_code, facts)
    decision = engine.decide(item_code, Request.HANDLE, facts)
    if expected is None:
        assert isinstance(decision, Unroutable) and decision.reason_code == "not_required", decision
        return
    mode, unit, authority = expected
    assert isinstance(decision, Decision), decision
    assert (decision.mode, decision.responsible_unit, decision.approving_authority) == (mode, unit, authority)
    assert decision.routing_key == f"{mode.value}.{unit}"
    assert decision.task_order is (mode is ServiceMode.ERRAND)
    assert decision.evaluator == ("econ_dev_bureau" if mode is ServiceMode.ERRAND else "gov_service_bureau")


@pytest.mark.parametrize("facts", PROJECTS, ids=PROJECT_IDS)
@pytest.mark.parametrize("item_code", sorted(BOOK.catalog))
def test_consult_only_goes_to_the_unit_that_would_handle_it_and_is_evaluated_as_its_mode(
        engine: RoutingEngine, item_code: str, facts: dict[str, Any]) -> None:
    expected = policy_expectation(item_code, facts)
    decision = engine.decide(item_code, Request.CONSULT, facts)
    if expected is None:
        assert isinstance(decision, Unroutable) and decision.reason_code == "not_required", decision
        return
    mode, unit, authority = expected
    assert isinstance(decision, Decision), decision
    assert (decision.mode, decision.responsible_unit, decision.evaluated_as) == (ServiceMode.CONSULT, unit, mode)
    assert decision.approving_authority == authority
    assert decision.routing_key == f"consult.{unit}"


# ---- the energy review tiers (NDRC Order 2023 No. 2) ----------------------------------------

@pytest.mark.parametrize(("energy", "electricity", "authority", "rule_id"), [
    (999, 499, None, "not-required.energy-review-small"),
    (999, 499.9, None, "not-required.energy-review-small"),
    (999, 500, CITY, "errand.energy-review-city"),
    (0, 500, CITY, "errand.energy-review-city"),
    (1000, 0, CITY, "errand.energy-review-city"),
    (1000, None, CITY, "errand.energy-review-city"),      # from 1,000 t electricity does not matter
    (9999, 499, CITY, "errand.energy-review-city"),
    (9999.9, 499, CITY, "errand.energy-review-city"),
    (10000, 499, REGIONAL, "errand.energy-review-regional"),
    (10000, None, REGIONAL, "errand.energy-review-regional"),
    (126000, 102500, REGIONAL, "errand.energy-review-regional"),
])
def test_energy_review_tiers_and_their_boundaries(engine: RoutingEngine, energy: float, electricity: float | None,
                                                 authority: str | None, rule_id: str) -> None:
    facts: dict[str, float] = {"annual_energy_tce": energy}
    if electricity is not None:
        facts["annual_electricity_10k_kwh"] = electricity
    decision = engine.decide("PL-03", Request.HANDLE, facts)
    if authority is None:
        assert isinstance(decision, Unroutable)
        assert decision.reason_code == "not_required"
        assert decision.reason == BOOK.rule(rule_id).not_required
        assert "不单独进行节能审查" in decision.reason and "国家发展改革委令2023年第2号" in decision.reason
        return
    assert isinstance(decision, Decision), decision
    assert decision.rule_id == rule_id
    assert (decision.mode, decision.responsible_unit, decision.approving_authority) == (
        ServiceMode.ERRAND, "zhenglian_company", authority)
    assert decision.task_order and decision.evaluator == "econ_dev_bureau"


@pytest.mark.parametrize(("energy", "electricity", "authority", "rule_id"), [
    (999, 499, None, "not-required.energy-review-small"),
    (999, 500, CITY, "consult.energy-review-city"),
    (1000, None, CITY, "consult.energy-review-city"),
    (9999, None, CITY, "consult.energy-review-city"),
    (10000, None, REGIONAL, "consult.energy-review-regional"),
])
def test_energy_review_consult_is_given_by_zhenglian_and_evaluated_as_errand(
        engine: RoutingEngine, energy: float, electricity: float | None, authority: str | None, rule_id: str) -> None:
    facts: dict[str, float] = {"annual_energy_tce": energy}
    if electricity is not None:
        facts["annual_electricity_10k_kwh"] = electricity
    decision = engine.decide("PL-03", Request.CONSULT, facts)
    if authority is None:
        assert isinstance(decision, Unroutable) and decision.reason_code == "not_required"
        return
    assert isinstance(decision, Decision), decision
    assert decision.rule_id == rule_id
    assert (decision.mode, decision.responsible_unit, decision.evaluated_as, decision.approving_authority) == (
        ServiceMode.CONSULT, "zhenglian_company", ServiceMode.ERRAND, authority)
    assert decision.task_order and decision.routing_key == "consult.zhenglian_company"


def test_decision_record_names_rule_version_facts_and_time(engine: RoutingEngine) -> None:
    decision = engine.decide("PL-03", Request.HANDLE, LARGE_PROJECT)
    assert isinstance(decision, Decision)
    assert decision.rule_id == "errand.energy-review-regional"
    assert decision.rules_version == BOOK.version and len(decision.rules_version) == 12
    assert decision.facts == {"item.code": "PL-03", "item.jurisdiction": "outside", "item.owner": CITY,
                              "project.annual_energy_tce": 126000, "request": "handle"}
    assert decision.decided_at.tzinfo is not None


def test_missing_project_fact_is_unroutable_naming_the_fact(engine: RoutingEngine) -> None:
    decision = engine.decide("PL-03", Request.HANDLE, {})
    assert isinstance(decision, Unroutable)
    assert decision.reason_code == "missing_fact"
    assert "annual_energy_tce" in decision.reason and "年综合能源消费量" in decision.reason


def test_a_small_project_without_its_electricity_use_is_unroutable_naming_electricity(engine: RoutingEngine) -> None:
    decision = engine.decide("PL-03", Request.HANDLE, {"annual_energy_tce": 999})
    assert isinstance(decision, Unroutable)
    assert decision.reason_code == "missing_fact"
    assert "annual_electricity_10k_kwh" in decision.reason and "年电力消费量" in decision.reason
    assert "annual_energy_tce" not in decision.reason


def test_items_that_do_not_depend_on_a_missing_fact_still_route(engine: RoutingEngine) -> None:
    assert isinstance(engine.decide("MA-01", Request.HANDLE, {}), Decision)


def test_unknown_item_code_is_unroutable_never_guessed(engine: RoutingEngine) -> None:
    decision = engine.decide("PL-99", Request.HANDLE, SMALL_PROJECT)
    assert isinstance(decision, Unroutable)
    assert decision.reason_code == "unknown_item" and "PL-99" in decision.reason


@pytest.mark.parametrize(("code", "name", "replacement"), [
    ("EP-04", "人防工程设计审查", "EP-03（施工图联合审查）"),
    ("CP-05", "取水许可", "PL-08（取水许可）"),
    ("CA-01", "建设工程消防验收", "CA-03（联合竣工验收）"),
    ("CA-02", "规划条件核实", "CA-03（联合竣工验收）"),
])
@pytest.mark.parametrize("request_", list(Request))
def test_a_retired_code_is_unroutable_naming_its_replacement(engine: RoutingEngine, code: str, name: str,
                                                            replacement: str, request_: Request) -> None:
    decision = engine.decide(code, request_, SMALL_PROJECT)
    assert isinstance(decision, Unroutable)
    assert decision.reason_code == "retired_item"
    reason = BOOK.retired[code].reason
    assert decision.reason == f"事项 {code}（{name}）已停用：{reason}；请改为 {replacement}"
    assert decision.facts == {"item.code": code, "request": request_.value}


def test_cached_and_uncached_engines_decide_alike() -> None:
    cached, uncached = RoutingEngine(BOOK), RoutingEngine(BOOK, cache_size=0)
    for code in [*BOOK.catalog, *BOOK.retired]:
        for request in Request:
            for facts in (*PROJECTS, {}):
                a, b = cached.decide(code, request, facts), uncached.decide(code, request, facts)
                assert a.model_dump(exclude={"decided_at"}) == b.model_dump(exclude={"decided_at"})


def test_decision_record_shows_only_the_facts_that_can_change_the_decision(engine: RoutingEngine) -> None:
    facts = {"annual_energy_tce": 1777, "annual_electricity_10k_kwh": 300, "industry": "乳制品"}
    registration = engine.decide("MA-01", Request.HANDLE, facts)
    review = engine.decide("PL-03", Request.HANDLE, facts)
    assert isinstance(registration, Decision) and isinstance(review, Decision)
    assert "project.annual_energy_tce" not in registration.facts
    assert "project.annual_electricity_10k_kwh" not in registration.facts
    assert review.facts["project.annual_energy_tce"] == 1777
    assert review.facts["project.annual_electricity_10k_kwh"] == 300
    assert "project.industry" not in review.facts


# ---- the catalog's data ---------------------------------------------------------------------

def test_every_item_names_the_basis_of_its_time_limit_and_authority() -> None:
    for item in BOOK.catalog.values():
        assert item.basis.time_limit.strip() and item.basis.owner.strip(), item.code


def test_requirements_point_to_live_items_of_the_same_or_an_earlier_stage() -> None:
    order = list(Stage)
    for item in BOOK.catalog.values():
        if item.requires == PREVIOUS_STAGE:
            assert item.stage is not order[0]
            continue
        for code in item.requires:
            assert code in BOOK.catalog, (item.code, code)
            assert order.index(BOOK.catalog[code].stage) <= order.index(item.stage), (item.code, code)


def test_the_issue_fixes_are_in_the_catalog() -> None:
    assert {"CP-05", "EP-04", "CA-01", "CA-02"} == set(BOOK.retired)
    assert not set(BOOK.retired) & set(BOOK.catalog)
    water = BOOK.catalog["PL-08"]
    assert (water.stage, water.time_limit_days) == (Stage.PROJECT_LAND_PLANNING, 45)
    assert BOOK.retired["CP-05"].replaced_by == "PL-08"
    assert BOOK.retired["EP-04"].replaced_by == "EP-03"
    assert BOOK.retired["CA-01"].replaced_by == BOOK.retired["CA-02"].replaced_by == "CA-03"
    energy = BOOK.catalog["PL-03"]
    assert (energy.owner, energy.jurisdiction) == (CITY, Jurisdiction.OUTSIDE) and energy.to_confirm
    assert BOOK.units[REGIONAL].jurisdiction is Jurisdiction.OUTSIDE
    assert "regional_energy_authority" not in BOOK.units
    assert BOOK.catalog["PL-05"].owner == BOOK.catalog["PL-04"].owner == "natural_resources_branch"
    land = BOOK.catalog["LT-02"]
    assert "20日" in land.basis.time_limit and "10日" in land.basis.time_limit and land.to_confirm
    assert land.time_limit_days >= 22  # 20 + 10 calendar days are at least 22 working days
    assert set(BOOK.catalog["EP-02"].requires) >= {"EP-01"}
    assert set(BOOK.catalog["CP-01"].requires) >= {"EP-03"}
    assert set(BOOK.catalog["LT-03"].requires) == {"LT-02"}
    assert set(BOOK.catalog["MA-02"].requires) == set(BOOK.catalog["MA-03"].requires) == {"MA-01"}
