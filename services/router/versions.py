"""Every rules version the router made active, with its files, kept in the store.

The router archives what it activates: the files of each version in ``rules_versions`` (content
addressed: the id is the version, a hash of the files, so every replica writes the same document
and a second write is a no-op), and each activation in ``rules_activations`` (the id is the
``rules.activated`` event's). ``zeroerrand rules history`` and ``rules show`` read them back; the
number of items each version routed comes from the ledger's projects (every item of an agreement is
routed by one version, which ``service.started`` names).

Routing never waits for the store. :class:`RulesArchive` keeps what is still to be written in
memory and writes it from a task of its own, retrying every ``retry_s`` while the store cannot be
reached (a WARNING says so, once per outage); the router routes and announces meanwhile. What a
router that stops before the store came back had not written is lost from the archive (it says so
in its log), but the version the router starts with is archived again at its next start, and
``rules.activated`` is in the ledger's history either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common.messages import RulesActivated
from services.common.rule_files import RULE_FILES
from services.common.storage import Collection, Store

log = logging.getLogger(__name__)

RULES_VERSIONS = Collection("rules_versions")
RULES_ACTIVATIONS = Collection("rules_activations", (IndexModel([("version", ASCENDING)]),))
COLLECTIONS = (RULES_VERSIONS, RULES_ACTIVATIONS)


def version_document(version: str, contents: Mapping[str, bytes], at: datetime) -> dict[str, Any]:
    """The files of one version (a list: their names have dots, which a document's keys may not)."""
    return {"_id": version, "stored_at": at.astimezone(UTC),
            "files": [{"name": name, "text": contents[name].decode("utf-8", errors="replace")}
                      for name in sorted(contents)]}


def activation_document(event: RulesActivated) -> dict[str, Any]:
    return {"_id": event.event_id, "version": event.version, "previous_version": event.previous_version,
            "occurred_at": event.occurred_at.astimezone(UTC), "directory": event.directory,
            "rules": event.rules, "items": event.items}


async def _insert_new(store: Store, collection: Collection, doc: dict[str, Any]) -> None:
    with contextlib.suppress(DuplicateKeyError):
        await store.db[collection.name].insert_one(doc)


async def archive(store: Store, event: RulesActivated, contents: Mapping[str, bytes]) -> None:
    """Writes the version's files (if new) and the activation (if new): idempotent."""
    await _insert_new(store, RULES_VERSIONS, version_document(event.version, contents, event.occurred_at))
    await _insert_new(store, RULES_ACTIVATIONS, activation_document(event))


StoreOpener = Callable[[], Awaitable[Store]]


@dataclass
class RulesArchive:
    """Writes activated versions to the store from a task of its own; never blocks routing."""

    open_store: StoreOpener
    retry_s: float = 5.0
    pending: list[tuple[RulesActivated, dict[str, bytes]]] = field(default_factory=list)
    store: Store | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    written: int = 0

    def add(self, event: RulesActivated, contents: Mapping[str, bytes]) -> None:
        self.pending.append((event, dict(contents)))
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rules-archive")

    async def _run(self) -> None:
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._write_pending()
                if failing:
                    log.info("rules archive: the store is reachable again; every version is archived")
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("rules archive: cannot write to the store (%r); routing goes on, retrying every "
                                "%g s", exc, self.retry_s)
                failing = True
                await self._drop_store()
                await asyncio.sleep(self.retry_s)
                self._wake.set()

    async def _write_pending(self) -> None:
        while self.pending:
            if self.store is None:
                self.store = await self.open_store()
            event, contents = self.pending[0]
            await archive(self.store, event, contents)
            self.pending.pop(0)
            self.written += 1
            log.info("rules version %s archived", event.version)

    async def _drop_store(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()

    async def flush(self, timeout_s: float) -> bool:
        """Waits up to ``timeout_s`` for everything pending to be written; True if it was."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return not self.pending

    async def stop(self, timeout_s: float = 2.0) -> None:
        await self.flush(timeout_s)
        if self.pending:
            log.warning("rules archive: %d activation(s) not archived (store unreachable): %s", len(self.pending),
                        ", ".join(e.version for e, _ in self.pending))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_store()


# -- reading the history back ----------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    name: str
    added: int
    removed: int

    def __str__(self) -> str:
        return f"{self.name} +{self.added} -{self.removed}"


@dataclass(frozen=True)
class VersionEntry:
    """One version as it became active (consecutive activations of one version, by replicas or
    restarts, are one entry: ``activations`` counts them)."""

    version: str
    activated_at: datetime
    activations: int
    items_routed: int
    previous_version: str | None
    changes: tuple[FileChange, ...] | None  # None: the files of this or the previous version are not archived
    archived: bool

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "activated_at": self.activated_at.isoformat(),
                "activations": self.activations, "items_routed": self.items_routed,
                "previous_version": self.previous_version, "archived": self.archived,
                "changes": None if self.changes is None else [
                    {"file": c.name, "added": c.added, "removed": c.removed} for c in self.changes]}


def file_changes(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[FileChange, ...]:
    """Lines added and removed per rule file (only the files that changed)."""
    changes = []
    for name in sorted(set(old) | set(new) | set(RULE_FILES)):
        before, after = old.get(name, "").splitlines(), new.get(name, "").splitlines()
        if before == after:
            continue
        added = removed = 0
        for line in difflib.unified_diff(before, after, lineterm="", n=0):
            if line.startswith("+") and not line.startswith("+++"):
                added += 1
            elif line.startswith("-") and not line.startswith("---"):
                removed += 1
        changes.append(FileChange(name, added, removed))
    return tuple(changes)


class AmbiguousVersion(LookupError):
    """A prefix that more than one archived version starts with."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(prefix)
        self.prefix, self.matches = prefix, sorted(matches)


async def version_files(store: Store, version: str) -> tuple[str, dict[str, str]] | None:
    """The full version and files of ``version`` (a unique prefix of it will do), or None if it is
    not archived; ``AmbiguousVersion`` for a prefix of several."""
    collection = store.db[RULES_VERSIONS.name]
    doc = await collection.find_one({"_id": version})
    if doc is None and version:
        ids = [str(d["_id"]) async for d in collection.find({}, {"_id": 1})]
        matches = [i for i in ids if i.startswith(version)]
        if len(matches) > 1:
            raise AmbiguousVersion(version, matches)
        if len(matches) == 1:
            doc = await collection.find_one({"_id": matches[0]})
    if doc is None:
        return None
    return str(doc["_id"]), {f["name"]: f["text"] for f in doc["files"]}


async def last_activation(store: Store) -> tuple[datetime, str] | None:
    """When the routers last archived an activation, and of which version (None: never)."""
    latest = store.db[RULES_ACTIVATIONS.name].find({}).sort([("occurred_at", DESCENDING), ("_id", DESCENDING)]).limit(1)
    async for doc in latest:
        at = doc["occurred_at"]
        return (at if at.tzinfo else at.replace(tzinfo=UTC)), str(doc["version"])
    return None


async def history(store: Store, items_by_version: Mapping[str, int]) -> list[VersionEntry]:
    """Every version that was active, oldest first, with what changed against the one before."""
    activations = sorted([d async for d in store.db[RULES_ACTIVATIONS.name].find({})],
                         key=lambda d: (d["occurred_at"], d["_id"]))
    files: dict[str, dict[str, str]] = {
        str(d["_id"]): {f["name"]: f["text"] for f in d["files"]} async for d in store.db[RULES_VERSIONS.name].find({})}
    merged: list[dict[str, Any]] = []
    for doc in activations:
        if merged and merged[-1]["version"] == doc["version"]:
            merged[-1]["count"] += 1
            continue
        merged.append({"version": doc["version"], "at": doc["occurred_at"], "count": 1})
    entries: list[VersionEntry] = []
    previous: str | None = None
    for row in merged:
        version = row["version"]
        changes = (file_changes(files[previous], files[version])
                   if previous is not None and previous in files and version in files else None)
        if previous is None and version in files:
            changes = ()
        at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
        entries.append(VersionEntry(version=version, activated_at=at, activations=row["count"],
                                    items_routed=items_by_version.get(version, 0), previous_version=previous,
                                    changes=changes, archived=version in files))
        previous = version
    return entries


def render_history(entries: Sequence[VersionEntry], zone: Any) -> list[str]:
    if not entries:
        return ["尚无规则版本记录（路由服务启动并生效规则后即有记录）。"]
    lines = [f"共 {len({e.version for e in entries})} 个规则版本曾经生效（由早到晚）："]
    for entry in entries:
        when = entry.activated_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        if entry.previous_version is None:
            diff = "首个版本" if entry.archived else "首个版本（文件未存档）"
        elif entry.changes is None:
            diff = f"与 {entry.previous_version} 相比：文件未存档，无法比较"
        elif not entry.changes:
            diff = f"与 {entry.previous_version} 相比：文件内容相同"
        else:
            diff = f"与 {entry.previous_version} 相比：" + "，".join(
                f"{c.name} 增加 {c.added} 行、删除 {c.removed} 行" for c in entry.changes)
        again = f"（生效记录 {entry.activations} 次）" if entry.activations > 1 else ""
        lines.append(f"  {entry.version}  {when}  分派事项 {entry.items_routed:,} 个{again}  {diff}")
    return lines
