"""Router throughput benchmark (prints figures; it is not a test and asserts nothing on timing).

What it measures, in one run against a local RabbitMQ:

(a) bare aio-pika relay: N routed-item-sized JSON bodies (real ``RoutedItem`` JSON) are
    pre-loaded into a durable quorum queue A; one consumer takes a message, republishes it to quorum
    queue B (persistent, mandatory), awaits the confirm, acks, and takes the next; a second
    consumer drains B. Timed from the start of consuming A until all N are in B. This is the
    relay the issue names as the baseline.
(a2) pipelined aio-pika relay: the same, but through aio-pika's consume callbacks, so up to
    ``--prefetch`` messages are in flight and their confirms overlap: the strongest plain relay.
(b) the real router (``create_router``): copies of the 26-item example agreement, with unique
    ``agreement_id`` and project code, are pre-loaded on ``zeroerrand.agreements`` while the
    router is not consuming; the router is then started and timed from the moment its consumer
    starts (a hook registered after the router's own startup hooks, so loading/checking the rules
    and declaring the topology are excluded) until every planned item has arrived on a private
    quorum queue bound to ``zeroerrand.items`` with ``#``. Note the router does more broker work per
    item than the relay: it also publishes one ``item.routed`` event per item (fanned out to two
    quorum queues) and one ``service.started`` per agreement; its prefetch counts agreements.
(c) routing decisions per second in one thread, decision record (``Decision`` model) included:
    (1) as in production, with the engine's memo of rule id per distinct fact tuple, same project
    facts on every pass; (1b) same, but a new ``annual_energy_tce`` value on every pass (as when
    each agreement is a different project: the memo key holds every fact); (2) uncached
    (``cache_size=0``: every decision posts to durable-rules); (3) ``route_agreement`` on the
    example agreement (pure function, no I/O), in items/s.

Everything on the broker happens in a fresh vhost created and deleted here with ``rabbitmqctl``,
so the default vhost's queues are never touched.

    .venv/bin/python bench/router_throughput.py --items 3000 [--prefetch 32] [--amqp-base-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import aio_pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.common.agreement_files import load_agreement, to_event  # noqa: E402
from services.common.bus import BrokerPublisher, Outgoing, make_broker  # noqa: E402
from services.common.domain import Request  # noqa: E402
from services.common.rule_engine import RoutingEngine  # noqa: E402
from services.common.settings import BrokerSettings, RouterSettings  # noqa: E402
from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, ITEMS, declare_topology  # noqa: E402
from services.router.active_rules import load_checked  # noqa: E402
from services.router.app import create_router  # noqa: E402
from services.router.routing import route_agreement  # noqa: E402

RULES = ROOT / "rules"
EXAMPLE = ROOT / "examples/agreements/hl-2026-0031-aluminium-frames.yaml"
QUORUM = {"x-queue-type": "quorum"}
TIMEOUT_S = 300.0


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True)


async def drain(connection: aio_pika.abc.AbstractConnection, queue_name: str, n: int) -> asyncio.Event:
    """Consumes ``queue_name`` (no-ack) on its own channel; the event is set once ``n`` arrived."""
    channel = await connection.channel()
    queue = await channel.get_queue(queue_name)
    done, seen = asyncio.Event(), itertools.count(1)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if next(seen) >= n:
            done.set()

    await queue.consume(on_message, no_ack=True)
    return done


async def bench_relay(url: str, bodies: list[bytes], n: int, prefetch: int, pipelined: bool) -> float:
    """``pipelined=False``: the bare relay, each confirm awaited before the next message is taken.
    ``pipelined=True``: aio-pika's consume callbacks, up to ``prefetch`` publishes in flight."""
    connection = await aio_pika.connect(url)
    async with connection:
        setup = await connection.channel(publisher_confirms=True)
        tag = "pipelined" if pipelined else "bare"
        a = await setup.declare_queue(f"bench.relay.{tag}.a", durable=True, arguments=QUORUM)
        b = await setup.declare_queue(f"bench.relay.{tag}.b", durable=True, arguments=QUORUM)
        for start in range(0, n, 500):  # pre-load A, confirmed, 500 confirms in flight at a time
            await asyncio.gather(*(setup.default_exchange.publish(
                aio_pika.Message(bodies[i % len(bodies)], delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 message_id=f"relay-{i}", content_type="application/json"),
                routing_key=a.name) for i in range(start, min(start + 500, n))))
        done = await drain(connection, b.name, n)

        relay = await connection.channel(publisher_confirms=True)
        await relay.set_qos(prefetch_count=prefetch)
        queue_a = await relay.get_queue(a.name)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await relay.default_exchange.publish(
                aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 message_id=message.message_id, content_type=message.content_type),
                routing_key=b.name, mandatory=True)
            await message.ack()

        t0 = time.perf_counter()
        if pipelined:
            await queue_a.consume(on_message)
        else:
            relayed = 0
            async with queue_a.iterator() as messages:
                async for message in messages:
                    await on_message(message)
                    relayed += 1
                    if relayed == n:  # A is empty now: stop waiting for more
                        break
        await asyncio.wait_for(done.wait(), TIMEOUT_S)
        return time.perf_counter() - t0


