"""The console bounds its own work (services/console/load.py): requests beyond its limit and its
queue are answered at once, 503 with Retry-After and a message in Chinese, never left to time out;
concurrent loads of one board share a read made after each of them arrived."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from services.common.rule_files import load_rulebook
from services.common.settings import BrokerSettings, ConsoleSettings, RuntimeSettings
from services.common.storage import Store
from services.console.accounts import Accounts, Role
from services.console.app import create_console
from services.console.load import Admission, Shared
from services.console.service import ConsoleService
from tests.console.conftest import KEY, PASSWORD
from tests.integration.conftest import amqp_url, embedded_endpoint, store  # noqa: F401


async def test_admission_answers_503_beyond_its_limit_and_queue() -> None:
    release = asyncio.Event()
    handled = 0

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal handled
        handled += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    admission = Admission(slow, limit=1, queued=2, wait_s=30, retry_after_s=7)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admission), base_url="http://console") as client:
        calls = [asyncio.create_task(client.get("/board")) for _ in range(6)]
        while admission.in_flight + admission.waiting < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        # 1 handled, 2 queued: the other 3 are answered now, while the first still runs
        refused = [c for c in calls if c.done()]
        assert len(refused) == 3 and handled == 1
        for call in refused:
            answer = call.result()
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "7"
            assert answer.headers["content-type"].startswith("text/plain; charset=utf-8")
            assert "服务台当前访问人数过多" in answer.text and "7 秒后" in answer.text
        release.set()
        done = await asyncio.gather(*calls)
        assert Counter(a.status_code for a in done) == {200: 3, 503: 3}
        assert handled == 3 and admission.refused == 3

        # a queued request that waits longer than wait_s: 503 too
        release.clear()
        admission.wait_s = 0.2
        first = asyncio.create_task(client.get("/board"))
        while admission.in_flight < 1:
            await asyncio.sleep(0.01)
        late = await client.get("/board")
        assert late.status_code == 503 and late.headers["retry-after"] == "7"
        release.set()
        assert (await first).status_code == 200
        # static files are not counted
        release.clear()
        admission.limit, admission.queued = 1, 0
        busy = asyncio.create_task(client.get("/board"))
        while admission.in_flight < 1:
            await asyncio.sleep(0.01)
        assert (await client.get("/board")).status_code == 503
        static = asyncio.create_task(client.get("/static/console.css"))
        await asyncio.sleep(0.05)
        assert not static.done() and handled == 6, "passed straight to the app (here: waits on the event like it)"
        release.set()
        await asyncio.gather(busy, static)


async def test_concurrent_reads_share_one_read_made_after_they_arrived() -> None:
    shared: Shared[str, int] = Shared()
    version = 0
    gate = asyncio.Event()

    async def read() -> int:
        seen = version  # what the store holds when the read is made
        await gate.wait()
        return seen

    first = [asyncio.create_task(shared.get("board", read)) for _ in range(50)]
    await asyncio.sleep(0.01)
    version = 1  # a change after the first read started: callers from now on must see it
    later = [asyncio.create_task(shared.get("board", read)) for _ in range(50)]
    await asyncio.sleep(0.01)
    gate.set()
    assert set(await asyncio.gather(*first)) == {0}
    assert set(await asyncio.gather(*later)) == {1}
    assert shared.reads == 2
    other = await shared.get("another", read)
    assert other == 1 and shared.reads == 3

    async def broken() -> int:
        raise RuntimeError("store down")

    failed = await asyncio.gather(*(shared.get("x", broken) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(f, RuntimeError) for f in failed)
    assert await shared.get("x", read) == 1, "a failed read is not kept"


@pytest.fixture
async def tiny(amqp_url: str, rules_copy: Path, store: Store) -> AsyncIterator[ConsoleService]:  # noqa: F811
    """The console alone, allowed one request at a time and none waiting."""
    settings = ConsoleSettings(port=0, secret_key=KEY, max_in_flight=1, max_queued=0, retry_after_s=3)
    console = create_console(settings, BrokerSettings(amqp_url=amqp_url), store=store,
                             runtime=RuntimeSettings(environment="development"), rules_dir=rules_copy)
    await Accounts(store).add("gs.tiny", "测试员", "gov_service_bureau", Role.GOV_SERVICE, PASSWORD,
                              load_rulebook(rules_copy).units)
    await console.start()
    try:
        yield console
    finally:
        await console.stop()


@pytest.mark.integration
async def test_the_console_answers_503_in_chinese_when_over_a_tiny_limit(tiny: ConsoleService) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{tiny.port}", timeout=30) as client:
        form = await client.get("/login")
        token = re.search(r'name="csrftoken" value="([^"]+)"', form.text)
        assert token is not None
        signed_in = await client.post("/login", data={"username": "gs.tiny", "password": PASSWORD,
                                                      "csrftoken": token.group(1)})
        assert signed_in.status_code == 303, signed_in.text
        answers = await asyncio.gather(*(client.get("/board") for _ in range(30)))
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) == {200, 503} and statuses[200] >= 1, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "3"
            assert "服务台当前访问人数过多" in answer.text
            assert answer.headers["x-frame-options"] == "DENY", "through the Guard: security headers as every page"
        else:
            assert "我的事项" in answer.text and "<table class=\"items\">" in answer.text, "the tables, not their escaped text"
