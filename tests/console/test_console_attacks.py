"""What an attacker (or a careless client) sends the console, answered without a 500: tries that
arrive all at once stay within the attempt limit, bodies the forms never send are refused before
the CSRF layer parses them, the explain form holds facts to the agreements' bounds, a 招引单位
account reads only its own projects' notices, and malformed numbers get a page, not a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest

from services.common.storage import Store
from services.console.accounts import COLLECTIONS, Attempts, Role
from services.notifier.repository import NotifierRepository
from tests.conftest import ALUMINIUM, COMPUTING
from tests.console.conftest import PASSWORD, Site
from tests.console.test_console_browser import routed, small_project, until

pytestmark = pytest.mark.integration


def _token(html: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


@contextlib.asynccontextmanager
async def _signed_in(site: Site, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.url) as client:
        form = await client.get("/login")
        answer = await client.post("/login", data={"username": username, "password": PASSWORD,
                                                   "csrftoken": _token(form.text)})
        assert answer.status_code == 303, answer.text
        yield client


@pytest.fixture
async def gov(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    await site.account("gs.attack", "gov_service_bureau", Role.GOV_SERVICE)
    async with _signed_in(site, "gs.attack") as client:
        yield client


async def test_concurrent_tries_stay_within_the_limit(store: Store) -> None:
    """Checking the count and then counting the failure let a burst through (18 of 60 at once, limit
    5); the embedded store's ``$inc`` also lost concurrent increments. Now each try is a record."""
    await store.ensure(COLLECTIONS)
    attempts = Attempts(store, limit=5, window_s=300)
    taken = await asyncio.gather(*(attempts.take(["login:user:x", "login:ip:1.2.3.4"]) for _ in range(40)))
    assert sum(t.wait is None for t in taken) <= 5
    later = [await attempts.take(["login:user:y", "login:ip:5.6.7.8"]) for _ in range(7)]
    assert [t.wait is None for t in later] == [True] * 5 + [False] * 2, "tries one after another: the limit"
    refunded = [await attempts.take(["login:user:z", "login:ip:9.9.9.9"]) for _ in range(3)]
    for attempt in refunded:
        await attempts.refund(attempt)
    assert await attempts.blocked(["login:ip:9.9.9.9"]) is None, "tries that succeeded are given back"
    failures = [await attempts.take(["login:user:z", "login:ip:9.9.9.9"]) for _ in range(6)]
    assert [t.wait is None for t in failures] == [True] * 5 + [False], "refunds do not lift the limit on failures"


async def test_a_burst_of_wrong_passwords_gets_no_more_tries_than_the_limit(site: Site) -> None:
    await site.account("ed.burst", "econ_dev_bureau", Role.ECON_DEV)
    async with httpx.AsyncClient(base_url=site.url) as first:
        form = await first.get("/login")
        token, cookies = _token(form.text), dict(first.cookies)

    async def wrong(i: int) -> int:
        async with httpx.AsyncClient(base_url=site.url, cookies=cookies, timeout=60) as client:
            answer = await client.post("/login", data={"username": "ed.burst", "password": f"wrong-password-{i}",
                                                       "csrftoken": token})
            return answer.status_code

    answers = Counter(await asyncio.gather(*(wrong(i) for i in range(40))))
    assert set(answers) <= {401, 429} and answers[401] <= site.settings.max_attempts, answers


