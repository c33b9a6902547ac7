"""Router benchmark: throughput against a relay, signing latency, memory (prints figures; it is not
a test and asserts nothing on timing).

What it measures, in one run against a local RabbitMQ, in a fresh vhost created and deleted here
with ``rabbitmqctl`` (the default vhost's queues are never touched). The agreement is the example
agreement (``hl-2026-0031``, 23 items) with four more plan lines (PL-02 and PL-08 handled, PL-03 and
PL-06 as advice): 27 items, all routable.

(1) Throughput, router ÷ relay, both in this process, rounds alternating:
    (a) pipelined aio-pika relay: N item bodies (the real ``RoutedItem`` JSON of that agreement)
        are pre-loaded into durable quorum queue A; aio-pika consume callbacks (prefetch
        ``--prefetch``) republish each one to quorum queue B (persistent, mandatory, confirmed) and
        ack it after the confirm, so up to ``--prefetch`` confirms overlap; a second consumer
        drains B. Timed from the start of consuming A until all N are in B. One message per item.
    (b) the router (``create_router``): N/27 copies of the agreement (unique agreement id and
        project code) pre-loaded on ``zeroerrand.agreements``, then the router started and timed
        from the moment its consumer starts (a hook after its own startup hooks: rules loaded and
        topology declared) until every item has arrived on a private quorum queue bound to
        ``zeroerrand.items`` with ``#``. One publish per item, but the broker writes each item to four
        quorum queues: its mode queue, the private queue and, by the exchange binding, the
        notifier's and the ledger's event queues (no consumer here; purged between rounds).
    Also the CPU seconds this process and the RabbitMQ node (every ``beam.smp``, from /proc) used
    in the timed window.
(2) Memory: the router as operators run it (``python -m services.cli router``: a child process,
    default settings, prefetch 32, rules watched, log to a file), and a private quorum queue bound to
    ``zeroerrand.items`` with ``#``. Once its consumer is registered, its resident set is read
    (``VmRSS`` of /proc/PID/status); then agreements for ``--rss-items`` items are published (500
    confirms in flight) while it routes, and when the last item has arrived ``VmRSS`` and the peak
    ``VmHWM`` are read again. Meanwhile the mode, unroutable and event queues are purged every
    second, so the broker holds no backlog of four copies of every item (not during (3)). The child's own rate over
    that run (first to last item, CPU of the child per item) is printed too.
(3) Signing latency, on the same child afterwards: from just before publishing ``agreement.signed``
    (persistent, confirmed, as ``zeroerrand sign`` does) to the arrival of the last of its 27 items
    on the private queue. ``--latency-agreements`` agreements one at a time, then as many with
    ``--concurrency`` in flight; p50, p99 (nearest rank) and max. Ten warm-up agreements first.
(4) Routing decisions per second in one thread (no broker): the engine's memo as in production,
    with new facts on every pass, uncached, and ``route_agreement`` on the 27-item agreement.

    .venv/bin/python bench/router_throughput.py [--items 5400] [--rounds 3] [--rss-items 100000]
        [--latency-agreements 200] [--concurrency 10] [--prefetch 32] [--amqp-base-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.common.agreement_files import load_agreement, to_event  # noqa: E402
from services.common.bus import BrokerPublisher, Outgoing, make_broker  # noqa: E402
from services.common.domain import Request  # noqa: E402
from services.common.messages import AgreementSigned, PlannedItem  # noqa: E402
from services.common.settings import BrokerSettings, RouterSettings  # noqa: E402
from services.common.topology import (  # noqa: E402
    AGREEMENT_SIGNED,
    AGREEMENTS,
    EVALUATION_QUEUE,
    ITEMS,
    MODE_QUEUES,
    NOTIFIER_QUEUE,
    ROUTER_QUEUE,
    UNROUTABLE_QUEUE,
    declare_topology,
)
from services.router.active_rules import load_checked  # noqa: E402
from services.router.app import create_router  # noqa: E402
from services.router.routing import route_agreement  # noqa: E402
from services.router.rule_engine import RoutingEngine  # noqa: E402

RULES = ROOT / "rules"
EXAMPLE = ROOT / "examples/agreements/hl-2026-0031-aluminium-frames.yaml"
EXTRA_LINES = (PlannedItem(item="PL-02"), PlannedItem(item="PL-08"),
               PlannedItem(item="PL-03", request=Request.CONSULT), PlannedItem(item="PL-06", request=Request.CONSULT))
QUORUM = {"x-queue-type": "quorum"}
# what nobody consumes in this benchmark: purged between rounds, and every second in the long run
BACKLOG_QUEUES = (NOTIFIER_QUEUE.name, EVALUATION_QUEUE.name, UNROUTABLE_QUEUE.name, *(q.name for q in MODE_QUEUES.values()))
TIMEOUT_S = 600.0
WARM_UP = 10


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True).stdout.strip()


# -- the machine and the processes -----------------------------------------------------------------


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown CPU")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    try:
        broker = rabbitmqctl("version")
    except (OSError, subprocess.CalledProcessError):
        broker = "?"
    return (f"{model}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.1f} GiB RAM; Linux {platform.release()}; "
            f"Python {platform.python_version()}; RabbitMQ {broker} (same machine); "
            f"aio-pika {version('aio-pika')}, aiormq {version('aiormq')}, faststream {version('faststream')}")


def beam_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "beam.smp":
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_cpu() -> float:
    return sum(cpu_seconds(pid) for pid in beam_pids())


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of a process, in kB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


# -- the agreement ------------------------------------------------------------------------------------


def base_agreement(engine: RoutingEngine) -> AgreementSigned:
    source = to_event(load_agreement(EXAMPLE))
    agreement = source.model_copy(update={"plan": source.plan + EXTRA_LINES})
    result = route_agreement(agreement, engine)
    assert len(result.routed) == 27 and not result.unroutable, "the benchmark agreement must route 27 items"
    return agreement


def copies(base: AgreementSigned, count: int, tag: str) -> list[AgreementSigned]:
    out = []
    for i in range(count):
        suffix = f"{tag}{i:05d}"
        project = base.project.model_copy(update={"code": f"{base.project.code}-{suffix}"})
        out.append(base.model_copy(update={"agreement_id": f"{base.agreement_id}-{suffix}", "project": project,
                                           "event_id": f"{base.event_id}-{suffix}"}))
    return out


# -- consumers ----------------------------------------------------------------------------------------


@dataclass
class Sink:
    """A private quorum queue bound to ``zeroerrand.items`` with ``#``, drained without acks: counts
    every item, and per project, so one agreement's last item can be timed."""

    channel: aio_pika.abc.AbstractChannel
    total: int = 0
    expected_total: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    first_at: float | None = None
    last_at: float = 0.0
    waiting: dict[str, tuple[int, asyncio.Future[float]]] = field(default_factory=dict)
    per_agreement: int = 27

    def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        self.first_at = self.first_at or now
        self.last_at = now
        self.total += 1
        if self.expected_total and self.total >= self.expected_total:
            self.done.set()
        project = (message.headers or {}).get("x-zeroerrand-project")
        entry = self.waiting.get(str(project))
        if entry is not None:
            seen, arrived = entry
            seen += 1
            if seen >= self.per_agreement and not arrived.done():
                arrived.set_result(now)
            self.waiting[str(project)] = (seen, arrived)

    def expect(self, total: int) -> None:
        self.expected_total, self.done = total, asyncio.Event()
        if self.total >= total:
            self.done.set()


