"""Upgrading a ledger written by the first version (clock from routing, no prerequisites, 好差评).

Run at the evaluation service's start (idempotent: only documents of the old shape are touched,
and the schema version reached is kept in ``ledger_meta``, so the look-up is done once per store).

* An item written before version 2 gets ``open`` (not completed or delivered), which the overdue
  sweep looks items up by; one written before version 3 gets the other fields ``item_doc`` stores
  beside an item for look-ups (``open_resolvers``, ``order_state``, ``order_assignee``).

* An item of the old shape becomes a ledger line with nothing to wait for; ``routed`` becomes
  ``ready`` from its routing day; 受理 is read from its history (the statutory clock starts there
  now); a 专业跑腿 item gets the task order the old router issued at signing, recorded as automatic;
  levels already announced count as announced on the statutory clock, so nothing is sent twice.
* A project of the old shape gets its code and, from the notifier's read model when it is there,
  the enterprise's 统一社会信用代码 (needed for its 测评).
* An item written before version 5 gets ``waiting``, ``level`` and ``urgency`` (``board_fields``), which the
  console's boards filter and sort by in the store.
* A ledger written before the journal (version 4) gets, for each line, a *base* entry in
  ``ledger_journal`` holding the line as it is: the journal of every line then starts somewhere,
  and every later version is claimed by inserting its entry (journal.py).
* Old 好差评 ratings (collection ``ratings``) are left as they were: a five-level answer is not a
  测评 of the questionnaire, so they do not count in the new evaluation.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.common.domain import ECON_DEV_BUREAU, Request, ServiceMode
from services.common.storage import Store
from services.evaluation.journal import base_entry, entry_id
from services.evaluation.ledger import (
    FINISHED,
    Blocker,
    HistoryEntry,
    ItemState,
    LedgerItem,
    Pause,
    TaskOrderRecord,
    local_day,
    task_order_number,
)
from services.evaluation.repository import (
    DERIVED,
    ITEMS,
    JOURNAL,
    META,
    PROJECTS,
    MongoLedgerRepository,
    board_fields,
    item_doc,
)

log = logging.getLogger(__name__)

_STATES = {"routed": ItemState.READY}
FINISHED_STATES = {state.value for state in FINISHED}


def _state(name: str | None) -> ItemState | None:
    if name is None:
        return None
    return _STATES[name] if name in _STATES else ItemState(name)


def _day(value: Any) -> date | None:
    if value in (None, ""):
        return None
    return local_day(value) if isinstance(value, datetime) else date.fromisoformat(str(value))


def upgrade_item(doc: dict[str, Any]) -> LedgerItem:
    """An item document of the first version as a ledger line of this one. Pure."""
    state = _state(doc["state"])
    assert state is not None
    routed_on = date.fromisoformat(str(doc["routed_on"]))
    history = tuple(HistoryEntry(
        request_id=h.get("event_id"), type=h["type"], from_state=_state(h.get("from")),
        to_state=_state(h["to"]) or ItemState.READY, by=h.get("by") or ECON_DEV_BUREAU,
        occurred_at=h["occurred_at"], recorded_at=h["recorded_at"], late=bool(h.get("late"))) for h in doc["history"])
    accepted_on = next((local_day(h.occurred_at) for h in history if h.type == "item.accepted"), None)
    task_order = None
    if doc["evaluated_as"] == ServiceMode.ERRAND.value:
        key = str(doc["_id"])
        closed = state is ItemState.DELIVERED
        task_order = TaskOrderRecord(
            number=task_order_number(key), issued_by=ECON_DEV_BUREAU,
            assigned_to=doc["responsible_unit"], automatic=True, issued_on=routed_on,
            state="closed" if closed else ("accepted" if accepted_on else "issued"),
            accepted_on=accepted_on, closed_on=_day(doc.get("delivered_on")) if closed else None)
    working = state in (ItemState.BLOCKED, ItemState.SUSPENDED)
    return LedgerItem(
        key=str(doc["_id"]), project_code=doc["project_code"], item_code=doc["item_code"], request=Request.HANDLE,
        item_name=doc["item_name"], stage=doc["stage"], mode=doc["mode"], evaluated_as=doc["evaluated_as"],
        evaluator=doc["evaluator"], responsible_unit=doc["responsible_unit"],
        approving_authority=doc["approving_authority"], time_limit_days=int(doc["time_limit_days"]),
        task_order_required=task_order is not None, state=state, version=int(doc.get("version", 0)),
        routed_on=routed_on, ready_on=routed_on, contacted_on=accepted_on, accepted_on=accepted_on,
        finished_on=_day(doc.get("finished_on")), delivered_on=_day(doc.get("delivered_on")),
        resume_to=ItemState.IN_PROGRESS if working else None,
        pauses=tuple(Pause(from_day=date.fromisoformat(p["from"]), to_day=_day(p.get("to")), reason=p["reason"])
                     for p in doc.get("pauses", [])),
        blockers=tuple(Blocker(id=b["event_id"], reason=b["reason"], resolver=b["resolver"],
                               reported_by=b["reported_by"], opened_on=_day(b["opened_at"]) or routed_on,
                               closed_on=_day(b.get("closed_at"))) for b in doc.get("blockers", [])),
        task_order=task_order, overdue_sent=tuple(f"statutory:{level}" for level in doc.get("overdue_sent", [])),
        results=tuple(doc.get("results", [])), applied=tuple(doc.get("applied", [])), history=history)


SCHEMA_VERSION = 5
"""2: items carry ``open`` for the overdue sweep's indexed look-up; 3: also ``open_resolvers``,
``order_state`` and ``order_assignee`` for the console's and the CLI's views (``views.py``); 4: every
line has a journal (``ledger_journal``), from a base entry of the line as it was; 5: ``waiting``,
``level`` and ``urgency``, which the console's boards page by in the store (``board_fields``)."""
JOURNAL_BATCH = 500
LOOKUP_FIELDS = ("open", "open_resolvers", "order_state", "order_assignee")


