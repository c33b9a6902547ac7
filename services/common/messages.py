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

import math
import uuid
from datetime import date, datetime, time
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.domain import (
    NEW_AREA_TIME,
    YEAR_MAX,
    YEAR_MIN,
    Code,
    Day,
    Decision,
    Fee,
    Ident,
    Line,
    MobileNumber,
    Moment,
    Name,
    Request,
    Result,
    ServiceMode,
    Stage,
    Text,
    Unroutable,
    WebhookUrl,
    check_one_line,
    is_email_address,
    mainland_mobile,
)

# Fixed namespace: ids derived from it are the same on every machine and every redelivery.
ID_NAMESPACE = uuid.UUID("6f1c3b0e-6a53-4c1e-9d2a-2f0c8a7e5b10")


def stable_id(*parts: str) -> str:
    """A deterministic id for the same agreement, item and purpose."""
    return str(uuid.uuid5(ID_NAMESPACE, "/".join(parts)))


MAX_PLAN_LINES = 100
"""Lines of one agreement's plan (the catalog has 25 items, each handled or advised on)."""
MAX_PROBLEMS, MAX_PROBLEM_CHARS = 20, 500
"""What a ``rules.rejected`` event lists: the first problems, each cut to a length (the log has all)."""


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


MAX_FACT_NUMBER = 10**15


def _fact_value(value: bool | int | float | str) -> bool | int | float | str:
    """A project fact: a yes/no, a finite number of at most 15 digits (rules compare it), or one line
    of text of at most 200 characters."""
    if isinstance(value, str):
        if len(value) > 200:
            raise ValueError(f"文字型事实长度 {len(value):,} 个字符，超过上限 200 / fact text too long")
        check_one_line(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("数值型事实须为有限数 / fact not a finite number")
    elif not isinstance(value, bool) and abs(value) > MAX_FACT_NUMBER:
        raise ValueError(f"数值型事实超出 ±{MAX_FACT_NUMBER:.0e} / fact number too large")
    return value


FactValue = Annotated[bool | int | float | str, AfterValidator(_fact_value)]
# a phone number as people write it (extensions, notes like “转 8001”), on one line
Phone = Annotated[str, Field(min_length=1, max_length=50), AfterValidator(check_one_line)]


SpecialistPhone = Annotated[MobileNumber, Field(
    description="服务专员的中国大陆手机号：11 位，以 13–19 开头，可带空格、短横线或 +86；保存为 11 位数字")]
"""A 服务专员's phone as the enterprise is given it: a mainland mobile number, kept as its 11 digits."""


class Contact(Message):
    name: Name
    phone: Phone | None = None
    email: Annotated[str, Field(min_length=3, max_length=254), AfterValidator(check_one_line)] | None = None
    webhook: WebhookUrl | None = Field(default=None, description="an http(s) URL, printable ASCII, no credentials")
    notify_by: tuple[Literal["email", "sms"], ...] = Field(
        default=(), max_length=2, description="channels besides the inbox: email (needs email), sms (needs a mobile phone)")

    @field_validator("notify_by")
    @classmethod
    def _no_repeats(cls, channels: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(channels)) != len(channels):
            raise ValueError(f"notify_by 中的渠道不能重复：{list(channels)} / a channel named twice")
        return channels

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if "email" in self.notify_by and not (self.email and is_email_address(self.email)):
            raise ValueError("notify_by 含 email（以邮件通知），须填写有效的电子邮件地址 email（如 someone@example.cn）"
                             f"，当前为 {self.email!r} / notify_by email needs a valid email")
        if "sms" in self.notify_by and self.mobile is None:
            raise ValueError("notify_by 含 sms（以短信通知），须在 phone 填写中国大陆手机号（11 位，如 \"13900000000\"）"
                             f"，当前为 {self.phone!r} / notify_by sms needs a mobile number in phone")
        return self

    @property
    def mobile(self) -> str | None:
        """The phone as a mainland mobile number's 11 digits, if it is one (an SMS can reach it)."""
        return mainland_mobile(self.phone) if self.phone else None


class Enterprise(Message):
    """The enterprise the service is for (服务对象)."""

    name: Name
    credit_code: str = Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$",
                             description="统一社会信用代码 (18 characters)")
    contact: Contact