async def open_sink(connection: aio_pika.abc.AbstractConnection, name: str) -> Sink:
    channel = await connection.channel()
    queue = await channel.declare_queue(name, durable=True, arguments=QUORUM)
    await queue.bind(ITEMS.name, routing_key="#")
    sink = Sink(channel)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        sink.on_message(message)

    await queue.consume(on_message, no_ack=True)
    return sink


async def purge(connection: aio_pika.abc.AbstractConnection, names: Sequence[str]) -> None:
    channel = await connection.channel()
    try:
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            await queue.purge()
    finally:
        await channel.close()


async def publish_agreements(connection: aio_pika.abc.AbstractConnection, agreements: Sequence[AgreementSigned],
                             window: int = 500) -> None:
    """Publishes ``agreement.signed`` for each, persistent and confirmed, ``window`` confirms in flight."""
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(AGREEMENTS.name)
    bodies = [(a.model_dump_json().encode(), a.event_id) for a in agreements]
    for start in range(0, len(bodies), window):
        await asyncio.gather(*(exchange.publish(
            aio_pika.Message(body, message_id=ident, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                             content_type="application/json", type=AGREEMENT_SIGNED),
            routing_key=AGREEMENT_SIGNED, mandatory=True) for body, ident in bodies[start:start + window]))
    await channel.close()


