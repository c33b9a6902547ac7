"""kill -9 and SIGTERM of the services mid-stream: nothing lost, nothing done twice, a prompt stop.

The services run as ``zeroerrand`` processes on a private vhost and a private embedded store. A
reference run of one agreement per kind of project first says what each kind yields when nothing
goes wrong (routed items, ledger lines, notifications); after the faults every project of the
stream must hold exactly that, and every item must have been published under one message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.common.messages import AgreementSigned
from services.common.storage import Endpoint
from services.common.topology import CONSUMER_QUEUES, NOTIFIER_QUEUE, ROUTER_QUEUE, dead_letter_queue
from tests.faults.harness import (
    Outcome,
    ServiceProcess,
    queue_depths,
    ready_counts,
    service_env,
    settled_outcome,
    sign_all,
    wait_drained,
    year_of_agreements,
)

pytestmark = pytest.mark.timeout(600)


class ItemTap:
    """Every item published on ``zeroerrand.items`` (a downstream system's view): message ids by project."""

    def __init__(self) -> None:
        self.ids: dict[str, set[str]] = defaultdict(set)
        self.deliveries = 0

    async def bind(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        exchange = await channel.declare_exchange("zeroerrand.items", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "#")
        await queue.consume(self._on)

    async def _on(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.deliveries += 1
        project = json.loads(message.body)["project_code"]
        self.ids[project].add(str(message.message_id))
        await message.ack()

    @property
    def distinct(self) -> int:
        return sum(len(ids) for ids in self.ids.values())


def kind(agreement: AgreementSigned) -> tuple[str, int]:
    return agreement.project.name, len(agreement.plan)


def one_of_each_kind(agreements: Sequence[AgreementSigned]) -> list[AgreementSigned]:
    seen: dict[tuple[str, int], AgreementSigned] = {}
    for agreement in agreements:
        seen.setdefault(kind(agreement), agreement)
    return list(seen.values())


class Stream:
    """The services of one test, a reference run, and the judge of the faulted stream."""

    def __init__(self, amqp_url: str, data_dir: Path, tap: ItemTap, **env_update: str) -> None:
        self.amqp_url = amqp_url
        self.data_dir = data_dir
        self.tap = tap
        self.database = "zeroerrand_faults"
        env = service_env(amqp_url, data_dir, self.database) | env_update
        self.services = {name: ServiceProcess(name, env, data_dir / f"{name}.log", amqp_url)
                         for name in ("router", "notifier", "evaluation", "up")}
        self.expected: dict[tuple[str, int], tuple[int, int, int]] = {}  # kind -> items, ledger lines, notifications
        self.references: dict[tuple[str, int], str] = {}  # kind -> the reference project's code

    @property
    def store_uri(self) -> str:
        """The embedded store the services use (whoever started it), from its address file."""
        return str(json.loads((self.data_dir / "store" / "address.json").read_text())["uri"])

    def running(self) -> list[ServiceProcess]:
        return [s for s in self.services.values() if s.process is not None]

    async def start(self, *names: str) -> None:
        for name in names:
            await self.services[name].start()

    async def reference(self) -> None:
        """Signs one agreement of each kind with nothing going wrong: what each kind yields."""
        samples = one_of_each_kind(year_of_agreements(30, tag="R"))
        await sign_all(self.amqp_url, samples)
        await wait_drained(self.amqp_url, self.running())
        found = await settled_outcome(self.store_uri, self.database)
        for agreement in samples:
            code = agreement.project.code
            self.references[kind(agreement)] = code
            self.expected[kind(agreement)] = (len(self.tap.ids[code]), found.ledger_items[code],
                                              found.notifications[code])
        assert all(items and lines and notes for items, lines, notes in self.expected.values()), self.expected
        print(f"reference, per kind of project (items, ledger lines, notifications): {self.expected}")

    async def wait_items(self, count: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.tap.distinct < count:
            for service in self.running():
                service.check_running()
            if time.monotonic() > deadline:
                pytest.fail(f"only {self.tap.distinct} of {count} items routed in {timeout_s:.0f} s")
            await asyncio.sleep(0.05)

    async def difference(self, code: str, agreements: Sequence[AgreementSigned]) -> str:
        """What a wrong project's notifications hold that its kind's reference does not (or lacks)."""
        from pymongo import AsyncMongoClient

        of_kind = kind(next(a for a in agreements if a.project.code == code))
        reference = self.references[of_kind]
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.store_uri, tz_aware=True)
        try:
            found = {}
            for project in (code, reference):
                found[project] = Counter(
                    (d["event_type"], d["recipient"].split(":")[0], d["channel"], d["status"]) async for d in
                    client[self.database]["notifications"].find({"project_code": project}))
        finally:
            await client.close()
        return (f"notifications of {code} beyond its reference {reference}: {found[code] - found[reference]}; "
                f"missing: {found[reference] - found[code]}")

    async def judge(self, agreements: Sequence[AgreementSigned]) -> Outcome:
        """Everything drained: every project of the stream holds exactly what its kind yields."""
        drained = await wait_drained(self.amqp_url, self.running())
        found = await settled_outcome(self.store_uri, self.database)
        wrong = []
        for agreement in agreements:
            code = agreement.project.code
            items, lines, notes = self.expected[kind(agreement)]
            got = (len(self.tap.ids[code]), found.ledger_items[code], found.notifications[code])
            if got != (items, lines, notes):
                wrong.append(f"{code}: items, ledger lines, notifications {got} instead of {(items, lines, notes)}")
        depths = queue_depths(self.amqp_url)
        parked = {q: depths[dead_letter_queue(q).name][0] for q in CONSUMER_QUEUES
                  if depths.get(dead_letter_queue(q).name, (0, 0))[0]}
        print(f"drained {drained:.1f} s after the last fault: {found.summary()}; {self.tap.distinct:,} distinct items "
              f"in {self.tap.deliveries:,} deliveries ({self.tap.deliveries - self.tap.distinct} repeated under the "
              f"same message id); parked: {parked or 'none'}")
        assert not wrong, f"{len(wrong)} projects wrong, e.g. {wrong[:5]}; " + await self.difference(
            wrong[0].split(":")[0], agreements)
        assert found.projects == len(agreements) + len(self.expected)
        assert not parked, parked
        return found

    def stop_all(self) -> None:
        for service in self.running():
            service.kill9()


@pytest.fixture
async def stream(amqp_url: str, amqp: aio_pika.abc.AbstractRobustConnection, clean_queues: None, data_dir: Path,
                 services_store: Endpoint) -> Any:
    tap = ItemTap()
    await tap.bind(amqp)
    run = Stream(amqp_url, data_dir, tap)
    yield run
    run.stop_all()


async def test_kill_9_of_each_service_mid_stream_loses_nothing_and_does_nothing_twice(stream: Stream) -> None:
    agreements = year_of_agreements(120, tag="K")
    await stream.start("router", "notifier", "evaluation")
    await stream.reference()
    total = sum(stream.expected[kind(a)][0] for a in agreements) + sum(i for i, _, _ in stream.expected.values())

    await sign_all(stream.amqp_url, agreements)
    await stream.wait_items(total // 3)
    stream.services["router"].kill9()
    killed_at = stream.tap.distinct
    await stream.services["router"].start()
    await stream.wait_items(total * 2 // 3)
    stream.services["notifier"].kill9()
    stream.services["evaluation"].kill9()
    backlog = await ready_counts(stream.amqp_url)
    await stream.start("notifier", "evaluation")
    print(f"router killed at {killed_at:,} of {total:,} items; notifier and evaluation killed at "
          f"{stream.tap.distinct:,} with {backlog[NOTIFIER_QUEUE.name]:,} events waiting for the notifier")
    await stream.wait_items(total)
    await stream.judge(agreements)


async def test_sigterm_under_a_backlog_stops_each_service_and_up_within_10_s_and_a_restart_finishes_it(
        stream: Stream) -> None:
    first, second = year_of_agreements(150, tag="T"), year_of_agreements(100, seed=7, tag="U")
    every = [*first, *second]
    await stream.start("router", "notifier", "evaluation")
    await stream.reference()
    for name in ("notifier", "evaluation"):
        stream.services[name].terminate()
    await sign_all(stream.amqp_url, first)  # routed now; their events wait for the notifier and the ledger
    await stream.wait_items(sum(stream.expected[kind(a)][0] for a in first) + sum(i for i, _, _ in stream.expected.values()))
    stream.services["router"].terminate()
    await sign_all(stream.amqp_url, second)  # these wait for the router
    backlog = await ready_counts(stream.amqp_url)
    print("backlog before the stops: " + ", ".join(f"{q.removeprefix('zeroerrand.')} {n:,}" for q, n in backlog.items()))
    assert backlog[ROUTER_QUEUE.name] == len(second) and backlog[NOTIFIER_QUEUE.name] > 2000

    stops = {}
    for name in ("router", "notifier", "evaluation", "up"):
        await stream.services[name].start()
        await asyncio.sleep(3)  # busy with the backlog
        waiting = sum((await ready_counts(stream.amqp_url)).values())
        stops[name] = (stream.services[name].terminate(), waiting)
    print("SIGTERM to exit under the backlog: " + ", ".join(
        f"{name} {seconds:.1f} s ({waiting:,} messages waiting)" for name, (seconds, waiting) in stops.items()))
    assert all(seconds <= 10 for seconds, _ in stops.values()), stops

    await stream.start("router", "notifier", "evaluation")
    await stream.wait_items(sum(stream.expected[kind(a)][0] for a in every) + sum(i for i, _, _ in stream.expected.values()))
    await stream.judge(every)


@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """An HTTP endpoint that accepts connections and never answers: every webhook attempt hangs
    until the notifier's timeout."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        for writer in held:
            writer.close()
        server.close()


def store_processes(data_dir: Path) -> list[str]:
    """Processes (the supervisor, PostgreSQL, FerretDB) still serving ``data_dir``'s store."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(data_dir) in cmdline:
                    found.append(f"{proc.name}: {cmdline[:120]}")
    return found


async def test_sigterm_to_up_with_its_own_store_and_hanging_webhooks_exits_within_10_s(
        amqp_url: str, amqp: aio_pika.abc.AbstractRobustConnection, clean_queues: None, data_dir: Path,
        rules_copy: Path) -> None:
    async with black_hole() as hook:
        directory = rules_copy / "directory.yaml"
        directory.write_text(directory.read_text(encoding="utf-8").replace(
            "channels: [inbox]", f"channels: [inbox, {{webhook: {hook}}}]"), encoding="utf-8")
        tap = ItemTap()
        await tap.bind(amqp)
        stream = Stream(amqp_url, data_dir, tap, ZEROERRAND_NOTIFIER_RULES_DIR=str(rules_copy))
        try:
            agreements = year_of_agreements(150, tag="W")
            up = stream.services["up"]
            await up.start()  # it starts the embedded store itself
            await stream.reference()
            await sign_all(stream.amqp_url, agreements)
            total = sum(stream.expected[kind(a)][0] for a in agreements) + sum(i for i, _, _ in stream.expected.values())
            await stream.wait_items(total // 2)
            await asyncio.sleep(2)
            waiting = sum((await ready_counts(stream.amqp_url)).values())
            seconds = up.terminate()
            left = store_processes(data_dir)
            print(f"zeroerrand up (its own store, webhooks hanging): exit {seconds:.1f} s after SIGTERM "
                  f"with {waiting:,} messages waiting; store processes left: {left or 'none'}")
            assert seconds <= 10 and not left
            assert "Traceback" not in up.log_text(), up.tail(80)

            await up.start()
            await stream.wait_items(total)
            await stream.judge(agreements)
        finally:
            stream.stop_all()
