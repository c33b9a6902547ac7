"""A unit's own system receiving its approval items (docs/downstream.md): its own durable queue bound
to ``zeroerrand.items``, each item handled once (by AMQP message_id), then acknowledged.

Environment: ZEROERRAND_AMQP_URL (the unit's own RabbitMQ user), ZEROERRAND_ROUTING_KEY ({mode}.{unit},
default joint.planning_construction_bureau), ZEROERRAND_QUEUE (the unit's queue), ZEROERRAND_STOP_AFTER
(stop after that many messages, duplicates included; 0 or unset: never).
"""

import asyncio
import json
import os

import aio_pika


async def main() -> None:
    key = os.environ.get("ZEROERRAND_ROUTING_KEY", "joint.planning_construction_bureau")
    stop_after = int(os.environ.get("ZEROERRAND_STOP_AFTER", "0"))
    seen: set[str] = set()  # a real system records the handled message ids in its own database
    received = 0
    async with await aio_pika.connect_robust(os.environ.get("ZEROERRAND_AMQP_URL", "amqp://localhost/")) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        queue = await channel.declare_queue(os.environ.get("ZEROERRAND_QUEUE", f"unit.{key}"), durable=True,
                                            arguments={"x-queue-type": "quorum"})
        await queue.bind("zeroerrand.items", routing_key=key)
        print(f"listening on {queue.name} for {key}", flush=True)
        async with queue.iterator() as messages:
            async for message in messages:
                if message.message_id not in seen:  # a redelivered or republished item has the same id
                    item = json.loads(message.body)
                    print(item["project_code"], item["item_code"], item["responsible_unit"],
                          len(item["materials"]), flush=True)
                    seen.add(str(message.message_id))
                await message.ack()
                received += 1
                if received == stop_after:
                    break


if __name__ == "__main__":
    asyncio.run(main())
