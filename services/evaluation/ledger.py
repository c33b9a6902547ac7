"""The ledger item (台账事项) as a pure aggregate: a request in, the new item and its events out, or a
refusal with the reason in Chinese. No I/O; the repository loads and saves, the handlers publish.

    waiting ─(prerequisites delivered)→ ready ─contact→ contacted ─accept (受理)→ accepted ─progress→ in_progress
       ready / contacted / accepted / in_progress ⇄ blocked (堵点/卡点) or suspended (等待补正): back where it was
    accepted / in_progress ─complete→ completed ─deliver→ delivered        (advice only: ready / contacted ─complete→)

Two clocks, both in working days on China's calendar, both stopped by a suspension:

* the **service clock** (首问负责): from ``ready`` (for 专业跑腿, from the task order's issue) until the
  responsible unit contacts the enterprise or accepts the item; its limit is ``service_response_days``
  of ``evaluation.yaml``;
* the **statutory clock** (《行政许可法》第四十二条): from ``accepted`` (受理) until ``completed``, with the
  catalog's limit.

Nothing runs while an item waits for another, so nothing is overdue then.

Only the responsible unit may move its item (首问负责); 经济发展招商服务局 issues task orders; the unit that
must resolve a blocker may also report it resolved. ``operator`` records a person acting for a unit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from services.common.domain import (
    ECON_DEV_BUREAU,
    GOV_SERVICE_BUREAU,
    MODE_NAMES_ZH,
    NEW_AREA_TIME,
    REQUEST_NAMES_ZH,
    Request,
    ServiceMode,
    Stage,
)
from services.common.messages import (
    AcceptItem,
    AcceptTaskOrder,
    Clock,
    CompleteItem,
    ContactEnterprise,
    DeliverResults,
    Event,
    IssueTaskOrder,
    ItemAccepted,
    ItemBlocked,
    ItemCommand,
    ItemCompleted,
    ItemContacted,
    ItemDelivered,
    ItemEvent,
    ItemOverdue,
    ItemProgress,
    ItemReady,
    ItemRerouted,
    ItemResumed,
    ItemRouted,
    ItemSuspended,
    ItemUnblocked,
    ItemUnroutable,
    ItemWithdrawn,
    PlanAmended,
    ReportBlocker,
    ReportEnterpriseIssue,
    ReportProgress,
    RerouteItem,
    ResolveBlocker,
    ResolvedBlocker,
    ResumeItem,
    RulesActivated,
    RulesRejected,
    SuspendItem,
    TaskOrderAccepted,
    TaskOrderClosed,
    TaskOrderIssued,
    stable_id,
)
from services.evaluation.working_days import WorkingCalendar

LOCAL = NEW_AREA_TIME
LATE_AFTER = timedelta(days=1)  # a record made more than a day after the fact is flagged as back-filled
FUTURE_TOLERANCE = timedelta(minutes=10)  # clocks of the senders' systems may run a little ahead


def local_day(moment: datetime) -> date:
    return moment.astimezone(LOCAL).date()


def item_key(project_code: str, item_code: str, request: Request = Request.HANDLE) -> str:
    """The ledger id of one plan line: an advice-only line of an item that is also handled is its own line."""
    base = f"{project_code}/{item_code}"
    return base if request is Request.HANDLE else f"{base}/consult"


class ItemState(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    CONTACTED = "contacted"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    DELIVERED = "delivered"
    WITHDRAWN = "withdrawn"  # a 补充协议 removed the line before it was accepted (受理)


STATE_NAMES_ZH = {
    ItemState.WAITING: "等待前置事项",
    ItemState.READY: "可办理（待对接企业）",
    ItemState.CONTACTED: "已对接企业",
    ItemState.ACCEPTED: "已受理",
    ItemState.IN_PROGRESS: "办理中",
    ItemState.BLOCKED: "堵点/卡点",
    ItemState.SUSPENDED: "中止（等待企业补正）",
    ItemState.COMPLETED: "已办结",
    ItemState.DELIVERED: "已移交",
    ItemState.WITHDRAWN: "已撤回（补充协议删除）",
}
CLOCK_NAMES_ZH: dict[str, str] = {"task_order": "任务单下发", "service": "首问响应", "statutory": "承诺时限"}
FINISHED = frozenset({ItemState.COMPLETED, ItemState.DELIVERED, ItemState.WITHDRAWN})
_ACTIVE = (ItemState.READY, ItemState.CONTACTED, ItemState.ACCEPTED, ItemState.IN_PROGRESS)
_WORKING = (ItemState.ACCEPTED, ItemState.IN_PROGRESS)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Pause(_Record):
    """A suspension: no working day in (from_day, to_day] counts on any clock."""

    from_day: date
    to_day: date | None = None
    reason: str


class Blocker(_Record):
    id: str
    reason: str
    resolver: str
    reported_by: str
    opened_on: date
    closed_on: date | None = None


class TaskOrderRecord(_Record):
    number: str
    issued_by: str
    assigned_to: str
    automatic: bool
    issued_on: date
    state: Literal["issued", "accepted", "closed"] = "issued"
    specialist_name: str | None = None
    specialist_phone: str | None = None
    accepted_on: date | None = None
    closed_on: date | None = None


class HistoryEntry(_Record):
    request_id: str | None
    type: str
    from_state: ItemState | None
    to_state: ItemState
    by: str
    operator: str | None = None
    occurred_at: datetime
    recorded_at: datetime
    late: bool = False
    events: tuple[dict[str, Any], ...] = ()  # what was published, to publish again after a crash


class LedgerItem(_Record):
    """One plan line of a project in the ledger, with everything that happened to it."""

    key: str
    project_code: str
    item_code: str
    request: Request = Request.HANDLE
    item_name: str
    stage: Stage
    mode: ServiceMode
    evaluated_as: ServiceMode
    evaluator: str
    responsible_unit: str
    approving_authority: str
    time_limit_days: int
    materials: tuple[str, ...] = ()  # 一次性告知, as routed (lines routed before it was kept have none)
    fee_note: str | None = None
    requires: tuple[str, ...] = ()
    task_order_required: bool = False
    state: ItemState
    version: int = 0
    routed_on: date
    ready_on: date | None = None
    contacted_on: date | None = None
    accepted_on: date | None = None
    finished_on: date | None = None
    delivered_on: date | None = None
    resume_to: ItemState | None = None
    pauses: tuple[Pause, ...] = ()
    blockers: tuple[Blocker, ...] = ()
    task_order: TaskOrderRecord | None = None
    # 帮办代办 (policy 四(一)): the 服务专员 政务服务局 named when it contacted the enterprise
    specialist_name: str | None = None
    specialist_phone: str | None = None
    overdue_sent: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    # the decision record it was routed by (lines routed before it was kept have none): the rule,
    # the rules version, and the facts the rules tested as JSON text (their names have dots, which
    # a stored document's keys may not have); what ``zeroerrand rules dry-run`` compares against
    rule_id: str | None = None
    rules_version: str | None = None
    facts_json: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state not in FINISHED

    @property
    def open_blockers(self) -> tuple[Blocker, ...]:
        return tuple(b for b in self.blockers if b.closed_on is None)

    @property
    def pause_spans(self) -> tuple[tuple[date, date | None], ...]:
        return tuple((p.from_day, p.to_day) for p in self.pauses)

    @property
    def last_day(self) -> date:
        """The latest day anything was recorded on: a later report cannot go back before it."""
        return max(local_day(h.occurred_at) for h in self.history) if self.history else self.routed_on

    def waiting_for(self, delivered: set[str]) -> tuple[str, ...]:
        return tuple(code for code in self.requires if code not in delivered)


# -- the other records of the ledger: projects, 测评, what became of each request ----------------

class ProjectRecord(_Record):
    code: str
    agreement_id: str
    name: str
    enterprise: str
    credit_code: str
    recruiting_unit: str
    signed_on: date
    ledger_owner: str
    items_planned: int
    items_routed: int
    items_unroutable: int
    rules_version: str
    started_at: datetime
    recorded_at: datetime
    delivered_at: datetime | None = None
    # the project facts of the agreement (JSON text; None for projects recorded before it was
    # kept): ``zeroerrand rules dry-run`` decides every item again with them
    facts_json: str | None = None
    # 补充协议 applied (``ledger_amendments`` holds each one): how many, and their agreement ids in order
    revision: int = 0
    amendments: tuple[str, ...] = ()


class AmendmentRecord(_Record):
    """A 补充协议 as the ledger applied it (its ``project.amended`` event, to announce it again)."""

    event_id: str  # the router's plan.amended
    project_code: str
    agreement_id: str
    revision: int
    signed_on: date
    recruiting_unit: str
    previous_recruiting_unit: str
    items_planned: int
    project_name: str
    facts_json: str
    announced: dict[str, Any]  # the project.amended event
    recorded_at: datetime


class Assessment(_Record):
    """A 测评 the ledger accepted, and its rectification if it was a 差评."""

    assessment_id: str
    project_code: str
    provider: str
    rater: str
    requested_by: str
    operator: str | None = None
    year: int
    scores: dict[str, float]
    total: float
    comment: str | None = None
    bad: bool
    rectify_by: date | None = None
    rectified_on: date | None = None
    rectification: str | None = None
    rectified_by_request: str | None = None
    occurred_at: datetime
    recorded_at: datetime
    # the departments that evaluate the provider's service on the project (told of a 差评 and a late
    # rectification); the 差评整改率's weight when it was accepted (what its notice said)
    evaluators: tuple[str, ...] = ()
    rectification_weight: float = 0


class RequestOutcome(_Record):
    """What became of a request, for its sender: ``pending`` while it is being handled, then
    ``applied`` or ``refused`` (with the reason). ``fingerprint`` (a hash of the request) tells a
    request sent again from another request that reuses its id."""

    request_id: str
    request_type: str
    requested_by: str
    fingerprint: str
    status: Literal["pending", "applied", "refused"]
    reason: str | None = None
    events: tuple[str, ...] = ()
    request: dict[str, Any]
    recorded_at: datetime


class RulesRecord(_Record):
    """A ``rules.activated`` or ``rules.rejected`` event as the ledger keeps it (政务服务局's history of
    the routing rules). ``occurred_at`` is kept in UTC, so that stored times sort as times."""

    event_id: str
    type: Literal["rules.activated", "rules.rejected"]
    version: str | None = None  # activated: the version now in force
    previous_version: str | None = None
    attempted_version: str | None = None  # rejected: the version refused (None: the files could not be read)
    active_version: str | None = None  # rejected: the version that keeps routing
    directory: str
    problems: tuple[str, ...] = ()
    rules: int | None = None
    items: int | None = None
    occurred_at: datetime
    recorded_at: datetime


class UnroutableRecord(_Record):
    """An ``item.unroutable`` event: a planned item no rule could place, with the reason. ``year`` is
    the (local) year it happened (the signing day, for an agreement entered late), what the list is read by."""

    event_id: str
    item_id: str
    agreement_id: str
    project_code: str
    project_name: str
    recruiting_unit: str
    item_code: str
    item_name: str | None = None
    request: Request = Request.HANDLE
    reason_code: str
    reason: str
    # the facts the rules tested, as JSON text: their names (``project.<fact>``, ``item.<field>``)
    # have dots, which a stored document's keys may not have
    facts_json: str = "{}"
    rules_version: str
    decided_at: datetime
    year: int
    occurred_at: datetime
    recorded_at: datetime


def facts_text(facts: Mapping[str, Any]) -> str:
    """Facts as the ledger stores them: JSON text with sorted keys."""
    return json.dumps(facts, ensure_ascii=False, sort_keys=True, default=str)


def rules_record(event: RulesActivated | RulesRejected, now: datetime) -> RulesRecord:
    common = {"event_id": event.event_id, "directory": event.directory,
              "occurred_at": event.occurred_at.astimezone(UTC), "recorded_at": now.astimezone(UTC)}
    if isinstance(event, RulesActivated):
        return RulesRecord(type=event.type, version=event.version, previous_version=event.previous_version,
                           rules=event.rules, items=event.items, **common)
    return RulesRecord(type=event.type, attempted_version=event.attempted_version, active_version=event.active_version,
                       problems=event.problems, **common)


def unroutable_record(event: ItemUnroutable, now: datetime) -> UnroutableRecord:
    decision = event.unroutable
    return UnroutableRecord(
        event_id=event.event_id, item_id=event.item_id, agreement_id=event.agreement_id,
        project_code=event.project_code, project_name=event.project_name, recruiting_unit=event.recruiting_unit,
        item_code=event.item_code, item_name=event.item_name, request=event.request,
        reason_code=decision.reason_code, reason=decision.reason,
        facts_json=facts_text(decision.facts),
        rules_version=decision.rules_version, decided_at=decision.decided_at.astimezone(UTC),
        year=local_day(event.occurred_at).year, occurred_at=event.occurred_at.astimezone(UTC),
        recorded_at=now.astimezone(UTC))


# -- outcomes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    item: LedgerItem
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Refused:
    reason: str


@dataclass(frozen=True)
class Duplicate:
    """The request was applied before (a redelivery): its events, to publish again."""

    events: tuple[dict[str, Any], ...]


Outcome = Applied | Refused | Duplicate


def new_item(event: ItemRouted) -> LedgerItem:
    """The ledger line for a routed item, ``waiting`` until :func:`become_ready` says otherwise."""
    routed = event.item
    day = local_day(event.occurred_at)
    return LedgerItem(
        key=item_key(routed.project_code, routed.item_code, routed.request), project_code=routed.project_code,
        item_code=routed.item_code, request=routed.request, item_name=routed.item_name, stage=routed.stage,
        mode=routed.mode, evaluated_as=routed.decision.evaluated_as, evaluator=routed.decision.evaluator,
        responsible_unit=routed.responsible_unit, approving_authority=routed.approving_authority,
        time_limit_days=routed.time_limit_days, materials=routed.materials, fee_note=routed.fee_note,
        requires=routed.requires,
        task_order_required=routed.task_order_required, state=ItemState.WAITING, routed_on=day,
        applied=(event.event_id,), rule_id=routed.decision.rule_id, rules_version=routed.decision.rules_version,
        facts_json=facts_text(routed.decision.facts),
        history=(HistoryEntry(request_id=None, type=event.type, from_state=None, to_state=ItemState.WAITING,
                              by=ECON_DEV_BUREAU, occurred_at=event.occurred_at, recorded_at=event.recorded_at),))


def _ledger_event(item: LedgerItem, model: type[ItemEvent], purpose: str, at: datetime, **fields: Any) -> Any:
    return model(event_id=stable_id(item.key, purpose), occurred_at=at, recorded_at=at,
                 project_code=item.project_code, item_code=item.item_code, request=item.request,
                 reported_by=ECON_DEV_BUREAU, **fields)


def _record(item: LedgerItem, entry_type: str, to_state: ItemState, at: datetime, now: datetime,
            events: Sequence[Event], request_id: str | None = None, by: str = ECON_DEV_BUREAU,
            operator: str | None = None, **changes: Any) -> Applied:
    entry = HistoryEntry(request_id=request_id, type=entry_type, from_state=item.state, to_state=to_state, by=by,
                         operator=operator, occurred_at=at, recorded_at=now, late=now - at > LATE_AFTER,
                         events=tuple(e.model_dump(mode="json") for e in events))
    applied = (*item.applied, request_id) if request_id else item.applied
    updated = item.model_copy(update={"state": to_state, "applied": applied, "history": (*item.history, entry),
                                      **changes})
    return Applied(updated, tuple(events))


def become_ready(item: LedgerItem, delivered: Mapping[str, date], now: datetime) -> Applied | None:
    """``waiting`` → ``ready`` once every prerequisite is delivered; the ready day is the last delivery's."""
    if item.state is not ItemState.WAITING or item.waiting_for(set(delivered)):
        return None
    day = max([item.routed_on, *(delivered[code] for code in item.requires)])
    at = _moment(day, now)
    event = _ledger_event(item, ItemReady, "item.ready", at, waited_for=item.requires,
                          task_order_required=item.task_order_required)
    return _record(item, event.type, ItemState.READY, at, now, [event], ready_on=day)


