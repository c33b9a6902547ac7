"""The ledger (台账) in the store: loading and saving only, with the version check.

``LedgerRepository`` is the port the handlers use; ``MongoLedgerRepository`` is the real adapter
(MongoDB or the embedded store) and ``MemoryLedgerRepository`` its in-memory fake. Both keep
records as JSON documents, so the fake also proves every record survives the round trip.

A ledger line is saved only if it is still at the version it was read at, and the check relies on
nothing but an insert under a unique key: the new version's journal entry (``journal.py``). Of
several writers that read one version, exactly one inserts the next; the others are told so
(``save_item`` is False), and the line's materialised document (``ledger_items``, what every
query reads) is repaired from the journal first, so that reading it again gives them the line as
it is now. The materialised document is written after its journal entry, never before; on the
embedded store, where a filtered write may land after a newer one, the writer looks for a newer
entry afterwards and writes that one if it finds it (see docs/concurrency.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError
from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.common.batching import Batcher
from services.common.storage import DUPLICATE_KEY, Collection, Store, StoreSchemaError
from services.evaluation.journal import base_entry, change_entry, entry_id, fold
from services.evaluation.ledger import (
    AmendmentRecord,
    Assessment,
    ItemState,
    LedgerItem,
    ProjectRecord,
    RequestOutcome,
    RulesRecord,
    UnroutableRecord,
    running_clock,
    service_clock_start,
)
from services.evaluation.scoring import active_in

# the projects a 招引单位 brought in (its page of the console)
PROJECTS = Collection("ledger_projects", (IndexModel([("recruiting_unit", ASCENDING)]),))
# Beside each item, for look-ups by equality (the one kind of query both stores serve from an index;
# see ``item_doc``): ``open`` (not completed or delivered) for the overdue sweep and a unit's board,
# ``open_resolvers`` (who must resolve its open blockers), ``order_state`` and ``order_assignee``
# (its 专业跑腿 task order, ``to_issue`` when 经济发展招商服务局 has one to issue); ``routed_on``
# serves the year's items of the report. The console's boards and overview page through open lines in
# the store (``open_lines``): by equalities (``waiting``, the announced ``level``, stage, state, project),
# most urgent first by ``urgency`` (see ``board_fields``).
ITEMS = Collection("ledger_items", (
    IndexModel([("project_code", ASCENDING)]), IndexModel([("open", ASCENDING)]), IndexModel([("routed_on", ASCENDING)]),
    IndexModel([("responsible_unit", ASCENDING), ("open", ASCENDING)]), IndexModel([("open_resolvers", ASCENDING)]),
    IndexModel([("order_state", ASCENDING)]), IndexModel([("order_assignee", ASCENDING), ("order_state", ASCENDING)]),
    IndexModel([("responsible_unit", ASCENDING), ("open", ASCENDING), ("waiting", ASCENDING), ("urgency", ASCENDING)]),
    IndexModel([("open", ASCENDING), ("level", ASCENDING), ("urgency", ASCENDING)])))
ASSESSMENTS = Collection("ledger_assessments", (
    # one 测评 per project, provider, rater group and year, even when two arrive at once
    IndexModel([("project_code", ASCENDING), ("provider", ASCENDING), ("rater", ASCENDING), ("year", ASCENDING)],
               unique=True, name="one_assessment_per_rater_and_year"),
    IndexModel([("year", ASCENDING)])))
REQUESTS = Collection("ledger_requests", (IndexModel([("status", ASCENDING), ("recorded_at", ASCENDING)]),))
# which upgrades the ledger has had (``migrations.upgrade``), so a start does not look again
META = Collection("ledger_meta")
# every ``rules.activated`` / ``rules.rejected`` (by event id), read newest first by type
RULES_HISTORY = Collection("ledger_rules_history", (IndexModel([("type", ASCENDING), ("occurred_at", DESCENDING)]),))
# every ``item.unroutable`` (by event id), read newest first by the decision's year
UNROUTABLE = Collection("ledger_unroutable", (IndexModel([("year", ASCENDING), ("occurred_at", DESCENDING)]),))
# every version of every line, insert-only (journal.py): ``_id`` ``{key}#{version}`` is the claim
JOURNAL = Collection("ledger_journal", (IndexModel([("key", ASCENDING), ("version", ASCENDING)]),
                                        IndexModel([("project_code", ASCENDING)])))
# who rectified a 测评: one document per 测评, inserted by the one rectification that is kept
RECTIFICATIONS = Collection("ledger_rectifications")
# the one ``project.delivered`` of a project, inserted by the call that closes it
CLOSINGS = Collection("ledger_project_closings")
# each 补充协议 applied to a project, inserted once (``_id``: the router's plan.amended event id)
AMENDMENTS = Collection("ledger_amendments", (IndexModel([("project_code", ASCENDING)]),))
# each reminder the sweep sent once (``_id``: its event id): a 差评 not rectified by its deadline
REMINDERS = Collection("ledger_reminders")
COLLECTIONS = (PROJECTS, ITEMS, ASSESSMENTS, REQUESTS, META, RULES_HISTORY, UNROUTABLE, JOURNAL, RECTIFICATIONS,
               CLOSINGS, AMENDMENTS, REMINDERS)
ORDER_STATES = ("to_issue", "issued", "accepted", "closed")
OUTCOME_LOOKUPS = 16  # request outcomes looked up at once by ``_id`` on the embedded store
"""What ``order_state`` holds: a task order still to issue, or the state of the issued one."""


class UnknownSubject(LookupError):
    """The request names a project, item or 测评 the ledger has not recorded (yet)."""


class LedgerRepository(Protocol):
    async def ensure(self) -> None: ...
    async def item(self, key: str) -> LedgerItem | None: ...
    async def project_items(self, project_code: str) -> list[LedgerItem]: ...
    async def lines(self, project_code: str, item_code: str) -> list[LedgerItem]:
        """A project's lines of one catalog item (its handled and its advice-only line, if both)."""
    async def items(self, keys: Sequence[str]) -> list[LedgerItem]:
        """The stored items among ``keys`` (one look-up)."""
    async def add_item(self, item: LedgerItem) -> bool:
        """Stores a new item; False if one with that key exists (a redelivered ``item.routed``)."""
    async def save_item(self, item: LedgerItem, previous: LedgerItem) -> bool:
        """Stores ``item`` as version ``previous.version + 1`` if no other writer has stored that
        version; False if one has (the stored line is then at least as new as the journal was when
        this call found out, so reading it again gives what to decide on)."""
    async def journal(self, key: str) -> list[dict[str, Any]]:
        """The journal entries of a line, oldest first (its audit trail)."""
    async def project_journal(self, project_code: str) -> list[dict[str, Any]]:
        """The journal entries of a project's lines (one look-up), in no particular order."""
    async def journal_projects(self) -> list[str]:
        """Every project the journal has entries for."""
    async def restore(self, key: str) -> LedgerItem:
        """Writes the line's document as its journal has it (``ledger verify --repair``); returns it."""
    async def open_items(self) -> list[LedgerItem]: ...
    async def all_items(self) -> list[LedgerItem]: ...
    async def year_items(self, year: int, projects: Sequence[str] = ()) -> list[LedgerItem]:
        """The items active in ``year`` (routed by its end, not finished before it began), and every
        item of ``projects`` (those with a 测评 of the year), for the annual evaluation."""
    async def project(self, code: str) -> ProjectRecord | None: ...
    async def add_project(self, project: ProjectRecord) -> None: ...
    async def close_project(self, code: str, at: datetime) -> bool:
        """Marks the project delivered; True if this call did it (of concurrent calls, one)."""
    async def assessment(self, assessment_id: str) -> Assessment | None: ...
    async def find_assessment(self, project_code: str, provider: str, rater: str, year: int) -> Assessment | None: ...
    async def add_assessment(self, assessment: Assessment) -> bool:
        """Stores a new 测评; False if its id, or its project, provider, rater group and year, exist."""
    async def rectify_assessment(self, assessment: Assessment) -> bool:
        """Stores the rectification if the stored 测评 is not rectified yet (of concurrent ones, one)."""
    async def assessments(self, year: int | None = None) -> list[Assessment]: ...
    async def reminders(self) -> set[str]:
        """The event ids of the reminders the sweep sent."""
    async def add_reminder(self, event_id: str) -> bool:
        """Records a reminder as sent; False if it was (of concurrent calls, one)."""
    async def bad_assessments(self, provider: str) -> list[Assessment]:
        """The 差评 of one provider, every year (its rectification page): equalities only."""
    async def outcome(self, request_id: str) -> RequestOutcome | None: ...
    async def outcomes(self, request_ids: Sequence[str]) -> list[RequestOutcome]:
        """What is stored for each of ``request_ids`` that the ledger has received (one look-up)."""
    async def claim(self, outcome: RequestOutcome) -> RequestOutcome:
        """Records a request as ``pending`` unless its id is known; returns what is stored for the id."""
    async def record_outcome(self, request_id: str, status: str, reason: str | None = None,
                             events: Sequence[str] = ()) -> None: ...
    async def refused(self, limit: int = 200) -> list[RequestOutcome]: ...
    # -- what the console and the CLI read (``views.py``); each by an index, none the whole ledger --
    async def delivered_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of the lines ``keys`` are delivered (ids only: what a waiting line still waits for)."""
    async def unit_items(self, unit: str, open_only: bool = True) -> list[LedgerItem]:
        """The items ``unit`` is responsible for (only the open ones, by default)."""
    async def resolver_items(self, unit: str) -> list[LedgerItem]:
        """The items with an open blocker ``unit`` must resolve."""
    async def task_order_items(self, *, state: str | None = None, assigned_to: str | None = None) -> list[LedgerItem]:
        """Items by their task order: ``state`` one of ``ORDER_STATES`` (``to_issue``: none issued yet,
        though one is needed and the item no longer waits); neither given: every item with an order."""
    async def recruiting_unit_projects(self, unit: str) -> list[ProjectRecord]: ...
    async def open_lines(self, where: Mapping[str, Any], skip: int = 0,
                         limit: int | None = None) -> tuple[list[LedgerItem], int]:
        """A page of the open lines matching ``where`` (equalities on ``LINE_FILTERS``), most urgent
        first (``urgency``), skipped and limited in the store; and how many match in all."""
    async def open_line_fields(self, where: Mapping[str, Any], fields: Sequence[str]) -> list[dict[str, Any]]:
        """Only ``fields`` of every open line matching ``where``: what the overview counts, without the lines."""
    async def projects(self, codes: Sequence[str]) -> list[ProjectRecord]:
        """The stored projects among ``codes`` (one look-up each, at once), in the order given."""
    async def all_projects(self) -> list[ProjectRecord]:
        """Every project's record (the overview's list of the year; small documents)."""
    async def add_rules_event(self, record: RulesRecord) -> bool:
        """Stores a rules event; False if its event id is stored (a redelivery)."""
    async def rules_events(self, type: str, limit: int = 100) -> list[RulesRecord]:
        """The latest events of ``type`` (``rules.activated`` / ``rules.rejected``), newest first."""
    async def add_unroutable(self, record: UnroutableRecord) -> bool:
        """Stores an unroutable item; False if its event id is stored (a redelivery)."""
    async def unroutable(self, year: int, limit: int = 200) -> list[UnroutableRecord]:
        """The items no rule could place in ``year``, newest first."""
    # -- 补充协议 --
    async def add_amendment(self, record: AmendmentRecord) -> bool:
        """Stores an applied amendment; False if its event id is stored (of concurrent ones, one)."""
    async def amendments(self, project_code: str) -> list[AmendmentRecord]:
        """The project's applied amendments, by revision."""
    async def amend_project(self, project: ProjectRecord) -> None:
        """Writes the fields an amendment changes in the project's record (by its code)."""


