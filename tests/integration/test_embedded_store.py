"""The embedded store as a process: it stops within 5 s, even while busy, on SIGTERM or when
the process that started it dies, and leaves neither FerretDB nor PostgreSQL behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.settings import StoreSettings
from services.common.storage import EMBEDDED_SERVER
from tests.integration.conftest import store_directory

pytestmark = pytest.mark.integration

STOP_LIMIT_S = 5.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = store_directory("zeroerrand-stop-")
    yield path / "store"
    shutil.rmtree(path, ignore_errors=True)


def start_command(data: Path) -> list[str]:
    settings = StoreSettings()
    command = [sys.executable, str(EMBEDDED_SERVER), "--data-dir", str(data), "--ferretdb", str(settings.ferretdb)]
    if settings.postgres_bin:
        command += ["--postgres-bin", str(settings.postgres_bin)]
    return command


def servers_of(data: Path) -> list[int]:
    """PIDs of the FerretDB and PostgreSQL processes that serve ``data``."""
    found = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if int(pid) != os.getpid()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def load(uri: str) -> subprocess.Popen[bytes]:
    """A client process writing to the store as fast as it can (four concurrent writers)."""
    script = textwrap.dedent(f"""
        import asyncio
        from pymongo import AsyncMongoClient
        async def writer(db, k):
            n = 0
            while True:
                await db.busy.insert_many([{{"k": k, "n": n + i, "body": "x" * 2000}} for i in range(200)])
                await db.busy.update_many({{"k": k}}, {{"$inc": {{"seen": 1}}}})
                n += 200
        async def main():
            db = AsyncMongoClient({uri!r})["load"]
            await asyncio.gather(*(writer(db, k) for k in range(4)), return_exceptions=True)
        asyncio.run(main())
    """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_gone(pids: list[int], limit_s: float) -> float:
    t0 = time.monotonic()
    while any(alive(pid) for pid in pids):
        if time.monotonic() - t0 > limit_s + 10:
            break
        time.sleep(0.02)
    return time.monotonic() - t0


def test_sigterm_stops_the_busy_store_within_5_seconds(data_dir: Path) -> None:
    store = subprocess.Popen(start_command(data_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert store.stdout is not None
    started = json.loads(store.stdout.readline())
    servers = servers_of(data_dir)
    assert len(servers) >= 2, servers  # FerretDB and the PostgreSQL postmaster (and its workers)
    writer = load(started["uri"])
    try:
        time.sleep(3)  # busy: four writers, inserts and updates in flight
        assert writer.poll() is None
        store.send_signal(signal.SIGTERM)
        took = wait_gone([store.pid, *servers], STOP_LIMIT_S)
        store.wait(5)
    finally:
        writer.kill()
    assert took <= STOP_LIMIT_S, f"took {took:.1f} s"
    assert not [pid for pid in servers_of(data_dir) if alive(pid)]
    assert store.returncode == 0


def test_the_store_stops_when_the_process_that_started_it_is_killed(data_dir: Path, tmp_path: Path) -> None:
    # the parent starts the store with a pipe on its stdin (as the services do), then is killed -9
    parent_script = textwrap.dedent(f"""
        import subprocess, sys, time
        store = subprocess.Popen({start_command(data_dir)!r}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        sys.stdout.write(store.stdout.readline().decode()); sys.stdout.flush()
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_script], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    started = json.loads(parent.stdout.readline())
    supervisor = started["pid"]
    servers = servers_of(data_dir)
    writer = load(started["uri"])
    try:
        time.sleep(2)
        parent.kill()
        parent.wait(5)
        took = wait_gone([supervisor, *servers], STOP_LIMIT_S)
    finally:
        writer.kill()
    assert took <= STOP_LIMIT_S, f"took {took:.1f} s"
    assert not [pid for pid in servers_of(data_dir) if alive(pid)]


