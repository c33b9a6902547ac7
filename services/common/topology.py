"""Exchanges, queues, routing keys and message headers: the only module that spells a name on the broker.

Every service declares the whole topology at start (declaring is idempotent), so a message
published before its consumer ever ran waits in that consumer's durable queue instead of being
returned. Queues are quorum queues with a delivery limit and a dead-letter queue each.

``zeroerrand.items`` is bound to ``zeroerrand.events`` with ``#``: every item the router
publishes once, for downstream systems, also reaches every queue bound to the events (the
notifier's and the ledger's), as the same message (body, ``message_id``, validated ``user_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

from services.common.domain import ServiceMode
from services.common.messages import ItemUnroutable, RoutedItem

DELIVERY_LIMIT = 5

AGREEMENTS = RabbitExchange("zeroerrand.agreements", type=ExchangeType.TOPIC, durable=True)
ITEMS = RabbitExchange("zeroerrand.items", type=ExchangeType.TOPIC, durable=True)
EVENTS = RabbitExchange("zeroerrand.events", type=ExchangeType.TOPIC, durable=True)
# Requests (commands) to the ledger from the units' systems, the enterprise and operators; routing key = type.
REQUESTS = RabbitExchange("zeroerrand.requests", type=ExchangeType.TOPIC, durable=True)
DEAD = RabbitExchange("zeroerrand.dead", type=ExchangeType.DIRECT, durable=True)
EXCHANGES = (AGREEMENTS, ITEMS, EVENTS, REQUESTS, DEAD)

AGREEMENT_SIGNED = "agreement.signed"
AGREEMENT_AMENDED = "agreement.amended"  # a 补充协议 for a project already served
AGREEMENT_KEYS = "agreement.*"  # what the router's queue takes from zeroerrand.agreements: both of the above
UNROUTABLE_KEY = "unroutable"


# The headers of a routed or parked item on ``zeroerrand.items``, so a downstream system can filter
# without reading the body; and of a message parked on a dead-letter queue, saying why.
PROJECT_HEADER = "x-zeroerrand-project"
ITEM_HEADER = "x-zeroerrand-item"
MODE_HEADER = "x-zeroerrand-mode"
UNIT_HEADER = "x-zeroerrand-unit"
RULE_HEADER = "x-zeroerrand-rule"
RULES_VERSION_HEADER = "x-zeroerrand-rules-version"
REASON_HEADER = "x-zeroerrand-reason"
ITEM_HEADERS = (PROJECT_HEADER, ITEM_HEADER, MODE_HEADER, UNIT_HEADER, RULE_HEADER, RULES_VERSION_HEADER)
UNROUTABLE_HEADERS = (PROJECT_HEADER, ITEM_HEADER, REASON_HEADER)
ERROR_HEADER = "x-zeroerrand-error"
ERROR_KIND_HEADER = "x-zeroerrand-error-kind"
SOURCE_QUEUE_HEADER = "x-zeroerrand-source-queue"
# the parked message's validated AMQP user_id (who published it), which parking cannot keep as the
# property itself (RabbitMQ accepts only the parking service's own user there)
PUBLISHER_HEADER = "x-zeroerrand-publisher"
# what parking adds, and what the queues add on delivery and on dead-lettering: none of it is the
# message's own, and ``zeroerrand dead-letters replay`` sends it back without them
PARKING_HEADERS = (ERROR_HEADER, ERROR_KIND_HEADER, SOURCE_QUEUE_HEADER, PUBLISHER_HEADER, "x-delivery-count",
                   "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                   "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")


def item_routing_key(mode: ServiceMode, unit: str) -> str:
    """A routed item's key on ``zeroerrand.items``: ``{mode}.{unit}``."""
    return f"{mode.value}.{unit}"


def type_routing_key(message_type: str) -> str:
    """An event's key on ``zeroerrand.events`` and a request's on ``zeroerrand.requests``: its type."""
    return message_type


def item_headers(item: RoutedItem) -> dict[str, str]:
    """The headers of a routed item (``ITEM_HEADERS``)."""
    return {
        PROJECT_HEADER: item.project_code,
        ITEM_HEADER: item.item_code,
        MODE_HEADER: item.mode.value,
        UNIT_HEADER: item.responsible_unit,
        RULE_HEADER: item.decision.rule_id,
        RULES_VERSION_HEADER: item.decision.rules_version,
    }


def unroutable_headers(parked: ItemUnroutable) -> dict[str, str]:
    """The headers of a parked item (``UNROUTABLE_HEADERS``)."""
    return {PROJECT_HEADER: parked.project_code, ITEM_HEADER: parked.item_code,
            REASON_HEADER: parked.unroutable.reason_code}


def dead_letter_key(queue: RabbitQueue | str) -> str:
    """The key on ``zeroerrand.dead`` of what ``queue`` (a queue or its name) gives up on: its name."""
    return queue if isinstance(queue, str) else queue.name


def parked_headers(original: Mapping[Any, Any], queue: RabbitQueue, *, kind: str, reason: str,
                   publisher: str | None = None) -> dict[str, Any]:
    """The headers of a message parked from ``queue``: its own string and integer headers, why, and
    who published it (its ``user_id``, if it had one)."""
    headers: dict[str, Any] = {str(k): v for k, v in original.items() if isinstance(v, (str, int))}
    headers.update({ERROR_HEADER: reason, ERROR_KIND_HEADER: kind, SOURCE_QUEUE_HEADER: queue.name})
    if publisher:
        headers[PUBLISHER_HEADER] = publisher
    return headers


def _quorum(name: str, routing_key: str) -> RabbitQueue:
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        routing_key=routing_key,
        arguments={
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD.name,
            "x-dead-letter-routing-key": dead_letter_key(name),
        },
    )


def dead_letter_queue(queue: RabbitQueue) -> RabbitQueue:
    """Where ``queue``'s poison and malformed messages are parked, with the reason."""
    return RabbitQueue(f"{queue.name}.dead", queue_type=QueueType.QUORUM, durable=True, routing_key=dead_letter_key(queue))


ROUTER_QUEUE = _quorum("zeroerrand.router.agreements", AGREEMENT_KEYS)
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
        await dead.bind(DEAD.name, routing_key=dead_letter_key(queue))

