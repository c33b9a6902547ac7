"""Backups of the embedded store (FerretDB on PostgreSQL): make one while the services run, check
one, restore one into a fresh data directory. ``zeroerrand store backup|verify|restore`` (see
``services/cli/store.py`` and docs/backup.md) are short calls of these functions.

A backup is one file, a tar archive of two members::

    manifest.json    what the dump holds: every table with its rows and a digest of them, the
                     collection each table keeps, when the snapshot was taken, the versions
    ferretdb.dump    ``pg_dump --format=custom`` of the store's PostgreSQL database (all FerretDB
                     databases: one schema each), made by the tools of the store's own bin directory

The dump and the manifest's counts come from one snapshot: a read-only REPEATABLE READ
transaction exports it (``pg_export_snapshot``), counts every table in it and hands it to
``pg_dump --snapshot``, so the backup holds exactly what was committed at that moment, while the
services go on writing. Before the file is renamed into place, the dump is read back to its end
(``pg_restore``) and every table's rows must be there: a backup that says it succeeded is readable.

A table's digest is the sum, modulo 2**256, of the SHA-256 of each of its rows as ``COPY`` text
(PostgreSQL's canonical ``jsonb`` output): it does not depend on the rows' order, so a restored
store, dumped again, must give the same digests.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from services.common.embedded_store import EmbeddedStore, StartError, os_error_problem, postgres_bin_dir

FORMAT = "zeroerrand-store-backup/1"
MANIFEST = "manifest.json"
DUMP = "ferretdb.dump"
METADATA_TABLE = "_ferretdb_database_metadata"  # FerretDB's: one row per collection, naming its table
_COPY = re.compile(rb'^COPY ("(?:[^"]|"")*"|[^ ."]+)\.("(?:[^"]|"")*"|[^ ."]+) .* FROM stdin;$')


class BackupError(RuntimeError):
    """A backup, check or restore failed or was refused; the message says what and what to do."""


@dataclass(frozen=True)
class TableContents:
    """One table of the dump: its rows and their digest; ``collection`` when FerretDB keeps a
    collection in it (``database`` is its schema)."""

    schema: str
    table: str
    rows: int
    digest: str
    collection: str | None = None

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.collection}" if self.collection else f"{self.schema}.{self.table}（FerretDB 元数据）"


@dataclass(frozen=True)
class Manifest:
    format: str
    created_at: str  # when the snapshot was taken (UTC, ISO): the backup holds what was committed before
    source: str  # the data directory backed up
    server_version: str
    tables: tuple[TableContents, ...]
    dump_bytes: int
    dump_sha256: str

    @property
    def documents(self) -> int:
        return sum(t.rows for t in self.tables if t.collection)

    @property
    def collections(self) -> list[TableContents]:
        return [t for t in self.tables if t.collection]

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "created_at": self.created_at, "source": self.source,
                "server_version": self.server_version, "dump_bytes": self.dump_bytes, "dump_sha256": self.dump_sha256,
                "tables": [{"schema": t.schema, "table": t.table, "collection": t.collection, "rows": t.rows,
                            "digest": t.digest} for t in self.tables]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(format=str(data["format"]), created_at=str(data["created_at"]), source=str(data["source"]),
                   server_version=str(data["server_version"]), dump_bytes=int(data["dump_bytes"]),
                   dump_sha256=str(data["dump_sha256"]),
                   tables=tuple(TableContents(str(t["schema"]), str(t["table"]), int(t["rows"]), str(t["digest"]),
                                              t.get("collection")) for t in data["tables"]))


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    data_dir: Path
    previous: Path | None  # where the data directory that was replaced now is
    seconds: float


def pg_env() -> dict[str, str]:
    """The environment of PostgreSQL's tools: none of the caller's PG* variables (they would point
    elsewhere), a UTF-8 locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
    return env


def _connection_args(postgres: Mapping[str, Any]) -> list[str]:
    return ["--host", str(postgres["host"]), "--port", str(postgres["port"]), "--username", str(postgres["user"])]


def _run(command: list[str], what: str, timeout: float = 3600) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=pg_env(), timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"{what} 失败 / failed: {exc}") from None
    if done.returncode != 0:
        raise BackupError(f"{what} 失败 / failed: {done.stderr.strip()[-1500:]}")
    return done.stdout


# --- reading a dump's data -------------------------------------------------------------------