def test_the_servers_stop_when_the_supervisor_itself_is_killed(data_dir: Path) -> None:
    store = subprocess.Popen(start_command(data_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert store.stdout is not None
    json.loads(store.stdout.readline())
    servers = servers_of(data_dir)
    store.kill()  # no chance to stop anything: the kernel tells both servers (PR_SET_PDEATHSIG)
    store.wait(5)
    took = wait_gone(servers, STOP_LIMIT_S)
    assert took <= STOP_LIMIT_S, f"took {took:.1f} s"
    # its socket directories stay until the next start on this data directory removes them, now
    # provably stale (their store is dead, no server listens in them)
    left = json.loads((data_dir / "run.json").read_text())["dirs"]
    assert all(Path(d).exists() for d in left)
    again = subprocess.Popen(start_command(data_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert again.stdout is not None
    assert "uri" in json.loads(again.stdout.readline())
    again.send_signal(signal.SIGTERM)
    again.wait(10)
    assert not any(Path(d).exists() for d in left)


def test_a_second_store_on_the_same_data_is_refused_with_the_reason(data_dir: Path) -> None:
    first = subprocess.Popen(start_command(data_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert first.stdout is not None
    json.loads(first.stdout.readline())
    try:
        second = subprocess.run(start_command(data_dir), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1
        error = json.loads(second.stdout.splitlines()[-1])["error"]
        assert "另一个内置存储正在使用数据目录" in error and str(data_dir) in error
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(10)


# -- as the services and the CLI use it: EmbeddedServer.open (join, or start and own) -----------


def user(data: Path, hold_s: float, tag: str) -> subprocess.Popen[str]:
    """A process that opens the store as a service or a CLI command does, prints the store's pid,
    pings it every 0.1 s for ``hold_s`` seconds (printing any failure), then closes it."""
    settings = StoreSettings()
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from pymongo import AsyncMongoClient
        from services.common.storage import EmbeddedServer
        async def main():
            server = EmbeddedServer(Path({str(settings.ferretdb)!r}), Path({str(data)!r}), 60)
            endpoint = await server.open()
            print("{tag}", endpoint.pid, flush=True)
            client = AsyncMongoClient(endpoint.uri, serverSelectionTimeoutMS=2000)
            loop = asyncio.get_running_loop()
            end = loop.time() + {hold_s}
            while loop.time() < end:
                try:
                    await client.admin.command("ping")
                except Exception as exc:
                    print("{tag} FAILED", repr(exc), flush=True)
                await asyncio.sleep(0.1)
            await client.close()
            await server.stop()
        asyncio.run(main())
    """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])


def test_the_store_outlives_the_process_that_started_it_while_another_uses_it(data_dir: Path) -> None:
    starter = user(data_dir, 1.0, "starter")  # a CLI command: starts the store, done a second later
    assert starter.stdout is not None
    pid = int(starter.stdout.readline().split()[1])
    joiner = user(data_dir, 4.0, "joiner")  # `zeroerrand up`, started meanwhile: joins
    assert joiner.stdout is not None
    assert int(joiner.stdout.readline().split()[1]) == pid
    starter.wait(30)
    assert alive(pid)  # the starter is gone; the store serves the joiner
    rest, _ = joiner.communicate(timeout=30)
    assert "FAILED" not in rest
    took = wait_gone([pid], STOP_LIMIT_S)  # the last user left: the store stops
    assert took <= STOP_LIMIT_S, f"took {took:.1f} s"


def test_processes_that_find_no_store_at_once_start_one(data_dir: Path) -> None:
    users = [user(data_dir, 2.0, f"user{n}") for n in range(3)]
    outputs = [u.communicate(timeout=90)[0] for u in users]
    assert all(u.returncode == 0 for u in users), outputs
    pids = {out.split()[1] for out in outputs}
    assert len(pids) == 1, outputs  # one store, the others joined it
    assert not any("FAILED" in out for out in outputs)


def test_an_address_file_of_another_store_is_not_trusted(data_dir: Path) -> None:
    other = data_dir.parent / "other"  # reachable by the postgres user, like data_dir
    foreign = subprocess.Popen(start_command(other), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert foreign.stdout is not None
    address = json.loads(foreign.stdout.readline())
    assert "pid" in address, address
    try:
        data_dir.mkdir(parents=True)
        (data_dir / "address.json").write_text(json.dumps(address))  # copied, or left by a reused port
        own = user(data_dir, 0.2, "own")
        out, _ = own.communicate(timeout=90)
        assert int(out.split()[1]) != address["pid"]  # it started its own store
    finally:
        foreign.send_signal(signal.SIGTERM)
        foreign.wait(10)


def test_one_of_two_users_in_a_process_leaving_does_not_stop_the_store_for_the_other(data_dir: Path) -> None:
    # `zeroerrand up`: the notifier and the ledger each open the store; a CLI command started it
    starter = user(data_dir, 1.0, "starter")
    assert starter.stdout is not None
    pid = int(starter.stdout.readline().split()[1])
    settings = StoreSettings()
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from pymongo import AsyncMongoClient
        from services.common.storage import EmbeddedServer
        async def main():
            first = EmbeddedServer(Path({str(settings.ferretdb)!r}), Path({str(data_dir)!r}), 60)
            second = EmbeddedServer(Path({str(settings.ferretdb)!r}), Path({str(data_dir)!r}), 60)
            endpoint = await first.open()
            await second.open()
            await asyncio.sleep(2.0)  # the starter is gone by now
            await first.stop()  # one service of the process closes its store
            client = AsyncMongoClient(endpoint.uri, serverSelectionTimeoutMS=2000)
            for _ in range(20):  # the other goes on working
                await client.admin.command("ping")
                await asyncio.sleep(0.1)
            print("ok", flush=True)
            await client.close()
            await second.stop()
        asyncio.run(main())
    """)
    both = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90,
                          cwd=Path(__file__).resolve().parents[2])
    starter.wait(30)
    assert both.returncode == 0 and both.stdout.strip() == "ok", both.stderr[-2000:]
    took = wait_gone([pid], STOP_LIMIT_S)
    assert took <= STOP_LIMIT_S, f"took {took:.1f} s"


def test_a_store_run_by_hand_with_a_relative_path_is_joined(data_dir: Path) -> None:
    settings = StoreSettings()
    by_hand = subprocess.Popen([sys.executable, "-m", "services.common.embedded_store", "--data-dir", data_dir.name,
                                "--ferretdb", str(settings.ferretdb), "--until-signal"],
                               cwd=data_dir.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert by_hand.stdout is not None
    pid = json.loads(by_hand.stdout.readline())["pid"]
    try:
        joiner = user(data_dir, 0.2, "joiner")
        out, _ = joiner.communicate(timeout=60)
        assert int(out.split()[1]) == pid, out
        assert alive(pid)  # --until-signal: its closed stdin and the joiner leaving do not stop it
    finally:
        by_hand.send_signal(signal.SIGTERM)
        by_hand.wait(10)
