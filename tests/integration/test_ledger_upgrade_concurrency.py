"""Two evaluation replicas starting at once on one store both run the ledger's upgrade.

The last step records the schema version reached with an upsert; on the embedded store
(FerretDB 1.24) concurrent upserts of one missing document are not atomic: all but one failed
with a duplicate key (52 of 80 in a probe), which stopped the replica at its start."""

from __future__ import annotations

import asyncio

import pytest

from services.common.storage import Store
from services.evaluation.migrations import SCHEMA_VERSION, upgrade
from services.evaluation.repository import COLLECTIONS, META

pytestmark = pytest.mark.integration


async def test_replicas_upgrading_at_once_all_start(store: Store) -> None:
    await store.ensure(COLLECTIONS)
    for trial in range(10):
        await store.db[META.name].delete_many({})
        outcomes = await asyncio.gather(*(upgrade(store) for _ in range(4)), return_exceptions=True)
        failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        assert not failed, f"trial {trial}: {len(failed)} of 4 upgrades failed: {failed[:1]}"
        assert (await store.db[META.name].find_one({"_id": "schema"}) or {}).get("version") == SCHEMA_VERSION


async def test_an_upgrade_never_leaves_a_line_behind_its_journal(store: Store) -> None:
    """The upgrade adds derived fields with a write filtered on the version it read. On the embedded
    store a live replica's newer version stored in between may be written over; the upgrade then
    finds the journal's newer entry and writes the line as the journal has it. Here the outcome of
    that race is set up directly: the line's document a version behind its journal, without the
    fields this version derives."""
    from datetime import date

    from services.common.messages import AcceptItem, ContactEnterprise
    from services.evaluation.handlers import handle
    from services.evaluation.repository import ITEMS, MongoLedgerRepository
    from tests.unit.ledger_kit import at, ledger, request, routed, started

    await store.ensure(COLLECTIONS)
    day = date(2026, 9, 1)
    book = ledger(repo=MongoLedgerRepository(store))
    await handle(started("UPG-1", day), book, at(day))
    await handle(routed("UPG-1", "EP-01", day), book, at(day))
    await handle(request(ContactEnterprise, day, "planning_construction_bureau", project_code="UPG-1",
                         item_code="EP-01"), book, at(day))
    items = store.db[ITEMS.name]
    behind = await items.find_one({"_id": "UPG-1/EP-01"})
    assert behind is not None
    assert await handle(request(AcceptItem, day, "planning_construction_bureau", project_code="UPG-1",
                                item_code="EP-01"), book, at(day)) == "applied"
    newest = await items.find_one({"_id": "UPG-1/EP-01"})
    assert newest is not None and newest["version"] == behind["version"] + 1
    for field in ("waiting", "level", "urgency"):
        behind.pop(field, None)
    await items.replace_one({"_id": "UPG-1/EP-01"}, behind)  # the race's outcome: the older version won
    await store.db[META.name].update_one({"_id": "schema"}, {"$set": {"version": 4}}, upsert=True)
    await upgrade(store)
    after = await items.find_one({"_id": "UPG-1/EP-01"})
    assert after is not None and after["version"] == newest["version"] and "urgency" in after
    assert after["state"] == "accepted" and len(after["history"]) == len(newest["history"])
