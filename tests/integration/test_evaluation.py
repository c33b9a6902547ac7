"""The evaluation service on the real RabbitMQ and the embedded store, driven as operators would;
the ledger repository's contract on the fake and the real store."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common.domain import ServiceMode
from services.common.messages import AgreementSigned, PlannedItem
from services.common.settings import BrokerSettings, EvaluationSettings, RouterSettings
from services.common.storage import Store
from services.evaluation.app import Evaluation, create_evaluation
from services.evaluation.ledger import Assessment, ItemState, ProjectRecord, RequestOutcome, local_day, new_item
from services.evaluation.repository import COLLECTIONS as COLLECTIONS_OF_LEDGER
from services.evaluation.repository import LedgerRepository, MemoryLedgerRepository, MongoLedgerRepository, item_doc
from services.evaluation.views import ViewContext, active_rules_version, blockers_to_resolve
from services.evaluation.working_days import WorkingCalendar
from services.router.app import Router, create_router
from tests.conftest import ALUMINIUM, example
from tests.integration.test_router_rabbitmq import sign
from tests.unit.ledger_kit import CREDIT, UNIT_NAMES, at, routed

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "store"])
async def repository(request: pytest.FixtureRequest, store: Store) -> LedgerRepository:
    """The fake and the real adapter: one contract, one test body."""
    repo: LedgerRepository = MemoryLedgerRepository() if request.param == "memory" else MongoLedgerRepository(store)
    await repo.ensure()
    return repo


async def test_the_repository_keeps_records_and_checks_versions(repository: LedgerRepository) -> None:
    day = date(2026, 11, 2)
    item = new_item(routed("REPO-1", "CP-01", day))
    assert await repository.add_item(item) and not await repository.add_item(item)  # a redelivery adds nothing
    loaded = await repository.item(item.key)
    assert loaded == item
    moved = loaded.model_copy(update={"state": ItemState.READY, "ready_on": day})
    assert await repository.save_item(moved, loaded)
    assert not await repository.save_item(moved, loaded)  # stale: another writer came first
    stored = await repository.item(item.key)
    assert stored is not None and stored.version == 1 and stored.ready_on == day
    assert [i.key for i in await repository.open_items()] == [item.key]
    assert [i.key for i in await repository.project_items("REPO-1")] == [item.key]

    await repository.add_project(ProjectRecord(
        code="REPO-1", agreement_id="A", name="项目", enterprise="企业", credit_code=CREDIT, recruiting_unit="econ_dev_bureau",
        signed_on=day, ledger_owner="econ_dev_bureau", items_planned=1, items_routed=1, items_unroutable=0,
        rules_version="v", started_at=at(day), recorded_at=at(day)))
    assert await repository.close_project("REPO-1", at(day)) and not await repository.close_project("REPO-1", at(day))
    project = await repository.project("REPO-1")
    assert project is not None and project.delivered_at is not None

    assessment = Assessment(assessment_id="as-1", project_code="REPO-1", provider="planning_construction_bureau",
                            rater="enterprise", requested_by=CREDIT, year=2026, scores={"notice": 10.0}, total=50,
                            bad=True, rectify_by=day, occurred_at=at(day), recorded_at=at(day))
    assert await repository.add_assessment(assessment) and not await repository.add_assessment(assessment)
    same_rater = assessment.model_copy(update={"assessment_id": "as-2"})  # arrived at the same time
    assert not await repository.add_assessment(same_rater) and await repository.assessment("as-2") is None
    assert await repository.find_assessment("REPO-1", "planning_construction_bureau", "enterprise", 2026) == assessment
    assert await repository.find_assessment("REPO-1", "planning_construction_bureau", "enterprise", 2025) is None
    rectified = assessment.model_copy(update={"rectified_on": day, "rectification": "已整改"})
    assert await repository.rectify_assessment(rectified) and not await repository.rectify_assessment(rectified)
    assert [a.rectified_on for a in await repository.assessments(2026)] == [day]

    pending = RequestOutcome(request_id="req-1", request_type="item.accept", requested_by="x", fingerprint="f1",
                             status="pending", request={"a": 1}, recorded_at=at(day))
    assert await repository.claim(pending) == pending
    other = pending.model_copy(update={"fingerprint": "f2", "request_type": "item.deliver"})
    assert await repository.claim(other) == pending  # the id is taken: what is stored comes back
    await repository.record_outcome("req-1", "refused", "首问负责")
    stored = await repository.outcome("req-1")
    assert stored is not None and (stored.status, stored.reason, stored.fingerprint) == ("refused", "首问负责", "f1")
    assert [o.request_id for o in await repository.refused()] == ["req-1"]


@pytest.fixture
async def running(amqp_url: str, rules_copy: Path, clean_queues: None, store: Store) -> AsyncIterator[
        tuple[Router, Evaluation, Store]]:
    broker = BrokerSettings(amqp_url=amqp_url)
    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=False), broker)
    evaluation = create_evaluation(EvaluationSettings(rules_dir=rules_copy, sweep_interval_s=3600), broker, store=store)
    await evaluation.app.start()
    await router.app.start()
    yield router, evaluation, store
    await router.app.stop()
    await evaluation.app.stop()


async def cli(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                   env={**os.environ, **env})
    out, err = await process.communicate()
    assert process.returncode == 0, f"zeroerrand {' '.join(args)} failed:\n{out.decode()}\n{err.decode()}"
    return out.decode()


async def until(check: Any, timeout: float = 20) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(0.2)


async def cli_fails(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                   env={**os.environ, **env})
    out, err = await process.communicate()
    assert process.returncode == 1, f"zeroerrand {' '.join(args)} should have been refused:\n{out.decode()}"
    return err.decode()


def agreement_with_prerequisites() -> AgreementSigned:
    agreement = example(ALUMINIUM, suffix="e2e")
    plan = tuple(PlannedItem(item=code) for code in ("MA-01", "MA-02", "LT-01", "LT-02"))
    return agreement.model_copy(update={"plan": plan})


async def test_end_to_end_prerequisites_task_orders_refusals_and_the_report(
        running: Any, amqp: Any, amqp_url: str, embedded_uri: str, tmp_path: Path) -> None:
    _, _, store = running
    repo = MongoLedgerRepository(store)
    agreement = agreement_with_prerequisites()
    code, credit = agreement.project.code, agreement.project.enterprise.credit_code
    env = {"ZEROERRAND_AMQP_URL": amqp_url, "MONGODB_URL": embedded_uri, "ZEROERRAND_DATABASE": store.db.name}
    await sign(amqp, agreement)

    async def routed_count() -> bool:
        return len(await repo.project_items(code)) == 4
    assert await until(routed_count)
    shown = await cli(env, "ledger", "show", code)
    assert re.search(r"MA-02 .*等待 MA-01 办结移交", shown)
    assert re.search(r"LT-02 .*等待 MA-01、LT-01 办结移交", shown)
    assert re.search(r"MA-01 .*可办理（待对接企业）\t首问响应 已用 0/2 工作日（计时中）", shown)

    refused = await cli_fails(env, "item", "accept", code, "MA-01", "--by", "planning_construction_bureau")
    assert "台账拒绝了该请求：首问负责" in refused and "政务服务局负责" in refused
    waiting = await cli_fails(env, "item", "accept", code, "LT-02", "--by", "zhenglian_company")
    assert "等待前置事项 MA-01、LT-01" in waiting
    for step in (["accept"], ["complete"], ["deliver", "--result", "营业执照"]):
        await cli(env, "item", step[0], code, "MA-01", "--by", "gov_service_bureau", *step[1:])

    not_econ = await cli_fails(env, "task-order", "issue", code, "MA-02", "--by", "planning_construction_bureau")
    assert "经济发展招商服务局下发" in not_econ
    await cli(env, "task-order", "issue", code, "MA-02", "--by", "econ_dev_bureau")
    await cli(env, "task-order", "accept", code, "MA-02", "--by", "zhenglian_company", "--specialist", "李明",
              "--phone", "13800001111")
    shown = await cli(env, "ledger", "show", code)
    assert re.search(rf"MA-02 .*任务单 RWD-{code}-MA-02 已接收，服务专员 李明（13800001111）", shown)

    # the enterprise phones in a 堵点 (an operator enters it); a unit cannot send it; 政联公司 resolves it
    not_enterprise = await cli_fails(env, "item", "report-issue", code, "MA-02", "--by", "zhenglian_company",
                                     "--reason", "现场踏勘一直未安排")
    assert "只能由服务对象企业" in not_enterprise
    await cli(env, "item", "report-issue", code, "MA-02", "--by", credit, "--reason", "现场踏勘一直未安排")
    shown = await cli(env, "ledger", "show", code)
    assert re.search(r"MA-02 .*堵点/卡点	.*堵点：现场踏勘一直未安排（须由政联公司解决）", shown)
    [row] = await blockers_to_resolve(repo, ViewContext(UNIT_NAMES, WorkingCalendar(), 2, local_day(datetime.now(UTC))),
                                      "zhenglian_company")
    assert row.item_code == "MA-02" and row.blockers[0].reported_by_name == f"服务对象（{agreement.project.enterprise.name}）"
    await cli(env, "item", "unblock", code, "MA-02", "--by", "zhenglian_company", "--note", "已安排踏勘")
    assert (await repo.item(f"{code}/MA-02")).state is ItemState.READY  # type: ignore[union-attr]
    active = await until(lambda: active_rules_version(repo))  # the router announced its rules at start
    assert active is not None and active.rules > 0  # type: ignore[operator]
    assert re.search(r"MA-01 .*已移交\t首问响应 已用 0/2 工作日（已停止）.*"
                     r"承诺时限 已用 0/1 工作日（已停止）[^\t]*（法定 3 个工作日）", shown)
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    assert "晚于今天" in await cli_fails(env, "sweep", "--today", future)  # it would send real cards
    listed = await cli(env, "ledger", "requests")
    assert "首问负责" in listed and "item.accept" in listed

    full = ["--score", "responsiveness=20", "--score", "notice=20", "--score", "efficiency=25", "--score",
            "attitude=15", "--score", "free_of_charge=10", "--score", "delivery=10"]
    await cli(env, "assess", code, "--provider", "gov_service_bureau", "--rater", "enterprise", "--by", credit, *full,
              "--comment", "营业执照当天办结")
    not_theirs = await cli_fails(env, "assess", code, "--provider", "gov_service_bureau", "--rater", "recruiting_unit",
                                 "--by", "planning_construction_bureau", *full)
    assert "不能代为提交" in not_theirs
    year = local_day(datetime.now(UTC)).year
    out = tmp_path / "report"
    summary = await cli(env, "report", "--year", str(year), "--out", str(out))
    scores = (out / "scores.csv").read_text(encoding="utf-8-sig")
    # only the enterprise rated 政务服务局 on this project: the score is marked as decided by that group alone
    assert re.search(r"和林格尔新区政务服务局,帮办代办,.*,1/1,1/0,50\.0,1,.*,100\.0,仅服务对象,合格", scores)
    assert re.search(r"内蒙古政联招商服务有限公司,专业跑腿,.*,未评价", scores)
    lines = summary.strip().splitlines()
    assert "退出/整改名单：无" in summary and "内蒙古政联招商服务有限公司" in lines[-2] + lines[-1]
    assert "营业执照当天办结" in (out / "opinions.csv").read_text(encoding="utf-8-sig")


def first_version_item(project: str, code: str, state: str, **fields: Any) -> dict[str, Any]:
    """A ledger item as the first version stored it (clock from routing, 好差评 era)."""
    routed = datetime(2026, 3, 18, 2, tzinfo=UTC)
    return {"_id": f"{project}/{code}", "project_code": project, "item_code": code, "item_name": f"事项{code}",
            "stage": "construction_permit", "mode": fields.pop("mode", "joint"),
            "evaluated_as": fields.pop("evaluated_as", "joint"), "evaluator": "gov_service_bureau",
            "responsible_unit": fields.pop("unit", "planning_construction_bureau"),
            "approving_authority": "planning_construction_bureau", "time_limit_days": 5, "routed_on": "2026-03-18",
            "state": state, "version": len(fields.get("history", [])), "applied": ["routed-1"], "blockers": [],
            "pauses": [], "overdue_sent": [], "finished_on": None, "delivered_on": None, "results": [],
            "history": [{"event_id": "routed-1", "type": "item.routed", "to": "routed", "occurred_at": routed,
                         "recorded_at": routed, "late": False}], **fields}


async def test_a_ledger_the_first_version_wrote_is_upgraded_once_and_then_read(store: Store) -> None:
    from services.evaluation.migrations import upgrade

    await store.ensure(COLLECTIONS_OF_LEDGER)
    accepted_at = datetime(2026, 3, 20, 2, tzinfo=UTC)
    blocked = first_version_item("OLD-1", "CP-01", "blocked", overdue_sent=["warning", "yellow"],
                                 blockers=[{"event_id": "b-1", "reason": "消防", "resolver": "public_utilities_bureau",
                                            "reported_by": "planning_construction_bureau", "opened_at": accepted_at,
                                            "closed_at": None}])
    blocked["history"] += [{"event_id": "acc-1", "type": "item.accepted", "from": "routed", "to": "accepted",
                            "by": "planning_construction_bureau", "occurred_at": accepted_at,
                            "recorded_at": accepted_at, "late": False},
                           {"event_id": "b-1", "type": "item.blocked", "from": "accepted", "to": "blocked",
                            "by": "planning_construction_bureau", "occurred_at": accepted_at,
                            "recorded_at": accepted_at, "late": False}]
    errand = first_version_item("OLD-1", "PL-04", "routed", mode="errand", evaluated_as="errand",
                                unit="zhenglian_company")
    await store.db["ledger_items"].insert_many([blocked, errand])
    await store.db["ledger_projects"].insert_one({
        "_id": "OLD-1", "agreement_id": "A-OLD", "name": "旧项目", "enterprise": "旧企业", "recruiting_unit": "econ_dev_bureau",
        "signed_on": "2026-03-18", "ledger_owner": "econ_dev_bureau", "items_planned": 2, "items_routed": 2,
        "items_unroutable": 0, "rules_version": "v1", "started_at": accepted_at, "recorded_at": accepted_at,
        "delivered_at": None})
    await store.db["notifier_projects"].insert_one({"_id": "OLD-1", "name": "旧项目", "recruiting_unit": "econ_dev_bureau",
                                                    "enterprise": {"name": "旧企业", "credit_code": CREDIT}})
    # written by version 2: without the look-up fields of the console's views
    second = new_item(routed("OLD-2", "PL-04", date(2026, 3, 18), unit="zhenglian_company", mode=ServiceMode.ERRAND))
    second = second.model_copy(update={"state": ItemState.READY, "ready_on": date(2026, 3, 18)})
    version_two = {k: v for k, v in item_doc(second).items() if k not in ("open_resolvers", "order_state", "order_assignee")}
    await store.db["ledger_items"].insert_one(version_two)
    assert await upgrade(store) == 4 + 3  # and a journal base for each of the 3 lines
    assert await upgrade(store) == 0  # once
    upgraded = MongoLedgerRepository(store)
    assert [i.key for i in await upgraded.task_order_items(state="to_issue")] == ["OLD-2/PL-04"]
    assert [i.key for i in await upgraded.task_order_items(state="issued")] == ["OLD-1/PL-04"]  # the old router's
    assert [i.key for i in await upgraded.resolver_items("public_utilities_bureau")] == ["OLD-1/CP-01"]
    repo = MongoLedgerRepository(store)
    item = await repo.item("OLD-1/CP-01")
    assert item is not None and item.state is ItemState.BLOCKED and item.resume_to is ItemState.IN_PROGRESS
    assert item.accepted_on == date(2026, 3, 20) and item.blockers[0].resolver == "public_utilities_bureau"
    assert item.overdue_sent == ("statutory:warning", "statutory:yellow")
    order = await repo.item("OLD-1/PL-04")
    assert order is not None and order.state is ItemState.READY and order.ready_on == date(2026, 3, 18)
    assert order.task_order is not None and order.task_order.automatic and order.task_order.number == "RWD-OLD-1-PL-04"
    project = await repo.project("OLD-1")
    assert project is not None and project.credit_code == CREDIT
    # the journal starts at the line as upgraded, and the next version is claimed on top of it
    from services.evaluation.journal import fold
    assert fold(await repo.journal("OLD-1/CP-01")) == item
    assert await repo.save_item(item.model_copy(update={"results": ("证书",)}), item)
    assert not await repo.save_item(item.model_copy(update={"results": ("另一份",)}), item)
    assert fold(await repo.journal("OLD-1/CP-01")) == await repo.item("OLD-1/CP-01")