async def upgrade(store: Store) -> int:
    """Upgrades every ledger document of an older shape; returns how many were changed. Looks only
    once per store: the version reached is kept in ``ledger_meta``."""
    meta = store.db[META.name]
    reached = (await meta.find_one({"_id": "schema"}) or {}).get("version", 0)
    if reached >= SCHEMA_VERSION:
        return 0
    changed = 0
    items = store.db[ITEMS.name]
    async for doc in items.find({"key": {"$exists": False}}):
        item = upgrade_item(doc)
        result = await items.replace_one({"_id": doc["_id"], "key": {"$exists": False}}, item_doc(item))
        changed += result.modified_count
    async for doc in items.find({"open": {"$exists": False}}):
        result = await items.update_one({"_id": doc["_id"], "open": {"$exists": False}},
                                        {"$set": {"open": doc["state"] not in FINISHED_STATES}})
        changed += result.modified_count
    async for doc in items.find({"order_state": {"$exists": False}}):
        derived = item_doc(LedgerItem.model_validate({k: v for k, v in doc.items() if k not in DERIVED}))
        result = await items.update_one({"_id": doc["_id"], "version": doc["version"]},
                                        {"$set": {field: derived[field] for field in LOOKUP_FIELDS}})
        changed += result.modified_count
        await _keep_newer(store, doc)
    async for doc in items.find({"urgency": {"$exists": False}}):
        derived = board_fields(LedgerItem.model_validate({k: v for k, v in doc.items() if k not in DERIVED}))
        # filtered on the version read: a line written meanwhile has its fields from its writer
        result = await items.update_one({"_id": doc["_id"], "version": doc["version"]}, {"$set": derived})
        changed += result.modified_count
        await _keep_newer(store, doc)
    projects, known = store.db[PROJECTS.name], store.db["notifier_projects"]
    async for doc in projects.find({"code": {"$exists": False}}):
        remembered = await known.find_one({"_id": doc["_id"]}) or {}
        credit = (remembered.get("enterprise") or {}).get("credit_code", "")
        update = {"code": doc["_id"], "credit_code": credit}
        for field in ("started_at", "recorded_at", "delivered_at"):
            if isinstance(doc.get(field), datetime):
                update[field] = doc[field].isoformat()
        result = await projects.update_one({"_id": doc["_id"], "code": {"$exists": False}}, {"$set": update})
        changed += result.modified_count
    if reached < 4:
        changed += await _journal_bases(store)
    # not an upsert: the embedded store's concurrent upserts of one missing document fail with a
    # duplicate key (two replicas starting at once); an insert has one winner, the rest raise the
    # version by _id ($max: a replica of an older version does not lower it on MongoDB; on the
    # embedded store it may, and the newer replica then looks once more, finding nothing to change)
    try:
        await meta.insert_one({"_id": "schema", "version": SCHEMA_VERSION})
    except DuplicateKeyError:
        await meta.update_one({"_id": "schema"}, {"$max": {"version": SCHEMA_VERSION}})
    if changed:
        log.warning("upgraded %d ledger documents written by an earlier version of the ledger", changed)
    return changed


async def _keep_newer(store: Store, doc: dict[str, Any]) -> None:
    """After a derived-fields write filtered on the version read: the embedded store does not make
    that filter atomic, so a live replica's newer version stored in between may have been written
    over (its update writes the whole document back). If the journal holds a version after the one
    read, the line is written again as its journal has it (the ledger's own repair, which looks
    once more for a newer entry after writing). A ledger with no journal yet has no newer entry."""
    newer = await store.db[JOURNAL.name].find_one({"_id": entry_id(doc["_id"], int(doc["version"]) + 1)}, {"_id": 1})
    if newer is not None:
        await MongoLedgerRepository(store).restore(doc["_id"])


async def _journal_bases(store: Store) -> int:
    """A base journal entry for each line, as it is now (an entry already there is kept: a line
    written since by this version has its journal, and its entry for that version wins)."""
    now, added, batch = datetime.now(UTC), 0, []
    async for doc in store.db[ITEMS.name].find({}):
        item = LedgerItem.model_validate({k: v for k, v in doc.items() if k not in DERIVED})
        batch.append(base_entry(item, now, reason="upgrade"))
        if len(batch) >= JOURNAL_BATCH:
            added += await store.insert_new(JOURNAL.name, batch)
            batch = []
    added += await store.insert_new(JOURNAL.name, batch)
    if added:
        log.warning("wrote the journal's base entry of %d ledger lines written before the journal", added)
    return added

