"""The console in headless Chromium against the real RabbitMQ and store, the way its users use it:
an enterprise follows its project from signing to hand-over and reports a blocker; a department
works an item from its board; 经发局 issues a task order and 政联公司 accepts it; a 招引单位 sees
only its projects; wrong access codes and wrong roles are refused. Screenshots of the main pages go
to var/test-output/console/<test>/."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.common.messages import AgreementSigned, PlannedItem
from services.console.accounts import Role
from services.evaluation.ledger import ItemState, item_key
from services.evaluation.repository import MongoLedgerRepository
from services.notifier.repository import NotifierRepository
from tests.conftest import ALUMINIUM, COMPUTING, CONSULT_UNKNOWN, example
from tests.console.conftest import PASSWORD, Site
from tests.integration.test_router_rabbitmq import sign

pytestmark = pytest.mark.integration


def small_project(name: str, suffix: str, items: tuple[str, ...], recruiting_unit: str | None = None) -> AgreementSigned:
    """An example agreement cut down to a few items, under codes of its own."""
    event = example(name, suffix=suffix)
    project = event.project
    if recruiting_unit:
        project = project.model_copy(update={"recruiting_unit": recruiting_unit})
    return event.model_copy(update={"project": project, "plan": tuple(PlannedItem(item=code) for code in items)})


async def routed(site: Site, amqp: aio_pika.abc.AbstractRobustConnection, agreement: AgreementSigned) -> None:
    """Signs the agreement and waits until the ledger holds each of its items."""
    await sign(amqp, agreement)
    repo = MongoLedgerRepository(site.store)
    await until(lambda: _count(repo, agreement.project.code), len(agreement.plan), "items in the ledger")


async def _count(repo: MongoLedgerRepository, code: str) -> int:
    return len(await repo.project_items(code)) if await repo.project(code) is not None else 0


async def until(probe: Any, expected: Any, what: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (found := await probe()) != expected:
        assert loop.time() < deadline, f"{what}: {found!r}, expected {expected!r}"
        await asyncio.sleep(0.1)


async def state(site: Site, project: str, item: str) -> ItemState:
    found = await MongoLedgerRepository(site.store).item(item_key(project, item))
    assert found is not None
    return found.state


async def login(page: Any, site: Site, username: str) -> None:
    await page.goto(f"{site.url}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def act(page: Any, action: str, **fields: str) -> str:
    """Fills and submits the item page's form for ``action``; returns the flash message shown."""
    form = page.locator(f"form[data-action={action}]")
    for name, value in fields.items():
        target = form.locator(f"[name={name}]")
        if await target.evaluate("e => e.tagName") == "SELECT":
            await target.select_option(value)
        else:
            await target.fill(value)
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state()
    return str(await page.locator(".flash").first.inner_text())


