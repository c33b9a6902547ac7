"""The evaluation service layer: each message type maps to one function (no ``isinstance`` chains).

Events from the router (``service.started``, and ``item.routed``, which is each routed item's own
message read as that event) open ledger lines. Requests from the units, the enterprise and
operators are checked against the ledger by the pure aggregate; an
applied request is saved, then its events are published; a refused one is recorded with its
reason and ``request.refused`` tells the sender. What the ledger decides by itself (an item
becomes ready, an automatic task order, an overdue level, the project delivered) is published
first and saved after, under ids that stay the same if a crash makes it happen twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import TypeAdapter

from services.common.bus import Publisher, event_out
from services.common.domain import Request
from services.common.messages import (
    AcceptItem,
    AcceptTaskOrder,
    AnyEvent,
    Command,
    CompleteItem,
    ContactEnterprise,
    DeliverResults,
    Event,
    IssueTaskOrder,
    ItemCommand,
    ItemOverdue,
    ItemRouted,
    ItemUnroutable,
    KeptLine,
    Message,
    PlanAmended,
    PlanLine,
    ProjectAmended,
    ProjectDelivered,
    RectifyAssessment,
    ReportBlocker,
    ReportEnterpriseIssue,
    ReportProgress,
    RequestRefused,
    RerouteItem,
    ResolveBlocker,
    ResumeItem,
    RulesActivated,
    RulesRejected,
    ServiceStarted,
    SubmitAssessment,
    SuspendItem,
    stable_id,
)
from services.common.operations import LEDGER_REQUESTS, OVERDUE_EVENTS
from services.evaluation.assessments import (
    decide_assessment,
    decide_rectification,
    rectification_overdue,
    rectified,
    submitted,
)
from services.evaluation.identity import NOT_GIVEN, refusal, unit_systems
from services.evaluation.identity import Publisher as Sender
from services.evaluation.ledger import (
    AmendmentRecord,
    Applied,
    Duplicate,
    ItemState,
    LedgerItem,
    ProjectRecord,
    Refused,
    RequestOutcome,
    become_ready,
    decide,
    facts_text,
    issue_task_order,
    item_key,
    new_item,
    overdue,
    rules_record,
    unroutable_record,
    withdraw,
)
from services.evaluation.repository import LedgerRepository, UnknownSubject
from services.evaluation.scoring import RATER_NAMES_ZH, EvaluationConfig
from services.evaluation.working_days import WorkingCalendar

log = logging.getLogger(__name__)
_EVENTS = TypeAdapter[Any](AnyEvent)
# A request that loses a line to another process reads the line again at once (the loser's repository
# has brought it up to date) and decides again; after a few losses in a row it also waits a little,
# jittered, so that two processes that keep colliding drift apart. With two processes writing one
# line flat out, a request loses each attempt about half the time: 40 attempts make a refusal for
# that reason practically impossible, while a line that never settles still ends in one.
_RETRIES = 40
_BACKOFF_S = 0.001  # times the attempts past the third, at most 20 ms


class LedgerBusy(RuntimeError):
    """A line changed under a request at every attempt (another process kept writing it): the
    request goes back to the queue and is decided again later, or is refused on its last delivery."""


class ProjectLocks:
    """One writer per project within this process: requests, the router's lines and the sweep take
    a project's lock before they read what they decide on, so the coroutines of one process never
    race each other for a version. Other processes (more evaluation services on the same store) can
    still race; the journal decides those (repository.py). A lock exists while someone holds or
    awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, project_code: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(project_code, (asyncio.Lock(), 0))
        self._locks[project_code] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[project_code]
            if users == 1:
                del self._locks[project_code]
            else:
                self._locks[project_code] = (lock, users - 1)


