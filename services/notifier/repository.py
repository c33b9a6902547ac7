"""The notifier's data in the store: notifications, and the read model of projects and items.

The read model lets notifications about later events (a blocker, a hand-over) name the project,
the enterprise and the unit, which those events do not carry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common.messages import (
    AgreementRejected,
    Enterprise,
    Event,
    ItemRerouted,
    ItemRouted,
    ProjectAmended,
    ServiceStarted,
)
from services.common.storage import Collection, Store
from services.notifier.channels import INBOX
from services.notifier.compose import ItemView, ProjectView

log = logging.getLogger(__name__)

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
# One document per claim of a notification for an attempt: ``_id`` "<notification id>#<number>",
# numbers 1, 2, 3 ... per notification. Inserting it is the claim: an insert under a unique key has
# exactly one winner on every store, where a filtered update does not (the embedded store reads,
# then writes). Read by ``_id`` only. See docs/concurrency.md.
CLAIMS = Collection("notification_claims")
PROJECTS = Collection("notifier_projects")
ITEMS = Collection("notifier_items")
COLLECTIONS = (NOTIFICATIONS, CLAIMS, PROJECTS, ITEMS)
# due notifications looked at per claim look-up (another worker may take some of them first)
CLAIM_CANDIDATES = 16
# claims of one notification that may lie beyond its ``claim`` (won, then their worker died
# before recording it) and are stepped over once expired
MAX_CLAIM_STEPS = 100


def _aware(at: datetime) -> datetime:
    """A stored time as an aware one (a client without ``tz_aware`` reads naive UTC)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class NotifierRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._notifications = store.db[NOTIFICATIONS.name]
        self._claims = store.db[CLAIMS.name]
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

    async def amend(self, event: ProjectAmended) -> None:
        """The project's recruiting unit in the read model becomes the one of its latest amendment
        (only from the one it amended, so a redelivered older amendment does not undo a later one)."""
        if event.recruiting_unit == event.previous_recruiting_unit:
            return
        async with self._lookups:
            await self._projects.update_one({"_id": event.project_code,
                                             "recruiting_unit": event.previous_recruiting_unit},
                                            {"$set": {"recruiting_unit": event.recruiting_unit}})

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
        per look-up, so every store serves it from an index.

        The claim is an insert (see ``_claim``), never a filtered update; the notification returned
        carries ``claim``, its number, which ``delivered`` and ``attempt_failed`` are given back."""
        tried: list[str] = []
        for status in (PENDING, SENDING):
            while True:
                query: dict[str, Any] = {"status": status, "next_attempt_at": {"$lte": now}}
                if tried:
                    query["_id"] = {"$nin": tried}
                found = self._notifications.find(query, {"_id": 1, "claim": 1}).sort(
                    [("next_attempt_at", ASCENDING), ("_id", ASCENDING)]).limit(CLAIM_CANDIDATES)
                candidates = [doc async for doc in found]
                for candidate in candidates:
                    tried.append(str(candidate["_id"]))
                    claimed = await self._claim(str(candidate["_id"]), int(candidate.get("claim") or 0), now, lease)
                    if claimed is not None:
                        return claimed
                if len(candidates) < CLAIM_CANDIDATES:
                    break
        return None

    async def _claim(self, ident: str, last: int, now: datetime, lease: timedelta) -> dict[str, Any] | None:
        """Claims the notification ``ident`` for one attempt, or None if another worker holds it or
        it is no longer due. ``last`` is the number of its last claim as read with it.

        The claim is the insert of ``ident#N``, N the next number: of all the workers that read
        the same ``last``, one inserts it, the others get a duplicate key. A claim whose lease ran
        out without its number being recorded on the notification (its worker died between the two
        writes) is stepped over, to N+1, again by one worker only. The winner reads the
        notification again and sends only if it is still due and no later claim is recorded on it
        (a worker that read it long before, while an earlier attempt was under way, must not send
        a second time); then it records its claim, by ``_id``: no other worker writes it meanwhile,
        as none holds a claim."""
        number = last + 1
        for _ in range(MAX_CLAIM_STEPS):
            key = f"{ident}#{number}"
            try:
                await self._claims.insert_one({"_id": key, "notification": ident, "number": number,
                                               "claimed_at": now, "expires_at": now + lease})
                break
            except DuplicateKeyError:
                held = await self._claims.find_one({"_id": key})
                if held is None:  # given up meanwhile by a worker that found the notification not due
                    continue
                if _aware(held["expires_at"]) > now:
                    return None  # another worker's attempt is under way
                number += 1
        else:
            log.warning("notification %s: %d lapsed claims in a row; not claimed", ident, MAX_CLAIM_STEPS)
            return None
        current = await self._notifications.find_one({"_id": ident})
        due = (current is not None and current.get("status") in (PENDING, SENDING)
               and current.get("next_attempt_at") is not None and _aware(current["next_attempt_at"]) <= now
               and int(current.get("claim") or 0) < number)
        if not due:
            await self._claims.delete_one({"_id": f"{ident}#{number}"})
            return None
        assert current is not None
        update = {"status": SENDING, "next_attempt_at": now + lease, "updated_at": now, "claim": number}
        await self._notifications.update_one({"_id": ident}, {"$set": update})
        return {**current, **update}

    def _held(self, notification_id: str, claim: int | None) -> dict[str, Any]:
        """The filter of an attempt's outcome: the notification, while the attempt's claim is its
        last (an attempt that outlived its lease, taken over meanwhile, records nothing on MongoDB;
        on the embedded store the filter narrows the window to the moment of the write)."""
        return {"_id": notification_id} if claim is None else {"_id": notification_id, "claim": claim}

    async def delivered(self, notification_id: str, attempts: int, now: datetime, claim: int | None = None) -> None:
        await self._notifications.update_one(
            self._held(notification_id, claim),
            {"$set": {"status": DELIVERED, "attempts": attempts, "delivered_at": now, "updated_at": now,
                      "next_attempt_at": None, "last_error": None}})

    async def attempt_failed(self, notification_id: str, attempts: int, error: str, now: datetime,
                             retry_at: datetime | None, claim: int | None = None) -> None:
        """Records a failed attempt: pending again at ``retry_at``, or finally failed when it is None."""
        await self._notifications.update_one(
            self._held(notification_id, claim),
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

    @staticmethod
    def _inbox_query(recipient: str, project: str | None, projects: Sequence[str] | None, unread_only: bool,
                     event_type: str | None) -> dict[str, Any]:
        query: dict[str, Any] = {"recipient": recipient, "channel": INBOX}
        if unread_only:
            query["status"] = UNREAD
        if event_type:
            query["event_type"] = event_type
        if project:
            query["project_code"] = project
        if projects is not None:  # with ``project`` too: that one if it is one of these, else none at all
            query["project_code"] = (project if project in projects else {"$in": []}) if project \
                else {"$in": list(projects)}
        return query

    async def inbox(self, recipient: str, *, project: str | None = None, projects: Sequence[str] | None = None,
                    unread_only: bool = False, event_type: str | None = None, limit: int = 100,
                    skip: int = 0) -> list[dict[str, Any]]:
        """The inbox notifications of one recipient key (``unit:CODE``, ``enterprise:CREDIT_CODE``,
        ``role:operators``), newest first; ``project`` narrows to one project, ``projects`` to any of
        several (a 招引单位's), ``unread_only`` to those not yet opened, ``event_type`` to one kind
        (``task_order.issued``); ``skip`` pages on. Equalities on ``recipient`` first, so an index serves it."""
        query = self._inbox_query(recipient, project, projects, unread_only, event_type)
        order = [("created_at", DESCENDING), ("_id", DESCENDING)]
        found = self._notifications.find(query).sort(order).skip(max(0, skip)).limit(max(0, limit))
        return [doc async for doc in found]

    async def mark_all_read(self, recipient: str, now: datetime, *, ids: Sequence[str] | None = None,
                            project: str | None = None, projects: Sequence[str] | None = None,
                            event_type: str | None = None) -> int:
        """Marks ``recipient``'s unread inbox notifications read at once: those of ``ids`` (only
        the recipient's), or every one the filters select (as :meth:`inbox` reads them). Returns how
        many were unread and are now read."""
        query = self._inbox_query(recipient, project, projects, True, event_type)
        if ids is not None:
            if not ids:
                return 0
            query["_id"] = {"$in": list(ids)}
        changed = await self._notifications.update_many(
            query, {"$set": {"status": DELIVERED, "read_at": now, "delivered_at": now, "updated_at": now}})
        return int(changed.modified_count)

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