async def test_enterprise_follows_its_project_to_hand_over(site: Site, amqp: aio_pika.abc.AbstractRobustConnection,
                                                           browser: Any, shots: Path) -> None:
    agreement = small_project(ALUMINIUM, "web1", ("MA-01", "MA-02"))
    code, credit = agreement.project.code, agreement.project.enterprise.credit_code
    await routed(site, amqp, agreement)
    for username, unit, role in (("gs.li", "gov_service_bureau", Role.GOV_SERVICE),
                                 ("ed.wang", "econ_dev_bureau", Role.ECON_DEV),
                                 ("zl.zhao", "zhenglian_company", Role.SERVICE_COMPANY)):
        await site.account(username, unit, role)
    notices = NotifierRepository(site.store)
    await until(lambda: _has_notice(notices, f"enterprise:{credit}", code), True, "the enterprise's notice")

    enterprise = await (await browser.new_context()).new_page()
    await enterprise.goto(site.link(code))  # the link of its 一次性告知
    assert enterprise.url.endswith("/e"), "the link opens the project and drops the code from the address"
    ma01, ma02 = enterprise.locator("section[data-item$='/MA-01']"), enterprise.locator("section[data-item$='/MA-02']")
    assert "可办理" in await ma01.inner_text()
    await enterprise.click("#waiting summary")  # items waiting for others are folded below those under way
    waiting = await ma02.inner_text()
    assert "等待" in waiting and "MA-01" in waiting
    assert "所需材料" in waiting and await ma01.locator("ol.materials li").count() > 0
    await enterprise.screenshot(path=shots / "enterprise-progress.png", full_page=True)

    # opening a notice marks it read ("delivered" means read)
    first = enterprise.locator("ul.notices li.unread a").first
    await first.click()
    await enterprise.wait_for_load_state()
    notice_id = enterprise.url.rsplit("/", 1)[1]
    stored = await notices.notice(notice_id, f"enterprise:{credit}")
    assert stored is not None and stored["status"] == "delivered" and stored.get("read_at") is not None
    await enterprise.screenshot(path=shots / "enterprise-notice.png", full_page=True)

    # a 堵点 reported by the enterprise goes to the ledger as its own request
    await enterprise.goto(f"{site.url}/e")
    await enterprise.select_option("form[action='/e/issue'] select[name=item]", item_key(code, "MA-01"))
    await enterprise.fill("form[action='/e/issue'] textarea[name=reason]", "窗口要求补充法定代表人身份证明原件，线上无法提交")
    await enterprise.click("form[action='/e/issue'] button[type=submit]")
    await enterprise.wait_for_load_state()
    assert "已办理" in await enterprise.locator(".flash").first.inner_text()
    assert await state(site, code, "MA-01") is ItemState.BLOCKED
    assert "线上无法提交" in await enterprise.locator("section[data-item$='/MA-01']").inner_text()

    # 政务服务局 works MA-01 from its board: resolve the blocker, contact, accept, complete, hand over
    staff = await (await browser.new_context()).new_page()
    await login(staff, site, "gs.li")
    await staff.goto(f"{site.url}/board")
    assert await staff.locator(f"#blockers tr[data-item='{item_key(code, 'MA-01')}']").count() == 1
    await staff.screenshot(path=shots / "department-board.png", full_page=True)
    await staff.click(f"#blockers tr[data-item='{item_key(code, 'MA-01')}'] a[href^='/items/']")
    assert "已办理" in await act(staff, "unblock", note="已协调窗口改为线上核验")
    assert "已办理" in await act(staff, "contact")
    assert "已办理" in await act(staff, "accept")
    assert await state(site, code, "MA-01") is ItemState.ACCEPTED
    assert "已办理" in await act(staff, "complete")
    assert "已办理" in await act(staff, "deliver", results="营业执照（统一社会信用代码 " + credit + "）")
    await staff.screenshot(path=shots / "item-delivered.png", full_page=True)
    assert await state(site, code, "MA-01") is ItemState.DELIVERED

    # MA-02 is now ready and needs a task order: 经发局 issues it, 政联公司 accepts and names a 服务专员
    await until(lambda: state(site, code, "MA-02"), ItemState.READY, "MA-02 ready")
    econ = await (await browser.new_context()).new_page()
    await login(econ, site, "ed.wang")
    await econ.goto(f"{site.url}/task-orders")
    await econ.screenshot(path=shots / "task-orders-to-issue.png", full_page=True)
    await econ.click(f"#to-issue tr[data-item='{item_key(code, 'MA-02')}'] a[href^='/items/']")
    assert "已办理" in await act(econ, "issue_order", note="请尽快办理")
    company = await (await browser.new_context()).new_page()
    await login(company, site, "zl.zhao")
    await company.goto(f"{site.url}/task-orders")
    await company.click(f"#orders tr[data-item='{item_key(code, 'MA-02')}'] a[href^='/items/']")
    assert "已办理" in await act(company, "accept_order", specialist_name="赵敏", specialist_phone="13800471234")
    for action in ("accept", "complete"):
        assert "已办理" in await act(company, action)
    assert "已办理" in await act(company, "deliver", results="企业印章备案回执")

    # the enterprise sees everything handed over, with the results and the 服务专员, and rates a provider
    await until(lambda: _delivered(site, code), True, "the project delivered")
    await enterprise.goto(f"{site.url}/e")
    await enterprise.click("#delivered summary")  # the items handed over are folded away, opened on a tap
    page_text = await enterprise.locator("main").inner_text()
    assert "已全部移交" in page_text and "企业印章备案回执" in page_text and "赵敏" in page_text
    form = enterprise.locator("form.assess[data-provider=gov_service_bureau]")
    scores = {"responsiveness": 18, "notice": 19, "efficiency": 22, "attitude": 14, "free_of_charge": 10, "delivery": 9}
    for name, points in scores.items():
        await form.locator(f"input[name=score_{name}]").fill(str(points))
    await form.locator("textarea[name=comment]").fill("响应及时")
    await form.locator("button[type=submit]").click()
    await enterprise.wait_for_load_state()
    assert "已办理" in await enterprise.locator(".flash").first.inner_text()
    assert "已测评" in await enterprise.locator("[data-provider=gov_service_bureau]").inner_text()
    await enterprise.screenshot(path=shots / "enterprise-handed-over.png", full_page=True)


async def _has_notice(notices: NotifierRepository, recipient: str, project: str) -> bool:
    return bool(await notices.inbox(recipient, project=project))


async def _delivered(site: Site, code: str) -> bool:
    project = await MongoLedgerRepository(site.store).project(code)
    return project is not None and project.delivered_at is not None


