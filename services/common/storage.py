"""The storage adapter: PyMongo's async client on MongoDB, or on the embedded compatible server.

The one module that knows how the data is kept. It uses only what both MongoDB and the embedded
``mongoeco`` server support: CRUD, unique indexes, upserts, ``find_one_and_update`` and simple
aggregations. No transactions (mongoeco reports a standalone server, on which real MongoDB
refuses them) and no change streams. Idempotency comes from unique keys: every stored document
has a deterministic ``_id`` or a unique index, and a duplicate insert is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from services.common.settings import StoreSettings

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
EMBEDDED_SERVER = Path(__file__).with_name("embedded_mongo.py")


class StoreSchemaError(RuntimeError):
    """The store holds data or indexes this version cannot use as they are; the message says what."""


class StoreUnavailable(RuntimeError):
    """Neither ``MONGODB_URL`` nor the embedded server can be used; the message says what to do."""


@dataclass(frozen=True)
class Collection:
    """A collection and the indexes it must have (created at start-up)."""

    name: str
    indexes: tuple[IndexModel, ...] = ()


class EmbeddedServer:
    """The ``mongoeco`` child process, on a SQLite file under the data directory."""

    def __init__(self, python: Path, data_file: Path, timeout_s: float) -> None:
        self.python, self.data_file, self.timeout_s = python, data_file, timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self.uri: str | None = None

    async def start(self) -> str:
        if not self.python.exists():
            raise StoreUnavailable(
                f"没有可用的 MongoDB：未设置 MONGODB_URL，内置服务器的 Python 3.13 解释器 {self.python} 也不存在。"
                "请运行 scripts/setup.sh（安装内置的 mongoeco），或设置 MONGODB_URL 指向 MongoDB。"
                f" / no store: MONGODB_URL unset and {self.python} missing; run scripts/setup.sh or set MONGODB_URL")
        self.data_file.parent.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            str(self.python), str(EMBEDDED_SERVER), "--path", str(self.data_file),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), self.timeout_s)
            self.uri = str(json.loads(line)["uri"])
        except (TimeoutError, ValueError, KeyError) as exc:
            error = await self._stop_and_read_errors()
            raise StoreUnavailable(f"内置 MongoDB 兼容服务器未能启动 / embedded server did not start: {exc!r} {error}") from exc
        self.address_file.write_text(json.dumps({"uri": self.uri, "pid": self._process.pid}), encoding="utf-8")
        log.info("embedded store (mongoeco) on %s, data in %s", self.uri, self.data_file)
        return self.uri

    @property
    def address_file(self) -> Path:
        """Where a running embedded server says its address, so the CLI joins it instead of
        starting a second server on the same file."""
        return self.data_file.with_suffix(".address.json")

    async def running_uri(self) -> str | None:
        """The address of a live embedded server on this data file, if one runs."""
        try:
            uri = str(json.loads(self.address_file.read_text(encoding="utf-8"))["uri"])
        except (OSError, ValueError, KeyError):
            return None
        probe: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=1500)
        try:
            await probe.admin.command("ping")
            return uri
        except Exception:
            return None
        finally:
            await probe.close()

    async def _stop_and_read_errors(self) -> str:
        if self._process is None:
            return ""
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        _, err = await self._process.communicate()
        return err.decode(errors="replace")[-2000:]

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(OSError):
            self.address_file.unlink()
        assert process.stdin is not None
        process.stdin.close()  # the server stops when its stdin closes
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            log.warning("embedded store did not stop in time; killing it")
            process.kill()
            await process.wait()


class Store:
    """One database on one client; ``open_store`` makes it and ``close`` releases everything."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str,
                 embedded: EmbeddedServer | None = None) -> None:
        self.client = client
        self.db: AsyncDatabase[dict[str, Any]] = client[database]
        self._embedded = embedded

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    async def ensure(self, collections: Iterable[Collection]) -> None:
        """Creates the declared indexes (idempotent). The code's definition wins: an index an
        earlier version made on the same keys with other options (say, not yet unique) is dropped
        and made again; if that fails too (duplicates under a new unique index), ``StoreSchemaError``
        says which collection and index, and why."""
        for collection in collections:
            target = self.db[collection.name]
            for index in collection.indexes:
                try:
                    await target.create_indexes([index])
                except OperationFailure:
                    await self._redefine(collection.name, index)

    async def _redefine(self, collection: str, index: IndexModel) -> None:
        target = self.db[collection]
        keys = list(index.document["key"].items())
        for name, info in (await target.index_information()).items():
            if name != "_id_" and list(info["key"]) == keys:
                log.warning("index %s of %s differs from this version's definition: made again", name, collection)
                await target.drop_index(name)
        try:
            await target.create_indexes([index])
        except OperationFailure as exc:
            raise StoreSchemaError(f"存储集合 {collection} 的索引 {index.document.get('name')}（{keys}）无法按本版本的定义建立："
                                   f"{exc}；请先处理重复或冲突的数据 / index cannot be created") from exc

    async def insert_new(self, collection: str, documents: Sequence[Mapping[str, Any]]) -> int:
        """Inserts the documents not already stored (by ``_id`` or a unique index); returns how many."""
        if not documents:
            return 0
        try:
            result = await self.db[collection].insert_many([dict(d) for d in documents], ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return int(exc.details.get("nInserted", len(documents) - len(errors)))
        except DuplicateKeyError:
            return 0

    async def close(self) -> None:
        await self.client.close()
        if self._embedded is not None:
            await self._embedded.stop()


async def open_store(settings: StoreSettings | None = None, collections: Iterable[Collection] = ()) -> Store:
    """Connects to ``MONGODB_URL``, or starts the embedded server, and creates the indexes."""
    settings = settings or StoreSettings()
    embedded = None
    if settings.mongodb_url:
        uri = settings.mongodb_url
    else:
        embedded = EmbeddedServer(settings.embedded_python, settings.data_dir / "zeroerrand.sqlite3",
                                  settings.embedded_start_timeout_s)
        running = await embedded.running_uri()
        if running is not None:  # e.g. `zeroerrand up` runs it: join, do not own
            uri, embedded = running, None
        else:
            uri = await embedded.start()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=10_000, tz_aware=True)
    store = Store(client, settings.database, embedded)
    try:
        await client.admin.command("ping")
    except Exception as exc:
        await store.close()
        where = "内置服务器" if embedded else uri
        raise StoreUnavailable(f"无法连接存储（{where}）/ store unreachable: {exc!r}") from exc
    try:
        await store.ensure(collections)
    except BaseException:
        await store.close()
        raise
    return store


@contextlib.asynccontextmanager
async def store_session(settings: StoreSettings | None = None,
                        collections: Iterable[Collection] = ()) -> AsyncIterator[Store]:
    store = await open_store(settings, collections)
    try:
        yield store
    finally:
        await store.close()
