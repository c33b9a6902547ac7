"""The router on the real RabbitMQ: what lands on which queue, redelivery, reloads, poison messages."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from faststream.rabbit import ExchangeType

from services.common.bus import BrokerPublisher, Outgoing, PublishError, make_broker
from services.common.domain import ServiceMode
from services.common.messages import AgreementSigned, Message, RoutedItem
from services.common.topology import (
    AGREEMENT_SIGNED,
    AGREEMENTS,
    MODE_QUEUES,
    ROUTER_QUEUE,
    UNROUTABLE_QUEUE,
    RabbitExchange,
    dead_letter_queue,
)
from services.router.app import Router
from services.router.routing import route_agreement
from tests.conftest import ALUMINIUM, COMPUTING, CONSULT_UNKNOWN, EXAMPLES, INELIGIBLE, example
from tests.integration.conftest import queue_depth

pytestmark = pytest.mark.integration


async def run_cli(amqp_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "ZEROERRAND_AMQP_URL": amqp_url})
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def publish_raw(amqp: aio_pika.abc.AbstractRobustConnection, body: bytes, message_id: str) -> None:
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(AGREEMENTS.name)
    await exchange.publish(aio_pika.Message(body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                            content_type="application/json"), routing_key=AGREEMENT_SIGNED,
                           mandatory=True)
    await channel.close()


async def sign(amqp: aio_pika.abc.AbstractRobustConnection, agreement: AgreementSigned) -> None:
    await publish_raw(amqp, agreement.model_dump_json().encode(), agreement.event_id)


async def settle(amqp: aio_pika.abc.AbstractRobustConnection, expected: dict[str, int], timeout: float = 15) -> dict[str, int]:
    """Waits until the queues hold at least ``expected``, then a moment more to catch extras."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        depths = {name: await queue_depth(amqp, name) for name in expected}
        if all(depths[n] >= c for n, c in expected.items()) or loop.time() > deadline:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return {name: await queue_depth(amqp, name) for name in expected}


EXPECTED = {
    ALUMINIUM: {"assist": 2, "joint": 11, "errand": 10, "consult": 0, "unroutable": 0},
    COMPUTING: {"assist": 2, "joint": 2, "errand": 6, "consult": 0, "unroutable": 0},
    INELIGIBLE: {"assist": 0, "joint": 0, "errand": 0, "consult": 0, "unroutable": 0},
    CONSULT_UNKNOWN: {"assist": 2, "joint": 2, "errand": 0, "consult": 2, "unroutable": 1},
}
QUEUE_NAMES = {**{m.value: q.name for m, q in MODE_QUEUES.items()}, "unroutable": UNROUTABLE_QUEUE.name}


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_signing_an_example_lands_exactly_the_expected_items_on_each_queue(
        name: str, router: Router, amqp: Any, amqp_url: str, tap: Any) -> None:
    events = await tap("zeroerrand.events")
    code, out, err = await run_cli(amqp_url, "sign", "--wait", "0", str(EXAMPLES / name))
    assert code == 0, err
    assert "已签约并发布" in out
    expected = {QUEUE_NAMES[k]: v for k, v in EXPECTED[name].items()}
    assert await settle(amqp, expected) == expected
    agreement = example(name)
    routed_total = sum(v for k, v in EXPECTED[name].items() if k != "unroutable")
    if name == INELIGIBLE:
        [rejected] = await events.wait_for(1)
        assert rejected.type == "agreement.rejected"
        assert any("企业自愿" in r for r in json.loads(rejected.body)["reasons"])
        await asyncio.sleep(0.5)
        assert len(events.messages) == 1
        return
    received = await events.wait_for(1 + routed_total + EXPECTED[name]["unroutable"])
    # the items themselves, by the exchange binding: approval.item for item.routed, the parked ones as is
    expected_events = {"service.started": 1, "approval.item": routed_total, "item.unroutable": EXPECTED[name]["unroutable"]}
    assert Counter(m.type for m in received) == +Counter(expected_events)
    started = json.loads(next(m for m in received if m.type == "service.started").body)
    assert (started["project"]["code"], started["ledger_owner"]) == (agreement.project.code, "econ_dev_bureau")
    await asyncio.sleep(0.5)
    assert len(events.messages) == len(received)  # nothing twice


