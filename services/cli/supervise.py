"""The console as a child process of ``zeroerrand up``.

The console used to run in ``up``'s own process and event loop: 200 people opening a board at once
kept that loop busy for minutes (rendering, validating thousands of ledger lines) and the router,
the notifier and the evaluation service, in the same loop, waited behind them (a signed agreement
took 12.7 s to be fully notified instead of 1.3 s). Now ``up`` runs ``zeroerrand console`` as a
child process, at a lower CPU priority (``ZEROERRAND_CONSOLE_NICE``, 5), and the console bounds its
own work (``services/console/load.py``).

The child
- is the same code as ``up`` (the directory of this ``services`` package leads its ``PYTHONPATH``)
  with the same environment, so it joins the same broker and the same store (the embedded store
  through its address file, as every other command does); its ``/metrics`` and ``/health`` are
  on ``ZEROERRAND_CONSOLE_METRICS_PORT`` if set (``ZEROERRAND_METRICS_PORT`` is ``up``'s own);
- writes to ``up``'s standard output and error;
- dies with ``up`` (``PR_SET_PDEATHSIG``: SIGTERM if ``up`` is killed outright); it has a session of
  its own, so a Ctrl-C in the terminal reaches ``up`` only, and ``up`` stops it with the other
  services (SIGTERM: it stops serving and leaves the store; SIGKILL if that takes over 10 s);
- tells ``up`` it is listening by writing its port to a pipe (``ZEROERRAND_CONSOLE_READY_FD``).

If it cannot start, ``up`` does not start either (as when the console ran inside it): the reason
is in the output above. If it dies later, ``up`` says so and starts it again after 1, 2, 4 … 30 s,
while routing goes on; after more than ``RESTARTS`` deaths within ``WINDOW_S`` it stops everything
and exits with status 1, so that a supervisor (systemd) sees something is wrong."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import services
from services.common.embedded_store import die_with_parent

log = logging.getLogger("services.cli.up")
READY_FD = "ZEROERRAND_CONSOLE_READY_FD"


class ConsoleDied(Exception):
    """The console process stopped and will not be started again; the message says why (in Chinese)."""


class ConsoleProcess:
    """``start``/``stop`` like the services ``up`` runs in its own process, and ``failed``: returns
    (with why) when ``up`` should stop because the console keeps dying."""

    RESTARTS = 5
    WINDOW_S = 300.0
    START_TIMEOUT_S = 90.0
    STOP_TIMEOUT_S = 10.0

    def __init__(self, nice: int = 5, command: list[str] | None = None) -> None:
        self.nice = nice
        self.command = command or [sys.executable, "-m", "services.cli", "console"]
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.restarts = 0
        self._deaths: list[float] = []
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None
        self._failure: asyncio.Future[str] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        self._failure = asyncio.get_running_loop().create_future()
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise(), name="console-process")

    async def failed(self) -> str:
        assert self._failure is not None
        return await asyncio.shield(self._failure)

    def _environment(self, ready_fd: int) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("ZEROERRAND_METRICS_PORT", None)  # up's endpoint; a second one would not bind
        if env.get("ZEROERRAND_CONSOLE_METRICS_PORT"):  # the console's own, if asked for
            env["ZEROERRAND_METRICS_PORT"] = env["ZEROERRAND_CONSOLE_METRICS_PORT"]
        root = str(Path(services.__file__).resolve().parents[1])  # this very code, wherever up was started
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        env[READY_FD] = str(ready_fd)
        return env

    async def _spawn(self) -> None:
        """Starts the console and waits until it listens; ``ConsoleDied`` if it exits or hangs first."""
        read_end, write_end = os.pipe()
        nice = self.nice

        def in_child() -> None:
            die_with_parent(signal.SIGTERM)
            if nice:
                os.nice(nice)

        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, env=self._environment(write_end),
                                            pass_fds=(write_end,), start_new_session=True, preexec_fn=in_child)
        finally:
            os.close(write_end)
        try:
            # the child writes its port, then closes the pipe; an exit before that gives EOF
            said = await asyncio.wait_for(asyncio.to_thread(_read_all, read_end), self.START_TIMEOUT_S)
        except TimeoutError:
            await self._end(self.process)
            raise ConsoleDied(f"服务台进程 {self.START_TIMEOUT_S:g} 秒内没有开始服务，已停止它") from None
        finally:
            with contextlib.suppress(OSError):
                os.close(read_end)
        if not said.strip().isdigit():
            code = await asyncio.to_thread(self.process.wait)
            raise ConsoleDied(f"服务台进程未能启动（退出码 {code}，原因见上面的输出）；"
                              "不需要网页服务台时可用 zeroerrand up --no-console")
        self.port = int(said)
        log.info("console process %d serving on port %d (nice +%d)", self.process.pid, self.port, nice)

    async def _supervise(self) -> None:
        assert self._failure is not None
        while True:
            process = self.process
            assert process is not None
            while process.poll() is None:
                await asyncio.sleep(0.25)
            if self._stopping:
                return
            now = time.monotonic()
            self._deaths = [t for t in self._deaths if now - t < self.WINDOW_S] + [now]
            if len(self._deaths) > self.RESTARTS:
                log.error("console process %d exited (status %s), the %d. time in %.0f s: stopping",
                          process.pid, process.returncode, len(self._deaths), self.WINDOW_S)
                self._failure.set_result(f"服务台进程 {self.WINDOW_S:g} 秒内退出了 {len(self._deaths)} 次"
                                         f"（最后一次退出码 {process.returncode}），zeroerrand up 停止")
                return
            delay = min(30.0, 2.0 ** (len(self._deaths) - 1))
            log.error("console process %d exited unexpectedly (status %s); starting it again in %.0f s "
                      "(routing goes on meanwhile)", process.pid, process.returncode, delay)
            await asyncio.sleep(delay)
            try:
                await self._spawn()
                self.restarts += 1
            except ConsoleDied as exc:
                log.error("console process did not start again: %s", exc)  # counted as a death next round

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.process is not None:
            await self._end(self.process)

    async def _end(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM (it stops serving and closes its store and broker), SIGKILL if it takes over 10 s."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.STOP_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.poll() is None:
                log.warning("console process %d did not stop within %.0f s: killing it", process.pid, self.STOP_TIMEOUT_S)
                process.kill()
        await asyncio.to_thread(process.wait)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 64):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def tell_ready(port: int) -> None:
    """In the console under ``up``: says it listens (its port) on the pipe ``up`` gave it, and closes it."""
    fd = os.environ.pop(READY_FD, None)
    if fd is None or not fd.isdigit():
        return
    with contextlib.suppress(OSError):
        os.write(int(fd), f"{port}\n".encode())
    with contextlib.suppress(OSError):
        os.close(int(fd))
