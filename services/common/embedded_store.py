"""The embedded store: FerretDB (a MongoDB wire-protocol server) on a private PostgreSQL cluster.

Started by ``services.common.storage`` as a child process when ``MONGODB_URL`` is not set; it can
also be run by hand. It imports only the standard library. It keeps everything under one data
directory::

    DATA_DIR/postgresql/   the PostgreSQL cluster (``initdb`` on first start)
    DATA_DIR/ferretdb/     FerretDB's state
    DATA_DIR/*.log         the two servers' logs

PostgreSQL listens on a Unix socket only, in a private directory (no TCP port, trust
authentication for that socket alone); FerretDB listens on ``127.0.0.1``. When the store is ready
this process prints one JSON line on stdout::

    {"uri": "mongodb://127.0.0.1:PORT/", "postgres": {"host": SOCKET_DIR, "port": 5432,
     "user": "zeroerrand", "dbname": "ferretdb"}, "pid": PID}

It stops both servers (FerretDB first, then PostgreSQL by its fast shutdown, by the immediate one
if that takes too long) within 5 s when it gets SIGTERM or SIGINT, when its standard input closes
(its parent is gone, even by a crash), or when either server exits on its own. If this process
itself is killed, the kernel sends both servers their stop signal (``PR_SET_PDEATHSIG``).

PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres`` system user
(``ZEROERRAND_POSTGRES_OS_USER``), which then owns ``DATA_DIR/postgresql``.

    python -m services.common.embedded_store --data-dir var/store --ferretdb .venv/bin/ferretdb
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
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

PG_PORT = 5432  # the socket's name only: PostgreSQL has no TCP listener here
PG_ROLE = "zeroerrand"
PG_DATABASE = "ferretdb"
STOP_BUDGET_S = 4.5  # both servers gone within this, of the 5 s the issue allows

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """The store could not start; the message says what and what to do."""


def postgres_bin_dir(configured: str | None = None) -> Path:
    """The directory holding ``postgres`` and ``initdb``: the one given, else ``pg_config
    --bindir``, else the newest ``/usr/lib/postgresql/N/bin`` (Debian's layout)."""
    if configured:
        return Path(configured)
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


def _die_with_parent(sig: int) -> None:
    # runs in the child between fork and exec, after any change of user (which would reset it)
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


class EmbeddedStore:
    """The two servers of one data directory."""

    def __init__(self, data_dir: Path, ferretdb: Path, pg_bin: Path, host: str = "127.0.0.1",
                 port: int = 0, start_timeout_s: float = 60.0) -> None:
        self.data_dir = data_dir.resolve()
        self.ferretdb, self.pg_bin = ferretdb, pg_bin
        self.host, self.port, self.start_timeout_s = host, port, start_timeout_s
        self.pg_data = self.data_dir / "postgresql"
        self.socket_dir: Path | None = None
        self.postgres: subprocess.Popen[bytes] | None = None
        self.ferret: subprocess.Popen[bytes] | None = None
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

    # --- start -------------------------------------------------------------------------------

    def start(self) -> dict[str, object]:
        for binary in (self.ferretdb, self.pg_bin / "postgres", self.pg_bin / "initdb"):
            if not binary.exists():
                raise StartError(f"内置存储缺少程序 {binary}：请运行 scripts/setup.sh / missing {binary}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        self.socket_dir = Path(tempfile.mkdtemp(prefix="zeroerrand-pg-"))
        self._own(self.socket_dir)
        fresh = not (self.pg_data / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        self._start_postgres()
        if fresh or not self._database_exists():
            self._pg_tool("createdb", "--host", str(self.socket_dir), "--port", str(PG_PORT),
                          "--username", PG_ROLE, PG_DATABASE)
        self._start_ferretdb()
        return {"uri": f"mongodb://{self.host}:{self.port}/",
                "postgres": {"host": str(self.socket_dir), "port": PG_PORT, "user": PG_ROLE, "dbname": PG_DATABASE},
                "pid": os.getpid()}

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
            raise StartError(f"PostgreSQL {tool} 失败 / failed: {done.stderr.strip()[-1500:]}")

    def _pg_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if self.os_user is not None:
            env["HOME"] = self.os_user.pw_dir
        return env

    def _initdb(self) -> None:
        if self.pg_data.exists() and any(self.pg_data.iterdir()):
            raise StartError(f"{self.pg_data} 不是空目录，也不是 PostgreSQL 数据目录 / not a PostgreSQL data directory")
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

    def _start_postgres(self) -> None:
        assert self.socket_dir is not None
        log = (self.data_dir / "postgresql.log").open("ab")
        if self.os_user is not None:
            os.chown(self.data_dir / "postgresql.log", self.os_user.pw_uid, self.os_user.pw_gid)
        self.postgres = subprocess.Popen(  # type: ignore[call-overload]
            [str(self.pg_bin / "postgres"), "-D", str(self.pg_data), "-p", str(PG_PORT),
             "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
             "-c", "unix_socket_permissions=0700", "-c", "logging_collector=off",
             "-c", "max_connections=200",
             # FerretDB's filters name the field as a parameter (_jsonb->$1 @> $2): a cached generic
             # plan cannot match the expression indexes, so always plan with the values
             "-c", "plan_cache_mode=force_custom_plan"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self._pg_env(),
            preexec_fn=lambda: _die_with_parent(signal.SIGINT), **self._as_pg_user())
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.postgres.poll() is not None:
                raise StartError(f"PostgreSQL 未能启动，见 {self.data_dir / 'postgresql.log'} / PostgreSQL exited "
                                 f"({self.postgres.returncode}): {self._tail('postgresql.log')}")
            ready = subprocess.run([str(self.pg_bin / "pg_isready"), "--host", str(self.socket_dir), "--username", PG_ROLE,
                                    "--port", str(PG_PORT), "--quiet"], check=False, env=self._pg_env())
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise StartError(f"PostgreSQL 在 {self.start_timeout_s:.0f} 秒内未就绪 / not ready in time")
            time.sleep(0.05)

    def _start_ferretdb(self) -> None:
        assert self.socket_dir is not None
        state = self.data_dir / "ferretdb"
        state.mkdir(exist_ok=True)
        for _attempt in range(3):
            port = self.port or _free_port(self.host)
            log = (self.data_dir / "ferretdb.log").open("ab")
            self.ferret = subprocess.Popen(
                [str(self.ferretdb), "--handler=postgresql",
                 f"--postgresql-url=postgres://{PG_ROLE}@/{PG_DATABASE}?host={self.socket_dir}&port={PG_PORT}",
                 f"--listen-addr={self.host}:{port}", "--debug-addr=-", "--telemetry=disable",
                 f"--state-dir={state}", "--log-level=warn", "--log-format=text"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=lambda: _die_with_parent(signal.SIGTERM))
            deadline = time.monotonic() + self.start_timeout_s
            while self.ferret.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection((self.host, port), timeout=0.5):
                    self.port = port
                    return
                time.sleep(0.05)
            if self.ferret.poll() is None:
                raise StartError(f"FerretDB 在 {self.start_timeout_s:.0f} 秒内未就绪 / FerretDB not ready in time")
            if self.port:  # a fixed port that is taken: no second try
                break
        raise StartError(f"FerretDB 未能启动，见 {self.data_dir / 'ferretdb.log'} / FerretDB exited: "
                         f"{self._tail('ferretdb.log')}")

    def _tail(self, name: str) -> str:
        with contextlib.suppress(OSError):
            return (self.data_dir / name).read_text(errors="replace")[-1500:]
        return ""

    # --- run and stop ------------------------------------------------------------------------

    def exited(self) -> str | None:
        """Which server has stopped on its own, if one has."""
        for name, process in (("FerretDB", self.ferret), ("PostgreSQL", self.postgres)):
            if process is not None and process.poll() is not None:
                return f"{name} exited with {process.returncode}"
        return None

    def stop(self) -> None:
        """FerretDB first (no new writes), then PostgreSQL: fast shutdown, immediate if it lags."""
        deadline = time.monotonic() + STOP_BUDGET_S
        _stop(self.ferret, [(signal.SIGTERM, 1.5), (signal.SIGKILL, 0.5)], deadline)
        _stop(self.postgres, [(signal.SIGINT, 2.0), (signal.SIGQUIT, 0.8), (signal.SIGKILL, 0.5)], deadline)
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


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


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="zero-errand embedded store: FerretDB on a private PostgreSQL")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--ferretdb", required=True, type=Path, help="the FerretDB 1.24 binary")
    parser.add_argument("--postgres-bin", default=os.environ.get("ZEROERRAND_POSTGRES_BIN"),
                        help="directory of postgres/initdb (default: pg_config --bindir, /usr/lib/postgresql/N/bin)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="FerretDB's port; 0 picks a free one")
    parser.add_argument("--start-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        store = EmbeddedStore(args.data_dir, args.ferretdb, postgres_bin_dir(args.postgres_bin),
                              args.host, args.port, args.start_timeout)
    except StartError as exc:
        print(json.dumps({"error": str(exc)}, ensure_ascii=False), flush=True)
        return 1
    try:
        print(json.dumps(store.start()), flush=True)
    except (StartError, OSError, subprocess.SubprocessError) as exc:
        store.stop()
        print(json.dumps({"error": str(exc)}, ensure_ascii=False), flush=True)
        return 1

    def watch_stdin() -> None:  # EOF: the parent is gone; never outlive it holding the data
        # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds its lock and
        # makes the interpreter abort at exit
        with contextlib.suppress(OSError):
            while os.read(0, 65536):
                pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    reason = None
    while not stop.wait(0.2):
        reason = store.exited()
        if reason:
            break
    store.stop()
    if reason:
        print(f"embedded store: {reason}; stopped", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
