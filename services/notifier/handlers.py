"""The notifier's handler: an event in, its notifications stored (then the event is acked)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.common.messages import (
    AgreementRejected,
    Event,
    ItemEvent,
    ItemRerouted,
    ItemRouted,
    ProjectAmended,
    RequestRefused,
    ServiceStarted,
)
from services.common.operations import NOTIFICATIONS_FINAL, NOTIFICATIONS_STORED
from services.notifier.compose import WITH_PROJECT, Composer, ItemView, MissingContext, ProjectView
from services.notifier.group_commit import GroupCommit
from services.notifier.repository import NotifierRepository


async def handle_event(event: Event, repository: NotifierRepository, composer: Composer, commit: GroupCommit,
                       now: datetime | None = None) -> list[dict[str, Any]]:
    """Stores the notifications the plan asks for (with other events' writes); returns them once
    stored (those ``pending`` wait to be sent: a webhook, an e-mail, an SMS)."""
    read_model, new_project = repository.remember(event)
    if isinstance(event, ItemRerouted):  # later notices about the item go to its new unit
        await repository.reassign(event)
    if isinstance(event, ProjectAmended):  # later notices about the project go to its recruiting unit now
        await repository.amend(event)
    project, item = await views_of(event, repository)
    documents = composer.compose(event, project, item, now or datetime.now(UTC))
    await commit.submit(read_model, documents)
    if new_project is not None:
        repository.remembered(new_project)
    for document in documents:
        NOTIFICATIONS_STORED.labels(channel=document["channel"]).inc()
        if document["status"] == "failed":  # a channel with no server configured: failed as stored
            NOTIFICATIONS_FINAL.labels(channel=document["channel"], status="failed").inc()
    return documents


async def views_of(event: Event, repository: NotifierRepository) -> tuple[ProjectView | None, ItemView | None]:
    """The project and item an event's notifications speak of: from the event itself when it carries
    them, else from the notifier's read models (``MissingContext`` if they are not there yet)."""
    project: ProjectView | None = None
    item: ItemView | None = None
    if isinstance(event, (ServiceStarted, AgreementRejected)):
        project = ProjectView(event.project.code, event.project.name, event.project.enterprise,
                              event.project.recruiting_unit)
    elif isinstance(event, ItemRouted):
        routed = event.item
        project = ProjectView(routed.project_code, routed.project_name, routed.enterprise, routed.recruiting_unit)
        item = ItemView(routed.project_code, routed.item_code, routed.item_name, routed.responsible_unit)
    elif isinstance(event, ItemRerouted):  # the event names the new unit; the old one is a role of its own
        project = await repository.project(event.project_code)
        if project is None:
            raise MissingContext(f"project {event.project_code} unknown to the notifier")
        item = ItemView(event.project_code, event.item_code, event.item_name, event.to_unit)
    elif isinstance(event, RequestRefused):  # about a project the ledger may not know either
        project = await repository.project(event.project_code) if event.project_code else None
    elif isinstance(event, WITH_PROJECT) and event.project_code is not None:
        project = await repository.project(event.project_code)
        if project is None:
            raise MissingContext(f"project {event.project_code} unknown to the notifier")
        if isinstance(event, ItemEvent):
            item = await repository.item(event.project_code, event.item_code)
            if item is None:
                raise MissingContext(f"item {event.project_code}/{event.item_code} unknown to the notifier")
    return project, item