def _moment(day: date, now: datetime) -> datetime:
    """When something the ledger decides happened: ``now``, or the start of ``day`` if that was
    earlier (the ledger caught up with a backlog), so back-filled reports of that day still fit."""
    return now if day >= local_day(now) else datetime.combine(day, time.min, LOCAL)


def task_order_number(key: str) -> str:
    """The task order's number, from the ledger line's key: RWD-<project>-<item>[-consult]."""
    return "RWD-" + key.replace("/", "-")


def issue_task_order(item: LedgerItem, now: datetime, *, automatic: bool,
                     command: IssueTaskOrder | None = None) -> Applied | Refused:
    """经济发展招商服务局 issues the task order of a ready errand item (by request, or automatically)."""
    if not item.task_order_required:
        return Refused(f"事项 {item.item_code}（{item.item_name}）不是“专业跑腿”事项，无需下发任务单")
    if item.task_order is not None:
        return Refused(f"事项 {item.item_code} 的任务单已于 {item.task_order.issued_on} 下发（编号 {item.task_order.number}）")
    if item.state is ItemState.WAITING:
        return Refused(f"事项 {item.item_code} 尚在等待前置事项，暂不具备办理条件，不能下发任务单"
                       "（方案四(三)：根据审批手续办理实际下发）")
    at = command.occurred_at if command else _moment(item.ready_on or local_day(now), now)
    fields = {"number": task_order_number(item.key), "issued_by": ECON_DEV_BUREAU, "assigned_to": item.responsible_unit,
              "automatic": automatic, "note": command.note if command else "按评价规则自动下发"}
    if command is None:
        event = _ledger_event(item, TaskOrderIssued, "task_order.issued", at, **fields)
    else:
        event = TaskOrderIssued(event_id=stable_id(command.request_id, "task_order.issued"), occurred_at=at,
                                recorded_at=now, project_code=item.project_code, item_code=item.item_code,
                                request=item.request, reported_by=command.requested_by, operator=command.operator,
                                request_id=command.request_id, **fields)
    order = TaskOrderRecord(number=fields["number"], issued_by=ECON_DEV_BUREAU, assigned_to=item.responsible_unit,
                            automatic=automatic, issued_on=local_day(at))
    return _record(item, event.type, item.state, at, now, [event], command.request_id if command else None,
                   by=command.requested_by if command else ECON_DEV_BUREAU,
                   operator=command.operator if command else None, task_order=order)