# -- (1) throughput -----------------------------------------------------------------------------------


@dataclass
class Timed:
    seconds: float
    own_cpu: float
    broker_cpu: float


async def bench_relay(url: str, bodies: list[bytes], n: int, prefetch: int, tag: str) -> Timed:
    """The pipelined relay: aio-pika consume callbacks, up to ``prefetch`` publishes in flight."""
    connection = await aio_pika.connect(url, ssl_context=BrokerSettings(amqp_url=url).ssl_context())
    async with connection:
        setup = await connection.channel(publisher_confirms=True)
        a = await setup.declare_queue(f"bench.relay.{tag}.a", durable=True, arguments=QUORUM)
        b = await setup.declare_queue(f"bench.relay.{tag}.b", durable=True, arguments=QUORUM)
        for start in range(0, n, 500):  # pre-load A, confirmed, 500 confirms in flight at a time
            await asyncio.gather(*(setup.default_exchange.publish(
                aio_pika.Message(bodies[i % len(bodies)], delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 message_id=f"relay-{i}", content_type="application/json"),
                routing_key=a.name) for i in range(start, min(start + 500, n))))
        drain = await connection.channel()
        done, seen = asyncio.Event(), itertools.count(1)

        async def on_b(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if next(seen) >= n:
                done.set()

        await (await drain.get_queue(b.name)).consume(on_b, no_ack=True)

        relay = await connection.channel(publisher_confirms=True)
        await relay.set_qos(prefetch_count=prefetch)
        queue_a = await relay.get_queue(a.name)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await relay.default_exchange.publish(
                aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 message_id=message.message_id, content_type=message.content_type),
                routing_key=b.name, mandatory=True)
            await message.ack()

        t0, c0, b0 = time.perf_counter(), time.process_time(), broker_cpu()
        await queue_a.consume(on_message)
        await asyncio.wait_for(done.wait(), TIMEOUT_S)
        timed = Timed(time.perf_counter() - t0, time.process_time() - c0, broker_cpu() - b0)
        await relay.close()
        await drain.close()
        await setup.queue_delete(a.name)
        await setup.queue_delete(b.name)
        return timed


async def bench_router(url: str, agreements: list[AgreementSigned], prefetch: int, tag: str) -> Timed:
    n = len(agreements) * 27
    loader = make_broker(url)
    async with loader:
        await loader.connect()
        await declare_topology(loader)
        connection = await aio_pika.connect(url, ssl_context=BrokerSettings(amqp_url=url).ssl_context())
        async with connection:
            await purge(connection, BACKLOG_QUEUES)
            sink = await open_sink(connection, f"bench.router.sink.{tag}")
            sink.expect(n)
            await BrokerPublisher(loader).publish_all(
                [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, a, a.event_id, a.type) for a in agreements])

            router = create_router(RouterSettings(rules_dir=RULES, watch_rules=False, prefetch=prefetch),
                                   BrokerSettings(amqp_url=url))
            started: list[tuple[float, float, float]] = []
            # runs after the router's own on_startup hooks (rules loaded, topology declared), right
            # before FastStream starts the broker's subscribers: the start of consuming.
            router.app.on_startup(lambda: started.append((time.perf_counter(), time.process_time(), broker_cpu())))
            # production logs Received/Processed per message at INFO on stdout; FastStream resets
            # that logger's level on start, so it is disabled instead (the child process in (2) keeps it)
            logging.getLogger("faststream.access.rabbit").disabled = True
            await router.app.start()
            try:
                await asyncio.wait_for(sink.done.wait(), TIMEOUT_S)
                t0, c0, b0 = started[0]
                timed = Timed(sink.last_at - t0, time.process_time() - c0, broker_cpu() - b0)
            finally:
                await router.app.stop()
            await sink.channel.close()
            channel = await connection.channel()
            await channel.queue_delete(f"bench.router.sink.{tag}")
            await purge(connection, BACKLOG_QUEUES)
            return timed


