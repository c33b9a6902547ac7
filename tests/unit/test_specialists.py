"""服务专员 (policy 四(一), 四(三)): 政联公司 names one when it accepts a 专业跑腿 task order, 政务服务局
when it contacts the enterprise on a 帮办代办 line; either way a mainland mobile number the enterprise
can call, checked in the request's own model (so the console, the CLI and units' systems all get the
same reason), kept on the ledger line, shown in its history and announced to the enterprise."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from services.common.domain import ServiceMode, Stage
from services.common.messages import AcceptTaskOrder, ContactEnterprise, IssueTaskOrder
from services.common.rule_files import load_rulebook
from services.evaluation.handlers import handle
from services.evaluation.ledger import item_key
from services.evaluation.views import ViewContext, project_progress
from services.evaluation.working_days import WorkingCalendar
from services.notifier.compose import Composer, ItemView, ProjectView
from services.notifier.plan import load_plan
from tests.conftest import RULES
from tests.unit.ledger_kit import UNIT_NAMES, at, ledger, project, request, routed, started

BOOK = load_rulebook(RULES)
COMPOSER = Composer(load_plan(RULES, BOOK.units), BOOK.units, BOOK.catalog)
GOV, ZHENGLIAN, ECON = "gov_service_bureau", "zhenglian_company", "econ_dev_bureau"
MON, TUE = date(2026, 11, 2), date(2026, 11, 3)


def test_a_phone_that_is_no_mainland_mobile_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError) as refused:
        request(AcceptTaskOrder, MON, ZHENGLIAN, project_code="P", item_code="MA-02", specialist_name="赵敏",
                specialist_phone="abc")
    [error] = refused.value.errors()
    assert error["loc"] == ("specialist_phone",)
    assert "不是中国大陆手机号" in error["msg"] and "'abc'" in error["msg"]
    with pytest.raises(ValidationError, match="不是中国大陆手机号"):  # a landline cannot take the enterprise's SMS
        request(AcceptTaskOrder, MON, ZHENGLIAN, project_code="P", item_code="MA-02", specialist_name="赵敏",
                specialist_phone="0471-6661234")
    written = request(AcceptTaskOrder, MON, ZHENGLIAN, project_code="P", item_code="MA-02", specialist_name="赵敏",
                      specialist_phone="+86 138-0047-1234")
    assert written.specialist_phone == "13800471234"
    # full-width digits, as a Chinese input method types them, are stored as ASCII; other scripts' are no phone
    typed = request(AcceptTaskOrder, MON, ZHENGLIAN, project_code="P", item_code="MA-02", specialist_name="赵敏",
                    specialist_phone="１３８００４７１２３４")
    assert typed.specialist_phone == "13800471234"
    with pytest.raises(ValidationError, match="不是中国大陆手机号"):
        request(AcceptTaskOrder, MON, ZHENGLIAN, project_code="P", item_code="MA-02", specialist_name="赵敏",
                specialist_phone="١٣٨٠٠٤٧١٢٣٤")


def test_a_specialist_is_named_with_name_and_phone_together() -> None:
    with pytest.raises(ValidationError, match="同时写明姓名和手机号"):
        request(ContactEnterprise, MON, GOV, project_code="P", item_code="MA-01", specialist_name="李明")
    with pytest.raises(ValidationError, match="不是中国大陆手机号"):
        request(ContactEnterprise, MON, GOV, project_code="P", item_code="MA-01", specialist_name="李明",
                specialist_phone="12345")
    plain = request(ContactEnterprise, MON, GOV, project_code="P", item_code="MA-01")
    assert plain.specialist_name is None and plain.specialist_phone is None


async def _project(code: str) -> Any:
    book = ledger()
    await handle(started(code, MON), book, at(MON))
    await handle(routed(code, "MA-01", MON, unit=GOV, mode=ServiceMode.ASSIST, stage=Stage.MARKET_ACCESS), book, at(MON))
    await handle(routed(code, "EP-03", MON), book, at(MON))
    await handle(routed(code, "MA-02", MON, unit=ZHENGLIAN, mode=ServiceMode.ERRAND, stage=Stage.MARKET_ACCESS),
                 book, at(MON))
    return book


def _context() -> ViewContext:
    return ViewContext(unit_names=UNIT_NAMES, calendar=WorkingCalendar(), service_response_days=2, today=TUE)


async def test_the_gov_service_bureaus_specialist_is_kept_on_its_assist_line_and_told_to_the_enterprise() -> None:
    book = await _project("PRJ-SPEC1")
    contact = request(ContactEnterprise, TUE, GOV, project_code="PRJ-SPEC1", item_code="MA-01", operator="李明",
                      specialist_name="王芳", specialist_phone="139 0000 1111", note="已电话一次性告知材料")
    assert await handle(contact, book, at(TUE)) == "applied"
    line = await book.repo.item(item_key("PRJ-SPEC1", "MA-01"))
    assert line is not None and (line.specialist_name, line.specialist_phone) == ("王芳", "13900001111")

    progress = await project_progress(book.repo, _context(), "PRJ-SPEC1")
    assert progress is not None
    row = next(r for r in progress.items if r.item_code == "MA-01")
    assert (row.specialist_name, row.specialist_phone, row.specialist_unit_name) == (
        "王芳", "13900001111", UNIT_NAMES[GOV])
    contacted = row.history[-1]
    assert (contacted.what, contacted.by_name, contacted.operator) == ("对接企业", UNIT_NAMES[GOV], "李明")
    assert "服务专员 王芳（13900001111）" in contacted.detail and "已电话一次性告知材料" in contacted.detail
    assert row.history[0].what == "分派" and row.history[0].by_name == "系统（按服务规则）"

    [event] = [o.message for o in book.publisher.sent if o.message.type == "item.contacted"]
    p = project("PRJ-SPEC1")
    documents = COMPOSER.compose(event, ProjectView(p.code, p.name, p.enterprise, p.recruiting_unit),
                                 ItemView("PRJ-SPEC1", "MA-01", "企业设立登记", GOV), at(TUE))
    [told] = [d for d in documents if d["recipient"].startswith("enterprise:")]
    assert told["title"] == "您的帮办代办服务专员：企业设立登记"
    assert "王芳（电话 13900001111）" in told["body"]


async def test_a_contact_without_a_specialist_tells_the_enterprise_nothing_new() -> None:
    book = await _project("PRJ-SPEC2")
    assert await handle(request(ContactEnterprise, TUE, GOV, project_code="PRJ-SPEC2", item_code="MA-01"),
                        book, at(TUE)) == "applied"
    [event] = [o.message for o in book.publisher.sent if o.message.type == "item.contacted"]
    p = project("PRJ-SPEC2")
    assert COMPOSER.compose(event, ProjectView(p.code, p.name, p.enterprise, p.recruiting_unit),
                            ItemView("PRJ-SPEC2", "MA-01", "企业设立登记", GOV), at(TUE)) == []


async def test_a_specialist_on_a_line_that_is_not_assist_is_refused_with_the_reason() -> None:
    book = await _project("PRJ-SPEC3")
    contact = request(ContactEnterprise, TUE, "planning_construction_bureau", project_code="PRJ-SPEC3",
                      item_code="EP-03", specialist_name="张三", specialist_phone="13900002222")
    assert await handle(contact, book, at(TUE)) == "refused"
    outcome = await book.repo.outcome(contact.request_id)
    assert outcome is not None and "只在“帮办代办”事项对接企业时由政务服务局指定" in (outcome.reason or "")
    line = await book.repo.item(item_key("PRJ-SPEC3", "EP-03"))
    assert line is not None and line.specialist_name is None


async def test_the_task_order_notice_links_to_the_console_page_not_a_command() -> None:
    book = await _project("PRJ-SPEC4")
    issue = request(IssueTaskOrder, TUE, ECON, project_code="PRJ-SPEC4", item_code="MA-02")
    assert await handle(issue, book, at(TUE)) == "applied"
    [event] = [o.message for o in book.publisher.sent if o.message.type == "task_order.issued"]
    p = project("PRJ-SPEC4")
    documents = COMPOSER.compose(event, ProjectView(p.code, p.name, p.enterprise, p.recruiting_unit),
                                 ItemView("PRJ-SPEC4", "MA-02", "公章刻制备案", ZHENGLIAN), at(TUE))
    [order] = [d for d in documents if d["recipient"] == f"unit:{ZHENGLIAN}" and d["channel"] == "inbox"]
    assert "zeroerrand" not in order["body"]
    assert f"{COMPOSER.console.public_url}/items/PRJ-SPEC4/MA-02" in order["body"]
    progress = await project_progress(book.repo, _context(), "PRJ-SPEC4")
    assert progress is not None
    issued = next(r for r in progress.items if r.item_code == "MA-02").history[-1]
    assert issued.what == "下发任务单" and "任务单 RWD-PRJ-SPEC4-MA-02" in issued.detail


def test_no_staff_notice_of_the_plan_asks_for_a_command_line() -> None:
    plan = load_plan(RULES, BOOK.units)
    for event_type, entries in plan.entries.items():
        for entry in entries:
            assert "zeroerrand" not in entry.body, (event_type, entry.to)
