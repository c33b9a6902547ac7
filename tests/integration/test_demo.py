"""``zeroerrand demo``: a simulated year on the real RabbitMQ and store, as a user runs it.

The first run finds no services and runs its own in the background; the second finds ``zeroerrand up``
running, uses it and, being the same seed, changes nothing. Both must end with the annual report, in
which every unit that served a demo project in the year is scored or 未评价.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.rule_files import load_rulebook
from services.common.storage import store_session
from services.evaluation.ledger import local_day
from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository
from services.notifier.repository import NOTIFICATIONS
from tests.faults.outage_harness import Services, wait_for_consumers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROJECTS, SEED = 20, 5


def _year() -> int:
    today = local_day(datetime.now(UTC))
    return today.year if today.timetuple().tm_yday > 20 else today.year - 1


def _demo(env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "demo", "--projects", str(PROJECTS), "--seed",
                           str(SEED), "--year", str(_year()), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.timeout(1800)
async def test_a_demo_year_ends_with_every_provider_scored_or_not_evaluated(amqp_url: str, clean_queues: None,
                                                                           tmp_path: Path) -> None:
    services = Services(amqp_url, "demo")
    env = {**services.env, "ZEROERRAND_ENVIRONMENT": "development"}
    year = _year()
    try:
        first = _demo(env, tmp_path / "first")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "服务由演示在后台启动，已停止" in first.stdout
        assert f"签约项目 {PROJECTS} 个" in first.stdout and "被拒绝 0" in first.stdout, first.stdout

        async with store_session(services.store_settings(), collections=COLLECTIONS) as store:
            repo = MongoLedgerRepository(store)
            items = [i for i in await repo.all_items() if i.project_code.startswith(f"DEMO{SEED}-{year}-")]
            assessments = [a for a in await repo.assessments(year) if a.project_code.startswith(f"DEMO{SEED}-")]
            notifications = await store.db[NOTIFICATIONS.name].count_documents({})
        assert len({i.project_code for i in items}) == PROJECTS
        before = {i.key: i for i in items}
        # the year happened: lines handed over, others still open, 堵点, 中止, late work, 测评
        kinds = {h.type for i in items for h in i.history}
        assert {"task_order.issued", "task_order.accepted", "item.contacted", "item.accepted", "item.progress",
                "item.blocked", "item.unblocked", "item.suspended", "item.resumed", "item.completed",
                "item.delivered"} <= kinds, kinds
        units = load_rulebook(ROOT / "rules").units
        assert any(h.type == "item.blocked" and h.by not in units for i in items for h in i.history)  # by the enterprise
        assert any(i.delivered_on for i in items) and any(i.is_open for i in items)
        assert any(i.overdue_sent for i in items)  # the weekly sweeps of the simulated days warned
        assert assessments and notifications > len(items)
        served = {i.responsible_unit for i in items if i.ready_on is not None and i.ready_on.year <= year
                  and (i.finished_on is None or i.finished_on.year >= year)}

        with (tmp_path / "first" / "scores.csv").open(encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        verdicts = {row["单位"]: row["结论"] for row in rows}
        for code in served:
            assert verdicts.get(units[code].name) in ("合格", "不合格", "未评价"), (code, verdicts)
        assert (tmp_path / "first" / "index.html").exists()

        # again, with `zeroerrand up` running: it is used, and the same seed changes nothing. That `up`
        # does not sweep: its sweep would judge the simulated year's open lines by today's date (at its
        # start, then every few minutes) and raise their overdue levels, which is right for a running
        # system and is not what the demo does (docs/demo.md)
        services.env["ZEROERRAND_EVALUATION_SWEEP"] = "false"
        services.start()
        await wait_for_consumers(amqp_url, services, 120)
        second = _demo(env, tmp_path / "second")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "使用正在运行的服务" in second.stdout and "被拒绝 0" in second.stdout, second.stdout
        async with store_session(services.store_settings(), collections=COLLECTIONS) as store:
            again = [i for i in await MongoLedgerRepository(store).all_items()
                     if i.project_code.startswith(f"DEMO{SEED}-{year}-")]
        moved = {i.key: [h.type for h in i.history[len(before[i.key].history):]]
                 for i in again if i.key in before and i.version != before[i.key].version}
        assert not moved, f"the same demo again changed {len(moved)} lines: {moved}"
        assert {i.key for i in again} == set(before)
        assert services.alive()
        assert not services.problems(), services.problems()
    finally:
        services.stop()
        services.remove()
