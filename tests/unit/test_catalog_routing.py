"""Every catalog item is routed the way the policy says (section 四), under the shipped rules."""

from __future__ import annotations

import pytest

from services.common.domain import Decision, Jurisdiction, Request, ServiceMode, Unroutable
from services.common.rule_engine import RoutingEngine
from services.common.rule_files import load_rulebook
from tests.conftest import RULES

BOOK = load_rulebook(RULES)
SMALL_PROJECT = {"annual_energy_tce": 1200}
LARGE_PROJECT = {"annual_energy_tce": 126000}


def policy_expectation(item_code: str, facts: dict[str, float]) -> tuple[ServiceMode, str, str]:
    """The policy's one-line rule, written independently of routing.yaml: (mode, unit, authority)."""
    item = BOOK.catalog[item_code]
    owner, jurisdiction = item.owner, item.jurisdiction
    if item_code == "PL-03" and facts["annual_energy_tce"] >= 5000:
        owner, jurisdiction = "regional_energy_authority", Jurisdiction.OUTSIDE
    if jurisdiction in (Jurisdiction.OUTSIDE, Jurisdiction.DISPATCHED):
        return ServiceMode.ERRAND, "zhenglian_company", owner
    if owner == "gov_service_bureau":
        return ServiceMode.ASSIST, owner, owner
    return ServiceMode.JOINT, owner, owner


@pytest.mark.parametrize("facts", [SMALL_PROJECT, LARGE_PROJECT], ids=["small", "large"])
@pytest.mark.parametrize("item_code", sorted(BOOK.catalog))
def test_every_catalog_item_is_routed_as_the_policy_says(engine: RoutingEngine, item_code: str,
                                                        facts: dict[str, float]) -> None:
    mode, unit, authority = policy_expectation(item_code, facts)
    decision = engine.decide(item_code, Request.HANDLE, facts)
    assert isinstance(decision, Decision), decision
    assert (decision.mode, decision.responsible_unit, decision.approving_authority) == (mode, unit, authority)
    assert decision.routing_key == f"{mode.value}.{unit}"
    assert decision.task_order is (mode is ServiceMode.ERRAND)
    assert decision.evaluator == ("econ_dev_bureau" if mode is ServiceMode.ERRAND else "gov_service_bureau")


@pytest.mark.parametrize("item_code", sorted(BOOK.catalog))
def test_consult_only_goes_to_the_unit_that_would_handle_it_and_is_evaluated_as_its_mode(
        engine: RoutingEngine, item_code: str) -> None:
    mode, unit, _ = policy_expectation(item_code, SMALL_PROJECT)
    decision = engine.decide(item_code, Request.CONSULT, SMALL_PROJECT)
    assert isinstance(decision, Decision), decision
    assert (decision.mode, decision.responsible_unit, decision.evaluated_as) == (ServiceMode.CONSULT, unit, mode)
    assert decision.routing_key == f"consult.{unit}"


@pytest.mark.parametrize(("energy", "mode"), [(4999.9, ServiceMode.ASSIST), (5000, ServiceMode.ERRAND),
                                              (5000.1, ServiceMode.ERRAND)])
def test_energy_review_goes_to_the_regional_authority_from_5000_tce(engine: RoutingEngine, energy: float,
                                                                   mode: ServiceMode) -> None:
    decision = engine.decide("PL-03", Request.HANDLE, {"annual_energy_tce": energy})
    assert isinstance(decision, Decision)
    assert decision.mode is mode


def test_decision_record_names_rule_version_facts_and_time(engine: RoutingEngine) -> None:
    decision = engine.decide("PL-03", Request.HANDLE, LARGE_PROJECT)
    assert isinstance(decision, Decision)
    assert decision.rule_id == "errand.energy-review-regional"
    assert decision.rules_version == BOOK.version and len(decision.rules_version) == 12
    assert decision.facts == {"item.code": "PL-03", "item.jurisdiction": "district", "item.owner": "gov_service_bureau",
                              "project.annual_energy_tce": 126000, "request": "handle"}
    assert decision.decided_at.tzinfo is not None


def test_missing_project_fact_is_unroutable_naming_the_fact(engine: RoutingEngine) -> None:
    decision = engine.decide("PL-03", Request.HANDLE, {})
    assert isinstance(decision, Unroutable)
    assert decision.reason_code == "missing_fact"
    assert "annual_energy_tce" in decision.reason and "年综合能源消费量" in decision.reason


def test_items_that_do_not_depend_on_a_missing_fact_still_route(engine: RoutingEngine) -> None:
    assert isinstance(engine.decide("MA-01", Request.HANDLE, {}), Decision)


def test_unknown_item_code_is_unroutable_never_guessed(engine: RoutingEngine) -> None:
    decision = engine.decide("PL-99", Request.HANDLE, SMALL_PROJECT)
    assert isinstance(decision, Unroutable)
    assert decision.reason_code == "unknown_item" and "PL-99" in decision.reason


def test_cached_and_uncached_engines_decide_alike() -> None:
    cached, uncached = RoutingEngine(BOOK), RoutingEngine(BOOK, cache_size=0)
    for code in BOOK.catalog:
        for request in Request:
            for facts in (SMALL_PROJECT, LARGE_PROJECT, {}):
                a, b = cached.decide(code, request, facts), uncached.decide(code, request, facts)
                assert a.model_dump(exclude={"decided_at"}) == b.model_dump(exclude={"decided_at"})


def test_decision_record_shows_only_the_facts_that_can_change_the_decision(engine: RoutingEngine) -> None:
    registration = engine.decide("MA-01", Request.HANDLE, {"annual_energy_tce": 777, "industry": "乳制品"})
    review = engine.decide("PL-03", Request.HANDLE, {"annual_energy_tce": 777, "industry": "乳制品"})
    assert isinstance(registration, Decision) and isinstance(review, Decision)
    assert "project.annual_energy_tce" not in registration.facts
    assert review.facts["project.annual_energy_tce"] == 777
