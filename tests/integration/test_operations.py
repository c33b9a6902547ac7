"""What operators see: ``/metrics`` and ``/health`` of ``zeroerrand up`` (a child process, as operators
run it), the health check naming what is unreachable, and the JSON log lines with their project.

Waiting loops have generous deadlines that only bound a failure; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import collections
import json
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from services.common.bus import BrokerPublisher, Outgoing, make_broker
from services.common.operations import OperationsServer, Watched
from services.common.settings import OperationsSettings
from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, declare_topology
from services.router.routing import route_agreement
from services.router.rule_engine import RoutingEngine
from tests.conftest import ALUMINIUM, example
from tests.faults.outage_harness import SERVICE_QUEUES, Services, wait_for_consumers

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def json_lines(services: Services) -> list[dict[str, Any]]:
    """The service log's JSON lines (the embedded store's programs may write lines of their own)."""
    found = []
    for line in services.log().splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))  # a line that starts like JSON must be JSON
    return found


async def endpoint_port(services: Services, deadline_s: float = 180.0) -> int:
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    while loop.time() < until:
        for line in json_lines(services):
            if str(line.get("event", "")).startswith("metrics and health at http://"):
                return int(line["event"].split(":")[2].split("/")[0])
        if not services.alive():
            pytest.fail(f"zeroerrand up exited:\n{services.log()[-4000:]}")
        await asyncio.sleep(0.2)
    pytest.fail(f"no metrics endpoint announced:\n{services.log()[-4000:]}")


async def test_up_counts_what_it_routed_and_is_healthy(amqp_url: str, clean_queues: None,
                                                      engine: RoutingEngine) -> None:
    services = Services(amqp_url, "operations")
    services.env.update({"ZEROERRAND_METRICS_PORT": "0", "ZEROERRAND_LOG_FORMAT": "json",
                         "ZEROERRAND_QUEUE_SAMPLE_INTERVAL_S": "0.5"})
    agreement = example(ALUMINIUM, suffix=f"ops{uuid.uuid4().hex[:6]}")
    expected = collections.Counter(routed.item.mode.value for routed in route_agreement(agreement, engine).routed)
    assert sum(expected.values()) == 23
    services.start()
    try:
        port = await endpoint_port(services)
        await wait_for_consumers(amqp_url, services, 120)
        broker = make_broker(amqp_url)
        async with broker:
            await broker.connect()
            await declare_topology(broker)
            await BrokerPublisher(broker).publish_all(
                [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, agreement, agreement.event_id, agreement.type)])

        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            loop = asyncio.get_running_loop()
            until = loop.time() + 60
            while True:
                page = (await client.get("/metrics")).text
                found = samples(page)
                routed = {mode: found.get(("zeroerrand_items_routed_total", (("mode", mode),)), 0.0)
                          for mode in ("assist", "joint", "errand", "consult")}
                lag = [found.get(("zeroerrand_queue_messages_ready", (("queue", q),))) for q in SERVICE_QUEUES]
                stored = sum(v for (name, _), v in found.items() if name == "zeroerrand_notifications_stored_total")
                if sum(routed.values()) >= 23 and None not in lag and stored > 0:
                    break
                if loop.time() > until or not services.alive():
                    pytest.fail(f"metrics never showed the routed items and the queues:\n{page}\n"
                                f"{services.log()[-3000:]}")
                await asyncio.sleep(0.2)
            assert {mode: int(n) for mode, n in routed.items() if n} == dict(expected)
            assert found[("zeroerrand_items_unroutable_total", ())] == 0
            assert found[("zeroerrand_agreements_rejected_total", ())] == 0
            assert found[("zeroerrand_publish_confirm_seconds_count", ())] >= 1
            assert "text/plain" in (await client.get("/metrics")).headers["content-type"]

            health = await client.get("/health")
            assert health.status_code == 200, health.text
            assert health.json() == {"broker": "ok", "store": "ok"}
            assert (await client.get("/nothing")).status_code == 404

        lines = json_lines(services)
        assert lines and all({"timestamp", "level", "logger", "event"} <= line.keys() for line in lines)
        about = [line for line in lines if line.get("project_code") == agreement.project.code]
        assert any("items routed" in line["event"] for line in about), lines[-20:]
    finally:
        services.stop()
        services.remove()


async def test_health_names_the_unreachable_store(amqp_url: str) -> None:
    broker = make_broker(amqp_url)
    unreachable = AsyncMongoClient[dict[str, Any]]("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=10000")

    class Store:  # what /health asks of a store: its database
        db = unreachable["zeroerrand"]

    async with broker:
        await broker.connect()
        server = OperationsServer([Watched("notifier", broker, (), lambda: Store())],
                                  OperationsSettings(metrics_port=0))
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
                answer = await client.get("/health")
        finally:
            await server.stop()
            await unreachable.close()
    assert answer.status_code == 503, answer.text
    report = answer.json()
    assert report["broker"] == "ok"
    assert report["store"].startswith("unreachable: notifier (no answer to ping within 1 s)"), report


async def test_health_names_the_unreachable_broker() -> None:
    broker = make_broker("amqp://guest:guest@127.0.0.1:9/")  # never connected: nothing listens there
    server = OperationsServer([Watched("router", broker, ("zeroerrand.router.agreements",)),
                               Watched("console", None, (), lambda: None)], OperationsSettings(metrics_port=0))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
            answer = await client.get("/health")
            metrics = await client.get("/metrics")
    finally:
        await server.stop()
    assert answer.status_code == 503, answer.text
    assert answer.json() == {"broker": "unreachable: router"}
    assert metrics.status_code == 200 and "# TYPE zeroerrand_items_routed_total counter" in metrics.text


async def test_health_says_when_the_connection_is_lost(amqp_url: str) -> None:
    """A connection that was up and is lost (its socket closed under it; the next attempt in an hour)."""
    broker = make_broker(amqp_url, reconnect_interval_s=3600)
    async with broker:
        await broker.connect()
        server = OperationsServer([Watched("evaluation", broker, ("zeroerrand.evaluation.events",))],
                                  OperationsSettings(metrics_port=0))
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
                before = await client.get("/health")
                underlying = broker._connection.transport.connection  # type: ignore[union-attr]
                await underlying.close(ConnectionError("cut by the test"))
                for _ in range(100):  # aio-pika hears of the loss through its close callbacks
                    after = await client.get("/health")
                    if after.status_code != 200:
                        break
                    await asyncio.sleep(0.1)
        finally:
            await server.stop()
    assert before.status_code == 200 and before.json() == {"broker": "ok"}
    assert after.status_code == 503 and after.json() == {"broker": "unreachable: evaluation"}
