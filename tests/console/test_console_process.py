"""``zeroerrand up`` runs the console as a child process of its own (services/cli/supervise.py):
at a lower CPU priority, on the same store, restarted when it dies, stopped with ``up`` on SIGTERM,
and gone with ``up`` when ``up`` is killed outright."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import amqp_url, store_directory  # noqa: F401

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVING = re.compile(r"console process (\d+) serving on port (\d+)")


def _ppid_and_nice(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[16])  # ppid, nice (fields 4 and 19 of proc(5))


def _gone(pid: int) -> bool:
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _until(check: object, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:g} s; log:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


def _serving(log: Path, after: int = 0) -> tuple[int, int] | None:
    found = SERVING.findall(log.read_text(errors="replace"))
    return (int(found[-1][0]), int(found[-1][1])) if len(found) > after else None


def _start(amqp_url: str, data: Path, log: Path) -> subprocess.Popen[bytes]:  # noqa: F811
    env = {**os.environ, "ZEROERRAND_AMQP_URL": amqp_url, "ZEROERRAND_DATA_DIR": str(data),
           "ZEROERRAND_ROUTER_WATCH_RULES": "false", "ZEROERRAND_CONSOLE_PORT": "0", "PYTHONUNBUFFERED": "1",
           "ZEROERRAND_LOG_FORMAT": "text"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.cli", "up"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def test_up_runs_the_console_as_its_own_process(amqp_url: str) -> None:  # noqa: F811
    data = store_directory("zeroerrand-console-process-")
    log = data / "up.log"
    up = _start(amqp_url, data, log)
    try:
        _until(lambda: _serving(log) is not None or up.poll() is not None, 120, "the console did not serve", log)
        assert up.poll() is None, log.read_text()
        found = _serving(log)
        assert found is not None
        pid, port = found
        assert _ppid_and_nice(pid) == (up.pid, 5), "a child of up, at nice +5 (routing gets the CPU first)"
        assert "console" in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        page = httpx.get(f"http://127.0.0.1:{port}/login", timeout=10)
        assert page.status_code == 200 and "登录" in page.text
        assert f"console listening on http://127.0.0.1:{port}" in log.read_text(), "its output goes where up's does"

        # it dies: up says so and starts it again, routing untouched
        os.kill(pid, signal.SIGKILL)
        _until(lambda: _serving(log, after=1) is not None, 60, "the console was not started again", log)
        assert up.poll() is None
        assert re.search(rf"console process {pid} exited unexpectedly \(status -9\)", log.read_text())
        again = _serving(log, after=1)
        assert again is not None and again[0] != pid
        pid, port = again
        assert httpx.get(f"http://127.0.0.1:{port}/login", timeout=10).status_code == 200

        # SIGTERM (as Ctrl-C): both stop, cleanly
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0, log.read_text()[-4000:]
        _until(lambda: _gone(pid), 5, "the console outlived up", log)
        assert "Traceback" not in log.read_text()

        # up killed outright: the kernel stops the console (PR_SET_PDEATHSIG)
        up = _start(amqp_url, data, log)
        _until(lambda: _serving(log, after=2) is not None or up.poll() is not None, 120, "the console did not serve", log)
        found = _serving(log, after=2)
        assert found is not None and up.poll() is None
        up.kill()
        up.wait(10)
        _until(lambda: _gone(found[0]), 10, "the console outlived a killed up", log)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
        shutil.rmtree(data, ignore_errors=True)
