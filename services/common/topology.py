"""Exchanges, queues and routing keys: the only module that spells a name on the broker.

Every service declares the whole topology at start (declaring is idempotent), so a message
published before its consumer ever ran waits in that consumer's durable queue instead of being
returned. Queues are quorum queues with a delivery limit and a dead-letter queue each.

``zeroerrand.items`` is bound to ``zeroerrand.events`` with ``#``: every item the router
publishes once, for downstream systems, also reaches every queue bound to the events (the
notifier's and the ledger's), as the same message (body, ``message_id``, validated ``user_id``).
"""

from __future__ import annotations

from typing import Any

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

from services.common.domain import ServiceMode

DELIVERY_LIMIT = 5

AGREEMENTS = RabbitExchange("zeroerrand.agreements", type=ExchangeType.TOPIC, durable=True)
ITEMS = RabbitExchange("zeroerrand.items", type=ExchangeType.TOPIC, durable=True)
EVENTS = RabbitExchange("zeroerrand.events", type=ExchangeType.TOPIC, durable=True)
# Requests (commands) to the ledger from the units' systems, the enterprise and operators; routing key = type.
REQUESTS = RabbitExchange("zeroerrand.requests", type=ExchangeType.TOPIC, durable=True)
DEAD = RabbitExchange("zeroerrand.dead", type=ExchangeType.DIRECT, durable=True)
EXCHANGES = (AGREEMENTS, ITEMS, EVENTS, REQUESTS, DEAD)

AGREEMENT_SIGNED = "agreement.signed"
UNROUTABLE_KEY = "unroutable"


def item_routing_key(mode: ServiceMode, unit: str) -> str:
    return f"{mode.value}.{unit}"


def _quorum(name: str, routing_key: str) -> RabbitQueue:
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        routing_key=routing_key,
        arguments={
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD.name,
            "x-dead-letter-routing-key": name,
        },
    )


def dead_letter_queue(queue: RabbitQueue) -> RabbitQueue:
    """Where ``queue``'s poison and malformed messages are parked, with the reason."""
    return RabbitQueue(f"{queue.name}.dead", queue_type=QueueType.QUORUM, durable=True, routing_key=queue.name)


ROUTER_QUEUE = _quorum("zeroerrand.router.agreements", AGREEMENT_SIGNED)
NOTIFIER_QUEUE = _quorum("zeroerrand.notifier.events", "#")
EVALUATION_QUEUE = _quorum("zeroerrand.evaluation.events", "#")
LEDGER_REQUESTS_QUEUE = _quorum("zeroerrand.evaluation.requests", "#")

MODE_QUEUES = {mode: _quorum(f"zeroerrand.items.{mode.value}", f"{mode.value}.#") for mode in ServiceMode}
UNROUTABLE_QUEUE = _quorum("zeroerrand.items.unroutable", UNROUTABLE_KEY)

# (source, destination, routing key): exchange-to-exchange bindings every service declares. Routed
# items (``{mode}.{unit}``) and parked ones (``unroutable``) arrive on the events exchange with
# their own routing key, never as ``item.routed`` / ``item.unroutable``.
EXCHANGE_BINDINGS: tuple[tuple[RabbitExchange, RabbitExchange, str], ...] = ((ITEMS, EVENTS, "#"),)

# (exchange, queue) pairs every service declares.
BINDINGS: tuple[tuple[RabbitExchange, RabbitQueue], ...] = (
    (AGREEMENTS, ROUTER_QUEUE),
    (EVENTS, NOTIFIER_QUEUE),
    (EVENTS, EVALUATION_QUEUE),
    (REQUESTS, LEDGER_REQUESTS_QUEUE),
    *((ITEMS, q) for q in MODE_QUEUES.values()),
    (ITEMS, UNROUTABLE_QUEUE),
)
CONSUMER_QUEUES = (ROUTER_QUEUE, NOTIFIER_QUEUE, EVALUATION_QUEUE, LEDGER_REQUESTS_QUEUE, *MODE_QUEUES.values(), UNROUTABLE_QUEUE)


async def declare_topology(broker: Any) -> None:
    """Declares every exchange, queue, binding and dead-letter queue on a connected broker."""
    exchanges = {exchange.name: await broker.declare_exchange(exchange) for exchange in EXCHANGES}
    for source, destination, routing_key in EXCHANGE_BINDINGS:
        # aio-pika: the destination binds to the source (a robust exchange restores it on reconnect)
        await exchanges[destination.name].bind(exchanges[source.name], routing_key=routing_key)
    for exchange, queue in BINDINGS:
        declared = await broker.declare_queue(queue)
        await declared.bind(exchange.name, routing_key=queue.routing())
    for queue in CONSUMER_QUEUES:
        dead = await broker.declare_queue(dead_letter_queue(queue))
        await dead.bind(DEAD.name, routing_key=queue.name)

