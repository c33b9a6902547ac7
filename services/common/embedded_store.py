"""The embedded store: FerretDB (a MongoDB wire-protocol server) on a private PostgreSQL cluster.

Started by ``services.common.storage`` as a child process when ``MONGODB_URL`` is not set; it can
also be run by hand. It imports only the standard library. It keeps everything under one data
directory::

    DATA_DIR/postgresql/   the PostgreSQL cluster (``initdb`` on first start)
    DATA_DIR/ferretdb/     FerretDB's state
    DATA_DIR/*.log         the two servers' logs

Neither server listens on TCP: each has a Unix socket in a private directory (mode 0700) under
the system's temporary directory, so only this user (and root) can reach the data; PostgreSQL
trusts that socket alone. When the store is ready this process writes ``DATA_DIR/address.json``
(atomically) and prints the same JSON line on stdout::

    {"uri": "mongodb://%2Ftmp%2Fzeroerrand-db-...%2Fferretdb.sock", "postgres": {"host": SOCKET_DIR,
     "port": 5432, "user": "zeroerrand", "dbname": "ferretdb"}, "pid": PID, "data_dir": DATA_DIR}

One store per data directory: it holds ``DATA_DIR/store.lock`` while it runs. A start refused
because another store runs on the directory changes nothing there. A start on a copy of a data
directory (``cp -a`` of a running store: its ``postmaster.pid``, ``run.json`` and ``address.json``
name the original's processes and sockets) starts on its own and leaves the original alone: a
socket directory or lock file is removed only when provably stale (no live process serves it).
Processes that use it register in ``DATA_DIR/clients/PID-ID``; when the process that started it closes its standard input
(it stopped, or died), the store keeps serving while a registered process is alive, then stops.

It stops both servers (FerretDB first, then PostgreSQL by its fast shutdown, by the immediate one
if that takes too long) within 5 s when it gets SIGTERM or SIGINT, when its users are gone as
above, when either server exits on its own, or when PostgreSQL's log says it cannot write (a full
disk, a read-only file system, no permission: the services then stop with it, their messages left
queued, instead of failing them until they are parked). The reason goes to ``DATA_DIR/store.log``,
with the cause in one line naming the data directory (``所在磁盘已满 / no space left on device``). If this
process itself is killed, the kernel sends both servers their stop signal (``PR_SET_PDEATHSIG``).
It is started in a session of its own, so a Ctrl-C meant for the services does not reach it.

PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres`` system user
(``ZEROERRAND_POSTGRES_OS_USER``), which then owns ``DATA_DIR/postgresql``.

    python -m services.common.embedded_store --data-dir var/store --ferretdb .venv/bin/ferretdb [--until-signal]

By hand, ``--until-signal`` keeps it serving until SIGTERM or Ctrl-C whatever its standard input
is (without it, a closed standard input, such as ``nohup``'s, counts as its starter being gone).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO
from urllib.parse import quote

PG_PORT = 5432  # the socket's name only: PostgreSQL has no TCP listener here
PG_ROLE = "zeroerrand"
PG_DATABASE = "ferretdb"
# FerretDB 1.24 keeps the PostgreSQL connection that found a document open while it takes a second
# one to write the update: as many updates at once as its pool has connections each hold one and
# wait for another, forever (measured: 100 concurrent update_one from one client hung it with its
# default pool of 50). Its pool is therefore far larger than what the clients may ask at once
# (storage.EMBEDDED_CLIENT_POOL connections a client): 200 hold 12 busy clients at full tilt.
FERRETDB_POOL = 200
PG_MAX_CONNECTIONS = FERRETDB_POOL + 40  # and room for backups, psql and the checks
STOP_BUDGET_S = 4.5  # both servers gone within this, of the 5 s the issue allows

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """The store could not start; the message says what and what to do."""


_FULL = ("no space left on device", "disk quota exceeded")
_READ_ONLY = ("read-only file system",)
_DENIED = ("permission denied", "operation not permitted", "wrong ownership", "has invalid permissions")


# the system's own words (strerror) in PostgreSQL's log lines about a file: case-sensitive, so that an
# SQL "permission denied for table" (a privilege, not the disk) is not one
_RUN_TIME_SIGNS = ("No space left on device", "Disk quota exceeded", "Read-only file system", ": Permission denied")


def storage_problem(data_dir: Path, text: str) -> str | None:
    """One line naming the data directory and the cause, when ``text`` (an error, a server's log)
    says its disk is full or it cannot be written; else None."""
    lowered = text.lower()
    if any(sign in lowered for sign in _FULL):
        return f"内置存储的数据目录 {data_dir} 所在磁盘已满：请腾出空间后重新启动 / no space left on device: {data_dir}"
    if any(sign in lowered for sign in _READ_ONLY):
        return f"内置存储的数据目录 {data_dir} 在只读文件系统上，无法写入 / read-only file system: {data_dir}"
    if any(sign in lowered for sign in _DENIED):
        user = ""
        if os.geteuid() == 0:
            user = f"（PostgreSQL 以系统用户 {os.environ.get('ZEROERRAND_POSTGRES_OS_USER', 'postgres')} 运行）"
        return f"内置存储的数据目录 {data_dir} 无写入权限{user}：请检查其属主和权限 / permission denied: {data_dir}"
    return None


def os_error_problem(data_dir: Path, exc: OSError) -> str:
    """An error of this process on the data directory, as one line: the cause first when it is a
    full disk or missing permission, then the system's own words."""
    codes = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
             errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied"}
    said = storage_problem(data_dir, codes.get(exc.errno or 0, ""))
    return f"{said}（{exc}）" if said else f"内置存储的数据目录 {data_dir} 无法使用 / cannot use {data_dir}: {exc}"


def process_start_ticks(pid: int) -> int | None:
    """When a live process started (clock ticks since boot): with its pid, it names the process
    (a pid alone may be reused); None if no such process runs (or it is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] == "Z":
        return None
    return int(fields[19])


def serves(directory: Path) -> bool:
    """Whether a live server listens on a socket in ``directory``, or may: a socket that accepts a
    connection, a PostgreSQL socket lock file naming a live postgres, or a directory this process
    cannot look into (not provably stale)."""
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return False
    except OSError:
        return True
    for entry in entries:
        if entry.name.startswith(".s.PGSQL.") and entry.name.endswith(".lock"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int(entry.read_text().split()[0])
                if process_start_ticks(pid) is not None and b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
        elif entry.is_socket():
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(1.0)
                try:
                    probe.connect(str(entry))
                    return True
                except (ConnectionRefusedError, FileNotFoundError):
                    continue
                except OSError:
                    return True  # cannot tell: keep it
    return False


def postgres_bin_dir(configured: str | None = None, data: Path | None = None) -> Path:
    """The directory holding ``postgres`` and ``initdb``: the one given; else, for an existing
    cluster, Debian's ``/usr/lib/postgresql/N/bin`` of the version it was made with; else
    ``pg_config --bindir``; else the newest ``/usr/lib/postgresql/N/bin``."""
    if configured:
        if not (Path(configured) / "postgres").exists():
            raise StartError(f"ZEROERRAND_POSTGRES_BIN={configured} 中没有 postgres 程序：请指向 PostgreSQL 的 bin 目录"
                             f"（如 /usr/lib/postgresql/15/bin）/ no postgres in ZEROERRAND_POSTGRES_BIN={configured}")
        return Path(configured)
    if data is not None and (data / "PG_VERSION").exists():
        made_with = (data / "PG_VERSION").read_text().strip()
        if (Path("/usr/lib/postgresql") / made_with / "bin" / "postgres").exists():
            return Path("/usr/lib/postgresql") / made_with / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                        check=True, timeout=10).stdout.strip())
            if (found / "postgres").exists():
                return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    raise StartError("找不到 PostgreSQL 服务器程序（postgres、initdb）：请运行 scripts/setup.sh 或安装 postgresql，"
                     "或用 ZEROERRAND_POSTGRES_BIN 指明其目录 / PostgreSQL server binaries not found")


def die_with_parent(sig: int) -> None:
    """Asks the kernel to send this process ``sig`` when its parent dies (Linux). Runs in a child
    between fork and exec, after any change of user (which would reset it)."""
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def live_clients(data_dir: Path) -> list[str]:
    """The registrations (``DATA_DIR/clients/PID-ID``, one per user of the store in a process) whose
    process is still alive; the others (their process died) are removed."""
    alive = []
    for entry in (data_dir / "clients").glob("*"):
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            alive.append(entry.name)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return alive


class EmbeddedStore:
    """The two servers of one data directory."""

    def __init__(self, data_dir: Path, ferretdb: Path, pg_bin: str | None, start_timeout_s: float = 60.0) -> None:
        self.data_dir = data_dir.resolve()
        self.ferretdb, self.start_timeout_s = ferretdb, start_timeout_s
        self.pg_data = self.data_dir / "postgresql"
        self.pg_bin = postgres_bin_dir(pg_bin, self.pg_data)
        self.socket_dir: Path | None = None  # PostgreSQL's
        self.run_dir: Path | None = None  # FerretDB's
        self.postgres: subprocess.Popen[bytes] | None = None
        self.ferret: subprocess.Popen[bytes] | None = None
        self._lock: IO[bytes] | None = None
        self._pg_log_offset = 0  # where this start's lines begin in postgresql.log
        self._watched_to = 0  # how far storage_failure has read it
        self.os_user = self._os_user()

    @staticmethod
    def _os_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        name = os.environ.get("ZEROERRAND_POSTGRES_OS_USER", "postgres")
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise StartError(f"以 root 运行时，PostgreSQL 需要以系统用户 {name} 运行，但该用户不存在；"
                             "请安装 postgresql 或设置 ZEROERRAND_POSTGRES_OS_USER / "
                             f"running as root, PostgreSQL needs OS user {name!r}") from None

    @property
    def owned(self) -> bool:
        """Whether this process holds the data directory's lock (then and only then it may change
        the files there)."""
        return self._lock is not None

    # --- start -------------------------------------------------------------------------------

    def start(self) -> dict[str, object]:
        if not (self.ferretdb.is_file() and os.access(self.ferretdb, os.X_OK)):
            raise StartError(f"内置存储的 FerretDB 程序 {self.ferretdb} 不存在或不可执行：请运行 scripts/setup.sh，"
                             f"或用 ZEROERRAND_FERRETDB 指明它 / {self.ferretdb} is not an executable FerretDB")
        for binary in (self.pg_bin / "postgres", self.pg_bin / "initdb"):
            if not binary.exists():
                raise StartError(f"内置存储缺少程序 {binary}：请运行 scripts/setup.sh / missing {binary}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._check_reachable()
        self._remove_stale_run_dirs()
        self._check_postmaster_pid()
        self.socket_dir = Path(tempfile.mkdtemp(prefix="zeroerrand-pg-"))
        self._own(self.socket_dir)
        self.run_dir = Path(tempfile.mkdtemp(prefix="zeroerrand-db-"))  # 0700, this user's
        # who made the socket directories: while that process lives they are not stale, even for a
        # copy of this data directory, whose run.json names them too
        (self.data_dir / "run.json").write_text(json.dumps(
            {"dirs": [str(self.socket_dir), str(self.run_dir)], "pid": os.getpid(),
             "start_ticks": process_start_ticks(os.getpid())}))
        (self.data_dir / "clients").mkdir(exist_ok=True)
        fresh = not (self.pg_data / "global" / "pg_control").exists()
        if fresh:
            self._initdb()
        self._start_postgres()
        if fresh or not self._database_exists():
            self._pg_tool("createdb", "--host", str(self.socket_dir), "--port", str(PG_PORT),
                          "--username", PG_ROLE, PG_DATABASE)
        socket_path = self._start_ferretdb()
        address = {"uri": "mongodb://" + quote(str(socket_path), safe=""),
                   "postgres": {"host": str(self.socket_dir), "port": PG_PORT, "user": PG_ROLE, "dbname": PG_DATABASE},
                   "pid": os.getpid(), "data_dir": str(self.data_dir)}
        staging = self.data_dir / "address.json.new"
        staging.write_text(json.dumps(address), encoding="utf-8")
        staging.replace(self.data_dir / "address.json")  # never seen half-written
        return address

    def _take_lock(self) -> None:
        # opened without truncating: nothing is written to the file of a store that runs
        self._lock = (self.data_dir / "store.lock").open("ab")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise StartError(f"另一个内置存储正在使用数据目录 {self.data_dir}：请连接它（服务和命令会自动连接），"
                             f"不要再启动一个 / another embedded store runs on {self.data_dir}") from None

    def _remove_stale_run_dirs(self) -> None:
        """Socket directories a killed store left behind, provably stale: the store that made them
        is gone and no server listens in them. A copy of a running store's data directory names
        the original's, which must not be touched."""
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            recorded = json.loads((self.data_dir / "run.json").read_text())
            dirs = recorded if isinstance(recorded, list) else recorded.get("dirs", [])  # a list: before 2026-06
            if isinstance(recorded, dict) and isinstance(recorded.get("pid"), int):
                started = process_start_ticks(recorded["pid"])
                if started is not None and started == recorded.get("start_ticks"):
                    dirs = []  # their store still runs (this directory is a copy of its)
            for stale in dirs:
                if Path(stale).name.startswith("zeroerrand-") and not serves(Path(stale)):
                    shutil.rmtree(stale, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.data_dir / "address.json").unlink()  # ours: we hold the lock; a copy's names the original

    def _check_postmaster_pid(self) -> None:
        """PostgreSQL's ``postmaster.pid`` names a live process that is not a postgres of this
        cluster: the directory is a copy of a running store's (or the pid was reused), so the file is
        not this cluster's lock and goes. A postgres that still runs on this cluster (say, its store
        was killed and it has not stopped yet) is a refusal with the reason."""
        pid_file = self.pg_data / "postmaster.pid"
        try:
            lines = pid_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StartError(os_error_problem(self.data_dir, exc)) from None
        if not lines or not lines[0].strip().lstrip("-").isdigit():
            return  # PostgreSQL judges it
        pid, recorded = abs(int(lines[0])), lines[1].strip() if len(lines) > 1 else ""
        copied = recorded not in ("", str(self.pg_data))
        if copied:
            _record(self.data_dir, f"embedded store: {self.pg_data} was copied from {recorded} with the "
                                   "lock file of a PostgreSQL that ran on it: the copy may be inconsistent (use "
                                   "`zeroerrand store backup` for a consistent copy); starting it on its own, "
                                   "the original is not touched")
        if process_start_ticks(pid) is None:
            return  # dead: PostgreSQL removes its stale lock file itself
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            raise StartError(f"数据目录 {self.pg_data} 的 postmaster.pid 指向仍在运行的进程 {pid}，无法确认它是否在使用本目录："
                             f"请确认后停止它或删除该文件 / postmaster.pid names live process {pid}") from None
        if cwd == self.pg_data.resolve():
            raise StartError(f"PostgreSQL（进程 {pid}）仍在数据目录 {self.pg_data} 上运行（其内置存储已不在）：请等它退出"
                             f"或停止它后再启动 / PostgreSQL {pid} still runs on {self.pg_data}")
        pid_file.unlink()  # another cluster's (the original of a copy) or a reused pid's, not ours

    def _check_reachable(self) -> None:
        if self.os_user is None:
            return
        probe = subprocess.run(["test", "-x", str(self.data_dir)], user=self.os_user.pw_uid, check=False)
        if probe.returncode != 0:
            raise StartError(f"PostgreSQL 以系统用户 {self.os_user.pw_name} 运行，无法进入数据目录 {self.data_dir}"
                             "（其上级目录对其他用户不可进入）：请换一个数据目录（ZEROERRAND_DATA_DIR）或放宽上级目录权限 / "
                             f"user {self.os_user.pw_name} cannot reach {self.data_dir}")

    def _own(self, path: Path) -> None:
        path.chmod(0o700)
        if self.os_user is not None:
            os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)

    def _as_pg_user(self) -> dict[str, object]:
        if self.os_user is None:
            return {}
        return {"user": self.os_user.pw_uid, "group": self.os_user.pw_gid, "extra_groups": []}

    def _pg_tool(self, tool: str, *args: str) -> None:
        done = subprocess.run([str(self.pg_bin / tool), *args], capture_output=True, text=True, check=False,
                              env=self._pg_env(), timeout=self.start_timeout_s, **self._as_pg_user())  # type: ignore[call-overload]
        if done.returncode != 0:
            cause = storage_problem(self.data_dir, done.stderr)
            raise StartError(f"{cause + '；' if cause else ''}PostgreSQL {tool} 失败 / failed: {done.stderr.strip()[-1500:]}")

    def _pg_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if self.os_user is not None:
            env["HOME"] = self.os_user.pw_dir
        return env

    def _initdb(self) -> None:
        if self.pg_data.is_file():
            raise StartError(f"{self.pg_data} 是文件，不是 PostgreSQL 数据目录：请移走它 / not a directory")
        if self.pg_data.exists() and any(self.pg_data.iterdir()):
            raise StartError(f"{self.pg_data} 不是完整的 PostgreSQL 数据目录（没有 global/pg_control），也不是空目录："
                             "请检查它是不是别处拷来的、未建完的数据；确认无用后移走它，内置存储会重新建立 / "
                             "not a complete PostgreSQL data directory")
        self.pg_data.mkdir(exist_ok=True)
        self._own(self.pg_data)
        self._pg_tool("initdb", "--pgdata", str(self.pg_data), "--username", PG_ROLE, "--auth", "trust",
                      "--encoding", "UTF8", "--no-locale", "--no-instructions")

    def _database_exists(self) -> bool:
        assert self.socket_dir is not None
        done = subprocess.run([str(self.pg_bin / "psql"), "--host", str(self.socket_dir), "--port", str(PG_PORT),
                               "--username", PG_ROLE, "--dbname", "postgres", "-Atc",
                               f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],
                              capture_output=True, text=True, check=False, env=self._pg_env(), timeout=30,
                              **self._as_pg_user())  # type: ignore[call-overload]
        return str(done.stdout).strip() == "1"

    def _log(self, name: str) -> tuple[IO[bytes], int]:
        """The log file opened for appending, and where this start's lines begin in it."""
        path = self.data_dir / name
        handle = path.open("ab")
        path.chmod(0o600)  # error lines quote project codes and document keys
        if self.os_user is not None and name.startswith("postgresql"):
            os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)
        return handle, handle.tell()

    def _start_postgres(self) -> None:
        assert self.socket_dir is not None
        log, offset = self._log("postgresql.log")
        with log:
            self.postgres = subprocess.Popen(  # type: ignore[call-overload]
                [str(self.pg_bin / "postgres"), "-D", str(self.pg_data), "-p", str(PG_PORT),
                 "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
                 "-c", "unix_socket_permissions=0700", "-c", "logging_collector=off",
                 "-c", f"max_connections={PG_MAX_CONNECTIONS}",
                 # FerretDB's filters name the field as a parameter (_jsonb->$1 @> $2): a cached generic
                 # plan cannot match the expression indexes, so always plan with the values
                 "-c", "plan_cache_mode=force_custom_plan",
                 # a duplicate insert (a redelivery) is an error line, but never with the statement's data
                 "-c", "log_min_error_statement=panic"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self._pg_env(),
                preexec_fn=lambda: die_with_parent(signal.SIGINT), **self._as_pg_user())
        self._pg_log_offset = self._watched_to = offset
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.postgres.poll() is not None:
                tail = self._tail('postgresql.log', offset)
                cause = storage_problem(self.data_dir, tail)
                raise StartError(f"{cause + '；' if cause else ''}PostgreSQL 未能启动，见 {self.data_dir / 'postgresql.log'} / "
                                 f"PostgreSQL exited ({self.postgres.returncode}): {tail}")
            ready = subprocess.run([str(self.pg_bin / "pg_isready"), "--host", str(self.socket_dir), "--username", PG_ROLE,
                                    "--dbname", "postgres", "--port", str(PG_PORT), "--quiet"], check=False, env=self._pg_env())
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise StartError(f"PostgreSQL 在 {self.start_timeout_s:.0f} 秒内未就绪 / not ready in time: "
                                 f"{self._tail('postgresql.log', offset)}")
            time.sleep(0.05)

    def _start_ferretdb(self) -> Path:
        assert self.socket_dir is not None and self.run_dir is not None
        state = self.data_dir / "ferretdb"
        state.mkdir(exist_ok=True)
        socket_path = self.run_dir / "ferretdb.sock"
        log, offset = self._log("ferretdb.log")
        with log:
            self.ferret = subprocess.Popen(
                [str(self.ferretdb), "--handler=postgresql",
                 f"--postgresql-url=postgres://{PG_ROLE}@/{PG_DATABASE}?host={self.socket_dir}&port={PG_PORT}"
                 f"&pool_max_conns={FERRETDB_POOL}",
                 "--listen-addr=", f"--listen-unix={socket_path}", "--debug-addr=-", "--telemetry=disable",
                 f"--state-dir={state}", "--log-level=error", "--log-format=text"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM))
        deadline = time.monotonic() + self.start_timeout_s
        while self.ferret.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(0.5)
                probe.connect(str(socket_path))
                return socket_path
            time.sleep(0.05)
        if self.ferret.poll() is None:
            raise StartError(f"FerretDB 在 {self.start_timeout_s:.0f} 秒内未就绪 / FerretDB not ready in time: "
                             f"{self._tail('ferretdb.log', offset)}")
        tail = self._tail('ferretdb.log', offset)
        cause = storage_problem(self.data_dir, tail)
        raise StartError(f"{cause + '；' if cause else ''}FerretDB 未能启动，见 {self.data_dir / 'ferretdb.log'} / "
                         f"FerretDB exited ({self.ferret.returncode}): {tail}")

    def _tail(self, name: str, offset: int) -> str:
        """What this start wrote to a log (not an earlier run's lines), its last lines."""
        with contextlib.suppress(OSError), (self.data_dir / name).open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").strip().splitlines()
            return " | ".join(lines[-8:])[-1500:]
        return ""

    # --- run and stop ------------------------------------------------------------------------

    def exited(self) -> str | None:
        """Which server has stopped on its own, if one has, and why when PostgreSQL's log says it
        in a way an operator can act on (a full disk, no write permission): ``PostgreSQL exited
        with 1: 内置存储的数据目录 … 所在磁盘已满 / no space left on device: … (its line)``."""
        for name, process in (("FerretDB", self.ferret), ("PostgreSQL", self.postgres)):
            if process is not None and process.poll() is not None:
                return f"{name} exited with {process.returncode}{self._cause()}"
        return None

    def storage_failure(self) -> str | None:
        """A full disk, read-only file system or lost write permission that PostgreSQL has hit since
        the last look (its log, from where this start began: a ``could not extend file …: No
        space left on device`` fails the write and leaves the server up). The store then stops:
        the services stop with it and leave their messages queued, instead of failing them one
        attempt after another until they are parked."""
        try:
            with (self.data_dir / "postgresql.log").open("rb") as log:
                log.seek(self._watched_to)
                fresh = log.read()
        except OSError:
            return None
        complete = fresh.rfind(b"\n") + 1  # whole lines only
        self._watched_to += complete
        for line in fresh[:complete].decode(errors="replace").splitlines():
            if any(sign in line for sign in _RUN_TIME_SIGNS):
                return f"PostgreSQL cannot write: {storage_problem(self.data_dir, line)} ({line.strip()[-300:]})"
        return None

    def _cause(self) -> str:
        """The cause PostgreSQL's log gives since this start, with the line that says it."""
        with contextlib.suppress(OSError), (self.data_dir / "postgresql.log").open("rb") as log:
            log.seek(self._pg_log_offset)
            lines = log.read().decode(errors="replace").splitlines()
            for line in reversed(lines):  # the last word: a PANIC on the WAL, the startup's own failure
                cause = storage_problem(self.data_dir, line)
                if cause:
                    return f": {cause} ({line.strip()[-300:]})"
        return ""

    def stop(self) -> None:
        """FerretDB first (no new writes), then PostgreSQL: fast shutdown, immediate if it lags."""
        deadline = time.monotonic() + STOP_BUDGET_S
        if self.owned:  # the directory is ours: a refused start touches nothing
            with contextlib.suppress(OSError):
                (self.data_dir / "address.json").unlink()
        _stop(self.ferret, [(signal.SIGTERM, 1.5), (signal.SIGKILL, 0.5)], deadline)
        _stop(self.postgres, [(signal.SIGINT, 2.0), (signal.SIGQUIT, 0.8), (signal.SIGKILL, 0.5)], deadline)
        for directory in (self.socket_dir, self.run_dir):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()  # releases the data directory
            self._lock = None


def _stop(process: subprocess.Popen[bytes] | None, steps: Sequence[tuple[int, float]], deadline: float) -> None:
    if process is None:
        return
    for sig, wait_s in steps:
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.05, min(wait_s, deadline - time.monotonic())))


