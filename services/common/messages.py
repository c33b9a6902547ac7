"""Every message on the bus: frozen Pydantic models, ``extra="forbid"``.

Events are past tense and carry ``type`` (also their routing key on ``zeroerrand.events``),
``event_id`` (unique, deterministic where a redelivery must produce the same id), when the
thing happened (``occurred_at``) and when it was recorded (``recorded_at``). Downstream systems
drop duplicates by ``event_id`` (events) and by AMQP ``message_id`` (routed items).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.domain import (
    Decision,
    Fee,
    Request,
    ServiceMode,
    Stage,
    Unroutable,
)

# Fixed namespace: ids derived from it are the same on every machine and every redelivery.
ID_NAMESPACE = uuid.UUID("6f1c3b0e-6a53-4c1e-9d2a-2f0c8a7e5b10")


def stable_id(*parts: str) -> str:
    """A deterministic id for the same agreement, item and purpose."""
    return str(uuid.uuid5(ID_NAMESPACE, "/".join(parts)))


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


FactValue = bool | int | float | str


class Contact(Message):
    name: str = Field(min_length=1)
    phone: str | None = None
    email: str | None = None
    webhook: str | None = None


class Enterprise(Message):
    """The enterprise the service is for (服务对象)."""

    name: str = Field(min_length=1)
    credit_code: str = Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$",
                             description="统一社会信用代码 (18 characters)")
    contact: Contact


class Project(Message):
    """一项一码: the project, its enterprise, its recruiting unit and the facts rules may test."""

    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{2,63}$")
    name: str = Field(min_length=1)
    enterprise: Enterprise
    recruiting_unit: str = Field(min_length=1, description="unit code of the 项目招引单位")
    facts: dict[str, FactValue] = Field(default_factory=dict)


class Eligibility(Message):
    """Policy 二(一) and 三(一): who may be served."""

    zero_errand_clause: bool = Field(description="the agreement contains the zero-errand clause")
    committee_decision: str | None = Field(default=None, description="管委会 decision that includes the project")
    enterprise_consent: bool = Field(description="企业自愿: the enterprise agreed to the service")


class PlannedItem(Message):
    """One line of the approval plan (审批策划)."""

    item: str = Field(min_length=1, description="catalog item code")
    request: Request = Request.HANDLE
    note: str | None = None


class Event(Message):
    type: str
    event_id: str
    occurred_at: datetime
    recorded_at: datetime


class AgreementSigned(Event):
    """An investment agreement was signed: start the service for its plan."""

    type: Literal["agreement.signed"] = "agreement.signed"
    agreement_id: str = Field(min_length=1)
    signed_on: date
    project: Project
    eligibility: Eligibility
    plan: tuple[PlannedItem, ...] = Field(min_length=1)


class AgreementRejected(Event):
    """The agreement is not eligible for the service; nothing was routed."""

    type: Literal["agreement.rejected"] = "agreement.rejected"
    agreement_id: str
    project: Project
    reasons: tuple[str, ...]


class ServiceStarted(Event):
    """The service started: the ledger line (年度综合评价台账) for 经济发展招商服务局."""

    type: Literal["service.started"] = "service.started"
    agreement_id: str
    signed_on: date
    project: Project
    ledger_owner: str
    items_planned: int
    items_routed: int
    items_unroutable: int
    rules_version: str


class TaskOrder(Message):
    """专业跑腿服务任务单 issued by 经济发展招商服务局 to 政联公司."""

    number: str
    issued_by: str
    assigned_to: str


class RoutedItem(Message):
    """An approval item placed on ``zeroerrand.items`` with routing key ``{mode}.{unit}``."""

    item_id: str = Field(description="stable id of this planned item; also the AMQP message_id")
    agreement_id: str
    project_code: str
    project_name: str
    enterprise: Enterprise
    recruiting_unit: str
    item_code: str
    item_name: str
    stage: Stage
    stage_name: str
    request: Request
    mode: ServiceMode
    mode_name: str
    responsible_unit: str
    responsible_unit_name: str
    approving_authority: str
    approving_authority_name: str
    materials: tuple[str, ...] = Field(description="一次性告知: everything the enterprise supplies")
    time_limit_days: int = Field(description="statutory limit in working days")
    fees: tuple[Fee, ...]
    fee_note: str
    task_order: TaskOrder | None
    decision: Decision


class ItemRouted(Event):
    type: Literal["item.routed"] = "item.routed"
    item: RoutedItem


class ItemUnroutable(Event):
    """No rule could place the item; it is parked on ``zeroerrand.items.unroutable``."""

    type: Literal["item.unroutable"] = "item.unroutable"
    item_id: str
    agreement_id: str
    project_code: str
    project_name: str
    recruiting_unit: str
    item_code: str
    item_name: str | None
    request: Request
    unroutable: Unroutable


class RulesActivated(Event):
    type: Literal["rules.activated"] = "rules.activated"
    version: str
    previous_version: str | None
    directory: str
    rules: int
    items: int


class RulesRejected(Event):
    type: Literal["rules.rejected"] = "rules.rejected"
    attempted_version: str | None
    active_version: str | None
    directory: str
    problems: tuple[str, ...]


# -- progress events, reported by the units' systems (or ``zeroerrand item ...``) ---------------


class ItemEvent(Event):
    """An event about one routed item of one project, reported by ``reported_by`` (a unit code)."""

    project_code: str
    item_code: str
    reported_by: str


class ItemAccepted(ItemEvent):
    """The responsible unit accepted (受理) the item."""

    type: Literal["item.accepted"] = "item.accepted"
    note: str | None = None


class ItemProgress(ItemEvent):
    type: Literal["item.progress"] = "item.progress"
    note: str = Field(min_length=1)


class ItemUnblocked(ItemEvent):
    type: Literal["item.unblocked"] = "item.unblocked"
    note: str | None = None


class ItemSuspended(ItemEvent):
    """Waiting for the enterprise (补正材料): the time-limit clock stops."""

    type: Literal["item.suspended"] = "item.suspended"
    reason: str = Field(min_length=1)


class ItemResumed(ItemEvent):
    type: Literal["item.resumed"] = "item.resumed"
    note: str | None = None


class ItemCompleted(ItemEvent):
    """The approval is done (办结); the results still have to be handed over."""

    type: Literal["item.completed"] = "item.completed"
    note: str | None = None


class ItemBlocked(ItemEvent):
    """A 堵点/卡点: the item cannot move until ``resolver`` acts."""

    type: Literal["item.blocked"] = "item.blocked"
    reason: str = Field(min_length=1)
    resolver: str = Field(description="unit code of whoever must resolve the blocker")


class ItemOverdue(ItemEvent):
    """The item's time limit is near or past (one event per level)."""

    type: Literal["item.overdue"] = "item.overdue"
    level: Literal["warning", "yellow", "red"]
    due_on: date
    working_days_used: int
    time_limit_days: int


