"""The ledger (台账) in the store: projects, items and their history, parked events, ratings.

Every write is idempotent: an item keeps the ids of the events applied to it, and an update only
applies if the item is still at the version it was read at (two events for one item never
overwrite each other; the loser reads again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import ASCENDING, IndexModel

from services.common.domain import ServiceMode, Stage
from services.common.messages import (
    Event,
    ItemBlocked,
    ItemCompleted,
    ItemDelivered,
    ItemEvent,
    ItemResumed,
    ItemRouted,
    ItemSuspended,
    ItemUnblocked,
    RatingRectified,
    RatingSubmitted,
    Satisfaction,
    ServiceStarted,
)
from services.common.storage import Collection, Store
from services.evaluation.ledger import FINISHED, InvalidTransition, ItemState, next_state
from services.evaluation.scoring import ItemRecord, RatingRecord

LOCAL = ZoneInfo("Asia/Shanghai")
LATE_AFTER = timedelta(days=1)  # a record made more than a day after the fact is flagged as back-filled

PROJECTS = Collection("ledger_projects")
ITEMS = Collection("ledger_items", (IndexModel([("project_code", ASCENDING)]), IndexModel([("state", ASCENDING)])))
PARKED = Collection("ledger_parked", (IndexModel([("recorded_at", ASCENDING)]),))
RATINGS = Collection("ratings", (IndexModel([("provider", ASCENDING)]), IndexModel([("project_code", ASCENDING)])))
COLLECTIONS = (PROJECTS, ITEMS, PARKED, RATINGS)


class UnknownSubject(LookupError):
    """The event names a project, item or rating the ledger has not recorded (yet)."""


def local_day(moment: datetime) -> date:
    return moment.astimezone(LOCAL).date()


def item_id(project_code: str, item_code: str) -> str:
    return f"{project_code}/{item_code}"


class LedgerRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.projects = store.db[PROJECTS.name]
        self.items = store.db[ITEMS.name]
        self.parked = store.db[PARKED.name]
        self.ratings = store.db[RATINGS.name]

    async def record_started(self, event: ServiceStarted, now: datetime) -> None:
        project = event.project
        await self.projects.update_one({"_id": project.code}, {"$setOnInsert": {
            "agreement_id": event.agreement_id, "name": project.name, "enterprise": project.enterprise.name,
            "recruiting_unit": project.recruiting_unit, "signed_on": event.signed_on.isoformat(),
            "ledger_owner": event.ledger_owner, "items_planned": event.items_planned,
            "items_routed": event.items_routed, "items_unroutable": event.items_unroutable,
            "rules_version": event.rules_version, "started_at": event.occurred_at, "recorded_at": now,
            "delivered_at": None}}, upsert=True)

    async def record_routed(self, event: ItemRouted, now: datetime) -> None:
        item = event.item
        await self.items.update_one({"_id": item_id(item.project_code, item.item_code)}, {"$setOnInsert": {
            "project_code": item.project_code, "item_code": item.item_code, "item_name": item.item_name,
            "stage": item.stage.value, "mode": item.mode.value, "evaluated_as": item.decision.evaluated_as.value,
            "evaluator": item.decision.evaluator, "responsible_unit": item.responsible_unit,
            "approving_authority": item.approving_authority, "time_limit_days": item.time_limit_days,
            "routed_on": local_day(event.occurred_at).isoformat(), "state": ItemState.ROUTED.value, "version": 0,
            "applied": [event.event_id], "blockers": [], "pauses": [], "overdue_sent": [], "finished_on": None,
            "delivered_on": None, "results": [],
            "history": [{"event_id": event.event_id, "type": event.type, "to": ItemState.ROUTED.value,
                         "occurred_at": event.occurred_at, "recorded_at": now, "late": False}]}}, upsert=True)

    async def apply_progress(self, event: ItemEvent, now: datetime) -> str:
        """Applies a progress event: ``applied``, ``duplicate`` or ``parked`` (invalid, with the reason)."""
        ident = item_id(event.project_code, event.item_code)
        for _ in range(10):
            doc = await self.items.find_one({"_id": ident})
            if doc is None:
                raise UnknownSubject(f"item {ident} is not in the ledger")
            if event.event_id in doc["applied"]:
                return "duplicate"
            try:
                target = next_state(ItemState(doc["state"]), event.type)
            except InvalidTransition as exc:
                await self.park(event, str(exc), now)
                return "parked"
            changes = self._changes(doc, event, target, now)
            entry = {"event_id": event.event_id, "type": event.type, "from": doc["state"], "to": target.value,
                     "by": event.reported_by, "occurred_at": event.occurred_at, "recorded_at": now,
                     "late": now - event.occurred_at > LATE_AFTER}
            result = await self.items.update_one(
                {"_id": ident, "version": doc["version"]},
                {"$set": {"state": target.value, **changes}, "$inc": {"version": 1},
                 "$push": {"applied": event.event_id, "history": entry}})
            if result.modified_count == 1:
                return "applied"
        raise RuntimeError(f"item {ident} kept changing under event {event.event_id}")

    @staticmethod
    def _changes(doc: dict[str, Any], event: ItemEvent, target: ItemState, now: datetime) -> dict[str, Any]:
        day = local_day(event.occurred_at).isoformat()
        if isinstance(event, ItemBlocked):
            return {"blockers": [*doc["blockers"], {"event_id": event.event_id, "reason": event.reason,
                                                    "resolver": event.resolver, "reported_by": event.reported_by,
                                                    "opened_at": event.occurred_at, "closed_at": None}]}
        if isinstance(event, ItemUnblocked):
            blockers = [dict(b) for b in doc["blockers"]]
            for blocker in blockers:
                if blocker["closed_at"] is None:
                    blocker["closed_at"] = event.occurred_at
            return {"blockers": blockers}
        if isinstance(event, ItemSuspended):
            return {"pauses": [*doc["pauses"], {"from": day, "to": None, "reason": event.reason}]}
        if isinstance(event, ItemResumed):
            pauses = [dict(p) for p in doc["pauses"]]
            if pauses and pauses[-1]["to"] is None:
                pauses[-1]["to"] = day
            return {"pauses": pauses}
        if isinstance(event, ItemCompleted):
            return {"finished_on": day}
        if isinstance(event, ItemDelivered):
            return {"delivered_on": day, "results": list(event.results)}
        return {}

    async def park(self, event: Event, reason: str, now: datetime) -> None:
        await self.parked.update_one({"_id": event.event_id}, {"$setOnInsert": {
            "event_type": event.type, "project_code": getattr(event, "project_code", None),
            "item_code": getattr(event, "item_code", None), "reason": reason,
            "event": event.model_dump(mode="json"), "recorded_at": now}}, upsert=True)

    async def project_to_close(self, project_code: str) -> int | None:
        """The number of items if every item of the project is delivered and it is not closed yet."""
        project = await self.projects.find_one({"_id": project_code})
        if project is None or project.get("delivered_at") is not None:
            return None
        items = [d async for d in self.items.find({"project_code": project_code}, {"state": 1})]
        if not items or any(d["state"] != ItemState.DELIVERED.value for d in items):
            return None
        return len(items)

    async def close_project(self, project_code: str, now: datetime) -> None:
        await self.projects.update_one({"_id": project_code, "delivered_at": None}, {"$set": {"delivered_at": now}})

    # -- ratings -----------------------------------------------------------------------------

    async def record_rating(self, event: RatingSubmitted, now: datetime) -> None:
        await self.ratings.update_one({"_id": event.event_id}, {"$setOnInsert": {
            "project_code": event.project_code, "provider": event.provider, "rater": event.rater,
            "level": event.level.value, "comment": event.comment, "bad": event.level.is_bad,
            "followup": "open" if event.level.is_bad else None, "rectified_at": None, "rectification": None,
            "year": local_day(event.occurred_at).year, "occurred_at": event.occurred_at, "recorded_at": now}},
            upsert=True)

    async def rectify(self, event: RatingRectified, now: datetime) -> str:
        rating = await self.ratings.find_one({"_id": event.rating_id})
        if rating is None:
            raise UnknownSubject(f"rating {event.rating_id} is not recorded")
        if rating["provider"] != event.provider:
            await self.park(event, f"评价 {event.rating_id} 针对的是 {rating['provider']}，不是 {event.provider}", now)
            return "parked"
        if not rating["bad"]:
            await self.park(event, f"评价 {event.rating_id} 为“{rating['level']}”，不是差评，无需整改", now)
            return "parked"
        await self.ratings.update_one({"_id": event.rating_id, "rectified_at": None}, {"$set": {
            "followup": "closed", "rectified_at": event.occurred_at, "rectification": event.note}})
        return "applied"

    # -- queries -----------------------------------------------------------------------------

    async def project(self, code: str) -> dict[str, Any] | None:
        return await self.projects.find_one({"_id": code})

    async def project_items(self, code: str) -> list[dict[str, Any]]:
        return [d async for d in self.items.find({"project_code": code}).sort([("_id", ASCENDING)])]

    async def open_items(self) -> list[dict[str, Any]]:
        finished = [s.value for s in FINISHED]
        return [d async for d in self.items.find({"state": {"$nin": finished}})]

    async def mark_overdue(self, ident: str, level: str) -> None:
        await self.items.update_one({"_id": ident, "overdue_sent": {"$ne": level}}, {"$push": {"overdue_sent": level}})

    async def all_items(self) -> list[dict[str, Any]]:
        return [d async for d in self.items.find({})]

    async def all_ratings(self) -> list[dict[str, Any]]:
        return [d async for d in self.ratings.find({})]

    async def parked_events(self, limit: int = 200) -> Sequence[dict[str, Any]]:
        return [d async for d in self.parked.find({}).sort([("recorded_at", ASCENDING)]).limit(limit)]


def _day(text: object) -> date | None:
    return date.fromisoformat(str(text)) if text else None


def item_record(doc: dict[str, Any]) -> ItemRecord:
    """A ledger item document as the record the sweep, the ledger view and scoring work on."""
    return ItemRecord(
        project_code=str(doc["project_code"]), item_code=str(doc["item_code"]), stage=Stage(doc["stage"]),
        provider=str(doc["responsible_unit"]), mode=ServiceMode(doc["evaluated_as"]),
        routed_on=date.fromisoformat(str(doc["routed_on"])), time_limit_days=int(doc["time_limit_days"]),
        finished_on=_day(doc["finished_on"]),
        pauses=tuple((date.fromisoformat(p["from"]), _day(p["to"])) for p in doc["pauses"]),
        blockers=tuple((str(b["reason"]), b["closed_at"] is None) for b in doc["blockers"]))


def rating_record(doc: dict[str, Any]) -> RatingRecord:
    return RatingRecord(project_code=str(doc["project_code"]), provider=str(doc["provider"]),
                        level=Satisfaction(str(doc["level"])), rectified=bool(doc.get("rectified_at")))