@dataclass
class Ledger:
    """What the handlers work with: the repository, the publisher, the calendar and the rules."""

    repo: LedgerRepository
    publisher: Publisher
    calendar: WorkingCalendar
    config: EvaluationConfig
    unit_names: Mapping[str, str]
    # RabbitMQ user of a unit's own system → its unit (ZEROERRAND_EVALUATION_UNIT_SYSTEMS, identity.py)
    unit_systems: Mapping[str, str] = field(default_factory=unit_systems)
    locks: ProjectLocks = field(default_factory=ProjectLocks)


async def _publish(ledger: Ledger, events: Sequence[Event]) -> None:
    if events:
        await ledger.publisher.publish_all([event_out(e) for e in events])


async def _save(ledger: Ledger, updated: LedgerItem, previous: LedgerItem) -> LedgerItem | None:
    """Saves as the version after ``previous``; the stored item, or None if another writer came first."""
    if await ledger.repo.save_item(updated, previous):
        return updated.model_copy(update={"version": previous.version + 1})
    return None


# -- events from the router --------------------------------------------------------------------


async def on_service_started(event: ServiceStarted, ledger: Ledger, now: datetime, final: bool) -> str:
    project = event.project
    known = await ledger.repo.project(project.code)
    if known is not None and known.agreement_id != event.agreement_id:  # the router takes one per project
        log.warning("project %s: service.started of agreement %s ignored, the project's record is agreement %s's "
                    "(one project, one record: a 补充协议 comes as agreement.amended)", project.code,
                    event.agreement_id, known.agreement_id)
        return "ignored"
    await ledger.repo.add_project(ProjectRecord(
        code=project.code, agreement_id=event.agreement_id, name=project.name, enterprise=project.enterprise.name,
        credit_code=project.enterprise.credit_code, recruiting_unit=project.recruiting_unit, signed_on=event.signed_on,
        ledger_owner=event.ledger_owner, items_planned=event.items_planned, items_routed=event.items_routed,
        items_unroutable=event.items_unroutable, rules_version=event.rules_version, started_at=event.occurred_at,
        recorded_at=now, facts_json=facts_text(project.facts)))
    return "recorded"


async def on_rules_event(event: RulesActivated | RulesRejected, ledger: Ledger, now: datetime, final: bool) -> str:
    """The history of the routing rules, for 政务服务局 (kept once per event id)."""
    added = await ledger.repo.add_rules_event(rules_record(event, now))
    return "recorded" if added else "duplicate"


async def on_item_unroutable(event: ItemUnroutable, ledger: Ledger, now: datetime, final: bool) -> str:
    """A planned item no rule could place, for 政务服务局 (kept once per event id)."""
    added = await ledger.repo.add_unroutable(unroutable_record(event, now))
    return "recorded" if added else "duplicate"


async def on_item_routed(event: ItemRouted, ledger: Ledger, now: datetime, final: bool) -> str:
    """A new ledger line; ready at once unless a prerequisite is still to be delivered (a redelivery
    finishes what a crash left undone)."""
    item = new_item(event)
    async with ledger.locks.hold(item.project_code):
        added = await ledger.repo.add_item(item)
        items = await ledger.repo.project_items(item.project_code)
        stored = next((i for i in items if i.key == item.key), item)
        await _promote(stored, _delivered(items), ledger, now)
    return "recorded" if added else "duplicate"


def _delivered(items: Sequence[LedgerItem]) -> dict[str, date]:
    """The handled lines delivered so far, by item code (an advice-only line satisfies no prerequisite);
    a line a 补充协议 withdrew counts from its withdrawal: it is no longer planned, and an item does
    not wait for one that is not planned."""
    return {i.item_code: day for i in items if i.request is Request.HANDLE and (day := _done_on(i)) is not None}


def _done_on(item: LedgerItem) -> date | None:
    if item.state is ItemState.DELIVERED:
        return item.delivered_on
    return item.finished_on if item.state is ItemState.WITHDRAWN else None


# -- 补充协议 -------------------------------------------------------------------------------------


