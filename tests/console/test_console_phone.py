"""The enterprise's page on a phone (headless Chromium at 360, 390 and 414 px wide): a summary first
(done / under way / waiting, the next step, whom to call), the items under way before everything
else, the delivered ones folded, and never a sideways scroll. Screenshots under
var/test-output/console/<test>/."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from services.console.accounts import Role
from services.evaluation.ledger import ItemState
from tests.conftest import ALUMINIUM, example
from tests.console.conftest import PASSWORD, Site
from tests.console.test_console_browser import routed, state, until

pytestmark = pytest.mark.integration
PHONES = ((360, 740), (390, 844), (414, 896))


def _token(html: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', html)
    assert found
    return found.group(1)


@contextlib.asynccontextmanager
async def _staff(site: Site, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.url, follow_redirects=True, timeout=30) as client:
        form = await client.get("/login")
        await client.post("/login", data={"username": username, "password": PASSWORD, "csrftoken": _token(form.text)})
        yield client


async def _act(client: httpx.AsyncClient, path: str, action: str, **fields: str) -> None:
    token = _token((await client.get(path)).text)
    answer = await client.post(path, data={"csrftoken": token, "action": action, **fields})
    assert "已办理" in answer.text, (action, answer.text[-3000:])


async def _no_sideways_scroll(page: Any) -> None:
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths[0]} px of content in {widths[1]} px"


async def test_the_enterprise_reads_its_project_on_a_phone_without_sideways_scroll(
        site: Site, amqp: aio_pika.abc.AbstractRobustConnection, browser: Any, shots: Path) -> None:
    agreement = example(ALUMINIUM, suffix="phone1")  # the whole plan: 23 items
    code = agreement.project.code
    await routed(site, amqp, agreement)
    await site.account("gs.phone", "gov_service_bureau", Role.GOV_SERVICE, name="李明")
    ma01 = f"/items/{code}/MA-01"
    async with _staff(site, "gs.phone") as gov:
        await _act(gov, ma01, "contact", specialist_name="王芳", specialist_phone="13900001111")
        for action, fields in (("accept", {}), ("complete", {}),
                               ("deliver", {"results": "营业执照（统一社会信用代码 91150100MA0N8XK21Q，正本一份、副本一份）"})):
            await _act(gov, ma01, action, **fields)
    await until(lambda: state(site, code, "PL-01"), ItemState.READY, "PL-01 ready once MA-01 is delivered")

    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                        device_scale_factor=2)
    page = await context.new_page()
    await page.goto(site.link(code))
    # a 堵点 with a long unbroken text, as people paste them: the page still fits the phone
    await page.select_option("form[action='/e/issue'] select[name=item]", f"{code}/PL-01")
    await page.fill("form[action='/e/issue'] textarea[name=reason]",
                    "投资项目在线审批监管平台提示项目代码HLXQ-2026-0031-PL01-REPEATED-SUBMISSION-ERROR无法赋码")
    await page.click("form[action='/e/issue'] button[type=submit]")
    await page.wait_for_load_state()
    assert "已办理" in await page.locator(".flash").first.inner_text()

    summary = page.locator("#summary")
    text = await summary.inner_text()
    assert re.search(r"1\s*已办结移交", text) and "正在办理" in text and "等待前置事项" in text, text
    assert "下一步：" in text and "堵点/卡点" in text, "the blocked item is the next thing to know"
    assert "13900001111" not in text, "MA-01's 服务专员 is done: whom to call is about open items"
    contacts = await page.locator("#summary ul.contacts").inner_text()
    assert "规划建设局" in contacts and "政联公司" in contacts, contacts  # the units of the items under way
    # the summary first, then the items under way, then (folded) the delivered ones
    positions = await page.evaluate("""() => ['#summary', '#items', '#delivered'].map(
        s => document.querySelector(s).getBoundingClientRect().top)""")
    assert positions == sorted(positions), positions
    assert await page.locator("#delivered").get_attribute("open") is None, "delivered items are folded"
    assert not await page.locator("#delivered section[data-item$='/MA-01']").is_visible()
    first_open = await page.locator("#items ~ section.item").first.get_attribute("data-item")
    assert first_open == f"{code}/PL-01", "the blocked item comes first"

    for width, height in PHONES:
        await page.set_viewport_size({"width": width, "height": height})
        await page.goto(f"{site.url}/e")
        await _no_sideways_scroll(page)
        await page.screenshot(path=shots / f"enterprise-{width}.png", full_page=False)
    await page.click("#delivered summary")
    await page.click("#waiting summary")
    await page.click("#notices summary")
    await _no_sideways_scroll(page)
    assert await page.locator("#delivered section[data-item$='/MA-01']").is_visible()
    assert "营业执照" in await page.locator("#delivered").inner_text()
    await page.screenshot(path=shots / "enterprise-360-all-open.png", full_page=True)
    height = await page.evaluate("() => document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(f"{site.url}/e")
    folded = await page.evaluate("() => document.documentElement.scrollHeight")
    assert folded < height, "folded, the page is shorter than with everything open"
    await page.screenshot(path=shots / "enterprise-390-full.png", full_page=True)

    notice = page.locator("ul.notices li a").first
    await page.click("#notices summary")
    await notice.click()
    await page.wait_for_load_state()
    await _no_sideways_scroll(page)
    await page.screenshot(path=shots / "enterprise-390-notice.png", full_page=True)
