"""The router archives every version it activates in the store; ``rules history`` and ``rules show``
read them back, across a restart of the router (real processes, real RabbitMQ and store)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.storage import Store
from services.router.versions import RULES_ACTIVATIONS, RULES_VERSIONS, AmbiguousVersion, version_files
from tests.conftest import ROOT
from tests.unit.test_rule_files import edit

pytestmark = pytest.mark.integration


def _env(amqp_url: str, uri: str, database: str, rules: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROERRAND_") and k != "MONGODB_URL"}
    return env | {"ZEROERRAND_AMQP_URL": amqp_url, "MONGODB_URL": uri, "ZEROERRAND_DATABASE": database,
                  "ZEROERRAND_ROUTER_RULES_DIR": str(rules), "ZEROERRAND_ROUTER_ARCHIVE_RULES": "true",
                  "ZEROERRAND_ROUTER_RELOAD_DEBOUNCE_MS": "50", "ZEROERRAND_ENVIRONMENT": "development",
                  "PYTHONPATH": str(ROOT)}


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _until(store: Store, collection: str, count: int, timeout: float = 30.0) -> list[dict[str, object]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = [d async for d in store.db[collection].find({})]
        if len(found) >= count:
            return found
        assert loop.time() < deadline, f"{collection}: {len(found)} of {count} after {timeout} s"
        await asyncio.sleep(0.2)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "rules", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_history_survives_a_router_restart(amqp_url: str, embedded_uri: str, store: Store, rules_copy: Path,
                                                 tmp_path: Path, processes: list[subprocess.Popen[bytes]],
                                                 clean_queues: None) -> None:
    env = _env(amqp_url, embedded_uri, store.database, rules_copy)
    routing = rules_copy / "routing.yaml"
    original = routing.read_text(encoding="utf-8")
    log = (tmp_path / "router.log").open("wb")

    def start_router() -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", "services.cli", "router"], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    first = start_router()
    [version_one] = await _until(store, RULES_VERSIONS.name, 1)
    await asyncio.sleep(0.5)  # the watcher is running once the router has announced its rules
    edit(routing, "id: consult.energy-review-city", "id: consult.energy-review-city-v2")
    await _until(store, RULES_VERSIONS.name, 2)
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0

    second = start_router()  # starts with the second version: the same document, one more activation
    await _until(store, RULES_ACTIVATIONS.name, 3)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    assert await store.db[RULES_VERSIONS.name].count_documents({}) == 2

    listed = _cli(env, "history", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert len(entries) == 2 and entries[0]["version"] == version_one["_id"]
    assert entries[1]["activations"] == 2 and entries[1]["previous_version"] == version_one["_id"]
    assert entries[1]["changes"] == [{"file": "routing.yaml", "added": 1, "removed": 1}]
    text = _cli(env, "history")
    assert text.returncode == 0 and "共 2 个规则版本曾经生效" in text.stdout
    assert "routing.yaml 增加 1 行、删除 1 行" in text.stdout

    shown = _cli(env, "show", str(version_one["_id"])[:8], "--file", "routing.yaml")
    assert shown.returncode == 0 and shown.stdout == original
    whole = _cli(env, "show", entries[1]["version"])
    assert whole.returncode == 0 and "consult.energy-review-city-v2" in whole.stdout
    assert all(f"# ===== {name}" in whole.stdout for name in ("units.yaml", "catalog.yaml", "routing.yaml"))
    missing = _cli(env, "show", "000000000000")
    assert missing.returncode == 1 and "没有存档的规则版本" in missing.stderr
    short = _cli(env, "show", str(version_one["_id"])[:8])  # the header names the whole version
    assert short.returncode == 0 and f"（规则版本 {version_one['_id']}）" in short.stdout



async def test_a_prefix_of_several_versions_is_ambiguous_not_missing(store: Store) -> None:
    files = [{"name": "routing.yaml", "text": "rules: []\n"}]
    await store.db[RULES_VERSIONS.name].insert_many([{"_id": "abc111", "files": files}, {"_id": "abc222", "files": files}])
    with pytest.raises(AmbiguousVersion) as caught:
        await version_files(store, "abc")
    assert caught.value.matches == ["abc111", "abc222"]
    assert await version_files(store, "abc2") == ("abc222", {"routing.yaml": "rules: []\n"})
    assert await version_files(store, "abd") is None
