"""Every step of the policy in the console, over the real RabbitMQ and store, as the units use it:
政务服务局 names its 帮办代办 服务专员 when it contacts the enterprise (a phone "abc" is answered on
the form), enters a 堵点 the enterprise phoned in, and every item page shows who did what and when;
政联公司's 服务专员 phone is held to the same rule; a unit rectifies a 差评 on its own page; an
inbox is filtered by kind, project and unread and marked read in bulk; an enterprise's slip in its
测评 form is answered on the page and never sent to it as a notice."""

from __future__ import annotations

import contextlib
import html as html_text
import re
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest

from services.console.accounts import Role
from services.evaluation.ledger import ItemState, item_key
from services.evaluation.repository import MongoLedgerRepository
from services.notifier.repository import NotifierRepository
from tests.conftest import ALUMINIUM
from tests.console.conftest import PASSWORD, Site
from tests.console.test_console_browser import routed, small_project, state, until

pytestmark = pytest.mark.integration
SCORES = ("responsiveness", "notice", "efficiency", "attitude", "free_of_charge", "delivery")


def _token(html: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


def _flashes(html: str) -> str:
    return html_text.unescape(" ".join(re.findall(r'<p class="flash [a-z]+" role="status">([^<]*)</p>', html)))


@contextlib.asynccontextmanager
async def _signed_in(site: Site, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.url, follow_redirects=True, timeout=30) as client:
        form = await client.get("/login")
        answer = await client.post("/login", data={"username": username, "password": PASSWORD,
                                                   "csrftoken": _token(form.text)})
        assert answer.status_code == 200, answer.text
        yield client


async def _act(client: httpx.AsyncClient, path: str, action: str, **fields: str) -> str:
    """Posts the item page's form for ``action``; the flash messages of the page it leads back to."""
    token = _token((await client.get(path)).text)
    answer = await client.post(path, data={"csrftoken": token, "action": action, **fields})
    assert answer.status_code == 200, answer.text
    return _flashes(answer.text)


async def test_each_step_of_the_policy_is_a_form_with_its_history(
        site: Site, amqp: aio_pika.abc.AbstractRobustConnection) -> None:
    agreement = small_project(ALUMINIUM, "steps1", ("MA-01", "MA-02"))
    code, credit = agreement.project.code, agreement.project.enterprise.credit_code
    await routed(site, amqp, agreement)
    for username, unit, role in (("gs.step", "gov_service_bureau", Role.GOV_SERVICE),
                                 ("ed.step", "econ_dev_bureau", Role.ECON_DEV),
                                 ("zl.step", "zhenglian_company", Role.SERVICE_COMPANY)):
        await site.account(username, unit, role, name="李明" if unit == "gov_service_bureau" else "赵敏")
    ma01 = f"/items/{code}/MA-01"

    async with _signed_in(site, "gs.step") as gov:
        page = (await gov.get(ma01)).text
        assert 'name="specialist_phone"' in page, "a 帮办代办 line: the contact form names the 服务专员"
        said = await _act(gov, ma01, "contact", specialist_name="王芳", specialist_phone="")
        assert "须指定服务专员" in said
        said = await _act(gov, ma01, "contact", specialist_name="王芳", specialist_phone="abc")
        assert "服务专员电话不是中国大陆手机号" in said and "'abc'" in said, said
        assert "not a mobile" not in said, "the reason in Chinese only"
        assert await state(site, code, "MA-01") is ItemState.READY, "nothing was sent"
        assert "已办理" in await _act(gov, ma01, "contact", specialist_name="王芳", specialist_phone="139-0000-1111")
        line = await MongoLedgerRepository(site.store).item(item_key(code, "MA-01"))
        assert line is not None and (line.specialist_name, line.specialist_phone) == ("王芳", "13900001111")

        # 政务服务局 enters a 堵点 the enterprise phoned in: recorded as the enterprise's, with who typed it
        said = await _act(gov, ma01, "enterprise_issue", reason="企业来电：窗口要求纸质申请书原件")
        assert "已办理" in said, said
        line = await MongoLedgerRepository(site.store).item(item_key(code, "MA-01"))
        assert line is not None and line.state is ItemState.BLOCKED
        assert [b.reported_by for b in line.open_blockers] == [credit]
        assert line.history[-1].operator == "李明（政务服务局代企业录入）"

        page = (await gov.get(ma01)).text
        history = page[page.index('id="history"'):]
        assert "对接企业" in history and "李明" in history and "服务专员 王芳（13900001111）" in history
        assert "报告堵点/卡点" in history and "服务对象" in history and "窗口要求纸质申请书原件" in history
        assert "王芳（政务服务局，电话 13900001111）" in page, "the 服务专员 is shown like 政联公司's"
        project_page = (await gov.get(f"/projects/{code}")).text
        assert "服务专员 王芳（13900001111）" in project_page

        for action, fields in (("unblock", {"note": "已改为线上核验"}), ("accept", {}), ("complete", {}),
                               ("deliver", {"results": "营业执照"})):
            assert "已办理" in await _act(gov, ma01, action, **fields), action

    async with httpx.AsyncClient(base_url=site.url, follow_redirects=True, timeout=30) as enterprise:
        await enterprise.get(site.link(code))
        text = (await enterprise.get("/e")).text
        assert "王芳" in text and "13900001111" in text, "the enterprise sees its 帮办代办 服务专员"

    await until(lambda: state(site, code, "MA-02"), ItemState.READY, "MA-02 ready")
    ma02 = f"/items/{code}/MA-02"
    async with _signed_in(site, "ed.step") as econ:
        assert "已办理" in await _act(econ, ma02, "issue_order", note="请尽快办理")
    async with _signed_in(site, "zl.step") as company:
        said = await _act(company, ma02, "accept_order", specialist_name="赵敏", specialist_phone="abc")
        assert "服务专员电话不是中国大陆手机号" in said, said
        assert "已办理" in await _act(company, ma02, "accept_order", specialist_name="赵敏", specialist_phone="13800471234")
        history = (await company.get(ma02)).text
        assert "下发任务单" in history and "接收任务单" in history and "服务专员 赵敏（13800471234）" in history


async def test_a_unit_filters_its_inbox_marks_it_read_in_bulk_and_rectifies_a_bad_rating(
        site: Site, amqp: aio_pika.abc.AbstractRobustConnection) -> None:
    agreement = small_project(ALUMINIUM, "steps2", ("MA-01", "LT-01"))
    code, credit = agreement.project.code, agreement.project.enterprise.credit_code
    await routed(site, amqp, agreement)
    await site.account("gs.inbox", "gov_service_bureau", Role.GOV_SERVICE)
    notices = NotifierRepository(site.store)
    unit = "unit:gov_service_bureau"
    await until(lambda: _kinds(notices, unit, code), True, "政务服务局's notices of the project")

    # the enterprise rates 政务服务局 badly; a score out of range first: answered on its page only
    async with httpx.AsyncClient(base_url=site.url, follow_redirects=True, timeout=30) as enterprise:
        await enterprise.get(site.link(code))
        token = _token((await enterprise.get("/e")).text)
        wrong = await enterprise.post("/e/assess", data={"csrftoken": token, "provider": "gov_service_bureau",
                                                         "year": "2026", **{f"score_{s}": "3" for s in SCORES},
                                                         "score_responsiveness": "300"})
        said = _flashes(wrong.text)
        assert "“首问负责、主动对接及时”的得分须在 0–20 分之间" in said and "responsiveness" not in said, said
        assert await notices.inbox(f"enterprise:{credit}", event_type="request.refused") == [], \
            "a form error is never sent to the enterprise as a notice"
        bad = await enterprise.post("/e/assess", data={"csrftoken": token, "provider": "gov_service_bureau",
                                                       "year": "2026", **{f"score_{s}": "3" for s in SCORES},
                                                       "comment": "多次催办无回复"})
        assert "已办理" in _flashes(bad.text)
    await until(lambda: _kinds(notices, unit, code, "assessment.submitted"), True, "the 差评 notice")

    async with _signed_in(site, "gs.inbox") as gov:
        page = (await gov.get("/inbox", params={"kind": "assessment.submitted"})).text
        kinds = set(re.findall(r'data-kind="([^"]+)"', page))
        assert kinds == {"assessment.submitted"}, kinds
        assert 'href="/rectify"' in page, "the notice links to the page where the 差评 is rectified"
        notice = (await notices.inbox(unit, project=code, event_type="assessment.submitted"))[0]
        assert "zeroerrand" not in notice["body"] and "/rectify" in notice["body"]

        # ticked ones only, then all of a project's, then nothing unread is left there
        page = (await gov.get("/inbox", params={"project": code, "unread": "1"})).text
        ids = re.findall(r'name="id" value="([^"]+)"', page)
        assert len(ids) >= 2 and set(re.findall(r'data-notice="([^"]+)"', page)) == set(ids)
        answer = await gov.post("/inbox/read", data={"csrftoken": _token(page), "project": code, "unread": "1",
                                                     "id": ids[:1]})
        assert "已将 1 条通知标记为已读" in _flashes(answer.text)
        assert (await notices.notice(ids[0], unit) or {}).get("status") == "delivered"
        answer = await gov.post("/inbox/read", data={"csrftoken": _token(page), "project": code, "all": "1"})
        assert f"已将 {len(ids) - 1} 条通知标记为已读" in _flashes(answer.text)
        assert await notices.inbox(unit, project=code, unread_only=True) == []
        assert "没有符合筛选条件的通知" in (await gov.get("/inbox", params={"project": code, "unread": "1"})).text

        page = (await gov.get("/rectify")).text
        assert "多次催办无回复" in page and "待整改" in page
        [assessment_id] = re.findall(r'data-assessment="([^"]+)"', page[:page.index("</section>")])
        answer = await gov.post(f"/rectify/{assessment_id}", data={"csrftoken": _token(page),
                                                                   "note": "已明确专人跟进，每周回访企业"})
        assert "已办理" in _flashes(answer.text), _flashes(answer.text)
        assert "已按期整改" in answer.text and "每周回访企业" in answer.text
    rated = await MongoLedgerRepository(site.store).assessment(assessment_id)
    assert rated is not None and rated.rectification == "已明确专人跟进，每周回访企业"


async def _kinds(notices: NotifierRepository, recipient: str, project: str, kind: str | None = None) -> bool:
    return bool(await notices.inbox(recipient, project=project, event_type=kind))