async def test_each_item_is_published_once_and_reaches_downstream_and_the_events_as_the_same_message(
        router: Router, amqp: Any, amqp_url: str, tap: Any) -> None:
    """The contract downstream systems rely on: a queue bound to ``zeroerrand.items`` with
    ``{mode}.{unit}`` gets each of that unit's items once, the RoutedItem with a deterministic
    message id; the events' consumers get the same message (user id kept) after the project's start."""
    planning = await tap("zeroerrand.items", "joint.planning_construction_bureau")
    downstream = await tap("zeroerrand.items")
    events = await tap("zeroerrand.events")
    agreement = example(ALUMINIUM, suffix="once")
    routed = [r.item for r in route_agreement(agreement, router.rules.engine).routed]
    planning_ids = {i.item_id for i in routed if i.decision.routing_key == "joint.planning_construction_bureau"}
    assert len(planning_ids) == 8
    await sign(amqp, agreement)

    got = await planning.wait_for(len(planning_ids))
    await downstream.wait_for(len(routed))
    arrived = await events.wait_for(1 + len(routed))
    await asyncio.sleep(0.5)  # then a moment more to catch duplicates
    assert len(planning.messages) == len(planning_ids) and len(downstream.messages) == len(routed)
    assert len(events.messages) == 1 + len(routed)
    assert {m.message_id for m in got} == planning_ids
    assert all(m.type == "approval.item" and m.routing_key == "joint.planning_construction_bureau" for m in got)
    assert {RoutedItem.model_validate_json(m.body).item_id for m in got} == planning_ids
    assert {m.message_id for m in downstream.messages} == {i.item_id for i in routed}

    user = urlsplit(amqp_url).username or "guest"
    assert {m.user_id for m in arrived} == {user}  # what the notifier and the ledger check
    first = min(arrived, key=lambda m: m.delivery_tag or 0)
    assert first.type == "service.started"  # published first on the same channel
    copies = {m.message_id: m for m in arrived if m.type == "approval.item"}
    for item in downstream.messages:
        copy = copies[item.message_id]
        assert (copy.body, copy.routing_key, copy.headers) == (item.body, item.routing_key, item.headers)


async def test_routed_item_message_carries_headers_ids_and_the_full_record(router: Router, amqp: Any, tap: Any) -> None:
    items = await tap("zeroerrand.items", "errand.#")
    agreement = example(COMPUTING, suffix="headers")
    await sign(amqp, agreement)
    received = await items.wait_for(6)
    review = next(m for m in received if m.headers["x-zeroerrand-item"] == "PL-03")
    assert review.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert review.routing_key == "errand.zhenglian_company" and review.content_type == "application/json"
    assert review.headers["x-zeroerrand-rule"] == "errand.energy-review-regional"
    assert review.headers["x-zeroerrand-rules-version"] == router.rules.version
    item = RoutedItem.model_validate_json(review.body)
    assert review.message_id == item.item_id
    assert item.project_code == agreement.project.code and item.mode is ServiceMode.ERRAND
    assert item.task_order_required and item.approving_authority == "regional_development_reform_commission"
    assert item.materials and item.decision.facts["project.annual_energy_tce"] == 126000