# -- requests from units ---------------------------------------------------------------------

def _name(names: Mapping[str, str], code: str) -> str:
    return names.get(code, code)


def decide(item: LedgerItem, command: ItemCommand, now: datetime, unit_names: Mapping[str, str],
           delivered: Mapping[str, date], project: ProjectRecord | None = None) -> Outcome:
    """Checks one request against the item (首问负责, state, dates) and applies it, or says why not.
    ``project`` (its record) is needed for what only the enterprise may send, and for a 堵点/卡点 its
    招引单位 reports (方案四(二): the departments collect them from the recruiting units)."""
    if command.request_id in item.applied:
        return Duplicate(tuple(e for h in item.history if h.request_id == command.request_id for e in h.events))
    action = REQUEST_NAMES_ZH[command.type]
    who = _name(unit_names, command.requested_by)
    if command.occurred_at - now > FUTURE_TOLERANCE:
        return Refused(f"发生时间 {command.occurred_at.isoformat(timespec='minutes')} 晚于当前时间，不能{action}")
    day = local_day(command.occurred_at)
    if day < item.last_day:
        return Refused(f"发生日期 {day} 早于该事项上一次记录的日期 {item.last_day}，不能{action}（请按时间顺序报告）")

    if isinstance(command, IssueTaskOrder):
        if command.requested_by != ECON_DEV_BUREAU:
            return Refused(f"“专业跑腿”任务单由{_name(unit_names, ECON_DEV_BUREAU)}下发（方案四(三)），{who}不能下发")
        return issue_task_order(item, now, automatic=False, command=command)

    if isinstance(command, ReportEnterpriseIssue):
        return _enterprise_issue(item, command, now, day, unit_names, delivered, project)

    if isinstance(command, RerouteItem):
        return reroute(item, command, now, day, unit_names)

    owner = item.responsible_unit
    allowed = {owner}
    if isinstance(command, ResolveBlocker):
        allowed |= {b.resolver for b in item.open_blockers}
    recruiter = project.recruiting_unit if project is not None else None
    if isinstance(command, ReportBlocker) and recruiter is not None:
        # 方案三(二)、四(二)、五(四): the 招引单位 tracks every item and coordinates its 堵点/卡点
        allowed.add(recruiter)
    if command.requested_by not in allowed:
        others = "、".join(_name(unit_names, u) for u in sorted(allowed - {owner}))
        also = ""
        if isinstance(command, ResolveBlocker) and others:
            also = f"（堵点也可由须解决的{others}解除）"
        elif isinstance(command, ReportBlocker) and recruiter is not None:
            also = f"（堵点/卡点也可由项目招引单位{_name(unit_names, recruiter)}报告）"
        return Refused(f"首问负责：事项 {item.item_code}（{item.item_name}）由{_name(unit_names, owner)}负责{also}，"
                       f"{who}不能{action}")
    if item.state is ItemState.WAITING:
        pending = "、".join(item.waiting_for(set(delivered))) or "（前置事项）"
        return Refused(f"事项 {item.item_code} 尚在等待前置事项 {pending} 办结移交，暂不能{action}")

    if isinstance(command, ReportBlocker) and command.resolver not in unit_names:
        return Refused(f"须解决堵点的单位 {command.resolver!r} 不在单位名录（units.yaml）中，请填写单位编码")
    refused = _state_refusal(item, command, action)
    if refused is not None:
        return refused
    if isinstance(command, ContactEnterprise) and command.specialist_name is not None \
            and item.mode is not ServiceMode.ASSIST:
        return Refused(f"事项 {item.item_code}（{item.item_name}）是“{MODE_NAMES_ZH[item.mode]}”事项：服务专员只在"
                       "“帮办代办”事项对接企业时由政务服务局指定（方案四(一)）；“专业跑腿”的服务专员在接收任务单时指定")
    return _apply(item, command, now, day)


