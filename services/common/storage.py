"""The storage adapter: PyMongo's async client on MongoDB, or on the embedded store.

The one module that knows how the data is kept. It uses only what both MongoDB and the embedded
store (FerretDB 1.24 on PostgreSQL) support: CRUD, unique indexes, upserts,
``find_one_and_update`` and simple aggregations. No transactions and no change streams.
Idempotency comes from unique keys: every stored document has a deterministic ``_id`` or a
unique index, and a duplicate insert is a no-op.

FerretDB keeps each collection as a PostgreSQL table of ``jsonb`` documents and turns an equality
filter on a top-level field into ``_jsonb->'field' @> value``, which the B-tree indexes it makes
for ``create_index`` cannot serve (it never pushes a sort down either). So on the embedded store
``Store.ensure`` also gives every collection a GIN index on ``_id`` and on the first field of each
declared index, made straight in that PostgreSQL: the same reads, by index instead of by
scanning the table (``explain`` shows a Bitmap Index Scan).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from services.common.embedded_store import live_clients, os_error_problem
from services.common.settings import StoreSettings, mask_url, mask_urls_in

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
EMBEDDED_SERVER = Path(__file__).with_name("embedded_store.py")


class StoreSchemaError(RuntimeError):
    """The store holds data or indexes this version cannot use as they are; the message says what."""


class StoreUnavailable(RuntimeError):
    """Neither ``MONGODB_URL`` nor the embedded server can be used; the message says what to do."""


# The status a service (and ``zeroerrand up``) exits with once it has given up on its store: not 0,
# so that a supervisor restarting on failure starts it again (sysexits' EX_TEMPFAIL: try again).
EXIT_STORE_LOST = 75
# Connections one client (a process's store session) keeps to the embedded store: far fewer than
# FerretDB's pool of PostgreSQL connections (embedded_store.FERRETDB_POOL), which its updates
# deadlock when exhausted. Sixteen commands in flight keep the two cores of a small machine busy.
EMBEDDED_CLIENT_POOL = 16


def client_options(embedded: bool, uri: str = "") -> dict[str, Any]:
    """What every client of the store is opened with beyond its URL: a bounded pool on the
    embedded store (see ``EMBEDDED_CLIENT_POOL``); a MongoDB URL's own ``maxPoolSize`` is kept."""
    if not embedded or "maxpoolsize=" in uri.lower():
        return {}
    return {"maxPoolSize": EMBEDDED_CLIENT_POOL}


_store_lost: str | None = None


# MongoDB's codes for a server shutting down, stepping down or unreachable (PyMongo retries such an
# operation once itself, then raises the error as it is)
_OUTAGE_CODES = frozenset({6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436})
# what FerretDB answers (OperationFailure, code 1) while its PostgreSQL is gone or restarting, and
# what psycopg says (the GIN indexes ``ensure`` makes) when that PostgreSQL goes
_BACKEND_GONE = re.compile(
    r"broken pipe|connection refused|connection reset|failed to connect|dial error|no such file or directory|"
    r"server closed the connection|terminating connection|connection is already closed|conn closed|closed pool|"
    r"unexpected eof|consuming input failed|the database system is (?:shutting down|starting up|in recovery mode|"
    r"not yet accepting)", re.IGNORECASE)
_NETWORK_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ENOTCONN,
                             errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT})


def store_outage(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the store cannot be reached, rather than refusing
    what was asked: PyMongo's ``ConnectionFailure`` (``AutoReconnect``, ``NetworkTimeout``,
    ``ServerSelectionTimeoutError``, ``WaitQueueTimeoutError``), a server shutting down or stepping
    down, FerretDB's failures to reach its PostgreSQL, psycopg's lost connection, a refused or reset socket."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionFailure):
            return True
        if isinstance(cause, OperationFailure) and (
                cause.code in _OUTAGE_CODES or _BACKEND_GONE.search(f"{cause} {cause.details or ''}")):
            return True
        if isinstance(cause, PyMongoError) and cause.has_error_label("RetryableWriteError"):
            return True
        if type(cause).__module__.startswith("psycopg") and type(cause).__name__ == "OperationalError" and \
                _BACKEND_GONE.search(str(cause)):
            return True
        if isinstance(cause, OSError) and cause.errno in _NETWORK_ERRNOS:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def store_lost() -> str | None:
    """Why this process gave up on its store (its embedded store stopped), or None: then it stops
    and exits with ``EXIT_STORE_LOST``, and every failure meanwhile is the outage's, not a message's."""
    return _store_lost