DERIVED = ("_id", "open", "open_resolvers", "order_state", "order_assignee", "waiting", "level",
           "urgency")  # stored for look-ups, not the record
BOARD_LEVELS = ("red", "yellow", "warning")
"""Announced levels, most urgent first (``urgency`` ranks them so)."""
LINE_FILTERS = ("responsible_unit", "stage", "state", "project_code", "item_code", "request", "level", "waiting")
"""The fields ``open_lines`` filters on, each by equality (the one kind of query both stores serve from an index)."""


def _doc(record: BaseModel, key: str) -> dict[str, Any]:
    return {"_id": key, **record.model_dump(mode="json")}


def order_state(item: LedgerItem) -> str | None:
    """``to_issue`` for an open item past waiting that needs a task order and has none (then it is
    ready, or blocked or suspended from ready: nothing else moves it before the order); else the
    state of its order, if any."""
    if item.task_order is not None:
        return item.task_order.state
    if item.task_order_required and item.is_open and item.state is not ItemState.WAITING:
        return "to_issue"
    return None


def board_fields(item: LedgerItem) -> dict[str, Any]:
    """What the console's boards filter and sort open lines by, in the store, without the calendar:

    * ``waiting``: the line waits for its prerequisites (boards hide these unless asked);
    * ``level``: the highest level the overdue sweep announced for the clock running now (``overdue_sent``:
      预警/黄牌/红牌 as 电子监察 announced it; None when none, or the line is finished);
    * ``urgency``: the sort key, most urgent first: the announced level (红牌, 黄牌, 预警, none), then the
      day the running clock started (the longest-running first), waiting lines last.

    The sweep runs every few minutes and announces a level the day it is reached, so the order follows the
    clocks; the level each row shows is still read from its clock at the moment the page is made."""
    clock = running_clock(item) if item.is_open else None
    announced = {level for c, _, level in (s.partition(":") for s in item.overdue_sent) if c == clock}
    level = next((lv for lv in BOARD_LEVELS if lv in announced), None)
    rank = BOARD_LEVELS.index(level) if level else len(BOARD_LEVELS)
    started = {"task_order": item.ready_on, "service": service_clock_start(item),
               "statutory": item.accepted_on}.get(clock) if clock else None
    waiting = item.state is ItemState.WAITING
    urgency = f"{rank + (1 if waiting else 0)}|{started.isoformat() if started else '9999-12-31'}|{item.key}"
    return {"waiting": waiting, "level": level, "urgency": urgency}