async def on_plan_amended(event: PlanAmended, ledger: Ledger, now: datetime, final: bool) -> str:
    """A 补充协议 the router took: the lines it removed are withdrawn unless a unit has accepted them
    (each claimed by its journal entry, as a request would be), then the project's record takes the
    plan as amended, the amendment is recorded (once) and ``project.amended`` says what changed.
    A redelivery announces what was recorded."""
    code = event.project.code
    async with ledger.locks.hold(code):
        for stored in await ledger.repo.amendments(code):
            if stored.event_id == event.event_id:
                await _publish(ledger, [ProjectAmended.model_validate(stored.announced)])
                return "duplicate"
        project = await ledger.repo.project(code)
        if project is None and not final:
            raise UnknownSubject(f"project {code} not in the ledger yet")
        withdrawn: list[PlanLine] = []
        kept: list[KeptLine] = []
        for line in event.removed:
            outcome = await _withdraw_line(item_key(code, line.item_code, line.request), line, event, ledger, now)
            if isinstance(outcome, KeptLine):
                kept.append(outcome)
            else:
                withdrawn.append(outcome)
        announced = ProjectAmended(
            event_id=stable_id(event.event_id, "project.amended"), occurred_at=event.occurred_at, recorded_at=now,
            project_code=code, agreement_id=event.agreement_id, revision=event.revision, signed_on=event.signed_on,
            recruiting_unit=event.project.recruiting_unit, previous_recruiting_unit=event.previous_recruiting_unit,
            added=event.added, withdrawn=tuple(withdrawn), kept=tuple(kept), items_planned=event.items_planned)
        record = AmendmentRecord(
            event_id=event.event_id, project_code=code, agreement_id=event.agreement_id, revision=event.revision,
            signed_on=event.signed_on, recruiting_unit=event.project.recruiting_unit,
            previous_recruiting_unit=event.previous_recruiting_unit, items_planned=event.items_planned,
            project_name=event.project.name, facts_json=facts_text(event.project.facts),
            announced=announced.model_dump(mode="json"), recorded_at=now)
        added = await ledger.repo.add_amendment(record)
        if project is not None:
            await _amend_project(project, ledger)
        await _publish(ledger, [announced])
        await settle(code, ledger, now)  # what waited for a withdrawn line; the project closed if all is done
    log.log(logging.INFO if not kept else logging.WARNING,
            "project %s amended by %s (revision %d): %d added, %d withdrawn, %d kept (accepted or later: %s)",
            code, event.agreement_id, event.revision, len(event.added), len(withdrawn), len(kept),
            ", ".join(k.item_code for k in kept) or "none")
    return "recorded" if added else "duplicate"


async def _amend_project(project: ProjectRecord, ledger: Ledger) -> None:
    """The project's record as its applied amendments leave it: derived from all of them, so a
    write from an older amendment that lands last (the embedded store) is undone by the next look."""
    while True:
        amendments = await ledger.repo.amendments(project.code)
        if not amendments:
            return
        latest = amendments[-1]
        await ledger.repo.amend_project(project.model_copy(update={
            "name": latest.project_name, "recruiting_unit": latest.recruiting_unit,
            "items_planned": latest.items_planned, "facts_json": latest.facts_json, "revision": latest.revision,
            "amendments": tuple(a.agreement_id for a in amendments)}))
        if [a.revision for a in await ledger.repo.amendments(project.code)][-1] == latest.revision:
            return


async def _withdraw_line(key: str, line: PlanLine, event: PlanAmended, ledger: Ledger,
                         now: datetime) -> PlanLine | KeptLine:
    """Withdraws one line (or finds it withdrawn by this amendment already); a line never routed
    (it was unroutable) has nothing to withdraw."""
    for _attempt in range(_RETRIES):
        item = await ledger.repo.item(key)
        if item is None:
            return line
        outcome = withdraw(item, event, now, ledger.unit_names)
        if isinstance(outcome, Refused):
            return KeptLine(item_code=item.item_code, item_name=item.item_name, request=item.request,
                            state=item.state.value, reason=outcome.reason)
        if isinstance(outcome, Duplicate):
            await _publish(ledger, [_EVENTS.validate_python(e) for e in outcome.events])
        elif await _save(ledger, outcome.item, item) is None:
            continue  # another writer changed the line: decide again on what is stored now
        else:
            await _publish(ledger, outcome.events)
        return line.model_copy(update={"item_name": item.item_name, "responsible_unit": item.responsible_unit})
    raise LedgerBusy(f"line {key} changed at each of {_RETRIES} attempts to withdraw it")