class Project(Message):
    """一项一码: the project, its enterprise, its recruiting unit and the facts rules may test."""

    code: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{2,63}$")
    name: Name
    enterprise: Enterprise
    recruiting_unit: Code = Field(description="unit code of the 项目招引单位")
    facts: dict[Code, FactValue] = Field(default_factory=dict, max_length=50)


class Eligibility(Message):
    """Policy 二(一) and 三(一): who may be served."""

    zero_errand_clause: bool = Field(description="the agreement contains the zero-errand clause")
    committee_decision: Text | None = Field(default=None, description="管委会 decision that includes the project")
    enterprise_consent: bool = Field(description="企业自愿: the enterprise agreed to the service")


class PlannedItem(Message):
    """One line of the approval plan (审批策划)."""

    item: Code = Field(description="catalog item code")
    request: Request = Request.HANDLE
    note: Text | None = None


class Event(Message):
    type: Code
    event_id: Ident
    occurred_at: Moment
    recorded_at: Moment


class _Agreement(Event):
    """What an agreement and a 补充协议 both carry: the project, its eligibility and its whole plan."""

    agreement_id: Ident
    signed_on: Day
    project: Project
    eligibility: Eligibility
    plan: tuple[PlannedItem, ...] = Field(min_length=1, max_length=MAX_PLAN_LINES)


class AgreementSigned(_Agreement):
    """An investment agreement was signed: start the service for its plan."""

    type: Literal["agreement.signed"] = "agreement.signed"
    backfill: bool = Field(default=False, description="补录: a past agreement entered afterwards with the reports that "
                           "followed it; its items count as routed on the signing day")


class AgreementAmended(_Agreement):
    """A 补充协议 (supplementary agreement) was signed for a project already served: ``plan`` is the
    whole approval plan as amended, under the agreement's own id. The router routes only the lines
    it adds and announces the lines it removes (``plan.amended``); the ledger withdraws those not
    yet accepted. A second agreement for a known project code that is not marked as an amendment
    is rejected (``agreement.rejected``, ``reason_code`` ``project_known``)."""

    type: Literal["agreement.amended"] = "agreement.amended"


AnyAgreement = AgreementSigned | AgreementAmended

RejectionCode = Literal["not_eligible", "agreement_id_reused", "project_known", "project_unknown", "amendment_invalid"]
"""Why an agreement was rejected: not eligible for the service (policy); its id already used for
other content; a second agreement for a known project not marked as an amendment; an amendment of
a project never signed; an amendment that cannot be applied as it stands."""


class AgreementRejected(Event):
    """The agreement (or amendment) was not taken; nothing was routed. ``reasons`` (Chinese) say why."""

    type: Literal["agreement.rejected"] = "agreement.rejected"
    agreement_id: Ident
    project: Project
    reasons: tuple[Text, ...] = Field(max_length=20)
    reason_code: RejectionCode = "not_eligible"
    amendment: bool = Field(default=False, description="the rejected message was an agreement.amended")


class ServiceStarted(Event):
    """The service started: the ledger line (年度综合评价台账) for 经济发展招商服务局."""

    type: Literal["service.started"] = "service.started"
    agreement_id: Ident
    signed_on: Day
    project: Project
    ledger_owner: Code
    items_planned: int = Field(ge=0, le=MAX_PLAN_LINES)
    items_routed: int = Field(ge=0, le=MAX_PLAN_LINES)
    items_unroutable: int = Field(ge=0, le=MAX_PLAN_LINES)
    rules_version: Ident


