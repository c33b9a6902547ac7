"""Does the store slow down as it fills? (prints figures; not a test, asserts nothing on timing)

Inserts N notification documents (the very documents the notifier composes for real routed items
of the example agreement, one project per agreement copy) through the storage adapter
(``Store.insert_new``, unordered batches, as the notifier's group commit does) into a freshly
started embedded store (FerretDB on PostgreSQL, in a temporary directory), or ``--mongodb-url``.
After every ``--step`` documents it prints the step's insert rate and the latency of the indexed
read ``zeroerrand notifications list --project`` makes (``NotifierRepository.find``; median of 20
look-ups of different projects), with the plan the server chose for it.

Goals (issue 8): the last step at >= 0.8x the first; the query under 20 ms at 50,000 documents.

    .venv/bin/python bench/store_growth.py [--documents 50000] [--step 5000] [--batch 50] [--mongodb-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402
from notifier_throughput import notification_documents, routed_events  # noqa: E402
from scaffold import fresh_store  # noqa: E402

from services.notifier.repository import COLLECTIONS, NOTIFICATIONS, NotifierRepository  # noqa: E402


def plan_of(explained: dict[str, Any]) -> str:
    """The scan the server chose: PostgreSQL's node types under FerretDB, MongoDB's stages."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("Node Type", "stage"):
                if key in node and node[key] not in found:
                    found.append(str(node[key]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(explained.get("queryPlanner"))
    return " > ".join(found)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=50_000)
    parser.add_argument("--step", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--mongodb-url", default=None)
    args = parser.parse_args()

    print(f"machine: {describe()}")
    print("composing documents ...", flush=True)
    documents = notification_documents(routed_events(args.documents // 2 + 50), args.documents)
    projects = sorted({d["project_code"] for d in documents})
    async with fresh_store(args.mongodb_url, "growth") as store:
        await store.ensure(COLLECTIONS)
        repository = NotifierRepository(store)
        print(f"store: {'embedded (FerretDB 1.24 on PostgreSQL)' if store.embedded else args.mongodb_url}; "
              f"{len(documents):,} documents of {len(projects):,} projects, batches of {args.batch}")
        print(f"{'stored':>8} {'docs/s':>8} {'vs first':>8} {'query ms':>9}  plan")
        rng = random.Random(8)
        first_rate = None
        for start in range(0, len(documents), args.step):
            chunk = documents[start:start + args.step]
            t0 = time.perf_counter()
            for i in range(0, len(chunk), args.batch):
                await store.insert_new(NOTIFICATIONS.name, chunk[i:i + args.batch])
            rate = len(chunk) / (time.perf_counter() - t0)
            first_rate = first_rate or rate
            stored = {d["project_code"] for d in documents[:start + len(chunk)]}
            sample = rng.sample(sorted(stored), min(20, len(stored)))
            latencies = []
            for code in sample:
                q0 = time.perf_counter()
                found = await repository.find(project=code)
                latencies.append((time.perf_counter() - q0) * 1000)
                assert found, code
            explained = await store.db.command(
                "explain", {"find": NOTIFICATIONS.name, "filter": {"project_code": sample[0]},
                            "sort": {"created_at": 1, "_id": 1}}, verbosity="queryPlanner")
            print(f"{start + len(chunk):>8,} {rate:>8,.0f} {rate / first_rate:>7.2f}x "
                  f"{statistics.median(latencies):>9.1f}  {plan_of(explained)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