def give_up_on_store(reason: str) -> None:
    """Records that this process gives up on its store and asks it to stop (SIGTERM, so every
    service shuts down as on a Ctrl-C: deliveries in flight go back to their queues)."""
    global _store_lost
    if _store_lost is None:
        _store_lost = reason
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class Collection:
    """A collection and the indexes it must have (created at start-up)."""

    name: str
    indexes: tuple[IndexModel, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """Where a store answers: the MongoDB URI, and for the embedded store the PostgreSQL under it
    (``host`` is its socket directory), to which the adapter adds the indexes FerretDB's queries
    use, and the embedded store's own process."""

    uri: str
    postgres: Mapping[str, Any] | None = None
    pid: int | None = None


class EmbeddedServer:
    """The embedded store of one data directory (``embedded_store.py``: FerretDB on a private
    PostgreSQL), as this process uses it: joined if it runs, else started (and then owned).

    Every user of it (several in one process: ``zeroerrand up``) registers first, in
    ``DATA_DIR/clients/PID-ID``, so that the store outlives the process that started it while
    others still use it (a CLI command that started it, then ``zeroerrand up`` joined). Starting is
    serialised by ``DATA_DIR/starting.lock``: two processes that find no store at once start one,
    and the second joins it.
    """

    def __init__(self, ferretdb: Path, data_dir: Path, timeout_s: float, postgres_bin: Path | None = None) -> None:
        self.ferretdb, self.data_dir, self.timeout_s, self.postgres_bin = ferretdb, data_dir.resolve(), timeout_s, postgres_bin
        # subprocess.Popen, not asyncio's: asyncio kills a child whose transport it closes (at exit),
        # and this store may have to outlive this process for the others that use it
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint: Endpoint | None = None
        # one registration per user of the store, several in one process (``zeroerrand up``)
        self._registration = self.data_dir / "clients" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def open(self) -> Endpoint:
        """Joins the running store of this data directory, or starts it. A data directory this
        process cannot write (a full disk, no permission, read-only) is ``StoreUnavailable`` saying so."""
        try:
            self.register()
        except OSError as exc:
            raise StoreUnavailable(os_error_problem(self.data_dir, exc)) from None
        found = await self.running()
        if found is not None:
            self.endpoint = found
            return found
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "starting.lock").open("wb") as lock:
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)  # another process may be starting it
            found = await self.running()
            if found is not None:
                self.endpoint = found
                return found
            return await self.start()

    def register(self) -> None:
        self._registration.parent.mkdir(parents=True, exist_ok=True)
        self._registration.touch()

    def unregister(self) -> None:
        with contextlib.suppress(OSError):
            self._registration.unlink()

    async def start(self) -> Endpoint:
        if not self.ferretdb.exists():
            raise StoreUnavailable(
                f"没有可用的 MongoDB：未设置 MONGODB_URL，内置存储的 FerretDB 程序 {self.ferretdb} 也不存在。"
                "请运行 scripts/setup.sh（构建内置存储），或设置 MONGODB_URL 指向 MongoDB，或用 ZEROERRAND_FERRETDB 指明它。"
                f" / no store: MONGODB_URL unset and {self.ferretdb} missing; run scripts/setup.sh or set MONGODB_URL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(EMBEDDED_SERVER), "--data-dir", str(self.data_dir), "--ferretdb", str(self.ferretdb),
                   "--start-timeout", str(self.timeout_s)]
        if self.postgres_bin is not None:
            command += ["--postgres-bin", str(self.postgres_bin)]
        # a session of its own: a Ctrl-C for this process group must not stop the store before the
        # services have finished with it (it stops when they are done: see embedded_store.py)
        process = self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, start_new_session=True)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), self.timeout_s * 2 + 15)
            started = json.loads(line)
            if "error" in started:
                raise StoreUnavailable(f"内置存储未能启动 / embedded store did not start: {started['error']}")
            self.endpoint = Endpoint(str(started["uri"]), started["postgres"], int(started["pid"]))
        except (TimeoutError, ValueError, KeyError, TypeError) as exc:
            error = await self._stop_and_read_errors()
            raise StoreUnavailable(f"内置存储未能启动 / embedded store did not start: {exc!r} {error}") from exc
        except StoreUnavailable:
            await self._stop_and_read_errors()
            raise
        log.info("embedded store (FerretDB on PostgreSQL) at %s, data in %s", mask_url(self.endpoint.uri), self.data_dir)
        return self.endpoint

    @property
    def address_file(self) -> Path:
        """Where the running embedded store says its address (it writes the file itself)."""
        return self.data_dir / "address.json"

    async def running(self) -> Endpoint | None:
        """The live embedded store of this data directory, if one runs: its address file names a
        live process that serves this directory (not a stale file, not another store's) and it answers."""
        try:
            found = json.loads(self.address_file.read_text(encoding="utf-8"))
            endpoint = Endpoint(str(found["uri"]), found.get("postgres"), int(found["pid"]))
            cmdline = Path(f"/proc/{endpoint.pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if found.get("data_dir") != str(self.data_dir) or not any(arg.endswith(b"embedded_store.py") or
                                                                   arg == b"services.common.embedded_store" for arg in cmdline):
            return None
        probe: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(endpoint.uri, serverSelectionTimeoutMS=1500)
        try:
            await probe.admin.command("ping")
            return endpoint
        except Exception:
            return None
        finally:
            await probe.close()

    def last_word(self, within_s: float = 60.0) -> str | None:
        """The store's last line in ``store.log`` (why it stopped: which server exited, and the
        cause when it is a full disk or missing permission), if written in the last minute."""
        path = self.data_dir / "store.log"
        try:
            if time.time() - path.stat().st_mtime > within_s:
                return None
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        return lines[-1] if lines else None

    def alive(self) -> bool:
        """Whether the store this process uses still runs."""
        pid = self.endpoint.pid if self.endpoint else None
        return pid is not None and Path(f"/proc/{pid}").exists() and not _zombie(pid)

    async def _stop_and_read_errors(self) -> str:
        process, self._process = self._process, None
        if process is None:
            return ""
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            _, err = await asyncio.to_thread(process.communicate, timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = await asyncio.to_thread(process.communicate)
        return err.decode(errors="replace")[-2000:]

    async def stop(self) -> None:
        """Leaves the store: it stops once no registered user is left (at once if none is). The one
        that started it, leaving while other users in its own process remain (the services of `up`,
        each closing in its own time), hands it to them: the last of them to leave stops it, so the
        store stops with this process and not a moment after it exits."""
        self.unregister()
        process, self._process = self._process, None
        own_users_left = any(name.startswith(f"{os.getpid()}-") for name in live_clients(self.data_dir)) \
            if self.data_dir.exists() else False
        if process is None:
            if own_users_left or self.data_dir not in _HANDED_OVER:
                return
            process = _HANDED_OVER.pop(self.data_dir)  # the last user in this process: it stops the store
        elif own_users_left and process.poll() is None:
            _HANDED_OVER[self.data_dir] = process
            return
        if process.poll() is not None:
            return
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.close()  # this process, which started it, is done with it
        process.stdout.close()
        if self.data_dir.exists() and live_clients(self.data_dir):
            log.info("embedded store left running for the other processes that use it")
            return
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            log.warning("embedded store did not stop in time; stopping it")
            process.terminate()
            await asyncio.to_thread(process.wait)
        process.stderr.close()


# data directory -> the embedded store this process started, once the user that started it has left
# while other users in the process remain (EmbeddedServer.stop)
_HANDED_OVER: dict[Path, subprocess.Popen[bytes]] = {}


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    return False


class Store:
    """One database on one client; ``open_store`` makes it and ``close`` releases everything."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str,
                 embedded: EmbeddedServer | None = None, postgres: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.database = database
        self.db: AsyncDatabase[dict[str, Any]] = client[database]
        self._embedded = embedded
        self._postgres = postgres
        self._watchdog: asyncio.Task[None] | None = None

    def watch(self, interval_s: float = 0.25) -> None:
        """Gives up on the store (:func:`give_up_on_store`: this process stops, cleanly, and exits
        with ``EXIT_STORE_LOST``) if the embedded store it uses stops: it does not come back by
        itself, and a supervisor that restarts the service starts it again. Its messages stay queued
        (those held for the outage go back) instead of failing one attempt after another."""
        embedded = self._embedded
        if embedded is None or self._watchdog is not None:
            return

        async def watchdog() -> None:
            while embedded.alive():
                await asyncio.sleep(interval_s)
            why = embedded.last_word() or "no reason recorded"
            if store_lost() is None:  # said once per process (``zeroerrand up`` watches a store per service)
                log.critical("内置存储已停止（见 %s/store.log）：本进程随之停止（退出码 %d），未处理的消息留在队列中 / "
                             "the embedded store stopped; stopping this process (exit status %d): %s",
                             embedded.data_dir, EXIT_STORE_LOST, EXIT_STORE_LOST, why)
            give_up_on_store(f"the embedded store in {embedded.data_dir} stopped: {why}")

        self._watchdog = asyncio.create_task(watchdog(), name="embedded-store-watchdog")

    @property
    def embedded(self) -> bool:
        """Whether this is the embedded store (FerretDB on PostgreSQL), owned here or joined."""
        return self._postgres is not None

    async def ensure(self, collections: Iterable[Collection]) -> None:
        """Creates the declared indexes (idempotent). The code's definition wins: an index an
        earlier version made on the same keys with other options (say, not yet unique) is dropped
        and made again; if that fails too (duplicates under a new unique index), ``StoreSchemaError``
        says which collection and index, and why. On the embedded store, each collection also gets
        the GIN indexes its queries use there (see the module's docstring)."""
        collections = list(collections)
        for collection in collections:
            target = self.db[collection.name]
            for index in collection.indexes:
                try:
                    await target.create_indexes([index])
                except OperationFailure:
                    await self._redefine(collection.name, index)
        if self._postgres is not None:
            await self._ensure_containment_indexes(collections)

    async def _ensure_containment_indexes(self, collections: Sequence[Collection]) -> None:
        import psycopg  # only the embedded store needs it
        from psycopg import sql

        existing = set(await self.db.list_collection_names())
        for collection in collections:
            if collection.name not in existing:
                with contextlib.suppress(OperationFailure, CollectionInvalid):  # made meanwhile by another process
                    await self.db.create_collection(collection.name)
        pg = dict(self._postgres or {})
        async with await psycopg.AsyncConnection.connect(
                host=pg["host"], port=pg["port"], user=pg["user"], dbname=pg["dbname"], autocommit=True) as conn:
            for collection in collections:
                row = await (await conn.execute(
                    sql.SQL("SELECT _jsonb->>'table' FROM {}.{} WHERE _jsonb->>'_id' = %s").format(
                        sql.Identifier(self.database), sql.Identifier("_ferretdb_database_metadata")),
                    (collection.name,))).fetchone()
                if row is None:
                    raise StoreSchemaError(f"内置存储中找不到集合 {collection.name} 的表 / no table for {collection.name}")
                existing_indexes = {r[0] for r in await (await conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    (self.database, row[0]))).fetchall()}
                for field in containment_fields(collection):
                    name = "ze_" + hashlib.sha1(f"{row[0]}.{field}".encode()).hexdigest()[:16] + "_gin"
                    if name in existing_indexes:
                        continue  # present: no statement, so no lock on a table in use
                    try:
                        await conn.execute(sql.SQL(
                            "CREATE INDEX IF NOT EXISTS {} ON {}.{} USING gin ((_jsonb -> {}) jsonb_path_ops)"
                            " WITH (fastupdate = off)").format(
                            sql.Identifier(name), sql.Identifier(self.database), sql.Identifier(row[0]),
                            sql.Literal(field)))
                    except psycopg.errors.UniqueViolation:
                        pass  # another process made the same index at the same moment

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
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        await self.client.close()
        if self._embedded is not None:
            await self._embedded.stop()


def containment_fields(collection: Collection) -> list[str]:
    """The fields whose equality filters get a GIN index on the embedded store: ``_id`` and the
    first field of each declared index (the others narrow an already small set)."""
    fields = ["_id"]
    for index in collection.indexes:
        first = next(iter(index.document["key"]))
        if first not in fields and "." not in first:
            fields.append(first)
    return fields


def tls_hint(uri: str, exc: BaseException) -> str:
    """What to add to ``MONGODB_URL`` when its TLS does not match the server's (PyMongo's own
    options, see docs/security.md), or nothing."""
    text = str(exc)
    options = {k.lower(): v.lower() for k, v in parse_qsl(uri.partition("?")[2])}
    said = options.get("tls", options.get("ssl"))  # PyMongo: any tls* option, or +srv, turns TLS on too
    tls = said == "true" or (said is None and (any(k.startswith("tls") for k in options) or uri.startswith("mongodb+srv:")))
    if "CERTIFICATE_VERIFY_FAILED" in text and ("mismatch" in text or "Hostname" in text):
        return "：服务器证书不是签发给 URL 中的主机名的 "
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "：服务器证书未通过验证，请在 MONGODB_URL 中用 tlsCAFile=… 指定签发它的 CA 证书 "
    # the server's refusal of a client certificate arrives as a TLS alert or, as often, as a closed
    # connection (which of the two depends on timing)
    closed = re.search(r"connection (is already )?closed|connection reset|CERTIFICATE_REQUIRED|UNKNOWN_CA|"
                       r"BAD_CERTIFICATE", text, re.IGNORECASE) is not None
    if closed and tls and "tlscertificatekeyfile" not in options:
        return "：服务器在 TLS 握手时断开了连接，多半要求客户端证书，请在 MONGODB_URL 中加 tlsCertificateKeyFile=… "
    if closed and tls:
        return ("：服务器在 TLS 握手时断开了连接，多半不接受 tlsCertificateKeyFile 的客户端证书"
                "（不是它信任的 CA 签发的，或已过期）")
    if closed and not tls:
        return "：服务器断开了连接，它可能只接受 TLS，请在 MONGODB_URL 中加 tls=true "
    return ""


async def open_store(settings: StoreSettings | None = None, collections: Iterable[Collection] = (), *,
                     watch: bool = True) -> Store:
    """Connects to ``MONGODB_URL``, or starts (or joins) the embedded store, and creates the indexes.
    ``watch=False``: this process goes on if the embedded store stops (the router, which only
    archives rules versions in it, see ``services.router.versions``)."""
    settings = settings or StoreSettings()
    embedded = None
    if settings.mongodb_url:
        endpoint = Endpoint(settings.mongodb_url)
    else:
        embedded = EmbeddedServer(settings.ferretdb, settings.data_dir / "store", settings.embedded_start_timeout_s,
                                  settings.postgres_bin)
        try:
            endpoint = await embedded.open()  # joins the running store (e.g. `zeroerrand up`'s), or starts it
        except BaseException:
            embedded.unregister()
            raise
    # the URL's own serverSelectionTimeoutMS wins over the default; the embedded store, on a local
    # socket, answers at once or is gone (then an operation waiting for it holds up a stop)
    selection_ms = 10_000 if embedded is None else int(settings.embedded_selection_timeout_s * 1000)
    options: dict[str, Any] = ({} if "serverselectiontimeoutms=" in endpoint.uri.lower()
                               else {"serverSelectionTimeoutMS": selection_ms})
    options |= client_options(embedded is not None, endpoint.uri)
    try:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(endpoint.uri, tz_aware=True, **options)
    except (PyMongoError, ValueError, OSError) as exc:  # a URL it cannot use: a bad host, an unreadable TLS file
        if embedded is not None:
            await embedded.stop()
        raise StoreUnavailable(f"MONGODB_URL 无法使用（{mask_url(endpoint.uri)}）：{mask_urls_in(str(exc))} "
                               f"/ MONGODB_URL unusable") from None
    store = Store(client, settings.database, embedded, endpoint.postgres)
    try:
        await client.admin.command("ping")
    except Exception as exc:
        await store.close()
        where = "内置存储" if endpoint.postgres is not None else mask_url(endpoint.uri)
        hint = "" if endpoint.postgres is not None else tls_hint(endpoint.uri, exc)
        raise StoreUnavailable(f"无法连接存储（{where}）{hint}/ store unreachable: {exc!r}") from exc
    try:
        await store.ensure(collections)
    except BaseException as exc:
        await store.close()
        if isinstance(exc, Exception) and store_outage(exc):
            raise StoreUnavailable(f"存储在建立索引时不可用 / store lost while making its indexes: "
                                   f"{mask_urls_in(str(exc))[:500]}") from exc
        raise
    if watch:
        store.watch()
    return store


@contextlib.asynccontextmanager
async def store_session(settings: StoreSettings | None = None,
                        collections: Iterable[Collection] = ()) -> AsyncIterator[Store]:
    store = await open_store(settings, collections)
    try:
        yield store
    finally:
        await store.close()
