"""The embedded store never harms a live store, and says in one line when its disk is full or its
data directory cannot be written.

- A start refused because a store runs on the directory changes nothing there (address.json,
  run.json, the socket directories, postmaster.pid) and the live store goes on answering.
- A copy of a running store's data directory (``cp -a``: a stale postmaster.pid, and a run.json and
  address.json naming the original's sockets) starts on its own and leaves the original alone.
- Socket directories a dead store left are removed at the next start, those a live server still
  listens in are not.
- A full disk (a tmpfs of our own: these tests mount, as root; if they cannot, they fail saying
  why, never skip): the store stops with the cause in ``store.log``, a service using it logs that
  line and stops, a start while the disk is full says so; once space is freed, everything
  acknowledged before the failure is there.
- A read-only data directory or one PostgreSQL's user cannot write: one line naming the directory
  and the cause, no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.integration.conftest import store_directory
from tests.integration.test_embedded_store import alive, start_command

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def base() -> Iterator[Path]:
    path = store_directory("zeroerrand-safety-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Running:
    """A store process started as the services start it (its standard input a pipe we hold)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.process = subprocess.Popen(start_command(data), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        self.address: dict[str, Any] = json.loads(line) if line else {"error": self.stderr()}
        assert "uri" in self.address, self.address

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace") if self.process.poll() is not None else ""

    def client(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(self.address["uri"], serverSelectionTimeoutMS=5000)

    def ping(self) -> bool:
        with self.client() as client:
            return bool(client.admin.command("ping")["ok"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(15)


def files_of(data: Path) -> dict[str, Any]:
    """What a live store's neighbours must leave alone: its address and run files, PostgreSQL's
    lock file, and the socket directories with what is in them."""
    run = json.loads((data / "run.json").read_text())
    return {"address.json": (data / "address.json").read_text(), "run.json": run,
            "postmaster.pid": (data / "postgresql" / "postmaster.pid").read_text(),
            "sockets": {d: sorted(p.name for p in Path(d).iterdir()) for d in run["dirs"]}}


def start_once(data: Path) -> dict[str, Any]:
    """A start with nobody holding its standard input: the JSON line it printed."""
    done = subprocess.run(start_command(data), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip(), done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_refused_second_start_changes_nothing_of_the_live_store(base: Path) -> None:
    live = Running(base / "store")
    try:
        before = files_of(live.data)
        refused = start_once(live.data)
        assert "另一个内置存储正在使用数据目录" in refused["error"] and str(live.data) in refused["error"]
        assert files_of(live.data) == before
        assert all(Path(d).is_dir() for d in before["run.json"]["dirs"])
        assert live.ping()
        assert not (live.data / "store.log").exists()  # nothing recorded in a directory that is not its
        # and the CLI still finds it: the address file is the live store's
        found = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import asyncio
            from pathlib import Path
            from services.common.storage import EmbeddedServer
            print(asyncio.run(EmbeddedServer(Path("/nonexistent"), Path({str(live.data)!r}), 10).running()).pid)
        """)], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert found.stdout.strip() == str(live.address["pid"]), found.stderr[-2000:]
    finally:
        live.stop()


def test_a_copy_of_a_running_data_directory_starts_on_its_own_and_leaves_the_original_alone(base: Path) -> None:
    original = Running(base / "store")
    copy: Running | None = None
    try:
        with original.client() as client:
            client.z.docs.insert_many([{"_id": n, "text": f"记录 {n}"} for n in range(200)])
        before = files_of(original.data)
        subprocess.run(["cp", "-a", str(original.data), str(base / "copy")], check=True)
        # the copy holds the original's postmaster.pid, run.json and address.json
        assert (base / "copy" / "postgresql" / "postmaster.pid").exists()
        assert json.loads((base / "copy" / "run.json").read_text()) == before["run.json"]

        copy = Running(base / "copy")
        assert copy.address["pid"] != original.address["pid"]
        assert copy.address["postgres"]["host"] != original.address["postgres"]["host"]
        assert copy.address["data_dir"] == str(base / "copy")
        assert "was copied from" in (base / "copy" / "store.log").read_text()
        assert files_of(original.data) == before
        assert original.ping() and copy.ping()

        with copy.client() as client:
            assert client.z.docs.count_documents({}) == 200  # what was committed before the copy
            client.z.docs.insert_one({"_id": "only-in-the-copy"})
        with original.client() as client:
            assert client.z.docs.count_documents({}) == 200
            assert client.z.docs.find_one({"_id": "only-in-the-copy"}) is None

        copy.stop()
        assert files_of(original.data) == before  # its stop removed its own sockets only
        assert original.ping()
    finally:
        if copy is not None:
            copy.stop()
        original.stop()


def test_socket_directories_are_removed_only_when_provably_stale(base: Path) -> None:
    import socket
    import tempfile

    data = base / "store"
    data.mkdir()
    stale = Path(tempfile.mkdtemp(prefix="zeroerrand-db-"))  # a dead FerretDB's: its socket refuses
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale / "ferretdb.sock"))
    dead.close()
    served = Path(tempfile.mkdtemp(prefix="zeroerrand-db-"))  # someone still listens in it
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(served / "ferretdb.sock"))
    listener.listen()
    # a run.json whose pid is alive but not the process that wrote it (a reused pid)
    (data / "run.json").write_text(json.dumps({"dirs": [str(stale), str(served)], "pid": os.getpid(),
                                               "start_ticks": 1}))
    try:
        store = Running(data)
        store.stop()
        assert not stale.exists()
        assert served.exists() and (served / "ferretdb.sock").exists()
    finally:
        listener.close()
        shutil.rmtree(served, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


# -- a full disk, a read-only or unwritable data directory ---------------------------------------


@pytest.fixture
def small_disk(base: Path) -> Iterator[Path]:
    """A 96 MB tmpfs of our own (a fresh store takes ~47 MB of it); unmounted afterwards."""
    mount = base / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m,mode=755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)


def fill(path: Path, leave_bytes: int) -> Path:
    """A file taking all the free space of ``path``'s file system but ``leave_bytes``."""
    free = shutil.disk_usage(path).free
    filler = path / "filler"
    with filler.open("wb") as f:
        remaining = max(0, free - leave_bytes)
        while remaining:
            remaining -= f.write(b"\0" * min(remaining, 1 << 20))
    return filler


SERVICE = textwrap.dedent("""
    # a service as the services use the store (open_store with its watchdog): it writes until a write
    # fails, printing each acknowledged id, then waits for the watchdog to stop it
    import asyncio, logging, os, sys
    from services.common.storage import open_store
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    async def main():
        store = await open_store()
        n = 0
        try:
            while True:
                await store.db.docs.insert_one({"_id": n, "blob": os.urandom(40_000).hex()})
                print(n, flush=True)
                n += 1
        except Exception as exc:
            print("write failed:", repr(exc)[:500], file=sys.stderr, flush=True)
        await asyncio.sleep(60)  # the watchdog sends SIGTERM before this ends
    asyncio.run(main())
""")


def test_a_full_disk_is_said_in_one_line_and_nothing_acknowledged_is_lost(small_disk: Path) -> None:
    env = {**os.environ, "ZEROERRAND_DATA_DIR": str(small_disk)}
    env.pop("MONGODB_URL", None)
    data = small_disk / "store"
    # the store started by a first user, then the disk filled but for 6 MB
    first = subprocess.run([sys.executable, "-c", "import asyncio\nfrom services.common.storage import open_store\n"
                            "async def main():\n    s = await open_store()\n    await s.close()\nasyncio.run(main())"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    filler = fill(small_disk, 6 << 20)

    service = subprocess.run([sys.executable, "-c", SERVICE], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
    acknowledged = [int(line) for line in service.stdout.split()]
    assert len(acknowledged) > 10, service.stderr[-3000:]
    # the store stopped itself with the cause; the service logged that line and stopped
    said = "内置存储的数据目录 " + str(data) + " 所在磁盘已满"
    store_log = (data / "store.log").read_text()
    assert said in store_log and "no space left on device" in store_log, store_log
    assert said in service.stderr and "the embedded store stopped" in service.stderr, service.stderr[-3000:]
    assert "Traceback" not in service.stderr, service.stderr[-3000:]

    # a start while the disk is still full says so
    full = start_once(data)
    assert "所在磁盘已满" in full["error"] and str(data) in full["error"], full

    filler.unlink()  # space freed: a start recovers everything acknowledged
    check = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import asyncio
        from services.common.storage import open_store
        async def main():
            store = await open_store()
            print(" ".join(str(d["_id"]) for d in await store.db.docs.find({}, {"_id": 1}).to_list()))
            await store.close()
        asyncio.run(main())
    """)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    stored = {int(n) for n in check.stdout.split()}
    assert set(acknowledged) <= stored, sorted(set(acknowledged) - stored)[:20]
    print(f"\n{len(acknowledged)} documents acknowledged before the disk was full, all {len(stored)} there after")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_a_read_only_data_directory_is_one_clear_line(small_disk: Path) -> None:
    env = {**os.environ, "ZEROERRAND_DATA_DIR": str(small_disk), "ZEROERRAND_ENVIRONMENT": "development"}
    env.pop("MONGODB_URL", None)
    (small_disk / "store").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    done = cli(env, "ledger", "requests")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr  # one line
    assert f"内置存储的数据目录 {small_disk / 'store'} 在只读文件系统上" in done.stderr, done.stderr


def test_a_data_directory_postgres_cannot_write_is_one_clear_line(base: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test changes the cluster's owner: run it as root (PostgreSQL then runs as postgres)")
    data = base / "store"
    Running(data).stop()
    cluster = data / "postgresql"
    subprocess.run(["chown", "-R", "root:root", str(cluster)], check=True)  # e.g. copied back by root
    refused = start_once(data)
    assert "无写入权限" in refused["error"] and str(data) in refused["error"], refused
    assert "（PostgreSQL 以系统用户 postgres 运行）" in refused["error"]
    assert not alive(int(json.loads((data / "run.json").read_text())["pid"]))
