"""Publishing on RabbitMQ: persistent, mandatory, confirmed and checked, many at once.

``Publisher`` is the port handlers depend on; ``BrokerPublisher`` is the real adapter over a
FastStream ``RabbitBroker`` whose channel raises on a returned (unroutable) message, so an item
can never vanish into an exchange with no bound queue. A whole batch is written at once (the
confirms overlap) and the call returns only when every confirm is in; if any publish failed, it
raises after the others have settled, and the caller must not acknowledge its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeGuard

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustConnection
from aiormq.abc import ChannelFrame
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange
from faststream.security import BaseSecurity
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from services.common.connection import (
    ConnectionWatch,
    causes,
    failover_connection_class,
    quiet_reconnect_logs,
    unless_connection_lost,
)
from services.common.messages import Command, Event, Message
from services.common.operations import PUBLISH_CONFIRM_SECONDS
from services.common.settings import BrokerSettings, BrokerUnavailable, mask_url, split_urls
from services.common.topology import EVENTS, REQUESTS, declare_topology, type_routing_key

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
    return Outgoing(EVENTS, type_routing_key(event.type), event, event.event_id, event.type)


def request_out(command: Command) -> Outgoing:
    """A request to the ledger on ``zeroerrand.requests``, routed by its type, its id as the message id."""
    return Outgoing(REQUESTS, type_routing_key(command.type), command, command.request_id, command.type)


class Publisher(Protocol):
    async def publish_all(self, outgoing: Sequence[Outgoing]) -> None:
        """Publishes every message and returns when all are confirmed; raises otherwise."""


def confirming_channel(prefetch: int | None = None) -> Channel:
    """The channel settings every zero-errand broker uses: confirms, and returns raise."""
    return Channel(prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True)


class ZeroErrandBroker(RabbitBroker):
    """FastStream's ``RabbitBroker`` whose first connection, if it fails, raises
    ``BrokerUnavailable`` with the reason in words (aiormq reports a refused client certificate
    as "connection reset")."""

    def __init__(self, settings: BrokerSettings, url: str, **kwargs: Any) -> None:
        self.settings = settings
        super().__init__(url, **kwargs)

    async def connect(self) -> aio_pika.RobustConnection:
        try:
            return await super().connect()
        except (aiormq.exceptions.AMQPConnectionError, OSError) as exc:
            raise BrokerUnavailable(explain_connect_failure(self.settings, exc)) from exc


def make_broker(settings: BrokerSettings | str, *, prefetch: int | None = None, name: str = "zeroerrand",
                reconnect_interval_s: float | None = None, **kwargs: Any) -> RabbitBroker:
    """The broker every service and CLI command uses, on a confirming channel.

    ``settings.amqp_url`` is one AMQP URL, or several separated by commas (the nodes of one
    cluster, tried in turn at start and at every reconnect: ``services.common.connection``). A URL
    alone takes the TLS files from the environment (``BrokerSettings``); an ``amqps://`` URL
    connects with TLS, verifying the server's certificate and host name
    (``BrokerSettings.ssl_context``, which raises ``SettingsError`` for settings that cannot work).
    ``name`` (the service) heads the two lines a lost connection logs, the WARNING when it is lost
    and the INFO when it is back; aio-pika tries again every ``reconnect_interval_s`` seconds
    (default ``ZEROERRAND_AMQP_RECONNECT_INTERVAL_S``).
    """
    if isinstance(settings, str):
        settings = BrokerSettings(amqp_url=settings)
    urls = split_urls(settings.amqp_url)
    context = settings.ssl_context()
    security = BaseSecurity(ssl_context=context) if context is not None else None
    interval = reconnect_interval_s if reconnect_interval_s is not None else settings.amqp_reconnect_interval_s
    watch = ConnectionWatch(name, interval)
    quiet_reconnect_logs()
    broker = ZeroErrandBroker(settings, urls[0], default_channel=confirming_channel(prefetch), security=security,
                              reconnect_interval=interval, on_close=[watch.on_close],
                              on_reconnected=[watch.on_reconnected], **kwargs)
    # FastStream hands these to ``aio_pika.connect_robust`` as they are, and has no argument of its
    # own for aio-pika's ``connection_class``: the failover connection goes in with them
    connection_kwargs = getattr(broker, "_connection_kwargs", None)
    if not isinstance(connection_kwargs, dict) or "reconnect_interval" not in connection_kwargs:
        raise RuntimeError("this FastStream does not keep connect_robust's arguments in RabbitBroker._connection_kwargs")
    connection_kwargs["connection_class"] = failover_connection_class(urls)
    return broker


async def connect_robust(settings: BrokerSettings | str, **kwargs: Any) -> AbstractRobustConnection:
    """A plain aio-pika connection with the same TLS settings as ``make_broker`` (for tools that
    need one outside FastStream: benchmarks, tests); ``BrokerUnavailable`` as there."""
    if isinstance(settings, str):
        settings = BrokerSettings(amqp_url=settings)
    try:
        urls = split_urls(settings.amqp_url)
        connection: AbstractRobustConnection = await aio_pika.connect_robust(
            urls[0], ssl_context=settings.ssl_context(), connection_class=failover_connection_class(urls), **kwargs)
    except (aiormq.exceptions.AMQPConnectionError, OSError) as exc:
        raise BrokerUnavailable(explain_connect_failure(settings, exc)) from exc
    return connection


def explain_connect_failure(settings: BrokerSettings, exc: BaseException) -> str:
    """Why the connection to ``settings.amqp_url`` failed, in Chinese and English, naming the
    setting to look at."""
    where = mask_url(settings.amqp_url)
    chain = list(causes(exc))
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if verify is not None:
        ca = (f"ZEROERRAND_AMQP_CA_FILE={settings.amqp_ca_file}" if settings.amqp_ca_file
              else "ZEROERRAND_AMQP_CA_FILE 未设置（只信任系统的 CA）")
        if "mismatch" in str(verify.verify_message) or "Hostname" in str(verify.verify_message):
            return (f"RabbitMQ（{where}）的服务器证书不是签发给这个主机名的：{verify.verify_message}；URL 中的主机须在证书的"
                    f"使用者可选名称（SAN）中 / server certificate does not match the URL's host: {verify.verify_message}")
        return (f"RabbitMQ（{where}）的服务器证书未通过验证：{verify.verify_message}；{ca}，请把签发服务器证书的 CA 证书"
                f"（PEM）设为 ZEROERRAND_AMQP_CA_FILE / server certificate not trusted ({verify.verify_message}): "
                f"set ZEROERRAND_AMQP_CA_FILE to the CA that signed it")
    if settings.uses_tls:
        if any(isinstance(e, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(e) for e in chain) or (
                "record layer failure" in text):
            return (f"RabbitMQ（{where}）的这个端口不是 TLS 端口：amqps:// 须连 RabbitMQ 的 TLS 监听端口（通常 5671）"
                    f" / this port does not speak TLS: {text}")
        refused = "CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text or any(
            isinstance(e, ConnectionResetError | EOFError | aiormq.exceptions.IncompatibleProtocolError) for e in chain
        ) or "connection reset" in text.lower()
        if refused and settings.amqp_cert_file is None:
            return (f"RabbitMQ（{where}）在 TLS 握手时断开了连接：多半是服务器要求客户端证书，而没有设置 "
                    f"ZEROERRAND_AMQP_CERT_FILE 与 ZEROERRAND_AMQP_KEY_FILE / the server closed the TLS connection: it most "
                    f"likely requires a client certificate, and none is set (ZEROERRAND_AMQP_CERT_FILE, "
                    f"ZEROERRAND_AMQP_KEY_FILE) [{text}]")
        if refused:
            return (f"RabbitMQ（{where}）在 TLS 握手时断开了连接：多半是它不接受客户端证书 ZEROERRAND_AMQP_CERT_FILE="
                    f"{settings.amqp_cert_file}（不是它信任的 CA 签发的，或已过期）/ the server closed the TLS connection: "
                    f"it most likely does not accept the client certificate [{text}]")
    elif "connection reset" in text.lower() or any(isinstance(e, ConnectionResetError) for e in chain):
        return (f"RabbitMQ（{where}）断开了连接：这个端口可能只接受 TLS，请用 amqps:// 及其端口 / the server closed the "
                f"connection; if the port is a TLS port, use amqps:// [{text}]")
    return f"无法连接 RabbitMQ（{where}）/ RabbitMQ unreachable: {text}"


class BrokerPublisher:
    """Publishes on the broker's confirming channel, a whole batch in one write.

    FastStream's ``broker.publish`` builds a command and runs middlewares per message, and
    aio-pika's ``Exchange.publish`` builds a ``Message`` object and runs one task per message
    through aiormq's ``basic_publish`` (a lock, a timeout scope and a socket write each). The
    router publishes one batch per agreement (its started event and every item), so the batch is
    framed once, written to the connection once, and its confirms are awaited together. The
    channel is FastStream's own (``confirming_channel``): confirms on, returned messages raise, and
    a nack raises too, exactly as for ``basic_publish`` (see :func:`_write_batch`).
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
        if not outgoing:
            return
        for out in outgoing:  # declared once per publisher: a publish to a missing exchange closes the channel
            exchange = await self._exchange(out.exchange)
        channel = await exchange.channel.get_underlay_channel()
        # RabbitMQ refuses a user_id other than the connection's own user: subscribers can trust it
        # to say which service published (the notifier and the ledger accept events only from the
        # services' users)
        user = channel.connection.url.user
        messages = [(out.exchange.name, out.routing_key, _json(out.message), aiormq.spec.Basic.Properties(
            user_id=user, delivery_mode=PERSISTENT, message_id=out.message_id, message_type=out.message_type,
            content_type="application/json", headers=dict(out.headers), app_id="zeroerrand",
        )) for out in outgoing]
        # a connection lost meanwhile fails the batch instead of leaving it waiting on a dead writer
        connection = channel.connection
        started = time.perf_counter()
        if _can_write_batches(channel):
            confirmations: Sequence[Awaitable[Any]] = await unless_connection_lost(_write_batch(channel, messages),
                                                                                   connection)
        else:  # an aiormq this module does not know: one basic_publish per message, confirms overlapping
            confirmations = [channel.basic_publish(body, exchange=name, routing_key=key, properties=properties,
                                                   mandatory=True) for name, key, body, properties in messages]
        results = await unless_connection_lost(asyncio.gather(*confirmations, return_exceptions=True), connection)
        PUBLISH_CONFIRM_SECONDS.observe(time.perf_counter() - started)
        failures = [(o, r) for o, r in zip(outgoing, results, strict=True) if isinstance(r, BaseException)]
        if failures:
            first_out, first_error = failures[0]
            raise PublishError(
                f"{len(failures)} of {len(outgoing)} publishes failed; first: {first_out.message_type} "
                f"to {first_out.exchange.name}/{first_out.routing_key}: {first_error!r}"
            ) from first_error


