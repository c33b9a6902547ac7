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