# where the ledger takes an enterprise's 堵点 (a waiting item's belongs to what it waits for; a
# suspended one waits for the enterprise itself; a finished one is over): see ``_enterprise_issue``
ENTERPRISE_ISSUE_STATES = (*_ACTIVE, ItemState.BLOCKED)


def _enterprise_issue(item: LedgerItem, command: ReportEnterpriseIssue, now: datetime, day: date,
                      unit_names: Mapping[str, str], delivered: Mapping[str, date],
                      project: ProjectRecord | None) -> Outcome:
    """方案四(二): the enterprise itself reports a 堵点/卡点; the responsible unit must resolve it."""
    sender = command.requested_by
    owner = _name(unit_names, item.responsible_unit)
    if sender in unit_names:
        return Refused(f"“反映堵点/卡点”只能由服务对象企业以统一社会信用代码提交，{_name(unit_names, sender)}是服务单位："
                       "单位发现的堵点请用“报告堵点/卡点”（item.report_blocker）并写明须由哪个单位解决")
    if project is None or sender != project.credit_code:
        whose = f"项目 {item.project_code} 的服务对象{('（' + project.enterprise + '）') if project else ''}"
        return Refused(f"统一社会信用代码 {sender} 不是{whose}的代码，不能就该项目的事项反映堵点/卡点")
    state = item.state
    if state is ItemState.WAITING:
        pending = "、".join(item.waiting_for(set(delivered))) or "（前置事项）"
        return Refused(f"事项 {item.item_code}（{item.item_name}）尚在等待前置事项 {pending} 办结移交，还未开始办理，"
                       "暂不能反映堵点/卡点；如前置事项办理受阻，请就该前置事项反映")
    if state is ItemState.SUSPENDED:
        why = next((p.reason for p in reversed(item.pauses) if p.to_day is None), "")
        return Refused(f"事项 {item.item_code}（{item.item_name}）已中止，正等待企业补正{('：' + why) if why else ''}；"
                       f"补正后由{owner}恢复办理，恢复后仍有堵点/卡点再反映")
    if state is ItemState.COMPLETED:
        return Refused(f"事项 {item.item_code}（{item.item_name}）已于 {item.finished_on} 办结，正待{owner}移交审批结果，"
                       "不能再反映办理中的堵点/卡点")
    if state is ItemState.DELIVERED:
        return Refused(f"事项 {item.item_code}（{item.item_name}）已于 {item.delivered_on} 移交审批结果，办理已结束，"
                       "不能反映堵点/卡点")
    at = command.occurred_at
    event = ItemBlocked(event_id=stable_id(command.request_id, command.type), occurred_at=at, recorded_at=now,
                        project_code=item.project_code, item_code=item.item_code, request=item.request,
                        reported_by=sender, operator=command.operator, request_id=command.request_id,
                        reason=command.reason, resolver=item.responsible_unit)
    blocker = Blocker(id=command.request_id, reason=command.reason, resolver=item.responsible_unit, reported_by=sender,
                      opened_on=day)
    resume_to = item.resume_to if state is ItemState.BLOCKED else state  # another blocker: back where it was before
    return _record(item, event.type, ItemState.BLOCKED, at, now, [event], command.request_id, by=sender,
                   operator=command.operator, resume_to=resume_to, blockers=(*item.blockers, blocker))


