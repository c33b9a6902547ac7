"""kill -9 of the embedded store's PostgreSQL, and of its FerretDB, under a stream of agreements:
the services give up on their store with a non-zero status (a supervisor restarts them), nothing
is parked meanwhile, and once restarted every project is complete, nothing lost or stored twice.

The services run as ``zeroerrand up`` does (``tests/faults/outage_harness.py``: a child process with
its own data directory, so its own embedded store, on a private vhost). The embedded store stops
as a whole when either of its servers dies (``services/common/embedded_store.py``): the failures
the services see until they notice (FerretDB's "write failed: broken pipe" and "failed to connect"
while its PostgreSQL is gone, PyMongo's AutoReconnect and ServerSelectionTimeoutError once
FerretDB is) are outages, waited out in the process, never counted as delivery attempts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.common.storage import EXIT_STORE_LOST
from services.common.topology import CONSUMER_QUEUES, dead_letter_queue
from tests.faults.outage_harness import Client, Services, settle, wait_for_consumers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

AGREEMENTS = 50
STOPS_WITHIN_S = 10.0
# longer than five deliveries take to fail while each waits 2 s for the store (serverSelectionTimeoutMS)
# with the requeue back-off between them, about 13 s: requeued, a message would be parked meanwhile
CUT_S = 20.0


def store_server(data: Path, name: str) -> int:
    """The pid of the embedded store's ``postgres`` (its postmaster) or ``ferretdb``."""
    import json

    supervisor = int(json.loads((data / "store" / "address.json").read_text())["pid"])
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    for child in children:
        if Path(f"/proc/{child}/comm").read_text().strip().startswith(name):
            return int(child)
    pytest.fail(f"no {name} among the embedded store's processes {children}")


async def parked_counts(url: str) -> dict[str, int]:
    """Messages on each dead-letter queue that has any."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        found = {}
        for queue in CONSUMER_QUEUES:
            declared = await channel.declare_queue(dead_letter_queue(queue).name, passive=True)
            if declared.declaration_result.message_count:
                found[declared.name] = int(declared.declaration_result.message_count)
        return found
    finally:
        await connection.close()


async def exit_status(services: Services, timeout_s: float) -> tuple[int | None, float]:
    """The services' exit status once they stop by themselves, and how long that took."""
    assert services.process is not None
    started = time.monotonic()
    try:
        code = await asyncio.to_thread(services.process.wait, timeout_s)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - started


async def restart(url: str, services: Services, logs: list[str]) -> int:
    """Starts the services again as a supervisor would (once more if a start fails: a PostgreSQL
    killed -9 may still be unwinding); returns how many starts it took."""
    for attempt in range(1, 4):
        logs.append(services.log())
        services.start()
        try:
            await wait_for_consumers(url, services, timeout=90)
            return attempt
        except pytest.fail.Exception:
            if services.alive() or attempt == 3:
                raise
            await asyncio.sleep(2)
    raise AssertionError("unreachable")


async def kill_a_store_server_under_a_stream(url: str, server: str) -> None:
    client = Client(url)
    await client.open()
    services = Services(url, f"outage-{server}")
    logs: list[str] = []
    services.start()
    try:
        await wait_for_consumers(url, services, timeout=90)
        while "console listening on" not in services.log():  # every service started (the console last)
            assert services.alive(), services.log()[-4000:]
            await asyncio.sleep(0.1)
        stream = asyncio.create_task(client.stream(AGREEMENTS, server[:2].upper(), pause_s=0.05))
        while len(client.items.messages) < 5 * 23:  # mid-stream: the services busy with a backlog
            await asyncio.sleep(0.05)
        signed_before = len(client.signed)
        os.kill(store_server(services.data, server), signal.SIGKILL)
        code, stopped_in = await exit_status(services, 30)
        starts = await restart(url, services, logs)
        await stream
        outcome = await settle(client, services, AGREEMENTS, timeout=240)
        parked = await parked_counts(url)
    finally:
        await client.close()
        exit_on_sigterm = services.stop()
    log = "\n".join([*logs, services.log()])
    (services.data / "every-start.log").write_text(log)  # kept with the data directory if the test fails
    parked_lines = [line for line in log.splitlines() if "parked message" in line]
    held = [line for line in log.splitlines() if "unreachable" in line and "held" in line]
    print(f"\nkill -9 of {server} with {signed_before} of {AGREEMENTS} agreements signed: zeroerrand up exited "
          f"{code} after {stopped_in:.1f} s; back after {starts} start(s)")
    print(outcome.summary())
    print(f"parked: {parked or 'none'}; log lines about parking: {len(parked_lines)}; about holding: {len(held)}; "
          f"routed items published twice under one id (the router redoing an agreement): {outcome.items_duplicates}; "
          f"exit status on SIGTERM at the end: {exit_on_sigterm}")
    print(*held[:3], *parked_lines[:5], sep="\n  ")
    assert code == EXIT_STORE_LOST, f"zeroerrand up exited {code} after its store stopped:\n{log[-4000:]}"
    assert stopped_in <= STOPS_WITHIN_S
    assert parked == {} and parked_lines == [], "\n".join(parked_lines[:20])
    assert outcome.items_distinct == outcome.items_expected == AGREEMENTS * 23
    assert outcome.ledger_lines == outcome.items_expected and outcome.ledger_keys_missing == 0
    assert outcome.notifications_missing == 0 and outcome.notifications_unexpected == 0
    assert outcome.notifications_stored == outcome.notifications_expected > 0
    assert "Traceback" not in log, log[-4000:]
    assert exit_on_sigterm == 0  # a plain SIGTERM still exits 0
    services.remove()