async def test_bodies_the_forms_never_send_are_refused_not_crashed(site: Site, gov: httpx.AsyncClient) -> None:
    token = _token((await gov.get("/board")).text)

    async def chunked() -> AsyncIterator[bytes]:
        yield f"csrftoken={token}&action=contact&note=".encode()
        for _ in range(100):
            yield b"a" * 1024

    form = {"content-type": "application/x-www-form-urlencoded"}
    too_big = await gov.post("/logout", content=chunked(), headers=form)
    assert too_big.status_code == 413, "a chunked body over the limit, without a Content-Length"
    not_utf8 = await gov.post("/logout", content=f"csrftoken={token}&x=".encode() + b"\xff\xfe", headers=form)
    assert not_utf8.status_code == 400
    multipart = await gov.post("/logout", data={"csrftoken": token}, files={"note": ("a.txt", b"hello")})
    assert multipart.status_code == 415
    assert (await gov.get("/board")).status_code == 200, "still signed in: none of them reached the app"
    logout = await gov.post("/logout", data={"csrftoken": token})
    assert logout.status_code == 303, "an ordinary form still goes through"


async def test_explain_holds_facts_to_the_agreements_bounds(site: Site, gov: httpx.AsyncClient) -> None:
    for facts, reason in (("annual_energy_tce=1e999", "有限数"), ("annual_energy_tce=1e20", "超出"),
                          ("annual_energy_tce=" + "9" * 4000, "超出")):
        answer = await gov.get("/rules", params={"item": "PL-03", "facts": facts})
        assert answer.status_code == 200 and reason in answer.text, facts
    answer = await gov.get("/rules", params={"item": "PL-03", "facts": "annual_energy_tce=6000"})
    assert "专业跑腿" in answer.text and "政联公司" in answer.text
    assert "errand.zhenglian_company" not in answer.text, "no routing key on the page"
    assert (await gov.get("/report", params={"year": "abc"})).status_code == 400


async def test_a_recruiting_account_reads_only_its_projects_notices(
        site: Site, amqp: aio_pika.abc.AbstractRobustConnection) -> None:
    """A 招引单位 account may belong to any unit; the unit's inbox also holds its department work."""
    recruited = small_project(ALUMINIUM, "atk1", ("MA-01",), recruiting_unit="planning_construction_bureau")
    worked = small_project(COMPUTING, "atk2", ("MA-01", "LT-01"), recruiting_unit="econ_dev_bureau")
    for agreement in (recruited, worked):
        await routed(site, amqp, agreement)
    notices = NotifierRepository(site.store)
    unit = "unit:planning_construction_bureau"
    for agreement in (recruited, worked):
        code = agreement.project.code
        await until(lambda code=code: _has(notices, unit, code), True, f"{code}'s notice to the unit")
    department_notice = (await notices.inbox(unit, project=worked.project.code))[0]

    await site.account("pc.recruiter", "planning_construction_bureau", Role.RECRUITING)
    async with _signed_in(site, "pc.recruiter") as recruiter:
        inbox = (await recruiter.get("/inbox")).text
        assert recruited.project.code in inbox and worked.project.code not in inbox
        answer = await recruiter.get(f"/inbox/{department_notice['_id']}")
        assert answer.status_code == 404
    assert (await notices.notice(department_notice["_id"], unit) or {}).get("status") == "unread", \
        "the department's notice is still unread"


async def _has(notices: NotifierRepository, recipient: str, project: str) -> bool:
    return bool(await notices.inbox(recipient, project=project))


async def test_an_enterprise_assessment_with_a_malformed_year_is_answered(
        site: Site, amqp: aio_pika.abc.AbstractRobustConnection) -> None:
    agreement = small_project(ALUMINIUM, "atk3", ("MA-01",))
    await routed(site, amqp, agreement)
    async with httpx.AsyncClient(base_url=site.url) as enterprise:
        assert (await enterprise.get(site.link(agreement.project.code))).status_code == 303
        token = _token((await enterprise.get("/e")).text)
        scores = {f"score_{name}": "1" for name in ("responsiveness", "notice", "efficiency", "attitude",
                                                     "free_of_charge", "delivery")}
        answer = await enterprise.post("/e/assess", data={"csrftoken": token, "provider": "gov_service_bureau",
                                                          "year": "abc", **scores})
        assert answer.status_code == 303
        assert "四位数字" in (await enterprise.get("/e")).text