def _unquote(identifier: bytes) -> str:
    text = identifier.decode()
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def copy_contents(stream: IO[bytes]) -> dict[str, tuple[int, str]]:
    """``schema.table`` → (rows, digest) of the ``COPY … FROM stdin`` blocks of SQL text."""
    found: dict[str, tuple[int, str]] = {}
    current: str | None = None
    rows, total = 0, 0
    for line in stream:
        if current is None:
            match = _COPY.match(line.rstrip(b"\n"))
            if match:
                current, rows, total = f"{_unquote(match[1])}.{_unquote(match[2])}", 0, 0
            continue
        if line == b"\\.\n":
            found[current] = (rows, f"{total:064x}")
            current = None
            continue
        rows += 1
        total = (total + int.from_bytes(hashlib.sha256(line).digest(), "big")) % (1 << 256)
    if current is not None:
        raise BackupError(f"转储在表 {current} 的数据中间结束（文件不完整）/ dump ends inside the data of {current}")
    return found


def _streamed(command: list[str], what: str) -> dict[str, tuple[int, str]]:
    """The contents of the SQL a tool writes on its standard output."""
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=pg_env())
        except OSError as exc:
            raise BackupError(f"{what} 失败 / failed: {exc}") from None
        assert process.stdout is not None
        try:
            contents = copy_contents(process.stdout)
        finally:
            process.stdout.close()
            process.wait()
        if process.returncode != 0:
            errors.seek(0)
            raise BackupError(f"{what} 失败 / failed: {errors.read().decode(errors='replace').strip()[-1500:]}")
    return contents


def dump_contents(pg_bin: Path, dump: Path) -> dict[str, tuple[int, str]]:
    """Every table's rows and digest as the dump file holds them, read to its end."""
    return _streamed([str(pg_bin / "pg_restore"), "--data-only", "--file=-", str(dump)], "读取转储 / pg_restore")


