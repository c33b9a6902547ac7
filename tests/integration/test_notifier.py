"""The notifier on the real RabbitMQ and the embedded store: what is stored for whom, redelivery,
signed webhooks to a real local HTTP receiver, final failure, malformed events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aio_pika
import pytest

from services.common.messages import ItemDelivered
from services.common.rule_files import load_rulebook
from services.common.settings import BrokerSettings, NotifierSettings, RouterSettings
from services.common.storage import Store
from services.common.topology import NOTIFIER_QUEUE
from services.notifier.app import Notifier, create_notifier
from services.notifier.repository import NotifierRepository
from services.notifier.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from services.router.app import Router, create_router
from tests.conftest import ALUMINIUM, CONSULT_UNKNOWN, INELIGIBLE, RULES, example
from tests.integration.conftest import _rabbitmqctl
from tests.integration.test_router_rabbitmq import sign

pytestmark = pytest.mark.integration
SECRET = "test-secret-不要外传"


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers every POST with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.changed = asyncio.Event()
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        self.changed.set()
        writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())
        await writer.drain()
        writer.close()

    async def wait_for(self, count: int, timeout: float = 15) -> None:
        async def enough() -> None:
            while len(self.requests) < count:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(enough(), timeout)


@contextlib.asynccontextmanager
async def serving(instance: Receiver, path: str) -> AsyncIterator[Receiver]:
    """``instance`` listening on a free port of 127.0.0.1, its ``url`` ending in ``path``."""
    server = await asyncio.start_server(instance._handle, "127.0.0.1", 0)
    instance.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{path}"
    async with server:
        yield instance


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(Receiver(), "/hook") as instance:
        yield instance


@pytest.fixture
async def services(amqp_url: str, rules_copy: Path, clean_queues: None, store: Store,
                   receiver: Receiver) -> AsyncIterator[tuple[Router, Notifier, Store]]:
    # 政联公司 takes its task orders by webhook as well as in its inbox
    directory = rules_copy / "directory.yaml"
    directory.write_text(directory.read_text(encoding="utf-8").replace(
        "    contact: 内蒙古政联招商服务有限公司专业跑腿服务部\n    channels: [inbox]",
        f"    contact: 内蒙古政联招商服务有限公司专业跑腿服务部\n    channels: [inbox, {{webhook: {receiver.url}}}]"),
        encoding="utf-8")
    broker = BrokerSettings(amqp_url=amqp_url)
    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=False), broker)
    notifier = create_notifier(NotifierSettings(rules_dir=rules_copy, webhook_secret=SECRET, poll_interval_s=0.05,
                                                backoff_base_s=0.05, max_attempts=3), broker, store=store)
    await notifier.app.start()
    await router.app.start()
    yield router, notifier, store
    await router.app.stop()
    await notifier.app.stop()


async def stored(store: Store, count: int, timeout: float = 30, **query: Any) -> list[dict[str, Any]]:
    """Waits until ``count`` notifications match ``query``, then a moment more to catch extras."""
    repository = NotifierRepository(store)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(await repository.find(limit=10_000, **query)) < count and loop.time() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    return await repository.find(limit=10_000, **query)


async def test_signing_the_examples_stores_exactly_the_expected_notifications(services: Any, amqp: Any) -> None:
    _, _, store = services
    await sign(amqp, example(ALUMINIUM))
    await sign(amqp, example(INELIGIBLE))
    await sign(amqp, example(CONSULT_UNKNOWN))
    # 49 in inboxes, 10 task orders by webhook, and the enterprise's 24 by e-mail and by SMS (notify_by)
    aluminium = await stored(store, 49 + 10 + 2 * 24, project="HLXQ-2026-0031")
    assert Counter((d["recipient"], d["channel"]) for d in aluminium) == {
        ("enterprise:91150100MA0N8XK21Q", "inbox"): 24, ("enterprise:91150100MA0N8XK21Q", "email"): 24,
        ("enterprise:91150100MA0N8XK21Q", "sms"): 24, ("unit:econ_dev_bureau", "inbox"): 2,
        ("unit:gov_service_bureau", "inbox"): 2, ("unit:planning_construction_bureau", "inbox"): 8,
        ("unit:public_utilities_bureau", "inbox"): 3, ("unit:zhenglian_company", "inbox"): 10,
        ("unit:zhenglian_company", "webhook"): 10}
    assert {d["status"] for d in aluminium if d["channel"] == "inbox"} == {"unread"}  # until read in the console
    # no SMTP server and no SMS gateway are configured here: those are failed at once, saying so
    unsent = await stored(store, 48, project="HLXQ-2026-0031", status="failed")
    assert Counter((d["channel"], d["attempts"], d["last_error"][:12]) for d in unsent) == {
        ("email", 0, "未配置 SMTP 服务器"): 24, ("sms", 0, "未配置短信网关（ZERO"): 24}  # stored so, never tried
    notice = next(d for d in aluminium if d["title"] == "一次性告知：建设工程规划许可证")
    for material in load_rulebook(RULES).catalog["EP-02"].materials:
        assert material in notice["body"]
    rejected = await stored(store, 1, project="HLXQ-2026-0052")
    assert [(d["event_type"], d["recipient"]) for d in rejected] == [("agreement.rejected", "unit:econ_dev_bureau")]
    consult = await stored(store, 17 + 2, project="HLXQ-2026-0058")
    assert Counter(d["event_type"] for d in consult) == {"service.started": 3, "item.routed": 12 + 2,
                                                         "item.unroutable": 2}


async def test_a_redelivered_event_yields_no_duplicate(services: Any, amqp: Any) -> None:
    _, _, store = services
    agreement = example(CONSULT_UNKNOWN, suffix="twice")
    await sign(amqp, agreement)
    first = await stored(store, 19, project=agreement.project.code)
    await sign(amqp, agreement)  # same agreement again: the router re-emits the same event ids
    await asyncio.sleep(2)
    again = await stored(store, 19, project=agreement.project.code)
    assert sorted(d["_id"] for d in again) == sorted(d["_id"] for d in first) and len(again) == 19


async def test_webhooks_are_signed_and_marked_delivered(services: Any, amqp: Any, receiver: Receiver) -> None:
    _, _, store = services
    agreement = example(CONSULT_UNKNOWN, suffix="webhook")
    await sign(amqp, agreement)
    await receiver.wait_for(2)  # PL-03 and PL-06 are the advice lines 政联公司 gives (专业跑腿)
    headers, body = receiver.requests[0]
    assert verify(SECRET.encode(), headers[TIMESTAMP_HEADER.lower()], body, headers[SIGNATURE_HEADER.lower()])
    payload = json.loads(body)
    assert payload["title"].startswith("新分派审批事项：") and payload["recipient"] == "unit:zhenglian_company"
    found = await stored(store, 19, project=agreement.project.code)
    hooks = [d for d in found if d["channel"] == "webhook"]
    assert len(hooks) == 2
    assert {(h["status"], h["attempts"], h["last_error"]) for h in hooks} == {("delivered", 1, None)}


async def test_a_receiver_that_keeps_failing_leaves_the_notification_failed_with_the_error(
        services: Any, amqp: Any, receiver: Receiver) -> None:
    _, _, store = services
    receiver.status = 503
    agreement = example(CONSULT_UNKNOWN, suffix="failing")
    await sign(amqp, agreement)
    await receiver.wait_for(6)
    failed = await stored(store, 2, project=agreement.project.code, status="failed")
    assert {(f["channel"], f["attempts"]) for f in failed} == {("webhook", 3)}
    assert all(f["last_error"].startswith("HTTP 503") for f in failed)
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 6  # no attempt after the final one


async def test_a_progress_event_uses_what_the_notifier_remembers(services: Any, amqp: Any) -> None:
    _, _, store = services
    agreement = example(CONSULT_UNKNOWN, suffix="delivered")
    await sign(amqp, agreement)
    await stored(store, 19, project=agreement.project.code)
    delivered = ItemDelivered(event_id=f"delivered-{agreement.project.code}", occurred_at=agreement.occurred_at,
                              recorded_at=agreement.occurred_at, project_code=agreement.project.code, item_code="EP-03",
                              reported_by="planning_construction_bureau", results=("施工图审查合格书",))
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("zeroerrand.events")
    await exchange.publish(aio_pika.Message(delivered.model_dump_json().encode(), delivery_mode=2, user_id="guest"),
                           routing_key="item.delivered")
    found = await stored(store, 2, event_id=delivered.event_id)
    assert {d["role"] for d in found} == {"enterprise", "recruiting_unit"}
    handover = next(d for d in found if d["role"] == "enterprise")
    assert "施工图联合审查" in handover["body"] and "施工图审查合格书" in handover["body"]


async def test_a_malformed_event_is_dead_lettered_with_the_reason(services: Any, amqp: Any, tap: Any) -> None:
    dead = await tap("zeroerrand.dead", NOTIFIER_QUEUE.name)
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("zeroerrand.events")
    await exchange.publish(aio_pika.Message(b'{"type": "item.routed", "event_id": 1}', delivery_mode=2, user_id="guest"),
                           routing_key="item.routed")
    [parked] = await dead.wait_for(1)
    assert parked.headers["x-zeroerrand-error-kind"] == "invalid_message"
    assert "消息格式无效" in parked.headers["x-zeroerrand-error"]


async def test_a_routed_item_that_does_not_fit_is_dead_lettered_from_the_events_queue(
        services: Any, amqp: Any, tap: Any) -> None:
    """A routed item reaches the notifier by the binding zeroerrand.items -> zeroerrand.events."""
    dead = await tap("zeroerrand.dead", NOTIFIER_QUEUE.name)
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("zeroerrand.items")
    await exchange.publish(aio_pika.Message(b'{"item_id": "half-an-item"}', delivery_mode=2, user_id="guest",
                                            type="approval.item", message_id="half-an-item"),
                           routing_key="joint.planning_construction_bureau")
    [parked] = await dead.wait_for(1)
    assert parked.headers["x-zeroerrand-error-kind"] == "invalid_message" and parked.message_id == "half-an-item"
    assert parked.routing_key == NOTIFIER_QUEUE.name and parked.type == "approval.item"


async def test_an_event_about_an_unknown_project_is_retried_then_parked_with_the_reason(
        services: Any, amqp: Any, tap: Any) -> None:
    dead = await tap("zeroerrand.dead", NOTIFIER_QUEUE.name)
    orphan = ItemDelivered(event_id="orphan-1", occurred_at=datetime.now(UTC), recorded_at=datetime.now(UTC),
                           project_code="HLXQ-NOWHERE", item_code="MA-01", reported_by="gov_service_bureau",
                           results=("营业执照",))
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("zeroerrand.events")
    await exchange.publish(aio_pika.Message(orphan.model_dump_json().encode(), delivery_mode=2, user_id="guest"),
                           routing_key="item.delivered")
    [parked] = await dead.wait_for(1, timeout=30)
    assert parked.headers["x-zeroerrand-error-kind"] == "processing_failed"
    assert "HLXQ-NOWHERE unknown to the notifier" in parked.headers["x-zeroerrand-error"]
    assert json.loads(parked.body)["event_id"] == "orphan-1"


async def test_an_event_not_published_by_the_services_is_parked_unread(services: Any, amqp_url: str, tap: Any) -> None:
    """A unit's system that publishes an event itself (instead of a request to the ledger) is not
    believed: RabbitMQ validates the user_id, and only the services' users are trusted."""
    _, _, store = services
    dead = await tap("zeroerrand.dead", NOTIFIER_QUEUE.name)
    user, password = f"unit-{uuid.uuid4().hex[:6]}", "unit-secret"
    vhost = urlsplit(amqp_url).path.lstrip("/")
    _rabbitmqctl("add_user", user, password)
    try:
        _rabbitmqctl("set_permissions", "-p", unquote(vhost), user, "", "zeroerrand\\..*", "")
        parts = urlsplit(amqp_url)
        url = urlunsplit((parts.scheme, f"{user}:{password}@{parts.hostname}:{parts.port or 5672}", parts.path, "", ""))
        forged = ItemDelivered(event_id="forged-1", occurred_at=datetime.now(UTC), recorded_at=datetime.now(UTC),
                               project_code="HLXQ-2026-0031", item_code="MA-01", reported_by="gov_service_bureau",
                               results=("营业执照",))
        async with await aio_pika.connect_robust(url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("zeroerrand.events", ensure=False)
            for user_id in (user, None):  # with its own (validated) user id, and with none
                await exchange.publish(aio_pika.Message(forged.model_dump_json().encode(), delivery_mode=2,
                                                        user_id=user_id), routing_key="item.delivered")
    finally:
        _rabbitmqctl("delete_user", user)
    parked = await dead.wait_for(2)
    assert {m.headers["x-zeroerrand-error-kind"] for m in parked} == {"untrusted_publisher"}
    assert all("不是可信的服务" in m.headers["x-zeroerrand-error"] for m in parked)
    assert await NotifierRepository(store).find(event_id="forged-1") == []
