"""The services' connection to RabbitMQ: several addresses, clean reconnects, one log line each way.

A broker restart or the loss of a cluster node must cost the services a reconnect, never a
message, and the log must say what happened in two lines per connection, not a page of
tracebacks:

* ``FailoverConnection`` is aio-pika's ``RobustConnection`` (the one FastStream's
  ``RabbitBroker`` uses) given several addresses, the nodes of one cluster: at start the first
  that accepts a connection is used; when the connection is lost, or an attempt fails, the next
  address in the list is tried (wrapping around), every ``reconnect_interval`` seconds, until one
  answers. On reconnecting, aio-pika reopens the channels and their consumers, and FastStream's
  subscribers go on; deliveries that were in flight on the lost channels are requeued by the
  broker and delivered again (the consumers de-duplicate by message id).
* ``ConnectionWatch`` logs a WARNING when a connection is lost (with the broker's reason) and an
  INFO when it is back (with how long it was away); while it stays away, a WARNING a minute.
* aiormq and aio-pika log each failed attempt and each closed socket themselves (an ERROR or a
  WARNING every few seconds per connection while a broker restarts), and FastStream logs a
  consumer callback cancelled with its channel as an ERROR; ``quiet_reconnect_logs`` demotes
  exactly those records to DEBUG, since the watch says it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import aiormq
from aio_pika import RobustChannel, RobustConnection
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aiormq.exceptions import ChannelInvalidStateError
from yarl import URL

log = logging.getLogger(__name__)
T = TypeVar("T")

RECONNECT_INTERVAL_S = 1.0
STILL_AWAY_EVERY_S = 60.0


def address(url: URL) -> str:
    """``host:port/vhost`` of an AMQP URL: what the log says (no credentials, no options)."""
    return f"{url.host}:{url.port}{url.path or '/'}"


class RecoveringChannel(RobustChannel):
    """aio-pika's robust channel, without a spurious ERROR when its connection is lost.

    When the connection drops, the channel's close callback tries to reopen the channel at once,
    on a connection that has no transport yet (or only the closed one), and aio-pika logs the
    resulting ``ChannelInvalidStateError('No active transport in channel')`` or
    ``RuntimeError('<Connection ...> closed')`` as a callback error (aio-pika issue #668). Nothing
    is wrong: the connection reopens this channel, with its consumers, when it is back. A failure
    while the connection is up is raised as before.
    """

    async def _on_close(self, closing: asyncio.Future[Any]) -> BaseException | None:
        try:
            return await super()._on_close(closing)
        except RuntimeError:  # ChannelInvalidStateError is one
            transport = self._connection.transport
            if transport is not None and not transport.connection.is_closed:
                raise
            return None


class FailoverConnection(RobustConnection):
    """A ``RobustConnection`` to the first of several addresses that answers (see the module).

    aio-pika connects to ``self.url`` on every attempt and calls ``_on_connection_close`` after
    every lost connection and every failed attempt; moving ``self.url`` on to the next address
    there makes each new attempt go to the next node. The connection options (query) of the first
    URL apply to all of them, unless an address sets its own.
    """

    CHANNEL_CLASS = RecoveringChannel

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, *,
                 alternates: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(url, loop=loop, **kwargs)
        first = self.url
        others = []
        for text in alternates:
            other = URL(text)
            others.append(other.with_query({**first.query, **other.query}))
        self.addresses: tuple[URL, ...] = (first, *others)
        self._current = 0

    def _next_address(self) -> None:
        self._current = (self._current + 1) % len(self.addresses)
        self.url = self.addresses[self._current]

    async def connect(self, timeout: Any = None) -> None:
        if len(self.addresses) > 1 and self.connection_attempt == 0:
            await self._first_that_answers(timeout)
        await super().connect(timeout)

    async def _first_that_answers(self, timeout: Any) -> None:
        """Starts at the first address that accepts an AMQP connection (the first, if none does:
        the start then fails with its error, as with one address)."""
        for index, url in enumerate(self.addresses):
            try:
                probe = await asyncio.wait_for(aiormq.connect(url, **self.kwargs), timeout=timeout)
            except (ConnectionError, OSError, aiormq.exceptions.AMQPError, TimeoutError) as exc:
                log.info("broker %s does not answer (%r); trying the next address", address(url), exc)
                continue
            await probe.close()
            self._current = index
            self.url = url
            return

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        await super()._on_connection_close(closing)
        # after aio-pika has asked for the next attempt, before that attempt can run
        if len(self.addresses) > 1 and not (self.close_called or self.is_closed):
            self._next_address()


class ConnectionWatch:
    """FastStream's ``on_close`` / ``on_reconnected`` callbacks of one service's broker: the
    WARNING when its connection is lost, the INFO when it is back."""

    def __init__(self, name: str, reconnect_interval_s: float) -> None:
        self.name = name
        self.reconnect_interval_s = reconnect_interval_s
        self.lost_at: float | None = None
        self.lost_from = ""
        self.failed_attempts = 0
        self._warned_at = 0.0
        self.reconnects = 0

    def on_close(self, connection: AbstractConnection | None, exc: BaseException | None = None) -> None:
        if connection is None or connection.close_called or connection.is_closed:
            return  # closed on purpose (shutdown)
        now = time.monotonic()
        where = _where(connection)
        if self.lost_at is None:
            self.lost_at, self._warned_at, self.lost_from, self.failed_attempts = now, now, where, 0
            log.warning("%s: connection to RabbitMQ %s lost (%s); reconnecting every %g s", self.name, where,
                        reason(exc), self.reconnect_interval_s)
            return
        self.failed_attempts += 1
        if now - self._warned_at >= STILL_AWAY_EVERY_S:
            self._warned_at = now
            log.warning("%s: RabbitMQ still unreachable after %.0f s (%s attempts; last, to %s: %s)", self.name,
                        now - self.lost_at, self.failed_attempts, where, reason(exc))

    def on_reconnected(self, connection: AbstractRobustConnection | None) -> None:
        away = time.monotonic() - self.lost_at if self.lost_at is not None else 0.0
        self.lost_at = None
        self.reconnects += 1
        log.info("%s: connected to RabbitMQ %s again after %.1f s (lost from %s); consumers resumed", self.name,
                 _where(connection), away, self.lost_from)


def _where(connection: Any) -> str:
    url = getattr(connection, "url", None)
    return address(url) if isinstance(url, URL) else "?"


def reason(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


class ConnectionLostError(ConnectionError):
    """What was being sent could not be, because its connection to the broker is gone."""


async def unless_connection_lost(work: Awaitable[T], connection: Any) -> T:
    """``await work``, unless the aiormq ``connection`` it writes to closes first.

    An acknowledgement or a publish on a connection that has just been lost can wait forever:
    aiormq queues its frame for a writer that has stopped (and, once that bounded queue is full,
    waits for room that never comes), while aio-pika has already reconnected with a new
    connection. The connection's ``closing`` future settles that: when it is done first, the work
    is cancelled and ``ConnectionLostError`` raised (the broker requeues unacknowledged deliveries
    itself; an unconfirmed publish is not confirmed, and its input not acknowledged).
    """
    closing = getattr(connection, "closing", None)
    if not isinstance(closing, asyncio.Future):
        return await work
    task = asyncio.ensure_future(work)
    try:
        if not closing.done():
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    raise ConnectionLostError(f"the connection to {_where(connection)} was lost")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``__cause__``, else ``__context__``), and so on, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the loss of the connection or of a channel with it."""
    return any(isinstance(e, (ChannelInvalidStateError, aiormq.exceptions.AMQPConnectionError, ConnectionError))
               for e in causes(exc))


def failover_connection_class(urls: Sequence[str]) -> Any:
    """What ``aio_pika.connect_robust`` takes as ``connection_class``: a ``FailoverConnection``
    that knows the other addresses (the first is the URL FastStream passes)."""
    return partial(FailoverConnection, alternates=tuple(urls[1:]))


# -- the libraries' own reconnect chatter ------------------------------------------------------

# (logger, the start of the message template): what aiormq and aio-pika log per lost socket and
# per failed attempt, which ConnectionWatch reports once instead
_CHATTER = {
    "aiormq.connection": ("error when creating transport", "Unexpected connection close from remote",
                          "Cancelling cause reader exited abnormally"),
    "aio_pika.robust_connection": ("Connection to %s closed. Reconnecting", 'Connection attempt to "%s" failed'),
}


class _DemoteCancelled(logging.Filter):
    """FastStream logs a consumer callback that aio-pika cancels, because the channel it ran on
    was lost, as an ERROR with a traceback; the delivery is simply requeued by the broker."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and (isinstance(error, asyncio.CancelledError) or connection_lost(error)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


FASTSTREAM_ACCESS_LOGGER = "faststream.access.rabbit"


class _Demote(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(self.prefixes):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_reconnect_logs() -> None:
    """Demotes the libraries' per-attempt reconnect records to DEBUG (once per process)."""
    for name, prefixes in _CHATTER.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Demote) for f in logger.filters):
            logger.addFilter(_Demote(prefixes))
    access = logging.getLogger(FASTSTREAM_ACCESS_LOGGER)
    if not any(isinstance(f, _DemoteCancelled) for f in access.filters):
        access.addFilter(_DemoteCancelled())