# 撤回 (a 补充协议 removed the line): only before a unit accepted (受理) it, also while a 堵点 or a
# suspension holds it there; never once a 服务专员 accepted its task order
WITHDRAWABLE = (ItemState.WAITING, ItemState.READY, ItemState.CONTACTED)


def withdraw(item: LedgerItem, event: PlanAmended, now: datetime, unit_names: Mapping[str, str]) -> Outcome:
    """A 补充协议 removed the line from the plan: it leaves the open work of its unit if no unit has
    accepted (受理) it yet; an accepted or later line is kept, and the reason says so."""
    if event.event_id in item.applied:
        return Duplicate(tuple(e for h in item.history if h.request_id == event.event_id for e in h.events))
    what = f"事项 {item.item_code}（{item.item_name}）"
    state = item.resume_to if item.state in (ItemState.BLOCKED, ItemState.SUSPENDED) else item.state
    if state not in WITHDRAWABLE:
        return Refused(f"{what}当前状态为“{STATE_NAMES_ZH[item.state]}”，已由{_name(unit_names, item.responsible_unit)}"
                       "受理或办理，不能撤回，继续办理至办结移交；如需终止，请与承办单位协商后由企业撤回申请")
    order = item.task_order
    if order is not None and order.state != "issued":
        return Refused(f"{what}的任务单 {order.number} 已由{_name(unit_names, order.assigned_to)}接收（服务专员 "
                       f"{order.specialist_name}），不能撤回，请与其协商后处理")
    day = local_day(now)
    withdrawn = ItemWithdrawn(
        event_id=stable_id(item.key, "item.withdrawn", event.event_id), occurred_at=now, recorded_at=now,
        project_code=item.project_code, item_code=item.item_code, request=item.request, reported_by=ECON_DEV_BUREAU,
        request_id=event.event_id, item_name=item.item_name, responsible_unit=item.responsible_unit,
        agreement_id=event.agreement_id, revision=event.revision, from_state=item.state.value,
        withdrawn_task_order=order.number if order is not None else None)
    return _record(item, withdrawn.type, ItemState.WITHDRAWN, now, now, [withdrawn], event.event_id,
                   finished_on=day, resume_to=None,
                   task_order=order.model_copy(update={"state": "closed", "closed_on": day}) if order else None,
                   blockers=tuple(b if b.closed_on else b.model_copy(update={"closed_on": day}) for b in item.blockers),
                   pauses=tuple(p if p.to_day else p.model_copy(update={"to_day": day}) for p in item.pauses))