class RoutedItem(Message):
    """An approval item placed on ``zeroerrand.items`` with routing key ``{mode}.{unit}``."""

    item_id: Ident = Field(description="stable id of this planned item; also the AMQP message_id")
    agreement_id: Ident
    project_code: Code
    project_name: Name
    enterprise: Enterprise
    recruiting_unit: Code
    item_code: Code
    item_name: Name
    stage: Stage
    stage_name: Name
    request: Request
    mode: ServiceMode
    mode_name: Name
    responsible_unit: Code
    responsible_unit_name: Name
    approving_authority: Code
    approving_authority_name: Name
    materials: tuple[Line, ...] = Field(max_length=100, description="一次性告知: everything the enterprise supplies")
    time_limit_days: int = Field(gt=0, le=365, description="statutory limit in working days")
    fees: tuple[Fee, ...] = Field(max_length=20)
    fee_note: Text
    requires: tuple[Code, ...] = Field(default=(), max_length=MAX_PLAN_LINES,
                                       description="planned item codes whose results this item waits for")
    task_order_required: bool = Field(description="专业跑腿: 经济发展招商服务局 issues a task order when the item is ready")
    decision: Decision
    backfilled_from: Day | None = Field(default=None, description="补录: set when the agreement was entered as a "
                                        "back-filled record; its signing day, which the item counts as routed on")
    amendment_id: Ident | None = Field(default=None, description="the 补充协议 (agreement.amended) that added this "
                                       "line to the plan; none for a line of the first agreement")


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
    item routed again from a redelivered agreement, has the same event id); a back-filled item's
    happened on its signing day (:func:`as_of_signing`)."""
    at = item.decision.decided_at
    return ItemRouted(event_id=stable_id(item.item_id, "item.routed"),
                      occurred_at=as_of_signing(item.backfilled_from, at), recorded_at=at, item=item)


def as_of_signing(backfilled_from: date | None, decided_at: datetime) -> datetime:
    """When the routing of an agreement counts as having happened: when it was decided; for a
    back-filled agreement (补录, ``backfilled_from`` its signing day), the start of the signing day
    (New Area time) if that was earlier. A back-filled agreement is a past one entered afterwards
    with the reports that followed it (a year taken over from paper records, the demo): its ledger
    lines and clocks start on the signing day so those reports fit. An agreement merely entered late
    is not back-filled: a unit's clock starts when the item reaches it. ``recorded_at`` still says
    when it was routed."""
    if backfilled_from is None or decided_at.astimezone(NEW_AREA_TIME).date() <= backfilled_from:
        return decided_at
    return datetime.combine(backfilled_from, time.min, NEW_AREA_TIME)


class ItemUnroutable(Event):
    """No rule could place the item; it is parked on ``zeroerrand.items.unroutable``."""

    type: Literal["item.unroutable"] = "item.unroutable"
    item_id: Ident
    agreement_id: Ident
    project_code: Code
    project_name: Name
    recruiting_unit: Code
    item_code: Code
    item_name: Name | None
    request: Request
    unroutable: Unroutable


class PlanLine(Message):
    """One line of a project's plan named in an amendment: ``item_id`` is the line's stable id (the
    AMQP ``message_id`` of its routed item). For an added line that was routed: its unit and the
    一次性告知 (materials, time limit, fee note), so one notice can tell the enterprise everything."""

    item_code: Code
    item_name: Name | None = None
    request: Request = Request.HANDLE
    item_id: Ident
    routed: bool = True
    responsible_unit: Code | None = None
    materials: tuple[Line, ...] = Field(default=(), max_length=100)
    time_limit_days: int | None = Field(default=None, gt=0, le=365)
    fee_note: Text | None = None


class PlanAmended(Event):
    """The router took a 补充协议: ``added`` lines are routed (each its own routed item, published
    after this event), ``removed`` lines are for the ledger to withdraw (it withdraws those not yet
    accepted, and says which in ``project.amended``). ``revision`` counts the project's amendments."""

    type: Literal["plan.amended"] = "plan.amended"
    agreement_id: Ident
    signed_on: Day
    project: Project
    previous_recruiting_unit: Code
    revision: int = Field(ge=1, le=10_000)
    added: tuple[PlanLine, ...] = Field(max_length=MAX_PLAN_LINES)
    removed: tuple[PlanLine, ...] = Field(max_length=MAX_PLAN_LINES)
    items_planned: int = Field(ge=0, le=MAX_PLAN_LINES)
    rules_version: Ident


