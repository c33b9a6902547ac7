"""examples/downstream_consumer.py, run as a unit's system would run it, against the real router:
it receives exactly the unit's items of a signed agreement and handles each once, by message id."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.common.topology import ITEMS
from services.router.app import Router
from services.router.handlers import item_out
from services.router.routing import route_agreement
from tests.conftest import ALUMINIUM, example
from tests.integration.test_router_rabbitmq import sign

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "downstream_consumer.py"
KEY = "joint.planning_construction_bureau"


async def publish_copy(amqp: aio_pika.abc.AbstractRobustConnection, item: Any) -> None:
    """One item as the router publishes it (body, message id, type, headers): what a redelivery brings again."""
    out = item_out(item)
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(ITEMS.name)
    await exchange.publish(aio_pika.Message(item.model_dump_json().encode(), message_id=out.message_id,
                                            type=out.message_type, headers=dict(out.headers),
                                            content_type="application/json",
                                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                           routing_key=out.routing_key, mandatory=True)
    await channel.close()


async def test_the_example_consumer_prints_each_of_the_units_items_once(router: Router, amqp: Any,
                                                                         amqp_url: str) -> None:
    agreement = example(ALUMINIUM, suffix="downstream")
    routed = [r.item for r in route_agreement(agreement, router.rules.engine).routed]
    mine = [i for i in routed if i.decision.routing_key == KEY]
    assert mine, f"the example agreement routes nothing to {KEY}"
    expected = sorted(f"{i.project_code} {i.item_code} {i.responsible_unit} {len(i.materials)}" for i in mine)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "ZEROERRAND_AMQP_URL": amqp_url, "ZEROERRAND_ROUTING_KEY": KEY,
             "ZEROERRAND_QUEUE": f"test.downstream.{uuid.uuid4().hex[:8]}",
             # the unit's items, and one of them twice
             "ZEROERRAND_STOP_AFTER": str(len(mine) + 1)})
    try:
        assert process.stdout is not None and process.stderr is not None
        first = (await process.stdout.readline()).decode()
        if not first.startswith("listening on "):
            pytest.fail(f"the example did not start: {first}{(await process.stderr.read()).decode()}")
        # its queue is bound now: a copy of one item first, then the router publishes every item for the unit
        await publish_copy(amqp, mine[0])
        await sign(amqp, agreement)
        out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert sorted(out.decode().splitlines()) == expected  # each item once, the copy's twin dropped by message id
