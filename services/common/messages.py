"""Every message on the bus: frozen Pydantic models, ``extra="forbid"``.

Events are past tense and carry ``type`` (also their routing key on ``zeroerrand.events``),
``event_id`` (unique, deterministic where a redelivery must produce the same id), when the
thing happened (``occurred_at``) and when it was recorded (``recorded_at``). Downstream systems
drop duplicates by ``event_id`` (events) and by AMQP ``message_id`` (routed items).

A routed item is published once, as a ``RoutedItem`` on ``zeroerrand.items``; the exchange binding
to ``zeroerrand.events`` brings that same message to the events' consumers, which read it as the
``ItemRouted`` event :func:`item_routed` derives from it (nobody publishes ``item.routed`` itself).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

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
    requires: tuple[str, ...] = Field(default=(), description="planned item codes whose results this item waits for")
    task_order_required: bool = Field(description="专业跑腿: 经济发展招商服务局 issues a task order when the item is ready")
    decision: Decision


ROUTED_ITEM_TYPE = "approval.item"
"""The AMQP ``type`` of a ``RoutedItem`` message (on ``zeroerrand.items``, and by the exchange
binding on ``zeroerrand.events``)."""


class ItemRouted(Event):
    """An item was routed: what the notifier and the ledger make of a ``RoutedItem`` message."""

    type: Literal["item.routed"] = "item.routed"
    item: RoutedItem


def item_routed(item: RoutedItem) -> ItemRouted:
    """The ``item.routed`` event a routed item stands for, the same from every copy of the message:
    its id derives from the item id, its times are the decision's (a redelivered item, or the
    item routed again from a redelivered agreement, has the same event id)."""
    at = item.decision.decided_at
    return ItemRouted(event_id=stable_id(item.item_id, "item.routed"), occurred_at=at, recorded_at=at, item=item)


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


# -- requests (commands) to the ledger, from the units' systems, the enterprise and operators ---------


class Command(Message):
    """A request to the evaluation service, which checks it against the ledger (its state, 首问负责,
    who served whom, the year) and only then publishes the past-tense event; a refused request is
    parked with its reason and ``request.refused`` tells the sender.

    ``request_id`` is the sender's idempotency key: the same request sent again changes nothing,
    and an id once used cannot be used for another request. ``requested_by`` is the unit code of the
    sender (for an enterprise's 测评, its 统一社会信用代码); ``operator`` names a person who acted for
    that unit (recorded as such in the ledger). Times carry their offset.
    """

    type: str
    request_id: str = Field(min_length=1, max_length=200)
    requested_at: AwareDatetime
    occurred_at: AwareDatetime = Field(description="when it happened (a back-filled report says so)")
    requested_by: str = Field(min_length=1, max_length=64)
    operator: str | None = Field(default=None, max_length=100)

    @field_validator("requested_at", "occurred_at")
    @classmethod
    def _plausible(cls, moment: datetime) -> datetime:
        if not 2000 <= moment.year <= 2100:
            raise ValueError("时间须在 2000 至 2100 年之间")
        return moment


Code = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]


class ItemCommand(Command):
    project_code: Code
    item_code: Code
    request: Request | None = Field(default=None, description="which plan line, when an item has both a consult "
                                                               "and a handle line")


class ContactEnterprise(ItemCommand):
    """首问负责: the responsible unit has contacted the enterprise (stops the service clock)."""

    type: Literal["item.contact"] = "item.contact"
    note: Text | None = None


class AcceptItem(ItemCommand):
    """受理: starts the statutory clock (《行政许可法》第四十二条)."""

    type: Literal["item.accept"] = "item.accept"
    note: Text | None = None


class ReportProgress(ItemCommand):
    type: Literal["item.report_progress"] = "item.report_progress"
    note: Text


class ReportBlocker(ItemCommand):
    """A 堵点/卡点 that ``resolver`` (a unit code) must resolve."""

    type: Literal["item.report_blocker"] = "item.report_blocker"
    reason: Text
    resolver: Code


class ResolveBlocker(ItemCommand):
    type: Literal["item.resolve_blocker"] = "item.resolve_blocker"
    note: Text | None = None


class SuspendItem(ItemCommand):
    """Waiting for the enterprise (补正材料, or the project paused): the running clock stops."""

    type: Literal["item.suspend"] = "item.suspend"
    reason: Text


class ResumeItem(ItemCommand):
    type: Literal["item.resume"] = "item.resume"
    note: Text | None = None


class CompleteItem(ItemCommand):
    type: Literal["item.complete"] = "item.complete"
    note: Text | None = None


class DeliverResults(ItemCommand):
    """一次性完整移交: hand every result to the enterprise at once."""

    type: Literal["item.deliver"] = "item.deliver"
    results: tuple[Annotated[str, Field(min_length=1, max_length=500)], ...] = Field(min_length=1, max_length=50)
    note: Text | None = None


class IssueTaskOrder(ItemCommand):
    """经济发展招商服务局 issues the 专业跑腿 task order for a ready errand item (policy 四(三))."""

    type: Literal["task_order.issue"] = "task_order.issue"
    note: Text | None = None


class AcceptTaskOrder(ItemCommand):
    """政联公司 accepts the task order and names its 服务专员."""

    type: Literal["task_order.accept"] = "task_order.accept"
    specialist_name: str = Field(min_length=1, max_length=100)
    specialist_phone: str = Field(min_length=1, max_length=50)


class SubmitAssessment(Command):
    """综合测评 (policy 五(六)): a service object or recruiting unit answers the questionnaire of
    ``evaluation.yaml`` for one provider of one project; ``scores`` maps indicator code to points."""

    type: Literal["assessment.submit"] = "assessment.submit"
    project_code: Code
    provider: Code
    rater: Literal["enterprise", "recruiting_unit"]
    year: int = Field(ge=2000, le=2100)
    scores: dict[Code, float] = Field(max_length=50)
    comment: str | None = Field(default=None, max_length=2000, description="评价意见")


class RectifyAssessment(Command):
    """The provider closes the rectification a 差评 opened."""

    type: Literal["assessment.rectify"] = "assessment.rectify"
    assessment_id: str = Field(min_length=1, max_length=200)
    note: Text


AnyCommand = Annotated[
    ContactEnterprise | AcceptItem | ReportProgress | ReportBlocker | ResolveBlocker | SuspendItem | ResumeItem
    | CompleteItem | DeliverResults | IssueTaskOrder | AcceptTaskOrder | SubmitAssessment | RectifyAssessment,
    Field(discriminator="type"),
]


# -- events the ledger publishes -----------------------------------------------------------------


class ItemEvent(Event):
    """An event about one item of one project, as the ledger recorded it.

    ``reported_by`` is the unit whose request it was (``operator``: a person acting for it);
    ``request_id`` the request it answers (none for what the ledger itself decides).
    """

    project_code: str
    item_code: str
    request: Request = Request.HANDLE
    reported_by: str
    operator: str | None = None
    request_id: str | None = None


class ItemReady(ItemEvent):
    """Every prerequisite is delivered (or not planned): the item can be done; the service clock starts."""

    type: Literal["item.ready"] = "item.ready"
    waited_for: tuple[str, ...] = ()
    task_order_required: bool = False


class ItemContacted(ItemEvent):
    """首问负责: the responsible unit contacted the enterprise."""

    type: Literal["item.contacted"] = "item.contacted"
    note: str | None = None


class ItemAccepted(ItemEvent):
    """The responsible unit accepted (受理) the item: the statutory clock starts."""

    type: Literal["item.accepted"] = "item.accepted"
    note: str | None = None


class ItemProgress(ItemEvent):
    type: Literal["item.progress"] = "item.progress"
    note: str = Field(min_length=1)


class ItemUnblocked(ItemEvent):
    type: Literal["item.unblocked"] = "item.unblocked"
    note: str | None = None


class ItemSuspended(ItemEvent):
    """Waiting for the enterprise (补正材料): the running clock stops."""

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


Clock = Literal["service", "statutory"]


class ItemOverdue(ItemEvent):
    """A clock of the item is near or past its limit (one event per clock and level).

    ``clock``: ``service`` (首问负责: contact the enterprise within N working days of ready) or
    ``statutory`` (the catalog's limit, from 受理)."""

    type: Literal["item.overdue"] = "item.overdue"
    clock: Clock = "statutory"
    level: Literal["warning", "yellow", "red"]
    due_on: date
    working_days_used: int
    time_limit_days: int


class ItemDelivered(ItemEvent):
    """The results were handed to the enterprise, completely and at once (一次性完整移交)."""

    type: Literal["item.delivered"] = "item.delivered"
    results: tuple[str, ...] = Field(min_length=1, description="the approval results handed over")
    note: str | None = None


class TaskOrderIssued(ItemEvent):
    """专业跑腿服务任务单 issued by 经济发展招商服务局 (``automatic``: by the rule in evaluation.yaml)."""

    type: Literal["task_order.issued"] = "task_order.issued"
    number: str
    issued_by: str
    assigned_to: str
    automatic: bool = False
    note: str | None = None


class TaskOrderAccepted(ItemEvent):
    type: Literal["task_order.accepted"] = "task_order.accepted"
    number: str
    specialist_name: str
    specialist_phone: str


class TaskOrderClosed(ItemEvent):
    """The item's results were delivered: the task order is done."""

    type: Literal["task_order.closed"] = "task_order.closed"
    number: str


class ProjectDelivered(Event):
    """Every item of the project has been delivered."""

    type: Literal["project.delivered"] = "project.delivered"
    project_code: str
    items_delivered: int


class AssessmentSubmitted(Event):
    """A 测评 the ledger accepted; ``bad`` (差评) opens a rectification due on ``rectify_by``."""

    type: Literal["assessment.submitted"] = "assessment.submitted"
    assessment_id: str
    project_code: str
    provider: str
    rater: Literal["enterprise", "recruiting_unit"]
    requested_by: str
    year: int
    scores: dict[str, float]
    total: float
    comment: str | None = None
    bad: bool
    rectify_by: date | None = None


class AssessmentRectified(Event):
    type: Literal["assessment.rectified"] = "assessment.rectified"
    assessment_id: str
    project_code: str
    provider: str
    note: str
    late: bool


class RequestRefused(Event):
    """The ledger refused a request; ``reason`` (Chinese) says why. The sender is told."""

    type: Literal["request.refused"] = "request.refused"
    request_id: str
    request_type: str
    requested_by: str
    operator: str | None = None
    project_code: str | None = None
    item_code: str | None = None
    reason: str


AnyEvent = Annotated[
    AgreementSigned | AgreementRejected | ServiceStarted | ItemRouted | ItemUnroutable
    | RulesActivated | RulesRejected | ItemReady | ItemContacted | ItemAccepted | ItemProgress | ItemBlocked
    | ItemUnblocked | ItemSuspended | ItemResumed | ItemCompleted | ItemOverdue | ItemDelivered | TaskOrderIssued
    | TaskOrderAccepted | TaskOrderClosed | ProjectDelivered | AssessmentSubmitted | AssessmentRectified
    | RequestRefused,
    Field(discriminator="type"),
]
