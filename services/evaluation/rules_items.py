"""The ledger's items as ``zeroerrand rules dry-run`` reads them: one plain record per ledger line
and per parked (unroutable) item, with its project's facts, state and the rules version that
decided it; the same shape as a line of an ``--items`` export (``services.router.dry_run``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from services.common.storage import Store
from services.evaluation.repository import ITEMS, PROJECTS, UNROUTABLE

_ITEM_FIELDS = ("project_code", "item_code", "request", "state", "open", "rules_version", "facts_json", "mode",
                "responsible_unit")


def _decision_facts(text: str | None) -> dict[str, Any]:
    return dict(json.loads(text)) if text else {}


async def count_items(store: Store) -> int:
    """How many records :func:`ledger_items` yields (for a progress bar)."""
    return (await store.db[ITEMS.name].count_documents({})) + (await store.db[UNROUTABLE.name].count_documents({}))


async def ledger_items(store: Store) -> AsyncIterator[dict[str, Any]]:
    """Every ledger line, then every parked item. ``facts`` are the project's facts where the ledger
    kept them (projects started since it does); otherwise ``decision.facts`` (the facts its decision
    record shows) stand in."""
    projects: dict[str, dict[str, Any]] = {}
    async for doc in store.db[PROJECTS.name].find({}, {"_id": 1, "facts_json": 1}):
        if doc.get("facts_json"):
            projects[str(doc["_id"])] = dict(json.loads(doc["facts_json"]))
    async for doc in store.db[ITEMS.name].find({}, dict.fromkeys(_ITEM_FIELDS, 1)):
        yield _record(doc, projects, doc.get("state"), doc.get("open"))
    async for doc in store.db[UNROUTABLE.name].find({}, {"project_code": 1, "item_code": 1, "request": 1,
                                                          "rules_version": 1, "facts_json": 1}):
        yield _record(doc, projects, "unroutable", False)


def _record(doc: dict[str, Any], projects: dict[str, dict[str, Any]], state: Any, is_open: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"project_code": doc["project_code"], "item_code": doc["item_code"],
                              "request": doc.get("request") or "handle", "state": state, "open": is_open,
                              "rules_version": doc.get("rules_version"),
                              "decision": {"facts": _decision_facts(doc.get("facts_json"))}}
    facts = projects.get(doc["project_code"])
    if facts is not None:
        record["facts"] = facts
    return record


async def items_routed_by_version(store: Store) -> dict[str, int]:
    """How many items each rules version routed, from the ledger's projects (every item of an
    agreement is routed by the version ``service.started`` names)."""
    counts: dict[str, int] = {}
    async for doc in store.db[PROJECTS.name].find({}, {"rules_version": 1, "items_routed": 1}):
        version = doc.get("rules_version")
        if version:
            counts[version] = counts.get(version, 0) + int(doc.get("items_routed") or 0)
    return counts