async def bench_router(url: str, copies: int, prefetch: int, access_log: bool, tag: str = "B") -> float:
    source = load_agreement(EXAMPLE)
    n = copies * len(source.plan)
    events = []
    for i in range(copies):
        project = source.project.model_copy(update={"code": f"{source.project.code}-{tag}{i:05d}"})
        events.append(to_event(source.model_copy(update={"agreement_id": f"{source.agreement_id}-{tag}{i:05d}",
                                                         "project": project})))
    loader = make_broker(url)
    async with loader:
        await loader.connect()
        await declare_topology(loader)
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            sink = await channel.declare_queue("bench.router.sink", durable=True, arguments=QUORUM)
            await sink.bind(ITEMS.name, routing_key="#")
            await BrokerPublisher(loader).publish_all(
                [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, e, e.event_id, e.type) for e in events])
            done = await drain(connection, sink.name, n)

            router = create_router(RouterSettings(rules_dir=RULES, watch_rules=False, prefetch=prefetch),
                                   BrokerSettings(amqp_url=url))
            started: list[float] = []
            # runs after the router's own on_startup hooks (rules loaded, topology declared), right
            # before FastStream starts the broker's subscribers: the start of consuming.
            router.app.on_startup(lambda: started.append(time.perf_counter()))
            # production logs Received/Processed per message at INFO on stdout; FastStream resets
            # that logger's level on start, so it is disabled instead
            logging.getLogger("faststream.access.rabbit").disabled = not access_log
            await router.app.start()
            try:
                await asyncio.wait_for(done.wait(), TIMEOUT_S)
                elapsed = time.perf_counter() - started[0]
            finally:
                await router.app.stop()
            return elapsed


def decisions_per_s(engine: RoutingEngine, facts: dict, seconds: float, fresh_facts: bool = False) -> tuple[int, float]:
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