# -- what the ledger decides by itself -----------------------------------------------------------


async def settle(project_code: str, ledger: Ledger, now: datetime) -> None:
    """Makes ready what no longer waits (issuing task orders when the rules say so) and closes the
    project once every line is delivered. Idempotent: a redelivered request runs it again."""
    items = await ledger.repo.project_items(project_code)
    delivered = _delivered(items)
    for item in items:
        await _promote(item, delivered, ledger, now)
    if items and all(i.state in (ItemState.DELIVERED, ItemState.WITHDRAWN) for i in items) \
            and any(i.state is ItemState.DELIVERED for i in items):
        project = await ledger.repo.project(project_code)
        if project is not None and project.delivered_at is None:
            event = ProjectDelivered(event_id=stable_id(project_code, "project.delivered"), occurred_at=now,
                                     recorded_at=now, project_code=project_code,
                                     items_delivered=sum(i.state is ItemState.DELIVERED for i in items))
            await _publish(ledger, [event])
            await ledger.repo.close_project(project_code, now)


async def _promote(item: LedgerItem, delivered: Mapping[str, date], ledger: Ledger, now: datetime) -> None:
    """``waiting`` → ``ready`` if nothing is pending; then the automatic task order, if the rules say so."""
    current: LedgerItem | None = item
    ready = become_ready(item, delivered, now)
    if ready is not None:
        await _publish(ledger, ready.events)
        current = await _save(ledger, ready.item, item)
    if (current is not None and ledger.config.auto_issue_task_orders and current.state is ItemState.READY
            and current.task_order_required and current.task_order is None):
        issued = issue_task_order(current, now, automatic=True)
        if isinstance(issued, Applied):
            await _publish(ledger, issued.events)
            await _save(ledger, issued.item, current)


async def sweep(ledger: Ledger, today: date, now: datetime) -> list[Event]:
    """Announces each overdue level the running clock of an open item has reached, once per clock
    and level, and each 差评 of this year or the last not rectified by its deadline, once. Also
    makes ready any waiting item whose prerequisites are all delivered (a safety net: the request
    that delivered the last one does it, unless it failed for good), with one look-up of those
    prerequisites for all waiting items."""
    announced: list[Event] = await _remind_rectifications(ledger, today, now)
    waiting: list[LedgerItem] = []
    for item in await ledger.repo.open_items():
        if item.state is ItemState.WAITING:
            waiting.append(item)
            continue
        if overdue(item, ledger.calendar, today, ledger.config.service_response_days, now, ledger.config.cards,
                   ledger.config.task_order_issue_days) is None:
            continue
        async with ledger.locks.hold(item.project_code):
            # judged again on the line as it is now: a request may have finished it since the look-up,
            # and its warning must not go out
            current = await ledger.repo.item(item.key)
            found = None if current is None else overdue(current, ledger.calendar, today,
                                                          ledger.config.service_response_days, now,
                                                          ledger.config.cards, ledger.config.task_order_issue_days)
            if current is None or found is None:
                continue
            await _publish(ledger, found.events)
            saved = await _save(ledger, found.item, current)
        if saved is not None:
            announced.extend(found.events)
            for event in found.events:
                if isinstance(event, ItemOverdue):
                    OVERDUE_EVENTS.labels(level=event.level).inc()
    needed = sorted({item_key(i.project_code, code) for i in waiting for code in i.requires})
    done = {i.key: day for i in await ledger.repo.items(needed) if (day := _done_on(i)) is not None}
    for item in waiting:
        delivered = {code: d for code in item.requires if (d := done.get(item_key(item.project_code, code))) is not None}
        async with ledger.locks.hold(item.project_code):
            await _promote(item, delivered, ledger, now)
    return announced


