"""The services as operators run them (separate processes on the real RabbitMQ and the embedded
store), a stream of a year's agreements, and what a fault test needs to judge the outcome.

Each test gets a private vhost (``amqp_url``) and a private store directory; the services are
``zeroerrand router|notifier|evaluation|up`` processes whose output is kept in log files, so a
test can kill -9 them, SIGTERM them, restart them and read what they said.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from services.common.agreement_files import load_agreement, to_event
from services.common.bus import BrokerPublisher, Outgoing, make_broker
from services.common.messages import AgreementSigned
from services.common.topology import (
    AGREEMENT_SIGNED,
    AGREEMENTS,
    EVALUATION_QUEUE,
    LEDGER_REQUESTS_QUEUE,
    NOTIFIER_QUEUE,
    ROUTER_QUEUE,
    declare_topology,
)
from tests.conftest import ALUMINIUM, COMPUTING, CONSULT_UNKNOWN, EXAMPLES

CLI = str(Path(sys.executable).with_name("zeroerrand"))
WORK_QUEUES = (ROUTER_QUEUE.name, NOTIFIER_QUEUE.name, EVALUATION_QUEUE.name, LEDGER_REQUESTS_QUEUE.name)
CONSUMED_BY = {"router": (ROUTER_QUEUE.name,), "notifier": (NOTIFIER_QUEUE.name,),
               "evaluation": (EVALUATION_QUEUE.name, LEDGER_REQUESTS_QUEUE.name)}
CONSUMED_BY["up"] = tuple(q for queues in CONSUMED_BY.values() for q in queues)
CONSUMED_BY["console"] = ()  # it consumes nothing: started once its process runs


def year_of_agreements(count: int, *, seed: int = 2026, year: int = 2026, tag: str = "F") -> list[AgreementSigned]:
    """``count`` agreements of a year (fixed seed): mostly the 23-item project, some smaller ones,
    some with an unknown item, signed on days spread over the year."""
    rng = random.Random(seed)
    sources = [load_agreement(EXAMPLES / name) for name in (ALUMINIUM, COMPUTING, CONSULT_UNKNOWN)]
    out = []
    for n in range(count):
        source = rng.choices(sources, weights=(8, 1, 1))[0]
        signed = date(year, 1, 5) + timedelta(days=rng.randrange(330))
        project = source.project.model_copy(update={"code": f"HLXQ-{year}-{tag}{n:04d}"})
        out.append(to_event(source.model_copy(update={"agreement_id": f"HLXQ-XY-{year}-{tag}{n:04d}",
                                                       "project": project, "signed_on": signed})))
    return out


async def sign_all(amqp_url: str, agreements: Sequence[AgreementSigned]) -> None:
    """Publishes the agreements as ``zeroerrand sign`` does (persistent, confirmed), in one burst."""
    broker = make_broker(amqp_url)
    async with broker:
        await broker.connect()
        await declare_topology(broker)
        await BrokerPublisher(broker).publish_all(
            [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, a, a.event_id, a.type) for a in agreements])


def _vhost(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path[1:]) or "/"


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def queue_depths(amqp_url: str) -> dict[str, tuple[int, int]]:
    """(messages ready + unacknowledged, consumers) per queue of the test's vhost."""
    depths = {}
    for line in rabbitmqctl("list_queues", "-p", _vhost(amqp_url), "name", "messages", "consumers").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            depths[parts[0]] = (int(parts[1]), int(parts[2]))
    return depths


async def ready_counts(amqp_url: str, queues: Sequence[str] = WORK_QUEUES) -> dict[str, int]:
    """Messages ready (not in flight) per queue: a passive declare, cheap enough to poll."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        return {q: int((await channel.declare_queue(q, passive=True)).declaration_result.message_count or 0)
                for q in queues}
    finally:
        await connection.close()


async def wait_drained(amqp_url: str, processes: Sequence[ServiceProcess], timeout_s: float = 240) -> float:
    """Waits until no work queue has a message, ready or in flight (and the services still run),
    seen twice a second apart; returns the seconds it took until the first of the two. Once is not
    enough: the queues are read one after another, so the ledger can publish an event to the
    notifier's queue (already read: empty) and then acknowledge its own (read next: empty)."""
    started = time.monotonic()
    drained_at: float | None = None
    while True:
        for process in processes:
            process.check_running()
        empty = False
        if not any((await ready_counts(amqp_url)).values()):
            depths = queue_depths(amqp_url)
            empty = all(depths.get(q, (0, 0))[0] == 0 for q in WORK_QUEUES)
        if empty and drained_at is not None:
            return drained_at - started
        if empty:
            drained_at = time.monotonic()
            await asyncio.sleep(1.0)
            continue
        drained_at = None
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"the queues did not drain in {timeout_s:.0f} s: {queue_depths(amqp_url)}")
        await asyncio.sleep(0.3)