@contextlib.asynccontextmanager
async def connected_publisher(settings: BrokerSettings | None = None) -> AsyncIterator[BrokerPublisher]:
    """A ``BrokerPublisher`` on a connection of its own, with the whole topology declared first (so
    a message waits in its consumer's queue even if that service never ran), closed on leaving:
    for one-off commands (the CLI's ``sign``, requests to the ledger, ``sweep``), not services."""
    broker = make_broker(settings or BrokerSettings())
    async with broker:
        await broker.connect()
        await declare_topology(broker)
        yield BrokerPublisher(broker)


async def publish_once(outgoing: Sequence[Outgoing], settings: BrokerSettings | None = None) -> None:
    """Connects, declares the topology, publishes ``outgoing`` confirmed, and disconnects."""
    async with connected_publisher(settings) as publisher:
        await publisher.publish_all(outgoing)


def _json(message: Message) -> bytes:
    """``model_dump_json().encode()`` without the detour through ``str``."""
    return message.__pydantic_serializer__.to_json(message)


Batch = Sequence[tuple[str, str, bytes, aiormq.spec.Basic.Properties]]  # (exchange, routing key, body, properties)


def _can_write_batches(channel: aiormq.abc.AbstractChannel) -> TypeGuard[aiormq.Channel]:
    """Whether ``channel`` keeps its publisher-confirm bookkeeping the way :func:`_write_batch`
    expects (aiormq 7: ``Channel.basic_publish``); otherwise messages go one ``basic_publish`` each."""
    return (isinstance(channel, aiormq.Channel) and channel.publisher_confirms
            and isinstance(getattr(channel, "confirmations", None), dict)
            and isinstance(getattr(channel, "message_id_delivery_tag", None), dict)
            and isinstance(getattr(channel, "delivery_tag", None), int)
            and isinstance(getattr(channel, "max_content_size", None), int)
            and isinstance(getattr(channel.connection, "write_queue", None), asyncio.Queue))


