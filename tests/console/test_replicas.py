"""Two console replicas on one store, over HTTP: a session made on one is good on the other, failed
attempts on one count on the other, and disabling an account ends its sessions on both at once."""

from __future__ import annotations

import re

import httpx
import pytest

from services.common.settings import RuntimeSettings
from services.console.accounts import Accounts, Role
from services.console.app import create_console
from tests.console.conftest import PASSWORD, Site

pytestmark = pytest.mark.integration


async def csrf(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    found = re.search(r'name="csrftoken" value="([^"]+)"', page.text)
    assert found is not None, page.text[:300]
    return found.group(1)


async def test_replicas_share_sessions_attempts_and_disabling(site: Site) -> None:
    second = create_console(site.settings, site.service.console.broker_settings, store=site.store,
                            runtime=RuntimeSettings(environment="development"), rules_dir=site.rules)
    await second.start()
    try:
        other = f"http://127.0.0.1:{second.port}"
        await site.account("pc.liu", "planning_construction_bureau", Role.DEPARTMENT)
        async with httpx.AsyncClient(base_url=site.url) as first:
            token = await csrf(first, "/login")
            signed_in = await first.post("/login", data={"csrftoken": token, "username": "pc.liu",
                                                         "password": PASSWORD, "next": "/board"})
            assert signed_in.status_code == 303 and signed_in.headers["location"] == "/board"
            async with httpx.AsyncClient(base_url=other, cookies=first.cookies) as moved:
                board = await moved.get("/board")
                assert board.status_code == 200 and "规划建设局：我的事项" in board.text

                # failed logins on the first replica count on the second
                for _ in range(site.settings.max_attempts):
                    token = await csrf(first, "/login")
                    refused = await first.post("/login", data={"csrftoken": token, "username": "pc.liu",
                                                               "password": "wrong-password-1"})
                    assert refused.status_code == 401
                async with httpx.AsyncClient(base_url=other) as fresh:
                    token = await csrf(fresh, "/login")
                    blocked = await fresh.post("/login", data={"csrftoken": token, "username": "pc.liu",
                                                               "password": PASSWORD})
                    assert blocked.status_code == 429 and "次数过多" in blocked.text

                # disabling the account ends the session everywhere at its next request
                await Accounts(site.store).set_active("pc.liu", False)
                for client in (first, moved):
                    gone = await client.get("/board")
                    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
    finally:
        await second.stop()


async def test_behind_a_named_proxy_attempts_count_per_forwarded_client(site: Site) -> None:
    """With ``ZEROERRAND_CONSOLE_FORWARDED_ALLOW_IPS`` the limits count the client the proxy names, so
    one client's failures do not lock out everyone behind the proxy; without it the header is ignored."""
    behind = create_console(site.settings.model_copy(update={"forwarded_allow_ips": "127.0.0.1"}),
                            site.service.console.broker_settings, store=site.store,
                            runtime=RuntimeSettings(environment="development"), rules_dir=site.rules)
    await behind.start()
    try:
        async def try_code(base: str, client: str) -> int:
            async with httpx.AsyncClient(base_url=base, headers={"X-Forwarded-For": client}) as http:
                return (await http.get("/e/open", params={"project": "HLXQ-NONE", "code": "AAAA-BBBB-CCCC-DDDD"})).status_code

        proxy = f"http://127.0.0.1:{behind.port}"
        assert [await try_code(proxy, "10.0.0.1") for _ in range(site.settings.max_attempts + 1)][-1] == 429
        assert await try_code(proxy, "10.0.0.2") == 401, "another client behind the proxy is not locked out"
        # the console without the setting ignores the header: every try is the proxy's own address
        assert [await try_code(site.url, f"10.1.0.{n}") for n in range(site.settings.max_attempts + 1)][-1] == 429
    finally:
        await behind.stop()
