"""``rules dry-run`` over what the ledger holds, on the real store: the ledger keeps each line's
decision record and each project's facts, and the dry-run decides them again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.storage import Store
from services.evaluation.handlers import on_item_routed, on_item_unroutable, on_service_started
from services.evaluation.ledger import RulesRecord
from services.evaluation.repository import MongoLedgerRepository
from services.evaluation.rules_items import count_items, ledger_items
from services.router.dry_run import compare, subject_from
from services.router.dry_run_command import engine_for
from services.router.routing import route_agreement
from tests.conftest import ALUMINIUM, CONSULT_UNKNOWN, ROOT, RULES, example
from tests.unit.ledger_kit import ledger
from tests.unit.test_rules_dry_run import lower_threshold

pytestmark = pytest.mark.integration


async def test_the_ledger_keeps_what_a_dry_run_needs_and_it_finds_the_crossing_projects(
        store: Store, rules_copy: Path, embedded_uri: str) -> None:
    repo = MongoLedgerRepository(store)
    await repo.ensure()
    book = ledger(repo=repo)
    active = engine_for(RULES)
    now = datetime.now(UTC)
    energies = {"a": 3200, "b": 9000, "c": 12000}  # only b crosses the candidate's 8,000
    for suffix, energy in energies.items():
        agreement = example(ALUMINIUM, suffix=suffix)
        project = agreement.project.model_copy(update={"facts": {**agreement.project.facts, "annual_energy_tce": energy}})
        result = route_agreement(agreement.model_copy(update={"project": project}), active)
        assert result.started is not None
        await on_service_started(result.started, book, now, True)
        for routed in result.routed:
            await on_item_routed(routed, book, now, True)
    parked = route_agreement(example(CONSULT_UNKNOWN, suffix="d"), active)
    assert parked.started is not None and parked.unroutable
    await on_service_started(parked.started, book, now, True)
    for item in parked.unroutable:
        await on_item_unroutable(item, book, now, True)

    stored = await repo.item(f"{example(ALUMINIUM, suffix='b').project.code}/PL-03")
    assert stored is not None and stored.rule_id == "errand.energy-review-city" and stored.rules_version == active.version
    assert json.loads(stored.facts_json or "{}")["project.annual_energy_tce"] == 9000

    records = [r async for r in ledger_items(store)]
    assert len(records) == await count_items(store)
    assert {r["state"] for r in records} >= {"unroutable"}
    subjects = [subject_from(r) for r in records]
    assert all(s.facts_complete for s in subjects)  # every project's facts were kept

    same = compare(active, engine_for(RULES), subjects)
    assert same.changed == 0 and same.items == len(records)
    changed = compare(active, engine_for(lower_threshold(rules_copy)), subjects)
    [change] = changed.ordered()
    assert change.item_code == "PL-03" and change.projects == [example(ALUMINIUM, suffix="b").project.code]
    assert change.open_projects == change.projects  # routed, not delivered: open

    # the command, reading the same ledger from the store as an operator's shell would
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROERRAND_") and k != "MONGODB_URL"}
    env |= {"MONGODB_URL": embedded_uri, "ZEROERRAND_DATABASE": store.database, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "services.cli", "rules", "dry-run", "--rules", str(rules_copy),
                           "--active", str(RULES)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 3, done.stderr
    assert f"共比较 {len(records)} 个事项，决策改变 1 个（其中未办结 1 个）" in done.stdout
    assert f"受影响的未办结事项（项目）：{example(ALUMINIUM, suffix='b').project.code}" in done.stdout
    assert "注意" not in done.stderr  # the router announced no version: nothing to compare with

    # the router announced another version than the one compared with: the operator is told
    await repo.add_rules_event(RulesRecord(event_id="activated-elsewhere", type="rules.activated", version="v-router",
                                           directory="/srv/rules", occurred_at=now, recorded_at=now))
    warned = subprocess.run([sys.executable, "-m", "services.cli", "rules", "dry-run", "--rules", str(rules_copy),
                             "--active", str(RULES)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert warned.returncode == 3, warned.stderr
    assert f"版本 {active.version}）不是路由服务正在使用的版本 v-router" in warned.stderr
