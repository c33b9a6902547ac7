"""RabbitMQ restarted under a stream of agreements while the services run: nothing lost, nothing
stored twice, the consumers back within 10 s, and a log that says it in two lines per connection.

A private node (``tests/rabbit_nodes.py``, never the machine's broker) is stopped with
``rabbitmqctl stop_app`` in the middle of the stream and started again some seconds later. The
services run as ``zeroerrand up`` does, in a child process with its own data directory.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.outage_harness import Client, Services, settle, wait_for_consumers
from tests.rabbit_nodes import private_nodes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

AGREEMENTS = 100
DOWN_S = 8.0
CONSUMERS_BACK_WITHIN_S = 10.0


async def test_a_broker_restart_under_a_stream_loses_nothing_and_logs_no_error() -> None:
    with private_nodes("zerestart", 1, first_port=5690) as (node,):
        client = Client(node.url)
        await client.open()  # the taps first: they see everything the services publish
        services = Services(node.url, "restart")
        services.start()
        try:
            started_in = await wait_for_consumers(node.url, services, timeout=90)
            stream = asyncio.create_task(client.stream(AGREEMENTS, "restart", pause_s=0.04))
            await asyncio.sleep(2.0)  # mid-stream
            signed_before = len(client.signed)
            await asyncio.to_thread(node.stop_app)
            await asyncio.sleep(DOWN_S)
            start_app_called = time.monotonic()
            await asyncio.to_thread(node.start_app)  # returns once the node has started (await_startup)
            start_app_took = time.monotonic() - start_app_called
            consumers_back = start_app_took + await wait_for_consumers(node.url, services, timeout=30)
            await stream
            outcome = await settle(client, services, AGREEMENTS, timeout=100)
        finally:
            await client.close()
            exit_code = services.stop()
        lost, back, warnings = services.connection_lines()
        print(f"\nservices up in {started_in:.1f} s; {signed_before} of {AGREEMENTS} agreements signed when the broker "
              f"stopped for {DOWN_S:g} s; publishes retried by the test while it was away: {client.publish_retries}")
        print(f"consumers back {consumers_back:.1f} s after start_app was called (limit {CONSUMERS_BACK_WITHIN_S:g} s); "
              f"start_app itself took {start_app_took:.1f} s")
        print(outcome.summary())
        print("the services' log about the connection:", *lost, *back, sep="\n  ")
        print(f"log problems (ERROR, Traceback, unread task exceptions): {len(services.problems())}; "
              f"WARNING lines: {len(warnings)}; exit code on SIGTERM: {exit_code}; log: {services.log_path}")
        problems = services.problems()
        assert problems == [], "\n".join(problems[:40])
        assert outcome.items_distinct == outcome.items_expected == AGREEMENTS * 23
        assert outcome.ledger_lines == outcome.items_expected and outcome.ledger_keys_missing == 0
        assert outcome.notifications_missing == 0 and outcome.notifications_unexpected == 0
        assert outcome.notifications_stored == outcome.notifications_expected > 0
        assert consumers_back <= CONSUMERS_BACK_WITHIN_S
        # one line each way per connection (the router's, the notifier's and the evaluation service's)
        assert len(lost) == 4 and len(back) == 4, "\n".join(lost + back)  # router, notifier, evaluation, console
        assert warnings == lost, "\n".join(warnings)
        assert exit_code == 0
        services.remove()