async def test_an_enterprise_without_a_session_is_sent_to_its_own_form(site: Site) -> None:
    """Not to the staff's login page (工作人员登录) with ``next=/e/login``, which it cannot use."""
    async with httpx.AsyncClient(base_url=site.url) as enterprise:
        for path in ("/e", "/e/notices/anything"):
            answer = await enterprise.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/e/login", path
        assert (await enterprise.get("/board")).headers["location"] == "/login?next=/board"


async def test_a_session_cookie_copied_before_signing_out_is_refused_after(site: Site) -> None:
    await site.account("pc.leaves", "planning_construction_bureau", Role.DEPARTMENT)
    async with _signed_in(site, "pc.leaves") as staff:
        copied = dict(staff.cookies)
        token = _token((await staff.get("/board")).text)
        assert (await staff.post("/logout", data={"csrftoken": token})).status_code == 303
    async with httpx.AsyncClient(base_url=site.url, cookies=copied) as replay:
        answer = await replay.get("/board")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    async with _signed_in(site, "pc.leaves") as again:
        assert (await again.get("/board")).status_code == 200, "signing in again works"


async def test_a_bearer_header_does_not_skip_the_csrf_check(site: Site) -> None:
    """asgi-csrf skips its check for "Authorization: Bearer"; the session cookie was honoured anyway."""
    await site.account("pc.bearer", "planning_construction_bureau", Role.DEPARTMENT)
    async with _signed_in(site, "pc.bearer") as staff:
        session = staff.cookies["zeroerrand_session"]
    async with httpx.AsyncClient(base_url=site.url) as forger:
        answer = await forger.post("/logout", data={}, headers={"cookie": f"zeroerrand_session={session}",
                                                                "authorization": "Bearer anything"})
        assert answer.status_code == 403 and "CSRF" in answer.text


async def test_a_second_empty_cookie_header_does_not_skip_the_csrf_check(site: Site) -> None:
    """asgi-csrf read the last Cookie header (empty: "no cookies", no check), Starlette the first."""
    await site.account("pc.cookies", "planning_construction_bureau", Role.DEPARTMENT)
    async with _signed_in(site, "pc.cookies") as staff:
        session = staff.cookies["zeroerrand_session"]
    async with httpx.AsyncClient(base_url=site.url) as forger:
        answer = await forger.post("/items/NO-SUCH/MA-01", data={"action": "contact"},
                                   headers=[("cookie", f"zeroerrand_session={session}"), ("cookie", "")])
        assert answer.status_code == 403 and "CSRF" in answer.text


async def test_a_department_sees_only_its_own_lines_of_a_shared_project(
        site: Site, amqp: aio_pika.abc.AbstractRobustConnection) -> None:
    """规划建设局 works LT-01 of a project whose MA-02 is 政联公司's: it sees its line, not the
    other unit's (nor the 服务专员's phone on it)."""
    shared = small_project(ALUMINIUM, "atk3", ("MA-01", "MA-02", "LT-01"))
    await routed(site, amqp, shared)
    code = shared.project.code
    await site.account("pc.own", "planning_construction_bureau", Role.DEPARTMENT)
    async with _signed_in(site, "pc.own") as department:
        page = await department.get(f"/projects/{code}")
        assert page.status_code == 200 and "LT-01" in page.text
        assert "MA-02" not in page.text and "MA-01" not in page.text and "仅显示本单位" in page.text
        assert (await department.get(f"/items/{code}/LT-01")).status_code == 200
        assert (await department.get(f"/items/{code}/MA-02")).status_code == 403
    await site.account("gs.all", "gov_service_bureau", Role.GOV_SERVICE)
    async with _signed_in(site, "gs.all") as bureau:
        overseen = (await bureau.get(f"/projects/{code}")).text
        assert all(item in overseen for item in ("MA-01", "MA-02", "LT-01")) and "仅显示本单位" not in overseen
