"""The enterprise's own 堵点/卡点 report, and the read side the console and the CLI share
(``views.py``), on the in-memory fakes: who sees which lines, in which order, with which names."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.common.domain import Request, ServiceMode, Stage, Unroutable
from services.common.messages import (
    AcceptItem,
    AcceptTaskOrder,
    CompleteItem,
    DeliverResults,
    IssueTaskOrder,
    ItemUnroutable,
    ReportBlocker,
    ReportEnterpriseIssue,
    ResolveBlocker,
    RulesActivated,
    RulesRejected,
    SuspendItem,
)
from services.evaluation.handlers import handle, sweep
from services.evaluation.ledger import ItemState
from services.evaluation.repository import UnknownSubject
from services.evaluation.views import (
    ViewContext,
    active_rules_version,
    blockers_to_resolve,
    context_from_rules,
    project_progress,
    recruiting_projects,
    rules_history,
    task_orders,
    task_orders_to_issue,
    unit_board,
    unroutable_items,
)
from tests.conftest import RULES
from tests.unit.ledger_kit import CREDIT, UNIT_NAMES, at, ledger, request, routed, started

PLAN = "planning_construction_bureau"
UTIL = "public_utilities_bureau"
GOV = "gov_service_bureau"
ZL = "zhenglian_company"
MON = date(2026, 11, 2)  # a Monday
OTHER_CREDIT = "91150100MA0000002Y"


def sent(book: Any, kind: str) -> list[Any]:
    return [o.message for o in book.publisher.sent if o.message.type == kind]


def context(book: Any, today: date) -> ViewContext:
    return ViewContext(unit_names=UNIT_NAMES, calendar=book.calendar, service_response_days=2, today=today)


def issue(day: date, by: str, item: str = "EP-03", project: str = "PRJ1", reason: str = "图审意见反复修改") -> Any:
    return request(ReportEnterpriseIssue, day, by, project_code=project, item_code=item, reason=reason)


async def accepted_item(book: Any, project: str = "PRJ1", item: str = "EP-03") -> None:
    await handle(started(project, MON), book, at(MON))
    await handle(routed(project, item, MON), book, at(MON))
    await handle(request(AcceptItem, MON, PLAN, project_code=project, item_code=item), book, at(MON))


# -- the enterprise reports a 堵点/卡点 -----------------------------------------------------------


async def test_the_enterprise_reports_a_blocker_the_responsible_unit_must_resolve() -> None:
    book = ledger()
    await accepted_item(book)
    tue = date(2026, 11, 3)
    first = issue(tue, CREDIT)
    assert await handle(first, book, at(tue)) == "applied"
    [blocked] = sent(book, "item.blocked")
    assert (blocked.reported_by, blocked.resolver, blocked.request_id) == (CREDIT, PLAN, first.request_id)
    item = await book.repo.item("PRJ1/EP-03")
    assert item.state is ItemState.BLOCKED and item.resume_to is ItemState.ACCEPTED
    [blocker] = item.open_blockers
    assert (blocker.reported_by, blocker.resolver, blocker.opened_on) == (CREDIT, PLAN, tue)
    assert item.history[-1].by == CREDIT

    # already blocked: another blocker, and the item still goes back to where it was before
    unit_blocker = request(ReportBlocker, tue, PLAN, project_code="PRJ1", item_code="EP-03", reason="管线",
                           resolver=UTIL)
    assert await handle(unit_blocker, book, at(tue)) == "refused"  # a unit's blocker: only from an active state
    assert await handle(issue(tue, CREDIT, reason="现场踏勘一直未安排"), book, at(tue)) == "applied"
    item = await book.repo.item("PRJ1/EP-03")
    assert len(item.open_blockers) == 2 and item.resume_to is ItemState.ACCEPTED
    assert await handle(first, book, at(tue)) == "duplicate"  # a redelivery changes nothing

    # the responsible unit resolves it with the existing request
    assert await handle(request(ResolveBlocker, tue, PLAN, project_code="PRJ1", item_code="EP-03"), book,
                        at(tue)) == "applied"
    item = await book.repo.item("PRJ1/EP-03")
    assert item.state is ItemState.ACCEPTED and not item.open_blockers


async def test_a_unit_cannot_send_the_enterprises_report() -> None:
    book = ledger()
    await accepted_item(book)
    assert await handle(issue(MON, PLAN), book, at(MON)) == "refused"
    reason = sent(book, "request.refused")[-1].reason
    assert "只能由服务对象企业" in reason and "item.report_blocker" in reason
    assert (await book.repo.item("PRJ1/EP-03")).state is ItemState.ACCEPTED


async def test_another_enterprises_credit_code_is_refused() -> None:
    book = ledger()
    await accepted_item(book)
    assert await handle(issue(MON, OTHER_CREDIT), book, at(MON)) == "refused"
    reason = sent(book, "request.refused")[-1].reason
    assert OTHER_CREDIT in reason and "不是项目 PRJ1 的服务对象" in reason and CREDIT not in reason
    assert not sent(book, "item.blocked")


async def test_a_waiting_item_names_what_it_waits_for() -> None:
    book = ledger()
    await handle(started("PRJ2", MON), book, at(MON))
    await handle(routed("PRJ2", "EP-01", MON), book, at(MON))
    await handle(routed("PRJ2", "EP-02", MON, requires=("EP-01",)), book, at(MON))
    assert await handle(issue(MON, CREDIT, item="EP-02", project="PRJ2"), book, at(MON)) == "refused"
    reason = sent(book, "request.refused")[-1].reason
    assert "等待前置事项 EP-01" in reason and "还未开始办理" in reason


async def test_suspended_completed_and_delivered_items_say_why_not() -> None:
    book = ledger()
    await accepted_item(book)
    await handle(request(SuspendItem, MON, PLAN, project_code="PRJ1", item_code="EP-03", reason="补正消防设计文件"),
                 book, at(MON))
    assert await handle(issue(MON, CREDIT), book, at(MON)) == "refused"
    assert "等待企业补正：补正消防设计文件" in sent(book, "request.refused")[-1].reason

    await handle(routed("PRJ1", "CP-01", MON), book, at(MON))
    for model, extra in ((AcceptItem, {}), (CompleteItem, {})):
        await handle(request(model, MON, PLAN, project_code="PRJ1", item_code="CP-01", **extra), book, at(MON))
    assert await handle(issue(MON, CREDIT, item="CP-01"), book, at(MON)) == "refused"
    assert "已于 2026-11-02 办结" in sent(book, "request.refused")[-1].reason
    await handle(request(DeliverResults, MON, PLAN, project_code="PRJ1", item_code="CP-01", results=("许可证",)), book,
                 at(MON))
    assert await handle(issue(MON, CREDIT, item="CP-01"), book, at(MON)) == "refused"
    assert "移交审批结果，办理已结束" in sent(book, "request.refused")[-1].reason


async def test_an_issue_about_a_project_not_recorded_yet_is_retried_then_refused() -> None:
    book = ledger()
    await handle(routed("PRJ3", "EP-03", MON), book, at(MON))  # its service.started is still on the way
    ask = issue(MON, CREDIT, project="PRJ3")
    with pytest.raises(UnknownSubject):
        await handle(ask, book, at(MON), final=False)
    assert await handle(ask, book, at(MON), final=True) == "refused"
    assert "台账中没有项目 PRJ3" in sent(book, "request.refused")[-1].reason


# -- views ---------------------------------------------------------------------------------------


async def test_project_progress_orders_lines_by_stage_then_item_and_names_everything() -> None:
    book = ledger()
    await handle(started("PRJ4", MON), book, at(MON))
    await handle(routed("PRJ4", "EP-02", MON, requires=("EP-01",)), book, at(MON))
    await handle(routed("PRJ4", "EP-01", MON), book, at(MON))
    await handle(routed("PRJ4", "MA-01", MON, unit=GOV, stage=Stage.MARKET_ACCESS, mode=ServiceMode.ASSIST), book, at(MON))
    await handle(routed("PRJ4", "EP-01", MON, request=Request.CONSULT), book, at(MON))
    await handle(request(AcceptItem, MON, PLAN, project_code="PRJ4", item_code="EP-01", request=Request.HANDLE), book,
                 at(MON))
    await handle(issue(MON, CREDIT, item="EP-01", project="PRJ4").model_copy(update={"request": Request.HANDLE}), book,
                 at(MON))
    progress = await project_progress(book.repo, context(book, MON), "PRJ4")
    assert progress is not None and await project_progress(book.repo, context(book, MON), "NOPE") is None
    assert [(r.item_code, r.request.value) for r in progress.items] == [
        ("MA-01", "handle"), ("EP-01", "consult"), ("EP-01", "handle"), ("EP-02", "handle")]
    ma, _, ep1, ep2 = progress.items
    assert (ma.stage_name, ma.mode_name, ma.responsible_unit_name) == ("市场准入", "帮办代办", "和林格尔新区政务服务局")
    assert ma.materials == ("材料",) and ma.fee_note == "免费" and ma.approving_authority_name == "和林格尔新区政务服务局"
    assert ep2.waiting_for == ("EP-01",) and ep2.state_name == "等待前置事项"
    [blocker] = ep1.blockers
    assert blocker.by_enterprise and blocker.reported_by_name == "服务对象（企业PRJ4）"
    assert blocker.resolver_name == "和林格尔新区规划建设局"
    assert (progress.total, progress.delivered, progress.open_blockers) == (4, 0, 1)
    assert progress.recruiting_unit_name == "和林格尔新区经济发展招商服务局"


async def test_a_units_board_has_only_its_open_items_highest_current_level_first_then_earliest_due() -> None:
    book = ledger()
    await handle(started("PRJ5", MON), book, at(MON))
    # statutory limits 1, 3, 10 and 20 working days, all accepted on Monday; one delivered; one of another unit
    for code, limit in (("CP-01", 1), ("CP-02", 3), ("CP-03", 10), ("CP-04", 20), ("CP-05", 5)):
        await handle(routed("PRJ5", code, MON, limit=limit), book, at(MON))
        await handle(request(AcceptItem, MON, PLAN, project_code="PRJ5", item_code=code), book, at(MON))
    await handle(routed("PRJ5", "CP-06", MON, unit=UTIL), book, at(MON))
    await handle(routed("PRJ5", "CP-07", MON), book, at(MON))  # ready, not yet contacted: service clock
    for model, extra in ((CompleteItem, {}), (DeliverResults, {"results": ("许可证",)})):
        await handle(request(model, MON, PLAN, project_code="PRJ5", item_code="CP-05", **extra), book, at(MON))
    day = date(2026, 11, 5)  # Thursday: 3 working days used
    board = await unit_board(book.repo, context(book, day), PLAN)
    # CP-02 (3 of 3) is on its due day: a 预警, not yet a 黄牌
    assert [(r.item_code, r.level) for r in board] == [
        ("CP-01", "red"), ("CP-07", "red"), ("CP-02", "warning"), ("CP-03", None), ("CP-04", None)]
    assert board[0].due == date(2026, 11, 3) and board[0].running_clock == "statutory"
    assert board[1].running_clock == "service" and board[0].level_name == "红牌"
    assert [r.item_code for r in await unit_board(book.repo, context(book, day), UTIL)] == ["CP-06"]
    # the sweep's announcements count too, and are named
    await sweep(book, day, at(day))
    board = await unit_board(book.repo, context(book, day), PLAN)
    assert board[0].overdue_names == ("承诺时限预警", "承诺时限黄牌", "承诺时限红牌")  # passed levels count as announced


async def test_a_resolver_sees_the_blockers_it_must_resolve_until_they_are_resolved() -> None:
    book = ledger()
    await accepted_item(book, "PRJ6", "EP-03")
    await handle(routed("PRJ6", "EP-04", MON), book, at(MON))
    await handle(request(AcceptItem, MON, PLAN, project_code="PRJ6", item_code="EP-04"), book, at(MON))
    await handle(request(ReportBlocker, MON, PLAN, project_code="PRJ6", item_code="EP-03", reason="管线迁改",
                         resolver=UTIL), book, at(MON))
    await handle(issue(MON, CREDIT, item="EP-04", project="PRJ6"), book, at(MON))
    ctx = context(book, MON)
    [row] = await blockers_to_resolve(book.repo, ctx, UTIL)
    assert row.item_code == "EP-03" and row.blockers[0].reported_by_name == "和林格尔新区规划建设局"
    assert [r.item_code for r in await blockers_to_resolve(book.repo, ctx, PLAN)] == ["EP-04"]
    assert await blockers_to_resolve(book.repo, ctx, GOV) == []
    await handle(request(ResolveBlocker, MON, UTIL, project_code="PRJ6", item_code="EP-03"), book, at(MON))
    assert await blockers_to_resolve(book.repo, ctx, UTIL) == []


async def test_task_orders_to_issue_to_accept_and_accepted() -> None:
    book = ledger()
    await handle(started("PRJ7", MON), book, at(MON))
    for code in ("PL-02", "PL-03", "PL-04"):
        await handle(routed("PRJ7", code, MON, unit=ZL, mode=ServiceMode.ERRAND), book, at(MON))
    await handle(routed("PRJ7", "PL-05", MON, unit=ZL, mode=ServiceMode.ERRAND, requires=("PL-04",)), book, at(MON))
    await handle(routed("PRJ7", "PL-06", MON), book, at(MON))  # not an errand
    ctx = context(book, MON)
    to_issue = await task_orders_to_issue(book.repo, ctx)
    assert [r.item_code for r in to_issue] == ["PL-02", "PL-03", "PL-04"]  # PL-05 still waits
    assert all(r.task_order_to_issue and r.task_order is None for r in to_issue)
    for code in ("PL-03", "PL-04"):
        await handle(request(IssueTaskOrder, MON, "econ_dev_bureau", project_code="PRJ7", item_code=code), book, at(MON))
    await handle(request(AcceptTaskOrder, MON, ZL, project_code="PRJ7", item_code="PL-04", specialist_name="李专员",
                         specialist_phone="13800000000"), book, at(MON))
    assert [r.item_code for r in await task_orders_to_issue(book.repo, ctx)] == ["PL-02"]
    [waiting] = await task_orders(book.repo, ctx, assigned_to=ZL, state="issued")
    assert waiting.item_code == "PL-03" and waiting.task_order is not None
    order = waiting.task_order
    assert (order.state_name, order.assigned_to_name) == ("已下发，待接收", "内蒙古政联招商服务有限公司")
    [accepted] = await task_orders(book.repo, ctx, state="accepted")
    assert accepted.task_order is not None and accepted.task_order.specialist_name == "李专员"
    assert [r.item_code for r in await task_orders(book.repo, ctx)] == ["PL-03", "PL-04"]
    assert [r.item_code for r in await task_orders(book.repo, ctx, assigned_to=ZL)] == ["PL-03", "PL-04"]
    assert await task_orders(book.repo, ctx, assigned_to=PLAN) == []
    with pytest.raises(ValueError):
        await task_orders(book.repo, ctx, state="lost")


async def test_a_recruiting_unit_sees_the_projects_it_brought_in() -> None:
    book = ledger()
    await handle(started("PRJ8", MON, recruiting_unit="econ_dev_bureau"), book, at(MON))
    await handle(started("PRJ9", MON + timedelta(days=1), recruiting_unit=GOV), book, at(MON))
    await handle(started("PRJ10", MON + timedelta(days=2), recruiting_unit=GOV), book, at(MON))
    for code in ("PRJ8", "PRJ9", "PRJ10"):
        await handle(routed(code, "EP-01", MON), book, at(MON))
    found = await recruiting_projects(book.repo, context(book, MON), GOV)
    assert [(p.project.code, p.total) for p in found] == [("PRJ10", 1), ("PRJ9", 1)]


# -- rules history and unroutable items ----------------------------------------------------------


def activated(n: int, when: datetime) -> RulesActivated:
    return RulesActivated(event_id=f"act-{n}", occurred_at=when, recorded_at=when, version=f"v{n}",
                          previous_version=f"v{n - 1}" if n else None, directory="rules", rules=40, items=25)


async def test_rules_events_and_unroutable_items_are_stored_once_and_read_newest_first() -> None:
    book = ledger()
    t0 = datetime(2026, 11, 2, 1, tzinfo=UTC)
    first, second = activated(0, t0), activated(1, t0 + timedelta(hours=2))
    rejected = RulesRejected(event_id="rej-1", occurred_at=t0 + timedelta(hours=1), recorded_at=t0 + timedelta(hours=1),
                             attempted_version="bad", active_version="v0", directory="rules",
                             problems=("routing.yaml:3 [r1] 未知单位",))
    for event in (first, rejected, second):
        assert await handle(event, book, t0) == "recorded"
        assert await handle(event, book, t0) == "duplicate"  # redelivered: stored once
    history = await rules_history(book.repo)
    assert [(h.event_id, h.type_name) for h in history] == [("act-1", "规则生效"), ("rej-1", "规则修改被拒绝"),
                                                            ("act-0", "规则生效")]
    assert history[1].problems == rejected.problems and history[1].active_version == "v0"
    assert [h.event_id for h in await rules_history(book.repo, limit=1)] == ["act-1"]
    active = await active_rules_version(book.repo)
    assert active is not None and (active.version, active.since, active.rules) == ("v1", second.occurred_at, 40)

    def parked(n: int, when: datetime) -> ItemUnroutable:
        return ItemUnroutable(
            event_id=f"unr-{n}", occurred_at=when, recorded_at=when, item_id=f"i-{n}", agreement_id="A-1",
            project_code="PRJ11", project_name="项目PRJ11", recruiting_unit="econ_dev_bureau", item_code="ZZ-99",
            item_name=None, request=Request.HANDLE,
            unroutable=Unroutable(reason_code="unknown_item", reason="服务事项清单中没有 ZZ-99", rules_version="v1",
                                  facts={"item.code": "ZZ-99"}, decided_at=when))

    for n, when in enumerate((t0, t0 + timedelta(days=1), datetime(2025, 12, 31, 15, tzinfo=UTC))):
        assert await handle(parked(n, when), book, when) == "recorded"
        assert await handle(parked(n, when), book, when) == "duplicate"
    found = await unroutable_items(book.repo, today=date(2026, 11, 5))
    # 2025-12-31 15:00 UTC is 2026-01-01 in the New Area: this year's, listed last
    assert (found[0].project_code, found[0].item_name, found[0].reason_name) == (
        "PRJ11", "清单中无此事项", "服务事项清单中没有该事项")
    assert [u.decided_at for u in found] == [t0 + timedelta(days=1), t0, datetime(2025, 12, 31, 15, tzinfo=UTC)]
    assert [u.decided_at for u in await unroutable_items(book.repo, 1, today=date(2026, 11, 5))] == [t0 + timedelta(days=1)]
    assert await unroutable_items(book.repo, today=date(2028, 1, 1)) == []


def test_a_context_from_the_rule_files_has_full_or_short_unit_names() -> None:
    full = context_from_rules(RULES, MON)
    short = context_from_rules(RULES, MON, short_names=True)
    assert full.unit_names[PLAN] == "和林格尔新区规划建设局" and short.unit_names[PLAN] == "规划建设局"
    assert (full.today, full.service_response_days) == (MON, 2)


async def test_a_clock_stopped_on_its_last_day_is_on_time_and_a_finished_item_has_no_current_card() -> None:
    """Completed on the last allowed day is on time: the console once showed it 黄牌 (fresh eyes). A line
    finished late says 超时 on its clock; as a list shows the current level, it carries no card any more."""
    book = ledger()
    await handle(started("PRJ5", MON), book, at(MON))
    for item in ("EP-03", "CP-01"):  # limit 5 working days, accepted on Monday
        await handle(routed("PRJ5", item, MON, limit=5), book, at(MON))
        await handle(request(AcceptItem, MON, PLAN, project_code="PRJ5", item_code=item), book, at(MON))
    on_time, late = MON + timedelta(days=7), MON + timedelta(days=14)  # 5 and 10 working days later
    await handle(request(CompleteItem, on_time, PLAN, project_code="PRJ5", item_code="EP-03"), book, at(on_time))
    await handle(request(CompleteItem, late, PLAN, project_code="PRJ5", item_code="CP-01"), book, at(late))
    progress = await project_progress(book.repo, context(book, late + timedelta(days=7)), "PRJ5")
    assert progress is not None
    rows = {r.item_code: r for r in progress.items}
    statutory = {code: next(c for c in rows[code].clocks if c.clock == "statutory") for code in rows}
    assert statutory["EP-03"].used == 5 and not statutory["EP-03"].running and statutory["EP-03"].level is None
    assert rows["EP-03"].level is None and not statutory["EP-03"].late
    assert statutory["CP-01"].late and statutory["CP-01"].level is None and rows["CP-01"].level is None
    assert progress.level is None