async def test_recruiting_unit_sees_only_its_projects(site: Site, amqp: aio_pika.abc.AbstractRobustConnection,
                                                      browser: Any, shots: Path) -> None:
    ours = small_project(ALUMINIUM, "web2a", ("MA-01",), recruiting_unit="planning_construction_bureau")
    theirs = small_project(COMPUTING, "web2b", ("MA-01",), recruiting_unit="econ_dev_bureau")
    for agreement in (ours, theirs):
        await routed(site, amqp, agreement)
    await site.account("pc.recruit", "planning_construction_bureau", Role.RECRUITING)
    page = await (await browser.new_context()).new_page()
    await login(page, site, "pc.recruit")
    await page.goto(f"{site.url}/projects")
    listed = await page.locator("tr[data-project]").evaluate_all("rows => rows.map(r => r.dataset.project)")
    assert listed == [ours.project.code]
    await page.screenshot(path=shots / "recruiting-projects.png", full_page=True)
    await page.click(f"tr[data-project='{ours.project.code}'] a")
    assert "MA-01" in await page.locator("main").inner_text()
    response = await page.goto(f"{site.url}/projects/{theirs.project.code}")
    assert response is not None and response.status == 403
    response = await page.goto(f"{site.url}/board")
    assert response is not None and response.status == 403, "a 招引单位 account has no board of items"


async def test_recruiting_unit_reports_a_blocker_and_rates_the_units_serving_its_project(
        site: Site, amqp: aio_pika.abc.AbstractRobustConnection, browser: Any, shots: Path) -> None:
    """方案三(二)、四(二)、五(六): the 招引单位 reports a 堵点/卡点 on its project's item and gives its 测评,
    but is offered no 测评 of its own service."""
    agreement = small_project(ALUMINIUM, "web2c", ("MA-01", "LT-01"), recruiting_unit="planning_construction_bureau")
    code = agreement.project.code
    await routed(site, amqp, agreement)
    await site.account("pc.recruit2", "planning_construction_bureau", Role.RECRUITING)
    page = await (await browser.new_context()).new_page()
    await login(page, site, "pc.recruit2")
    await page.goto(f"{site.url}/items/{code}/MA-01")
    assert await page.locator("form[data-action]").count() == 1, "only the blocker button for the 招引单位"
    assert "已办理" in await act(page, "block", reason="企业章程需股东补签，协调未果", resolver="gov_service_bureau")
    await until(lambda: _line_state(site, code, "MA-01"), "blocked", "the item blocked by the 招引单位")

    await page.goto(f"{site.url}/projects/{code}")
    assert await page.locator("form.assess[data-provider=planning_construction_bureau]").count() == 0
    form = page.locator("form.assess[data-provider=gov_service_bureau]")
    scores = {"responsiveness": 15, "notice": 18, "efficiency": 20, "attitude": 14, "free_of_charge": 10, "delivery": 8}
    for name, points in scores.items():
        await form.locator(f"input[name=score_{name}]").fill(str(points))
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state()
    assert "已办理" in await page.locator(".flash").first.inner_text()
    assert "已测评（85" in await page.locator("[data-provider=gov_service_bureau]").inner_text()
    await page.screenshot(path=shots / "recruiting-assess.png", full_page=True)
    [rated] = [a for a in await MongoLedgerRepository(site.store).assessments(date.today().year)
               if a.project_code == code]
    assert (rated.rater, rated.requested_by, rated.provider) == (
        "recruiting_unit", "planning_construction_bureau", "gov_service_bureau")


async def _line_state(site: Site, project: str, item: str) -> str | None:
    lines = await MongoLedgerRepository(site.store).project_items(project)
    return next((line.state.value for line in lines if line.item_code == item), None)


