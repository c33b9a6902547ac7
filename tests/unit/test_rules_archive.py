"""The router's archive of rules versions waits for the store without holding up anything else."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from services.common.messages import RulesActivated
from services.router.versions import RulesArchive, file_changes


class _Collection:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def insert_one(self, doc: dict[str, Any]) -> None:
        from pymongo.errors import DuplicateKeyError

        if doc["_id"] in self.docs:
            raise DuplicateKeyError("duplicate")
        self.docs[doc["_id"]] = doc


class _Store:
    def __init__(self) -> None:
        self.db: dict[str, _Collection] = {"rules_versions": _Collection(), "rules_activations": _Collection()}

    async def close(self) -> None:
        pass


def _activated(version: str, n: int) -> RulesActivated:
    now = datetime.now(UTC)
    return RulesActivated(event_id=f"e{n}", occurred_at=now, recorded_at=now, version=version, previous_version=None,
                          directory="rules", rules=1, items=1)


async def test_an_unreachable_store_is_retried_until_every_version_is_archived() -> None:
    store, attempts = _Store(), []

    async def opener() -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("store down")
        return store

    archive = RulesArchive(opener, retry_s=0.05)
    archive.start()
    archive.add(_activated("aaa", 1), {"routing.yaml": b"a: 1\n"})
    archive.add(_activated("aaa", 2), {"routing.yaml": b"a: 1\n"})  # a replica: the same version again
    await asyncio.sleep(0)  # add() returned at once: nothing waited for the store
    assert await archive.flush(5)
    await archive.stop()
    assert len(attempts) == 3
    assert list(store.db["rules_versions"].docs) == ["aaa"] and list(store.db["rules_activations"].docs) == ["e1", "e2"]


def test_the_diff_summary_counts_lines_per_changed_file() -> None:
    old = {"routing.yaml": "a\nb\nc\n", "units.yaml": "u\n"}
    new = {"routing.yaml": "a\nB\nc\nd\n", "units.yaml": "u\n"}
    assert [str(c) for c in file_changes(old, new)] == ["routing.yaml +2 -1"]
