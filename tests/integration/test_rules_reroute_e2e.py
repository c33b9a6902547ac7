"""``zeroerrand rules reroute`` end to end, on the real RabbitMQ and store: the router, the ledger and
the notifier running, a rule revised while they run, then the command as an operator runs it. The
open item not yet accepted moves to the new unit and both units and the enterprise are told; the
accepted item stays where it was."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.common.bus import BrokerPublisher, make_broker, request_out
from services.common.messages import AcceptItem
from services.common.settings import BrokerSettings, EvaluationSettings, NotifierSettings, RouterSettings
from services.common.storage import Store
from services.evaluation.app import create_evaluation
from services.evaluation.ledger import ItemState, item_key
from services.evaluation.repository import MongoLedgerRepository
from services.evaluation.views import active_rules_version
from services.notifier.app import create_notifier
from services.notifier.repository import ITEMS as NOTIFIER_ITEMS
from services.notifier.repository import NOTIFICATIONS
from services.router.app import create_router
from services.router.dry_run_command import engine_for
from tests.conftest import ALUMINIUM, ROOT
from tests.console.test_console_browser import small_project
from tests.integration.test_evaluation import until
from tests.integration.test_router_rabbitmq import sign
from tests.unit.test_rules_reroute import move_gov_items

pytestmark = pytest.mark.integration
GOV, NEW = "gov_service_bureau", "econ_dev_bureau"


async def _cli(amqp_url: str, uri: str, database: str, rules: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, while the services go on in this one's event loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROERRAND_") and k != "MONGODB_URL"}
    env |= {"ZEROERRAND_AMQP_URL": amqp_url, "MONGODB_URL": uri, "ZEROERRAND_DATABASE": database,
            "ZEROERRAND_ROUTER_RULES_DIR": str(rules), "ZEROERRAND_ENVIRONMENT": "development",
            "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", "rules", "reroute", *args,
                                                   cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


async def test_a_reroute_moves_the_open_item_tells_both_units_and_leaves_the_accepted_one(
        amqp_url: str, amqp: object, clean_queues: None, rules_copy: Path, store: Store, embedded_uri: str) -> None:
    broker = BrokerSettings(amqp_url=amqp_url)
    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=True, reload_debounce_ms=50,
                                          archive_rules=False), broker)
    evaluation = create_evaluation(EvaluationSettings(rules_dir=rules_copy, sweep_interval_s=3600), broker, store=store)
    notifier = create_notifier(NotifierSettings(rules_dir=rules_copy, poll_interval_s=0.05), broker, store=store)
    for service in (evaluation, notifier, router):
        await service.app.start()
    try:
        repo = MongoLedgerRepository(store)
        first = engine_for(rules_copy).version
        assert await until(lambda: _active(repo, first))
        # MA-01 (政务服务局's 帮办代办) is ready at once; PL-01 (also 政务服务局's) waits for it
        agreement = small_project(ALUMINIUM, "rr", ("MA-01", "PL-01"))
        code, credit = agreement.project.code, agreement.project.enterprise.credit_code
        await sign(amqp, agreement)  # type: ignore[arg-type]
        assert await until(lambda: _states(repo, code, {"MA-01": ItemState.READY, "PL-01": ItemState.WAITING}))
        accept = AcceptItem(request_id=str(uuid.uuid4()), requested_at=datetime.now(UTC),
                            occurred_at=datetime.now(UTC), requested_by=GOV, project_code=code, item_code="MA-01")
        publisher_broker = make_broker(amqp_url)
        async with publisher_broker:
            await publisher_broker.connect()
            await BrokerPublisher(publisher_broker).publish_all([request_out(accept)])
        assert await until(lambda: _states(repo, code, {"MA-01": ItemState.ACCEPTED, "PL-01": ItemState.WAITING}))
        accepted = await repo.item(item_key(code, "MA-01"))
        assert accepted is not None

        # 政务服务局 revises the rules: its 帮办代办 items go to 经发局; the router makes it active
        second = engine_for(move_gov_items(rules_copy)).version
        assert second != first
        assert await until(lambda: _active(repo, second))

        done = await _cli(amqp_url, embedded_uri, store.database, rules_copy, "--project", code, "--operator", "张三",
                    "--wait", "30")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "PL-01 企业投资项目备案" in done.stdout and "已改派（台账已接受）" in done.stdout
        assert "MA-01 企业设立登记" in done.stdout and "不改派：状态为“已受理”" in done.stdout

        moved = await repo.item(item_key(code, "PL-01"))
        assert moved is not None
        assert (moved.responsible_unit, moved.state, moved.rules_version) == (NEW, ItemState.WAITING, second)
        assert moved.history[-1].type == "item.rerouted" and moved.history[-1].operator == "张三"
        kept = await repo.item(item_key(code, "MA-01"))
        assert kept is not None
        assert (kept.responsible_unit, kept.state, kept.version, kept.rules_version) == (
            GOV, ItemState.ACCEPTED, accepted.version, first)

        notices = await until(lambda: _rerouted_notices(store, code, {f"unit:{GOV}", f"unit:{NEW}",
                                                                      f"enterprise:{credit}"}))
        by_recipient = {(d["recipient"], d["title"]) for d in notices}
        assert (f"unit:{GOV}", "事项已改派：" + agreement.project.name + " / 企业投资项目备案") in by_recipient
        assert (f"enterprise:{credit}", "承办单位变更：企业投资项目备案") in by_recipient
        assert any(r == f"unit:{NEW}" and t.startswith("改派给贵单位的审批事项") for r, t in by_recipient)
        assert all(d["item_code"] == "PL-01" for d in notices)
        read_model = await store.db[NOTIFIER_ITEMS.name].find_one({"_id": f"{code}/PL-01"})
        assert read_model is not None and read_model["responsible_unit"] == NEW

        again = await _cli(amqp_url, embedded_uri, store.database, rules_copy, "--project", code, "--wait", "10")
        assert again.returncode == 0 and "没有需要重新分派的事项" in again.stdout, again.stdout + again.stderr
    finally:
        for service in (router, notifier, evaluation):
            await service.app.stop()


async def _active(repo: MongoLedgerRepository, version: str) -> bool:
    found = await active_rules_version(repo)
    return found is not None and found.version == version


async def _states(repo: MongoLedgerRepository, code: str, expected: dict[str, ItemState]) -> bool:
    return {i.item_code: i.state for i in await repo.project_items(code)} == expected


async def _rerouted_notices(store: Store, code: str, recipients: set[str]) -> list[dict[str, Any]] | None:
    found = [d async for d in store.db[NOTIFICATIONS.name].find({"project_code": code, "event_type": "item.rerouted",
                                                                  "channel": "inbox"})]
    return found if recipients <= {d["recipient"] for d in found} else None
