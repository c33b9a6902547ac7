"""Private RabbitMQ nodes for tests that stop, restart, cluster or re-configure a broker.

Such tests never touch the machine's own RabbitMQ (other test sessions use it): each node here
has its own name, AMQP and distribution ports, data and log directories, configuration file and
Erlang cookie (through its own ``HOME``), and is stopped by the test that started it. The
Debian package's scripts are used directly (``/usr/lib/rabbitmq/bin``), not the ``/usr/sbin``
wrappers that switch to the ``rabbitmq`` user and drop the environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

RABBITMQ_BIN = Path(os.environ.get("ZEROERRAND_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
COOKIE = "ZEROERRANDPRIVATETESTNODES"


def _tool(name: str) -> str:
    path = RABBITMQ_BIN / name
    if not path.exists():
        pytest.fail(f"{path} not found: the fault tests start private RabbitMQ nodes with Debian's rabbitmq-server "
                    "(scripts/setup.sh installs it)")
    return str(path)


@dataclass
class RabbitNode:
    """One private node: ``name@localhost`` listening on 127.0.0.1:``port`` (guest may connect).

    With ``plain_listener`` false it has no plain AMQP listener at all: ``extra_config`` then says
    where it listens (a TLS node: ``listeners.ssl.default = 127.0.0.1:PORT`` and ``ssl_options.*``)."""

    name: str
    port: int
    dist_port: int
    base: Path
    extra_config: str = ""
    env: dict[str, str] = field(default_factory=dict)
    plain_listener: bool = True

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _environment(self) -> dict[str, str]:
        home = self.base / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update({
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_BASE": str(self.base),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        })
        if self.plain_listener:
            env["RABBITMQ_NODE_PORT"] = str(self.port)
        env.update(self.env)
        return env

    def start(self, timeout_s: float = 90) -> None:
        home = self.base / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(COOKIE)
            cookie.chmod(0o400)
        listener = f"listeners.tcp.default = 127.0.0.1:{self.port}" if self.plain_listener else "listeners.tcp = none"
        (self.base / "rabbitmq.conf").write_text(f"{listener}\nloopback_users = none\n{self.extra_config}")
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "pid").unlink(missing_ok=True)
        subprocess.run([_tool("rabbitmq-server"), "-detached"], env=self._environment(), check=True, timeout=60)
        self.ctl("wait", str(self.base / "pid"), "--timeout", str(int(timeout_s)), timeout=timeout_s + 10)

    def ctl(self, *args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([_tool("rabbitmqctl"), "-n", self.node, *args], env=self._environment(),
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {self.node} {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60")

    def stop(self) -> None:
        """Stops the node (and its Erlang VM); quiet if it is not running."""
        self.ctl("stop", check=False, timeout=120)

    def join(self, other: RabbitNode) -> None:
        """Makes this node a member of ``other``'s cluster (it forgets its own data)."""
        self.ctl("stop_app")
        self.ctl("reset")
        self.ctl("join_cluster", other.node)
        self.start_app()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted((self.base / "log").glob("*.log")))


@contextlib.contextmanager
def private_nodes(prefix: str, count: int, first_port: int, extra_config: str = "",
                  clustered: bool = False, plain_listener: bool = True) -> Iterator[list[RabbitNode]]:
    """``count`` private nodes ``{prefix}{i}`` on ports ``first_port + i`` (distribution ports
    20,000 higher); with ``clustered``, nodes 2.. join node 1; without ``plain_listener``, no
    plain AMQP listener (see ``RabbitNode``). Every node is stopped and its directory removed
    afterwards, whatever happens."""
    base = Path(tempfile.mkdtemp(prefix=f"zeroerrand-{prefix}-"))
    nodes = [RabbitNode(name=f"{prefix}{i + 1}", port=first_port + i, dist_port=first_port + i + 20000,
                        base=base / f"n{i + 1}", extra_config=extra_config, plain_listener=plain_listener)
             for i in range(count)]
    try:
        for node in nodes:
            node.start()
        if clustered:
            for node in nodes[1:]:
                node.join(nodes[0])
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
