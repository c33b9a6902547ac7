"""A request's ``requested_by`` tied to the AMQP ``user_id``: a unit's own system speaks for its
unit only (ZEROERRAND_EVALUATION_UNIT_SYSTEMS); the console, operators and services for any."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.common.messages import AcceptItem, CompleteItem, ReportEnterpriseIssue
from services.evaluation.handlers import handle
from services.evaluation.identity import NOT_GIVEN, UnitSystemsSettings, refusal
from services.evaluation.ledger import ItemState
from tests.unit.ledger_kit import CREDIT, at, ledger, request, routed, started

MON = date(2026, 11, 2)
PLAN = "planning_construction_bureau"
SYSTEMS = {"zeroerrand-unit.planning_construction_bureau": PLAN,
           "zeroerrand-unit.public_utilities_bureau": "public_utilities_bureau"}


def sent(book: Any, kind: str) -> list[Any]:
    return [o.message for o in book.publisher.sent if o.message.type == kind]


async def book_with_an_item() -> Any:
    book = ledger()
    book.unit_systems = SYSTEMS
    await handle(started("PRJ1", MON), book, at(MON))
    await handle(routed("PRJ1", "CP-01", MON), book, at(MON))
    return book


async def test_a_units_system_is_refused_when_it_speaks_for_another_unit_and_the_refusal_is_recorded() -> None:
    book = await book_with_an_item()
    # the utilities bureau's system sends the planning bureau's acceptance in its name
    forged = request(AcceptItem, MON, PLAN, project_code="PRJ1", item_code="CP-01")
    assert await handle(forged, book, at(MON), publisher="zeroerrand-unit.public_utilities_bureau") == "refused"
    [told] = sent(book, "request.refused")
    assert told.request_id == forged.request_id and told.requested_by == PLAN
    assert "zeroerrand-unit.public_utilities_bureau" in told.reason and "只能以本单位名义提交请求" in told.reason
    assert "不能代表 planning_construction_bureau" in told.reason
    outcome = await book.repo.outcome(forged.request_id)
    assert outcome is not None and outcome.status == "refused" and outcome.reason == told.reason
    assert (await book.repo.item("PRJ1/CP-01")).state is ItemState.READY
    # the same message again: the same refusal, nothing applied
    assert await handle(forged, book, at(MON), publisher="zeroerrand-unit.public_utilities_bureau") == "refused"
    assert (await book.repo.item("PRJ1/CP-01")).state is ItemState.READY


async def test_a_units_system_speaks_for_its_own_unit_and_the_services_users_for_any() -> None:
    book = await book_with_an_item()
    own = request(AcceptItem, MON, PLAN, project_code="PRJ1", item_code="CP-01")
    assert await handle(own, book, at(MON), publisher="zeroerrand-unit.planning_construction_bureau") == "applied"
    # an operator at the console, for the planning bureau
    done = request(CompleteItem, MON, PLAN, project_code="PRJ1", item_code="CP-01")
    assert await handle(done, book, at(MON), publisher="zeroerrand-console") == "applied"
    assert sent(book, "request.refused") == []


async def test_a_units_system_cannot_speak_for_the_enterprise() -> None:
    book = await book_with_an_item()
    issue = request(ReportEnterpriseIssue, MON, CREDIT, project_code="PRJ1", item_code="CP-01", reason="卡点")
    assert await handle(issue, book, at(MON), publisher="zeroerrand-unit.planning_construction_bureau") == "refused"
    assert f"不能代表 {CREDIT}" in sent(book, "request.refused")[-1].reason


async def test_a_copy_of_an_applied_request_from_another_units_system_changes_nothing() -> None:
    book = await book_with_an_item()
    own = request(AcceptItem, MON, PLAN, project_code="PRJ1", item_code="CP-01")
    assert await handle(own, book, at(MON), publisher="zeroerrand-unit.planning_construction_bureau") == "applied"
    assert await handle(own, book, at(MON), publisher="zeroerrand-unit.public_utilities_bureau") == "refused"
    outcome = await book.repo.outcome(own.request_id)
    assert outcome is not None and outcome.status == "applied"
    assert sent(book, "request.refused") == []


def test_the_rule() -> None:
    assert refusal("zeroerrand-unit.public_utilities_bureau", PLAN, SYSTEMS) is not None
    assert refusal("zeroerrand-unit.planning_construction_bureau", PLAN, SYSTEMS) is None
    assert refusal("zeroerrand-console", "anyone", SYSTEMS) is None
    # without a user_id nothing ties the request to a sender, once units' systems are known
    reason = refusal(None, PLAN, SYSTEMS)
    assert reason is not None and "没有 AMQP user_id" in reason
    # not configured, or not told who sent it: no check (as before)
    assert refusal("zeroerrand-unit.public_utilities_bureau", PLAN, {}) is None
    assert refusal(NOT_GIVEN, PLAN, SYSTEMS) is None


def test_the_map_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROERRAND_EVALUATION_UNIT_SYSTEMS", '{"zeroerrand-unit.tax_branch": "tax_branch"}')
    assert UnitSystemsSettings().unit_systems == {"zeroerrand-unit.tax_branch": "tax_branch"}
    assert ledger().unit_systems == {"zeroerrand-unit.tax_branch": "tax_branch"}
    monkeypatch.delenv("ZEROERRAND_EVALUATION_UNIT_SYSTEMS")
    assert ledger().unit_systems == {}
