"""The ledger aggregate through the handlers on the in-memory fakes: prerequisites, 首问负责,
both clocks, task orders, refusals told to the sender, redelivered requests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.common.domain import Request, ServiceMode
from services.common.messages import (
    AcceptItem,
    AcceptTaskOrder,
    CompleteItem,
    ContactEnterprise,
    DeliverResults,
    IssueTaskOrder,
    ReportBlocker,
    ResolveBlocker,
    ResumeItem,
    SuspendItem,
)
from services.evaluation.handlers import handle, sweep
from services.evaluation.ledger import Cards, ItemState, LedgerItem, clock_readings
from services.evaluation.scoring import EvaluationConfig
from tests.unit.ledger_kit import at, ledger, request, routed, started

PLAN = "planning_construction_bureau"
MON = date(2026, 11, 2)  # a Monday


def sent(book: Any, kind: str | None = None) -> list[Any]:
    return [o.message for o in book.publisher.sent if kind is None or o.message.type == kind]


async def item(book: Any, key: str) -> Any:
    found = await book.repo.item(key)
    assert found is not None
    return found


async def test_an_item_waits_for_its_prerequisites_and_is_never_overdue_while_waiting() -> None:
    book = ledger()
    await handle(started("PRJ1", MON), book, at(MON))
    await handle(routed("PRJ1", "EP-02", MON, requires=("EP-01",)), book, at(MON))
    await handle(routed("PRJ1", "EP-01", MON), book, at(MON))
    assert (await item(book, "PRJ1/EP-02")).state is ItemState.WAITING
    assert (await item(book, "PRJ1/EP-01")).state is ItemState.READY
    assert [e.item_code for e in sent(book, "item.ready")] == ["EP-01"]
    # months later nothing about EP-02 is overdue: it still waits; EP-01's service clock ran out
    found = await sweep(book, date(2027, 3, 1), at(date(2027, 3, 1)))
    assert {(e.item_code, e.clock) for e in found} == {("EP-01", "service")}
    refused = await handle(request(AcceptItem, MON, PLAN, project_code="PRJ1", item_code="EP-02"), book, at(MON))
    assert refused == "refused"
    assert "等待前置事项 EP-01" in sent(book, "request.refused")[-1].reason

    for model, extra in ((AcceptItem, {}), (CompleteItem, {}), (DeliverResults, {"results": ("设计方案批复",)})):
        assert await handle(request(model, date(2026, 11, 4), PLAN, project_code="PRJ1", item_code="EP-01", **extra),
                            book, at(date(2026, 11, 4))) == "applied"
    ready = await item(book, "PRJ1/EP-02")
    assert ready.state is ItemState.READY and ready.ready_on == date(2026, 11, 4)
    assert sent(book, "item.ready")[-1].waited_for == ("EP-01",)


async def test_only_the_responsible_unit_moves_its_item_and_the_sender_is_told_why_not() -> None:
    book = ledger()
    await handle(started("PRJ2", MON), book, at(MON))
    await handle(routed("PRJ2", "CP-01", MON), book, at(MON))
    wrong = request(AcceptItem, MON, "public_utilities_bureau", project_code="PRJ2", item_code="CP-01")
    assert await handle(wrong, book, at(MON)) == "refused"
    [told] = sent(book, "request.refused")
    assert told.requested_by == "public_utilities_bureau" and told.request_id == wrong.request_id
    assert "首问负责" in told.reason and "规划建设局" in told.reason
    assert (await item(book, "PRJ2/CP-01")).state is ItemState.READY
    assert (await book.repo.outcome(wrong.request_id)).status == "refused"  # type: ignore[union-attr]
    assert not sent(book, "item.accepted")  # nothing the ledger did not record is announced
    by_operator = request(AcceptItem, MON, PLAN, project_code="PRJ2", item_code="CP-01", operator="张三")
    assert await handle(by_operator, book, at(MON)) == "applied"
    accepted = await item(book, "PRJ2/CP-01")
    assert accepted.history[-1].operator == "张三" and sent(book, "item.accepted")[0].operator == "张三"


async def test_a_redelivered_request_changes_nothing_twice_and_announces_the_same_event_again() -> None:
    book = ledger()
    await handle(routed("PRJ3", "CP-01", MON), book, at(MON))
    accept = request(AcceptItem, MON, PLAN, project_code="PRJ3", item_code="CP-01")
    assert await handle(accept, book, at(MON)) == "applied"
    assert await handle(accept, book, at(MON)) == "duplicate"
    first, again = sent(book, "item.accepted")
    assert first.event_id == again.event_id
    assert (await item(book, "PRJ3/CP-01")).version == 2  # ready, accepted


async def test_errand_items_wait_for_the_task_order_which_only_econ_dev_bureau_issues() -> None:
    book = ledger()
    await handle(started("PRJ4", MON), book, at(MON))
    await handle(routed("PRJ4", "PL-04", MON, unit="zhenglian_company", mode=ServiceMode.ERRAND, limit=10), book, at(MON))
    [ready] = sent(book, "item.ready")
    assert ready.task_order_required
    contact = request(ContactEnterprise, MON, "zhenglian_company", project_code="PRJ4", item_code="PL-04")
    assert await handle(contact, book, at(MON)) == "refused"
    assert "任务单尚未下发" in sent(book, "request.refused")[-1].reason
    assert await handle(request(IssueTaskOrder, MON, PLAN, project_code="PRJ4", item_code="PL-04"), book, at(MON)) == "refused"
    assert "经济发展招商服务局" in sent(book, "request.refused")[-1].reason
    # before the order only 经济发展招商服务局's own clock runs (issuing it): 政联公司's service clock has not started
    [card] = await sweep(book, date(2026, 12, 1), at(date(2026, 12, 1)))
    assert (card.clock, card.level, card.time_limit_days) == ("task_order", "red", 2)
    tue = date(2026, 11, 3)
    assert await handle(request(IssueTaskOrder, tue, "econ_dev_bureau", project_code="PRJ4", item_code="PL-04"),
                        book, at(tue)) == "applied"
    [issued] = sent(book, "task_order.issued")
    assert (issued.number, issued.assigned_to, issued.automatic) == ("RWD-PRJ4-PL-04", "zhenglian_company", False)
    accept_order = request(AcceptTaskOrder, tue, "zhenglian_company", project_code="PRJ4", item_code="PL-04",
                           specialist_name="李专员", specialist_phone="13800000000")
    assert await handle(accept_order, book, at(tue)) == "applied"
    for model, extra in ((ContactEnterprise, {}), (AcceptItem, {}), (CompleteItem, {}),
                         (DeliverResults, {"results": ("用地预审与选址意见书",)})):
        assert await handle(request(model, tue, "zhenglian_company", project_code="PRJ4", item_code="PL-04", **extra),
                            book, at(tue)) == "applied"
    done = await item(book, "PRJ4/PL-04")
    assert done.task_order is not None and done.task_order.state == "closed"
    assert done.task_order.specialist_name == "李专员"
    assert [e.number for e in sent(book, "task_order.closed")] == ["RWD-PRJ4-PL-04"]
    assert [e.items_delivered for e in sent(book, "project.delivered")] == [1]


async def test_task_orders_are_issued_automatically_when_the_file_says_so() -> None:
    book = ledger(EvaluationConfig(auto_issue_task_orders=True))
    await handle(routed("PRJ5", "LT-02", MON, unit="zhenglian_company", mode=ServiceMode.ERRAND), book, at(MON))
    [issued] = sent(book, "task_order.issued")
    assert issued.automatic and issued.note == "按评价规则自动下发"
    stored = await item(book, "PRJ5/LT-02")
    assert stored.task_order is not None and stored.task_order.automatic and stored.history[-1].type == "task_order.issued"


async def test_blockers_need_a_known_resolver_who_may_resolve_them() -> None:
    book = ledger()
    await handle(routed("PRJ6", "EP-03", MON), book, at(MON))
    await handle(request(AcceptItem, MON, PLAN, project_code="PRJ6", item_code="EP-03"), book, at(MON))
    unknown = request(ReportBlocker, MON, PLAN, project_code="PRJ6", item_code="EP-03", reason="消防", resolver="nobody")
    assert await handle(unknown, book, at(MON)) == "refused"
    assert "nobody" in sent(book, "request.refused")[-1].reason
    block = request(ReportBlocker, MON, PLAN, project_code="PRJ6", item_code="EP-03", reason="消防设计需补充",
                    resolver="public_utilities_bureau")
    assert await handle(block, book, at(MON)) == "applied"
    resolve = request(ResolveBlocker, MON, "public_utilities_bureau", project_code="PRJ6", item_code="EP-03")
    assert await handle(resolve, book, at(MON)) == "applied"
    back = await item(book, "PRJ6/EP-03")
    assert back.state is ItemState.ACCEPTED and back.blockers[0].closed_on == MON


async def test_an_item_with_an_advice_line_and_a_handle_line_is_two_ledger_lines() -> None:
    book = ledger()
    await handle(routed("PRJ7", "PL-06", MON), book, at(MON))
    await handle(routed("PRJ7", "PL-06", MON, request=Request.CONSULT), book, at(MON))
    assert {i.key for i in await book.repo.project_items("PRJ7")} == {"PRJ7/PL-06", "PRJ7/PL-06/consult"}
    vague = request(ContactEnterprise, MON, PLAN, project_code="PRJ7", item_code="PL-06")
    assert await handle(vague, book, at(MON)) == "refused"
    assert "同时有" in sent(book, "request.refused")[-1].reason
    advice = request(CompleteItem, MON, PLAN, project_code="PRJ7", item_code="PL-06", request=Request.CONSULT)
    assert await handle(advice, book, at(MON)) == "applied"  # advice given: no 受理 for a consult line


async def test_a_report_cannot_go_back_before_the_last_record_or_into_the_future() -> None:
    book = ledger()
    await handle(routed("PRJ8", "CP-01", date(2026, 11, 9)), book, at(date(2026, 11, 9)))
    early = request(AcceptItem, date(2026, 11, 2), PLAN, project_code="PRJ8", item_code="CP-01")
    assert await handle(early, book, at(date(2026, 11, 9))) == "refused"
    assert "早于" in sent(book, "request.refused")[-1].reason
    future = request(AcceptItem, date(2026, 12, 9), PLAN, project_code="PRJ8", item_code="CP-01")
    assert await handle(future, book, at(date(2026, 11, 9))) == "refused"
    assert "晚于当前时间" in sent(book, "request.refused")[-1].reason


async def test_clocks_across_national_day_2026_with_make_up_days_and_suspensions() -> None:
    """2026: 10-01..10-07 are holidays, Saturday 10-10 is a 调休 working day. Ready Tue 09-29 with a
    service limit of 2; suspended 09-30 → 10-09; accepted on the 调休 Saturday 10-10; statutory limit 5,
    suspended 10-13 → 10-15."""
    book = ledger(EvaluationConfig(service_response_days=2))
    sep29 = date(2026, 9, 29)
    await handle(routed("PRJ9", "CP-01", sep29, limit=5), book, at(sep29))
    calendar = book.calendar
    ready = await item(book, "PRJ9/CP-01")
    service = clock_readings(ready, calendar, sep29, 2)["service"]
    assert service.due_on == date(2026, 10, 8)  # 09-30 and 10-08: the holiday week does not count
    await handle(request(SuspendItem, date(2026, 9, 30), PLAN, project_code="PRJ9", item_code="CP-01",
                         reason="企业暂缓项目"), book, at(date(2026, 9, 30)))
    await handle(request(ResumeItem, date(2026, 10, 9), PLAN, project_code="PRJ9", item_code="CP-01"), book,
                 at(date(2026, 10, 9)))
    resumed = await item(book, "PRJ9/CP-01")
    assert resumed.state is ItemState.READY
    service = clock_readings(resumed, calendar, date(2026, 10, 9), 2)["service"]
    # 09-30 counts (the pause starts that day), 10-08 and 10-09 are paused: 1 of 2, due on Saturday 10-10
    assert (service.used, service.due_on) == (1, date(2026, 10, 10))
    oct10 = date(2026, 10, 10)
    await handle(request(AcceptItem, oct10, PLAN, project_code="PRJ9", item_code="CP-01"), book, at(oct10))
    await handle(request(SuspendItem, date(2026, 10, 13), PLAN, project_code="PRJ9", item_code="CP-01",
                         reason="补正消防设计文件"), book, at(date(2026, 10, 13)))
    await handle(request(ResumeItem, date(2026, 10, 15), PLAN, project_code="PRJ9", item_code="CP-01"), book,
                 at(date(2026, 10, 15)))
    accepted = await item(book, "PRJ9/CP-01")
    readings = clock_readings(accepted, calendar, date(2026, 10, 16), 2)
    assert (readings["service"].used, readings["service"].end) == (2, oct10)  # 09-30 and 10-10: on time
    assert not readings["service"].late
    statutory = readings["statutory"]
    # from 10-10: 10-12 and 10-13 count, 10-14 and 10-15 are paused, 10-16 counts: 3 of 5, due 10-20
    assert (statutory.used, statutory.due_on) == (3, date(2026, 10, 20))
    assert await sweep(book, date(2026, 10, 16), at(date(2026, 10, 16))) == []
    warned = await sweep(book, date(2026, 10, 19), at(date(2026, 10, 19)))  # 4 of 5: one day left
    assert [(e.clock, e.level, e.due_on) for e in warned] == [("statutory", "warning", date(2026, 10, 20))]
    assert await sweep(book, date(2026, 10, 20), at(date(2026, 10, 20))) == []  # the due day itself: no 黄牌
    late = await sweep(book, date(2026, 10, 21), at(date(2026, 10, 21)))  # 6 of 5: the limit has passed
    assert [(e.clock, e.level) for e in late] == [("statutory", "yellow")]
    assert await sweep(book, date(2026, 10, 21), at(date(2026, 10, 21))) == []  # each level once
    jumped = await sweep(book, date(2026, 10, 23), at(date(2026, 10, 23)))  # 8 of 5: the red card alone
    assert [(e.clock, e.level) for e in jumped] == [("statutory", "red")]


async def test_a_sweep_that_finds_several_new_levels_announces_only_the_highest() -> None:
    book = ledger()
    await handle(routed("PRJ12", "MA-01", MON, limit=1, unit="gov_service_bureau"), book, at(MON))
    await handle(request(AcceptItem, MON, "gov_service_bureau", project_code="PRJ12", item_code="MA-01"), book, at(MON))
    assert await sweep(book, MON, at(MON, 20)) == []  # accepted today: a 1-day item has no 预警 yet
    [due] = await sweep(book, date(2026, 11, 3), at(date(2026, 11, 3)))  # the due day: 预警, not 黄牌
    assert (due.level, due.working_days_used) == ("warning", 1)
    [card] = await sweep(book, date(2026, 11, 4), at(date(2026, 11, 4)))  # 2 of 1: passed, and 1.5 × the limit
    assert (card.level, card.working_days_used) == ("red", 2)
    assert (await item(book, "PRJ12/MA-01")).overdue_sent == ("statutory:warning", "statutory:yellow", "statutory:red")


def test_cards_warn_before_the_due_day_and_card_only_once_the_limit_has_passed() -> None:
    cards = Cards()
    assert cards.levels(0, 1) == []  # the day a 1-day clock starts
    assert cards.levels(1, 1) == ["warning"]  # its due day: still within the limit
    assert cards.levels(2, 1) == ["warning", "yellow", "red"]
    assert cards.levels(3, 5) == []
    assert cards.levels(4, 5) == ["warning"]  # one working day before the due day
    assert cards.levels(5, 5) == ["warning"]  # the due day itself is no 黄牌
    assert cards.levels(6, 5) == ["warning", "yellow"]
    assert cards.levels(8, 5) == ["warning", "yellow", "red"]
    assert cards.levels(14, 10) == ["warning", "yellow"]
    assert cards.levels(15, 10) == ["warning", "yellow", "red"]
    assert Cards(warning_days=3).levels(2, 5) == ["warning"] and Cards(warning_days=0).levels(4, 5) == []
    assert Cards(red_ratio=2).levels(8, 5) == ["warning", "yellow"] and Cards(red_ratio=2).level(10, 5) == "red"


@pytest.mark.parametrize("model", [ContactEnterprise, AcceptItem])
async def test_requests_to_an_unknown_item_are_retried_then_refused(model: Any) -> None:
    from services.evaluation.repository import UnknownSubject

    book = ledger()
    ask = request(model, MON, PLAN, project_code="NOPE-1", item_code="CP-01")
    with pytest.raises(UnknownSubject):
        await handle(ask, book, at(MON), final=False)
    assert await handle(ask, book, at(MON), final=True) == "refused"
    assert "台账中没有项目 NOPE-1" in sent(book, "request.refused")[-1].reason


async def test_an_advice_line_delivered_does_not_stand_for_the_handled_item() -> None:
    book = ledger()
    await handle(routed("PRJ10", "PL-06", MON), book, at(MON))
    await handle(routed("PRJ10", "PL-06", MON, request=Request.CONSULT), book, at(MON))
    await handle(routed("PRJ10", "CA-05", MON, requires=("PL-06",)), book, at(MON))
    for model, extra in ((CompleteItem, {}), (DeliverResults, {"results": ("咨询意见",)})):
        await handle(request(model, MON, PLAN, project_code="PRJ10", item_code="PL-06", request=Request.CONSULT,
                             **extra), book, at(MON))
    assert (await item(book, "PRJ10/PL-06/consult")).state is ItemState.DELIVERED
    assert (await item(book, "PRJ10/CA-05")).state is ItemState.WAITING


async def test_a_ledger_catching_up_dates_readiness_to_the_delivery_so_back_filled_reports_fit() -> None:
    book = ledger()
    await handle(routed("PRJ11", "EP-01", MON), book, at(MON))
    await handle(routed("PRJ11", "EP-02", MON, requires=("EP-01",)), book, at(MON))
    tue, fri = date(2026, 11, 3), date(2026, 11, 6)
    for model, extra in ((AcceptItem, {}), (CompleteItem, {}), (DeliverResults, {"results": ("批复",)})):
        # the units reported on Tuesday; the ledger, behind, records it on Friday
        assert await handle(request(model, tue, PLAN, project_code="PRJ11", item_code="EP-01", **extra), book,
                            at(fri)) == "applied"
    ready = await item(book, "PRJ11/EP-02")
    assert ready.ready_on == tue and ready.last_day == tue
    accepted = request(AcceptItem, date(2026, 11, 4), PLAN, project_code="PRJ11", item_code="EP-02")
    assert await handle(accepted, book, at(fri)) == "applied"  # a Wednesday report, recorded on Friday


async def test_a_request_id_serves_one_request_only() -> None:
    book = ledger()
    await handle(routed("PRJ13", "CP-01", MON), book, at(MON))
    await handle(routed("PRJ13", "CP-02", MON), book, at(MON))
    first = request(AcceptItem, MON, PLAN, project_code="PRJ13", item_code="CP-01")
    assert await handle(first, book, at(MON)) == "applied"
    reused = first.model_copy(update={"item_code": "CP-02"})  # another request under the same id
    assert await handle(reused, book, at(MON)) == "refused"
    assert "已用于另一个请求" in sent(book, "request.refused")[-1].reason
    assert (await item(book, "PRJ13/CP-02")).state is ItemState.READY  # nothing changed
    assert (await book.repo.outcome(first.request_id)).status == "applied"  # type: ignore[union-attr]
    assert await handle(first, book, at(MON)) == "duplicate"  # the same request again is still a replay


def test_requests_must_carry_an_offset_plausible_times_and_bounded_text() -> None:
    from pydantic import ValidationError

    from services.common.messages import ReportProgress

    good = request(ReportProgress, MON, PLAN, project_code="PRJ14", item_code="CP-01", note="进展").model_dump()
    for change in ({"occurred_at": datetime(2026, 11, 2, 10)}, {"occurred_at": datetime(1, 1, 1, tzinfo=UTC)},
                   {"note": "长" * 2001}, {"project_code": "P" * 65}):
        with pytest.raises(ValidationError):
            ReportProgress.model_validate({**good, **change})


async def test_a_line_finished_between_the_sweeps_look_up_and_its_turn_gets_no_card() -> None:
    """The sweep looks up the open lines first and takes each project's turn after; a request that
    completes a line in between must not be followed by a card for it (judged again in its turn)."""
    book = ledger()
    await handle(routed("PRJ13", "MA-01", MON, limit=1, unit="gov_service_bureau"), book, at(MON))
    await handle(request(AcceptItem, MON, "gov_service_bureau", project_code="PRJ13", item_code="MA-01"), book, at(MON))
    repo = book.repo
    looked_up = repo.open_items

    async def open_items_then_completed() -> list[LedgerItem]:
        found = await looked_up()
        done = request(CompleteItem, MON, "gov_service_bureau", project_code="PRJ13", item_code="MA-01")
        assert await handle(done, book, at(MON)) == "applied"  # meanwhile, on the unit's request
        return found

    repo.open_items = open_items_then_completed  # type: ignore[method-assign]
    assert await sweep(book, date(2026, 11, 3), at(date(2026, 11, 3))) == []
    assert not [o for o in book.publisher.sent if o.message.type == "item.overdue"]  # type: ignore[attr-defined]
    assert (await item(book, "PRJ13/MA-01")).overdue_sent == ()