async def _remind_rectifications(ledger: Ledger, today: date, now: datetime) -> list[Event]:
    """Published first, then recorded as sent: a crash between the two sends it again with the same
    event id, which the notifier takes once; two sweeps at once likewise."""
    assessments = [a for year in (today.year - 1, today.year) for a in await ledger.repo.assessments(year)]
    sent: list[Event] = []
    for event in rectification_overdue(assessments, await ledger.repo.reminders(), today, now):
        await _publish(ledger, [event])
        if await ledger.repo.add_reminder(event.event_id):
            sent.append(event)
    return sent


# -- requests ---------------------------------------------------------------------------------


async def on_request(command: Command, ledger: Ledger, now: datetime, final: bool,
                     publisher: str | Sender | None = NOT_GIVEN) -> str:
    """Every request: claimed under its id first (the same request again is replayed, another one
    reusing the id is refused), refused if ``publisher`` (the message's validated AMQP ``user_id``)
    is a unit's system speaking for another unit (identity.py), then checked against the ledger by
    its own handler."""
    body = command.model_dump(mode="json")
    fingerprint = hashlib.sha256(command.model_dump_json().encode()).hexdigest()
    claimed = await ledger.repo.claim(RequestOutcome(
        request_id=command.request_id, request_type=command.type, requested_by=command.requested_by,
        fingerprint=fingerprint, status="pending", request=body, recorded_at=now))
    where = _subject(command)
    if claimed.fingerprint != fingerprint:
        reason = (f"请求编号 {command.request_id} 已用于另一个请求（{claimed.request_type}，{claimed.requested_by}），"
                  "每个请求须使用新的编号")
        await _tell_refused(command, reason, ledger, now, stable_id(command.request_id, "request.refused", fingerprint),
                            **where)
        return "refused"
    if claimed.status == "refused":  # told again: its event may not have gone out before a crash
        await _tell_refused(command, claimed.reason or "", ledger, now, **where)
        return "refused"
    impostor = refusal(publisher, command.requested_by, ledger.unit_systems)
    if impostor is not None:
        if claimed.status == "pending":
            return await _refuse(command, impostor, ledger, now, **where)
        # the same request was applied before, sent by whom it may: a copy from another sender
        # changes nothing, and its outcome stays the first sender's
        log.warning("request %s (%s) sent again by %s, not allowed to send it: ignored", command.request_id,
                    command.type, publisher)
        return "refused"
    return await REQUEST_HANDLERS[type(command)](command, ledger, now, final)


def _subject(command: Command) -> dict[str, str | None]:
    return {"project_code": getattr(command, "project_code", None), "item_code": getattr(command, "item_code", None)}


async def _refuse(command: Command, reason: str, ledger: Ledger, now: datetime, project_code: str | None = None,
                  item_code: str | None = None) -> str:
    await ledger.repo.record_outcome(command.request_id, "refused", reason)
    await _tell_refused(command, reason, ledger, now, project_code=project_code, item_code=item_code)
    log.info("request %s (%s by %s) refused: %s", command.request_id, command.type, command.requested_by, reason)
    return "refused"


async def _tell_refused(command: Command, reason: str, ledger: Ledger, now: datetime, event_id: str | None = None,
                        project_code: str | None = None, item_code: str | None = None) -> None:
    await _publish(ledger, [RequestRefused(
        event_id=event_id or stable_id(command.request_id, "request.refused"), occurred_at=now, recorded_at=now,
        request_id=command.request_id, request_type=command.type, requested_by=command.requested_by,
        operator=command.operator, project_code=project_code, item_code=item_code, reason=reason)])


async def _applied(command: Command, events: Sequence[Event], ledger: Ledger) -> str:
    await ledger.repo.record_outcome(command.request_id, "applied", events=[e.event_id for e in events])
    return "applied"


