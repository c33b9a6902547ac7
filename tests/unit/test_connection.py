"""The broker connection's pieces that need no broker: addresses, the log lines, what counts as a lost connection."""

from __future__ import annotations

import asyncio
import logging

import aiormq
import pytest
from aio_pika import connect_robust
from yarl import URL

from services.common.bus import PublishError, make_broker
from services.common.connection import (
    ConnectionLostError,
    ConnectionWatch,
    FailoverConnection,
    connection_lost,
    quiet_reconnect_logs,
    unless_connection_lost,
)
from services.common.settings import BrokerSettings, split_urls


def test_a_comma_separated_amqp_url_is_several_addresses() -> None:
    assert split_urls("amqp://a:b@h1:5690/, amqp://a:b@h2:5691/,") == ["amqp://a:b@h1:5690/", "amqp://a:b@h2:5691/"]
    assert split_urls("amqp://guest:guest@127.0.0.1:5672/") == ["amqp://guest:guest@127.0.0.1:5672/"]
    with pytest.raises(ValueError):
        split_urls(" , ")
    assert BrokerSettings(amqp_url="amqp://router:x@h1/,amqp://other:y@h2/").trusted() == frozenset({"router"})


async def test_each_lost_connection_moves_on_to_the_next_address() -> None:
    connection = FailoverConnection(URL("amqp://u:p@h1:5690/v?heartbeat=5"), alternates=("amqp://u:p@h2:5691/v",
                                                                                       "amqp://u:p@h3:5692/v"))
    seen = [connection.url]
    for _ in range(3):
        connection._next_address()
        seen.append(connection.url)
    print("addresses tried in turn:", [f"{u.host}:{u.port}" for u in seen])
    assert [u.port for u in seen] == [5690, 5691, 5692, 5690]
    assert all(u.query["heartbeat"] == "5" for u in seen)  # the first URL's options apply to all


async def test_a_start_where_no_address_answers_fails_with_the_error() -> None:
    # two addresses where nothing listens: the start fails with the error, as with one address
    broker = make_broker("amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/")
    kwargs = broker._connection_kwargs
    with pytest.raises((ConnectionError, OSError, aiormq.exceptions.AMQPError)):
        await asyncio.wait_for(connect_robust(**kwargs), 10)


def test_the_watch_logs_one_warning_when_lost_and_one_info_when_back(caplog: pytest.LogCaptureFixture) -> None:
    class Connection:
        url = URL("amqp://u:secret@rabbit-1:5672/zeroerrand")
        close_called = False
        is_closed = False

    watch = ConnectionWatch("router", 1.0)
    with caplog.at_level(logging.DEBUG, logger="services.common.connection"):
        for attempt in range(5):  # the loss, then four failed attempts
            watch.on_close(Connection(), ConnectionResetError(104, "Connection reset by peer") if attempt == 0
                           else ConnectionRefusedError(111, "refused"))
        watch.on_reconnected(Connection())
        closing = Connection()
        closing.close_called = True
        watch.on_close(closing, asyncio.CancelledError())  # shutdown: nothing
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    print(*lines, sep="\n")
    assert [level for level, _ in lines] == ["WARNING", "INFO"]
    assert "router: connection to RabbitMQ rabbit-1:5672/zeroerrand lost" in lines[0][1]
    assert "secret" not in lines[0][1] + lines[1][1]
    assert watch.reconnects == 1 and watch.failed_attempts == 4


def test_the_libraries_reconnect_chatter_is_debug(caplog: pytest.LogCaptureFixture) -> None:
    quiet_reconnect_logs()
    quiet_reconnect_logs()  # once per process, however many brokers
    assert len(logging.getLogger("aiormq.connection").filters) == 1
    with caplog.at_level(logging.INFO):
        logging.getLogger("aiormq.connection").error("error when creating transport: %r", OSError(111))
        logging.getLogger("aio_pika.robust_connection").warning(
            'Connection attempt to "%s" failed: %s. Reconnecting after %r seconds.', "amqp://h/", "refused", 1.0)
        logging.getLogger("aiormq.connection").warning("Connection %r was blocked by: %r", "c", "low memory")
    assert [r.getMessage() for r in caplog.records] == ["Connection 'c' was blocked by: 'low memory'"]


def test_what_counts_as_a_lost_connection() -> None:
    lost = aiormq.exceptions.AMQPConnectionError("Server connection reset")
    try:
        raise PublishError("1 of 1 publishes failed") from lost
    except PublishError as exc:
        wrapped = exc
    assert connection_lost(wrapped)
    assert connection_lost(aiormq.exceptions.ChannelInvalidStateError())
    assert connection_lost(ConnectionResetError(104, "reset"))
    assert not connection_lost(PublishError("1 of 1 publishes failed: returned"))
    assert not connection_lost(LookupError("project unknown"))


async def test_work_on_a_connection_that_closes_first_is_abandoned() -> None:
    class Connection:
        url = URL("amqp://u:p@rabbit-1:5672/")

        def __init__(self) -> None:
            self.closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    alive, dead = Connection(), Connection()
    assert await unless_connection_lost(asyncio.sleep(0, "acked"), alive) == "acked"
    stuck = asyncio.Event()  # an ack waiting for a writer that has stopped
    waiting = asyncio.ensure_future(unless_connection_lost(stuck.wait(), dead))
    await asyncio.sleep(0.01)
    dead.closing.set_exception(aiormq.exceptions.AMQPConnectionError("reset"))
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(ConnectionLostError):  # already closed: not even started
        await unless_connection_lost(stuck.wait(), dead)
    assert connection_lost(ConnectionLostError("gone"))