# 重新分派 (``zeroerrand rules reroute``): only while no unit has accepted (受理) the item; a blocked or
# suspended item waits for someone, and a task order accepted has a 服务专员 on it
REROUTABLE = (ItemState.WAITING, ItemState.READY, ItemState.CONTACTED)


def reroute(item: LedgerItem, command: RerouteItem, now: datetime, day: date,
            unit_names: Mapping[str, str]) -> Outcome:
    """政务服务局 moves an open item not yet accepted to the unit the active rules name (policy 五(七)).
    The service clock (首问负责) starts again for the new unit on the day of the re-routing (a
    contacted item is ready again); a task order issued but not accepted is withdrawn; the overdue
    levels the old unit's service clock reached are forgotten (the new clock announces its own)."""
    if command.requested_by != GOV_SERVICE_BUREAU:
        return Refused(f"重新分派由{_name(unit_names, GOV_SERVICE_BUREAU)}在修订服务规则后决定（方案五(七)），"
                       f"{_name(unit_names, command.requested_by)}不能重新分派事项 {item.item_code}")
    what = f"事项 {item.item_code}（{item.item_name}）"
    if item.state not in REROUTABLE:
        names = "、".join(STATE_NAMES_ZH[s] for s in REROUTABLE)
        return Refused(f"{what}当前状态为“{STATE_NAMES_ZH[item.state]}”，不能重新分派（只有尚未受理的“{names}”状态可以），"
                       f"仍由{_name(unit_names, item.responsible_unit)}按原规则版本办理")
    order = item.task_order
    if order is not None and order.state != "issued":
        return Refused(f"{what}的任务单 {order.number} 已由{_name(unit_names, order.assigned_to)}接收（服务专员 "
                       f"{order.specialist_name}），不能重新分派，仍由其按原规则版本办理")
    for code in (command.responsible_unit, command.approving_authority, command.evaluator):
        if code not in unit_names:
            return Refused(f"单位 {code!r} 不在单位名录（units.yaml）中，不能把{what}分派给它")
    if (command.mode, command.responsible_unit, command.approving_authority, command.task_order_required) == (
            item.mode, item.responsible_unit, item.approving_authority, item.task_order_required):
        return Refused(f"{what}已由{_name(unit_names, item.responsible_unit)}以同样的方式承办，无需重新分派")
    at = command.occurred_at
    to_state = ItemState.WAITING if item.state is ItemState.WAITING else ItemState.READY
    event = ItemRerouted(
        event_id=stable_id(command.request_id, command.type), occurred_at=at, recorded_at=now,
        project_code=item.project_code, item_code=item.item_code, request=item.request,
        reported_by=command.requested_by, operator=command.operator, request_id=command.request_id,
        item_name=item.item_name, state=to_state.value, from_mode=item.mode, to_mode=command.mode,
        from_unit=item.responsible_unit, to_unit=command.responsible_unit, from_authority=item.approving_authority,
        to_authority=command.approving_authority, task_order_required=command.task_order_required,
        withdrawn_task_order=order.number if order is not None else None, time_limit_days=item.time_limit_days,
        materials=item.materials, rule_id=command.rule_id, from_rules_version=item.rules_version,
        rules_version=command.rules_version, reason=command.reason)
    return _record(item, event.type, to_state, at, now, [event], command.request_id, by=command.requested_by,
                   operator=command.operator, mode=command.mode, responsible_unit=command.responsible_unit,
                   approving_authority=command.approving_authority, evaluated_as=command.evaluated_as,
                   evaluator=command.evaluator, task_order_required=command.task_order_required,
                   rule_id=command.rule_id, rules_version=command.rules_version, task_order=None,
                   ready_on=None if to_state is ItemState.WAITING else day, contacted_on=None,
                   overdue_sent=tuple(s for s in item.overdue_sent if not s.startswith("service:")))


def allowed_from(request_type: str, request: Request) -> tuple[ItemState, ...]:
    """The states a plan line must be in for a request of ``request_type``: an advice-only line is
    never accepted (受理), and is completed straight from ready or contacted."""
    if request is Request.CONSULT and request_type == "item.accept":
        return ()
    if request is Request.CONSULT and request_type == "item.complete":
        return (ItemState.READY, ItemState.CONTACTED)
    return _ALLOWED_FROM[request_type]


def awaits_task_order(request_type: str, task_order_required: bool, order_state: str | None) -> bool:
    """A 专业跑腿 item is contacted, accepted and completed only once its task order is accepted."""
    return request_type in _AFTER_TASK_ORDER and task_order_required and order_state in (None, "issued")


_AFTER_TASK_ORDER = frozenset({"item.contact", "item.accept", "item.complete"})


def _state_refusal(item: LedgerItem, command: ItemCommand, action: str) -> Refused | None:
    allowed = allowed_from(command.type, item.request)
    if isinstance(command, AcceptItem) and item.request is Request.CONSULT:
        return Refused(f"事项 {item.item_code} 仅提供咨询，无需受理；提供咨询后直接办结")
    if item.state not in allowed:
        names = "、".join(STATE_NAMES_ZH[s] for s in allowed)
        return Refused(f"事项 {item.item_code} 当前状态为“{STATE_NAMES_ZH[item.state]}”，不能{action}（只有“{names}”状态可以）")
    order = item.task_order
    if isinstance(command, AcceptTaskOrder):
        if order is None:
            return Refused(f"事项 {item.item_code} 的任务单尚未下发，不能接收")
        if order.state != "issued":
            return Refused(f"任务单 {order.number} 已接收（服务专员 {order.specialist_name}），不能重复接收")
    elif awaits_task_order(command.type, item.task_order_required, None if order is None else order.state):
        step = "尚未下发" if order is None else "尚未接收并指定服务专员"
        return Refused(f"“专业跑腿”事项 {item.item_code} 的任务单{step}，不能{action}")
    return None

