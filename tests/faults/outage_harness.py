"""What the fault tests share: the services as operators run them, a stream of agreements, taps,
and the exact count of what must come out (routed items, ledger lines, notifications).

The services run as ``python -m services.cli up`` in a child process, as ``zeroerrand up`` does,
with a private ``ZEROERRAND_DATA_DIR`` (their own embedded store) and their log in a file the test
reads. Taps are durable quorum queues bound to ``zeroerrand.items`` and ``zeroerrand.events``, so
they keep what was published while a node is away; the test's own connection is robust too.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.common.consuming import decode_event
from services.common.messages import AgreementRejected, AgreementSigned, ItemRouted, RequestRefused, ServiceStarted
from services.common.settings import NotifierSettings, StoreSettings
from services.common.storage import Store, store_session
from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, EVENTS, ITEMS
from services.evaluation.ledger import item_key
from services.evaluation.repository import COLLECTIONS as LEDGER_COLLECTIONS
from services.notifier.app import load_composer
from services.notifier.compose import WITH_PROJECT, ItemView, ProjectView
from services.notifier.repository import COLLECTIONS as NOTIFIER_COLLECTIONS
from tests.conftest import ALUMINIUM, example
from tests.integration.conftest import store_directory

ROOT = Path(__file__).resolve().parents[2]
ITEMS_PER_AGREEMENT = 23  # the example hl-2026-0031: every plan line routable
SERVICE_QUEUES = ("zeroerrand.router.agreements", "zeroerrand.notifier.events", "zeroerrand.evaluation.events",
                  "zeroerrand.evaluation.requests")
QUORUM = {"x-queue-type": "quorum"}


class Services:
    """``zeroerrand up`` in a child process, its log in ``log_path``."""

    def __init__(self, amqp_url: str, name: str) -> None:
        self.data = store_directory(f"zeroerrand-{name}-data-")
        self.log_path = self.data / "services.log"
        self.env = {**os.environ, "ZEROERRAND_AMQP_URL": amqp_url, "ZEROERRAND_DATA_DIR": str(self.data),
                    "ZEROERRAND_ROUTER_WATCH_RULES": "false", "ZEROERRAND_CONSOLE_PORT": "0", "PYTHONUNBUFFERED": "1",
                    "ZEROERRAND_LOG_FORMAT": "text"}  # the log is read for its WARNING and ERROR lines
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], cwd=ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def remove(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)

    def store_settings(self) -> StoreSettings:
        return StoreSettings(data_dir=self.data)

    def problems(self) -> list[str]:
        """Lines of the log that must not be there: errors, tracebacks, unread task exceptions."""
        return [line for line in self.log().splitlines()
                if re.search(r"\bERROR\b|\bCRITICAL\b|Traceback|never retrieved", line)]

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.log().splitlines() if re.search(pattern, line)]

    def connection_lines(self) -> tuple[list[str], list[str], list[str]]:
        """The log's lines for a lost connection, for its return, and every other WARNING but the
        notifier's one per channel that no server is configured for: the aluminium agreements ask for
        e-mail and SMS (notify_by), which these tests do not configure (those notices end failed)."""
        unconfigured = self.lines(r"WARNING services\.notifier\.app: (email|sms) notifications are stored failed.*未配置")
        assert len(unconfigured) <= 2, "\n".join(unconfigured)  # said once per channel, not per notice
        return (self.lines(r"WARNING .*connection to RabbitMQ .* lost"),
                self.lines(r"INFO .*connected to RabbitMQ .* again after"),
                [line for line in self.lines(r"\bWARNING\b") if line not in unconfigured])


async def consumers(url: str) -> dict[str, int]:
    """Consumers per service queue, by a passive declare on a short connection of its own."""
    connection = await aio_pika.connect(url, timeout=2)
    try:
        channel = await connection.channel()
        found = {}
        for name in SERVICE_QUEUES:
            queue = await channel.declare_queue(name, passive=True)
            found[name] = int(queue.declaration_result.consumer_count or 0)
        return found
    finally:
        await connection.close()


async def wait_for_consumers(url: str, services: Services, timeout: float) -> float:
    """Seconds until every service queue has a consumer (fails with the log if the services died)."""
    started = time.monotonic()
    while True:
        try:
            if all((await consumers(url)).values()):
                return time.monotonic() - started
        except Exception:  # the broker still starting, a queue not yet declared
            pass
        if not services.alive():
            pytest.fail(f"the services exited ({services.process and services.process.returncode}):\n{services.log()[-4000:]}")
        if time.monotonic() - started > timeout:
            pytest.fail(f"the services' consumers were not all back within {timeout} s: "
                        f"{await _consumers_or_error(url)}\n{services.log()[-3000:]}")
        await asyncio.sleep(0.1)


async def _consumers_or_error(url: str) -> Any:
    try:
        return await consumers(url)
    except Exception as exc:
        return repr(exc)


@dataclass
class Tap:
    """A durable quorum queue bound to an exchange with ``#``: every message, by message id."""

    name: str
    messages: list[aio_pika.abc.AbstractIncomingMessage] = field(default_factory=list)
    last_at: float = field(default_factory=time.monotonic)

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append(message)
        self.last_at = time.monotonic()
        await message.ack()

    def ids(self) -> set[str]:
        return {str(m.message_id) for m in self.messages}

    def duplicates(self) -> int:
        return len(self.messages) - len(self.ids())


