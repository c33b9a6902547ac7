"""One project, one record, with the in-memory fakes: the router's registry and publisher, the ledger's
repository, the notifier's composer. The router's messages are handed to the ledger as the events
queue would, so the whole path is pure here (tests/integration/test_amendments.py runs it for real)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.bus import MemoryPublisher
from services.common.domain import Request
from services.common.messages import (
    AcceptItem,
    AgreementAmended,
    AgreementRejected,
    AgreementSigned,
    ItemWithdrawn,
    PlanAmended,
    PlannedItem,
    ProjectAmended,
    RoutedItem,
    item_routed,
    stable_id,
)
from services.evaluation.handlers import handle
from services.evaluation.ledger import ItemState, item_key
from services.notifier.compose import ItemView, ProjectView
from services.router.active_rules import ActiveRules
from services.router.handlers import handle_agreement
from services.router.registry import MemoryAgreementRegistry
from services.router.routing import line_id
from tests.conftest import ALUMINIUM, RULES, example
from tests.unit.ledger_kit import ledger
from tests.unit.test_notification_plan import COMPOSER

GOV = "gov_service_bureau"


def signed(items: tuple[str, ...], suffix: str = "am", **changes: Any) -> AgreementSigned:
    event = example(ALUMINIUM, suffix=suffix)
    return event.model_copy(update={"plan": tuple(PlannedItem(item=code) for code in items), **changes})


def amendment(base: AgreementSigned, items: tuple[str, ...], agreement_id: str, **project: Any) -> AgreementAmended:
    body = base.model_dump(exclude={"type", "event_id", "backfill"})
    body.update(agreement_id=agreement_id, event_id=stable_id(agreement_id, "agreement.amended"),
                plan=[{"item": code} for code in items], project={**body["project"], **project})
    return AgreementAmended.model_validate(body)


@pytest.fixture
async def rules() -> ActiveRules:
    active = ActiveRules(RULES)
    await active.reload()
    return active


async def route(agreement: AgreementSigned | AgreementAmended, rules: ActiveRules, registry: MemoryAgreementRegistry,
                ) -> list[Any]:
    fake = MemoryPublisher()
    await handle_agreement(agreement, rules, fake, registry)
    return [o.message for o in fake.sent]


def as_events(messages: list[Any]) -> list[Any]:
    """What the ledger's queue makes of the router's messages (a routed item is read as item.routed)."""
    return [item_routed(m) if isinstance(m, RoutedItem) else m for m in messages]


async def test_a_second_agreement_for_a_known_code_is_refused_with_the_reason_and_redelivery_is_harmless(
        rules: ActiveRules) -> None:
    registry = MemoryAgreementRegistry()
    first = signed(("MA-01", "MA-02"))
    taken = await route(first, rules, registry)
    assert [type(m).__name__ for m in taken] == ["ServiceStarted", "RoutedItem", "RoutedItem"]
    assert [m.item_id for m in taken[1:]] == [line_id(first.project.code, c, Request.HANDLE) for c in ("MA-01", "MA-02")]
    # the same agreement again (a redelivery): the same messages under the same ids
    again = await route(first.model_copy(update={"recorded_at": datetime.now(UTC)}), rules, registry)
    assert [getattr(m, "event_id", None) or m.item_id for m in again] == \
        [getattr(m, "event_id", None) or m.item_id for m in taken]
    # another agreement id for the same code, one more line: refused, nothing routed
    second = signed(("MA-01", "MA-02", "MA-03"), agreement_id=first.agreement_id + "-2")
    [refused] = await route(second, rules, registry)
    assert isinstance(refused, AgreementRejected) and refused.reason_code == "project_known"
    assert f"已由协议 {first.agreement_id} 启动" in refused.reasons[0] and "--amend" in refused.reasons[0]
    # the same agreement id with another plan: refused
    [reused] = await route(signed(("MA-01",)), rules, registry)
    assert isinstance(reused, AgreementRejected) and reused.reason_code == "agreement_id_reused"
    assert reused.event_id != refused.event_id
    assert (await registry.refusal(first.agreement_id, "x")) is None
    # an amendment of a project never signed
    [unknown] = await route(amendment(signed(("MA-01",), suffix="none"), ("MA-01", "MA-02"), "S-none"), rules,
                            registry)
    assert isinstance(unknown, AgreementRejected) and unknown.reason_code == "project_unknown"


async def test_an_amendment_adds_one_line_withdraws_an_unaccepted_one_keeps_an_accepted_one_and_tells_once(
        rules: ActiveRules) -> None:
    registry = MemoryAgreementRegistry()
    books = ledger()
    now = datetime.now(UTC)
    first = signed(("MA-01", "MA-02", "PL-01"))
    code = first.project.code
    for event in as_events(await route(first, rules, registry)):
        await handle(event, books, now)
    accept = AcceptItem(request_id="acc-1", requested_at=now, occurred_at=now, requested_by=GOV, project_code=code,
                        item_code="MA-01")
    assert await handle(accept, books, now) == "applied"

    change = amendment(first, ("PL-01", "MA-03", "MA-02"), first.agreement_id + "-S1")
    nothing = amendment(first, ("MA-01", "MA-02", "PL-01"), first.agreement_id + "-S0")
    [same] = await route(nothing, rules, registry)  # no change at all: refused, says why
    assert isinstance(same, AgreementRejected) and same.reason_code == "amendment_invalid"

    sent = await route(amendment(first, ("PL-01", "MA-03"), first.agreement_id + "-S1", recruiting_unit=GOV),
                       rules, registry)
    amended, *items = sent
    assert isinstance(amended, PlanAmended) and amended.revision == 1
    assert [(a.item_code, a.item_id) for a in amended.added] == [("MA-03", line_id(code, "MA-03", Request.HANDLE))]
    assert [r.item_code for r in amended.removed] == ["MA-01", "MA-02"]
    assert [(i.item_code, i.amendment_id) for i in items] == [("MA-03", first.agreement_id + "-S1")]
    assert change.agreement_id == amended.agreement_id  # the same id with other content would now be refused:
    [reused] = await route(change, rules, registry)
    assert isinstance(reused, AgreementRejected) and reused.reason_code == "agreement_id_reused"

    publisher = books.publisher
    assert isinstance(publisher, MemoryPublisher)
    publisher.sent.clear()
    for event in as_events(sent):
        await handle(event, books, now)
    again = await handle(amended, books, now)  # a redelivery announces what was recorded
    assert again == "duplicate"

    lines = {i.item_code: i for i in await books.repo.project_items(code)}
    assert lines["MA-02"].state is ItemState.WITHDRAWN and not lines["MA-02"].is_open
    assert lines["MA-01"].state is ItemState.ACCEPTED and "MA-03" in lines
    project = await books.repo.project(code)
    assert project is not None
    assert (project.items_planned, project.recruiting_unit, project.revision, project.amendments) == (
        2, GOV, 1, (first.agreement_id + "-S1",))
    out = [o.message for o in publisher.sent]
    withdrawn = [m for m in out if isinstance(m, ItemWithdrawn)]
    told = [m for m in out if isinstance(m, ProjectAmended)]
    assert [w.item_code for w in withdrawn] == ["MA-02"]
    assert len({t.event_id for t in told}) == 1 and told[0] == told[-1]
    assert [w.item_code for w in told[0].withdrawn] == ["MA-02"]
    assert [(k.item_code, k.state) for k in told[0].kept] == [("MA-01", "accepted")]
    assert "已受理" in told[0].kept[0].reason and "不能撤回" in told[0].kept[0].reason
    # a withdrawn line cannot be worked on
    late = AcceptItem(request_id="acc-2", requested_at=now, occurred_at=now, requested_by=GOV, project_code=code,
                      item_code="MA-02")
    assert await handle(late, books, now) == "refused"
    assert (await books.repo.item(item_key(code, "MA-02"))).state is ItemState.WITHDRAWN  # type: ignore[union-attr]

    # the enterprise: one notice of the amendment (per channel), none for the added item itself
    view = ProjectView(code, first.project.name, first.project.enterprise, GOV)
    notices = COMPOSER.compose(told[0], view, None, now)
    enterprise = [n for n in notices if n["recipient"].startswith("enterprise:")]
    assert {n["channel"] for n in enterprise} == {"inbox", "email", "sms"} and len(enterprise) == 3
    body = enterprise[0]["body"]
    assert "新增审批事项 1 项" in body and "税务登记及发票申领（MA-03）" in body and "撤回审批事项 1 项" in body
    assert "不能撤回" in body and "项目招引单位由" in body
    assert {n["recipient"] for n in notices} >= {"unit:econ_dev_bureau", f"unit:{GOV}"}
    [routed] = [m for m in sent if isinstance(m, RoutedItem)]
    per_item = COMPOSER.compose(item_routed(routed), view, ItemView(code, "MA-03", routed.item_name,
                                                                   routed.responsible_unit), now)
    assert per_item and not [n for n in per_item if n["recipient"].startswith("enterprise:")]
    [unit_notice] = [n for n in COMPOSER.compose(withdrawn[0], view, None, now) if n["channel"] == "inbox"
                     and n["recipient"] == f"unit:{lines['MA-02'].responsible_unit}"]
    assert "已从贵单位的待办中撤回" in unit_notice["body"]
