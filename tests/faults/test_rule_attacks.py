"""Rule files saved to attack the router: each refused within 5 s with its file (and line), while
the router keeps routing with the last good rules; ``zeroerrand rules check`` refuses them too."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.common.settings import BrokerSettings, RouterSettings
from services.router.app import Router, create_router
from tests.conftest import CONSULT_UNKNOWN, example
from tests.faults.harness import CLI
from tests.integration.test_router_rabbitmq import sign
from tests.unit.test_rule_files import explode_cases

pytestmark = pytest.mark.timeout(300)
ROUTED_PER_AGREEMENT = 6  # CONSULT_UNKNOWN: 6 items routed, the unknown one parked


def alias_bomb(rules: Path) -> tuple[Path, range | None, str]:
    path = rules / "routing.yaml"
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    start = path.read_text(encoding="utf-8").count("\n") + 2
    path.write_text(path.read_text(encoding="utf-8") + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path, range(start, start + 10), "200,000"


def deep_nesting(rules: Path) -> tuple[Path, range | None, str]:
    path = rules / "catalog.yaml"
    start = path.read_text(encoding="utf-8").count("\n") + 2
    path.write_text(path.read_text(encoding="utf-8") + "\ndeep: " + "[" * 10_000 + "]" * 10_000 + "\n", encoding="utf-8")
    return path, range(start, start + 1), "嵌套超过 32 层"


def huge_file(rules: Path) -> tuple[Path, range | None, str]:
    path = rules / "units.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n# " + "填充" * 5_000_000 + "\n", encoding="utf-8")  # 30 MB
    return path, None, "超过上限"


def endless_check(rules: Path) -> tuple[Path, range | None, str]:
    line = explode_cases(rules)
    return rules / "routing.yaml", range(line + 1, line + 2), "超过上限 100,000"


def slow_to_read(rules: Path) -> tuple[Path, range | None, str]:
    path = rules / "routing.yaml"  # 150,000 scalars: within every bound, but minutes of parsing
    path.write_text(path.read_text(encoding="utf-8") + "\nfiller: [" + ", ".join(f"s{i}" for i in range(150_000)) + "]\n",
                    encoding="utf-8")
    return path, None, "秒仍未完成"


def not_utf8(rules: Path) -> tuple[Path, range | None, str]:
    path = rules / "catalog.yaml"
    path.write_bytes(path.read_bytes() + b"\n# \xff\xfe\xfa\n")
    return path, None, "不是 UTF-8"


def symlink_to_dev_zero(rules: Path) -> tuple[Path, range | None, str]:
    path = rules / "routing.yaml"  # size 0 by stat, endless by read
    path.unlink()
    path.symlink_to("/dev/zero")
    return path, None, "不是普通文件"


def fifo(rules: Path) -> tuple[Path, range | None, str]:
    path = rules / "catalog.yaml"  # opening it for reading would wait for a writer for ever
    path.unlink()
    os.mkfifo(path)
    return path, None, "管道（FIFO）"


def directory(rules: Path) -> tuple[Path, range | None, str]:
    path = rules / "units.yaml"
    path.unlink()
    path.mkdir()
    return path, None, "目录"


ATTACKS: dict[str, Callable[[Path], tuple[Path, range | None, str]]] = {
    "alias bomb (9 levels x 9 aliases)": alias_bomb, "10,000-deep nesting": deep_nesting, "30 MB file": huge_file,
    "static check of 144 million cases": endless_check, "150,000 scalars (slow to parse)": slow_to_read,
    "not UTF-8": not_utf8, "symlink to /dev/zero": symlink_to_dev_zero, "FIFO": fifo, "directory": directory,
}


@pytest.fixture
async def watching_router(amqp_url: str, rules_copy: Path, clean_queues: None) -> AsyncIterator[Router]:
    """The router with its defaults (a 3 s, 512 MiB bounded check), watching its rules directory."""
    service = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=True),
                            BrokerSettings(amqp_url=amqp_url))
    await service.app.start()
    yield service
    await service.app.stop()


async def test_every_rule_file_attack_is_refused_within_5_s_while_the_router_keeps_routing(
        watching_router: Router, amqp: aio_pika.abc.AbstractRobustConnection, tap: Any, rules_copy: Path) -> None:
    rules_events = await tap("zeroerrand.events", "rules.*")
    items = await tap("zeroerrand.items")
    good_version = watching_router.rules.version
    originals = {p.name: p.read_bytes() for p in rules_copy.iterdir()}
    signed: dict[str, float] = {}
    stop = asyncio.Event()

    async def keep_signing() -> None:  # an agreement every 0.25 s, all through the attacks
        n = 0
        while not stop.is_set():
            agreement = example(CONSULT_UNKNOWN, suffix=f"attack-{n}")
            signed[agreement.project.code] = time.monotonic()
            await sign(amqp, agreement)
            n += 1
            await asyncio.sleep(0.25)

    signer = asyncio.create_task(keep_signing())
    figures = []
    try:
        for name, attack in ATTACKS.items():
            before = len(rules_events.messages)
            path, lines, says = attack(rules_copy)
            saved, routed_before = time.monotonic(), len(items.messages)
            [*_, rejected] = await rules_events.wait_for(before + 1, timeout=15)
            took, routed_meanwhile = time.monotonic() - saved, len(items.messages) - routed_before
            body = json.loads(rejected.body)
            wheres = [f"{path}:{n} " for n in lines] if lines else [f"{path} "]
            assert rejected.type == "rules.rejected" and body["active_version"] == good_version, body
            [where] = [w for w in wheres if any(p.startswith(w) and says in p for p in body["problems"])] or [
                pytest.fail(f"{name}: no problem at {wheres[0]}…: {body['problems'][:3]}")]

            started = time.monotonic()
            checked = subprocess.run([CLI, "rules", "check", "--rules", str(rules_copy)], capture_output=True,
                                     text=True, timeout=60)
            cli_took = time.monotonic() - started
            assert checked.returncode == 1 and where in checked.stderr and says in checked.stderr, checked.stderr
            figures.append(f"{name}: refused {took:.1f} s after saving ({routed_meanwhile} items routed meanwhile), "
                           f"`rules check` {cli_took:.1f} s")
            assert took <= 5 and cli_took <= 5, figures[-1]
            assert took < 1 or routed_meanwhile > 0, f"{name}: the router stopped routing while it checked"

            for restored, data in originals.items():  # the operator puts the good files back
                target = rules_copy / restored
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
                target.write_bytes(data)
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await signer
    routed = await items.wait_for(len(signed) * ROUTED_PER_AGREEMENT, timeout=30,
                                  where=lambda m: m.type == "approval.item")
    versions = {m.headers["x-zeroerrand-rules-version"] for m in routed}
    print("\n".join(figures))
    print(f"{len(signed)} agreements signed during the attacks, all {len(routed)} items routed with version "
          f"{good_version}; rules events: {[m.type for m in rules_events.messages]}")
    assert versions == {good_version} and watching_router.rules.version == good_version
    assert len(rules_events.messages) == len(ATTACKS)  # restoring the good files changed nothing
