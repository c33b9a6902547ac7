"""Notifier store throughput (prints figures; it is not a test and asserts nothing on timing).

In one run, on one freshly started embedded store (FerretDB on PostgreSQL, in a temporary
directory) or on ``--mongodb-url``, and a private RabbitMQ vhost created and deleted here:

(a) raw ``insert_one`` of the very notification documents the notifier will store for these events
    (same shape and size), into a collection with the same indexes, one after another: the rate
    the server itself sustains for such documents;
(b) the notifier service: N routed items (real ones of the example agreement, published once on
    ``zeroerrand.items`` as the router does, reaching the notifier's queue by the exchange binding)
    pre-loaded on its queue, then the service started and timed until every notification they
    yield is stored. Printed as events/s and notifications/s, and events/s against (a).

    .venv/bin/python bench/notifier_throughput.py [--events 300] [--prefetch 16] [--mongodb-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scaffold import drained, fresh_store, private_vhost  # noqa: E402
from services.common.agreement_files import load_agreement, to_event  # noqa: E402
from services.common.bus import BrokerPublisher, make_broker  # noqa: E402
from services.common.rule_files import load_rulebook  # noqa: E402
from services.common.settings import BrokerSettings, NotifierSettings  # noqa: E402
from services.common.storage import Collection, Store  # noqa: E402
from services.common.topology import NOTIFIER_QUEUE, declare_topology  # noqa: E402
from services.notifier.app import create_notifier  # noqa: E402
from services.notifier.compose import Composer, ItemView, ProjectView  # noqa: E402
from services.notifier.plan import load_plan  # noqa: E402
from services.notifier.repository import COLLECTIONS, NOTIFICATIONS  # noqa: E402
from services.router.active_rules import load_checked  # noqa: E402
from services.router.handlers import item_out  # noqa: E402
from services.router.routing import route_agreement  # noqa: E402

EXAMPLE = ROOT / "examples" / "agreements" / "hl-2026-0031-aluminium-frames.yaml"


def routed_events(count: int) -> list[Any]:
    engine = load_checked(ROOT / "rules")
    source = load_agreement(EXAMPLE)
    events: list[Any] = []
    copy = 0
    while len(events) < count:
        project = source.project.model_copy(update={"code": f"{source.project.code}-N{copy:05d}"})
        agreement = to_event(source.model_copy(update={"agreement_id": f"{source.agreement_id}-N{copy:05d}",
                                                       "project": project}))
        events += list(route_agreement(agreement, engine).routed)
        copy += 1
    return events[:count]


def notification_documents(events: list[Any], count: int) -> list[dict[str, Any]]:
    """The very documents the notifier stores for these events (same shape, size and indexes)."""
    book = load_rulebook(ROOT / "rules")
    composer = Composer(load_plan(ROOT / "rules", book.units), book.units)
    documents: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for event in events:
        item = event.item
        project = ProjectView(item.project_code, item.project_name, item.enterprise, item.recruiting_unit)
        view = ItemView(item.project_code, item.item_code, item.item_name, item.responsible_unit)
        documents += composer.compose(event, project, view, now)
        if len(documents) >= count:
            break
    return [{**d, "_id": f"raw-{d['_id']}"} for d in documents[:count]]


async def raw_insert_one(store: Store, documents: list[dict[str, Any]]) -> float:
    # the same indexes as the notifications collection, the embedded store's GIN companions included
    await store.ensure([Collection("bench_raw", NOTIFICATIONS.indexes)])
    collection = store.db["bench_raw"]
    t0 = time.perf_counter()
    for document in documents:
        await collection.insert_one(document)
    return time.perf_counter() - t0


async def notifier_run(store: Store, url: str, events: list[Any], prefetch: int) -> tuple[float, int]:
    loader = make_broker(url)
    async with loader:
        await loader.connect()
        await declare_topology(loader)
        # as the router sends them: each routed item once, on zeroerrand.items (to the events by the binding)
        await BrokerPublisher(loader).publish_all([item_out(e.item) for e in events])
    expected = len(notification_documents(events, 10**9))  # what the notifier's own composer makes of them
    notifier = create_notifier(NotifierSettings(prefetch=prefetch, webhook_secret="bench-secret"), BrokerSettings(amqp_url=url),
                               store=store)
    logging.getLogger("faststream.access.rabbit").disabled = True
    started: list[float] = []
    notifier.app.on_startup(lambda: started.append(time.perf_counter()))
    await notifier.app.start()
    # done when the queue has nothing ready and nothing is in flight: every event acknowledged,
    # which the notifier does only once its notifications are stored. (Not by counting documents:
    # FerretDB counts by reading the whole collection, and polling that would be most of its work.)
    try:
        await drained(url, NOTIFIER_QUEUE.name, notifier.inflight, poll_s=0.01)
        elapsed = time.perf_counter() - started[0]
    finally:
        await notifier.app.stop()
    stored = await store.db[NOTIFICATIONS.name].count_documents({})
    assert stored == expected, f"{stored} notifications stored, {expected} expected"
    return elapsed, expected


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--raw", type=int, default=300, help="notification documents for the insert_one baseline")
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--mongodb-url", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with private_vhost() as url:
        async with fresh_store(args.mongodb_url, "bench") as store:
            await store.ensure(COLLECTIONS)
            events = routed_events(args.events)
            raw_s = await raw_insert_one(store, notification_documents(events, args.raw))
            run_s, notifications = await notifier_run(store, url, events, args.prefetch)
    raw_rate = args.raw / raw_s
    event_rate = len(events) / run_s
    print(f"store: {'embedded (FerretDB on PostgreSQL)' if args.mongodb_url is None else args.mongodb_url}")
    print(f"(a) raw insert_one:   {args.raw} documents in {raw_s:.2f} s = {raw_rate:,.1f} docs/s")
    print(f"(b) notifier:         {len(events)} events -> {notifications} notifications in {run_s:.2f} s = "
          f"{event_rate:,.1f} events/s ({notifications / run_s:,.1f} notifications/s)")
    print(f"    events/s vs raw insert_one/s: {event_rate / raw_rate:.2f} x (goal >= 1.0)")


if __name__ == "__main__":
    asyncio.run(main())
