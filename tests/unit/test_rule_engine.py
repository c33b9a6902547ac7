"""The durable-rules adapter contains the engine's known quirks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common.domain import Decision, Request, Unroutable
from services.common.rule_files import load_rulebook
from services.router.rule_engine import RoutingEngine, RuleEngineError, _Host, compile_ruleset
from tests.conftest import RULES


def test_an_exception_inside_an_action_surfaces_as_an_error_not_a_silent_pass(monkeypatch: pytest.MonkeyPatch,
                                                                             rules_copy: Any) -> None:
    # durable-rules swallows an action's exception into the session state; the adapter must raise.
    (rules_copy / "routing.yaml").write_text((rules_copy / "routing.yaml").read_text(encoding="utf-8")
                                             + "\n# a new version: its own ruleset names\n", encoding="utf-8")
    original = _Host.get_action

    def failing_action(self: _Host, name: str) -> Any:
        def boom(c: Any) -> None:
            raise ValueError("boom inside the action")
        return boom

    monkeypatch.setattr(_Host, "get_action", failing_action)
    engine = RoutingEngine(load_rulebook(rules_copy), cache_size=0)
    monkeypatch.setattr(_Host, "get_action", original)
    with pytest.raises(RuleEngineError, match="boom inside the action"):
        engine.decide("MA-01", Request.HANDLE, {})
    with pytest.raises(RuleEngineError, match="boom inside the action"):  # and again: never a silent pass
        engine.decide("LT-01", Request.HANDLE, {})


def test_the_same_rules_version_can_be_loaded_twice() -> None:
    # durable-rules refuses to register a ruleset name twice; a version is compiled once and reused
    book = load_rulebook(RULES)
    first, second = RoutingEngine(book), RoutingEngine(load_rulebook(RULES))
    assert first.version == second.version
    assert isinstance(second.decide("MA-01", Request.HANDLE, {}), Decision)


def test_compiled_ruleset_is_json_data_naming_only_rule_ids() -> None:
    book = load_rulebook(RULES)
    body = compile_ruleset(book)
    json.dumps(body)  # pure data
    assert {rule["run"] for rule in body.values()} == {rule.id for rule in book.rules}


def test_inequality_compiles_to_durable_neq_which_actually_matches() -> None:
    # `$ne` is silently accepted by durable-rules and never true; the joint rule relies on `ne`.
    body = compile_ruleset(load_rulebook(RULES))
    assert '"$neq"' in json.dumps(body["joint.district-department"]) and '"$ne"' not in json.dumps(body)
    decision = RoutingEngine(load_rulebook(RULES), cache_size=0).decide("LT-01", Request.HANDLE, {})
    assert isinstance(decision, Decision) and decision.rule_id == "joint.district-department"


def test_an_or_that_matches_twice_still_counts_as_one_rule(engine: RoutingEngine) -> None:
    # `unless` compiles to an `$or`; both branches can hold, which fires the rule twice as a fact
    facts = engine.facts_for("PL-03", Request.HANDLE, {"annual_energy_tce": 5000, "annual_electricity_10k_kwh": 900})
    assert engine.matching_rules(facts) == ["errand.energy-review-city"]
    decision = RoutingEngine(engine.book, cache_size=0).decide(
        "PL-03", Request.HANDLE, {"annual_energy_tce": 5000, "annual_electricity_10k_kwh": 900})
    assert isinstance(decision, Decision) and decision.rule_id == "errand.energy-review-city"


def test_a_missing_fact_satisfies_neither_a_comparison_nor_its_negation(engine: RoutingEngine) -> None:
    # The city tier's `unless` (under 1000 t AND under 500 万千瓦时) is negated into an `$or`; without
    # the electricity fact a small project must match no rule (and be parked for the missing fact),
    # never slip into the city tier or the not-required rule.
    facts = engine.facts_for("PL-03", Request.HANDLE, {"annual_energy_tce": 999})
    assert "project.annual_electricity_10k_kwh" not in facts
    assert engine.matching_rules(facts) == []
    with_fact = engine.facts_for("PL-03", Request.HANDLE, {"annual_energy_tce": 1000})
    assert engine.matching_rules(with_fact) == ["errand.energy-review-city"]


def test_a_not_required_rule_compiles_like_any_other_and_decides_as_unroutable(engine: RoutingEngine) -> None:
    book = engine.book
    body = compile_ruleset(book)
    rule = book.rule("not-required.energy-review-small")
    assert rule.then is None and rule.not_required
    assert body[rule.id]["run"] == rule.id
    decision = engine.decide("PL-03", Request.CONSULT, {"annual_energy_tce": 10, "annual_electricity_10k_kwh": 1})
    assert isinstance(decision, Unroutable)
    assert (decision.reason_code, decision.reason) == ("not_required", rule.not_required)
    assert decision.rules_version == book.version
    assert decision.facts["project.annual_electricity_10k_kwh"] == 1


@pytest.mark.parametrize("tiny", [1e-07, 3.5e-05, 5e-324])
def test_a_float_json_writes_in_exponent_notation_is_routed_not_refused_by_the_engine(engine: RoutingEngine,
                                                                                    tiny: float) -> None:
    """Found by fuzzing: durable-rules' parser refused ``1e-07`` ("Could not assert event, error code:
    204"), so an agreement with such a fact failed until it was parked. It counts as 0; the record
    keeps the value given."""
    decision = engine.decide("PL-03", Request.HANDLE, {"annual_energy_tce": tiny, "annual_electricity_10k_kwh": 1850})
    assert isinstance(decision, Decision) and decision.rule_id == "errand.energy-review-city"
    assert decision.facts["project.annual_energy_tce"] == tiny
    just_under = engine.decide("PL-03", Request.HANDLE, {"annual_energy_tce": 999.99999,
                                                         "annual_electricity_10k_kwh": 100})
    assert isinstance(just_under, Unroutable) and just_under.reason_code == "not_required"  # not rounded up to 1,000


@pytest.mark.parametrize("value", ["3200", "abc", True])
def test_a_fact_of_the_wrong_type_makes_the_item_unroutable_with_the_reason(engine: RoutingEngine, value: Any) -> None:
    """Found by fuzzing: an energy use of ``"abc"`` or ``true`` was routed by whichever rule the
    engine's comparison happened to pick; a rule never compares a fact of another type."""
    decision = engine.decide("PL-03", Request.HANDLE, {"annual_energy_tce": value, "annual_electricity_10k_kwh": 1850})
    assert isinstance(decision, Unroutable) and decision.reason_code == "invalid_fact"
    assert decision.reason == (f"事项 PL-03 的分派取决于项目事实 annual_energy_tce（年综合能源消费量（吨标准煤）） 应为数值，"
                               f"协议给出的是 {value!r}，请更正后重新提交")
    routed = engine.decide("MA-01", Request.HANDLE, {"annual_energy_tce": value})  # an item that does not test it
    assert isinstance(routed, Decision)


def test_a_number_fact_below_its_declared_minimum_is_unroutable_not_decided(engine: RoutingEngine) -> None:
    from datetime import UTC, datetime

    from services.common.domain import Request, Unroutable

    decided = engine.decide("PL-03", Request.HANDLE, {"annual_energy_tce": -1e15, "annual_electricity_10k_kwh": -1},
                            now=datetime(2026, 3, 1, tzinfo=UTC))
    assert isinstance(decided, Unroutable) and decided.reason_code == "invalid_fact"
    assert "annual_energy_tce（年综合能源消费量（吨标准煤）） 不能小于 0，协议给出的是 -1000000000000000.0" in decided.reason
