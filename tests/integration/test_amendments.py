"""One project, one record, end to end on the real RabbitMQ and store: the router (its registry on
the store), the ledger and the notifier running, ``zeroerrand sign`` as an operator runs it.

A project is signed (MA-01, MA-02, PL-01) and 政务服务局 accepts MA-01. Signing the same file again
is a harmless redelivery; a second agreement for the code without ``--amend``, and the same id
with another plan, are refused with the reason. A 补充协议 (PL-01, MA-03; another recruiting unit)
then routes MA-03 only, withdraws MA-02, keeps MA-01 (accepted) and says so, updates the project
record, and tells the enterprise once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.common.bus import BrokerPublisher, make_broker, request_out
from services.common.domain import Request
from services.common.messages import AcceptItem, AgreementSigned, PlannedItem
from services.common.settings import BrokerSettings, EvaluationSettings, NotifierSettings, RouterSettings
from services.common.storage import Store
from services.evaluation.app import create_evaluation
from services.evaluation.ledger import ItemState, item_key
from services.evaluation.repository import MongoLedgerRepository
from services.notifier.app import create_notifier
from services.notifier.repository import NOTIFICATIONS
from services.router.app import create_router
from services.router.registry import MongoAgreementRegistry
from services.router.routing import line_id
from tests.conftest import ALUMINIUM, ROOT
from tests.console.test_console_browser import small_project
from tests.integration.test_evaluation import until

pytestmark = pytest.mark.integration
GOV = "gov_service_bureau"


def agreement_file(path: Path, agreement: AgreementSigned, **changes: Any) -> Path:
    """The file an operator hands to ``zeroerrand sign``: the agreement without its envelope."""
    body = agreement.model_dump(mode="json", exclude={"type", "event_id", "occurred_at", "recorded_at", "backfill"})
    body.update(changes)
    path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return path


async def _sign(amqp_url: str, uri: str, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROERRAND_") and k != "MONGODB_URL"}
    env |= {"ZEROERRAND_AMQP_URL": amqp_url, "MONGODB_URL": uri, "ZEROERRAND_DATABASE": database,
            "ZEROERRAND_ENVIRONMENT": "development", "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", "sign", "--wait", "40", *args,
                                                   cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


async def _notices(store: Store, code: str) -> list[dict[str, Any]]:
    return [d async for d in store.db[NOTIFICATIONS.name].find({"project_code": code})]


async def test_an_amendment_routes_the_added_line_withdraws_the_unaccepted_one_and_tells_the_enterprise_once(
        amqp_url: str, amqp: object, clean_queues: None, rules_copy: Path, store: Store, embedded_uri: str,
        tmp_path: Path, tap: Any) -> None:
    broker = BrokerSettings(amqp_url=amqp_url)

    async def opened() -> Store:
        return store

    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=False, archive_rules=False), broker,
                           registry=MongoAgreementRegistry(opened))
    evaluation = create_evaluation(EvaluationSettings(rules_dir=rules_copy, sweep_interval_s=3600), broker, store=store)
    notifier = create_notifier(NotifierSettings(rules_dir=rules_copy, poll_interval_s=0.05), broker, store=store)
    for service in (evaluation, notifier, router):
        await service.app.start()
    items_tap = await tap("zeroerrand.items")
    sign = lambda *args: _sign(amqp_url, embedded_uri, store.database, *args)  # noqa: E731
    try:
        repo = MongoLedgerRepository(store)
        agreement = small_project(ALUMINIUM, f"am{uuid.uuid4().hex[:4]}", ("MA-01", "MA-02", "PL-01"))
        code, credit = agreement.project.code, agreement.project.enterprise.credit_code
        first = agreement_file(tmp_path / "first.json", agreement)
        done = await sign(str(first))
        assert done.returncode == 0 and "路由服务已受理" in done.stdout, done.stdout + done.stderr
        assert await until(lambda: _has(repo, code, 3))
        accept = AcceptItem(request_id=str(uuid.uuid4()), requested_at=datetime.now(UTC),
                            occurred_at=datetime.now(UTC), requested_by=GOV, project_code=code, item_code="MA-01")
        publisher_broker = make_broker(amqp_url)
        async with publisher_broker:
            await publisher_broker.connect()
            await BrokerPublisher(publisher_broker).publish_all([request_out(accept)])
        assert await until(lambda: _state(repo, code, "MA-01", ItemState.ACCEPTED))

        # the same agreement again: a redelivery, the same ids, nobody told twice
        told_before = Counter(d["event_type"] for d in await until(lambda: _told(store, code, "item.accepted")))
        again = await sign(str(first))
        assert again.returncode == 0 and "路由服务已受理" in again.stdout, again.stdout + again.stderr
        # a second agreement for the code, not marked as an amendment: refused with the reason
        plus = (*agreement.plan, PlannedItem(item="MA-03"))
        second = agreement_file(tmp_path / "second.json", agreement, agreement_id=agreement.agreement_id + "-B",
                                plan=[p.model_dump(mode="json") for p in plus])
        refused = await sign(str(second))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "project_known" in refused.stderr and f"已由协议 {agreement.agreement_id} 启动" in refused.stderr
        assert "--amend" in refused.stderr
        # the same agreement id with another plan: refused
        other = agreement_file(tmp_path / "other.json", agreement, plan=[p.model_dump(mode="json") for p in plus])
        reused = await sign(str(other))
        assert reused.returncode == 1 and "agreement_id_reused" in reused.stderr, reused.stdout + reused.stderr
        assert "内容不同" in reused.stderr

        # the 补充协议: PL-01 stays, MA-03 is added, MA-02 (not accepted) and MA-01 (accepted) removed
        amendment = agreement_file(
            tmp_path / "amendment.json", agreement, agreement_id=agreement.agreement_id + "-S1",
            project={**agreement.project.model_dump(mode="json"), "recruiting_unit": GOV},
            plan=[{"item": "PL-01"}, {"item": "MA-03"}])
        amended = await sign("--amend", str(amendment))
        assert amended.returncode == 4, amended.stdout + amended.stderr  # applied, one line could not be withdrawn
        assert "第 1 次变更" in amended.stdout and "新增 1 项（MA-03）" in amended.stdout
        assert "撤回 1 项（MA-02）" in amended.stdout
        assert "不能撤回：事项 MA-01（企业设立登记）当前状态为“已受理”" in amended.stdout

        assert await until(lambda: _has(repo, code, 4))
        lines = {i.item_code: i for i in await repo.project_items(code)}
        assert lines["MA-02"].state is ItemState.WITHDRAWN and not lines["MA-02"].is_open
        assert lines["MA-01"].state is ItemState.ACCEPTED and lines["MA-03"].state is not ItemState.WITHDRAWN
        project = await repo.project(code)
        assert project is not None
        assert (project.agreement_id, project.items_planned, project.recruiting_unit, project.revision,
                project.amendments) == (agreement.agreement_id, 2, GOV, 1, (agreement.agreement_id + "-S1",))
        [record] = await repo.amendments(code)
        assert [k["item_code"] for k in record.announced["kept"]] == ["MA-01"]

        # downstream: one message id per project and plan line, whatever carried it
        await items_tap.wait_for(1, where=lambda m: m.headers.get("x-zeroerrand-item") == "MA-03")
        by_item: dict[str, set[str]] = {}
        for message in items_tap.messages:
            by_item.setdefault(str(message.headers["x-zeroerrand-item"]), set()).add(str(message.message_id))
        assert by_item == {c: {line_id(code, c, Request.HANDLE)} for c in ("MA-01", "MA-02", "PL-01", "MA-03")}

        # the enterprise: one service start, the 一次性告知 of the first three, one notice of the amendment
        notices = await until(lambda: _with_amendment(store, code))
        enterprise = Counter(d["event_type"] for d in notices if d["recipient"] == f"enterprise:{credit}")
        channels = told_before["service.started"] and enterprise["service.started"]
        assert channels and enterprise["item.routed"] == 3 * channels and enterprise["project.amended"] == channels
        new_kinds = ("project.amended", "item.withdrawn", "agreement.rejected")
        assert Counter(d["event_type"] for d in notices if d["event_type"] not in new_kinds
                       and d["item_code"] != "MA-03") == told_before  # nothing repeated by the redelivery or the amendment
        rejected = [d for d in notices if d["event_type"] == "agreement.rejected"]
        assert {d["recipient"] for d in rejected} == {"unit:econ_dev_bureau", "role:operators"}  # not the enterprise
        assert all(d["title"].startswith("协议未受理") for d in rejected)
        [notice] = [d for d in notices if d["event_type"] == "project.amended" and d["channel"] == "inbox"
                    and d["recipient"] == f"enterprise:{credit}"]
        assert "新增审批事项 1 项" in notice["body"] and "税务登记及发票申领（MA-03）" in notice["body"]
        assert "撤回审批事项 1 项" in notice["body"] and "公章刻制备案（MA-02）" in notice["body"]
        assert "不能撤回" in notice["body"] and "企业设立登记" in notice["body"]
        withdrawn = [d for d in notices if d["event_type"] == "item.withdrawn"]
        assert withdrawn and all(d["item_code"] == "MA-02" for d in withdrawn)
        assert {d["recipient"] for d in notices if d["event_type"] == "project.amended"} >= {
            f"unit:{GOV}", "unit:econ_dev_bureau", f"enterprise:{credit}"}
    finally:
        for service in (router, notifier, evaluation):
            await service.app.stop()


async def _has(repo: MongoLedgerRepository, code: str, count: int) -> bool:
    return len(await repo.project_items(code)) >= count


async def _state(repo: MongoLedgerRepository, code: str, item: str, state: ItemState) -> bool:
    line = await repo.item(item_key(code, item))
    return line is not None and line.state is state


async def _told(store: Store, code: str, event_type: str) -> list[dict[str, Any]] | None:
    notices = await _notices(store, code)
    return notices if any(d["event_type"] == event_type for d in notices) else None


async def _with_amendment(store: Store, code: str) -> list[dict[str, Any]] | None:
    notices = await _notices(store, code)
    types = {d["event_type"] for d in notices}
    return notices if {"project.amended", "item.withdrawn"} <= types else None
