"""The whole system under least privilege, as ``deploy/`` runs it: in a private vhost, every user of
``services.common.permissions`` with its real grants (as ``deploy/rabbitmq/users.sh`` sets them);
the topology imported from ``deploy/rabbitmq/definitions.json`` as the cluster imports it at boot
(a service user cannot create it on an empty vhost: that is checked first); the router, the
notifier, the evaluation service and the console as separate processes in production mode, each
with ``ZEROERRAND_AMQP_URL`` of its own user (each declares the topology again at start, under its
grants) and its own ``/metrics`` and ``/health`` port; an example agreement signed with
``zeroerrand sign`` as the operator user. Then: its items are in the ledger, its notifications
stored, a request sent by the CLI as the operator and one sent by the console as its user are
applied by the ledger, and every service's ``/health`` answers 200."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiormq
import httpx
import pytest
from pymongo import AsyncMongoClient

from services.common import permissions as access
from services.common.access import access_code
from services.common.bus import make_broker
from services.common.topology import declare_topology
from services.evaluation.ledger import item_key
from tests.conftest import ALUMINIUM, EXAMPLES, ROOT
from tests.faults.harness import CLI, ServiceProcess, service_env
from tests.integration.conftest import _rabbitmqctl, store_directory
from tests.integration.test_permissions import _url, setup  # noqa: F401  (the users and their vhost)

pytestmark = pytest.mark.integration

SERVICES = ("router", "notifier", "evaluation", "console")
DATABASE = "zeroerrand_own_users"
PROJECT = "HLXQ-2026-0031"  # the example agreement's project: 23 items
CONSOLE_KEY = secrets.token_hex(24)
ENDPOINT = re.compile(r"metrics and health at http://127\.0\.0\.1:(\d+)/metrics")
CONSOLE_PORT = re.compile(r"console listening on http://127\.0\.0\.1:(\d+)")


@dataclass
class System:
    vhost: str
    prefix: str
    data_dir: Path
    processes: dict[str, ServiceProcess]
    metrics_ports: dict[str, int]
    console_port: int

    def env(self, user: str) -> dict[str, str]:
        env = service_env(_url(self.vhost, self.prefix + user), self.data_dir, DATABASE)
        env.update({
            "ZEROERRAND_ENVIRONMENT": "production",  # guest, the development secret and key are refused
            "ZEROERRAND_TRUSTED_PUBLISHERS": json.dumps([self.prefix + "router", self.prefix + "evaluation"]),
            "ZEROERRAND_METRICS_PORT": "0",
            "ZEROERRAND_NOTIFIER_WEBHOOK_SECRET": secrets.token_hex(16),
            "ZEROERRAND_CONSOLE_SECRET_KEY": CONSOLE_KEY,
            "ZEROERRAND_CONSOLE_PUBLIC_URL": "http://console.example",
            "ZEROERRAND_EVALUATION_SWEEP_INTERVAL_S": "3600",
        })
        return env

    @property
    def store_uri(self) -> str:
        return str(json.loads((self.data_dir / "store" / "address.json").read_text())["uri"])

    def check_running(self) -> None:
        for process in self.processes.values():
            process.check_running()


async def announced(process: ServiceProcess, pattern: re.Pattern[str], timeout_s: float = 120) -> int:
    """The port a service logged (it was given port 0)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        process.check_running()
        found = pattern.search(process.log_text())
        if found:
            return int(found.group(1))
        await asyncio.sleep(0.2)
    pytest.fail(f"zeroerrand {process.command} never logged {pattern.pattern}:\n{process.tail()}")


@pytest.fixture(scope="module")
async def system(setup: tuple[str, str, list[access.Grant]]) -> AsyncIterator[System]:  # noqa: F811
    vhost, prefix, _ = setup
    data_dir = store_directory("zeroerrand-own-users-")
    found = System(vhost, prefix, data_dir, {}, {}, 0)
    try:
        await cannot_create_the_topology(_url(vhost, prefix + "router"))
        import_definitions(vhost, data_dir)
        for name in SERVICES:
            process = ServiceProcess(name, found.env(name), data_dir / f"{name}.log", _url(vhost))
            found.processes[name] = process
            await process.start()  # waits until it consumes its queues
            found.metrics_ports[name] = await announced(process, ENDPOINT)
        found.console_port = await announced(found.processes["console"], CONSOLE_PORT)
        yield found
    finally:
        for process in reversed(list(found.processes.values())):
            if process.process is not None:
                process.terminate()
        shutil.rmtree(data_dir, ignore_errors=True)


async def cannot_create_the_topology(url: str) -> None:
    """On an empty vhost a service user cannot make the topology: RabbitMQ checks, when it creates a
    queue with a dead-letter exchange, that the user may read that queue, and each service reads only
    its own. So the administrator makes the topology (deploy: definitions.json, imported at boot)."""
    broker = make_broker(url)
    async with broker:
        await broker.connect()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="access to queue"):
            await declare_topology(broker)