class KeptLine(Message):
    """A line an amendment removed that the ledger could not withdraw, and why (Chinese)."""

    item_code: Code
    item_name: Name
    request: Request = Request.HANDLE
    state: Code
    reason: Text


class ProjectAmended(Event):
    """The ledger applied a 补充协议 to the project's record: what was added, what it withdrew, what
    it kept because work on it had gone too far (accepted or later), the recruiting unit now."""

    type: Literal["project.amended"] = "project.amended"
    project_code: Code
    agreement_id: Ident
    revision: int = Field(ge=1, le=10_000)
    signed_on: Day
    recruiting_unit: Code
    previous_recruiting_unit: Code
    added: tuple[PlanLine, ...] = Field(max_length=MAX_PLAN_LINES)
    withdrawn: tuple[PlanLine, ...] = Field(max_length=MAX_PLAN_LINES)
    kept: tuple[KeptLine, ...] = Field(max_length=MAX_PLAN_LINES)
    items_planned: int = Field(ge=0, le=MAX_PLAN_LINES)


class RulesActivated(Event):
    type: Literal["rules.activated"] = "rules.activated"
    version: Ident
    previous_version: Ident | None
    directory: Text
    rules: int = Field(ge=0)
    items: int = Field(ge=0)


class RulesRejected(Event):
    type: Literal["rules.rejected"] = "rules.rejected"
    attempted_version: Ident | None
    active_version: Ident | None
    directory: Text
    problems: tuple[Annotated[str, Field(min_length=1, max_length=MAX_PROBLEM_CHARS)], ...] = Field(
        max_length=MAX_PROBLEMS, description="the first problems found (the router's log has every one)")


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

    type: Code
    request_id: Ident
    requested_at: Moment
    occurred_at: Moment = Field(description="when it happened (a back-filled report says so)")
    requested_by: Code
    operator: Name | None = None


class ItemCommand(Command):
    project_code: Code
    item_code: Code
    request: Request | None = Field(default=None, description="which plan line, when an item has both a consult "
                                                               "and a handle line")


class ContactEnterprise(ItemCommand):
    """首问负责: the responsible unit has contacted the enterprise (stops the service clock).

    On a 帮办代办 line 政务服务局 names here the 服务专员 it arranged for the enterprise (policy 四(一)):
    ``specialist_name`` and ``specialist_phone`` (a mainland mobile number) together, or neither."""

    type: Literal["item.contact"] = "item.contact"
    note: Text | None = None
    specialist_name: Name | None = Field(default=None, description="帮办代办服务专员姓名 (policy 四(一))")
    specialist_phone: SpecialistPhone | None = None

    @model_validator(mode="after")
    def _specialist_whole(self) -> ContactEnterprise:
        if (self.specialist_name is None) != (self.specialist_phone is None):
            raise ValueError("服务专员须同时写明姓名和手机号（或都不写） / specialist name and phone go together")
        return self


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


class ReportEnterpriseIssue(ItemCommand):
    """The enterprise reports a 堵点/卡点 of its item (policy 四(二)): ``requested_by`` is its
    统一社会信用代码; the responsible unit must resolve it (``item.resolve_blocker``)."""

    type: Literal["item.enterprise_issue"] = "item.enterprise_issue"
    reason: Text


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
    results: tuple[Result, ...] = Field(min_length=1, max_length=50)
    note: Text | None = None


class IssueTaskOrder(ItemCommand):
    """经济发展招商服务局 issues the 专业跑腿 task order for a ready errand item (policy 四(三))."""

    type: Literal["task_order.issue"] = "task_order.issue"
    note: Text | None = None