def _unknown(what: str, final: bool) -> str:
    """Not in the ledger yet: retried (it may be on its way), refused on the last attempt."""
    if not final:
        raise UnknownSubject(what)
    return what


async def on_item_request(command: ItemCommand, ledger: Ledger, now: datetime, final: bool) -> str:
    async with ledger.locks.hold(command.project_code):
        return await _decide_item_request(command, ledger, now, final)


async def _decide_item_request(command: ItemCommand, ledger: Ledger, now: datetime, final: bool) -> str:
    """Decides on the line as stored; if another process stored a new version meanwhile, decides
    again on that one (bounded, with a growing jittered pause between attempts)."""
    where = {"project_code": command.project_code, "item_code": command.item_code}
    for attempt in range(_RETRIES):
        if attempt > 3:
            await asyncio.sleep(random.uniform(0, min(_BACKOFF_S * attempt, 0.02)))
        lines = [i for i in await ledger.repo.lines(command.project_code, command.item_code)
                 if command.request is None or i.request is command.request]
        if not lines:
            reason = _unknown(f"台账中没有项目 {command.project_code} 的事项 {command.item_code}"
                              f"{'（' + command.request.value + '）' if command.request else ''}", final)
            return await _refuse(command, reason, ledger, now, **where)
        if len(lines) > 1:
            return await _refuse(command, f"项目 {command.project_code} 的事项 {command.item_code} 同时有“办理”和“仅咨询”"
                                          "两条，请指明是哪一条（request: handle 或 consult）", ledger, now, **where)
        item = lines[0]
        # the project's other lines matter only for what a waiting line waits for, an enterprise's
        # 堵点 and a re-routing; most requests decide on the line alone
        needs_project = item.state is ItemState.WAITING or isinstance(command, (ReportEnterpriseIssue, RerouteItem))
        items = await ledger.repo.project_items(command.project_code) if needs_project else [item]
        project = None
        # only the project's enterprise may send an enterprise issue; its 招引单位 may also report a blocker
        if isinstance(command, (ReportEnterpriseIssue, ReportBlocker)):
            project = await ledger.repo.project(command.project_code)
            if project is None and isinstance(command, ReportEnterpriseIssue):
                reason = _unknown(f"台账中没有项目 {command.project_code}", final)
                return await _refuse(command, reason, ledger, now, **where)
        outcome = decide(item, command, now, ledger.unit_names, _delivered(items), project)
        if isinstance(outcome, Refused):
            return await _refuse(command, outcome.reason, ledger, now, **where)
        if isinstance(outcome, Duplicate):  # applied before: announce it again, finish what followed
            events = [_EVENTS.validate_python(e) for e in outcome.events]
            await _publish(ledger, events)
            await settle(command.project_code, ledger, now)
            await _applied(command, events, ledger)
            return "duplicate"
        if await _save(ledger, outcome.item, item) is None:
            continue  # another request changed the item: decide again on what is stored now
        await _publish(ledger, outcome.events)
        if outcome.item.state is ItemState.DELIVERED:
            await settle(command.project_code, ledger, now)
        if isinstance(command, RerouteItem):  # now an errand item: its task order, if issued automatically
            stored = await ledger.repo.item(outcome.item.key)
            if stored is not None:
                await _promote(stored, _delivered(items), ledger, now)
        return await _applied(command, outcome.events, ledger)
    if not final:
        raise LedgerBusy(f"item {command.project_code}/{command.item_code} changed at each of {_RETRIES} attempts "
                         f"to decide {command.request_id}")
    return await _refuse(command, f"项目 {command.project_code} 的事项 {command.item_code} 正被同时修改，{_RETRIES} 次尝试均未能"
                                  "在最新状态上作出决定，请稍后重新提交", ledger, now, **where)


