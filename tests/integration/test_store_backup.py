"""``zeroerrand store backup|verify|restore`` on a store holding a year: 300 projects, every ledger
line moved along by a fixed seed (the year of ``test_ledger_views_year``), their unroutable items,
and a collection of every kind of value the services store. The backup is taken while a writer
keeps inserting (as running services do), restored into a fresh data directory, and compared
with the original collection by collection, document by document, and by ``zeroerrand ledger
show`` for a project. Timings and sizes are printed (run with ``-s``); docs/backup.md quotes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import Binary, Int64, ObjectId
from pymongo import AsyncMongoClient

from services.common.settings import StoreSettings
from services.common.storage import EmbeddedServer, open_store
from services.evaluation.repository import COLLECTIONS, ITEMS, MongoLedgerRepository, item_doc
from services.router.rule_engine import RoutingEngine
from tests.integration.conftest import embedded_server, reach_store, store_directory
from tests.integration.test_ledger_views_year import TODAY, Year

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "HLXQ-2026-0123"


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = store_directory("zeroerrand-backup-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def env_for(data: Path, **more: str) -> dict[str, str]:
    env = {**os.environ, "ZEROERRAND_DATA_DIR": str(data), "ZEROERRAND_ENVIRONMENT": "development", **more}
    env.pop("MONGODB_URL", None)
    return env


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str, float]:
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", *args, env=env, cwd=ROOT,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(), time.perf_counter() - began


@pytest.fixture(scope="module")
async def year_store(base: Path, engine: RoutingEngine) -> AsyncIterator[EmbeddedServer]:
    """The source store, holding the year, kept running (as ``zeroerrand up`` would) by this process."""
    data = base / "source"
    settings = StoreSettings(data_dir=data)
    store = await open_store(settings, COLLECTIONS, watch=False)
    year = Year(engine)
    repo = MongoLedgerRepository(store)
    await store.db[ITEMS.name].insert_many([item_doc(i) for i in year.items])
    for project in year.projects:
        await repo.add_project(project)
    for record in year.unroutable:
        await repo.add_unroutable(record)
    await store.db["kinds"].insert_many([  # every kind of value the services keep
        {"_id": ObjectId(), "at": datetime(2026, 3, 1, 8, 30, 15, 123000, tzinfo=UTC), "n": Int64(2**40), "f": 0.1,
         "text": "一次性告知：营业执照\n法人身份证\t\"引号\" \\ 反斜杠", "blob": Binary(bytes(range(256))), "none": None,
         "flag": True, "nested": {"list": [1, "二", {"三": [3.5]}], "empty": {}}},
        {"_id": "字符串键", "emoji": "✅", "long": "x" * 100_000, "list": list(range(1000))},
    ])
    server = embedded_server(data / "store")
    await reach_store(server.open())  # this process stays a user of the store while the tests run
    await store.close()
    print(f"\nthe year: {len(year.projects)} projects, {len(year.items)} ledger lines, "
          f"{len(year.unroutable)} unroutable items")
    yield server
    await server.stop()


async def documents(uri: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every document of every collection of every database, in ``_id`` order."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=10_000)
    try:
        found: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for database in await client.list_database_names():
            db = client[database]
            found[database] = {name: await db[name].find().sort("_id", 1).to_list()
                               for name in sorted(await db.list_collection_names())}
        return found
    finally:
        await client.close()


@pytest.mark.timeout(900)
async def test_a_backup_taken_while_writing_restores_the_year_document_by_document(
        base: Path, year_store: EmbeddedServer) -> None:
    assert year_store.endpoint is not None
    source_env = env_for(base / "source")
    archive = base / "year.zeb"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(year_store.endpoint.uri)
    written: list[int] = []

    async def writer() -> None:  # a service writing on during the backup, each write acknowledged
        n = 0
        while True:
            await client.zeroerrand.busy.insert_one({"_id": n, "at": datetime.now(UTC)})
            written.append(n)
            n += 1
            await asyncio.sleep(0.005)

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0.5)
    code, out, err, backup_s = await cli(source_env, "store", "backup", str(archive))
    await asyncio.sleep(0.5)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert code == 0, err
    assert "已备份到" in out and "已读回校验" in out
    assert archive.stat().st_mode & 0o777 == 0o600  # it holds every record

    code, out, err, verify_s = await cli(source_env, "store", "verify", str(archive), "--json")
    assert code == 0, err
    manifest = json.loads(out)
    counts = {(t["schema"], t["collection"]): t["rows"] for t in manifest["tables"] if t["collection"]}
    in_backup = counts[("zeroerrand", "busy")]
    # the recovery point: what was acknowledged before the snapshot, nothing after
    assert 0 < in_backup < len(written), (in_backup, len(written))

    restored_dir = base / "restored"
    code, out, err, restore_s = await cli(source_env, "store", "restore", str(archive),
                                          "--store-dir", str(restored_dir / "store"))
    assert code == 0, err
    assert "每张表的行数与内容摘要都与备份清单一致" in out

    restored = embedded_server(restored_dir / "store")
    endpoint = await reach_store(restored.open())
    try:
        before, after = await documents(year_store.endpoint.uri), await documents(endpoint.uri)
    finally:
        await restored.stop()
        await client.close()
    assert set(after) == set(before)
    for database, collections in before.items():
        assert set(after[database]) == set(collections), database
        for name, docs in collections.items():
            if (database, name) == ("zeroerrand", "busy"):
                assert after[database][name] == docs[:in_backup]  # the acknowledged writes up to the snapshot
            else:
                assert after[database][name] == docs, f"{database}.{name}"
            assert len(after[database][name]) == counts[(database, name)]
    assert len(before["zeroerrand"][ITEMS.name]) > 6000

    # the ledger as an operator reads it, from both
    show = ("ledger", "show", PROJECT, "--today", TODAY.isoformat())
    code, original, err, _ = await cli(source_env, *show)
    assert code == 0 and PROJECT in original and original.count("\n") > 20, err
    code, again, err, _ = await cli(env_for(restored_dir), *show)
    assert code == 0, err
    assert again == original

    size = archive.stat().st_size
    documents_count = sum(t["rows"] for t in manifest["tables"] if t["collection"])
    print(f"backup of {documents_count:,} documents: {size / 1e6:.1f} MB in {backup_s:.1f} s (CLI start included), "
          f"verify {verify_s:.1f} s, restore into a fresh directory {restore_s:.1f} s; "
          f"{in_backup} of {len(written)} writes made during the backup are in it")


async def test_restore_refuses_a_directory_that_holds_data_or_runs_a_store(base: Path, year_store: EmbeddedServer) -> None:
    archive = base / "year.zeb"
    if not archive.exists():
        code, _, err, _ = await cli(env_for(base / "source"), "store", "backup", str(archive))
        assert code == 0, err
    source = base / "source" / "store"
    code, _, err, _ = await cli(env_for(base / "source"), "store", "restore", str(archive))
    assert code == 1 and f"内置存储正在数据目录 {source} 上运行" in err, err
    assert year_store.alive()

    stopped = base / "stopped"
    code, _, err, _ = await cli(env_for(stopped), "store", "restore", str(archive))
    assert code == 0, err
    marker = stopped / "store" / "ferretdb" / "marker"
    marker.write_text("the data directory before")
    code, _, err, _ = await cli(env_for(stopped), "store", "restore", str(archive))
    assert code == 1 and "已有数据" in err and "--replace" in err, err
    assert marker.exists()
    code, out, err, _ = await cli(env_for(stopped), "store", "restore", str(archive), "--replace")
    assert code == 0, err
    kept = [p for p in stopped.iterdir() if p.name.startswith("store.before-restore-")]
    assert len(kept) == 1 and (kept[0] / "ferretdb" / "marker").exists() and str(kept[0]) in out
    assert not marker.exists()


async def test_verify_finds_a_damaged_or_truncated_backup(base: Path, year_store: EmbeddedServer) -> None:
    archive = base / "year.zeb"
    if not archive.exists():
        code, _, err, _ = await cli(env_for(base / "source"), "store", "backup", str(archive))
        assert code == 0, err
    data = archive.read_bytes()
    damaged, truncated = base / "damaged.zeb", base / "truncated.zeb"
    middle = len(data) // 2
    damaged.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    truncated.write_bytes(data[:middle])
    env = env_for(base / "source")
    code, _, err, _ = await cli(env, "store", "verify", str(damaged))
    assert code == 1 and "SHA-256 不符" in err, err
    code, _, err, _ = await cli(env, "store", "verify", str(truncated))
    assert code == 1 and "文件不完整或已损坏" in err, err
    code, _, err, _ = await cli(env, "store", "backup", str(archive))
    assert code == 1 and "已存在" in err  # never overwritten


async def test_with_mongodb_the_commands_point_to_mongodump(base: Path) -> None:
    env = {**env_for(base / "unused"), "MONGODB_URL": "mongodb://127.0.0.1:1/"}
    for command in ("backup", "verify", "restore"):
        code, _, err, _ = await cli(env, "store", command, str(base / "x.zeb"))
        assert code == 1 and "mongodump" in err and "docs/backup.md" in err, err
    assert not (base / "unused").exists()