async def _write_batch(channel: aiormq.Channel, messages: Batch) -> list[asyncio.Future[Any]]:
    """Writes every message of ``messages`` (mandatory, on a confirming channel) in one frame
    buffer and returns one confirmation future per message, in order.

    Does for the whole batch what aiormq's ``Channel.basic_publish`` does per message, with the
    same bookkeeping: under the channel's lock (which refuses a closed channel) each message gets
    the next delivery tag and a confirmation future in ``channel.confirmations``, found again by
    its ``message_id`` if the broker returns it (then the future raises ``PublishError``); a nack
    raises ``DeliveryError``, and a channel that closes fails every pending future. If the frames
    never reach the write queue (cancelled while it was full), the tags are taken back, so the
    channel's count stays the broker's. Message ids must differ within a batch.
    """
    frames: list[Any] = []
    size = channel.max_content_size
    for exchange, routing_key, body, properties in messages:
        frames.append(aiormq.spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True))
        frames.append(ContentHeader(properties=properties, body_size=len(body)))
        frames.extend(ContentBody(body[at:at + size]) for at in range(0, len(body), size))
    payload = ChannelFrame.marshall(channel_number=channel.number, frames=frames)
    confirmations: list[asyncio.Future[Any]] = []
    async with channel.lock:
        first = channel.delivery_tag
        for tag, (_, _, _, properties) in enumerate(messages, start=first + 1):
            confirmation = channel.create_future()
            channel.confirmations[tag] = confirmation
            message_id = str(properties.message_id)
            channel.message_id_delivery_tag[message_id] = tag
            confirmation.add_done_callback(partial(_forget_message_id, channel, message_id, tag))
            confirmations.append(confirmation)
        channel.delivery_tag = first + len(messages)
        try:
            await channel.connection.write_queue.put(payload)
        except BaseException:
            channel.delivery_tag = first
            for tag, confirmation in enumerate(confirmations, start=first + 1):
                channel.confirmations.pop(tag, None)
                confirmation.cancel()
            raise
    return confirmations


def _forget_message_id(channel: aiormq.Channel, message_id: str, tag: int, _: asyncio.Future[Any]) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        del channel.message_id_delivery_tag[message_id]


class MemoryPublisher:
    """The in-memory fake of ``Publisher``, for handler tests: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def publish_all(self, outgoing: Sequence[Outgoing]) -> None:
        self.sent.extend(outgoing)