class ItemDelivered(ItemEvent):
    """The results were handed to the enterprise, completely and at once (一次性完整移交)."""

    type: Literal["item.delivered"] = "item.delivered"
    results: tuple[str, ...] = Field(min_length=1, description="the approval results handed over")
    note: str | None = None


class ProjectDelivered(Event):
    """Every item of the project has been delivered."""

    type: Literal["project.delivered"] = "project.delivered"
    project_code: str
    items_delivered: int


class Satisfaction(StrEnum):
    """The 好差评 five levels."""

    VERY_SATISFIED = "非常满意"
    SATISFIED = "满意"
    FAIRLY_SATISFIED = "基本满意"
    DISSATISFIED = "不满意"
    VERY_DISSATISFIED = "非常不满意"

    @property
    def is_bad(self) -> bool:
        """差评: 不满意 or worse, which opens a follow-up the provider must close."""
        return self in (Satisfaction.DISSATISFIED, Satisfaction.VERY_DISSATISFIED)


class RatingSubmitted(Event):
    """A service object or recruiting unit rates a provider's service on a project."""

    type: Literal["rating.submitted"] = "rating.submitted"
    project_code: str
    provider: str = Field(description="unit code of the rated provider")
    rater: Literal["enterprise", "recruiting_unit"]
    level: Satisfaction
    comment: str | None = None


class RatingRectified(Event):
    """The provider closes the follow-up of a 差评 with its rectification note."""

    type: Literal["rating.rectified"] = "rating.rectified"
    rating_id: str = Field(description="event_id of the rating.submitted")
    provider: str
    note: str = Field(min_length=1)


AnyEvent = Annotated[
    AgreementSigned | AgreementRejected | ServiceStarted | ItemRouted | ItemUnroutable
    | RulesActivated | RulesRejected | ItemAccepted | ItemProgress | ItemBlocked | ItemUnblocked | ItemSuspended
    | ItemResumed | ItemCompleted | ItemOverdue | ItemDelivered | ProjectDelivered | RatingSubmitted | RatingRectified,
    Field(discriminator="type"),
]