async def test_kill_9_of_postgresql_under_a_stream_parks_nothing_and_loses_nothing(amqp_url: str,
                                                                                 clean_queues: None) -> None:
    await kill_a_store_server_under_a_stream(amqp_url, "postgres")


async def test_kill_9_of_ferretdb_under_a_stream_parks_nothing_and_loses_nothing(amqp_url: str,
                                                                               clean_queues: None) -> None:
    await kill_a_store_server_under_a_stream(amqp_url, "ferretdb")


class StoreLink:
    """A TCP port in front of the store's socket, which the test cuts (every connection reset, new
    ones refused) and restores: MongoDB unreachable for a while (a network fault, a restart),
    while the services keep running."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()  # reset, as a lost network or a killed server leaves it
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            store_reader, store_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, store_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                sink.transport.abort()
                self._open.discard(sink)

        await asyncio.gather(pipe(reader, store_writer), pipe(store_reader, writer))


async def test_mongodb_unreachable_for_20_s_under_a_stream_is_waited_out_without_a_restart(
        amqp_url: str, clean_queues: None, data_dir: Path, services_store: Any) -> None:
    from urllib.parse import unquote

    link = StoreLink(unquote(services_store.uri.removeprefix("mongodb://")))
    await link.up()
    client = Client(url := amqp_url)
    await client.open()
    services = Services(url, "outage-link")
    services.remove()  # the test's store instead (``services_store``), reached through the link
    services.data, services.log_path = data_dir, data_dir / "services.log"
    services.env["MONGODB_URL"] = f"mongodb://127.0.0.1:{link.port}/?serverSelectionTimeoutMS=2000"
    services.env["ZEROERRAND_DATA_DIR"] = str(data_dir)
    services.start()
    try:
        await wait_for_consumers(url, services, timeout=90)
        while "console listening on" not in services.log():  # every service started (the console last)
            assert services.alive(), services.log()[-4000:]
            await asyncio.sleep(0.1)
        stream = asyncio.create_task(client.stream(AGREEMENTS, "LI", pause_s=0.05))
        while len(client.items.messages) < 5 * 23:
            await asyncio.sleep(0.05)
        await link.cut()
        await asyncio.sleep(CUT_S)
        assert services.alive(), services.log()[-4000:]
        await link.up()
        await stream
        outcome = await settle(client, services, AGREEMENTS, timeout=240)
        parked = await parked_counts(url)
    finally:
        await client.close()
        exit_on_sigterm = services.stop()
    log = services.log()
    parked_lines = [line for line in log.splitlines() if "parked message" in line]
    held = [line for line in log.splitlines() if "unreachable" in line or "no delivery held" in line]
    print(f"\nMongoDB (the store behind a TCP link) cut for {CUT_S:g} s mid-stream: {outcome.summary()}")
    print(f"parked: {parked or 'none'}; log lines about parking: {len(parked_lines)}; exit status on SIGTERM: "
          f"{exit_on_sigterm}")
    print(*held[:4], *parked_lines[:5], sep="\n  ")
    assert parked == {} and parked_lines == [], "\n".join(parked_lines[:20])
    assert outcome.items_distinct == outcome.items_expected == AGREEMENTS * 23
    assert outcome.ledger_lines == outcome.items_expected and outcome.ledger_keys_missing == 0
    assert outcome.notifications_missing == 0 and outcome.notifications_unexpected == 0
    assert exit_on_sigterm == 0