@dataclass
class ServiceProcess:
    """``zeroerrand <command>`` as a process of its own, its output appended to ``log``."""

    command: str
    env: dict[str, str]
    log: Path
    amqp_url: str
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    stop_seconds: list[float] = field(default_factory=list)

    async def start(self, timeout_s: float = 90) -> None:
        """Starts it and waits until it consumes every queue it serves."""
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.starts} of zeroerrand {self.command} ===\n".encode())
            out.flush()
            self.process = subprocess.Popen([CLI, self.command], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_running()
            depths = queue_depths(self.amqp_url)
            if all(depths.get(q, (0, 0))[1] >= 1 for q in CONSUMED_BY[self.command]):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"zeroerrand {self.command} did not start consuming in {timeout_s:.0f} s:\n{self.tail()}")
            await asyncio.sleep(0.3)

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"zeroerrand {self.command} exited ({self.process.returncode}):\n{self.tail()}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None

    def terminate(self, timeout_s: float = 60) -> float:
        """SIGTERM; the seconds until it exited (it is killed, and the test fails, after ``timeout_s``)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"zeroerrand {self.command} still ran {timeout_s:.0f} s after SIGTERM:\n{self.tail()}")
        elapsed = time.monotonic() - started
        self.process = None
        self.stop_seconds.append(elapsed)
        assert code == 0, f"zeroerrand {self.command} exited {code} after SIGTERM:\n{self.tail()}"
        return elapsed

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def service_env(amqp_url: str, data_dir: Path, database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROERRAND_") and k != "MONGODB_URL"}
    env.update({"ZEROERRAND_AMQP_URL": amqp_url, "ZEROERRAND_DATA_DIR": str(data_dir),
                "ZEROERRAND_DATABASE": database, "ZEROERRAND_ENVIRONMENT": "development",
                "ZEROERRAND_CONSOLE_PORT": "0",  # `up` serves the console too: on a free port, never 8080
                "ZEROERRAND_LOG_FORMAT": "text",  # the log is read for its WARNING and ERROR lines
                "PYTHONUNBUFFERED": "1"})
    return env


@dataclass(frozen=True)
class Outcome:
    """What the store holds after a run, per project: ledger lines and notifications (each stored
    under an id made from what it is about, so a count above the reference run's is work done twice
    under a new id, and one below it is work lost)."""

    ledger_items: Counter[str]
    notifications: Counter[str]
    projects: int

    def summary(self) -> str:
        return (f"{self.projects} projects, {sum(self.ledger_items.values()):,} ledger items, "
                f"{sum(self.notifications.values()):,} notifications")


async def settled_outcome(uri: str, database: str, pause_s: float = 1.0, timeout_s: float = 30) -> Outcome:
    """The outcome once two readings ``pause_s`` apart agree: work still finishing after the queues
    drained (a notification stored a moment after its event left the queue) is counted too."""
    deadline = time.monotonic() + timeout_s
    found = await outcome(uri, database)
    while True:
        await asyncio.sleep(pause_s)
        again = await outcome(uri, database)
        if again == found or time.monotonic() > deadline:
            return again
        found = again


async def outcome(uri: str, database: str) -> Outcome:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    try:
        db = client[database]
        items = [d async for d in db["ledger_items"].find({}, {"project_code": 1})]
        notes = [d async for d in db["notifications"].find({}, {"project_code": 1})]
        projects = await db["ledger_projects"].count_documents({})
    finally:
        await client.close()
    return Outcome(ledger_items=Counter(str(d.get("project_code")) for d in items),
                   notifications=Counter(str(n.get("project_code")) for n in notes), projects=projects)
