"""The notifier's data in the store: notifications, and the read model of projects and items.

The read model lets notifications about later events (a blocker, a hand-over) name the project,
the enterprise and the unit, which those events do not carry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from services.common.messages import AgreementRejected, Enterprise, Event, ItemRerouted, ItemRouted, ServiceStarted
from services.common.storage import Collection, Store
from services.notifier.channels import INBOX
from services.notifier.compose import ItemView, ProjectView

READ_CONCURRENCY = 16
# the kinds of recipient key a notification has: unit:CODE, enterprise:CREDIT_CODE, role:NAME
RECIPIENT_KINDS = ("unit", "enterprise", "role")
# Notification statuses: an inbox notification is unread until its recipient opens it, then
# delivered; one of an external channel is pending (due at next_attempt_at), sending (claimed
# under a lease), then delivered (accepted by the receiver) or failed.
UNREAD, DELIVERED, PENDING, SENDING, FAILED = "unread", "delivered", "pending", "sending", "failed"
NOTIFICATIONS = Collection("notifications", (
    # the delivery loop's claim: status pending or sending, due by next_attempt_at (every external channel)
    IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)]),
    IndexModel([("project_code", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("recipient", ASCENDING), ("created_at", DESCENDING)]),
    # a recipient's unread inbox and its count
    IndexModel([("recipient", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("event_id", ASCENDING)]),
))
PROJECTS = Collection("notifier_projects")
ITEMS = Collection("notifier_items")
COLLECTIONS = (NOTIFICATIONS, PROJECTS, ITEMS)


class NotifierRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._notifications = store.db[NOTIFICATIONS.name]
        self._projects = store.db[PROJECTS.name]
        self._items = store.db[ITEMS.name]
        self._known_projects: set[str] = set()
        # the read-model look-ups of events in flight, at most this many at once: PyMongo 4.20's
        # async client was seen to stall with ~100 operations in flight on one client
        self._lookups = asyncio.Semaphore(READ_CONCURRENCY)

    # -- read model --------------------------------------------------------------------------

    def remember(self, event: Event) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
        """The read-model documents later notifications need about projects and items, and the
        project they write for the first time in this process, if any. The first document of a
        project or item stays, as in the ledger (a redelivery or a second signing of the same
        agreement carries the same facts), so storing them is a plain insert, never a read first."""
        documents: dict[str, list[dict[str, Any]]] = {}
        code: str | None = None
        if isinstance(event, (ServiceStarted, AgreementRejected)):
            project = event.project
            code = project.code
            self._project_document(documents, code, project.name, project.enterprise, project.recruiting_unit)
        elif isinstance(event, ItemRouted):
            item = event.item
            code = item.project_code
            self._project_document(documents, code, item.project_name, item.enterprise, item.recruiting_unit)
            documents.setdefault(ITEMS.name, []).append(
                {"_id": f"{item.project_code}/{item.item_code}", "project_code": item.project_code,
                 "item_code": item.item_code, "item_name": item.item_name, "responsible_unit": item.responsible_unit})
        return documents, (code if PROJECTS.name in documents else None)

    async def reassign(self, event: ItemRerouted) -> None:
        """The item's responsible unit in the read model becomes the new one (only from the old one,
        so a redelivered older re-routing does not undo a later one)."""
        async with self._lookups:
            await self._items.update_one({"_id": f"{event.project_code}/{event.item_code}",
                                          "responsible_unit": event.from_unit},
                                         {"$set": {"responsible_unit": event.to_unit}})

    async def apply(self, documents: dict[str, list[dict[str, Any]]]) -> None:
        for collection, batch in documents.items():
            await self.store.insert_new(collection, batch)

    def _project_document(self, documents: dict[str, list[dict[str, Any]]], code: str, name: str,
                          enterprise: Enterprise, recruiting_unit: str) -> None:
        if code in self._known_projects:  # stored once per process; a repeat would change nothing
            return
        documents.setdefault(PROJECTS.name, []).append(
            {"_id": code, "name": name, "enterprise": enterprise.model_dump(mode="json"), "recruiting_unit": recruiting_unit})

    def remembered(self, project_code: str) -> None:
        """Notes a project whose document is stored, so it is not written again."""
        self._known_projects.add(project_code)

    async def project(self, code: str) -> ProjectView | None:
        async with self._lookups:
            doc = await self._projects.find_one({"_id": code})
        if doc is None:
            return None
        return ProjectView(code=code, name=doc["name"], enterprise=Enterprise.model_validate(doc["enterprise"]),
                           recruiting_unit=doc["recruiting_unit"])

    async def item(self, project_code: str, item_code: str) -> ItemView | None:
        async with self._lookups:
            doc = await self._items.find_one({"_id": f"{project_code}/{item_code}"})
        if doc is None:
            return None
        return ItemView(project_code=project_code, item_code=item_code, item_name=doc["item_name"],
                        responsible_unit=doc["responsible_unit"])

    # -- notifications -----------------------------------------------------------------------

    async def add(self, documents: Sequence[dict[str, Any]]) -> int:
        """Stores new notifications; one already stored (same event, recipient, channel) is kept as is."""
        return await self.store.insert_new(NOTIFICATIONS.name, documents)

    async def claim_due(self, now: datetime, lease: timedelta) -> dict[str, Any] | None:
        """Takes one notification of an external channel (webhook, e-mail, SMS) due for an attempt,
        leasing it so no other worker does: a pending one first, else one whose earlier lease ran
        out (its worker died). Inbox notifications are never pending. One equality on ``status``
        per look-up, so every store serves it from an index."""
        for status in (PENDING, SENDING):
            claimed = await self._notifications.find_one_and_update(
                {"status": status, "next_attempt_at": {"$lte": now}},
                {"$set": {"status": SENDING, "next_attempt_at": now + lease, "updated_at": now}},
                sort=[("next_attempt_at", ASCENDING)], return_document=ReturnDocument.AFTER)
            if claimed is not None:
                return claimed
        return None

    async def delivered(self, notification_id: str, attempts: int, now: datetime) -> None:
        await self._notifications.update_one(
            {"_id": notification_id},
            {"$set": {"status": DELIVERED, "attempts": attempts, "delivered_at": now, "updated_at": now,
                      "next_attempt_at": None, "last_error": None}})

    async def attempt_failed(self, notification_id: str, attempts: int, error: str, now: datetime,
                             retry_at: datetime | None) -> None:
        """Records a failed attempt: pending again at ``retry_at``, or finally failed when it is None."""
        await self._notifications.update_one(
            {"_id": notification_id},
            {"$set": {"status": FAILED if retry_at is None else PENDING, "attempts": attempts,
                      "last_error": error, "updated_at": now, "next_attempt_at": retry_at}})

    async def find(self, *, project: str | None = None, recipient: str | None = None, status: str | None = None,
                   event_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Notifications, oldest first, by project, recipient (``unit:CODE``, ``enterprise:CREDIT_CODE``,
        ``role:NAME`` or the bare code, which is looked up under each kind), status and event.
        Every condition is an equality, so an index serves each look-up."""
        query: dict[str, Any] = {}
        if project:
            query["project_code"] = project
        if status:
            query["status"] = status
        if event_id:
            query["event_id"] = event_id
        if not recipient:
            recipients: list[str | None] = [None]
        elif ":" in recipient:
            recipients = [recipient]
        else:
            recipients = [f"{kind}:{recipient}" for kind in RECIPIENT_KINDS]
        order = [("created_at", ASCENDING), ("_id", ASCENDING)]
        found: list[dict[str, Any]] = []
        for key in recipients:
            narrowed = query if key is None else {**query, "recipient": key}
            found += [doc async for doc in self._notifications.find(narrowed).sort(order).limit(limit)]
        found.sort(key=lambda doc: (doc["created_at"], doc["_id"]))
        return found[:limit]

    # -- the inbox (read by the web console) -------------------------------------------------

    async def inbox(self, recipient: str, *, project: str | None = None, projects: Sequence[str] | None = None,
                    unread_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """The inbox notifications of one recipient key (``unit:CODE``, ``enterprise:CREDIT_CODE``,
        ``role:operators``), newest first; ``project`` narrows to one project, ``projects`` to any of
        several (a 招引单位's), ``unread_only`` to those not yet opened. Equalities on ``recipient``
        first, so an index serves it."""
        query: dict[str, Any] = {"recipient": recipient, "channel": INBOX}
        if unread_only:
            query["status"] = UNREAD
        if project:
            query["project_code"] = project
        elif projects is not None:
            query["project_code"] = {"$in": list(projects)}
        order = [("created_at", DESCENDING), ("_id", DESCENDING)]
        return [doc async for doc in self._notifications.find(query).sort(order).limit(max(0, limit))]

    async def notice(self, notification_id: str, recipient: str) -> dict[str, Any] | None:
        """One inbox notification, only if it is ``recipient``'s (else None, as if it did not exist)."""
        return await self._notifications.find_one({"_id": notification_id, "recipient": recipient, "channel": INBOX})

    async def mark_read(self, notification_id: str, recipient: str, now: datetime) -> bool:
        """Marks ``recipient``'s inbox notification read: unread -> delivered, with ``read_at`` (and
        ``delivered_at``) ``now``. True if it is the recipient's and now read (reading it again
        changes nothing, not even ``read_at``); False if there is no such notification of theirs."""
        changed = await self._notifications.update_one(
            {"_id": notification_id, "recipient": recipient, "channel": INBOX, "status": UNREAD},
            {"$set": {"status": DELIVERED, "read_at": now, "delivered_at": now, "updated_at": now}})
        if changed.modified_count == 1:
            return True
        return await self.notice(notification_id, recipient) is not None

    async def unread_count(self, recipient: str) -> int:
        """How many of ``recipient``'s inbox notifications are unread. Counted from a ``find`` of
        their ids: the embedded store answers a ``count`` command by scanning the whole collection
        (its explain shows a Seq Scan), a ``find`` from the index on ``recipient`` and ``status``."""
        query = {"recipient": recipient, "status": UNREAD, "channel": INBOX}
        return len([doc async for doc in self._notifications.find(query, {"_id": 1})])