def item_doc(item: LedgerItem, key: str | None = None) -> dict[str, Any]:
    return {**_doc(item, key or item.key), "open": item.is_open,
            "open_resolvers": sorted({b.resolver for b in item.open_blockers}),
            "order_state": order_state(item),
            "order_assignee": item.task_order.assigned_to if item.task_order else None,
            **board_fields(item)}


def line_query(where: Mapping[str, Any]) -> dict[str, Any]:
    """The query of ``open_lines``: open lines, and each of ``where`` by equality (``LINE_FILTERS`` only)."""
    unknown = sorted(set(where) - set(LINE_FILTERS))
    if unknown:
        raise ValueError(f"open lines are not looked up by {', '.join(unknown)} (only {', '.join(LINE_FILTERS)})")
    return {"open": True, **where}


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
        self._rules, self._unroutable = db[RULES_HISTORY.name], db[UNROUTABLE.name]
        self._journal, self._rectifications = db[JOURNAL.name], db[RECTIFICATIONS.name]
        self._closings, self._reminders = db[CLOSINGS.name], db[REMINDERS.name]
        # the writes every request makes, sent together when requests are handled at the same time
        # (batching.py): the claim of its id, the journal entry, the line's document, the outcome
        self.claim_writes = Batcher[dict[str, Any], bool](lambda docs: _insert_each(self._requests, docs))
        self.entry_writes = Batcher[dict[str, Any], bool](lambda docs: _insert_each(self._journal, docs))
        self.line_writes = Batcher[Any, None](lambda ops: _write_each(self._items, ops))
        self.outcome_writes = Batcher[Any, None](lambda ops: _write_each(self._requests, ops))

    async def ensure(self) -> None:
        await self.store.ensure(COLLECTIONS)

    async def item(self, key: str) -> LedgerItem | None:
        return _load(LedgerItem, await self._items.find_one({"_id": key}))  # type: ignore[no-any-return]

    async def project_items(self, project_code: str) -> list[LedgerItem]:
        return [_load(LedgerItem, d) async for d in self._items.find({"project_code": project_code}).sort("_id")]

    async def lines(self, project_code: str, item_code: str) -> list[LedgerItem]:
        # both equalities go down to the store, so only the line's document comes back
        return [_load(LedgerItem, d) async for d in
                self._items.find({"project_code": project_code, "item_code": item_code}).sort("_id")]

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
        added = await self.entry_writes.submit(base_entry(item, datetime.now(UTC)))
        # also when the entry was there: a crash may have come between the two inserts
        with contextlib.suppress(DuplicateKeyError):
            await self._items.insert_one(item_doc(item))
        return added

    async def save_item(self, item: LedgerItem, previous: LedgerItem) -> bool:
        stored = item.model_copy(update={"version": previous.version + 1})
        if not await self.entry_writes.submit(change_entry(previous, stored, datetime.now(UTC))):
            await self._repair(item.key)
            return False
        await self._materialize(stored)
        return True

    async def _materialize(self, item: LedgerItem) -> None:
        """Writes the line's document as of ``item`` unless it shows a newer version. MongoDB makes
        that filtered write atomic; the embedded store does not (it may land after a newer one), so
        there the writer then looks for a newer journal entry and, if there is one, writes the line
        as the journal has it, until none is newer than what it wrote."""
        while True:
            await self.line_writes.submit(ReplaceOne({"_id": item.key, "version": {"$lt": item.version}}, item_doc(item)))
            if not self.store.embedded or not await self._newer(item):
                return
            item = await self._rebuild(item.key)

    async def _newer(self, item: LedgerItem) -> bool:
        """Whether the journal holds a version after ``item``'s."""
        return await self._journal.find_one({"_id": entry_id(item.key, item.version + 1)}, {"_id": 1}) is not None

    async def _rebuild(self, key: str) -> LedgerItem:
        return fold(await self.journal(key))

    async def _repair(self, key: str) -> None:
        """After a lost race: the line's document brought up to its journal."""
        await self._materialize(await self._rebuild(key))

    async def journal(self, key: str) -> list[dict[str, Any]]:
        return sorted([d async for d in self._journal.find({"key": key})], key=lambda d: int(d["version"]))

    async def project_journal(self, project_code: str) -> list[dict[str, Any]]:
        return [d async for d in self._journal.find({"project_code": project_code})]

    async def journal_projects(self) -> list[str]:
        return sorted({d["project_code"] async for d in self._journal.find({}, {"project_code": 1})})

    async def restore(self, key: str) -> LedgerItem:
        # unconditional (the document may be missing, or hand-edited to any version), so on every
        # store a version a live writer stored meanwhile is looked for after it and written if found
        while True:
            item = await self._rebuild(key)
            await self._items.replace_one({"_id": key}, item_doc(item), upsert=True)
            if not await self._newer(item):
                return item

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
        if not await _insert_new(self._closings, {"_id": code, "delivered_at": at.isoformat()}):
            return False
        # only the call that inserted the closing writes, and only the value it inserted
        await self._projects.update_one({"_id": code}, {"$set": {"delivered_at": at.isoformat()}})
        return True

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
        claim = {"_id": assessment.assessment_id, "request_id": assessment.rectified_by_request}
        if not await _insert_new(self._rectifications, claim):
            return False
        await self._assessments.replace_one({"_id": assessment.assessment_id}, _doc(assessment, assessment.assessment_id))
        return True

    async def assessments(self, year: int | None = None) -> list[Assessment]:
        query = {} if year is None else {"year": year}
        return [_load(Assessment, d) async for d in self._assessments.find(query)]

    async def reminders(self) -> set[str]:
        return {d["_id"] async for d in self._reminders.find({}, {"_id": 1})}

    async def add_reminder(self, event_id: str) -> bool:
        return await _insert_new(self._reminders, {"_id": event_id})

    async def bad_assessments(self, provider: str) -> list[Assessment]:
        return [_load(Assessment, d) async for d in self._assessments.find({"provider": provider, "bad": True})]

    async def outcome(self, request_id: str) -> RequestOutcome | None:
        return _load(RequestOutcome, await self._requests.find_one({"_id": request_id}))  # type: ignore[no-any-return]

    async def outcomes(self, request_ids: Sequence[str]) -> list[RequestOutcome]:
        if not self.store.embedded:
            found = self._requests.find({"_id": {"$in": list(request_ids)}})
            return [_load(RequestOutcome, doc) async for doc in found]
        # FerretDB pushes no ``$in`` down (it would read every request of the years): one look-up by
        # ``_id`` each, a few at a time
        gate = asyncio.Semaphore(OUTCOME_LOOKUPS)

        async def one(request_id: str) -> dict[str, Any] | None:
            async with gate:
                return await self._requests.find_one({"_id": request_id})

        docs = await asyncio.gather(*(one(i) for i in dict.fromkeys(request_ids)))
        return [_load(RequestOutcome, doc) for doc in docs if doc is not None]

    async def claim(self, outcome: RequestOutcome) -> RequestOutcome:
        if not await self.claim_writes.submit(_doc(outcome, outcome.request_id)):
            stored = await self.outcome(outcome.request_id)
            assert stored is not None
            return stored
        return outcome

    async def record_outcome(self, request_id: str, status: str, reason: str | None = None,
                             events: Sequence[str] = ()) -> None:
        await self.outcome_writes.submit(UpdateOne(
            {"_id": request_id}, {"$set": {"status": status, "reason": reason, "events": list(events)}}))

    async def refused(self, limit: int = 200) -> list[RequestOutcome]:
        cursor = self._requests.find({"status": "refused"}).sort("recorded_at", ASCENDING).limit(limit)
        return [_load(RequestOutcome, d) async for d in cursor]

    async def delivered_keys(self, keys: Sequence[str]) -> set[str]:
        wanted, found = set(keys), set()
        for project_code in sorted({key.split("/", 1)[0] for key in wanted}):  # equalities, as ``items``
            cursor = self._items.find({"project_code": project_code, "state": ItemState.DELIVERED.value}, {"_id": 1})
            found |= {d["_id"] async for d in cursor if d["_id"] in wanted}
        return found

    async def _find_items(self, query: dict[str, Any]) -> list[LedgerItem]:
        return [_load(LedgerItem, d) async for d in self._items.find(query).sort("_id")]

    async def unit_items(self, unit: str, open_only: bool = True) -> list[LedgerItem]:
        return await self._find_items({"responsible_unit": unit, "open": True} if open_only
                                      else {"responsible_unit": unit})

    async def resolver_items(self, unit: str) -> list[LedgerItem]:
        return await self._find_items({"open_resolvers": unit})

    async def task_order_items(self, *, state: str | None = None, assigned_to: str | None = None) -> list[LedgerItem]:
        if state is not None and state not in ORDER_STATES:
            raise ValueError(f"not a task order state: {state!r} (one of {', '.join(ORDER_STATES)})")
        if assigned_to is not None:
            return await self._find_items({"order_assignee": assigned_to} if state is None
                                          else {"order_assignee": assigned_to, "order_state": state})
        found: list[LedgerItem] = []
        for wanted in [state] if state else ORDER_STATES[1:]:  # equalities: FerretDB pushes no ``$in`` down
            found += await self._find_items({"order_state": wanted})
        return sorted(found, key=lambda i: i.key)

    async def recruiting_unit_projects(self, unit: str) -> list[ProjectRecord]:
        return [_load(ProjectRecord, d) async for d in self._projects.find({"recruiting_unit": unit}).sort("_id")]

    async def open_lines(self, where: Mapping[str, Any], skip: int = 0,
                         limit: int | None = None) -> tuple[list[LedgerItem], int]:
        query = line_query(where)
        cursor = self._items.find(query).sort([("urgency", ASCENDING), ("_id", ASCENDING)]).skip(max(0, skip))
        if limit is not None:
            cursor = cursor.limit(max(1, limit))
        found = [_load(LedgerItem, d) async for d in cursor]
        total = await self._items.count_documents(query)
        return found, total

    async def open_line_fields(self, where: Mapping[str, Any], fields: Sequence[str]) -> list[dict[str, Any]]:
        projection = {name: 1 for name in fields} | {"_id": 0}
        return [d async for d in self._items.find(line_query(where), projection)]

    async def projects(self, codes: Sequence[str]) -> list[ProjectRecord]:
        gate = asyncio.Semaphore(OUTCOME_LOOKUPS)  # by ``_id`` one each: FerretDB pushes no ``$in`` down

        async def one(code: str) -> dict[str, Any] | None:
            async with gate:
                return await self._projects.find_one({"_id": code})

        docs = await asyncio.gather(*(one(code) for code in dict.fromkeys(codes)))
        return [_load(ProjectRecord, doc) for doc in docs if doc is not None]

    async def all_projects(self) -> list[ProjectRecord]:
        return [_load(ProjectRecord, d) async for d in self._projects.find({}).sort("_id")]

    async def add_rules_event(self, record: RulesRecord) -> bool:
        return await _insert_new(self._rules, _doc(record, record.event_id))

    async def rules_events(self, type: str, limit: int = 100) -> list[RulesRecord]:
        cursor = self._rules.find({"type": type}).sort("occurred_at", DESCENDING).limit(limit)
        return [_load(RulesRecord, d) async for d in cursor]

    async def add_unroutable(self, record: UnroutableRecord) -> bool:
        return await _insert_new(self._unroutable, _doc(record, record.event_id))

    async def unroutable(self, year: int, limit: int = 200) -> list[UnroutableRecord]:
        cursor = self._unroutable.find({"year": year}).sort("occurred_at", DESCENDING).limit(limit)
        return [_load(UnroutableRecord, d) async for d in cursor]


    async def add_amendment(self, record: AmendmentRecord) -> bool:
        return await _insert_new(self.store.db[AMENDMENTS.name], _doc(record, record.event_id))

    async def amendments(self, project_code: str) -> list[AmendmentRecord]:
        found = [_load(AmendmentRecord, d) async for d in self.store.db[AMENDMENTS.name].find({"project_code": project_code})]
        return sorted(found, key=lambda a: a.revision)

    async def amend_project(self, project: ProjectRecord) -> None:
        # only the fields an amendment changes: delivered_at is the closing's to write
        await self._projects.update_one({"_id": project.code}, {"$set": amended_fields(project)})