def _record(data_dir: Path, line: str) -> None:
    """The file first: stderr is a pipe to the process that started the store, which may be gone."""
    with contextlib.suppress(OSError), (data_dir / "store.log").open("a", encoding="utf-8") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="zero-errand embedded store: FerretDB on a private PostgreSQL")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--ferretdb", required=True, type=Path, help="the FerretDB 1.24 binary")
    parser.add_argument("--postgres-bin", default=os.environ.get("ZEROERRAND_POSTGRES_BIN"),
                        help="directory of postgres/initdb (default: the cluster's version under /usr/lib/postgresql, "
                             "pg_config --bindir, the newest /usr/lib/postgresql/N/bin)")
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--until-signal", action="store_true",
                        help="serve until SIGTERM or SIGINT, not until the standard input closes and no user is left")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        store = EmbeddedStore(args.data_dir, args.ferretdb, args.postgres_bin, args.start_timeout)
    except StartError as exc:
        print(json.dumps({"error": str(exc)}, ensure_ascii=False), flush=True)
        return 1
    try:
        print(json.dumps(store.start()), flush=True)
    except (StartError, OSError, subprocess.SubprocessError) as exc:
        owned = store.owned  # a refused start (another store runs here) writes nothing in its directory
        store.stop()
        error = os_error_problem(store.data_dir, exc) if isinstance(exc, OSError) else str(exc)
        if owned:
            _record(store.data_dir, f"embedded store did not start: {error}")
        print(json.dumps({"error": error}, ensure_ascii=False), flush=True)
        return 1

    owner_gone = threading.Event()

    def watch_stdin() -> None:  # EOF: the process that started the store stopped or died
        # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds its lock and
        # makes the interpreter abort at exit
        with contextlib.suppress(OSError):
            while os.read(0, 65536):
                pass
        owner_gone.set()

    if not args.until_signal:
        threading.Thread(target=watch_stdin, daemon=True).start()
    reason = None
    unused = 0  # consecutive looks, once the owner is gone, with no registered process alive
    while not stop.wait(0.2):
        reason = store.exited() or store.storage_failure()
        if reason:
            break
        if owner_gone.is_set():
            unused = 0 if live_clients(store.data_dir) else unused + 1
            if unused >= 3:
                break
    store.stop()
    if reason:
        _record(store.data_dir, f"embedded store: {reason}; stopped")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
