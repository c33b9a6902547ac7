"""Integration fixtures on the real RabbitMQ: a private vhost per test session, taps, a live router.

The vhost is created with ``rabbitmqctl`` on this machine (the tests never touch the default
vhost's queues) and deleted afterwards. If RabbitMQ cannot be reached, every test here fails
with the reason: none is skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from services.common.settings import BrokerSettings, RouterSettings, StoreSettings
from services.common.storage import EmbeddedServer, Endpoint, Store, StoreUnavailable, client_options
from services.common.topology import CONSUMER_QUEUES, dead_letter_queue
from services.router.app import Router, create_router


def _rabbitmqctl(*args: str) -> str:
    """Runs ``rabbitmqctl`` and returns what it printed; the test fails (never skips) if it cannot."""
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail("rabbitmqctl not found: the integration tests create a private vhost with it")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed (is RabbitMQ running?): {done.stderr or done.stdout}")
    return done.stdout


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    base = urlsplit(BrokerSettings().amqp_url)
    vhost = f"zeroerrand-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, base.username or "guest", ".*", ".*", ".*")
    try:
        yield urlunsplit((base.scheme, base.netloc, "/" + quote(vhost, safe=""), "", ""))
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
async def amqp(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    try:
        connection = await aio_pika.connect_robust(amqp_url, timeout=10)
    except Exception as exc:  # pragma: no cover - the loud failure the README promises
        pytest.fail(f"RabbitMQ unreachable at {amqp_url}: {exc!r}")
    async with connection:
        yield connection


@pytest.fixture
async def clean_queues(amqp: aio_pika.abc.AbstractRobustConnection) -> None:
    """Empties every zero-errand queue of the test vhost, so counts in a test are exact."""
    channel = await amqp.channel()
    for queue in CONSUMER_QUEUES:
        for name in (queue.name, dead_letter_queue(queue).name):
            try:
                declared = await channel.get_queue(name, ensure=True)
            except aio_pika.exceptions.ChannelClosed:
                channel = await amqp.channel()
                continue
            await declared.purge()
    await channel.close()


class Tap:
    """A private queue bound to an exchange: what a downstream subscriber would receive."""

    def __init__(self) -> None:
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []
        self._changed = asyncio.Event()

    async def _on(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        self.messages.append(message)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 15.0,
                       where: Any = lambda m: True) -> list[aio_pika.abc.AbstractIncomingMessage]:
        async def enough() -> list[aio_pika.abc.AbstractIncomingMessage]:
            while True:
                found = [m for m in self.messages if where(m)]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            found = [m for m in self.messages if where(m)]
            pytest.fail(f"expected {count} messages, got {len(found)} within {timeout}s: "
                        f"{[(m.type, m.routing_key) for m in found]}")


@pytest.fixture
async def tap(amqp: aio_pika.abc.AbstractRobustConnection) -> Any:
    channel = await amqp.channel()

    async def bind(exchange: str, routing_key: str = "#") -> Tap:
        result = Tap()
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC
                                            if exchange != "zeroerrand.dead" else aio_pika.ExchangeType.DIRECT,
                                            durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(ex, routing_key)
        await queue.consume(result._on)
        return result

    yield bind
    await channel.close()


async def queue_depth(amqp: aio_pika.abc.AbstractRobustConnection, name: str) -> int:
    channel = await amqp.channel()
    try:
        declared = await channel.declare_queue(name, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


@pytest.fixture
async def router(amqp_url: str, rules_copy: Path, clean_queues: None) -> AsyncIterator[Router]:
    service = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=True, reload_debounce_ms=50),
                            BrokerSettings(amqp_url=amqp_url))
    await service.app.start()
    yield service
    await service.app.stop()


# -- the store: the embedded server for the session, and MONGODB_URL too when it is set ---------


def store_directory(prefix: str) -> Path:
    """A fresh temporary directory for an embedded store's data: as root, PostgreSQL runs as the
    postgres user, which must be able to enter it."""
    data = Path(tempfile.mkdtemp(prefix=prefix))
    data.chmod(0o755)
    return data


def embedded_server(store: Path) -> EmbeddedServer:
    """The embedded store of ``store`` (its data directory), as the services would start it."""
    settings = StoreSettings()
    return EmbeddedServer(settings.ferretdb, store, settings.embedded_start_timeout_s, settings.postgres_bin)


async def reach_store(opening: Awaitable[Endpoint]) -> Endpoint:
    """The store's address, or the test fails saying why it cannot start (never a skip)."""
    try:
        return await opening
    except StoreUnavailable as exc:
        pytest.fail(f"the embedded store cannot start (run scripts/setup.sh): {exc}")


@pytest.fixture(scope="session")
async def embedded_endpoint() -> AsyncIterator[Endpoint]:
    """One embedded store (FerretDB on PostgreSQL) for the session, on a fresh data directory."""
    data = store_directory("zeroerrand-test-store-")
    server = embedded_server(data / "store")
    endpoint = await reach_store(server.start())
    yield endpoint
    await server.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_uri(embedded_endpoint: Endpoint) -> str:
    return embedded_endpoint.uri


def _store_targets() -> list[str]:
    return ["embedded", "mongodb"] if StoreSettings().mongodb_url else ["embedded"]


@pytest.fixture(params=_store_targets())
async def store(request: pytest.FixtureRequest, embedded_endpoint: Endpoint) -> AsyncIterator[Store]:
    """A fresh database for one test, on every store this run can reach (never skipped)."""
    embedded = request.param == "embedded"
    uri = embedded_endpoint.uri if embedded else str(StoreSettings().mongodb_url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=10_000, tz_aware=True,
                                                                **client_options(embedded, uri))
    database = f"zeroerrand_test_{uuid.uuid4().hex[:10]}"
    instance = Store(client, database, postgres=embedded_endpoint.postgres if embedded else None)
    await client.admin.command("ping")
    yield instance
    if request.param == "mongodb":
        await client.drop_database(database)
    await instance.close()
