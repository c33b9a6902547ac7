"""``zeroerrand rules history`` and ``rules show``: the archived rules versions, read from the store."""

from __future__ import annotations

from services.common.storage import Collection, store_session
from services.evaluation.repository import PROJECTS
from services.evaluation.rules_items import items_routed_by_version
from services.router.versions import COLLECTIONS, VersionEntry, history, version_files

_READ: tuple[Collection, ...] = (*COLLECTIONS, PROJECTS)


async def read_history() -> list[VersionEntry]:
    async with store_session(collections=_READ) as store:
        return await history(store, await items_routed_by_version(store))


async def read_version(version: str) -> tuple[str, dict[str, str]] | None:
    async with store_session(collections=COLLECTIONS) as store:
        return await version_files(store, version)