_ALLOWED_FROM: dict[str, tuple[ItemState, ...]] = {
    "item.contact": (ItemState.READY,),
    "item.accept": (ItemState.READY, ItemState.CONTACTED),
    "item.report_progress": _WORKING,
    "item.report_blocker": _ACTIVE,
    "item.resolve_blocker": (ItemState.BLOCKED,),
    "item.suspend": _ACTIVE,
    "item.resume": (ItemState.SUSPENDED,),
    "item.complete": _WORKING,
    "item.deliver": (ItemState.COMPLETED,),
    "task_order.accept": _ACTIVE,
}


def _apply(item: LedgerItem, command: ItemCommand, now: datetime, day: date) -> Applied:
    at = command.occurred_at
    common = {"event_id": stable_id(command.request_id, command.type), "occurred_at": at, "recorded_at": now,
              "project_code": item.project_code, "item_code": item.item_code, "request": item.request,
              "reported_by": command.requested_by, "operator": command.operator, "request_id": command.request_id}
    record: dict[str, Any] = {"request_id": command.request_id, "by": command.requested_by,
                              "operator": command.operator}
    if isinstance(command, ContactEnterprise):
        event: Event = ItemContacted(note=command.note, specialist_name=command.specialist_name,
                                     specialist_phone=command.specialist_phone, **common)
        named: dict[str, Any] = {"specialist_name": command.specialist_name,
                                 "specialist_phone": command.specialist_phone} if command.specialist_name else {}
        return _record(item, event.type, ItemState.CONTACTED, at, now, [event], contacted_on=day, **named, **record)
    if isinstance(command, AcceptItem):
        event = ItemAccepted(note=command.note, **common)
        return _record(item, event.type, ItemState.ACCEPTED, at, now, [event], accepted_on=day,
                       contacted_on=item.contacted_on or day, **record)
    if isinstance(command, ReportProgress):
        event = ItemProgress(note=command.note, **common)
        return _record(item, event.type, ItemState.IN_PROGRESS, at, now, [event], **record)
    if isinstance(command, ReportBlocker):
        event = ItemBlocked(reason=command.reason, resolver=command.resolver, **common)
        blocker = Blocker(id=command.request_id, reason=command.reason, resolver=command.resolver,
                          reported_by=command.requested_by, opened_on=day)
        return _record(item, event.type, ItemState.BLOCKED, at, now, [event], resume_to=item.state,
                       blockers=(*item.blockers, blocker), **record)
    if isinstance(command, ResolveBlocker):
        event = ItemUnblocked(note=command.note, resolved=tuple(ResolvedBlocker(reason=b.reason, reported_by=b.reported_by)
                                                                for b in item.open_blockers), **common)
        blockers = tuple(b.model_copy(update={"closed_on": day}) if b.closed_on is None else b for b in item.blockers)
        return _record(item, event.type, item.resume_to or ItemState.IN_PROGRESS, at, now, [event], resume_to=None,
                       blockers=blockers, **record)
    if isinstance(command, SuspendItem):
        event = ItemSuspended(reason=command.reason, **common)
        return _record(item, event.type, ItemState.SUSPENDED, at, now, [event], resume_to=item.state,
                       pauses=(*item.pauses, Pause(from_day=day, reason=command.reason)), **record)
    if isinstance(command, ResumeItem):
        event = ItemResumed(note=command.note, **common)
        pauses = tuple(p.model_copy(update={"to_day": day}) if p.to_day is None else p for p in item.pauses)
        return _record(item, event.type, item.resume_to or ItemState.IN_PROGRESS, at, now, [event], resume_to=None,
                       pauses=pauses, **record)
    if isinstance(command, CompleteItem):
        event = ItemCompleted(note=command.note, **common)
        return _record(item, event.type, ItemState.COMPLETED, at, now, [event], finished_on=day,
                       contacted_on=item.contacted_on or day, **record)
    if isinstance(command, DeliverResults):
        event = ItemDelivered(results=command.results, note=command.note, **common)
        events: list[Event] = [event]
        order = item.task_order
        if order is not None:
            events.append(TaskOrderClosed(**{**common, "event_id": stable_id(command.request_id, "task_order.closed")},
                                          number=order.number))
            order = order.model_copy(update={"state": "closed", "closed_on": day})
        return _record(item, event.type, ItemState.DELIVERED, at, now, events, delivered_on=day,
                       results=command.results, task_order=order, **record)
    if isinstance(command, AcceptTaskOrder):
        assert item.task_order is not None
        event = TaskOrderAccepted(number=item.task_order.number, specialist_name=command.specialist_name,
                                  specialist_phone=command.specialist_phone, **common)
        order = item.task_order.model_copy(update={"state": "accepted", "specialist_name": command.specialist_name,
                                                   "specialist_phone": command.specialist_phone, "accepted_on": day})
        return _record(item, event.type, item.state, at, now, [event], task_order=order, **record)
    raise TypeError(f"not an item request: {command.type}")


# -- clocks and overdue levels ---------------------------------------------------------------


@dataclass(frozen=True)
class ClockReading:
    clock: Clock
    start: date
    end: date | None  # None: still running
    limit: int
    used: int
    due_on: date
    # years without holiday data (neither rules/calendar.yaml nor chinese-calendar) that the working
    # days used, or the due day, were estimated in on Monday–Friday: shown beside the figure, never silent
    used_estimated: tuple[int, ...] = ()
    due_estimated: tuple[int, ...] = ()

    @property
    def late(self) -> bool:
        return self.used > self.limit

    @property
    def estimated(self) -> tuple[int, ...]:
        return tuple(sorted({*self.used_estimated, *self.due_estimated}))


