"""Claiming a notification for delivery on the real store: exactly one worker wins each attempt.

On the embedded store (FerretDB 1.24) a filtered update is not atomic: it reads, then writes. A
lease taken with ``find_one_and_update({"status": "pending", ...})`` was won by several of 8
concurrent claimers, and two notifier processes on one store sent 381 of 480 webhooks twice. An
insert under a unique ``_id`` is atomic on every store, so a claim is now one (see
docs/concurrency.md). These tests run two delivery workers as the product wires them
(``Deliverer``, each on its own client, as two processes are) against local receivers: a webhook
receiver, an SMTP server and an SMS gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.common.settings import NotifierSettings, StoreSettings
from services.common.storage import Endpoint, Store, client_options
from services.notifier.delivery import Deliverer
from services.notifier.repository import COLLECTIONS, NotifierRepository
from tests.integration.test_notification_channels import Mailbox, smtp_server
from tests.integration.test_notifier import Receiver, serving

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 18, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def notification(ident: str, channel: str = "webhook", address: str = "http://127.0.0.1:1/hook",
                 **fields: object) -> dict[str, object]:
    return {"_id": ident, "event_id": f"event-{ident}", "event_type": "item.routed", "project_code": "P-1",
            "item_code": "MA-01", "role": "enterprise", "recipient": "enterprise:91150100MA0N8XK21Q",
            "recipient_name": "企业", "channel": channel, "address": address, "title": "标题", "body": "正文",
            "status": "pending", "attempts": 0, "last_error": None, "created_at": NOW, "updated_at": NOW,
            "delivered_at": None, "next_attempt_at": NOW, **fields}


@pytest.fixture
async def second(store: Store, embedded_endpoint: Endpoint) -> AsyncIterator[Store]:
    """The same database through a client of its own: what a second notifier process has."""
    uri = embedded_endpoint.uri if store.embedded else str(StoreSettings().mongodb_url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=10_000, tz_aware=True,
                                                                **client_options(store.embedded, uri))
    yield Store(client, store.database, postgres=embedded_endpoint.postgres if store.embedded else None)
    await client.close()


async def test_eight_concurrent_claimers_give_each_notification_one_winner(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    repositories = [NotifierRepository(store) for _ in range(8)]
    winners: list[int] = []
    for trial in range(50):
        await repositories[0].add([notification(f"n{trial:02d}")])
        claimed = await asyncio.gather(*(r.claim_due(NOW, LEASE) for r in repositories))
        winners.append(sum(c is not None for c in claimed))
    assert Counter(winners) == {1: 50}, f"winners per trial: {Counter(winners)}"
    # nothing is left to claim while the leases run; each is due once more when its lease ends
    assert await repositories[0].claim_due(NOW + timedelta(seconds=1), LEASE) is None
    again = await asyncio.gather(*(r.claim_due(NOW + LEASE + timedelta(seconds=1), LEASE) for r in repositories))
    assert sum(c is not None for c in again) == min(8, 50)


async def test_a_lapsed_lease_is_taken_again_by_one_worker_only(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    repositories = [NotifierRepository(store) for _ in range(8)]
    await repositories[0].add([notification("crashed")])
    first = await repositories[0].claim_due(NOW, LEASE)  # its worker dies mid-send: no outcome is written
    assert first is not None
    for lapse in range(1, 21):
        at = NOW + lapse * (LEASE + timedelta(seconds=1))
        claimed = [c for c in await asyncio.gather(*(r.claim_due(at, LEASE) for r in repositories)) if c is not None]
        assert len(claimed) == 1, f"lapse {lapse}: {len(claimed)} workers took the lapsed lease"


async def test_two_delivery_workers_send_every_notification_exactly_once(store: Store, second: Store) -> None:
    await store.ensure(COLLECTIONS)
    hooks, gateway, mailbox = Receiver(), Receiver(), Mailbox()
    async with serving(hooks, "/hook"), serving(gateway, "/sms/send"):
        with smtp_server(mailbox) as port:
            documents = ([notification(f"w{i:03d}", address=hooks.url) for i in range(240)]
                         + [notification(f"e{i:03d}", "email", "qiye@example.cn") for i in range(60)]
                         + [notification(f"s{i:03d}", "sms", "13900000000") for i in range(60)])
            await NotifierRepository(store).add(documents)
            settings = NotifierSettings(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                                        sms_gateway_url=gateway.url, sms_gateway_token="t", poll_interval_s=0.05,
                                        backoff_base_s=0.05)
            workers = [Deliverer(NotifierRepository(s), settings) for s in (store, second)]
            stop = asyncio.Event()
            running = [asyncio.create_task(w.run(stop)) for w in workers]
            repository = NotifierRepository(store)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 90
            while loop.time() < deadline:
                if len(await repository.find(status="delivered", limit=10_000)) == len(documents):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)  # a moment more, to catch a late second send
            stop.set()
            await asyncio.gather(*running)
    posted = Counter(headers["x-zeroerrand-notification-id"] for headers, _ in hooks.requests)
    texted = Counter(json.loads(body)["id"] for _, body in gateway.requests)
    mailed = Counter(mail["X-ZeroErrand-Notification-Id"] for _, mail, _ in mailbox.parsed())
    twice = {ident: n for counts in (posted, texted, mailed) for ident, n in counts.items() if n > 1}
    assert not twice, (f"sent more than once: {len(twice)} notifications; webhook {sum(posted.values())} POSTs for "
                       f"{len(posted)}, SMS {sum(texted.values())} for {len(texted)}, e-mail {sum(mailed.values())} "
                       f"for {len(mailed)}")
    assert (len(posted), len(texted), len(mailed)) == (240, 60, 60)
    statuses = Counter(d["status"] for d in await repository.find(limit=10_000))
    assert statuses == {"delivered": 360}, statuses
    assert {d["attempts"] for d in await repository.find(limit=10_000)} == {1}
