"""The enterprise is told when the 堵点/卡点 it reported is received and when it is resolved (its page
in the console promises it), through the notification plan; a unit's own 堵点 is not its business."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.common.messages import AcceptItem, ReportBlocker, ReportEnterpriseIssue, ResolveBlocker
from services.common.rule_files import load_rulebook
from services.evaluation.handlers import handle
from services.notifier.compose import Composer, ItemView, ProjectView
from services.notifier.plan import load_plan
from tests.conftest import RULES
from tests.unit.ledger_kit import CREDIT, at, ledger, project, request, routed, started

BOOK = load_rulebook(RULES)
COMPOSER = Composer(load_plan(RULES, BOOK.units), BOOK.units, BOOK.catalog)
PLAN = "planning_construction_bureau"
MON, TUE, WED = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)
CODE = "PRJ-ISSUE"


def notices(book: Any, kind: str) -> list[dict[str, Any]]:
    p = project(CODE)
    view = ProjectView(p.code, p.name, p.enterprise, p.recruiting_unit)
    item = ItemView(CODE, "EP-03", "施工图联合审查", PLAN)
    events = [o.message for o in book.publisher.sent if o.message.type == kind]
    return [d for e in events for d in COMPOSER.compose(e, view, item, at(WED))]


def to_enterprise(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d["recipient"] == f"enterprise:{CREDIT}"]


async def accepted() -> Any:
    book = ledger()
    await handle(started(CODE, MON), book, at(MON))
    await handle(routed(CODE, "EP-03", MON), book, at(MON))
    await handle(request(AcceptItem, MON, PLAN, project_code=CODE, item_code="EP-03"), book, at(MON))
    return book


async def test_the_enterprise_is_told_its_blocker_was_received_and_then_resolved() -> None:
    book = await accepted()
    issue = request(ReportEnterpriseIssue, TUE, CREDIT, project_code=CODE, item_code="EP-03", reason="图审意见反复修改")
    assert await handle(issue, book, at(TUE)) == "applied"
    [received] = to_enterprise(notices(book, "item.blocked"))
    assert received["title"] == "已收到您反映的堵点/卡点：施工图联合审查"
    assert "图审意见反复修改" in received["body"] and "解决后将再通知您" in received["body"]
    assert "和林格尔新区规划建设局" in received["body"]  # who must resolve it

    resolve = request(ResolveBlocker, WED, PLAN, project_code=CODE, item_code="EP-03", note="已与审图机构统一意见")
    assert await handle(resolve, book, at(WED)) == "applied"
    [unblocked] = [o.message for o in book.publisher.sent if o.message.type == "item.unblocked"]
    assert [(b.reason, b.reported_by) for b in unblocked.resolved] == [("图审意见反复修改", CREDIT)]
    [resolved] = to_enterprise(notices(book, "item.unblocked"))
    assert resolved["title"] == "您反映的堵点/卡点已解决：施工图联合审查"
    assert "1. 图审意见反复修改" in resolved["body"] and "已与审图机构统一意见" in resolved["body"]


async def test_a_blocker_a_unit_reported_is_not_announced_to_the_enterprise() -> None:
    book = await accepted()
    block = request(ReportBlocker, TUE, PLAN, project_code=CODE, item_code="EP-03", reason="消防设计需补充",
                    resolver="public_utilities_bureau")
    assert await handle(block, book, at(TUE)) == "applied"
    assert to_enterprise(notices(book, "item.blocked")) == []
    resolve = request(ResolveBlocker, WED, "public_utilities_bureau", project_code=CODE, item_code="EP-03")
    assert await handle(resolve, book, at(WED)) == "applied"
    assert to_enterprise(notices(book, "item.unblocked")) == []
    assert {d["role"] for d in notices(book, "item.unblocked")} == {"recruiting_unit"}
