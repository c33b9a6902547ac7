"""The router's subscriber with FastStream's in-memory test broker (no acks, no DLX: see integration)."""

from __future__ import annotations

import json
from typing import Any

from faststream.rabbit import RabbitQueue, TestRabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from services.common.settings import RouterSettings
from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, DEAD, EVENTS, ITEMS, ROUTER_QUEUE
from services.router.app import create_router
from tests.conftest import ALUMINIUM, CONSULT_UNKNOWN, INELIGIBLE, RULES, example


def build() -> tuple[Any, dict[str, list[dict[str, Any]]]]:
    router = create_router(RouterSettings(rules_dir=RULES, watch_rules=False))
    router.rules.reload()
    seen: dict[str, list[dict[str, Any]]] = {"items": [], "events": [], "dead": []}

    @router.broker.subscriber(RabbitQueue("test.items", routing_key="#"), ITEMS)
    async def items(body: dict[str, Any]) -> None:
        seen["items"].append(body)

    @router.broker.subscriber(RabbitQueue("test.events", routing_key="#"), EVENTS)
    async def events(body: dict[str, Any]) -> None:
        seen["events"].append(body)

    @router.broker.subscriber(RabbitQueue("test.dead", routing_key=ROUTER_QUEUE.name), DEAD)
    async def dead(message: RabbitMessage) -> None:
        seen["dead"].append({"body": message.body, "headers": message.headers})

    return router, seen


async def sign(broker: Any, payload: bytes) -> None:
    await broker.publish(payload, exchange=AGREEMENTS, routing_key=AGREEMENT_SIGNED)


async def test_signed_agreement_yields_items_and_events() -> None:
    router, seen = build()
    async with TestRabbitBroker(router.broker) as broker:
        await sign(broker, example(ALUMINIUM).model_dump_json().encode())
    assert len(seen["items"]) == 26
    types = [e["type"] for e in seen["events"]]
    assert types.count("service.started") == 1 and types.count("item.routed") == 26


async def test_unroutable_item_is_announced_and_parked_on_the_items_exchange() -> None:
    router, seen = build()
    async with TestRabbitBroker(router.broker) as broker:
        await sign(broker, example(CONSULT_UNKNOWN).model_dump_json().encode())
    unroutable_items = [i for i in seen["items"] if i.get("type") == "item.unroutable"]
    assert [i["item_code"] for i in unroutable_items] == ["PL-08"]
    assert [e["item_code"] for e in seen["events"] if e["type"] == "item.unroutable"] == ["PL-08"]


async def test_ineligible_agreement_only_emits_the_rejection() -> None:
    router, seen = build()
    async with TestRabbitBroker(router.broker) as broker:
        await sign(broker, example(INELIGIBLE).model_dump_json().encode())
    assert seen["items"] == []
    assert [e["type"] for e in seen["events"]] == ["agreement.rejected"]


async def test_malformed_message_is_parked_with_its_body_unchanged() -> None:
    router, seen = build()
    payload = json.dumps({"type": "agreement.signed", "agreement_id": "X"}).encode()
    async with TestRabbitBroker(router.broker) as broker:
        await sign(broker, payload)
    assert seen["items"] == [] and seen["events"] == []
    assert [d["body"] for d in seen["dead"]] == [payload]
    headers = seen["dead"][0]["headers"]
    assert headers["x-zeroerrand-error-kind"] == "invalid_message"
    assert "消息格式无效" in headers["x-zeroerrand-error"] and "project" in headers["x-zeroerrand-error"]
