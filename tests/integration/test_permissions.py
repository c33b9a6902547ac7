"""Least privilege on the real RabbitMQ: the users and permissions of ``services.common.access``,
loaded into a private vhost with rabbitmqctl, each allowed and each refused operation tried with a
real aio-pika connection as that user. Users and vhost are deleted afterwards."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import aiormq
import pytest
from faststream.rabbit import RabbitBroker
from ruamel.yaml import YAML

from services.common import permissions as access
from services.common.bus import BrokerPublisher, Outgoing, make_broker
from services.common.domain import ServiceMode
from services.common.settings import BrokerSettings, RouterSettings
from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, EVENTS, ITEMS, MODE_QUEUES, REQUESTS, declare_topology
from services.router.app import create_router
from tests.conftest import ALUMINIUM, ROOT, example
from tests.integration.conftest import _rabbitmqctl

UNITS = ("tax_branch", "gov_service_bureau", "planning_construction_bureau")
PASSWORD = "zeroerrand-test-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[str, str, list[access.Grant]]]:
    """(vhost, user prefix, grants): the topology declared by the admin, every user loaded."""
    tag = uuid.uuid4().hex[:8]
    vhost, prefix = f"zeroerrand-test-{tag}", f"zeroerrand-test-{tag}-"
    admin = urlsplit(BrokerSettings().amqp_url).username or "guest"
    grants = access.grants(UNITS, prefix)
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, admin, ".*", ".*", ".*")
        for grant in grants:
            for command in access.rabbitmqctl_commands(grant, vhost):
                _rabbitmqctl(*[PASSWORD if part == access.PASSWORD_PLACEHOLDER else part for part in command])
        yield vhost, prefix, grants
    finally:
        for grant in grants:
            subprocess.run(["rabbitmqctl", "delete_user", grant.user], capture_output=True, timeout=60)
        _rabbitmqctl("delete_vhost", vhost)


def _url(vhost: str, user: str | None = None) -> str:
    base = urlsplit(BrokerSettings().amqp_url)
    netloc = base.netloc if user is None else f"{quote(user, safe='')}:{PASSWORD}@{base.hostname}:{base.port or 5672}"
    return urlunsplit((base.scheme, netloc, "/" + quote(vhost, safe=""), "", ""))


@pytest.fixture(scope="module")
async def admin_declared(setup: tuple[str, str, list[access.Grant]]) -> str:
    broker = RabbitBroker(_url(setup[0]))
    await broker.connect()
    try:
        await declare_topology(broker)
    finally:
        await broker.stop()
    return setup[0]


Op = Callable[[aio_pika.abc.AbstractChannel], Awaitable[Any]]


class As:
    """One user's connection; ``ok`` and ``refused`` run an operation on a fresh channel each."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection) -> None:
        self.connection = connection

    async def ok(self, op: Op) -> None:
        channel = await self.connection.channel(publisher_confirms=True)
        await op(channel)
        await channel.close()

    async def refused(self, op: Op) -> str:
        channel = await self.connection.channel(publisher_confirms=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as refused:
            await op(channel)
        return str(refused.value)


@pytest.fixture
async def as_user(setup: tuple[str, str, list[access.Grant]], admin_declared: str
                  ) -> AsyncIterator[Callable[[str], Awaitable[As]]]:
    opened: list[aio_pika.abc.AbstractConnection] = []

    async def connect(name: str) -> As:
        connection = await aio_pika.connect(_url(setup[0], setup[1] + name), timeout=10)
        opened.append(connection)
        return As(connection)

    yield connect
    for connection in opened:
        await connection.close()


def consume(queue: str) -> Op:
    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        declared = await channel.get_queue(queue, ensure=False)
        await declared.get(fail=False)
    return op


def publish(exchange: str, key: str) -> Op:
    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(b"{}"), routing_key=key)
    return op


def bind(queue: str, exchange: str, key: str, *, declare: bool = False) -> Op:
    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        if declare:
            declared = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        else:
            declared = await channel.get_queue(queue, ensure=False)
        await declared.bind(exchange, routing_key=key)
    return op


