"""The evaluation service on the real RabbitMQ and the embedded store, driven as operators would."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common.messages import ItemAccepted, ItemCompleted, ItemDelivered
from services.common.settings import BrokerSettings, EvaluationSettings, RouterSettings
from services.common.storage import Store
from services.evaluation.app import Evaluation, create_evaluation
from services.evaluation.repository import COLLECTIONS, LedgerRepository, local_day
from services.evaluation.working_days import WorkingCalendar
from services.router.app import Router, create_router
from services.router.routing import route_agreement
from tests.conftest import CONSULT_UNKNOWN, example
from tests.integration.test_router_rabbitmq import sign

pytestmark = pytest.mark.integration


async def test_redelivery_changes_nothing_twice_and_invalid_transitions_are_parked(store: Store, engine: Any) -> None:
    ledger = LedgerRepository(store)
    await store.ensure(COLLECTIONS)
    result = route_agreement(example(CONSULT_UNKNOWN, suffix="ledger"), engine)
    assert result.started is not None
    now = datetime.now(UTC)
    await ledger.record_started(result.started, now)
    for routed in result.routed:
        await ledger.record_routed(routed, now)
        await ledger.record_routed(routed, now)
    code = result.started.project.code
    common = {"occurred_at": now, "recorded_at": now, "project_code": code, "item_code": "MA-01",
              "reported_by": "gov_service_bureau"}
    accepted = ItemAccepted(event_id="acc-1", **common)
    assert await ledger.apply_progress(accepted, now) == "applied"
    assert await ledger.apply_progress(accepted, now) == "duplicate"
    delivered = ItemDelivered(event_id="del-early", results=("营业执照",), **common)
    assert await ledger.apply_progress(delivered, now) == "parked"
    [parked] = await ledger.parked_events()
    assert parked["_id"] == "del-early" and "不能移交结果" in parked["reason"]
    backfilled = ItemCompleted(event_id="done-1", **{**common, "occurred_at": now - timedelta(days=3)})
    assert await ledger.apply_progress(backfilled, now) == "applied"
    [item] = [d for d in await ledger.project_items(code) if d["item_code"] == "MA-01"]
    assert item["state"] == "completed" and item["version"] == 2
    assert [h["type"] for h in item["history"]] == ["item.routed", "item.accepted", "item.completed"]
    assert [h["late"] for h in item["history"]] == [False, False, True]  # recorded 3 days after the fact


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


async def test_end_to_end_sign_drive_to_delivery_rate_and_report(running: Any, amqp: Any, amqp_url: str,
                                                                 embedded_uri: str, tap: Any, tmp_path: Path) -> None:
    _, _, store = running
    events = await tap("zeroerrand.events", "project.delivered")
    ledger = LedgerRepository(store)
    agreement = example(CONSULT_UNKNOWN, suffix="e2e")
    code = agreement.project.code
    env = {"ZEROERRAND_AMQP_URL": amqp_url, "MONGODB_URL": embedded_uri, "ZEROERRAND_DATABASE": store.db.name}
    await sign(amqp, agreement)

    async def routed_count() -> bool:
        return len(await ledger.project_items(code)) == 6
    assert await until(routed_count)

    today = local_day(datetime.now(UTC))
    calendar = WorkingCalendar()
    late_day = calendar.add_working_days(today, 6)  # CP-01 has 3 working days: finished after 6, it is late
    sweep_day = calendar.add_working_days(today, 5)
    on_time = ["MA-01", "PL-01", "PL-03", "PL-06", "EP-03"]

    for item in on_time:
        await cli(env, "item", "accept", code, item)
    await cli(env, "item", "block", code, "EP-03", "--reason", "消防设计需补充", "--resolver", "public_utilities_bureau")

    async def blocked() -> bool:
        return any(d["state"] == "blocked" for d in await ledger.project_items(code))
    assert await until(blocked)
    shown = await cli(env, "ledger", "show", code)
    assert re.search(r"EP-03 施工图联合审查.*堵点/卡点.*堵点：消防设计需补充（须由公共事业服务局解决）", shown)
    await cli(env, "item", "unblock", code, "EP-03", "--note", "已补充消防设计专篇")
    for item in on_time:
        await cli(env, "item", "complete", code, item)
        await cli(env, "item", "deliver", code, item, "--result", f"{item} 审批结果")

    await cli(env, "item", "accept", code, "CP-01")
    swept = await cli(env, "sweep", "--today", sweep_day.isoformat())
    assert re.search(rf"{code}/CP-01 红牌", swept) and re.search(rf"{code}/CP-01 黄牌", swept)
    again = await cli(env, "sweep", "--today", sweep_day.isoformat())
    assert f"{code}/CP-01" not in again  # each level once
    late = f"{late_day.isoformat()}T10:00:00+08:00"
    await cli(env, "item", "complete", code, "CP-01", "--at", late)
    await cli(env, "item", "deliver", code, "CP-01", "--result", "建筑工程施工许可证", "--at", late)

    [done] = await events.wait_for(1, timeout=30)
    assert json.loads(done.body)["project_code"] == code
    assert json.loads(done.body)["items_delivered"] == 6

    await cli(env, "rate", code, "--provider", "gov_service_bureau", "--by", "enterprise", "--level", "非常满意")
    rated = await cli(env, "rate", code, "--provider", "planning_construction_bureau", "--by", "recruiting_unit",
                      "--level", "不满意", "--comment", "施工许可超时")
    rating_id = re.search(r"已提交评价 (\S+)：", rated).group(1)  # type: ignore[union-attr]
    await cli(env, "rectify", rating_id, "--provider", "planning_construction_bureau", "--note", "已建立限时办结台账")
    await cli(env, "rate", code, "--provider", "zhenglian_company", "--by", "enterprise", "--level", "满意")

    async def rated_and_rectified() -> bool:
        docs = await ledger.all_ratings()
        return len(docs) == 3 and any(d["rectified_at"] for d in docs)
    assert await until(rated_and_rectified)

    out = tmp_path / "report"
    summary = await cli(env, "report", "--year", str(today.year), "--out", str(out), "--today", late_day.isoformat())
    # 政务服务局 (assist): 3 on time, 非常满意 -> 100; 规划建设局 (joint): 1 of 2 on time, 不满意 (40) rectified ->
    # 0.5 x 40 + 0.4 x 50 + 0.1 x 100 = 50.0, on the exit list; 政联公司 (errand): 满意 (85) -> 92.5
    scores = (out / "scores.csv").read_text(encoding="utf-8-sig")
    assert re.search(r"和林格尔新区政务服务局,帮办代办,3,3,0,.*,100\.0,合格", scores)
    assert re.search(r"和林格尔新区规划建设局,联审联批,2,1,1,.*,50\.0,不合格", scores)
    assert re.search(r"内蒙古政联招商服务有限公司,专业跑腿,1,1,0,.*,92\.5,合格", scores)
    assert summary.strip().splitlines()[-2].startswith("退出/整改名单：和林格尔新区规划建设局")
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "合格线" in html and "<svg" in html and "消防设计需补充" in html
    econ = await cli(env, "report", "--year", str(today.year), "--evaluator", "econ_dev_bureau",
                     "--out", str(tmp_path / "econ"), "--today", late_day.isoformat())
    assert "内蒙古政联招商服务有限公司" in econ and "规划建设局" not in econ.split("退出/整改名单")[0]