def bench_decisions(seconds: float) -> list[tuple[str, int, float]]:
    engine = load_checked(RULES)
    agreement = to_event(load_agreement(EXAMPLE))
    facts = dict(agreement.project.facts)
    rows = [("decide, memoised (production)", *decisions_per_s(engine, facts, seconds)),
            ("decide, memoised, new facts/pass", *decisions_per_s(engine, facts, seconds, fresh_facts=True))]
    uncached = RoutingEngine(engine.book, cache_size=0)
    rows.append(("decide, uncached (cache_size=0)", *decisions_per_s(uncached, facts, seconds)))
    if uncached._cache:
        print(f"note: cache_size=0 left {len(uncached._cache)} entries in the memo")
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        result = route_agreement(agreement, engine)
        count += len(result.routed) + len(result.unroutable)
    rows.append(("route_agreement (26-item example)", count, time.perf_counter() - t0))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000, help="items to move through relay and router")
    parser.add_argument("--prefetch", type=int, default=32, help="relay prefetch (items) and router prefetch (agreements)")
    parser.add_argument("--amqp-base-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--decide-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1, help="alternate relay/router rounds; best of each kept")
    parser.add_argument("--access-log", action="store_true", help="keep FastStream's per-message INFO log")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    plan_len = len(load_agreement(EXAMPLE).plan)
    copies = max(1, round(args.items / plan_len))
    n = copies * plan_len  # the relay moves exactly as many items as the router
    engine = load_checked(RULES)
    example = route_agreement(to_event(load_agreement(EXAMPLE)), engine)
    bodies = [r.item.model_dump_json().encode() for r in example.routed]
    print(f"items: {n} ({copies} agreements x {plan_len}); prefetch {args.prefetch}; "
          f"item body {min(map(len, bodies))}-{max(map(len, bodies))} bytes")

    vhost = f"zeroerrand-bench-{secrets.token_hex(4)}"
    user = urlsplit(args.amqp_base_url).username or "guest"
    url = args.amqp_base_url.rstrip("/") + "/" + quote(vhost, safe="")
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        print(f"vhost {vhost}")
        relay_s = piped_s = router_s = float("inf")
        for r in range(args.rounds):  # the broker is shared with whatever else runs: alternate
            relay_r = await bench_relay(url, bodies, n, args.prefetch, pipelined=False)
            print(f"(a) bare relay:      {n} items in {relay_r:.3f} s = {n / relay_r:,.0f} items/s")
            piped_r = await bench_relay(url, bodies, n, args.prefetch, pipelined=True)
            print(f"(a2) pipelined relay: {n} items in {piped_r:.3f} s = {n / piped_r:,.0f} items/s")
            router_r = await bench_router(url, copies, args.prefetch, args.access_log, tag=f"R{r}-")
            print(f"(b) router: {n} items in {router_r:.3f} s = {n / router_r:,.0f} items/s "
                  f"= {relay_r / router_r:.2f} x bare relay, {piped_r / router_r:.2f} x pipelined relay")
            relay_s, piped_s, router_s = min(relay_s, relay_r), min(piped_s, piped_r), min(router_s, router_r)
    finally:
        rabbitmqctl("delete_vhost", vhost)

    rows = bench_decisions(args.decide_seconds)
    for name, count, secs in rows:
        print(f"(c) {name}: {count / secs:,.0f}/s")

    label = f"name (best of {args.rounds} round(s))"
    print(f"\n{label:<36} {'items':>8} {'seconds':>8} {'items/s':>10} {'vs relay':>9}")
    table = [("(a) bare aio-pika relay", n, relay_s, "1.00"),
             ("(a2) pipelined aio-pika relay", n, piped_s, f"{relay_s / piped_s:.2f}"),
             ("(b) router", n, router_s, f"{relay_s / router_s:.2f}")]
    table += [(f"(c) {name}", count, secs, "-") for name, count, secs in rows]
    for name, count, secs, ratio in table:
        print(f"{name:<36} {count:>8} {secs:>8.3f} {count / secs:>10,.0f} {ratio:>9}")
    print(f"\ntargets: router >= 1.0 x bare relay: {relay_s / router_s:.2f} x "
          f"({'met' if router_s <= relay_s else 'NOT met'}); "
          f"against the pipelined relay: {piped_s / router_s:.2f} x")
    for name, count, secs in rows[:3]:
        rate = count / secs
        print(f"         >= 20,000 decisions/s, {name}: {rate:,.0f}/s ({'met' if rate >= 20_000 else 'NOT met'})")


if __name__ == "__main__":
    asyncio.run(main())