async def test_every_service_user_can_declare_the_whole_topology_itself(
        setup: tuple[str, str, list[access.Grant]], admin_declared: str) -> None:
    for name in access.SERVICES:
        broker = RabbitBroker(_url(setup[0], setup[1] + name))
        await broker.connect()
        try:
            await declare_topology(broker)
        finally:
            await broker.stop()


async def test_router_reads_agreements_and_writes_items_and_events_only(
        as_user: Callable[[str], Awaitable[As]]) -> None:
    router = await as_user("router")
    await router.ok(consume("zeroerrand.router.agreements"))
    await router.ok(publish(ITEMS.name, "joint.tax_branch"))
    await router.ok(publish(EVENTS.name, "agreement.rejected"))
    await router.refused(consume(MODE_QUEUES[ServiceMode.JOINT].name))
    await router.refused(publish(REQUESTS.name, "item.accept"))


async def test_notifier_reads_its_events_queue_only_and_publishes_no_event(
        as_user: Callable[[str], Awaitable[As]]) -> None:
    notifier = await as_user("notifier")
    await notifier.ok(consume("zeroerrand.notifier.events"))
    await notifier.refused(consume("zeroerrand.items.joint"))
    await notifier.refused(consume("zeroerrand.evaluation.requests"))
    await notifier.refused(publish(EVENTS.name, "item.completed"))
    await notifier.refused(publish(ITEMS.name, "joint.tax_branch"))
    # a queue of its own making, to read the items, cannot be declared
    await notifier.refused(bind("zeroerrand.notifier.spy", ITEMS.name, "#", declare=True))


async def test_evaluation_reads_its_queues_and_writes_events(as_user: Callable[[str], Awaitable[As]]) -> None:
    evaluation = await as_user("evaluation")
    await evaluation.ok(consume("zeroerrand.evaluation.events"))
    await evaluation.ok(consume("zeroerrand.evaluation.requests"))
    await evaluation.ok(publish(EVENTS.name, "item.completed"))
    await evaluation.refused(consume("zeroerrand.notifier.events"))
    await evaluation.refused(publish(ITEMS.name, "joint.tax_branch"))


async def test_console_writes_requests_only_and_reads_no_queue(as_user: Callable[[str], Awaitable[As]]) -> None:
    console = await as_user("console")
    await console.ok(publish(REQUESTS.name, "item.enterprise_issue"))
    await console.refused(publish(REQUESTS.name, "item.completed"))  # an event type, not a request
    await console.refused(publish(EVENTS.name, "item.completed"))
    await console.refused(publish(ITEMS.name, "joint.tax_branch"))
    for queue in ("zeroerrand.evaluation.requests", "zeroerrand.notifier.events", "zeroerrand.items.joint",
                  "zeroerrand.router.agreements"):
        await console.refused(consume(queue))


async def test_a_department_reads_its_own_queue_with_its_own_keys_and_sends_requests(
        as_user: Callable[[str], Awaitable[As]]) -> None:
    tax = await as_user("unit.tax_branch")
    own = access.unit_queue("tax_branch")
    await tax.ok(bind(own, ITEMS.name, "*.tax_branch", declare=True))
    await tax.ok(bind(own, ITEMS.name, "joint.tax_branch"))
    await tax.ok(consume(own))
    await tax.ok(publish(REQUESTS.name, "item.accept"))
    # another unit's queue, keys and requests that are not requests
    await tax.refused(bind(own, ITEMS.name, "*.gov_service_bureau"))
    await tax.refused(bind(own, ITEMS.name, "#"))
    await tax.refused(bind(access.unit_queue("gov_service_bureau"), ITEMS.name, "*.gov_service_bureau",
                           declare=True))
    await tax.refused(consume("zeroerrand.items.joint"))
    await tax.refused(publish(EVENTS.name, "item.completed"))
    await tax.refused(publish(REQUESTS.name, "item.completed"))
    await tax.refused(publish(ITEMS.name, "joint.tax_branch"))
    await tax.refused(bind(own, EVENTS.name, "#"))


