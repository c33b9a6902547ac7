"""The evaluation service's handler and its periodic overdue sweep."""

from __future__ import annotations

import logging
from datetime import date, datetime

from services.common.bus import Publisher, event_out
from services.common.messages import (
    Event,
    ItemDelivered,
    ItemEvent,
    ItemOverdue,
    ItemRouted,
    ProjectDelivered,
    RatingRectified,
    RatingSubmitted,
    ServiceStarted,
    stable_id,
)
from services.evaluation.ledger import overdue_levels
from services.evaluation.repository import LedgerRepository, item_record
from services.evaluation.working_days import WorkingCalendar

log = logging.getLogger(__name__)


async def handle_event(event: Event, ledger: LedgerRepository, publisher: Publisher, now: datetime) -> str:
    """Records one event in the ledger; returns what happened (for logs and tests)."""
    if isinstance(event, ServiceStarted):
        await ledger.record_started(event, now)
        return "recorded"
    if isinstance(event, ItemRouted):
        await ledger.record_routed(event, now)
        return "recorded"
    if isinstance(event, ItemOverdue):
        return "ignored"  # this service's own announcement
    if isinstance(event, ItemEvent):
        outcome = await ledger.apply_progress(event, now)
        if isinstance(event, ItemDelivered) and outcome != "parked":
            await close_if_delivered(event.project_code, ledger, publisher, now)
        return outcome
    if isinstance(event, RatingSubmitted):
        await ledger.record_rating(event, now)
        return "recorded"
    if isinstance(event, RatingRectified):
        return await ledger.rectify(event, now)
    return "ignored"


async def close_if_delivered(project_code: str, ledger: LedgerRepository, publisher: Publisher, now: datetime) -> None:
    """Emits ``project.delivered`` once every item is delivered (announced first, then recorded:
    a crash in between announces it again with the same id, which subscribers drop)."""
    items = await ledger.project_to_close(project_code)
    if items is None:
        return
    event = ProjectDelivered(event_id=stable_id(project_code, "project.delivered"), occurred_at=now, recorded_at=now,
                             project_code=project_code, items_delivered=items)
    await publisher.publish_all([event_out(event)])
    await ledger.close_project(project_code, now)


async def sweep_overdue(ledger: LedgerRepository, publisher: Publisher, calendar: WorkingCalendar, today: date,
                        now: datetime) -> list[ItemOverdue]:
    """Announces each overdue level an open item has reached, once per level."""
    announced = []
    for doc in await ledger.open_items():
        item = item_record(doc)
        routed_on, pauses, limit = item.routed_on, item.pauses, item.time_limit_days
        used = calendar.working_days_used(routed_on, today, pauses)
        for level in overdue_levels(used, limit):
            if level in doc["overdue_sent"]:
                continue
            event = ItemOverdue(
                event_id=stable_id(doc["_id"], "item.overdue", level), occurred_at=now, recorded_at=now,
                project_code=doc["project_code"], item_code=doc["item_code"], reported_by="econ_dev_bureau",
                level=level,
                due_on=calendar.due_date(routed_on, limit, pauses, today), working_days_used=used,
                time_limit_days=limit)
            await publisher.publish_all([event_out(event)])
            await ledger.mark_overdue(doc["_id"], level)
            announced.append(event)
    return announced
