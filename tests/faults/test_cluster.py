"""A three-node RabbitMQ cluster loses the node the services are connected to, under a stream of
agreements: the services carry on through the others, and nothing is lost or stored twice.

The cluster is three private nodes on loopback (``tests/rabbit_nodes.py``), started and stopped
here. The services run as ``zeroerrand up`` with ``ZEROERRAND_AMQP_URL`` listing the three nodes,
so they connect to the first; its app is stopped in the middle of the stream and stays stopped.
The queues are quorum queues, kept by the two nodes left. The test's own connection (taps and
stream) is to the second node.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from tests.faults.outage_harness import Client, Services, settle, wait_for_consumers
from tests.rabbit_nodes import RabbitNode, private_nodes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

AGREEMENTS = 100
RECOVER_WITHIN_S = 15.0


async def test_the_services_carry_on_through_the_other_nodes_when_theirs_stops() -> None:
    began = time.monotonic()
    with private_nodes("zecluster", 3, first_port=5693, clustered=True) as nodes:
        cluster_up = time.monotonic() - began
        first, second, _ = nodes
        client = Client(second.url)
        await client.open()
        services = Services(",".join(node.url for node in nodes), "cluster")
        services.start()
        try:
            started_in = await wait_for_consumers(second.url, services, timeout=90)
            # the console, a process of its own that consumes nothing, connects once it has started:
            # its connection is waited for like the consumers (the test's own is one more)
            deadline = time.monotonic() + 60
            while sum((before := _connections(second)).values()) < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            stream = asyncio.create_task(client.stream(AGREEMENTS, "cluster", pause_s=0.04))
            await asyncio.sleep(2.0)  # mid-stream
            signed_before = len(client.signed)
            stop_called = time.monotonic()
            await asyncio.to_thread(first.stop_app)
            stop_took = time.monotonic() - stop_called
            recovered = stop_took + await wait_for_consumers(second.url, services, timeout=60)
            after = _connections(second)
            await stream
            outcome = await settle(client, services, AGREEMENTS, timeout=120)
        finally:
            await client.close()
            exit_code = services.stop()
        lost, back, warnings = services.connection_lines()
        print(f"\ncluster of 3 up in {cluster_up:.1f} s; services up in {started_in:.1f} s; connections by node: "
              f"{dict(before)} (the test's own is on {second.node})")
        print(f"{signed_before} of {AGREEMENTS} agreements signed when {first.name} stopped (stop_app took {stop_took:.1f} s)")
        print(f"consumers back on the other nodes {recovered:.1f} s after stop_app was called (limit {RECOVER_WITHIN_S:g} s); "
              f"connections by node afterwards: {dict(after)}")
        print(outcome.summary())
        print("the services' log about the connection:", *lost, *back, sep="\n  ")
        problems = services.problems()
        print(f"log problems (ERROR, Traceback, unread task exceptions): {len(problems)}; WARNING lines: "
              f"{len(warnings)}; exit code on SIGTERM: {exit_code}; log: {services.log_path}")
        assert problems == [], "\n".join(problems[:40])
        assert before[first.node] == 4  # the router's, the notifier's, the evaluation service's and the console's
        assert after[first.node] == 0 and sum(after.values()) == 5  # the four, and the test's own publisher
        assert outcome.items_distinct == outcome.items_expected == AGREEMENTS * 23
        assert outcome.ledger_lines == outcome.items_expected and outcome.ledger_keys_missing == 0
        assert outcome.notifications_missing == 0 and outcome.notifications_unexpected == 0
        assert outcome.notifications_stored == outcome.notifications_expected > 0
        assert recovered <= RECOVER_WITHIN_S
        assert len(lost) == 4 and len(back) == 4, "\n".join(lost + back)  # router, notifier, evaluation, console
        assert all(f":{first.port}/" in line for line in lost)
        assert all(f":{first.port}/" not in line.split(" again after")[0] for line in back)  # another node
        assert warnings == lost, "\n".join(warnings)
        assert exit_code == 0
        services.remove()


def _connections(node: RabbitNode) -> Counter[str]:
    """The cluster's AMQP connections by the node they are on (asked of ``node``)."""
    done = node.ctl("list_connections", "pid", "--silent")
    # a connection's Erlang pid names its node: <zecluster1@localhost.1701.2741.0>
    return Counter(line.strip().lstrip("<").split(".")[0] for line in done.stdout.splitlines() if "@" in line)