def test_the_generated_users_script_sets_exactly_these_grants(tmp_path: Any) -> None:
    """deploy/rabbitmq/users.sh, as the rabbitmq-users job runs it, on a private vhost and with the
    user names prefixed for the test: every user gets the permissions of services.common.permissions."""
    tag = uuid.uuid4().hex[:8]
    vhost, prefix = f"zeroerrand-test-{tag}", f"zeroerrand-test-{tag}-"
    script = (ROOT / "deploy" / "rabbitmq" / "users.sh").read_text(encoding="utf-8")
    script = script.replace("'zeroerrand-", f"'{prefix}").replace("'zeroerrand' ", f"'{vhost}' ")
    names = re.findall(r"^upsert_user '([^']+)'", script, re.MULTILINE)
    runner = tmp_path / "run.sh"
    runner.write_text('set -euo pipefail\nctl() { rabbitmqctl "$@"; }\n'
                      'upsert_user() { ctl add_user "$1" "$2"; ctl set_user_tags "$1" $3; }\n' + script)
    env = {**os.environ, **{v: PASSWORD for v in re.findall(r'"\$\{([A-Z0-9_]+):\?', script)}}
    _rabbitmqctl("add_vhost", vhost)
    try:
        done = subprocess.run(["bash", str(runner)], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        listed = {line.split("\t")[0]: tuple(line.split("\t")[1:])
                  for line in _rabbitmqctl("list_permissions", "-p", vhost, "--silent").splitlines() if line}
        topics = _rabbitmqctl("list_topic_permissions", "-p", vhost, "--silent").splitlines()
        for grant in access.grants(load_units(), prefix):
            assert listed[grant.user] == (grant.configure, grant.write, grant.read), grant.user
            for exchange, (write, read) in grant.topic.items():
                assert "\t".join((grant.user, exchange, write, read)) in topics
        assert sorted(names) == sorted(g.user for g in access.grants(load_units(), prefix))
    finally:
        for name in names:
            subprocess.run(["rabbitmqctl", "delete_user", name], capture_output=True, timeout=60)
        _rabbitmqctl("delete_vhost", vhost)


def load_units() -> list[str]:
    loaded = YAML(typ="safe").load((ROOT / "rules" / "units.yaml").read_text(encoding="utf-8"))
    return [str(unit["code"]) for unit in loaded["units"]]


async def test_the_router_runs_as_its_user_and_a_unit_receives_its_items_and_cannot_forge_its_user_id(
        setup: tuple[str, str, list[access.Grant]], admin_declared: str, rules_copy: Path,
        as_user: Callable[[str], Awaitable[As]]) -> None:
    """The real router as ``router``, an agreement signed as ``operator`` (the CLI's publisher), the
    planning bureau's system as its unit user: its own items arrive, stamped with the router's user."""
    vhost, prefix, _ = setup
    unit = "planning_construction_bureau"
    system = await aio_pika.connect(_url(vhost, prefix + access.unit_user(unit)), timeout=10)
    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=False),
                           BrokerSettings(amqp_url=_url(vhost, prefix + "router")))
    await router.app.start()
    try:
        channel = await system.channel()
        queue = await channel.declare_queue(access.unit_queue(unit), durable=True,
                                            arguments={"x-queue-type": "quorum"})
        await queue.bind(ITEMS.name, routing_key=f"*.{unit}")
        await queue.purge()
        agreement = example(ALUMINIUM, suffix=uuid.uuid4().hex[:6])
        operator = make_broker(BrokerSettings(amqp_url=_url(vhost, prefix + "operator")))
        async with operator:
            await operator.connect()
            await BrokerPublisher(operator).publish_all(
                [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, agreement, agreement.event_id, agreement.type)])
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        for _ in range(150):
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                if got:
                    break
                await asyncio.sleep(0.1)
                continue
            got.append(message)
        assert got, "no item reached the unit's own queue"
        assert {m.routing_key for m in got} == {f"joint.{unit}"}
        assert {m.user_id for m in got} == {prefix + "router"}
        # a request under another user's name: RabbitMQ refuses the user_id, the channel closes
        sender = await system.channel(publisher_confirms=True)
        requests = await sender.get_exchange(REQUESTS.name, ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await requests.publish(aio_pika.Message(b"{}", user_id=prefix + "console"), routing_key="item.accept")
        sender = await system.channel(publisher_confirms=True)
        requests = await sender.get_exchange(REQUESTS.name, ensure=False)
        await requests.publish(aio_pika.Message(b"{}", user_id=prefix + access.unit_user(unit)),
                               routing_key="item.accept")
    finally:
        await router.app.stop()
        await system.close()
