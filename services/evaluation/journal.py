"""The ledger's journal (台账变更记录): every version of every ledger line, written once, never changed.

A line's version ``n`` is claimed by inserting the journal entry whose id is ``{key}#{n}`` (zero
padded). An insert under a unique key is atomic on every store this product runs on: MongoDB, the
embedded store (FerretDB on PostgreSQL, where a *filtered update* is not: several writers that
read the same version all "win" a ``replace_one({_id, version})``) and the in-memory fake. So of
any number of writers that read version ``n - 1``, exactly one records version ``n``; the others
get ``DuplicateKeyError``, read the line again and decide again on what it is now.

An entry holds what its version changed: the fields that differ from the version before, the
history entries and request ids it added, and who or what asked for it. Version 0 (and a *base*
written when a ledger from before the journal was upgraded) holds the whole record. Folding the
entries from the latest base gives the line at any version, which is how a writer that lost a race
learns the current state, how the materialised ``ledger_items`` document is repaired, and how an
auditor checks that what the ledger shows is what was recorded (``zeroerrand ledger verify``).

Pure: no I/O here; ``repository.py`` stores the entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from services.evaluation.ledger import LedgerItem

VERSION_DIGITS = 8
APPENDED = ("history", "applied")  # grow by appending: an entry holds only what it added
NOT_RECORDED = ("version",)  # the entry's own ``version`` says it


class JournalError(ValueError):
    """The journal of a line cannot be folded (no base, or a version missing)."""


def entry_id(key: str, version: int) -> str:
    return f"{key}#{version:0{VERSION_DIGITS}d}"


def base_entry(item: LedgerItem, recorded_at: datetime, reason: str = "item.routed") -> dict[str, Any]:
    """The first entry of a line (or the base an upgrade writes): the whole record."""
    record = item.model_dump(mode="json")
    return {"_id": entry_id(item.key, item.version), "key": item.key, "project_code": item.project_code,
            "version": item.version, "kind": "base", "reason": reason, "base": record, "changes": {},
            "history": [], "applied": [], "request_id": None, "recorded_at": recorded_at.isoformat()}


def change_entry(previous: LedgerItem, updated: LedgerItem, recorded_at: datetime) -> dict[str, Any]:
    """The entry of version ``previous.version + 1``: what ``updated`` changed of ``previous``
    (compared field by field, so only what changed is turned into JSON: a line's history grows
    with every version, and dumping it twice per write was most of a write's cost)."""
    for name in APPENDED:
        before, after = getattr(previous, name), getattr(updated, name)
        if after[:len(before)] != before:
            raise JournalError(f"{updated.key}: {name} may only grow (a new version appends to it)")
    version = previous.version + 1
    changed = {name for name in type(updated).model_fields
               if name not in APPENDED and name not in NOT_RECORDED and getattr(previous, name) != getattr(updated, name)}
    added_history = [h.model_dump(mode="json") for h in updated.history[len(previous.history):]]
    request_ids = [h["request_id"] for h in added_history if h.get("request_id")]
    return {"_id": entry_id(updated.key, version), "key": updated.key, "project_code": updated.project_code,
            "version": version, "kind": "change", "reason": added_history[-1]["type"] if added_history else "change",
            "base": None, "changes": updated.model_dump(mode="json", include=changed) if changed else {},
            "history": added_history, "applied": list(updated.applied[len(previous.applied):]),
            "request_id": request_ids[-1] if request_ids else None, "recorded_at": recorded_at.isoformat()}


def fold(entries: Iterable[Mapping[str, Any]]) -> LedgerItem:
    """The line as its journal records it: from the latest base, every later change in order."""
    ordered = sorted(entries, key=lambda e: int(e["version"]))
    bases = [n for n, e in enumerate(ordered) if e.get("base") is not None]
    if not bases:
        key = ordered[0]["key"] if ordered else "?"
        raise JournalError(f"{key}: the journal has no base entry")
    start = bases[-1]
    record = dict(ordered[start]["base"])
    record["history"], record["applied"] = list(record["history"]), list(record["applied"])
    version = int(ordered[start]["version"])
    for entry in ordered[start + 1:]:
        if int(entry["version"]) != version + 1:
            raise JournalError(f"{entry['key']}: version {version + 1} is missing from the journal")
        version += 1
        record.update(entry["changes"])
        record["history"] += entry["history"]
        record["applied"] += entry["applied"]
    record["version"] = version
    return LedgerItem.model_validate(record)