async def test_a_redelivered_agreement_yields_the_same_message_ids(router: Router, amqp: Any, tap: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    items = await tap("zeroerrand.items")
    real = BrokerPublisher.publish_all
    calls = 0

    async def publish_then_fail_once(self: BrokerPublisher, outgoing: Any) -> None:
        nonlocal calls
        calls += 1
        await real(self, outgoing)
        if calls == 1:  # everything went out, but the ack never happened: the broker redelivers
            raise PublishError("simulated loss of the last confirm")

    monkeypatch.setattr(BrokerPublisher, "publish_all", publish_then_fail_once)
    await sign(amqp, example(CONSULT_UNKNOWN, suffix="redelivery"))
    received = await items.wait_for(14)  # 7 messages per delivery
    assert calls == 2
    first, second = received[:7], received[7:]
    assert sorted(m.message_id for m in first) == sorted(m.message_id for m in second)
    assert len({m.message_id for m in first}) == 7
    assert await queue_depth(amqp, ROUTER_QUEUE.name) == 0


async def test_a_malformed_agreement_is_dead_lettered_with_the_reason_and_nothing_else_is_lost(
        router: Router, amqp: Any, tap: Any) -> None:
    dead = await tap("zeroerrand.dead", ROUTER_QUEUE.name)
    items = await tap("zeroerrand.items")
    good = example(ALUMINIUM, suffix="next-to-malformed")
    malformed = json.dumps({"type": "agreement.signed", "agreement_id": "broken", "plan": "MA-01"}).encode()
    await publish_raw(amqp, malformed, "malformed-1")
    await sign(amqp, good)
    await publish_raw(amqp, b"\xff not json", "malformed-2")
    [first, second] = await dead.wait_for(2)
    assert (first.body, second.body) == (malformed, b"\xff not json")
    assert first.headers["x-zeroerrand-error-kind"] == "invalid_message"
    assert "消息格式无效" in first.headers["x-zeroerrand-error"] and "project" in first.headers["x-zeroerrand-error"]
    assert first.headers["x-zeroerrand-source-queue"] == ROUTER_QUEUE.name
    assert len(await items.wait_for(23)) == 23
    assert await settle(amqp, {dead_letter_queue(ROUTER_QUEUE).name: 2}) == {dead_letter_queue(ROUTER_QUEUE).name: 2}


async def test_a_message_that_keeps_failing_is_parked_after_the_delivery_limit(
        router: Router, amqp: Any, tap: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = await tap("zeroerrand.dead", ROUTER_QUEUE.name)
    attempts = 0

    def crash(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("rules engine exploded")

    monkeypatch.setattr("services.router.handlers.route_agreement", crash)
    await sign(amqp, example(ALUMINIUM, suffix="poison"))
    [parked] = await dead.wait_for(1, timeout=30)
    assert attempts == 5
    assert parked.headers["x-zeroerrand-error-kind"] == "processing_failed"
    assert "rules engine exploded" in parked.headers["x-zeroerrand-error"]
    assert await queue_depth(amqp, ROUTER_QUEUE.name) == 0


async def test_a_broken_rule_file_is_rejected_and_the_last_good_rules_keep_routing(
        router: Router, amqp: Any, tap: Any, rules_copy: Path) -> None:
    events = await tap("zeroerrand.events", "rules.*")
    items = await tap("zeroerrand.items")
    good_version = router.rules.version
    routing = rules_copy / "routing.yaml"
    good_text = routing.read_text(encoding="utf-8")
    routing.write_text(good_text.replace("      unit: zhenglian_company\n", "      unit: zhenglain_company\n", 1),
                       encoding="utf-8")
    [rejected] = await events.wait_for(1, where=lambda m: m.type == "rules.rejected")
    body = json.loads(rejected.body)
    assert body["active_version"] == good_version
    assert any(f"{routing}:" in p and "[规则 errand.outside-or-dispatched]" in p and "zhenglain_company" in p
               for p in body["problems"])
    assert router.rules.version == good_version

    await sign(amqp, example(CONSULT_UNKNOWN, suffix="after-broken-rules"))
    routed = await items.wait_for(6, where=lambda m: m.type == "approval.item")
    assert {m.headers["x-zeroerrand-rules-version"] for m in routed} == {good_version}

    # an operator's valid edit: the consult rule of the city-level energy review is renamed
    routing.write_text(good_text.replace("id: consult.energy-review-city", "id: consult.energy-review-city-v2"),
                       encoding="utf-8")
    [activated] = await events.wait_for(1, where=lambda m: m.type == "rules.activated")
    new_version = json.loads(activated.body)["version"]
    assert new_version != good_version and json.loads(activated.body)["previous_version"] == good_version
    await sign(amqp, example(CONSULT_UNKNOWN, suffix="after-good-rules"))
    latest = await items.wait_for(12, where=lambda m: m.type == "approval.item")
    rules_used = {m.headers["x-zeroerrand-rule"] for m in latest[6:]}
    assert "consult.energy-review-city-v2" in rules_used
    assert {m.headers["x-zeroerrand-rules-version"] for m in latest[6:]} == {new_version}


async def test_a_publish_nobody_can_receive_raises_instead_of_vanishing(amqp_url: str) -> None:
    broker = make_broker(amqp_url)
    nowhere = RabbitExchange("zeroerrand.test.nowhere", durable=False, auto_delete=True)
    async with broker:
        await broker.connect()
        await broker.declare_exchange(nowhere)
        with pytest.raises(PublishError, match="nowhere"):
            await BrokerPublisher(broker).publish_all(
                [Outgoing(nowhere, "x", example(ALUMINIUM), "id-1", "agreement.signed")])


class Blob(Message):
    text: str


HERE = RabbitExchange("zeroerrand.test.here", type=ExchangeType.TOPIC, durable=True)


def blobs(prefix: str, count: int) -> list[Outgoing]:
    return [Outgoing(HERE, f"{prefix}.{i}", Blob(text=f"{prefix} {i}"), f"{prefix}-{i}", "test.blob") for i in range(count)]


@pytest.fixture(params=["batch", "one-by-one"])
def write_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The batch writer, and the per-message path taken with an aiormq it does not know."""
    if request.param == "one-by-one":
        monkeypatch.setattr("services.common.bus._can_write_batches", lambda channel: False)
    return str(request.param)


async def test_a_batch_with_a_returned_message_raises_and_the_channel_stays_in_step_with_the_broker(
        amqp_url: str, tap: Any, write_mode: str) -> None:
    here = await tap(HERE.name)
    broker = make_broker(amqp_url)
    nowhere = RabbitExchange("zeroerrand.test.nowhere", durable=False, auto_delete=True)
    async with broker:
        await broker.connect()
        await broker.declare_exchange(nowhere)
        publisher = BrokerPublisher(broker)
        batch = blobs("first", 5)
        batch[2] = Outgoing(nowhere, "x", Blob(text="nobody"), "lost-1", "test.blob")
        with pytest.raises(PublishError, match=r"1 of 5 publishes failed; first: test\.blob to zeroerrand\.test\.nowhere"):
            await publisher.publish_all(batch)
        assert [m.message_id for m in await here.wait_for(4)] == ["first-0", "first-1", "first-3", "first-4"]

        # after the return, every confirm still finds its message: a body bigger than a frame, then
        # twenty batches at once
        big = Blob(text="长" * 100_000)  # 300 kB: several body frames
        await publisher.publish_all([Outgoing(HERE, "big", big, "big-1", "test.blob")])
        await asyncio.gather(*(publisher.publish_all(blobs(f"many{k}", 10)) for k in range(20)))
        received = await here.wait_for(4 + 1 + 200)
        assert json.loads(next(m for m in received if m.message_id == "big-1").body)["text"] == big.text
        assert {m.user_id for m in received} == {urlsplit(amqp_url).username or "guest"}
        assert {m.delivery_mode for m in received} == {aio_pika.DeliveryMode.PERSISTENT}
        channel = await (await broker.declare_exchange(HERE)).channel.get_underlay_channel()
        assert channel.confirmations == {} and channel.message_id_delivery_tag == {}  # nothing kept


async def test_a_batch_the_broker_refuses_in_part_raises_with_the_nacks(amqp_url: str, amqp: Any,
                                                                        write_mode: str) -> None:
    channel = await amqp.channel()
    full = await channel.declare_exchange("zeroerrand.test.full", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    await queue.bind(full, "#")
    broker = make_broker(amqp_url)
    async with broker:
        await broker.connect()
        target = RabbitExchange("zeroerrand.test.full", type=ExchangeType.TOPIC, durable=True)
        batch = [Outgoing(target, "k", Blob(text=str(i)), f"full-{i}", "test.blob") for i in range(3)]
        with pytest.raises(PublishError, match="2 of 3 publishes failed") as raised:
            await BrokerPublisher(broker).publish_all(batch)
        assert "DeliveryError" in repr(raised.value.__cause__)
        await BrokerPublisher(broker).publish_all([])  # nothing to do
    await channel.close()
