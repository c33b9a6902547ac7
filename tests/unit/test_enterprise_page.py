"""The enterprise's page as it reads on a phone: what is done, under way and waiting, its own next
step first (materials to supply), then what the units do, and whom to call about what is open."""

from __future__ import annotations

from datetime import date

from services.common.domain import ServiceMode, Stage
from services.common.messages import AcceptItem, CompleteItem, ContactEnterprise, DeliverResults, SuspendItem
from services.console.enterprise import next_step, summarize
from services.evaluation.handlers import handle
from services.evaluation.ledger import ItemState
from services.evaluation.views import ViewContext, project_progress
from services.evaluation.working_days import WorkingCalendar
from tests.unit.ledger_kit import UNIT_NAMES, at, ledger, request, routed, started

GOV, PLAN = "gov_service_bureau", "planning_construction_bureau"
MON, TUE = date(2026, 11, 2), date(2026, 11, 3)
CODE = "PRJ-PHONE"


async def test_the_enterprises_own_step_comes_first_and_whom_to_call_is_about_open_items() -> None:
    book = ledger()
    await handle(started(CODE, MON), book, at(MON))
    await handle(routed(CODE, "MA-01", MON, unit=GOV, mode=ServiceMode.ASSIST, stage=Stage.MARKET_ACCESS), book, at(MON))
    await handle(routed(CODE, "EP-01", MON), book, at(MON))
    await handle(routed(CODE, "EP-02", MON, requires=("EP-01",)), book, at(MON))
    await handle(routed(CODE, "EP-03", MON), book, at(MON))
    ask = {"project_code": CODE}
    for model, item, unit, fields in (
            (ContactEnterprise, "MA-01", GOV, {"specialist_name": "王芳", "specialist_phone": "13900001111"}),
            (AcceptItem, "MA-01", GOV, {}), (CompleteItem, "MA-01", GOV, {}),
            (DeliverResults, "MA-01", GOV, {"results": ("营业执照",)}),
            (AcceptItem, "EP-03", PLAN, {}), (SuspendItem, "EP-03", PLAN, {"reason": "请补充施工图电子版"})):
        assert await handle(request(model, TUE, unit, item_code=item, **ask, **fields), book, at(TUE)) == "applied"
    ctx = ViewContext(unit_names=UNIT_NAMES, calendar=WorkingCalendar(), service_response_days=2, today=TUE)
    progress = await project_progress(book.repo, ctx, CODE)
    assert progress is not None

    summary = summarize(progress, {PLAN: "规划建设局审批科，电话 0471-1234567"})
    assert (summary.delivered, summary.under_way, summary.waiting) == (1, 2, 1)
    assert [r.item_code for r in summary.yours] == ["EP-03"]
    assert [r.item_code for r in summary.open_rows] == ["EP-03", "EP-01"], "its own step before the units'"
    assert summary.next_step == "事项EP-03：需要您补正材料，补正后由和林格尔新区规划建设局恢复办理"
    assert [r.item_code for r in summary.done_rows] == ["MA-01"]
    [contact] = summary.contacts  # MA-01's 服务专员 is done with: not whom to call now
    assert (contact.phone, contact.about) == ("0471-1234567", ("事项EP-03", "事项EP-01"))
    waiting = summary.waiting_rows[0]
    assert waiting.state is ItemState.WAITING
    assert next_step(waiting, summary.names) == "等待前置事项 事项EP-01（EP-01） 办结移交后开始办理"