async def test_wrong_access_code_and_wrong_role_are_refused(site: Site, amqp: aio_pika.abc.AbstractRobustConnection,
                                                            browser: Any, shots: Path) -> None:
    agreement = small_project(ALUMINIUM, "web3", ("MA-01",))
    code, credit = agreement.project.code, agreement.project.enterprise.credit_code
    await routed(site, amqp, agreement)
    page = await (await browser.new_context()).new_page()

    # the public credit code is not an access code, nor is another project's code
    await page.goto(f"{site.url}/e/login")
    await page.fill("input[name=project]", code)
    await page.fill("input[name=code]", credit)
    await page.click("button[type=submit]")
    assert "访问码不正确" in await page.locator(".flash.error").inner_text()
    await page.screenshot(path=shots / "enterprise-refused.png", full_page=True)
    response = await page.goto(site.link("HLXQ-OTHER-PROJECT").replace("HLXQ-OTHER-PROJECT", code, 1))
    assert response is not None and response.status == 401
    response = await page.goto(f"{site.url}/e")
    assert page.url.endswith("/e/login"), "no project is open after refused codes"

    # attempts are limited: after the window's limit even the right code waits
    for _ in range(site.settings.max_attempts):
        await page.goto(f"{site.url}/e/open?project={code}&code=AAAA-BBBB-CCCC-DDDD")
    response = await page.goto(site.link(code))
    assert response is not None and response.status == 429
    assert "次数过多" in await page.locator("main").inner_text()

    # a department's account cannot open another role's pages; a wrong password is refused
    await site.account("pc.dept", "planning_construction_bureau", Role.DEPARTMENT)
    staff = await (await browser.new_context()).new_page()
    await staff.goto(f"{site.url}/login")
    await staff.fill("input[name=username]", "pc.dept")
    await staff.fill("input[name=password]", "not-the-password")
    await staff.click("button[type=submit]")
    assert "用户名或密码错误" in await staff.locator(".flash.error").inner_text()
    await login(staff, site, "pc.dept")
    for path in ("/task-orders", "/rules", "/unroutable", "/report", "/projects"):
        response = await staff.goto(f"{site.url}{path}")
        assert response is not None and response.status == 403, path
    await staff.screenshot(path=shots / "wrong-role.png", full_page=True)
    # and no buttons, nor a forged form, for an item another unit is responsible for
    response = await staff.goto(f"{site.url}/items/{code}/MA-01")
    assert response is not None and response.status == 403
    token = (await staff.context.cookies())
    csrf = next(c["value"] for c in token if c["name"] == "csrftoken")
    forged = await staff.request.post(f"{site.url}/items/{code}/MA-01", form={"csrftoken": csrf, "action": "accept"})
    assert forged.status == 403
    assert await state(site, code, "MA-01") is ItemState.READY
    # a form posted without the CSRF token is refused too
    missing = await staff.request.post(f"{site.url}/logout", form={})
    assert missing.status == 403


async def test_gov_service_bureau_sees_rules_unroutable_items_report_and_inbox(
        site: Site, amqp: aio_pika.abc.AbstractRobustConnection, browser: Any, shots: Path) -> None:
    agreement = example(CONSULT_UNKNOWN, suffix="web4")  # plans items the catalog does not know
    await sign(amqp, agreement)
    repo = MongoLedgerRepository(site.store)
    await until(lambda: _unroutable_count(repo), True, "unroutable items recorded")
    await until(lambda: _has_rules_version(repo), True, "the router's rules version recorded")
    await site.account("gs.chen", "gov_service_bureau", Role.GOV_SERVICE)
    page = await (await browser.new_context()).new_page()
    await login(page, site, "gs.chen")

    await page.goto(f"{site.url}/unroutable")
    text = await page.locator("main").inner_text()
    assert agreement.project.code in text and "清单中无此事项" in text
    await page.screenshot(path=shots / "unroutable.png", full_page=True)

    await page.goto(f"{site.url}/rules")
    active = await repo.rules_events("rules.activated", 1)
    assert active[0].version in await page.locator(".summary").inner_text()
    await page.select_option("select[name=item]", "PL-03")  # the energy review: decided by the project's facts
    await page.fill("input[name=fact_annual_energy_tce]", "6000")  # each fact by its Chinese label
    await page.fill("input[name=fact_annual_electricity_10k_kwh]", "100")
    await page.click("form[action='/rules'] button[type=submit]")
    await page.wait_for_load_state()
    explained = await page.locator("#explained").inner_text()
    assert "服务方式" in explained and "规则" in explained, explained
    assert "年综合能源消费量（吨标准煤）：6000" in explained, explained
    for code in ("annual_energy_tce", "project.", "{", "路由键"):  # no codes, dicts or routing keys
        assert code not in explained, (code, explained)
    await page.screenshot(path=shots / "rules-explain.png", full_page=True)
    await page.fill("input[name=fact_annual_energy_tce]", "lots")
    await page.click("form[action='/rules'] button[type=submit]")
    assert "不是数字" in await page.locator("#explained").inner_text()

    response = await page.goto(f"{site.url}/report?year=2026")
    assert response is not None and response.status == 200
    assert "2026" in await page.title()
    await page.screenshot(path=shots / "annual-report.png", full_page=True)

    # 政务服务局 also reads the operators' notices (the unroutable items were announced to them)
    await page.goto(f"{site.url}/inbox")
    unread = page.locator("tr.unread a").first
    await unread.click()
    await page.wait_for_load_state()
    notice_id = page.url.rsplit("/", 1)[1]
    notices = NotifierRepository(site.store)
    read = await notices.notice(notice_id, "role:operators") or await notices.notice(notice_id, "unit:gov_service_bureau")
    assert read is not None and read["status"] == "delivered"
    await page.screenshot(path=shots / "inbox-notice.png", full_page=True)


async def _unroutable_count(repo: MongoLedgerRepository) -> bool:
    return bool(await repo.unroutable(2026) or await repo.unroutable(2027))


async def _has_rules_version(repo: MongoLedgerRepository) -> bool:
    return bool(await repo.rules_events("rules.activated", 1))