def database_contents(pg_bin: Path, postgres: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """Every table's rows and digest as a running store holds them now."""
    return _streamed([str(pg_bin / "pg_dump"), *_connection_args(postgres), "--data-only", "--format=plain",
                      "--dbname", str(postgres["dbname"])], "读取数据库 / pg_dump")


def dump_tables(pg_bin: Path, dump: Path) -> set[str]:
    """The tables whose data the dump's table of contents lists (``pg_restore --list``)."""
    listed = _run([str(pg_bin / "pg_restore"), "--list", str(dump)], "读取转储目录 / pg_restore --list")
    tables = set()
    for line in listed.splitlines():
        # 3412; 0 16390 TABLE DATA zeroerrand ledger_items_5a2c zeroerrand
        parts = line.split()
        if not line.startswith(";") and len(parts) >= 6 and parts[3:5] == ["TABLE", "DATA"]:
            tables.add(f"{parts[5]}.{parts[6]}")
    return tables


# --- backup ------------------------------------------------------------------------------------


def _snapshot_tables(conn: Any) -> tuple[list[tuple[str, str, int]], dict[tuple[str, str], str]]:
    """Every table of the database with its rows, and which collection each FerretDB table keeps."""
    from psycopg import sql

    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2").fetchall()
    counted = []
    collections: dict[tuple[str, str], str] = {}
    for schema, table in tables:
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table))).fetchone()[0]
        counted.append((schema, table, int(rows)))
        if table == METADATA_TABLE:
            for name, kept_in in conn.execute(sql.SQL("SELECT _jsonb->>'_id', _jsonb->>'table' FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table))).fetchall():
                collections[(schema, kept_in)] = name
    return counted, collections


def backup(postgres: Mapping[str, Any], pg_bin: Path, target: Path, source: Path) -> Manifest:
    """A consistent backup of the running store at ``postgres`` into ``target`` (a new file)."""
    import psycopg

    if target.exists():
        raise BackupError(f"{target} 已存在：请换一个文件名，或先移走它 / {target} exists")
    if not target.parent.is_dir():
        raise BackupError(f"目录 {target.parent} 不存在 / no directory {target.parent}")
    try:
        work = Path(tempfile.mkdtemp(prefix=".zeroerrand-backup-", dir=target.parent))
    except OSError as exc:
        raise BackupError(f"无法在 {target.parent} 中写入备份 / cannot write in {target.parent}: {exc}") from None
    try:
        dump = work / DUMP
        try:
            conn = psycopg.connect(host=postgres["host"], port=postgres["port"], user=postgres["user"],
                                   dbname=postgres["dbname"])
        except psycopg.Error as exc:
            raise BackupError(f"无法连接内置存储的 PostgreSQL / cannot reach the store's PostgreSQL: {exc}") from None
        with conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            created_at = datetime.now(UTC).isoformat(timespec="seconds")
            server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            counted, collections = _snapshot_tables(conn)
            # the snapshot stays valid while this transaction is open: pg_dump reads exactly it
            _run([str(pg_bin / "pg_dump"), *_connection_args(postgres), "--dbname", str(postgres["dbname"]),
                  "--format=custom", f"--snapshot={snapshot}", "--file", str(dump)], "pg_dump")
            conn.rollback()
        read_back = dump_contents(pg_bin, dump)  # the file, read to its end
        tables = []
        for schema, table, rows in counted:
            found = read_back.get(f"{schema}.{table}")
            if found is None or found[0] != rows:
                raise BackupError(f"转储与快照不一致：表 {schema}.{table} 快照中 {rows} 行，转储中 "
                                  f"{found[0] if found else '没有'} / dump and snapshot differ")
            tables.append(TableContents(schema, table, rows, found[1], collections.get((schema, table))))
        manifest = Manifest(FORMAT, created_at, str(source), server_version, tuple(tables), dump.stat().st_size,
                            _sha256(dump))
        _write_archive(manifest, dump, work / "backup.tar", target)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _private(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.mode, member.uname, member.gname = 0o600, "", ""
    return member


def _write_archive(manifest: Manifest, dump: Path, staging: Path, target: Path) -> None:
    """The manifest first (``verify`` reads it without the rest), then the dump; synced, then
    renamed into place: ``target`` is complete or absent. Mode 0600: it holds every record."""
    text = json.dumps(manifest.to_json(), ensure_ascii=False, indent=1).encode()
    with staging.open("wb") as raw:
        staging.chmod(0o600)
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(text), int(time.time()), 0o600
            archive.addfile(info, io.BytesIO(text))
            archive.add(str(dump), arcname=DUMP, recursive=False, filter=_private)
        raw.flush()
        os.fsync(raw.fileno())
    staging.replace(target)
    with contextlib.suppress(OSError):  # the rename itself, durable
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# --- verify ------------------------------------------------------------------------------------


def read_manifest(archive: Path) -> Manifest:
    try:
        with tarfile.open(archive, "r:") as tar:
            first = tar.next()  # the manifest comes first: read without scanning the rest
            member = tar.extractfile(first) if first is not None and first.name == MANIFEST else None
            if member is None:
                raise KeyError(MANIFEST)
            data = json.loads(member.read())
    except FileNotFoundError:
        raise BackupError(f"备份文件 {archive} 不存在 / no such file") from None
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise BackupError(f"{archive} 不是零跑腿的存储备份（没有可读的 {MANIFEST}）/ not a zeroerrand store backup: "
                          f"{exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{archive} 的格式 {data.get('format') if isinstance(data, dict) else '?'} 不是 {FORMAT} / "
                          "unknown backup format")
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupError(f"{archive} 的清单不完整 / incomplete manifest: {exc!r}") from None


@contextlib.contextmanager
def extracted_dump(archive: Path, into: Path | None = None) -> Iterator[Path]:
    """The archive's dump as a file of its own (pg_restore reads a file), removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=".zeroerrand-restore-", dir=into))
    try:
        with tarfile.open(archive, "r:") as tar:
            member = tar.extractfile(DUMP)
            if member is None:
                raise BackupError(f"{archive} 中没有 {DUMP} / no dump in the archive")
            with (work / DUMP).open("wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
        yield work / DUMP
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise BackupError(f"无法读出 {archive} 中的转储（文件不完整或已损坏）/ cannot read the dump: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare(manifest: Manifest, found: Mapping[str, tuple[int, str]], where: str) -> list[str]:
    """What differs between the manifest's tables and ``found`` (the tables of a dump or of a
    database), one line each; empty when they are the same."""
    problems = []
    claimed = {t.key: t for t in manifest.tables}
    for key, table in claimed.items():
        got = found.get(key)
        if got is None:
            problems.append(f"{table.label}：清单有 {table.rows} 行，{where}中没有这张表")
        elif got[0] != table.rows:
            problems.append(f"{table.label}：清单有 {table.rows} 行，{where}中 {got[0]} 行")
        elif got[1] != table.digest:
            problems.append(f"{table.label}：{table.rows} 行，但内容与清单的摘要不同")
    problems += [f"{key}：{where}中有，清单中没有（{rows} 行）" for key, (rows, _) in found.items() if key not in claimed]
    return problems


def verify(archive: Path, pg_bin: Path) -> Manifest:
    """Checks a backup file: its manifest, the dump's checksum, its table of contents, and every
    table's rows and digest read from the dump to its end. Raises ``BackupError`` listing each
    difference; returns the manifest when everything matches."""
    manifest = read_manifest(archive)
    with extracted_dump(archive) as dump:
        if dump.stat().st_size != manifest.dump_bytes or _sha256(dump) != manifest.dump_sha256:
            raise BackupError(f"{archive} 中的转储与清单记录的大小或 SHA-256 不符（文件已损坏或被改动）/ "
                              "dump checksum differs from the manifest")
        listed = dump_tables(pg_bin, dump)
        missing = sorted({t.key for t in manifest.tables} - listed)
        if missing:
            raise BackupError(f"转储的目录中缺少表 / tables missing from the dump's list: {', '.join(missing)}")
        problems = compare(manifest, dump_contents(pg_bin, dump), "转储")
    if problems:
        raise BackupError("备份内容与清单不符 / backup differs from its manifest:\n  " + "\n  ".join(problems))
    return manifest


# --- restore -----------------------------------------------------------------------------------


def holds_data(data_dir: Path) -> bool:
    """Whether a data directory has a PostgreSQL cluster (the one thing a restore must not overwrite
    unasked)."""
    return (data_dir / "postgresql" / "PG_VERSION").exists()


def running_store(data_dir: Path) -> bool:
    """Whether a store runs on ``data_dir`` (it holds the directory's lock)."""
    try:
        with (data_dir / "store.lock").open("ab") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def restore(archive: Path, data_dir: Path, ferretdb: Path, postgres_bin: str | None, *, replace: bool,
            start_timeout_s: float = 60.0) -> Restored:
    """Restores a backup as the data directory ``data_dir``: checked first (``verify``), restored
    into a new directory beside it, compared table by table with the manifest, then put in place.
    A directory that holds data is only replaced with ``replace``, and then kept beside as
    ``NAME.before-restore-TIME``; never while a store runs on it."""
    began = time.monotonic()
    data_dir = data_dir.resolve()
    pg_bin = postgres_bin_dir(postgres_bin, data_dir / "postgresql" if holds_data(data_dir) else None)
    if running_store(data_dir):
        raise BackupError(f"内置存储正在数据目录 {data_dir} 上运行：请先停止所有使用它的服务和命令，再恢复 / "
                          "a store runs on this directory; stop the services first")
    if holds_data(data_dir) and not replace:
        raise BackupError(f"数据目录 {data_dir} 已有数据：恢复到新的目录（--store-dir），或确认替换（--replace，原目录会改名"
                          "保留在旁边）/ the data directory holds data; use --replace to replace it")
    manifest = verify(archive, pg_bin)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = data_dir.parent / f".{data_dir.name}.restoring-{stamp}"
        staging.mkdir(mode=0o755 if os.geteuid() == 0 else 0o700)  # as root, PostgreSQL's user must enter it
    except OSError as exc:
        raise BackupError(os_error_problem(data_dir.parent, exc)) from None
    try:
        store = EmbeddedStore(staging, ferretdb, str(pg_bin), start_timeout_s)
        try:
            store.start()
            postgres = {"host": str(store.socket_dir), "port": 5432, "user": "zeroerrand", "dbname": "ferretdb"}
            with extracted_dump(archive, staging.parent) as dump:
                _run([str(pg_bin / "pg_restore"), *_connection_args(postgres), "--dbname", "ferretdb",
                      "--no-owner", "--exit-on-error", "--jobs=2", str(dump)], "pg_restore")
            problems = compare(manifest, database_contents(pg_bin, postgres), "恢复后的数据库")
            if problems:
                raise BackupError("恢复后的数据与备份清单不符 / restored data differs from the manifest:\n  "
                                  + "\n  ".join(problems))
        except StartError as exc:
            raise BackupError(f"无法在 {staging} 启动内置存储 / cannot start a store there: {exc}") from None
        finally:
            store.stop()
        previous = None
        if data_dir.exists():
            previous = data_dir.parent / f"{data_dir.name}.before-restore-{stamp}"
            data_dir.rename(previous)
        try:
            staging.rename(data_dir)
        except OSError:
            if previous is not None:
                previous.rename(data_dir)  # as it was
            raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BackupError(rename_problem(exc, data_dir)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Restored(manifest, data_dir, previous, time.monotonic() - began)


def rename_problem(exc: OSError, data_dir: Path) -> str:
    if exc.errno in (errno.EBUSY, errno.EXDEV):
        return (f"{data_dir} 是挂载点，无法整体替换：请把备份恢复到它下面的新目录（--store-dir），停止服务后再调整 "
                f"ZEROERRAND_DATA_DIR / {data_dir} is a mount point")
    return os_error_problem(data_dir, exc)
