"""A year of signings through ``zeroerrand up`` on the embedded store (prints figures; not a test).

In a private RabbitMQ vhost (created and deleted here) and a temporary data directory, it starts
``zeroerrand up`` (router, notifier, evaluation, and the embedded store: FerretDB on PostgreSQL) as
an operator would, then publishes N ``agreement.signed`` at once (copies of the example agreements
with their own agreement id, project code and signing day spread over the year), and waits until
every queue is drained: every item routed, every notification stored, every ledger line opened and
made ready. It prints the time that took and the rates, then times the operator's commands
against the filled store, as a user runs them (a new process each, Python start-up included):
``zeroerrand report --year`` and ``zeroerrand notifications list --project``; finally it stops
``zeroerrand up`` with SIGTERM and prints how long that took.

Goals (issue 8): the year ingested in under 10 minutes; the report under 10 s; the list under 0.5 s.
With ``--backup``, it then times ``zeroerrand store backup`` (``up`` still running), ``verify`` and
``restore`` into a fresh data directory, and prints the sizes (docs/backup.md quotes them).

    .venv/bin/python bench/year.py [--projects 300] [--backup]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402

from services.common.agreement_files import load_agreement, to_event  # noqa: E402
from services.common.bus import BrokerPublisher, Outgoing, make_broker  # noqa: E402
from services.common.settings import BrokerSettings  # noqa: E402
from services.common.topology import AGREEMENT_SIGNED, AGREEMENTS, declare_topology  # noqa: E402

EXAMPLES = ["hl-2026-0031-aluminium-frames.yaml", "hl-2026-0047-intelligent-computing-centre.yaml",
            "hl-2026-0058-consult-and-unknown.yaml"]
CLI = str(ROOT / ".venv" / "bin" / "zeroerrand")


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def queue_depths(vhost: str) -> dict[str, int]:
    """Messages ready plus unacknowledged, per queue of the vhost."""
    depths = {}
    for line in rabbitmqctl("list_queues", "-p", vhost, "name", "messages", "consumers").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            depths[parts[0]] = int(parts[1])
    return depths


def agreements(count: int, year: int) -> list[Any]:
    rng = random.Random(2026)
    sources = [load_agreement(ROOT / "examples" / "agreements" / name) for name in EXAMPLES]
    out = []
    for n in range(count):
        # mostly the 23-item project (a real project needs ~26), some smaller ones, some with an unknown item
        source = rng.choices(sources, weights=(8, 1, 1))[0]
        signed = date(year, 1, 5) + timedelta(days=rng.randrange(330))
        project = source.project.model_copy(update={"code": f"HLXQ-{year}-Y{n:04d}"})
        out.append(to_event(source.model_copy(update={"agreement_id": f"HLXQ-XY-{year}-Y{n:04d}", "project": project,
                                                       "signed_on": signed})))
    return out


def timed(command: list[str], env: dict[str, str], runs: int) -> tuple[float, str]:
    """Median wall time of a CLI command over ``runs`` runs, and its last output."""
    times, output = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
        output = done.stdout
    return statistics.median(times), output


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=300)
    parser.add_argument("--year", type=int, default=2026)
    parser.add_argument("--backup", action="store_true",
                        help="also time zeroerrand store backup, verify and restore of the year, `up` still running")
    args = parser.parse_args()
    print(f"machine: {describe()}")

    vhost = f"zeroerrand-year-{secrets.token_hex(4)}"
    url = BrokerSettings().amqp_url.rstrip("/") + "/" + quote(vhost, safe="")
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    data = Path(tempfile.mkdtemp(prefix="zeroerrand-year-"))
    data.chmod(0o755)  # as root, PostgreSQL runs as the postgres user
    # a webhook secret and a console key of its own: the development ones are refused outside
    # development; the console `up` also serves on a free port
    env = {**os.environ, "ZEROERRAND_AMQP_URL": url, "ZEROERRAND_DATA_DIR": str(data),
           "ZEROERRAND_NOTIFIER_WEBHOOK_SECRET": secrets.token_hex(32),
           "ZEROERRAND_CONSOLE_SECRET_KEY": secrets.token_hex(32), "ZEROERRAND_CONSOLE_PORT": "0"}
    env.pop("MONGODB_URL", None)
    log = (data / "up.log").open("w")
    up = subprocess.Popen([CLI, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (data / "store" / "address.json").exists() or not all(
                queue_depths(vhost).get(q) is not None for q in ("zeroerrand.notifier.events", "zeroerrand.evaluation.events")):
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"zeroerrand up did not start: {(data / 'up.log').read_text()[-3000:]}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # consumers attached

        signed = agreements(args.projects, args.year)
        planned = sum(len(a.plan) for a in signed)
        broker = make_broker(url)
        t0 = time.perf_counter()
        async with broker:
            await broker.connect()
            await declare_topology(broker)
            await BrokerPublisher(broker).publish_all(
                [Outgoing(AGREEMENTS, AGREEMENT_SIGNED, a, a.event_id, a.type) for a in signed])
        published = time.perf_counter() - t0
        watched = ("zeroerrand.router.agreements", "zeroerrand.notifier.events", "zeroerrand.evaluation.events",
                   "zeroerrand.evaluation.requests")
        # Drained when no queue has a message ready (a passive declare: cheap) and then, asked once,
        # none has one in flight either (rabbitmqctl, which costs a CPU-second: not polled).
        busy_until = dict.fromkeys(watched, 0.0)  # when each queue was last seen with work
        connection = await aio_pika.connect(url, ssl_context=BrokerSettings(amqp_url=url).ssl_context())
        channel = await connection.channel()
        while True:
            await asyncio.sleep(0.2)
            ready = {q: (await channel.declare_queue(q, passive=True)).declaration_result.message_count for q in watched}
            now = time.perf_counter() - t0
            for queue, count in ready.items():
                if count:
                    busy_until[queue] = now
            if up.poll() is not None:
                raise RuntimeError(f"zeroerrand up stopped: {(data / 'up.log').read_text()[-3000:]}")
            if not any(ready.values()):
                finished = time.perf_counter()
                if all(queue_depths(vhost).get(q, 0) == 0 for q in watched):
                    break
        await connection.close()
        elapsed = finished - t0
        dead = {q: n for q, n in queue_depths(vhost).items() if q.endswith(".dead") and n}

        import json
        uri = json.loads((data / "store" / "address.json").read_text())["uri"]
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
        db = client["zeroerrand"]
        counts = {name: await db[name].count_documents({}) for name in
                  ("notifications", "notifier_items", "ledger_items", "ledger_projects")}
        ready = await db["ledger_items"].count_documents({"state": "ready"})
        await client.close()

        print(f"store: embedded (FerretDB 1.24 on PostgreSQL), data in a temporary directory; vhost {vhost}")
        print(f"signed {args.projects} agreements ({planned:,} plan lines, {planned / args.projects:.1f} each) in one burst; "
              f"published in {published * 1000:.0f} ms")
        print(f"drained in {elapsed:.1f} s: {counts['ledger_items']:,} ledger items ({ready:,} ready), "
              f"{counts['ledger_projects']:,} projects, {counts['notifications']:,} notifications, "
              f"{counts['notifier_items']:,} notifier read-model items; parked: {dead or 'none'}")
        print(f"  {counts['ledger_items'] / elapsed:,.0f} items/s, {counts['notifications'] / elapsed:,.0f} notifications/s "
              f"(goal: the year in under 600 s)")
        print("  each queue last seen with work at: " + ", ".join(
            f"{q.removeprefix('zeroerrand.')} {t:.1f} s" for q, t in busy_until.items()))

        report_s, report_out = timed([CLI, "report", "--year", str(args.year), "--out", str(data / "report")], env, 3)
        print(f"zeroerrand report --year {args.year}: {report_s:.2f} s median of 3 (goal < 10 s); "
              f"{report_out.strip().splitlines()[0] if report_out.strip() else ''}")
        code = signed[len(signed) // 2].project.code
        list_s, list_out = timed([CLI, "notifications", "list", "--project", code], env, 5)
        print(f"zeroerrand notifications list --project {code}: {list_s:.2f} s median of 5, "
              f"{len(list_out.strip().splitlines())} lines (goal < 0.5 s)")
        show_s, _ = timed([CLI, "ledger", "show", code], env, 5)
        print(f"zeroerrand ledger show {code}: {show_s:.2f} s median of 5")
        python_s, _ = timed([sys.executable, "-c", "import services.cli"], env, 5)
        print(f"  (of which Python start-up and imports: {python_s:.2f} s)")
        await console_pages(data, env, uri, code)
        if args.backup:
            backup_year(data, env)
    finally:
        t_stop = time.perf_counter()
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
        print(f"zeroerrand up stopped {time.perf_counter() - t_stop:.1f} s after SIGTERM (exit {up.returncode})")
        log.close()
        rabbitmqctl("delete_vhost", vhost)
        subprocess.run(["rm", "-rf", str(data)], check=False)


def backup_year(data: Path, env: dict[str, str]) -> None:
    """``zeroerrand store backup`` of the year while ``up`` runs, ``verify``, and ``restore`` into a
    fresh data directory: each timed as an operator runs it (a new process, Python start-up included)."""
    here = [sys.executable, "-m", "services.cli", "store"]  # this checkout's commands
    archive = data / "year.zeb"
    for label, command in (("backup", [*here, "backup", str(archive)]), ("verify", [*here, "verify", str(archive)]),
                           ("restore", [*here, "restore", str(archive), "--store-dir", str(data / "restored" / "store")])):
        t0 = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        took = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"zeroerrand store {label} failed: {done.stderr[-2000:]}")
        total = next((line.strip() for line in done.stdout.splitlines() if line.strip().startswith("共 ")), "")
        print(f"zeroerrand store {label}: {took:.1f} s; {total}")
    print(f"  backup file {archive.stat().st_size / 1e6:.1f} MB; store on disk "
          f"{du(data / 'store' / 'postgresql') / 1e6:.0f} MB")


def du(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        with contextlib.suppress(OSError):  # a running server's temporary files come and go
            total += f.stat().st_size if f.is_file() else 0
    return total


CONSOLE_ACCOUNTS = (  # username, unit, role: the boards with the most lines in this year
    ("zl.bench", "zhenglian_company", "service_company"), ("pc.bench", "planning_construction_bureau", "department"),
    ("ed.bench", "econ_dev_bureau", "econ_dev"), ("er.bench", "econ_dev_bureau", "recruiting"))


async def console_pages(data: Path, env: dict[str, str], uri: str, code: str) -> None:
    """Times the console's heaviest pages over HTTP (median of 5, a signed-in session each) against
    the same view called in this process on the same store: what HTTP, sessions and the template add."""
    import re

    import httpx

    from services.common.access import access_link
    from services.common.storage import Store
    from services.evaluation import views
    from services.evaluation.repository import MongoLedgerRepository
    from services.evaluation.views import context_from_rules

    found = re.search(r"console listening on (http://[0-9.:]+)", (data / "up.log").read_text())
    if found is None:
        raise RuntimeError("the console of `zeroerrand up` did not say where it listens")
    base = found.group(1)
    password = secrets.token_hex(12)
    for username, unit, role in CONSOLE_ACCOUNTS:
        subprocess.run([CLI, "users", "add", username, "--unit", unit, "--role", role, "--name", "基准",
                        "--password-stdin"], env=env, input=password + "\n", text=True, check=True,
                       capture_output=True, timeout=60)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    repo = MongoLedgerRepository(Store(client, "zeroerrand"))
    ctx = context_from_rules(ROOT / "rules", short_names=True)

    async def median(call: Any) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            await call()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    async def session(username: str | None) -> httpx.AsyncClient:
        http = httpx.AsyncClient(base_url=base, timeout=120)
        if username is None:
            key = env["ZEROERRAND_CONSOLE_SECRET_KEY"]
            opened = await http.get(access_link(base, key, code).removeprefix(base))
            assert opened.status_code == 303 and opened.headers["location"] == "/e", opened.text[:500]
            return http
        page = await http.get("/login")
        token = re.search(r'name="csrftoken" value="([^"]+)"', page.text)
        assert token is not None
        done = await http.post("/login", data={"csrftoken": token.group(1), "username": username, "password": password,
                                               "next": "/"})
        assert done.status_code == 303, done.text[:500]
        return http

    async def get(http: httpx.AsyncClient, path: str) -> None:
        (await http.get(path)).raise_for_status()

    pages = [
        (None, "/e", "the enterprise's project page", lambda: views.project_progress(repo, ctx, code)),
        ("zl.bench", "/board", "政联公司's board", lambda: views.unit_board(repo, ctx, "zhenglian_company")),
        ("pc.bench", "/board", "规划建设局's board", lambda: views.unit_board(repo, ctx, "planning_construction_bureau")),
        ("ed.bench", "/task-orders", "经发局's task orders", lambda: views.task_orders_to_issue(repo, ctx)),
        ("er.bench", "/projects", "经发局's projects as 招引单位",
         lambda: views.recruiting_projects(repo, ctx, "econ_dev_bureau")),
    ]
    print(f"console pages over HTTP ({base}) against the same view in-process, median of 5:")
    for username, path, label, view in pages:
        http = await session(username)
        page_s = await median(lambda http=http, path=path: get(http, path))
        rows = await view()
        view_s = await median(view)
        size = len(rows.items) if hasattr(rows, "items") and not isinstance(rows, list) else len(rows)
        print(f"  {label} ({path}, {size:,} rows): page {page_s:.2f} s, view {view_s:.2f} s "
              f"(x{page_s / view_s:.1f})")
        await http.aclose()
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
