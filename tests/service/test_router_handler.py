"""The router's subscriber on FastStream's in-memory test broker, publishing into the memory fake.

The in-memory broker has no acks, no dead-lettering and no redelivery: those are tested on the
real RabbitMQ in tests/integration.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from faststream.rabbit import RabbitQueue, TestRabbitBroker

from services.common.bus import MemoryPublisher
from services.common.consuming import keep_message
from services.common.settings import RouterSettings
from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, DEAD, EVENTS, ITEMS, ROUTER_QUEUE, UNROUTABLE_KEY
from services.router.app import Router, create_router
from tests.conftest import ALUMINIUM, CONSULT_UNKNOWN, INELIGIBLE, RULES, example


async def build() -> tuple[Router, MemoryPublisher, list[Any]]:
    fake = MemoryPublisher()
    router = create_router(RouterSettings(rules_dir=RULES, watch_rules=False), publisher=fake)
    await router.rules.reload()
    dead: list[Any] = []

    # the router's broker runs without dependency injection: the decoder hands over the message
    @router.broker.subscriber(RabbitQueue("test.dead", routing_key=ROUTER_QUEUE.name), DEAD, decoder=keep_message)
    async def parked(message: Any) -> None:
        dead.append(message)

    return router, fake, dead


async def sign(router: Router, payload: bytes) -> None:
    async with TestRabbitBroker(router.broker) as broker:
        await broker.publish(payload, exchange=AGREEMENTS, routing_key=AGREEMENT_SIGNED)
        await router.drain()


async def test_signed_agreement_yields_one_message_per_planned_item_after_the_started_event() -> None:
    """One publish per item: the exchange binding, not a second publish, brings it to the events."""
    router, fake, dead = await build()
    await sign(router, example(ALUMINIUM).model_dump_json().encode())
    assert not dead
    first, *items = fake.sent
    assert (first.exchange, first.message_type) == (EVENTS, "service.started")  # before the project's items
    assert len(items) == 23 and all(o.exchange is ITEMS and o.message_type == "approval.item" for o in items)
    assert Counter(o.routing_key.split(".")[0] for o in items) == {"joint": 11, "errand": 10, "assist": 2}
    assert all(o.message_id == o.message.item_id for o in items)  # type: ignore[attr-defined]


async def test_unroutable_item_goes_to_the_unroutable_key_with_its_reason_once() -> None:
    router, fake, _ = await build()
    await sign(router, example(CONSULT_UNKNOWN).model_dump_json().encode())
    [parked] = [o for o in fake.sent if o.message_type == "item.unroutable"]
    assert (parked.exchange, parked.routing_key) == (ITEMS, UNROUTABLE_KEY)
    assert parked.headers["x-zeroerrand-item"] == "PL-99"
    assert parked.headers["x-zeroerrand-reason"] == "unknown_item"
    assert [o.message_type for o in fake.sent].count("service.started") == 1 and len(fake.sent) == 1 + 6 + 1


async def test_ineligible_agreement_only_emits_the_rejection() -> None:
    router, fake, _ = await build()
    await sign(router, example(INELIGIBLE).model_dump_json().encode())
    assert [o.message_type for o in fake.sent] == ["agreement.rejected"]


async def test_malformed_message_is_parked_with_its_body_unchanged_and_nothing_published() -> None:
    router, fake, dead = await build()
    payload = json.dumps({"type": "agreement.signed", "agreement_id": "X"}).encode()
    await sign(router, payload)
    assert fake.sent == []
    [parked] = dead
    assert parked.body == payload
    assert parked.headers["x-zeroerrand-error-kind"] == "invalid_message"
    assert "消息格式无效" in parked.headers["x-zeroerrand-error"] and "project" in parked.headers["x-zeroerrand-error"]