class AcceptTaskOrder(ItemCommand):
    """政联公司 accepts the task order and names its 服务专员 (a mainland mobile number, which the
    enterprise is sent: "abc" or a landline is refused here, before anything is published)."""

    type: Literal["task_order.accept"] = "task_order.accept"
    specialist_name: Name
    specialist_phone: SpecialistPhone


class RerouteItem(ItemCommand):
    """政务服务局 re-decides an open item not yet accepted (受理) under the active rules (policy 五(七)):
    the new decision and the fields of a ``RoutedItem`` the ledger keeps. Sent by ``zeroerrand rules
    reroute``; the ledger refuses it for an item accepted or further on, or whose task order was accepted."""

    type: Literal["item.reroute"] = "item.reroute"
    mode: ServiceMode
    responsible_unit: Code
    approving_authority: Code
    evaluated_as: ServiceMode
    evaluator: Code
    task_order_required: bool
    rule_id: Code
    rules_version: Ident
    reason: Text = Field(default="规则版本变更", description="why (shown to the units and the enterprise)")


class SubmitAssessment(Command):
    """综合测评 (policy 五(六)): a service object or recruiting unit answers the questionnaire of
    ``evaluation.yaml`` for one provider of one project; ``scores`` maps indicator code to points."""

    type: Literal["assessment.submit"] = "assessment.submit"
    project_code: Code
    provider: Code
    rater: Literal["enterprise", "recruiting_unit"]
    year: int = Field(ge=YEAR_MIN, le=YEAR_MAX)
    scores: dict[Code, Annotated[float, Field(allow_inf_nan=False)]] = Field(max_length=50)
    comment: Text | None = Field(default=None, description="评价意见")


class RectifyAssessment(Command):
    """The provider closes the rectification a 差评 opened."""

    type: Literal["assessment.rectify"] = "assessment.rectify"
    assessment_id: Ident
    note: Text


AnyCommand = Annotated[
    ContactEnterprise | AcceptItem | ReportProgress | ReportBlocker | ReportEnterpriseIssue | ResolveBlocker
    | SuspendItem | ResumeItem | CompleteItem | DeliverResults | IssueTaskOrder | AcceptTaskOrder | RerouteItem
    | SubmitAssessment | RectifyAssessment,
    Field(discriminator="type"),
]


# -- events the ledger publishes -----------------------------------------------------------------


class ItemEvent(Event):
    """An event about one item of one project, as the ledger recorded it.

    ``reported_by`` is the unit whose request it was (``operator``: a person acting for it);
    ``request_id`` the request it answers (none for what the ledger itself decides).
    """

    project_code: Code
    item_code: Code
    request: Request = Request.HANDLE
    reported_by: Code
    operator: Name | None = None
    request_id: Ident | None = None


class ItemReady(ItemEvent):
    """Every prerequisite is delivered (or not planned): the item can be done; the service clock starts."""

    type: Literal["item.ready"] = "item.ready"
    waited_for: tuple[Code, ...] = Field(default=(), max_length=MAX_PLAN_LINES)
    task_order_required: bool = False


class ItemContacted(ItemEvent):
    """首问负责: the responsible unit contacted the enterprise; on a 帮办代办 line, with the 服务专员
    政务服务局 named (policy 四(一))."""

    type: Literal["item.contacted"] = "item.contacted"
    note: Text | None = None
    specialist_name: Name | None = None
    specialist_phone: Phone | None = None


class ItemAccepted(ItemEvent):
    """The responsible unit accepted (受理) the item: the statutory clock starts."""

    type: Literal["item.accepted"] = "item.accepted"
    note: Text | None = None


class ItemProgress(ItemEvent):
    type: Literal["item.progress"] = "item.progress"
    note: Text


class ResolvedBlocker(Message):
    """A 堵点/卡点 a resolution closed: what it was and who reported it (a unit code, or the
    enterprise's 统一社会信用代码), so that whoever reported it can be told it is resolved."""

    reason: Text
    reported_by: Code