class Client:
    """The test's own robust connection: declares the exchanges and the taps, streams agreements."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.items = Tap("zeroerrand.test.items-tap")
        self.events = Tap("zeroerrand.test.events-tap")
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.signed: list[AgreementSigned] = []
        self.publish_retries = 0

    async def open(self) -> None:
        self.connection = await aio_pika.connect_robust(self.url, reconnect_interval=1)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=500)
        for exchange, tap in ((ITEMS, self.items), (EVENTS, self.events)):
            declared = await channel.declare_exchange(exchange.name, aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue(tap.name, durable=True, arguments=QUORUM)
            await queue.purge()
            await queue.bind(declared, "#")
            await queue.consume(tap.on_message)
        await channel.declare_exchange(AGREEMENTS.name, aio_pika.ExchangeType.TOPIC, durable=True)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def stream(self, count: int, prefix: str, pause_s: float) -> None:
        """Signs ``count`` agreements, one every ``pause_s``, each published persistent and
        confirmed; a publish that fails (the broker away) is tried again until it is confirmed."""
        assert self.connection is not None
        channel = await self.connection.channel(publisher_confirms=True)
        for index in range(count):
            agreement = example(ALUMINIUM, suffix=f"{prefix}{index:04d}")
            body = agreement.model_dump_json().encode()
            while True:
                try:
                    exchange = await channel.get_exchange(AGREEMENTS.name, ensure=False)
                    await asyncio.wait_for(exchange.publish(
                        aio_pika.Message(body, message_id=agreement.event_id, content_type="application/json",
                                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=AGREEMENT_SIGNED, mandatory=True), 10)
                    break
                except Exception:
                    self.publish_retries += 1
                    await asyncio.sleep(0.5)
            self.signed.append(agreement)
            await asyncio.sleep(pause_s)


def expected_items(client: Client) -> dict[str, str]:
    """Message id -> ledger key of every item the signed agreements route (from the tap, checked
    against the agreements: each has all of its plan lines)."""
    found: dict[str, str] = {}
    for message in client.items.messages:
        routed = decode_event(message.type, message.body)
        assert isinstance(routed, ItemRouted), message.type
        found[str(message.message_id)] = item_key(routed.item.project_code, routed.item.item_code, routed.item.request)
    return found


def expected_notifications(events: Iterable[aio_pika.abc.AbstractIncomingMessage]) -> set[str]:
    """The ids of the notifications the notifier must have stored for these events (each once):
    its own composer, given the project and item each event refers to, as its handler does."""
    composer = load_composer(NotifierSettings())
    decoded = {str(m.message_id): decode_event(m.type, m.body) for m in events}
    projects: dict[str, ProjectView] = {}
    items: dict[tuple[str, str], ItemView] = {}
    for event in decoded.values():
        if isinstance(event, (ServiceStarted, AgreementRejected)):
            p = event.project
            projects.setdefault(p.code, ProjectView(p.code, p.name, p.enterprise, p.recruiting_unit))
        elif isinstance(event, ItemRouted):
            r = event.item
            projects.setdefault(r.project_code, ProjectView(r.project_code, r.project_name, r.enterprise,
                                                            r.recruiting_unit))
            items.setdefault((r.project_code, r.item_code), ItemView(r.project_code, r.item_code, r.item_name,
                                                                     r.responsible_unit))
    ids: set[str] = set()
    now = datetime.now(UTC)
    for event in decoded.values():
        project: ProjectView | None = None
        item: ItemView | None = None
        if isinstance(event, (ServiceStarted, AgreementRejected, ItemRouted)):
            code = event.item.project_code if isinstance(event, ItemRouted) else event.project.code
            project = projects[code]
            if isinstance(event, ItemRouted):
                item = items[(event.item.project_code, event.item.item_code)]
        elif isinstance(event, (*WITH_PROJECT, RequestRefused)) and getattr(event, "project_code", None):
            project = projects.get(event.project_code)
            item_code = getattr(event, "item_code", None)
            item = items.get((event.project_code, item_code)) if item_code else None
        ids.update(d["_id"] for d in composer.compose(event, project, item, now))
    return ids


@dataclass
class Outcome:
    items_expected: int
    items_distinct: int
    items_duplicates: int
    ledger_lines: int
    ledger_keys_missing: int
    notifications_expected: int
    notifications_stored: int
    notifications_missing: int
    notifications_unexpected: int
    seconds_to_settle: float

    def summary(self) -> str:
        return (f"routed items: {self.items_distinct} distinct of {self.items_expected} expected, "
                f"{self.items_duplicates} duplicate deliveries on the tap (same message id)\n"
                f"ledger lines: {self.ledger_lines}; notifications stored {self.notifications_stored} of "
                f"{self.notifications_expected} expected; settled {self.seconds_to_settle:.1f} s after the stream")


async def settle(client: Client, services: Services, agreements: int, timeout: float) -> Outcome:
    """Waits until every routed item is on the tap, the ledger has a line for each and the store
    holds exactly the notifications the events call for, nothing arriving for 2 s; then counts."""
    started = time.monotonic()
    async with store_session(services.store_settings(), collections=(*LEDGER_COLLECTIONS, *NOTIFIER_COLLECTIONS)) as store:
        while True:
            late = time.monotonic() - started > timeout
            outcome = await _count(client, store, agreements, started, notifications=late)
            quiet = time.monotonic() - max(client.items.last_at, client.events.last_at) > 2
            if (outcome.items_distinct == outcome.items_expected and outcome.ledger_keys_missing == 0
                    and outcome.ledger_lines == outcome.items_expected and quiet):
                outcome = await _count(client, store, agreements, started, notifications=True)
                if outcome.notifications_missing == 0 and outcome.notifications_unexpected == 0:
                    return outcome
            if not services.alive():
                pytest.fail(f"the services exited:\n{services.log()[-4000:]}")
            if late:
                pytest.fail(f"not settled within {timeout} s: {outcome}")
            await asyncio.sleep(1)


async def _count(client: Client, store: Store, agreements: int, started: float, *, notifications: bool) -> Outcome:
    routed = expected_items(client)
    keys = set(routed.values())
    ledger = [doc["_id"] async for doc in store.db["ledger_items"].find({}, {"_id": 1})]
    expected: set[str] = set()
    stored: list[str] = []
    if notifications:  # composing every event's notifications takes a while: only once the rest is there
        expected = expected_notifications(client.events.messages)
        stored = [doc["_id"] async for doc in store.db["notifications"].find({}, {"_id": 1})]
    return Outcome(
        items_expected=agreements * ITEMS_PER_AGREEMENT, items_distinct=len(routed),
        items_duplicates=client.items.duplicates(), ledger_lines=len(ledger), ledger_keys_missing=len(keys - set(ledger)),
        notifications_expected=len(expected), notifications_stored=len(stored),
        notifications_missing=len(expected - set(stored)), notifications_unexpected=len(set(stored) - expected),
        seconds_to_settle=time.monotonic() - started)