def import_definitions(vhost: str, work: Path) -> None:
    """deploy/rabbitmq/definitions.json, its vhost renamed to the test's, imported by rabbitmqctl."""
    definitions = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text(encoding="utf-8"))
    for kind in ("exchanges", "queues", "bindings"):
        for entry in definitions[kind]:
            entry["vhost"] = vhost
    definitions["vhosts"] = [{**v, "name": vhost} for v in definitions["vhosts"]]
    target = work / "definitions.json"
    target.write_text(json.dumps(definitions), encoding="utf-8")
    _rabbitmqctl("import_definitions", str(target))


async def until(check: Any, what: str, system: System, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        system.check_running()
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}:\n{p.tail(15)}" for n, p in system.processes.items())
            pytest.fail(f"{what} within {timeout_s:.0f} s\n{logs}")
        await asyncio.sleep(0.3)


async def cli(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    """``zeroerrand ARGS`` as an operator runs it: the operator's own user, the services' store."""
    env = system.env("operator")
    return await asyncio.to_thread(subprocess.run, [CLI, *args], env=env, capture_output=True, text=True, timeout=120)


async def test_every_service_runs_as_its_own_user_and_the_system_works(system: System) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system.store_uri, tz_aware=True)
    db = client[DATABASE]
    try:
        # each service is connected to RabbitMQ as its own user, none as guest or the admin
        connections = subprocess.run(["rabbitmqctl", "-q", "list_connections", "vhost", "user"], capture_output=True,
                                     text=True, timeout=60).stdout
        users = {line.split("\t")[1] for line in connections.splitlines() if line.startswith(system.vhost + "\t")}
        assert users == {system.prefix + name for name in SERVICES}, users

        signed = await cli(system, "sign", "--wait", "0", str(EXAMPLES / ALUMINIUM))
        assert signed.returncode == 0, signed.stdout + signed.stderr

        async def routed_into_the_ledger() -> bool:
            return await db["ledger_items"].count_documents({"project_code": PROJECT}) == 23

        await until(routed_into_the_ledger, "the 23 items did not reach the ledger", system)

        async def notified() -> int:
            return await db["notifications"].count_documents({"project_code": PROJECT})

        assert await until(notified, "no notification was stored", system) > 0

        async def ready(item: str) -> bool:
            found = await db["ledger_items"].find_one({"_id": item_key(PROJECT, item)})
            return found is not None and found["state"] == "ready"

        # a request from the CLI as the operator user: 政务服务局 has contacted the enterprise about MA-01
        await until(lambda: ready("MA-01"), "MA-01 never became ready", system)
        contact = await cli(system, "item", "contact", PROJECT, "MA-01", "--by", "gov_service_bureau")
        assert contact.returncode == 0 and "台账已接受" in contact.stdout, contact.stdout + contact.stderr
        item = await db["ledger_items"].find_one({"_id": item_key(PROJECT, "MA-01")})
        assert item is not None and item["state"] == "contacted"

        # a request from the console as its user: the enterprise reports an issue with LT-01
        await until(lambda: ready("LT-01"), "LT-01 never became ready", system)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{system.console_port}", timeout=30) as web:
            opened = await web.get("/e/open", params={"project": PROJECT, "code": access_code(CONSOLE_KEY, PROJECT)})
            assert opened.status_code == 303 and opened.headers["location"] == "/e", opened.text[:300]
            page = await web.get("/e")
            token = re.search(r'name="csrftoken" value="([^"]+)"', page.text)
            assert page.status_code == 200 and token is not None, page.text[:300]
            sent = await web.post("/e/issue", data={"csrftoken": token.group(1), "item": item_key(PROJECT, "LT-01"),
                                                    "reason": "窗口要求补充法定代表人身份证明原件"})
            assert sent.status_code == 303, sent.text[:300]

        async def console_request() -> dict[str, Any] | None:
            found: dict[str, Any] | None = await db["ledger_requests"].find_one(
                {"request_type": "item.enterprise_issue", "status": {"$ne": "pending"}})
            return found

        outcome = await until(console_request, "the console's request was not settled", system)
        assert outcome["status"] == "applied", outcome
        assert (await db["ledger_items"].find_one({"_id": item_key(PROJECT, "LT-01")}))["state"] == "blocked"

        # every service's own /health and /metrics
        for name, port in system.metrics_ports.items():
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as ops:
                health = await ops.get("/health")
                assert health.status_code == 200, (name, health.text)
                assert set(health.json().values()) == {"ok"}, (name, health.json())
                assert "zeroerrand_items_routed_total" in (await ops.get("/metrics")).text
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{system.metrics_ports['router']}") as ops:
            assert 'zeroerrand_items_routed_total{mode="joint"} 11.0' in (await ops.get("/metrics")).text

        # nothing was refused by RabbitMQ along the way
        for name, process in system.processes.items():
            assert "ACCESS_REFUSED" not in process.log_text(), f"{name}:\n{process.tail()}"
    finally:
        await client.close()