class ItemUnblocked(ItemEvent):
    type: Literal["item.unblocked"] = "item.unblocked"
    note: Text | None = None
    resolved: tuple[ResolvedBlocker, ...] = Field(default=(), max_length=100,
                                                  description="the blockers this resolution closed")


class ItemSuspended(ItemEvent):
    """Waiting for the enterprise (补正材料): the running clock stops."""

    type: Literal["item.suspended"] = "item.suspended"
    reason: Text


class ItemResumed(ItemEvent):
    type: Literal["item.resumed"] = "item.resumed"
    note: Text | None = None


class ItemCompleted(ItemEvent):
    """The approval is done (办结); the results still have to be handed over."""

    type: Literal["item.completed"] = "item.completed"
    note: Text | None = None


class ItemBlocked(ItemEvent):
    """A 堵点/卡点: the item cannot move until ``resolver`` acts."""

    type: Literal["item.blocked"] = "item.blocked"
    reason: Text
    resolver: Code = Field(description="unit code of whoever must resolve the blocker")


Clock = Literal["task_order", "service", "statutory"]


class ItemOverdue(ItemEvent):
    """A clock of the item is near or past its limit (one event per clock and level).

    ``clock``: ``task_order`` (经济发展招商服务局 issues a 专业跑腿 item's task order within N working
    days of ready), ``service`` (首问负责: contact the enterprise within N working days of ready, for
    专业跑腿 of the task order's issue) or ``statutory`` (the catalog's limit, from 受理)."""

    type: Literal["item.overdue"] = "item.overdue"
    clock: Clock = "statutory"
    level: Literal["warning", "yellow", "red"]
    due_on: Day
    working_days_used: int = Field(ge=0)
    time_limit_days: int = Field(ge=0)
    estimated_years: tuple[Annotated[int, Field(ge=2000, le=2100)], ...] = Field(
        default=(), max_length=10,
        description="years without holiday data the used days or the due day were estimated in (Monday to Friday)")


class ItemDelivered(ItemEvent):
    """The results were handed to the enterprise, completely and at once (一次性完整移交)."""

    type: Literal["item.delivered"] = "item.delivered"
    results: tuple[Result, ...] = Field(min_length=1, max_length=50, description="the approval results handed over")
    note: Text | None = None


class TaskOrderIssued(ItemEvent):
    """专业跑腿服务任务单 issued by 经济发展招商服务局 (``automatic``: by the rule in evaluation.yaml)."""

    type: Literal["task_order.issued"] = "task_order.issued"
    number: Ident
    issued_by: Code
    assigned_to: Code
    automatic: bool = False
    note: Text | None = None


class TaskOrderAccepted(ItemEvent):
    type: Literal["task_order.accepted"] = "task_order.accepted"
    number: Ident
    specialist_name: Name
    specialist_phone: Phone


class TaskOrderClosed(ItemEvent):
    """The item's results were delivered: the task order is done."""

    type: Literal["task_order.closed"] = "task_order.closed"
    number: Ident


class ItemRerouted(ItemEvent):
    """政务服务局 re-routed an open item under the active rules: it now belongs to ``to_unit`` (with
    its mode, approving authority and task order), no longer to ``from_unit``. Its service clock
    (首问负责) starts again for the new unit (a contacted item is ready again); a task order issued
    but not accepted is withdrawn (``withdrawn_task_order``)."""

    type: Literal["item.rerouted"] = "item.rerouted"
    item_name: Name
    state: Code = Field(description="the ledger state after the re-routing: waiting or ready")
    from_mode: ServiceMode
    to_mode: ServiceMode
    from_unit: Code
    to_unit: Code
    from_authority: Code
    to_authority: Code
    task_order_required: bool
    withdrawn_task_order: Ident | None = None
    time_limit_days: int = Field(gt=0, le=365, description="statutory limit in working days, from 受理")
    materials: tuple[Line, ...] = Field(default=(), max_length=100, description="一次性告知, as the ledger keeps them")
    rule_id: Code
    from_rules_version: Ident | None = None
    rules_version: Ident
    reason: Text


