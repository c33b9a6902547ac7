"""Publishing on RabbitMQ: persistent, mandatory, confirmed and checked, many at once.

``Publisher`` is the port handlers depend on; ``BrokerPublisher`` is the real adapter over a
FastStream ``RabbitBroker`` whose channel raises on a returned (unroutable) message, so an item
can never vanish into an exchange with no bound queue. A whole batch is published concurrently
(the confirms are pipelined) and the call returns only when every confirm is in; if any publish
failed, it raises after the others have settled, and the caller must not acknowledge its input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aio_pika
import aiormq
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange

from services.common.messages import Command, Event, Message
from services.common.topology import EVENTS, REQUESTS

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


class PublishError(RuntimeError):
    """At least one message of a batch was not confirmed by the broker."""


@dataclass(frozen=True)
class Outgoing:
    exchange: RabbitExchange
    routing_key: str
    message: Message
    message_id: str
    message_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


def event_out(event: Event) -> Outgoing:
    """An event on ``zeroerrand.events``, routed by its type, with its id as the AMQP message id."""
    return Outgoing(EVENTS, event.type, event, event.event_id, event.type)


def request_out(command: Command) -> Outgoing:
    """A request to the ledger on ``zeroerrand.requests``, routed by its type, its id as the message id."""
    return Outgoing(REQUESTS, command.type, command, command.request_id, command.type)


class Publisher(Protocol):
    async def publish_all(self, outgoing: Sequence[Outgoing]) -> None:
        """Publishes every message and returns when all are confirmed; raises otherwise."""


def confirming_channel(prefetch: int | None = None) -> Channel:
    """The channel settings every zero-errand broker uses: confirms, and returns raise."""
    return Channel(prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True)


def make_broker(url: str, *, prefetch: int | None = None, **kwargs: Any) -> RabbitBroker:
    return RabbitBroker(url, default_channel=confirming_channel(prefetch), **kwargs)


class BrokerPublisher:
    """Publishes through aio-pika on the broker's confirming channel.

    FastStream's ``broker.publish`` builds a command and runs middlewares per message; measured
    here it publishes about a third as many messages a second as aio-pika's ``Exchange.publish``
    on the same channel, and the router publishes two messages per item. The channel is FastStream's
    own (``confirming_channel``): confirms on, returned messages raise, and a nack raises too.
    """

    def __init__(self, broker: RabbitBroker) -> None:
        self._broker = broker
        self._exchanges: dict[str, aio_pika.Exchange] = {}

    async def _exchange(self, exchange: RabbitExchange) -> aio_pika.Exchange:
        found = self._exchanges.get(exchange.name)
        if found is None:
            declared = await self._broker.declare_exchange(exchange)
            assert isinstance(declared, aio_pika.Exchange)  # a RobustExchange, which knows its channel
            found = self._exchanges[exchange.name] = declared
        return found

    async def publish_all(self, outgoing: Sequence[Outgoing]) -> None:
        results = await asyncio.gather(*(self._publish(o) for o in outgoing), return_exceptions=True)
        failures = [(o, r) for o, r in zip(outgoing, results, strict=True) if isinstance(r, BaseException)]
        if failures:
            first_out, first_error = failures[0]
            raise PublishError(
                f"{len(failures)} of {len(outgoing)} publishes failed; first: {first_out.message_type} "
                f"to {first_out.exchange.name}/{first_out.routing_key}: {first_error!r}"
            ) from first_error

    async def _publish(self, out: Outgoing) -> None:
        exchange = await self._exchange(out.exchange)
        # aio-pika's own Exchange.publish does exactly this after building a Message object, whose
        # attribute bookkeeping cost a fifth of the router's publishing time; same channel, same
        # confirms, returned and nacked messages raise the same DeliveryError.
        channel = await exchange.channel.get_underlay_channel()
        properties = aiormq.spec.Basic.Properties(
            # RabbitMQ refuses a user_id other than the connection's own user: subscribers can trust
            # it to say which service published (the notifier and the ledger accept events only
            # from the services' users)
            user_id=channel.connection.url.user,
            delivery_mode=PERSISTENT,
            message_id=out.message_id,
            message_type=out.message_type,
            content_type="application/json",
            headers=dict(out.headers),
            app_id="zeroerrand",
        )
        await channel.basic_publish(out.message.model_dump_json().encode(), exchange=exchange.name,
                                    routing_key=out.routing_key, properties=properties, mandatory=True)


class MemoryPublisher:
    """The in-memory fake of ``Publisher``, for handler tests: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def publish_all(self, outgoing: Sequence[Outgoing]) -> None:
        self.sent.extend(outgoing)
