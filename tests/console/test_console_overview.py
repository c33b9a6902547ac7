"""The overview, the boards to work from and the Excel downloads, over HTTP on the real RabbitMQ and
store: who may open each page and download (and who is refused), what the filters keep, that a page of
a board reads one page of lines from the store, that the workbooks open with their Chinese headers, and
the overview and the annual report in Chromium at 1366×768 (screenshots under var/test-output/console/)."""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from pymongo import AsyncMongoClient, monitoring

from services.common.domain import ServiceMode, Stage
from services.common.messages import ReportBlocker
from services.common.settings import RuntimeSettings, StoreSettings
from services.common.storage import Store, client_options
from services.console.accounts import MANAGEMENT_COMMITTEE, AccountError, Accounts, Role
from services.console.app import create_console
from services.console.exports import ITEM_COLUMNS, XLSX
from services.evaluation.handlers import handle, sweep
from services.evaluation.ledger import ItemState, local_day
from services.evaluation.report import SCORE_COLUMNS
from services.evaluation.repository import ITEMS, MongoLedgerRepository
from tests.console.conftest import PASSWORD, Site
from tests.unit.ledger_kit import UNITS, at, ledger, request, routed, started

pytestmark = pytest.mark.integration

PLAN, UTIL, ZL = "planning_construction_bureau", "public_utilities_bureau", "zhenglian_company"
ACCOUNTS = (("gs.ov", "gov_service_bureau", Role.GOV_SERVICE), ("ed.ov", "econ_dev_bureau", Role.ECON_DEV),
            ("lead.ov", MANAGEMENT_COMMITTEE, Role.LEADER), ("pc.ov", PLAN, Role.DEPARTMENT),
            ("zl.ov", ZL, Role.SERVICE_COMPANY), ("rec.ov", "econ_dev_bureau", Role.RECRUITING),
            ("rec.other", PLAN, Role.RECRUITING))


class Year:
    """Two projects: OLD (ready 90 days ago, never contacted: every line red; EP-02 blocked, CP-03 of
    公共事业服务局) and NEW (signed today: EP-01 ready, EP-03 waiting for it, MA-02 a 专业跑腿 line whose
    task order 经发局 has still to issue), the day's sweep run."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6].upper()
        self.old, self.new = f"OV-OLD-{suffix}", f"OV-NEW-{suffix}"
        self.today = local_day(datetime.now(UTC))

    async def seed(self, site: Site) -> None:
        book = ledger(repo=MongoLedgerRepository(site.store))
        before = self.today - timedelta(days=90)
        await handle(started(self.old, before), book, at(before))
        for item, unit, stage in (("EP-01", PLAN, Stage.ENGINEERING_PERMIT), ("EP-02", PLAN, Stage.ENGINEERING_PERMIT),
                                  ("CP-03", UTIL, Stage.CONSTRUCTION_PERMIT)):
            await handle(routed(self.old, item, before, unit=unit, stage=stage), book, at(before))
        await handle(request(ReportBlocker, before, PLAN, project_code=self.old, item_code="EP-02", reason="图纸缺章",
                             resolver=UTIL), book, at(before))
        await handle(started(self.new, self.today), book, at(self.today))
        await handle(routed(self.new, "EP-01", self.today), book, at(self.today))
        await handle(routed(self.new, "EP-03", self.today, requires=("EP-01",)), book, at(self.today))
        await handle(routed(self.new, "MA-02", self.today, unit=ZL, mode=ServiceMode.ERRAND,
                            stage=Stage.MARKET_ACCESS), book, at(self.today))
        await sweep(book, self.today, datetime.now(UTC))
        for username, unit, role in ACCOUNTS:
            await site.account(username, unit, role)


def _token(html: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


@contextlib.asynccontextmanager
async def signed_in(url: str, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        form = await client.get("/login")
        answer = await client.post("/login", data={"username": username, "password": PASSWORD,
                                                   "csrftoken": _token(form.text)})
        assert answer.status_code == 303, answer.text
        yield client


def lines(html: str) -> list[str]:
    """The lines of the page's item tables, in the order shown."""
    return re.findall(r'<tr class="[^"]*" data-item="([^"]+)"', html)