async def on_assessment(command: SubmitAssessment, ledger: Ledger, now: datetime, final: bool) -> str:
    stored = await ledger.repo.assessment(command.request_id)
    if stored is not None:  # this very request was applied before a crash: announce what is stored
        event = submitted(stored)
        await _publish(ledger, [event])
        await _applied(command, [event], ledger)
        return "duplicate"
    project = await ledger.repo.project(command.project_code)
    if project is None:
        reason = _unknown(f"台账中没有项目 {command.project_code}", final)
        return await _refuse(command, reason, ledger, now, project_code=command.project_code)
    items = await ledger.repo.project_items(command.project_code)
    existing = await ledger.repo.find_assessment(command.project_code, command.provider, command.rater, command.year)
    decided = decide_assessment(command, project, items, existing, ledger.config, ledger.calendar, now,
                                ledger.unit_names)
    if isinstance(decided, Refused):
        return await _refuse(command, decided.reason, ledger, now, project_code=command.project_code)
    assessment, event = decided
    if not await ledger.repo.add_assessment(assessment):  # another 测评 of the same rater group came first
        return await _refuse(command, f"{RATER_NAMES_ZH[command.rater]}已提交过对该单位在项目 {command.project_code} 的 "
                                      f"{command.year} 年度测评，每年每类评价人只测评一次", ledger, now,
                             project_code=command.project_code)
    await _publish(ledger, [event])
    return await _applied(command, [event], ledger)


async def on_rectification(command: RectifyAssessment, ledger: Ledger, now: datetime, final: bool) -> str:
    assessment = await ledger.repo.assessment(command.assessment_id)
    if assessment is None:
        reason = _unknown(f"台账中没有测评 {command.assessment_id}", final)
        return await _refuse(command, reason, ledger, now)
    if assessment.rectified_by_request == command.request_id:  # applied before a crash: announce it again
        event = rectified(assessment)
        await _publish(ledger, [event])
        await _applied(command, [event], ledger)
        return "duplicate"
    decided = decide_rectification(command, assessment, now, ledger.unit_names)
    if isinstance(decided, Refused):
        return await _refuse(command, decided.reason, ledger, now, project_code=assessment.project_code)
    updated, event = decided
    if not await ledger.repo.rectify_assessment(updated):
        return await _refuse(command, f"测评 {assessment.assessment_id} 已整改", ledger, now,
                             project_code=assessment.project_code)
    await _publish(ledger, [event])
    return await _applied(command, [event], ledger)


Handler = Callable[[Any, Ledger, datetime, bool], Awaitable[str]]

ITEM_REQUESTS: tuple[type[ItemCommand], ...] = (
    ContactEnterprise, AcceptItem, ReportProgress, ReportBlocker, ReportEnterpriseIssue, ResolveBlocker, SuspendItem,
    ResumeItem, CompleteItem, DeliverResults, IssueTaskOrder, AcceptTaskOrder, RerouteItem)
REQUEST_HANDLERS: dict[type[Command], Handler] = {
    **{request: on_item_request for request in ITEM_REQUESTS},
    SubmitAssessment: on_assessment,
    RectifyAssessment: on_rectification,
}
HANDLERS: dict[type[Message], Handler] = {
    ServiceStarted: on_service_started,
    PlanAmended: on_plan_amended,
    ItemRouted: on_item_routed,
    ItemUnroutable: on_item_unroutable,
    RulesActivated: on_rules_event,
    RulesRejected: on_rules_event,
    **dict.fromkeys(REQUEST_HANDLERS, on_request),
}


async def handle(message: Message, ledger: Ledger, now: datetime, final: bool = True,
                 publisher: str | Sender | None = NOT_GIVEN) -> str:
    """Records one message in the ledger; returns what happened (for logs and tests). Events the
    ledger itself published, and those of no concern to it, are ignored."""
    handler = HANDLERS.get(type(message))
    if handler is None:
        return "ignored"
    if handler is on_request and isinstance(message, Command):
        outcome = await on_request(message, ledger, now, final, publisher)
    else:
        outcome = await handler(message, ledger, now, final)
    if type(message) in REQUEST_HANDLERS:
        LEDGER_REQUESTS.labels(outcome=outcome).inc()
    return outcome
