"""200 people opening 政务服务局's board at once, while agreements are signed (prints figures; asserts
nothing on timing; not a test).

In a private RabbitMQ vhost (created and deleted here) and a temporary data directory, it runs
``zeroerrand up`` of two versions of the code in turn on the same data:

- **baseline**: the code this branch started from (``git merge-base HEAD main``, exported with
  ``git archive`` into a temporary directory), where the console runs in ``up``'s process;
- **this tree**: ``python -m services.cli up`` of this checkout.

The first ``up`` is given a year (``--projects`` agreements of ``bench/year.py``, signed at once,
waited for until every queue is drained). Then, for each version:

1. ``--accounts`` 政务服务局 accounts (role ``gov_service``) sign in over HTTP as a person does
   (the login form's CSRF token, then the form), ``--loads`` sessions in all.
2. **Idle**: ``--probes`` agreements (the aluminium example, 23 items, each its own project) are
   signed one after another; for each, the time from just before publishing ``agreement.signed`` to
   the ``created_at`` of the project's last notification, read once the count of its notifications
   has not moved for 3 s and no service queue holds a message ("fully notified").
3. **Under load**: every session loads ``/board`` in a loop (all ``--loads`` at once, each load
   waiting at most ``--timeout`` s) while the same number of probe agreements are signed and timed
   the same way; the loads stop when the probes are done and every session has loaded the board at
   least once. Figures: the board loads' p50/p99/max, timeouts, answers by status (a 503 is the
   console's own "busy, retry after"), the first wave alone (the ``--loads`` loads started together),
   and the probes idle and under load (goal: under load ≤ 2× idle).

    .venv/bin/python bench/console_load.py [--projects 250] [--loads 200] [--accounts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402
from year import agreements, queue_depths, rabbitmqctl  # noqa: E402

from services.common.agreement_files import load_agreement, to_event  # noqa: E402
from services.common.bus import BrokerPublisher, Outgoing, make_broker  # noqa: E402
from services.common.settings import BrokerSettings  # noqa: E402
from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, declare_topology  # noqa: E402

SERVICE_QUEUES = ("zeroerrand.router.agreements", "zeroerrand.notifier.events", "zeroerrand.evaluation.events",
                  "zeroerrand.evaluation.requests")


@dataclass
class Figures:
    label: str
    board_rows: int = 0
    loads: list[float] = field(default_factory=list)  # seconds, answered loads (any status)
    first_wave: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0
    errors: int = 0
    idle: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    load_window_s: float = 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))] if ordered else float("nan")


class Up:
    """One ``zeroerrand up``: its process, log and console address."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.offset = log.stat().st_size

    async def console_url(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.log.read_text(errors="replace")
            found = re.findall(r"console listening on (http://[0-9.:]+)", text)
            if found:
                return str(found[-1])
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"zeroerrand up did not start its console: {text[-3000:]}")
            await asyncio.sleep(0.3)

    def stop(self) -> float:
        t0 = time.perf_counter()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.perf_counter() - t0


