"""Ledger request throughput and latency (prints figures; it is not a test and asserts nothing on timing).

In one run, on one freshly started embedded store (FerretDB on PostgreSQL, in a temporary
directory) or on ``--mongodb-url``, and a private RabbitMQ vhost created and deleted here:

(a) baselines measured in the same run: raw ``insert_one`` of request-outcome documents (the first
    write every request makes) into a collection with the same indexes, one after another and 16
    in flight (the stronger of the two is the baseline); and a raw AMQP round trip (publish,
    persistent and confirmed, to a quorum queue and consume it) one at a time;
(b) burst: ``--projects`` projects with ``--lines`` ready lines each are put in the ledger, then the
    evaluation service (``create_evaluation``, as ``zeroerrand evaluation`` runs it) is started and
    ``--burst`` requests spread over those lines (a contact and an acceptance for each line, then
    progress reports) are published at once. Timed until the request queue is empty and nothing is
    in flight (a request is acknowledged only once its outcome is stored); every outcome is then
    checked to be ``applied``. Printed as requests/s and against the baseline of (a);
(c) one request at a time, publish → outcome stored (polled by id every millisecond): p50/p95/p99
    over ``--single`` progress reports, each on a line of the year drawn at random, against the AMQP
    round trip of (a).

    .venv/bin/python bench/ledger_requests.py [--projects 60] [--lines 12] [--burst 2000] [--single 300]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import secrets
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aio_pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_seconds, cpu_split, describe  # noqa: E402
from bench.scaffold import drained, fresh_store, private_vhost  # noqa: E402
from services.common.bus import BrokerPublisher, MemoryPublisher, make_broker, request_out  # noqa: E402
from services.common.messages import AcceptItem, ContactEnterprise, ReportProgress  # noqa: E402
from services.common.settings import BrokerSettings, EvaluationSettings  # noqa: E402
from services.common.storage import Collection, Store  # noqa: E402
from services.common.topology import LEDGER_REQUESTS_QUEUE, declare_topology  # noqa: E402
from services.evaluation.app import create_evaluation, ledger_on, read_rules  # noqa: E402
from services.evaluation.handlers import handle  # noqa: E402
from services.evaluation.ledger import RequestOutcome  # noqa: E402
from services.evaluation.repository import COLLECTIONS, REQUESTS, MongoLedgerRepository  # noqa: E402
from services.evaluation.working_days import WorkingCalendar  # noqa: E402
from tests.unit.ledger_kit import request, routed, started  # noqa: E402

DAY = date(2026, 9, 1)
UNIT = "planning_construction_bureau"


def outcome_doc(n: int) -> dict[str, Any]:
    outcome = RequestOutcome(request_id=f"raw-{n}", request_type="item.report_progress", requested_by=UNIT,
                             fingerprint="f" * 64, status="pending", request={"note": "进展" * 20},
                             recorded_at=datetime.now(UTC))
    return {"_id": outcome.request_id, **outcome.model_dump(mode="json")}


async def raw_inserts(store: Store, count: int, in_flight: int) -> float:
    """insert_one/s of outcome documents, ``in_flight`` at a time."""
    name = f"bench_raw_{in_flight}"
    await store.ensure([Collection(name, REQUESTS.indexes)])
    collection = store.db[name]
    documents = [outcome_doc(n) for n in range(count)]
    gate = asyncio.Semaphore(in_flight)

    async def one(document: dict[str, Any]) -> None:
        async with gate:
            await collection.insert_one(document)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(d) for d in documents))
    return count / (time.perf_counter() - t0)


async def amqp_round_trips(url: str, count: int) -> list[float]:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"bench.rtt.{secrets.token_hex(3)}", durable=True,
                                            arguments={"x-queue-type": "quorum"})
        got: asyncio.Queue[float] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            got.put_nowait(time.perf_counter())

        await queue.consume(on_message)
        samples = []
        for n in range(count):
            t0 = time.perf_counter()
            await channel.default_exchange.publish(
                aio_pika.Message(f"rtt {n}".encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT), queue.name)
            samples.append(await got.get() - t0)
        await queue.delete(if_unused=False, if_empty=False)
        return samples
    finally:
        await connection.close()


async def fill_ledger(store: Store, projects: int, lines: int) -> list[tuple[str, str]]:
    """``projects`` signed projects with ``lines`` ready lines each, straight into the ledger."""
    rules = read_rules(ROOT / "rules")
    book = ledger_on(store, MemoryPublisher(), rules, WorkingCalendar())
    found = []
    for p in range(projects):
        code = f"BENCH-{p:04d}"
        event = started(code, DAY)
        await handle(event, book, event.occurred_at)
        for n in range(lines):
            item = f"X-{n:02d}"
            routed_event = routed(code, item, DAY, unit=UNIT)
            await handle(routed_event, book, routed_event.occurred_at)
            found.append((code, item))
    return found


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=60)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--raw", type=int, default=1000)
    parser.add_argument("--prefetch", type=int, default=EvaluationSettings().prefetch)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--mongodb-url", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("faststream.access.rabbit").disabled = True

    with private_vhost() as url:
        async with fresh_store(args.mongodb_url, "bench") as store:
            await store.ensure(COLLECTIONS)
            sequential = await raw_inserts(store, args.raw, 1)
            pipelined = await raw_inserts(store, args.raw, 16)
            rtt = await amqp_round_trips(url, args.single)
            lines = await fill_ledger(store, args.projects, args.lines)

            service = create_evaluation(EvaluationSettings(prefetch=args.prefetch, sweep=False),
                                        BrokerSettings(amqp_url=url), store=store)
            loader = make_broker(url)
            await loader.connect()
            await declare_topology(loader)
            publisher = BrokerPublisher(loader)
            repo = MongoLedgerRepository(store)
            # every line contacted, then accepted, then progress reports, all published at once; each
            # round in a seeded random order over the year's lines, as units' work arrives
            rng = random.Random(args.seed)
            burst: list[Any] = []
            for model in (ContactEnterprise, AcceptItem):
                burst += [request(model, DAY, UNIT, project_code=c, item_code=i) for c, i in rng.sample(lines, len(lines))]
            n = 0
            while len(burst) < args.burst:
                c, i = rng.choice(lines)
                burst.append(request(ReportProgress, DAY, UNIT, project_code=c, item_code=i, note=f"进展 {n}"))
                n += 1
            await publisher.publish_all([request_out(r) for r in burst])
            await service.app.start()
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            await drained(url, LEDGER_REQUESTS_QUEUE.name, service.inflight)
            burst_s, burst_cpu = time.perf_counter() - t0, cpu_split(cpu0, cpu_seconds())
            outcomes = await repo.outcomes([r.request_id for r in burst])
            statuses = [o.status for o in outcomes]

            single = []
            for k in range(args.single):
                c, i = rng.choice(lines)  # a line of the year, as units' reports arrive
                sent = request(ReportProgress, DAY, UNIT, project_code=c, item_code=i, note=f"单条 {k}")
                t0 = time.perf_counter()
                await publisher.publish_all([request_out(sent)])
                while True:
                    stored = await repo.outcome(sent.request_id)
                    if stored is not None and stored.status != "pending":
                        break
                    await asyncio.sleep(0.001)
                single.append(time.perf_counter() - t0)
                assert stored.status == "applied", stored
            assert service.ledger is not None and isinstance(service.ledger.repo, MongoLedgerRepository)
            repo_stats = service.ledger.repo
            await service.app.stop()
            await loader.stop()
    baseline = max(sequential, pipelined)
    rate = len(burst) / burst_s
    ms = [s * 1000 for s in single]
    rtt_ms = [s * 1000 for s in rtt]
    print(f"machine: {describe()}")
    print(f"store: {'embedded (FerretDB on PostgreSQL)' if args.mongodb_url is None else args.mongodb_url}; "
          f"prefetch {args.prefetch}")
    print(f"(a) raw insert_one: one at a time {sequential:,.0f}/s, 16 in flight {pipelined:,.0f}/s "
          f"(baseline {baseline:,.0f}/s); AMQP round trip p50 {percentile(rtt_ms, .5):.2f} ms, "
          f"p99 {percentile(rtt_ms, .99):.2f} ms")
    flushes = {name: getattr(repo_stats, name).flushes
               for name in ("claim_writes", "entry_writes", "line_writes", "outcome_writes")}
    print(f"(b) burst: {len(burst)} requests over {len(lines)} open lines of {args.projects} projects settled in "
          f"{burst_s:.2f} s = {rate:,.0f} requests/s = {rate / baseline:.2f} x the baseline (goal >= 0.3); "
          f"outcomes: {statuses.count('applied')} applied, {statuses.count('refused')} refused, "
          f"{len(burst) - len(statuses)} missing; store writes per request (batched): "
          + ", ".join(f"{name} {n / (len(burst) + len(single)):.2f}" for name, n in flushes.items())
          + f"; CPU during the burst (the evaluation service runs in this benchmark's process): {burst_cpu}")
    print(f"(c) one at a time, publish -> outcome stored: p50 {percentile(ms, .5):.1f} ms, "
          f"p95 {percentile(ms, .95):.1f} ms, p99 {percentile(ms, .99):.1f} ms, max {max(ms):.1f} ms (n = {len(ms)}); "
          f"p99 / AMQP round trip p99 = {percentile(ms, .99) / percentile(rtt_ms, .99):.1f} x (goal p99 <= 30 ms)")


if __name__ == "__main__":
    asyncio.run(main())