class ItemWithdrawn(ItemEvent):
    """A 补充协议 removed the line from the plan and the ledger withdrew it (it was not yet accepted):
    it leaves the open work of ``responsible_unit``; a task order issued for it is withdrawn too."""

    type: Literal["item.withdrawn"] = "item.withdrawn"
    item_name: Name
    responsible_unit: Code
    agreement_id: Ident = Field(description="the 补充协议 that removed the line")
    revision: int = Field(ge=1, le=10_000)
    from_state: Code
    withdrawn_task_order: Ident | None = None


class ProjectDelivered(Event):
    """Every item of the project has been delivered."""

    type: Literal["project.delivered"] = "project.delivered"
    project_code: Code
    items_delivered: int = Field(ge=0, le=MAX_PLAN_LINES)


class AssessmentSubmitted(Event):
    """A 测评 the ledger accepted; ``bad`` (差评) opens a rectification due on ``rectify_by``.
    ``evaluators``: the departments that evaluate the provider's service on the project (policy
    五(六)), told of a 差评; ``rectification_weight``: the weight of the 差评整改率 in the annual score
    when the 测评 was accepted (0: shown for reference only), so that the notice says what is so."""

    type: Literal["assessment.submitted"] = "assessment.submitted"
    assessment_id: Ident
    project_code: Code
    provider: Code
    rater: Literal["enterprise", "recruiting_unit"]
    requested_by: Code
    year: int = Field(ge=YEAR_MIN, le=YEAR_MAX)
    scores: dict[Code, Annotated[float, Field(allow_inf_nan=False)]] = Field(max_length=50)
    total: float = Field(allow_inf_nan=False)
    comment: Text | None = None
    bad: bool
    rectify_by: Day | None = None
    evaluators: tuple[Code, ...] = Field(default=(), max_length=3)
    rectification_weight: float = Field(default=0, ge=0, lt=1)


class AssessmentRectified(Event):
    """A 差评's rectification; ``late`` after its deadline (the ``evaluators`` are told)."""

    type: Literal["assessment.rectified"] = "assessment.rectified"
    assessment_id: Ident
    project_code: Code
    provider: Code
    note: Text
    late: bool
    evaluators: tuple[Code, ...] = Field(default=(), max_length=3)


class AssessmentRectificationOverdue(Event):
    """A 差评 not rectified by its deadline, found by the ledger's sweep on the day after it: the
    rated unit is reminded and its ``evaluators`` told (once; the event id is the 测评's)."""

    type: Literal["assessment.rectification_overdue"] = "assessment.rectification_overdue"
    assessment_id: Ident
    project_code: Code
    provider: Code
    total: float
    rectify_by: date
    evaluators: tuple[Code, ...] = Field(default=(), max_length=3)


class RequestRefused(Event):
    """The ledger refused a request; ``reason`` (Chinese) says why. The sender is told."""

    type: Literal["request.refused"] = "request.refused"
    request_id: Ident
    request_type: Code
    requested_by: Code
    operator: Name | None = None
    project_code: Code | None = None
    item_code: Code | None = None
    reason: Annotated[str, Field(min_length=1, max_length=4000)]


AnyEvent = Annotated[
    AgreementSigned | AgreementAmended | AgreementRejected | ServiceStarted | PlanAmended | ProjectAmended
    | ItemWithdrawn | ItemRouted | ItemUnroutable
    | RulesActivated | RulesRejected | ItemReady | ItemContacted | ItemAccepted | ItemProgress | ItemBlocked
    | ItemUnblocked | ItemSuspended | ItemResumed | ItemCompleted | ItemOverdue | ItemDelivered | ItemRerouted
    | TaskOrderIssued | TaskOrderAccepted | TaskOrderClosed | ProjectDelivered | AssessmentSubmitted | AssessmentRectified
    | AssessmentRectificationOverdue
    | RequestRefused,
    Field(discriminator="type"),
]