# -- (2) and (3): the router as a child process -------------------------------------------------------


class RouterProcess:
    """``python -m services.cli router`` against the benchmark's vhost, its output in a file."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.log = tempfile.NamedTemporaryFile(prefix="zeroerrand-bench-router-", suffix=".log", delete=False)
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, connection: aio_pika.abc.AbstractConnection) -> float:
        """Starts the child; returns once its consumer is registered on the router's queue."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "router", cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "ZEROERRAND_AMQP_URL": self.url})
        t0 = time.perf_counter()
        channel = await connection.channel()
        try:
            while time.perf_counter() - t0 < 60:
                if self.process.returncode is not None:
                    raise SystemExit(f"the router child exited ({self.process.returncode}):\n{self.tail()}")
                try:
                    queue = await channel.declare_queue(ROUTER_QUEUE.name, passive=True)
                    if (queue.declaration_result.consumer_count or 0) >= 1:
                        return time.perf_counter() - t0
                except aio_pika.exceptions.ChannelClosed:  # not declared yet
                    channel = await connection.channel()
                await asyncio.sleep(0.05)
        finally:
            await channel.close()
        raise SystemExit(f"the router child did not start consuming within 60 s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-20:])

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)  # the CLI stops the app cleanly on SIGTERM
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


async def purge_every_second(connection: aio_pika.abc.AbstractConnection, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await purge(connection, BACKLOG_QUEUES)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


@dataclass
class MemoryRun:
    start_up_s: float
    rss_ready_kb: int
    rss_after_kb: int
    peak_kb: int
    items: int
    seconds: float
    child_cpu_s: float


@dataclass
class Latencies:
    sequential: list[float]
    concurrent: list[float]


async def memory_run(child: RouterProcess, connection: aio_pika.abc.AbstractConnection, sink: Sink,
                     agreements: list[AgreementSigned], start_up_s: float) -> MemoryRun:
    ready = memory_kb(child.pid)
    cpu0 = cpu_seconds(child.pid)
    n = len(agreements) * 27
    sink.expect(sink.total + n)
    sink.first_at = None
    await publish_agreements(connection, agreements)
    await asyncio.wait_for(sink.done.wait(), TIMEOUT_S)
    after = memory_kb(child.pid)
    assert sink.first_at is not None
    return MemoryRun(start_up_s, ready["VmRSS"], after["VmRSS"], after["VmHWM"], n, sink.last_at - sink.first_at,
                     cpu_seconds(child.pid) - cpu0)


async def signing_latency(connection: aio_pika.abc.AbstractConnection, sink: Sink, agreements: list[AgreementSigned],
                          concurrency: int) -> list[float]:
    """Seconds from just before each publish of agreement.signed to the arrival of its 27th item."""
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(AGREEMENTS.name)
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def sign(agreement: AgreementSigned) -> float:
        body = agreement.model_dump_json().encode()
        async with gate:
            arrived: asyncio.Future[float] = loop.create_future()
            sink.waiting[agreement.project.code] = (0, arrived)
            t0 = time.perf_counter()
            await exchange.publish(aio_pika.Message(body, message_id=agreement.event_id, type=AGREEMENT_SIGNED,
                                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                                    content_type="application/json"),
                                   routing_key=AGREEMENT_SIGNED, mandatory=True)
            at = await asyncio.wait_for(arrived, 60)
            del sink.waiting[agreement.project.code]
            return at - t0

    try:
        return list(await asyncio.gather(*(sign(a) for a in agreements)))
    finally:
        await channel.close()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# -- (4) decisions ------------------------------------------------------------------------------------


def decisions_per_s(engine: RoutingEngine, facts: dict[str, Any], seconds: float,
                    fresh_facts: bool = False) -> tuple[int, float]:
    pairs = [(code, req) for code in engine.book.catalog for req in (Request.HANDLE, Request.CONSULT)]
    count, t0 = 0, time.perf_counter()
    for round_ in itertools.count():
        if fresh_facts:
            facts = {**facts, "annual_energy_tce": 1000 + round_}
        now = datetime.now(UTC)
        for code, req in pairs:
            engine.decide(code, req, facts, now=now)
        count += len(pairs)
        if time.perf_counter() - t0 >= seconds:
            return count, time.perf_counter() - t0
    raise AssertionError("unreachable")


def bench_decisions(engine: RoutingEngine, agreement: AgreementSigned, seconds: float) -> list[tuple[str, int, float]]:
    facts = dict(agreement.project.facts)
    rows = [("decide, memoised (production)", *decisions_per_s(engine, facts, seconds)),
            ("decide, memoised, new facts/pass", *decisions_per_s(engine, facts, seconds, fresh_facts=True))]
    uncached = RoutingEngine(engine.book, cache_size=0)
    rows.append(("decide, uncached (cache_size=0)", *decisions_per_s(uncached, facts, seconds)))
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        result = route_agreement(agreement, engine)
        count += len(result.routed) + len(result.unroutable)
    rows.append(("route_agreement (27-item agreement)", count, time.perf_counter() - t0))
    return rows


# -- the run ------------------------------------------------------------------------------------------


def cpu_per_item(rounds: Sequence[Timed], n: int) -> str:
    own = sum(t.own_cpu for t in rounds) / len(rounds) * 1e6 / n
    broker = sum(t.broker_cpu for t in rounds) / len(rounds) * 1e6 / n
    return f"{own:.0f} + {broker:.0f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=5400, help="items per throughput round (relay and router)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating relay/router rounds")
    parser.add_argument("--prefetch", type=int, default=32,
                        help="relay prefetch (items) and in-process router prefetch (agreements)")
    parser.add_argument("--rss-items", type=int, default=100_000, help="items the child router routes before RSS")
    parser.add_argument("--latency-agreements", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10, help="agreements in flight in the second latency run")
    parser.add_argument("--decide-seconds", type=float, default=1.0)
    parser.add_argument("--amqp-base-url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    print(f"machine: {machine()}")
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()} (anything else running skews the figures)")
    engine = load_checked(RULES)
    base = base_agreement(engine)
    per_round = max(1, round(args.items / 27))
    n = per_round * 27
    bodies = [r.item.model_dump_json().encode() for r in route_agreement(base, engine).routed]
    print(f"agreement: 27 items; item body {min(map(len, bodies))}-{max(map(len, bodies))} bytes")

    vhost = f"zeroerrand-bench-{secrets.token_hex(4)}"
    user = urlsplit(args.amqp_base_url).username or "guest"
    url = args.amqp_base_url.rstrip("/") + "/" + quote(vhost, safe="")
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        print(f"vhost {vhost}\n\n(1) throughput, {n} items per round ({per_round} agreements), prefetch {args.prefetch}")
        relays: list[Timed] = []
        routers: list[Timed] = []
        for r in range(args.rounds):  # the broker and the two cores are shared: alternate
            relay = await bench_relay(url, bodies, n, args.prefetch, tag=f"r{r}")
            router = await bench_router(url, copies(base, per_round, f"T{r}-"), args.prefetch, tag=f"r{r}")
            relays.append(relay)
            routers.append(router)
            for name, t in (("pipelined relay", relay), ("router", router)):
                print(f"  round {r + 1} {name:<16} {n / t.seconds:>7,.0f} items/s  ({t.seconds:.3f} s; CPU per item: "
                      f"this process {t.own_cpu * 1e6 / n:.0f} µs, RabbitMQ {t.broker_cpu * 1e6 / n:.0f} µs)")
            print(f"  round {r + 1} router ÷ relay = {relay.seconds / router.seconds:.2f}")
        best_relay = min(t.seconds for t in relays)
        best_router = min(t.seconds for t in routers)
        ratios = [relay.seconds / router.seconds for relay, router in zip(relays, routers, strict=True)]

        print(f"\n(2) memory: the router as a child process (python -m services.cli router), {args.rss_items} items")
        connection = await aio_pika.connect(url, ssl_context=BrokerSettings(amqp_url=url).ssl_context())
        async with connection:
            loader = make_broker(url)
            async with loader:
                await loader.connect()
                await declare_topology(loader)
            sink = await open_sink(connection, "bench.child.sink")
            child = RouterProcess(url)
            stop_purging = asyncio.Event()
            purging = asyncio.create_task(purge_every_second(connection, stop_purging))
            try:
                start_up = await child.start(connection)
                mem = await memory_run(child, connection, sink,
                                       copies(base, math.ceil(args.rss_items / 27), "M"), start_up)
                print(f"  started and consuming in {mem.start_up_s:.2f} s; VmRSS {mem.rss_ready_kb / 1024:.1f} MiB")
                print(f"  after {mem.items} items: VmRSS {mem.rss_after_kb / 1024:.1f} MiB, "
                      f"peak VmHWM {mem.peak_kb / 1024:.1f} MiB")
                print(f"  its rate meanwhile: {mem.items / mem.seconds:,.0f} items/s (first to last item, while "
                      f"this process published the agreements); child CPU {mem.child_cpu_s * 1e6 / mem.items:.0f} µs/item")

                stop_purging.set()  # a bench chore, not production's load: not while latencies are taken
                await purging
                await purge(connection, BACKLOG_QUEUES)
                print(f"\n(3) signing latency, 27-item agreements, same child, {WARM_UP} warm-up agreements first")
                await signing_latency(connection, sink, copies(base, WARM_UP, "W"), 1)
                latencies = Latencies(
                    await signing_latency(connection, sink, copies(base, args.latency_agreements, "S"), 1),
                    await signing_latency(connection, sink, copies(base, args.latency_agreements, "C"),
                                          args.concurrency))
                after_latency = memory_kb(child.pid)
            finally:
                stop_purging.set()
                await purging
                await child.stop()
            for label, values in (("one at a time", latencies.sequential),
                                  (f"{args.concurrency} at a time", latencies.concurrent)):
                print(f"  {label:<14} n={len(values)}  p50 {ms(percentile(values, 50))}  "
                      f"p99 {ms(percentile(values, 99))}  max {ms(max(values))}")
            print(f"  VmRSS after the latency runs {after_latency['VmRSS'] / 1024:.1f} MiB, "
                  f"VmHWM {after_latency['VmHWM'] / 1024:.1f} MiB")
    finally:
        rabbitmqctl("delete_vhost", vhost)

    print("\n(4) routing decisions (no broker)")
    rows = bench_decisions(engine, base, args.decide_seconds)
    for name, count, secs in rows:
        print(f"  {name:<38} {count / secs:>10,.0f}/s")

    p99_one = percentile(latencies.sequential, 99)
    checks: list[tuple[str, Callable[[], bool], str]] = [
        ("router ÷ pipelined relay ≥ 1.0 (best round of each)", lambda: best_relay / best_router >= 1.0,
         f"{n / best_router:,.0f} ÷ {n / best_relay:,.0f} items/s = {best_relay / best_router:.2f} "
         f"(per round: {', '.join(f'{x:.2f}' for x in ratios)}); CPU per item, mean of the rounds, this process + "
         f"RabbitMQ: relay {cpu_per_item(relays, n)}, router {cpu_per_item(routers, n)}"),
        ("signing p99 ≤ 150 ms, one at a time", lambda: p99_one <= 0.150,
         f"p50 {ms(percentile(latencies.sequential, 50))}, p99 {ms(p99_one)}; "
         f"{args.concurrency} at a time: p50 {ms(percentile(latencies.concurrent, 50))}, "
         f"p99 {ms(percentile(latencies.concurrent, 99))}"),
        (f"router RSS ≤ 120 MB after {mem.items} items", lambda: mem.rss_after_kb * 1024 <= 120e6,
         f"VmRSS {mem.rss_after_kb * 1024 / 1e6:.1f} MB ({mem.rss_after_kb / 1024:.1f} MiB), "
         f"peak {mem.peak_kb * 1024 / 1e6:.1f} MB; at start {mem.rss_ready_kb * 1024 / 1e6:.1f} MB"),
    ]
    print(f"\nload average after: {Path('/proc/loadavg').read_text().strip()}")
    print("summary")
    for goal, met, figures in checks:
        print(f"  {'met    ' if met() else 'NOT met'}  {goal}: {figures}")


if __name__ == "__main__":
    asyncio.run(main())
