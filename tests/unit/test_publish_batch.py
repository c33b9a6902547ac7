"""The batch writer of ``BrokerPublisher`` against a stand-in channel: framing, the delivery-tag
bookkeeping aiormq's confirms rely on, and taking the tags back when the write never happened.
(On the real broker: tests/integration/test_router_rabbitmq.py.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiormq
import pytest
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from services.common.bus import _write_batch


class StandInChannel:
    """The attributes of an aiormq 7 channel that ``_write_batch`` uses."""

    def __init__(self, queue_size: int = 0) -> None:
        self.delivery_tag = 7
        self.confirmations: dict[int, Any] = {}
        self.message_id_delivery_tag: dict[str, int] = {}
        self.max_content_size = 10
        self.number = 3
        self.connection = SimpleNamespace(write_queue=asyncio.Queue(maxsize=queue_size))
        self.lock = asyncio.Lock()

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()


def batch(n: int) -> list[tuple[str, str, bytes, aiormq.spec.Basic.Properties]]:
    return [("zeroerrand.items", f"joint.unit{i}", f"body number {i}".encode(),
             aiormq.spec.Basic.Properties(message_id=f"m-{i}", delivery_mode=2)) for i in range(n)]


def unmarshal_all(payload: bytes) -> list[tuple[int, Any]]:
    frames = []
    while payload:
        used, channel, found = frame.unmarshal(payload)
        frames.append((channel, found))
        payload = payload[used:]
    return frames


async def test_a_batch_is_one_write_with_the_next_tags_in_order() -> None:
    channel = StandInChannel()
    confirmations = await _write_batch(channel, batch(3))  # type: ignore[arg-type]
    assert channel.delivery_tag == 10 and list(channel.confirmations) == [8, 9, 10]
    assert channel.message_id_delivery_tag == {"m-0": 8, "m-1": 9, "m-2": 10}
    assert channel.connection.write_queue.qsize() == 1
    frames = unmarshal_all(channel.connection.write_queue.get_nowait().payload)
    assert {number for number, _ in frames} == {3}
    publishes = [f for _, f in frames if isinstance(f, commands.Basic.Publish)]
    assert [(p.routing_key, p.mandatory) for p in publishes] == [("joint.unit0", True), ("joint.unit1", True),
                                                                  ("joint.unit2", True)]
    headers = [f for _, f in frames if isinstance(f, ContentHeader)]
    assert [h.properties.message_id for h in headers] == ["m-0", "m-1", "m-2"]
    bodies = [f.value for _, f in frames if isinstance(f, ContentBody)]
    assert len(bodies) == 6 and b"".join(bodies) == b"body number 0body number 1body number 2"  # 10-byte frames

    confirmations[1].set_result("ack")  # what aiormq does on the broker's ack
    await asyncio.sleep(0)
    assert channel.message_id_delivery_tag == {"m-0": 8, "m-2": 10}  # nothing left behind


async def test_a_batch_cancelled_before_it_was_written_gives_its_tags_back() -> None:
    channel = StandInChannel(queue_size=1)
    channel.connection.write_queue.put_nowait("someone else's frames")  # the writer is behind
    task = asyncio.create_task(_write_batch(channel, batch(4)))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert not task.done() and channel.delivery_tag == 11
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert channel.delivery_tag == 7  # the broker never saw them: the next publish is tag 8 again
    assert channel.confirmations == {} and channel.message_id_delivery_tag == {}
    assert not channel.lock.locked()
