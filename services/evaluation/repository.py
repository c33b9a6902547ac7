"""The ledger (台账) in the store: loading and saving only, with the version check.

``LedgerRepository`` is the port the handlers use; ``MongoLedgerRepository`` is the real adapter
(MongoDB or the embedded store) and ``MemoryLedgerRepository`` its in-memory fake. Both keep
records as JSON documents, so the fake also proves every record survives the round trip.

An item is saved only if it is still at the version it was read at: two requests for one item
never overwrite each other (the loser reads again).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common.storage import Collection, Store, StoreSchemaError
from services.evaluation.ledger import Assessment, LedgerItem, ProjectRecord, RequestOutcome
from services.evaluation.scoring import active_in

PROJECTS = Collection("ledger_projects")
# ``open`` (not completed or delivered) is stored beside the item for the overdue sweep's look-up;
# ``routed_on`` serves the year's items of the report
ITEMS = Collection("ledger_items", (IndexModel([("project_code", ASCENDING)]), IndexModel([("open", ASCENDING)]),
                                    IndexModel([("routed_on", ASCENDING)])))
ASSESSMENTS = Collection("ledger_assessments", (
    # one 测评 per project, provider, rater group and year, even when two arrive at once
    IndexModel([("project_code", ASCENDING), ("provider", ASCENDING), ("rater", ASCENDING), ("year", ASCENDING)],
               unique=True, name="one_assessment_per_rater_and_year"),
    IndexModel([("year", ASCENDING)])))
REQUESTS = Collection("ledger_requests", (IndexModel([("status", ASCENDING), ("recorded_at", ASCENDING)]),))
# which upgrades the ledger has had (``migrations.upgrade``), so a start does not look again
META = Collection("ledger_meta")
COLLECTIONS = (PROJECTS, ITEMS, ASSESSMENTS, REQUESTS, META)


class UnknownSubject(LookupError):
    """The request names a project, item or 测评 the ledger has not recorded (yet)."""


class LedgerRepository(Protocol):
    async def ensure(self) -> None: ...
    async def item(self, key: str) -> LedgerItem | None: ...
    async def project_items(self, project_code: str) -> list[LedgerItem]: ...
    async def items(self, keys: Sequence[str]) -> list[LedgerItem]:
        """The stored items among ``keys`` (one look-up)."""
    async def add_item(self, item: LedgerItem) -> bool:
        """Stores a new item; False if one with that key exists (a redelivered ``item.routed``)."""
    async def save_item(self, item: LedgerItem, read_version: int) -> bool:
        """Stores ``item`` as version ``read_version + 1`` if the stored one is still at ``read_version``."""
    async def open_items(self) -> list[LedgerItem]: ...
    async def all_items(self) -> list[LedgerItem]: ...
    async def year_items(self, year: int, projects: Sequence[str] = ()) -> list[LedgerItem]:
        """The items active in ``year`` (routed by its end, not finished before it began), and every
        item of ``projects`` (those with a 测评 of the year), for the annual evaluation."""
    async def project(self, code: str) -> ProjectRecord | None: ...
    async def add_project(self, project: ProjectRecord) -> None: ...
    async def close_project(self, code: str, at: datetime) -> bool:
        """Marks the project delivered; True if this call did it."""
    async def assessment(self, assessment_id: str) -> Assessment | None: ...
    async def find_assessment(self, project_code: str, provider: str, rater: str, year: int) -> Assessment | None: ...
    async def add_assessment(self, assessment: Assessment) -> bool:
        """Stores a new 测评; False if its id, or its project, provider, rater group and year, exist."""
    async def rectify_assessment(self, assessment: Assessment) -> bool:
        """Stores the rectification if the stored 测评 is not rectified yet."""
    async def assessments(self, year: int | None = None) -> list[Assessment]: ...
    async def outcome(self, request_id: str) -> RequestOutcome | None: ...
    async def claim(self, outcome: RequestOutcome) -> RequestOutcome:
        """Records a request as ``pending`` unless its id is known; returns what is stored for the id."""
    async def record_outcome(self, request_id: str, status: str, reason: str | None = None,
                             events: Sequence[str] = ()) -> None: ...
    async def refused(self, limit: int = 200) -> list[RequestOutcome]: ...


DERIVED = ("_id", "open")  # stored for look-ups, not part of the record


def _doc(record: BaseModel, key: str) -> dict[str, Any]:
    return {"_id": key, **record.model_dump(mode="json")}


def item_doc(item: LedgerItem, key: str | None = None) -> dict[str, Any]:
    return {**_doc(item, key or item.key), "open": item.is_open}


def year_filter(year: int) -> dict[str, Any]:
    """``scoring.active_in`` as a query (dates are stored as ISO strings, which sort as dates)."""
    return {"routed_on": {"$lte": f"{year}-12-31"},
            "$or": [{"finished_on": None}, {"finished_on": {"$gte": f"{year}-01-01"}}]}


def _load(model: type[Any], doc: dict[str, Any] | None) -> Any:
    if doc is None:
        return None
    data = {k: v for k, v in doc.items() if k not in DERIVED}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise StoreSchemaError(
            f"台账记录 {doc.get('_id')!r} 不是本版本的格式（{exc.error_count()} 处不符）：若它由旧版本写入，"
            "启动一次评价服务（zeroerrand evaluation 或 zeroerrand up）即会升级 / ledger record of another "
            f"version: {exc.errors()[0]['loc']}") from exc


class MongoLedgerRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        db = store.db
        self._projects, self._items = db[PROJECTS.name], db[ITEMS.name]
        self._assessments, self._requests = db[ASSESSMENTS.name], db[REQUESTS.name]

    async def ensure(self) -> None:
        await self.store.ensure(COLLECTIONS)

    async def item(self, key: str) -> LedgerItem | None:
        return _load(LedgerItem, await self._items.find_one({"_id": key}))  # type: ignore[no-any-return]

    async def project_items(self, project_code: str) -> list[LedgerItem]:
        return [_load(LedgerItem, d) async for d in self._items.find({"project_code": project_code}).sort("_id")]

    async def items(self, keys: Sequence[str]) -> list[LedgerItem]:
        if not keys:
            return []
        # by project: an equality every store serves from an index (FerretDB does not push ``$in`` down)
        wanted = set(keys)
        found: list[LedgerItem] = []
        for project_code in sorted({key.split("/", 1)[0] for key in wanted}):
            found += [_load(LedgerItem, d) async for d in self._items.find({"project_code": project_code})
                      if d["_id"] in wanted]
        return found

    async def add_item(self, item: LedgerItem) -> bool:
        try:
            await self._items.insert_one(item_doc(item))
        except DuplicateKeyError:
            return False
        return True

    async def save_item(self, item: LedgerItem, read_version: int) -> bool:
        stored = item.model_copy(update={"version": read_version + 1})
        result = await self._items.replace_one({"_id": item.key, "version": read_version}, item_doc(stored))
        return result.matched_count == 1

    async def open_items(self) -> list[LedgerItem]:
        return [_load(LedgerItem, d) async for d in self._items.find({"open": True})]

    async def all_items(self) -> list[LedgerItem]:
        return [_load(LedgerItem, d) async for d in self._items.find({})]

    async def year_items(self, year: int, projects: Sequence[str] = ()) -> list[LedgerItem]:
        found = {d["_id"]: d async for d in self._items.find(year_filter(year))}
        for code in sorted(set(projects)):
            found.update({d["_id"]: d async for d in self._items.find({"project_code": code})})
        return [_load(LedgerItem, d) for _, d in sorted(found.items())]

    async def project(self, code: str) -> ProjectRecord | None:
        return _load(ProjectRecord, await self._projects.find_one({"_id": code}))  # type: ignore[no-any-return]

    async def add_project(self, project: ProjectRecord) -> None:
        # the first record stays (a redelivery carries the same facts): an insert, not an upsert,
        # which on the embedded store costs a look-up and a transaction
        with contextlib.suppress(DuplicateKeyError):
            await self._projects.insert_one(_doc(project, project.code))

    async def close_project(self, code: str, at: datetime) -> bool:
        result = await self._projects.update_one({"_id": code, "delivered_at": None},
                                                 {"$set": {"delivered_at": at.isoformat()}})
        return result.modified_count == 1

    async def assessment(self, assessment_id: str) -> Assessment | None:
        return _load(Assessment, await self._assessments.find_one({"_id": assessment_id}))  # type: ignore[no-any-return]

    async def find_assessment(self, project_code: str, provider: str, rater: str, year: int) -> Assessment | None:
        doc = await self._assessments.find_one({"project_code": project_code, "provider": provider, "rater": rater,
                                                "year": year})
        return _load(Assessment, doc)  # type: ignore[no-any-return]

    async def add_assessment(self, assessment: Assessment) -> bool:
        try:
            await self._assessments.insert_one(_doc(assessment, assessment.assessment_id))
        except DuplicateKeyError:
            return False
        return True

    async def rectify_assessment(self, assessment: Assessment) -> bool:
        result = await self._assessments.replace_one({"_id": assessment.assessment_id, "rectified_on": None},
                                                     _doc(assessment, assessment.assessment_id))
        return result.matched_count == 1

    async def assessments(self, year: int | None = None) -> list[Assessment]:
        query = {} if year is None else {"year": year}
        return [_load(Assessment, d) async for d in self._assessments.find(query)]

    async def outcome(self, request_id: str) -> RequestOutcome | None:
        return _load(RequestOutcome, await self._requests.find_one({"_id": request_id}))  # type: ignore[no-any-return]

    async def claim(self, outcome: RequestOutcome) -> RequestOutcome:
        try:
            await self._requests.insert_one(_doc(outcome, outcome.request_id))
        except DuplicateKeyError:
            stored = await self.outcome(outcome.request_id)
            assert stored is not None
            return stored
        return outcome

    async def record_outcome(self, request_id: str, status: str, reason: str | None = None,
                             events: Sequence[str] = ()) -> None:
        await self._requests.update_one({"_id": request_id},
                                        {"$set": {"status": status, "reason": reason, "events": list(events)}})

    async def refused(self, limit: int = 200) -> list[RequestOutcome]:
        cursor = self._requests.find({"status": "refused"}).sort("recorded_at", ASCENDING).limit(limit)
        return [_load(RequestOutcome, d) async for d in cursor]


class MemoryLedgerRepository:
    """The in-memory fake: the same contract, JSON documents in dicts."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {c.name: {} for c in COLLECTIONS}

    def _table(self, collection: Collection) -> dict[str, dict[str, Any]]:
        return self.tables[collection.name]

    async def ensure(self) -> None:
        return None

    async def item(self, key: str) -> LedgerItem | None:
        return _load(LedgerItem, copy.deepcopy(self._table(ITEMS).get(key)))  # type: ignore[no-any-return]

    async def project_items(self, project_code: str) -> list[LedgerItem]:
        return [_load(LedgerItem, copy.deepcopy(d)) for k, d in sorted(self._table(ITEMS).items())
                if d["project_code"] == project_code]

    async def items(self, keys: Sequence[str]) -> list[LedgerItem]:
        table = self._table(ITEMS)
        return [_load(LedgerItem, copy.deepcopy(table[k])) for k in keys if k in table]

    async def add_item(self, item: LedgerItem) -> bool:
        if item.key in self._table(ITEMS):
            return False
        self._table(ITEMS)[item.key] = item_doc(item)
        return True

    async def save_item(self, item: LedgerItem, read_version: int) -> bool:
        stored = self._table(ITEMS).get(item.key)
        if stored is None or stored["version"] != read_version:
            return False
        self._table(ITEMS)[item.key] = item_doc(item.model_copy(update={"version": read_version + 1}))
        return True

    async def open_items(self) -> list[LedgerItem]:
        return [_load(LedgerItem, copy.deepcopy(d)) for d in self._table(ITEMS).values() if d["open"]]

    async def all_items(self) -> list[LedgerItem]:
        return [_load(LedgerItem, copy.deepcopy(d)) for d in self._table(ITEMS).values()]

    async def year_items(self, year: int, projects: Sequence[str] = ()) -> list[LedgerItem]:
        wanted = set(projects)
        items = [_load(LedgerItem, copy.deepcopy(d)) for _, d in sorted(self._table(ITEMS).items())]
        return [item for item in items if item.project_code in wanted or active_in(item, year)]

    async def project(self, code: str) -> ProjectRecord | None:
        return _load(ProjectRecord, copy.deepcopy(self._table(PROJECTS).get(code)))  # type: ignore[no-any-return]

    async def add_project(self, project: ProjectRecord) -> None:
        self._table(PROJECTS).setdefault(project.code, _doc(project, project.code))

    async def close_project(self, code: str, at: datetime) -> bool:
        doc = self._table(PROJECTS).get(code)
        if doc is None or doc["delivered_at"] is not None:
            return False
        doc["delivered_at"] = at.isoformat()
        return True

    async def assessment(self, assessment_id: str) -> Assessment | None:
        return _load(Assessment, copy.deepcopy(self._table(ASSESSMENTS).get(assessment_id)))  # type: ignore[no-any-return]

    async def find_assessment(self, project_code: str, provider: str, rater: str, year: int) -> Assessment | None:
        for doc in self._table(ASSESSMENTS).values():
            if (doc["project_code"], doc["provider"], doc["rater"], doc["year"]) == (project_code, provider, rater, year):
                return _load(Assessment, copy.deepcopy(doc))  # type: ignore[no-any-return]
        return None

    async def add_assessment(self, assessment: Assessment) -> bool:
        a = assessment
        if a.assessment_id in self._table(ASSESSMENTS) or await self.find_assessment(a.project_code, a.provider,
                                                                                    a.rater, a.year):
            return False
        self._table(ASSESSMENTS)[assessment.assessment_id] = _doc(assessment, assessment.assessment_id)
        return True

    async def rectify_assessment(self, assessment: Assessment) -> bool:
        stored = self._table(ASSESSMENTS).get(assessment.assessment_id)
        if stored is None or stored["rectified_on"] is not None:
            return False
        self._table(ASSESSMENTS)[assessment.assessment_id] = _doc(assessment, assessment.assessment_id)
        return True

    async def assessments(self, year: int | None = None) -> list[Assessment]:
        return [_load(Assessment, copy.deepcopy(d)) for d in self._table(ASSESSMENTS).values()
                if year is None or d["year"] == year]

    async def outcome(self, request_id: str) -> RequestOutcome | None:
        return _load(RequestOutcome, copy.deepcopy(self._table(REQUESTS).get(request_id)))  # type: ignore[no-any-return]

    async def claim(self, outcome: RequestOutcome) -> RequestOutcome:
        stored = self._table(REQUESTS).setdefault(outcome.request_id, _doc(outcome, outcome.request_id))
        return _load(RequestOutcome, copy.deepcopy(stored))  # type: ignore[no-any-return]

    async def record_outcome(self, request_id: str, status: str, reason: str | None = None,
                             events: Sequence[str] = ()) -> None:
        stored = self._table(REQUESTS).get(request_id)
        if stored is not None:
            stored.update(status=status, reason=reason, events=list(events))

    async def refused(self, limit: int = 200) -> list[RequestOutcome]:
        found = sorted((d for d in self._table(REQUESTS).values() if d["status"] == "refused"),
                       key=lambda d: d["recorded_at"])
        return [_load(RequestOutcome, copy.deepcopy(d)) for d in found[:limit]]