def amended_fields(project: ProjectRecord) -> dict[str, Any]:
    return project.model_dump(mode="json", include={"name", "recruiting_unit", "items_planned", "facts_json",
                                                    "revision", "amendments"})

async def _insert_each(collection: Any, documents: Sequence[dict[str, Any]]) -> list[bool]:
    """One unordered ``insert_many``: for each document, whether it was inserted (False: its
    ``_id`` or a unique key was stored already, by an earlier batch or by one before it in this one)."""
    try:
        await collection.insert_many([dict(d) for d in documents], ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        duplicates = {int(e["index"]) for e in errors}
        return [n not in duplicates for n in range(len(documents))]
    return [True] * len(documents)


async def _write_each(collection: Any, operations: Sequence[Any]) -> list[None]:
    """One unordered ``bulk_write`` of independent single-document writes."""
    await collection.bulk_write(list(operations), ordered=False)
    return [None] * len(operations)


async def _insert_new(collection: Any, doc: dict[str, Any]) -> bool:
    try:
        await collection.insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


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

    async def lines(self, project_code: str, item_code: str) -> list[LedgerItem]:
        return [_load(LedgerItem, copy.deepcopy(d)) for k, d in sorted(self._table(ITEMS).items())
                if d["project_code"] == project_code and d["item_code"] == item_code]

    async def items(self, keys: Sequence[str]) -> list[LedgerItem]:
        table = self._table(ITEMS)
        return [_load(LedgerItem, copy.deepcopy(table[k])) for k in keys if k in table]

    async def add_item(self, item: LedgerItem) -> bool:
        entry = base_entry(item, datetime.now(UTC))
        added = self._table(JOURNAL).setdefault(entry["_id"], entry) is entry
        self._table(ITEMS).setdefault(item.key, item_doc(item))
        return added

    async def save_item(self, item: LedgerItem, previous: LedgerItem) -> bool:
        stored = item.model_copy(update={"version": previous.version + 1})
        entry = change_entry(previous, stored, datetime.now(UTC))
        if self._table(JOURNAL).setdefault(entry["_id"], entry) is not entry:
            self._table(ITEMS)[item.key] = item_doc(fold(await self.journal(item.key)))
            return False
        self._table(ITEMS)[item.key] = item_doc(stored)
        return True

    async def journal(self, key: str) -> list[dict[str, Any]]:
        return sorted((copy.deepcopy(d) for d in self._table(JOURNAL).values() if d["key"] == key),
                      key=lambda d: int(d["version"]))

    async def project_journal(self, project_code: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self._table(JOURNAL).values() if d["project_code"] == project_code]

    async def journal_projects(self) -> list[str]:
        return sorted({d["project_code"] for d in self._table(JOURNAL).values()})

    async def restore(self, key: str) -> LedgerItem:
        item = fold(await self.journal(key))
        self._table(ITEMS)[key] = item_doc(item)
        return item

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
        if code in self._table(CLOSINGS):
            return False
        self._table(CLOSINGS)[code] = {"_id": code, "delivered_at": at.isoformat()}
        doc = self._table(PROJECTS).get(code)
        if doc is not None:
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
        if assessment.assessment_id in self._table(RECTIFICATIONS):
            return False
        self._table(RECTIFICATIONS)[assessment.assessment_id] = {"_id": assessment.assessment_id}
        self._table(ASSESSMENTS)[assessment.assessment_id] = _doc(assessment, assessment.assessment_id)
        return True

    async def assessments(self, year: int | None = None) -> list[Assessment]:
        return [_load(Assessment, copy.deepcopy(d)) for d in self._table(ASSESSMENTS).values()
                if year is None or d["year"] == year]

    async def reminders(self) -> set[str]:
        return set(self._table(REMINDERS))

    async def add_reminder(self, event_id: str) -> bool:
        if event_id in self._table(REMINDERS):
            return False
        self._table(REMINDERS)[event_id] = {"_id": event_id}
        return True

    async def bad_assessments(self, provider: str) -> list[Assessment]:
        return [_load(Assessment, copy.deepcopy(d)) for d in self._table(ASSESSMENTS).values()
                if d["provider"] == provider and d["bad"]]

    async def outcome(self, request_id: str) -> RequestOutcome | None:
        return _load(RequestOutcome, copy.deepcopy(self._table(REQUESTS).get(request_id)))  # type: ignore[no-any-return]

    async def outcomes(self, request_ids: Sequence[str]) -> list[RequestOutcome]:
        table = self._table(REQUESTS)
        return [_load(RequestOutcome, copy.deepcopy(table[i])) for i in request_ids if i in table]

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

    async def delivered_keys(self, keys: Sequence[str]) -> set[str]:
        table = self._table(ITEMS)
        return {k for k in keys if k in table and table[k]["state"] == ItemState.DELIVERED.value}

    def _items_where(self, test: Any) -> list[LedgerItem]:
        return [_load(LedgerItem, copy.deepcopy(d)) for _, d in sorted(self._table(ITEMS).items()) if test(d)]

    async def unit_items(self, unit: str, open_only: bool = True) -> list[LedgerItem]:
        return self._items_where(lambda d: d["responsible_unit"] == unit and (d["open"] or not open_only))

    async def resolver_items(self, unit: str) -> list[LedgerItem]:
        return self._items_where(lambda d: unit in d["open_resolvers"])

    async def task_order_items(self, *, state: str | None = None, assigned_to: str | None = None) -> list[LedgerItem]:
        if state is not None and state not in ORDER_STATES:
            raise ValueError(f"not a task order state: {state!r} (one of {', '.join(ORDER_STATES)})")
        states = {state} if state else set(ORDER_STATES[1:])
        return self._items_where(lambda d: d["order_state"] in states
                                 and (assigned_to is None or d["order_assignee"] == assigned_to))

    async def recruiting_unit_projects(self, unit: str) -> list[ProjectRecord]:
        return [_load(ProjectRecord, copy.deepcopy(d)) for _, d in sorted(self._table(PROJECTS).items())
                if d["recruiting_unit"] == unit]

    def _open_docs(self, where: Mapping[str, Any]) -> list[dict[str, Any]]:
        query = line_query(where)
        return [d for d in self._table(ITEMS).values() if all(d.get(k) == v for k, v in query.items())]

    async def open_lines(self, where: Mapping[str, Any], skip: int = 0,
                         limit: int | None = None) -> tuple[list[LedgerItem], int]:
        found = sorted(self._open_docs(where), key=lambda d: (d["urgency"], d["_id"]))
        page = found[max(0, skip):] if limit is None else found[max(0, skip):max(0, skip) + max(1, limit)]
        return [_load(LedgerItem, copy.deepcopy(d)) for d in page], len(found)

    async def open_line_fields(self, where: Mapping[str, Any], fields: Sequence[str]) -> list[dict[str, Any]]:
        return [{name: copy.deepcopy(d[name]) for name in fields if name in d} for d in self._open_docs(where)]

    async def projects(self, codes: Sequence[str]) -> list[ProjectRecord]:
        table = self._table(PROJECTS)
        return [_load(ProjectRecord, copy.deepcopy(table[c])) for c in dict.fromkeys(codes) if c in table]

    async def all_projects(self) -> list[ProjectRecord]:
        return [_load(ProjectRecord, copy.deepcopy(d)) for _, d in sorted(self._table(PROJECTS).items())]

    async def add_rules_event(self, record: RulesRecord) -> bool:
        table = self._table(RULES_HISTORY)
        if record.event_id in table:
            return False
        table[record.event_id] = _doc(record, record.event_id)
        return True

    async def rules_events(self, type: str, limit: int = 100) -> list[RulesRecord]:
        found = sorted((d for d in self._table(RULES_HISTORY).values() if d["type"] == type),
                       key=lambda d: d["occurred_at"], reverse=True)
        return [_load(RulesRecord, copy.deepcopy(d)) for d in found[:limit]]

    async def add_unroutable(self, record: UnroutableRecord) -> bool:
        table = self._table(UNROUTABLE)
        if record.event_id in table:
            return False
        table[record.event_id] = _doc(record, record.event_id)
        return True

    async def unroutable(self, year: int, limit: int = 200) -> list[UnroutableRecord]:
        found = sorted((d for d in self._table(UNROUTABLE).values() if d["year"] == year),
                       key=lambda d: d["occurred_at"], reverse=True)
        return [_load(UnroutableRecord, copy.deepcopy(d)) for d in found[:limit]]

    async def add_amendment(self, record: AmendmentRecord) -> bool:
        table = self.tables[AMENDMENTS.name]
        if record.event_id in table:
            return False
        table[record.event_id] = _doc(record, record.event_id)
        return True

    async def amendments(self, project_code: str) -> list[AmendmentRecord]:
        found = [_load(AmendmentRecord, copy.deepcopy(d)) for d in self.tables[AMENDMENTS.name].values()
                 if d["project_code"] == project_code]
        return sorted(found, key=lambda a: a.revision)

    async def amend_project(self, project: ProjectRecord) -> None:
        doc = self._table(PROJECTS).get(project.code)
        if doc is not None:
            doc.update(amended_fields(project))