def service_clock_start(item: LedgerItem) -> date | None:
    """From ready; for 专业跑腿, from the task order's issue (政联公司 cannot act before)."""
    if item.task_order_required:
        return item.task_order.issued_on if item.task_order else None
    return item.ready_on


def task_order_clock_end(item: LedgerItem) -> date | None:
    """The task-order clock (经济发展招商服务局's own step) stops when the order is issued, or when the
    line leaves the plan without one."""
    if item.task_order is not None:
        return item.task_order.issued_on
    return item.finished_on


def clock_readings(item: LedgerItem, calendar: WorkingCalendar, today: date, service_days: int,
                   task_order_days: int | None = None) -> dict[str, ClockReading]:
    """Each clock that has started, with the working days used (pauses excluded) and its due day.
    ``task_order_days`` (``evaluation.yaml``'s ``task_order_issue_days``) adds the clock of 经济发展招商服务局
    issuing a 专业跑腿 item's task order, from ready to the order's issue."""
    readings: dict[str, ClockReading] = {}
    pauses = item.pause_spans
    if task_order_days is not None and item.task_order_required and item.ready_on is not None:
        readings["task_order"] = _reading("task_order", item.ready_on, task_order_clock_end(item), task_order_days,
                                          calendar, today, pauses)
    start = service_clock_start(item)
    if start is not None:
        end = item.contacted_on or item.accepted_on or item.finished_on
        readings["service"] = _reading("service", start, end, service_days, calendar, today, pauses)
    if item.accepted_on is not None:
        readings["statutory"] = _reading("statutory", item.accepted_on, item.finished_on, item.time_limit_days,
                                         calendar, today, pauses)
    return readings


def _reading(clock: Clock, start: date, end: date | None, limit: int, calendar: WorkingCalendar, today: date,
             pauses: Sequence[tuple[date, date | None]]) -> ClockReading:
    upto = end or today
    closed = [(a, b if b is not None else upto) for a, b in pauses]
    due_on = calendar.due_date(start, limit, closed)
    return ClockReading(clock=clock, start=start, end=end, limit=limit,
                        used=calendar.working_days_used(start, upto, closed), due_on=due_on,
                        used_estimated=calendar.years_without_data(start, upto) if upto > start else (),
                        due_estimated=calendar.years_without_data(start, due_on))


def running_clock(item: LedgerItem) -> Clock | None:
    """The clock that runs now (a suspended or blocked item keeps the clock of the state it left): a
    专业跑腿 item ready without its task order runs 经济发展招商服务局's task-order clock."""
    state = item.resume_to if item.state in (ItemState.SUSPENDED, ItemState.BLOCKED) else item.state
    if state is ItemState.READY and item.task_order_required and item.task_order is None:
        return "task_order"
    if state is ItemState.READY and service_clock_start(item) is not None:
        return "service"
    if state in _WORKING:
        return "statutory"
    return None


LEVELS = ("warning", "yellow", "red")
"""Overdue levels, mildest first."""


@dataclass(frozen=True)
class Cards:
    """The levels of a running clock as 电子监察 staff read them (``evaluation.yaml``):

    * 预警 (warning): at most ``warning_days`` working days are left before the due day (the due day
      itself included), never on the day the clock starts;
    * 黄牌 (yellow card): the limit has passed (more working days used than the limit), not on the due day;
    * 红牌 (red card): the limit has passed and ``red_ratio`` × the limit is used (1.5: half again as long).
    """

    warning_days: int = 1
    red_ratio: float = 1.5

    def levels(self, used: int, limit: int) -> list[str]:
        """Every level reached after ``used`` working days of a ``limit``-day clock, mildest first."""
        levels = []
        if used >= 1 and limit - used <= self.warning_days:
            levels.append("warning")
        if used > limit:
            levels.append("yellow")
            if used >= limit * self.red_ratio:
                levels.append("red")
        return levels

    def level(self, used: int, limit: int) -> str | None:
        """The level reached now: the highest of :meth:`levels`, or None."""
        found = self.levels(used, limit)
        return found[-1] if found else None


def current_level(item: LedgerItem, readings: Mapping[str, ClockReading], cards: Cards) -> tuple[Clock | None, str | None]:
    """The running clock of an open item and the level it stands at now (None, None once finished):
    what every list, the CLI and the console show, and what the sweep announces."""
    clock = running_clock(item) if item.is_open else None
    if clock is None or clock not in readings:
        return None, None
    reading = readings[clock]
    return clock, cards.level(reading.used, reading.limit)


def overdue(item: LedgerItem, calendar: WorkingCalendar, today: date, service_days: int,
            now: datetime, cards: Cards | None = None, task_order_days: int | None = None) -> Applied | None:
    """Announces the level the running clock has reached, once per clock and level; when a sweep
    finds several new levels at once (a 1-day limit, or no sweep for a while), only the highest is
    announced and the lower ones count as passed."""
    readings = clock_readings(item, calendar, today, service_days, task_order_days)
    clock, level = current_level(item, readings, cards or Cards())
    if clock is None or level is None:
        return None
    reading = readings[clock]
    reached = LEVELS[:LEVELS.index(level) + 1]
    new = [lv for lv in reached if f"{clock}:{lv}" not in item.overdue_sent]
    if level not in new:
        return None
    event = _ledger_event(item, ItemOverdue, f"item.overdue/{clock}/{level}", now, clock=clock, level=level,
                          due_on=reading.due_on, working_days_used=reading.used, time_limit_days=reading.limit,
                          estimated_years=reading.estimated)
    sent = (*item.overdue_sent, *(f"{clock}:{passed}" for passed in new))
    return Applied(item.model_copy(update={"overdue_sent": sent}), (event,))
