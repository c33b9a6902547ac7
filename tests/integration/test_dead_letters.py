"""``zeroerrand dead-letters list`` and ``replay`` on the running services (``zeroerrand up`` on a
private vhost and store): a message parked for its content is listed with its reason; once the
cause is fixed, replaying it has it handled and leaves the dead-letter queue empty.

The message: an ``item.ready`` about a project the notifier has never heard of (no agreement
signed), which it fails on at every delivery ("unknown to the notifier") and parks on the last.
The fix: the agreement is signed, so the notifier knows the project and its items.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from services.common.messages import ItemReady
from services.common.storage import store_session
from services.common.topology import NOTIFIER_QUEUE
from services.notifier.repository import COLLECTIONS as NOTIFIER_COLLECTIONS
from tests.conftest import ALUMINIUM, example
from tests.faults.harness import sign_all
from tests.faults.outage_harness import ROOT, Services, wait_for_consumers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def cli(services: Services, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "dead-letters", *args], env=services.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def listed(services: Services) -> dict[str, list[dict[str, Any]]]:
    done = cli(services, "list", "--json")
    assert done.returncode == 0, done.stderr
    found: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    return found


async def wait_for(check: Any, what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:g} s")
        await asyncio.sleep(0.5)


async def test_a_message_parked_for_its_content_is_listed_and_once_fixed_replayed_and_handled(amqp_url: str) -> None:
    services = Services(amqp_url, "dead-letters")
    services.start()
    try:
        await wait_for_consumers(amqp_url, services, timeout=90)
        agreement = example(ALUMINIUM, suffix="DL01")
        project = agreement.project.code
        now = datetime.now(UTC)
        event = ItemReady(event_id=f"test-dead-letter-ready-{project}", occurred_at=now, recorded_at=now,
                          project_code=project, item_code="MA-01", reported_by="gov_service_bureau")
        connection = await aio_pika.connect(amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            events = await channel.get_exchange("zeroerrand.events")
            await events.publish(aio_pika.Message(
                event.model_dump_json().encode(), message_id=event.event_id, type=event.type, user_id="guest",
                content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"x-test-origin": "dead-letter-test"}), routing_key=event.type)

        async def parked() -> list[dict[str, Any]]:
            return listed(services).get(NOTIFIER_QUEUE.name, [])

        entries = await wait_for(parked, "the item.ready parked by the notifier")
        assert [e["message_id"] for e in entries] == [event.event_id], entries
        entry = entries[0]
        assert entry["type"] == "item.ready" and entry["kind"] == "processing_failed"
        assert "unknown to the notifier" in entry["reason"] and entry["publisher"] == "guest", entry
        assert entry["parked_at"], entry
        shown = cli(services, "list", "--queue", "notifier.events")
        assert shown.returncode == 0 and event.event_id in shown.stdout and "processing_failed" in shown.stdout, shown
        print("\n" + shown.stdout)

        refused = cli(services, "replay", "--id", "no-such-message")
        assert refused.returncode == 1 and "没有匹配的停放消息" in refused.stderr, refused
        assert cli(services, "replay").returncode == 1  # neither --id nor --all
        assert listed(services)[NOTIFIER_QUEUE.name] != [], "a refused replay changed nothing"

        await sign_all(amqp_url, [agreement])  # the fix: the notifier learns the project and its items

        async def known() -> bool:
            async with store_session(services.store_settings(), NOTIFIER_COLLECTIONS) as store:
                return await store.db["notifier_items"].find_one({"_id": f"{project}/MA-01"}) is not None

        await wait_for(known, "the notifier to know the signed project")
        replayed = cli(services, "replay", "--queue", "zeroerrand.notifier.events", "--id", event.event_id)
        print(replayed.stdout, replayed.stderr)
        assert replayed.returncode == 0, replayed.stderr
        assert f"已重放 {event.event_id}" in replayed.stdout

        async def handled() -> int:
            async with store_session(services.store_settings(), NOTIFIER_COLLECTIONS) as store:
                return await store.db["notifications"].count_documents({"event_id": event.event_id})

        notes = await wait_for(handled, "the replayed item.ready handled")
        await asyncio.sleep(2)  # and not parked again meanwhile
        after = listed(services)
        assert all(not entries for entries in after.values()), after
        print(f"replayed {event.event_id}: {notes} notifications stored for it; every dead-letter queue empty")
        assert "Traceback" not in services.log(), services.log()[-3000:]
    finally:
        services.stop()
    services.remove()
