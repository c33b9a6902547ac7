"""The ledger under concurrent writers, on the embedded store and on the fake.

Two ledgers stand for two evaluation services: each has its own client (its own connections) and
its own in-process locks, so their writes to one line race as two processes' would. On the
embedded store a filtered update is not atomic (several writers that read one version all "win"
it); the ledger claims each version by inserting its journal entry, which is. So of any number of
writers of one version exactly one is stored, and every request answered ``applied`` is in the
line's history.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.common.messages import AcceptItem, ContactEnterprise, ReportProgress
from services.common.storage import Endpoint, Store, client_options
from services.evaluation.handlers import Ledger, handle
from services.evaluation.journal import fold
from services.evaluation.ledger import ItemState, new_item
from services.evaluation.repository import LedgerRepository, MemoryLedgerRepository, MongoLedgerRepository
from tests.unit.ledger_kit import ledger, request, routed, started

pytestmark = pytest.mark.integration

DAY = date(2026, 9, 1)
UNIT = "planning_construction_bureau"
LINES = 12


@dataclass
class Writers:
    """What two evaluation services would have: a repository (own client) and a ledger each."""

    repos: tuple[LedgerRepository, LedgerRepository]
    ledgers: tuple[Ledger, Ledger]


@pytest.fixture(params=["memory", "embedded"])
async def writers(request: pytest.FixtureRequest, embedded_endpoint: Endpoint) -> AsyncIterator[Writers]:
    if request.param == "memory":
        shared = MemoryLedgerRepository()
        yield Writers((shared, shared), (ledger(repo=shared), ledger(repo=shared)))
        return
    database = f"zeroerrand_race_{uuid.uuid4().hex[:10]}"
    stores = [Store(AsyncMongoClient(embedded_endpoint.uri, tz_aware=True, **client_options(True)), database,
                    postgres=embedded_endpoint.postgres) for _ in range(2)]
    first, second = MongoLedgerRepository(stores[0]), MongoLedgerRepository(stores[1])
    await first.ensure()
    try:
        yield Writers((first, second), (ledger(repo=first), ledger(repo=second)))
    finally:
        await stores[0].client.drop_database(database)
        for each in stores:
            await each.close()


async def open_project(ledger_: Ledger, code: str, lines: int = LINES) -> list[str]:
    await handle(started(code, DAY), ledger_, started(code, DAY).occurred_at)
    codes = [f"X-{n:02d}" for n in range(lines)]
    for item in codes:
        event = routed(code, item, DAY, unit=UNIT)
        await handle(event, ledger_, event.occurred_at)
    return codes


async def together(writers: Writers, messages: Sequence[Any]) -> list[str]:
    """Each message handled by one of the two ledgers (alternately), all at once."""
    return list(await asyncio.gather(*(handle(m, writers.ledgers[n % 2], m.occurred_at)
                                       for n, m in enumerate(messages))))


async def test_of_eight_writers_of_one_version_exactly_one_is_stored_in_each_of_50_trials(writers: Writers) -> None:
    winners = []
    for trial in range(50):
        item = new_item(routed(f"RACE-{uuid.uuid4().hex[:8]}", "X-01", DAY))
        assert await writers.repos[0].add_item(item)
        attempts = [item.model_copy(update={"results": (f"writer {n}",)}) for n in range(8)]
        saved = await asyncio.gather(*(writers.repos[n % 2].save_item(a, item) for n, a in enumerate(attempts)))
        winners.append(sum(saved))
        stored = await writers.repos[trial % 2].item(item.key)
        journal = await writers.repos[0].journal(item.key)
        assert stored is not None and stored.version == 1 and [e["version"] for e in journal] == [0, 1]
        assert stored == fold(journal) and stored.results == attempts[saved.index(True)].results
    assert winners == [1] * 50


async def test_concurrent_contacts_then_accepts_apply_once_per_line_and_every_applied_request_is_kept(
        writers: Writers) -> None:
    code = f"BURST-{uuid.uuid4().hex[:8]}"
    lines = await open_project(writers.ledgers[0], code)
    for model in (ContactEnterprise, AcceptItem):
        requests = [request(model, DAY, UNIT, project_code=code, item_code=item) for item in lines for _ in range(6)]
        outcomes = await together(writers, requests)
        by_line: dict[str, list[str]] = {}
        for sent, outcome in zip(requests, outcomes, strict=True):
            by_line.setdefault(sent.item_code, []).append(outcome)
        assert {item: sorted(found) for item, found in by_line.items()} == {
            item: ["applied"] + ["refused"] * 5 for item in lines}, by_line
        refused = [r for r, o in zip(requests, outcomes, strict=True) if o == "refused"]
        for sent in refused:
            stored = await writers.repos[1].outcome(sent.request_id)
            assert stored is not None and stored.status == "refused" and stored.reason, sent.request_id
        for item in await writers.repos[0].project_items(code):
            applied = {r.request_id for r, o in zip(requests, outcomes, strict=True)
                       if o == "applied" and r.item_code == item.item_code}
            assert applied <= set(item.applied) and applied <= {h.request_id for h in item.history}
            assert item == fold(await writers.repos[1].journal(item.key))
    assert {i.state for i in await writers.repos[1].project_items(code)} == {ItemState.ACCEPTED}


async def test_fifty_concurrent_progress_reports_on_one_line_are_all_kept(writers: Writers) -> None:
    code = f"PROGRESS-{uuid.uuid4().hex[:8]}"
    [line] = await open_project(writers.ledgers[0], code, lines=1)
    for model in (ContactEnterprise, AcceptItem):
        assert await handle(m := request(model, DAY, UNIT, project_code=code, item_code=line), writers.ledgers[1],
                            m.occurred_at) == "applied"
    reports = [request(ReportProgress, DAY, UNIT, project_code=code, item_code=line, note=f"进展 {n}") for n in range(50)]
    outcomes = await together(writers, reports)
    assert outcomes == ["applied"] * 50
    [item] = await writers.repos[0].project_items(code)
    assert {r.request_id for r in reports} <= set(item.applied)
    assert sum(1 for h in item.history if h.type == "item.progress") == 50
    journal = await writers.repos[1].journal(item.key)
    assert [e["version"] for e in journal] == list(range(item.version + 1)) and fold(journal) == item


async def test_a_line_edited_by_hand_is_restored_from_its_journal(writers: Writers) -> None:
    item = new_item(routed(f"EDIT-{uuid.uuid4().hex[:8]}", "X-01", DAY))
    repo = writers.repos[0]
    assert await repo.add_item(item)
    assert await repo.save_item(item.model_copy(update={"results": ("证书",)}), item)
    recorded = fold(await repo.journal(item.key))
    if isinstance(repo, MongoLedgerRepository):  # as someone editing the store by hand would
        await repo.store.db["ledger_items"].update_one({"_id": item.key}, {"$set": {"state": "delivered", "version": 7}})
    else:
        assert isinstance(repo, MemoryLedgerRepository)
        repo.tables["ledger_items"][item.key].update(state="delivered", version=7)
    assert await repo.item(item.key) != recorded
    assert await repo.restore(item.key) == recorded
    assert await writers.repos[1].item(item.key) == recorded