def sheet_rows(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == XLSX and "filename*=UTF-8''" in response.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    header = [c.value for c in sheet[2]]
    assert header == list(ITEM_COLUMNS)
    return [dict(zip(header, row, strict=True)) for row in sheet.iter_rows(min_row=3, values_only=True)]


@pytest.fixture
async def year(site: Site) -> Year:
    seeded = Year()
    await seeded.seed(site)
    return seeded


async def test_overview_shows_the_bureaus_and_the_leader_every_project_and_its_cards(site: Site, year: Year) -> None:
    cell = (f'href="/overview/items?unit={PLAN}&amp;stage=engineering_permit&amp;level=red">红牌 2</a>')
    for username in ("gs.ov", "ed.ov", "lead.ov"):
        async with signed_in(site.url, username) as client:
            answer = await client.get("/overview")
            assert answer.status_code == 200, (username, answer.text[:300])
            assert cell in answer.text and year.old in answer.text and year.new in answer.text
            assert 'href="/overview/items?unit=public_utilities_bureau&amp;stage=construction_permit&amp;level=red"' \
                in answer.text
    async with signed_in(site.url, "lead.ov") as client:
        counted = await client.get(f"/overview/items?unit={PLAN}&stage=engineering_permit&level=red")
        assert set(lines(counted.text)) == {f"{year.old}/EP-01", f"{year.old}/EP-02"}, "the count's own lines"
        blocked = await client.get("/overview/items?state=blocked")
        assert lines(blocked.text) == [f"{year.old}/EP-02"]
        found = await client.get("/overview", params={"q": f"企业{year.new}"})
        assert re.findall(r'data-project="([^"]+)"', found.text) == [year.new]
        by_unit = await client.get("/overview", params={"q": "公共事业服务局"})
        assert year.old in re.findall(r'data-project="([^"]+)"', by_unit.text)
        assert year.new not in re.findall(r'data-project="([^"]+)"', by_unit.text), "NEW has no line of that unit"
        refused = await client.get("/overview/items?level=purple")
        assert refused.status_code == 400 and "等级“purple”不是可选的等级" in refused.text

    for username in ("pc.ov", "zl.ov", "rec.ov"):
        async with signed_in(site.url, username) as client:
            for path in ("/overview", "/overview/items?level=red", "/overview/items.xlsx"):
                answer = await client.get(path)
                assert answer.status_code == 403 and "此页面仅供" in answer.text, (username, path)


async def test_the_leader_reads_every_line_and_can_never_act(site: Site, year: Year) -> None:
    with pytest.raises(AccountError, match="只能属于单位 management_committee"):
        await Accounts(site.store).add("lead.bad", "王", "gov_service_bureau", Role.LEADER, PASSWORD, UNITS)
    with pytest.raises(AccountError, match="只能开设角色 leader"):
        await Accounts(site.store).add("dept.bad", "王", MANAGEMENT_COMMITTEE, Role.DEPARTMENT, PASSWORD, UNITS)
    async with signed_in(site.url, "lead.ov") as client:
        home = await client.get("/")
        assert home.status_code == 303 and home.headers["location"] == "/overview"
        project = await client.get(f"/projects/{year.old}")
        assert project.status_code == 200 and len(lines(project.text)) == 3 and "仅显示本单位" not in project.text
        item = await client.get(f"/items/{year.old}/EP-01")
        assert item.status_code == 200 and 'class="action"' not in item.text, "no button for the leader"
        forged = await client.post(f"/items/{year.old}/EP-01", data={"csrftoken": _token(item.text), "action": "accept"})
        assert forged.status_code == 403
        line = await MongoLedgerRepository(site.store).item(f"{year.old}/EP-01")
        assert line is not None and line.state is ItemState.READY
        for path in ("/board", "/board.xlsx", "/task-orders", "/task-orders.xlsx", "/rules", "/unroutable"):
            assert (await client.get(path)).status_code == 403, path
        report = await client.get("/report", params={"evaluator": "econ_dev_bureau"})
        assert report.status_code == 200 and "评价单位：和林格尔新区经济发展招商服务局" in report.text
        wrong = await client.get("/report", params={"evaluator": "nobody"})
        assert wrong.status_code == 400 and "评价单位“nobody”无效" in wrong.text


async def test_a_board_filters_searches_and_hides_waiting_lines_unless_asked(site: Site, year: Year) -> None:
    old, new = year.old, year.new
    async with signed_in(site.url, "pc.ov") as client:
        board = await client.get("/board")
        assert lines(board.text) == [f"{old}/EP-01", f"{old}/EP-02", f"{new}/EP-01"], "red first, waiting hidden"
        assert f"项目{old}" in board.text and f"企业{old}" in board.text, "project and enterprise named"
        waiting = await client.get("/board?waiting=1")
        assert lines(waiting.text)[-1] == f"{new}/EP-03"
        assert lines((await client.get("/board?level=red")).text) == [f"{old}/EP-01", f"{old}/EP-02"]
        assert lines((await client.get("/board?state=blocked")).text) == [f"{old}/EP-02"]
        assert lines((await client.get(f"/board?project={new}")).text) == [f"{new}/EP-01"]
        assert lines((await client.get("/board", params={"q": f"企业{new}", "waiting": "1"})).text) \
            == [f"{new}/EP-01", f"{new}/EP-03"]
        assert lines((await client.get("/board?stage=market_access")).text) == []
        bad = await client.get("/board?state=finished&stage=moon")
        assert bad.status_code == 400
        assert "状态“finished”不是可选的状态" in bad.text and "审批阶段“moon”不是可选的审批阶段" in bad.text


async def test_a_page_of_a_board_reads_one_page_of_lines_from_the_store(site: Site, embedded_uri: str) -> None:
    code = f"OV-BIG-{uuid.uuid4().hex[:6].upper()}"
    book = ledger(repo=MongoLedgerRepository(site.store))
    today = local_day(datetime.now(UTC))
    await handle(started(code, today), book, at(today))
    for n in range(230):
        await handle(routed(code, f"X-{n:03d}", today, unit=PLAN), book, at(today))
    await site.account("pc.big", PLAN, Role.DEPARTMENT)

    fetched: dict[int, str] = {}
    documents: list[int] = []

    class Reads(monitoring.CommandListener):
        """Counts the line documents (``ledger_items``) the store sends back."""

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name in ("find", "getMore"):
                fetched[event.request_id] = str(event.command.get("find") or event.command.get("collection"))

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            if fetched.pop(event.request_id, None) == ITEMS.name:
                cursor = event.reply.get("cursor", {})
                documents.append(len(cursor.get("firstBatch", cursor.get("nextBatch", []))))

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            fetched.pop(event.request_id, None)

    uri = embedded_uri if site.store.embedded else str(StoreSettings().mongodb_url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True, event_listeners=[Reads()],
                                                                **client_options(site.store.embedded, uri))
    watched = Store(client, site.store.database)
    replica = create_console(site.settings, site.service.console.broker_settings, store=watched,
                             runtime=RuntimeSettings(environment="development"), rules_dir=site.rules)
    await replica.start()
    try:
        async with signed_in(f"http://127.0.0.1:{replica.port}", "pc.big") as web:
            documents.clear()
            first = await web.get("/board")
            assert first.status_code == 200 and len(lines(first.text)) == 100
            assert "符合条件的未办结事项 230 项" in first.text and "第 1/3 页" in first.text
            assert sum(documents) == 100, f"lines read for a page of 100 of 230: {documents}"
            documents.clear()
            last = await web.get("/board?page=3")
            assert len(lines(last.text)) == 30 and sum(documents) == 30, documents
            assert 'href="/board?page=2#items"' in last.text
    finally:
        await replica.stop()
        await client.close()


async def test_downloads_open_in_excel_with_chinese_headers_for_those_who_may_see_them(site: Site, year: Year) -> None:
    old, new = year.old, year.new
    async with signed_in(site.url, "pc.ov") as client:
        board = sheet_rows(await client.get("/board.xlsx"))
        assert [r["项目编码"] + "/" + r["事项编码"] for r in board] == [f"{old}/EP-01", f"{old}/EP-02", f"{new}/EP-01"]
        assert board[0]["等级"] == "红牌" and board[0]["企业"] == f"企业{old}" and "图纸缺章" in board[1]["未解决的堵点/卡点"]
        assert [r["事项编码"] for r in sheet_rows(await client.get("/board.xlsx?level=red&waiting=1"))] == ["EP-01", "EP-02"]
        own = sheet_rows(await client.get(f"/projects/{old}/ledger.xlsx"))
        assert [r["事项编码"] for r in own] == ["EP-01", "EP-02"], "a department's own lines only"
        for path in ("/report.xlsx", "/task-orders.xlsx", "/overview/items.xlsx"):
            assert (await client.get(path)).status_code == 403, path
    async with signed_in(site.url, "lead.ov") as client:
        assert len(sheet_rows(await client.get(f"/projects/{old}/ledger.xlsx"))) == 3
        red = sheet_rows(await client.get("/overview/items.xlsx?level=red"))
        assert {r["事项编码"] for r in red if r["项目编码"] == old} == {"EP-01", "EP-02", "CP-03"}
    async with signed_in(site.url, "rec.ov") as client:
        assert len(sheet_rows(await client.get(f"/projects/{old}/ledger.xlsx"))) == 3, "the project it brought in"
    async with signed_in(site.url, "rec.other") as client:
        assert (await client.get(f"/projects/{old}/ledger.xlsx")).status_code == 403
    async with signed_in(site.url, "ed.ov") as client:
        orders = sheet_rows(await client.get("/task-orders.xlsx"))
        mine = [r for r in orders if r["项目编码"] == new]
        assert [(r["事项编码"], r["任务单"]) for r in mine] == [("MA-02", "待下发")]
        book = load_workbook(io.BytesIO((await client.get(f"/report.xlsx?year={year.today.year}")).content))
        assert book.sheetnames[0] == "服务单位得分" and [c.value for c in book["服务单位得分"][2]] == list(SCORE_COLUMNS)
        report = await client.get("/report")
        assert '<a href="/">返回服务台</a>' in report.text and "/report.xlsx?year=" in report.text
        assert "@media print" in report.text and '<section id="summary">' in report.text
    async with signed_in(site.url, "zl.ov") as client:
        assert sheet_rows(await client.get("/task-orders.xlsx")) == [], "no order issued to it yet"


async def test_overview_and_annual_report_at_1366_by_768(site: Site, year: Year, browser: Any, shots: Path) -> None:
    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    await page.goto(f"{site.url}/login")
    await page.fill("input[name=username]", "lead.ov")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert page.url.endswith("/overview")
    cards = page.locator(f"#cards tr[data-unit={PLAN}] td[data-stage=engineering_permit] a.level.red")
    assert await cards.inner_text() == "红牌 2" and await cards.is_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 1366, "no sideways scroll at 1366 px"
    await page.screenshot(path=shots / "overview-1366x768.png")
    await page.screenshot(path=shots / "overview-full.png", full_page=True)
    await cards.click()
    await page.wait_for_load_state()
    assert "/overview/items?" in page.url and await page.locator("tr[data-item]").count() == 2

    await page.goto(f"{site.url}/report?year={year.today.year}")
    for column in ("总分", "结论"):
        header = page.locator("#summary th", has_text=column)
        box = await header.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1366, (column, box)
    await page.screenshot(path=shots / "annual-report-1366x768.png")
    await page.emulate_media(media="print")
    assert not await page.locator("nav.links").is_visible(), "the navigation is not printed"
    await page.emulate_media(media="screen")
    await page.click("nav.links >> text=返回服务台")
    await page.wait_for_load_state()
    assert page.url.endswith("/overview")
    await context.close()
