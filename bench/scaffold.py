"""What the benchmarks share: a private RabbitMQ vhost, a fresh store, and waiting for a queue to drain."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
from pymongo import AsyncMongoClient

from services.common.settings import BrokerSettings, StoreSettings
from services.common.storage import EmbeddedServer, Endpoint, Store, client_options


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def private_vhost() -> Iterator[str]:
    """The AMQP URL of a vhost made for this run (guest may use it), deleted afterwards."""
    vhost = f"zeroerrand-bench-{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield BrokerSettings().amqp_url.rstrip("/") + "/" + quote(vhost, safe="")
    finally:
        rabbitmqctl("delete_vhost", vhost)


@asynccontextmanager
async def fresh_store(mongodb_url: str | None, prefix: str) -> AsyncIterator[Store]:
    """A new database on ``mongodb_url``, or on an embedded store started for this run in a
    temporary directory (stopped and removed afterwards)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if mongodb_url is None:
            settings = StoreSettings()
            Path(tmp).chmod(0o755)  # as root, PostgreSQL runs as the postgres user
            server = EmbeddedServer(settings.ferretdb, Path(tmp) / "store", 60, settings.postgres_bin)
            endpoint = await server.start()
        else:
            endpoint = Endpoint(mongodb_url)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            endpoint.uri, tz_aware=True, **client_options(server is not None, endpoint.uri))
        try:
            yield Store(client, f"{prefix}_{secrets.token_hex(3)}", postgres=endpoint.postgres)
        finally:
            await client.close()
            if server is not None:
                await server.stop()


async def drained(url: str, queue_name: str, inflight: Any, poll_s: float = 0.005) -> None:
    """Returns once ``queue_name`` has no message ready and the service's ``inflight`` deliveries
    are done: every message acknowledged, which a service does only once its effect is stored."""
    connection = await aio_pika.connect(url, ssl_context=BrokerSettings(amqp_url=url).ssl_context())
    try:
        channel = await connection.channel()
        while True:
            queue = await channel.declare_queue(queue_name, passive=True)
            if not queue.declaration_result.message_count and not inflight._tasks:
                return
            await asyncio.sleep(poll_s)
    finally:
        await connection.close()