async def drained(url: str, vhost: str, up: Up) -> None:
    """Until no service queue holds a message, ready or unacknowledged."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        while True:
            await asyncio.sleep(0.5)
            if up.process.poll() is not None:
                raise RuntimeError(f"zeroerrand up stopped: {up.log.read_text()[-3000:]}")
            ready = [(await channel.declare_queue(q, passive=True)).declaration_result.message_count
                     for q in SERVICE_QUEUES]
            if not any(ready) and all(queue_depths(vhost).get(q, 0) == 0 for q in SERVICE_QUEUES):
                return
    finally:
        await connection.close()


class Prober:
    """Signs one agreement (its own project) and times it until fully notified."""

    def __init__(self, url: str, uri: str) -> None:
        self.url, self.uri, self.n = url, uri, 0
        self.source = load_agreement(ROOT / "examples" / "agreements" / "hl-2026-0031-aluminium-frames.yaml")

    async def probe(self, tag: str) -> float:
        self.n += 1
        code = f"HLXQ-2026-P{tag}{self.n:03d}"
        project = self.source.project.model_copy(update={"code": code})
        event = to_event(self.source.model_copy(update={"agreement_id": f"HLXQ-XY-P{tag}{self.n:03d}",
                                                        "project": project, "signed_on": date.today()}))
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.uri, tz_aware=True)
        notifications = client["zeroerrand"]["notifications"]
        broker = make_broker(self.url)
        try:
            async with broker:
                await broker.connect()
                await declare_topology(broker)
                signed = datetime.now(UTC)
                await BrokerPublisher(broker).publish_all([Outgoing(AGREEMENTS, AGREEMENT_SIGNED, event, event.event_id,
                                                                    event.type)])
            count, since = -1, time.monotonic()
            while True:
                await asyncio.sleep(0.25)
                now = await notifications.count_documents({"project_code": code})
                if now != count:
                    count, since = now, time.monotonic()
                elif count > 0 and time.monotonic() - since > 3:
                    break
            last = [d async for d in notifications.find({"project_code": code}, {"created_at": 1})
                    .sort("created_at", -1).limit(1)]
            return float((last[0]["created_at"] - signed).total_seconds())
        finally:
            await client.close()


async def sign_in(base: str, username: str, password: str, timeout: float) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=base, timeout=timeout, limits=httpx.Limits(max_connections=1))
    page = await http.get("/login")
    token = re.search(r'name="csrftoken" value="([^"]+)"', page.text)
    assert token is not None, page.text[:300]
    done = await http.post("/login", data={"csrftoken": token.group(1), "username": username, "password": password,
                                           "next": "/"})
    assert done.status_code == 303, done.text[:300]
    return http


async def measure(figures: Figures, base: str, users: list[str], password: str, args: argparse.Namespace,
                  prober: Prober, tag: str) -> None:
    sessions = [await sign_in(base, users[i % len(users)], password, args.timeout) for i in range(args.loads)]
    first = await sessions[0].get("/board")
    found = re.search(r"未办结的事项 (\d+) 项", first.text)
    figures.board_rows = int(found.group(1)) if found else -1
    for _ in range(args.probes):
        figures.idle.append(await prober.probe(f"{tag}I"))

    stop = asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        wave = True
        while wave or not stop.is_set():
            t0 = time.perf_counter()
            try:
                answer = await http.get("/board")
                took = time.perf_counter() - t0
                figures.loads.append(took)
                figures.statuses[answer.status_code] = figures.statuses.get(answer.status_code, 0) + 1
                if wave:
                    figures.first_wave.append(took)
                if answer.status_code == 503:
                    await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
            except httpx.TimeoutException:
                figures.timeouts += 1
            except httpx.HTTPError:
                figures.errors += 1
            wave = False

    t0 = time.perf_counter()
    loads = [asyncio.create_task(client(http)) for http in sessions]
    await asyncio.sleep(2)  # the load under way
    for _ in range(args.probes):
        figures.loaded.append(await prober.probe(f"{tag}L"))
    stop.set()
    await asyncio.gather(*loads)
    figures.load_window_s = time.perf_counter() - t0
    for http in sessions:
        await http.aclose()


def report(figures: Figures) -> None:
    print(f"\n== {figures.label}")
    print(f"  政务服务局's board: {figures.board_rows:,} open lines (100 a page)")
    if figures.first_wave:
        print(f"  first wave ({len(figures.first_wave)} loads at once, answered): p50 {pct(figures.first_wave, 0.5):.2f} s, "
              f"p99 {pct(figures.first_wave, 0.99):.2f} s, max {max(figures.first_wave):.2f} s")
    if figures.loads:
        print(f"  all loads in {figures.load_window_s:.0f} s: {len(figures.loads):,} answered "
              f"({', '.join(f'{k}: {v:,}' for k, v in sorted(figures.statuses.items()))}), "
              f"p50 {pct(figures.loads, 0.5):.2f} s, p99 {pct(figures.loads, 0.99):.2f} s, max {max(figures.loads):.2f} s")
    print(f"  timeouts: {figures.timeouts} (client timeout {ARGS.timeout:g} s); other errors: {figures.errors}")
    idle, loaded = statistics.median(figures.idle), statistics.median(figures.loaded)
    print(f"  signed → fully notified: idle {', '.join(f'{v:.2f}' for v in figures.idle)} s (median {idle:.2f}); "
          f"under load {', '.join(f'{v:.2f}' for v in figures.loaded)} s (median {loaded:.2f}): "
          f"x{loaded / idle:.1f} (goal ≤ 2)")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def main() -> None:
    print(f"machine: {describe()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {loadavg()}")
    vhost = f"zeroerrand-console-load-{secrets.token_hex(4)}"
    url = BrokerSettings().amqp_url.rstrip("/") + "/" + quote(vhost, safe="")
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    data = Path(tempfile.mkdtemp(prefix="zeroerrand-console-load-"))
    data.chmod(0o755)
    env = {**os.environ, "ZEROERRAND_AMQP_URL": url, "ZEROERRAND_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1",
           "ZEROERRAND_NOTIFIER_WEBHOOK_SECRET": secrets.token_hex(32), "ZEROERRAND_ROUTER_WATCH_RULES": "false",
           "ZEROERRAND_CONSOLE_SECRET_KEY": secrets.token_hex(32), "ZEROERRAND_CONSOLE_PORT": "0",
           "ZEROERRAND_LOG_FORMAT": "text"}
    env.setdefault("ZEROERRAND_ENVIRONMENT", "development")  # RabbitMQ's guest user, as on a developer's machine
    env.pop("MONGODB_URL", None)
    env.pop("PYTHONPATH", None)
    versions: list[tuple[str, list[str], Path]] = [("this tree (console in its own process, bounded)",
                                                    [sys.executable, "-m", "services.cli", "up"], ROOT)]
    baseline_dir: Path | None = None
    if ARGS.baseline != "none" and Path(ARGS.baseline).is_dir():  # a checkout: run as it is
        commit = subprocess.run(["git", "-C", ARGS.baseline, "log", "--oneline", "-1"], capture_output=True,
                                text=True).stdout.strip()
        versions.insert(0, (f"baseline {ARGS.baseline} at {commit[:60]} (console inside up)",
                            [sys.executable, "-m", "services.cli", "up"], Path(ARGS.baseline)))
    elif ARGS.baseline != "none":
        ref = ARGS.baseline or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT, check=True,
                                              capture_output=True, text=True).stdout.strip()
        baseline_dir = Path(tempfile.mkdtemp(prefix="zeroerrand-baseline-"))
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline_dir)], input=archive, check=True)
        (baseline_dir / ".venv").symlink_to((ROOT / ".venv").resolve())  # its embedded store's FerretDB
        versions.insert(0, (f"baseline {ref[:10]} (console inside up)", [sys.executable, "-m", "services.cli", "up"],
                            baseline_dir))
    password = secrets.token_hex(12)
    users = [f"gs.bench{i}" for i in range(ARGS.accounts)]
    results = []
    try:
        for n, (label, command, cwd) in enumerate(versions):
            up = Up(command, cwd, env, data / f"up-{n}.log")
            try:
                base = await up.console_url()
                uri = json.loads((data / "store" / "address.json").read_text())["uri"]
                if n == 0:
                    await asyncio.sleep(2)
                    year = agreements(ARGS.projects, 2026)
                    t0 = time.perf_counter()
                    broker = make_broker(url)
                    async with broker:
                        await broker.connect()
                        await declare_topology(broker)
                        await BrokerPublisher(broker).publish_all(
                            [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, a, a.event_id, a.type) for a in year])
                    await drained(url, vhost, up)
                    print(f"\nyear: {ARGS.projects} agreements ({sum(len(a.plan) for a in year):,} plan lines) "
                          f"drained in {time.perf_counter() - t0:.0f} s")
                    for user in users:
                        subprocess.run([sys.executable, "-m", "services.cli", "users", "add", user, "--unit",
                                        "gov_service_bureau", "--role", "gov_service", "--name", "基准",
                                        "--password-stdin"], cwd=ROOT, env=env, input=password + "\n", text=True,
                                       check=True, capture_output=True, timeout=120)
                await drained(url, vhost, up)
                figures = Figures(label)
                print(f"\n{label}: load average before {loadavg()}")
                await measure(figures, base, users, password, ARGS, Prober(url, uri), str(n))
                print(f"  load average after {loadavg()}")
                report(figures)
                results.append(figures)
            finally:
                print(f"  zeroerrand up stopped {up.stop():.1f} s after SIGTERM (exit {up.process.returncode})")
    finally:
        rabbitmqctl("delete_vhost", vhost)
        shutil.rmtree(data, ignore_errors=True)
        if baseline_dir is not None:
            shutil.rmtree(baseline_dir, ignore_errors=True)
    print("\nsummary:")
    for figures in results:
        print(f"  {figures.label}: board p50 {pct(figures.loads, 0.5):.2f} s, p99 {pct(figures.loads, 0.99):.2f} s, "
              f"timeouts {figures.timeouts}; notified idle {statistics.median(figures.idle):.2f} s, under load "
              f"{statistics.median(figures.loaded):.2f} s")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--projects", type=int, default=250, help="agreements of the year (default 250)")
    parser.add_argument("--loads", type=int, default=200, help="concurrent board loads (default 200)")
    parser.add_argument("--accounts", type=int, default=10, help="政务服务局 accounts the sessions use (default 10)")
    parser.add_argument("--probes", type=int, default=3, help="agreements timed idle, and again under load (default 3)")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout of a board load (default 120 s)")
    parser.add_argument("--baseline", default="",
                        help="the baseline: a git ref (default: git merge-base HEAD main), exported and run, or "
                             "the directory of a checkout, run as it is; 'none': this tree only")
    return parser.parse_args()


ARGS = parse() if __name__ == "__main__" else argparse.Namespace(timeout=120.0)

if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
