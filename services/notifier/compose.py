"""Turning one event into the notifications the plan asks for. Pure: no I/O.

The handler looks up what the event itself does not carry (the project and the item, from the
notifier's read model) and passes it in.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from services.common.access import access_link
from services.common.domain import (
    ECON_DEV_BUREAU,
    MODE_NAMES_ZH,
    OVERDUE_LEVEL_NAMES_ZH,
    REQUEST_NAMES_ZH,
    CatalogItem,
    Request,
    Unit,
    estimated_note,
)
from services.common.messages import (
    AgreementRejected,
    AssessmentRectificationOverdue,
    AssessmentRectified,
    AssessmentSubmitted,
    Enterprise,
    Event,
    ItemAccepted,
    ItemBlocked,
    ItemContacted,
    ItemDelivered,
    ItemEvent,
    ItemOverdue,
    ItemReady,
    ItemRerouted,
    ItemResumed,
    ItemRouted,
    ItemSuspended,
    ItemUnblocked,
    ItemUnroutable,
    ItemWithdrawn,
    PlanLine,
    ProjectAmended,
    ProjectDelivered,
    RequestRefused,
    RulesActivated,
    RulesRejected,
    ServiceStarted,
    TaskOrderAccepted,
    TaskOrderClosed,
    TaskOrderIssued,
    stable_id,
)
from services.common.rule_files import FactSpec, facts_in_words
from services.common.settings import ConsoleSettings
from services.notifier.channels import INBOX
from services.notifier.plan import UNIT_PREFIX, Email, NotificationPlan, PlanEntry, Sms, Webhook

REQUESTS = {Request.HANDLE: "办理", Request.CONSULT: "提供咨询"}
WITHDRAWN_FROM = {"waiting": "等待前置事项", "ready": "待对接企业", "contacted": "已对接企业", "blocked": "堵点/卡点",
                  "suspended": "中止（等待企业补正）"}
CLOCK_NAMES = {"task_order": "任务单下发时限", "service": "首问响应时限", "statutory": "承诺办理时限"}
RATER_NAMES = {"enterprise": "服务对象", "recruiting_unit": "项目招引单位"}


def rectification_effect(weight: float) -> str:
    """What a 差评's rectification does to the annual evaluation, as the weights in force make it:
    the 差评整改率 counts in the score only with a weight above 0 (``evaluation.yaml``)."""
    if weight > 0:
        return f"差评按期整改率按 {weight * 100:g}% 的权重计入年度综合评价总分。"
    return "整改情况在年度综合评价报告中列出（逾期整改单列）；差评按期整改率仅供参考，不计入总分。"
WITH_PROJECT = (ItemUnroutable, ItemEvent, ProjectDelivered, AssessmentSubmitted, AssessmentRectified,
                AssessmentRectificationOverdue, RequestRefused,
                ProjectAmended)


def _page_of(event: Event) -> str:
    """The console page (a path) where staff act on ``event``: the item's page for an item (issue or
    accept its task order, resolve its 堵点, move it on), the 差评 page for a 测评, the project's page
    for a project, the unroutable items for one no rule could place."""
    consult = getattr(getattr(event, "item", event), "request", None) is Request.CONSULT
    return page_for(event.type, project_code_of(event), item_code_of(event), consult)


def page_for(event_type: str, project: str | None, item: str | None, consult: bool = False) -> str:
    """The console page of a notice of ``event_type`` about ``project`` (and ``item``): see ``_page_of``."""
    if event_type.startswith("assessment."):
        return "/rectify"
    if event_type == "item.unroutable":
        return "/unroutable"
    if event_type.startswith("rules."):
        return "/rules"
    if event_type == "agreement.rejected":  # nothing of it is in the ledger: the notice says it all
        return "/inbox"
    if project and item:
        return f"/items/{quote(project, safe='')}/{quote(item, safe='')}" + ("?consult=true" if consult else "")
    if project:
        return f"/projects/{quote(project, safe='')}"
    return "/inbox"


class MissingContext(LookupError):
    """The event names a project or item the notifier has not heard of (yet)."""


@dataclass(frozen=True)
class ProjectView:
    code: str
    name: str
    enterprise: Enterprise
    recruiting_unit: str


@dataclass(frozen=True)
class ItemView:
    project_code: str
    item_code: str
    item_name: str
    responsible_unit: str


@dataclass(frozen=True)
class Recipient:
    role: str
    key: str  # e.g. unit:gov_service_bureau, enterprise:<credit code>, role:operators
    name: str
    channels: tuple[tuple[str, str | None], ...]  # (channel, address)


def numbered(lines: Sequence[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def project_code_of(event: Event) -> str | None:
    if isinstance(event, (ServiceStarted, AgreementRejected)):
        return event.project.code
    if isinstance(event, ItemRouted):
        return event.item.project_code
    if isinstance(event, WITH_PROJECT):
        return event.project_code
    return None


def item_code_of(event: Event) -> str | None:
    if isinstance(event, ItemRouted):
        return event.item.item_code
    if isinstance(event, (ItemUnroutable, ItemEvent, RequestRefused)):
        return event.item_code
    return None


class Composer:
    """``console`` gives the enterprise's link to its project in the web console (``console_link``;
    default: ``ConsoleSettings()`` from the environment). ``unavailable`` names the external
    channels that have no server configured, with the reason: their notifications are stored
    ``failed`` with it at once, never queued for attempts that cannot succeed."""

    def __init__(self, plan: NotificationPlan, units: Mapping[str, Unit],
                 catalog: Mapping[str, CatalogItem] | None = None, console: ConsoleSettings | None = None,
                 unavailable: Mapping[str, str] | None = None, project_facts: Mapping[str, FactSpec] | None = None) -> None:
        self.plan, self.units, self.catalog = plan, units, catalog or {}
        self.project_facts = project_facts or {}  # their Chinese labels name the facts a decision tested
        self.console = console if console is not None else ConsoleSettings()
        self.unavailable = dict(unavailable or {})

    def console_link(self, project_code: str) -> str:
        """The link of the enterprise's notices about ``project_code`` (it carries the access code)."""
        return access_link(self.console.public_url, self.console.secret_key.get_secret_value(), project_code)

    def items_named(self, codes: Sequence[str]) -> str:
        """Item codes as the enterprise reads them: 名称（编码）."""
        return "、".join(f"{self.catalog[c].name}（{c}）" if c in self.catalog else c for c in codes)

    def console_page(self, path: str) -> str:
        """The address of a console page staff sign in to (where the action a notice asks for is done)."""
        return f"{self.console.public_url.rstrip('/')}{path}"

    def unit_name(self, code: str) -> str:
        unit = self.units.get(code)
        return unit.name if unit else code

    def unit_contact(self, code: str) -> str:
        """Whom the enterprise reaches at a unit (directory.yaml: contact and phone), or the unit's name."""
        contact = self.plan.directory.units.get(code)
        if contact is None:
            return self.unit_name(code)
        return contact.contact + (f"，电话 {contact.phone}" if contact.phone else "")

    def compose(self, event: Event, project: ProjectView | None, item: ItemView | None,
                now: datetime) -> list[dict[str, Any]]:
        """The notification documents for ``event`` (empty if the plan has none for its type)."""
        event_type: str = event.type
        entries = self.plan.entries.get(event_type, ())
        if not entries:
            return []
        context, roles, flags = self._context(event, project, item)
        documents = []
        for entry in entries:
            if not entry.applies(flags):
                continue
            for recipient in self._recipients(entry.to, roles):
                documents.extend(self._documents(event, entry, recipient, context, now))
        return documents

    def _documents(self, event: Event, entry: PlanEntry, recipient: Recipient, context: Mapping[str, Any],
                   now: datetime) -> list[dict[str, Any]]:
        """One document per channel of ``recipient`` for one entry of the plan."""
        event_type: str = event.type
        title = string.Template(entry.title).safe_substitute(context).strip()
        body = string.Template(entry.body).safe_substitute(context).strip()
        documents = []
        for channel, address in recipient.channels:
            inbox = channel == INBOX
            reason = self.unavailable.get(channel)
            documents.append({
                # one per event, role, recipient and channel: a unit that is both the recruiting
                # unit and the ledger owner gets both messages; a redelivery gets none again
                "_id": stable_id(event.event_id, entry.to, recipient.key, channel, address or ""),
                "event_id": event.event_id, "event_type": event_type,
                "project_code": project_code_of(event), "item_code": item_code_of(event),
                "role": recipient.role, "recipient": recipient.key, "recipient_name": recipient.name,
                "channel": channel, "address": address, "title": title, "body": body,
                # an inbox notification is delivered when its recipient reads it (read_at);
                # one of another channel when its receiver accepts it, sent by the delivery loop
                "status": "unread" if inbox else "failed" if reason else "pending",
                "attempts": 0, "last_error": reason, "created_at": now, "updated_at": now,
                "delivered_at": None, "read_at": None, "next_attempt_at": None if inbox or reason else now,
            })
        return documents

    # -- recipients --------------------------------------------------------------------------

    def _channels(self, specs: Sequence[Any]) -> tuple[tuple[str, str | None], ...]:
        def channel(spec: Any) -> tuple[str, str | None]:
            if isinstance(spec, Webhook):
                return "webhook", spec.webhook
            if isinstance(spec, Email):
                return "email", spec.email
            if isinstance(spec, Sms):
                return "sms", spec.sms
            return INBOX, None
        return tuple(channel(s) for s in specs)

    def _unit(self, role: str, code: str) -> Recipient:
        contact = self.plan.directory.units.get(code)
        specs = contact.channels if contact else self.plan.directory.default_channels
        name = self.unit_name(code) + (f"（{contact.contact}）" if contact else "")
        return Recipient(role, UNIT_PREFIX + code, name, self._channels(specs))

    def _recipients(self, to: str, roles: Mapping[str, Any]) -> list[Recipient]:
        """Whom ``to`` names here: a role held by several units (the evaluators of a provider that
        served a project in modes evaluated by different departments) names each of them."""
        target = roles.get(to)
        if isinstance(target, tuple):
            return [self._unit(to, str(code)) for code in target]
        recipient = self._recipient(to, roles)
        return [] if recipient is None else [recipient]

    def _recipient(self, to: str, roles: Mapping[str, Any]) -> Recipient | None:
        if to.startswith(UNIT_PREFIX):
            return self._unit(to, to.removeprefix(UNIT_PREFIX))
        if to == "operators":
            contact = self.plan.directory.roles.get("operators")
            specs = contact.channels if contact else self.plan.directory.default_channels
            return Recipient(to, "role:operators", contact.contact if contact else "运维值班", self._channels(specs))
        target = roles.get(to)
        if target is None:
            return None
        if isinstance(target, Enterprise):
            person = target.contact
            channels: list[tuple[str, str | None]] = [(INBOX, None)]  # the enterprise always has its inbox
            if person.webhook:
                channels.append(("webhook", person.webhook))
            for way in person.notify_by:  # the model made sure the address is there
                channels.append(("email", person.email) if way == "email" else ("sms", person.mobile))
            return Recipient(to, f"enterprise:{target.credit_code}", f"{target.name}（{target.contact.name}）",
                             tuple(channels))
        return self._unit(to, str(target))

    # -- context -----------------------------------------------------------------------------

    def _amendment(self, event: ProjectAmended) -> dict[str, Any]:
        """What a 补充协议 changed, as one notice tells it: each added line with its 一次性告知, each
        withdrawn line, each line kept because work on it had gone too far, and why."""
        def named(line: PlanLine) -> str:
            consult = "（仅咨询）" if line.request is Request.CONSULT else ""
            return f"{line.item_name or line.item_code}（{line.item_code}）{consult}"

        def added(line: PlanLine) -> str:
            if not line.routed:
                return f"{named(line)}：暂无法分派，政务服务局将另行告知"
            text = (f"{named(line)}：由 {self.unit_name(line.responsible_unit or '')} 办理，"
                    f"承诺时限受理后 {line.time_limit_days} 个工作日")
            if line.materials:
                text += "；请一次性准备以下材料：\n" + "\n".join(f"   - {m}" for m in line.materials)
            return text + (f"\n   {line.fee_note}" if line.fee_note else "")

        changes = []
        if event.added:
            changes.append(f"新增审批事项 {len(event.added)} 项：\n" + numbered([added(a) for a in event.added]))
        if event.withdrawn:
            changes.append(f"撤回审批事项 {len(event.withdrawn)} 项（不再办理）：\n"
                           + numbered([named(w) for w in event.withdrawn]))
        if event.kept:
            changes.append(f"以下 {len(event.kept)} 项已受理或办理，不能撤回，继续办理：\n"
                           + numbered([f"{k.item_name}（{k.item_code}）：{k.reason}" for k in event.kept]))
        if event.recruiting_unit != event.previous_recruiting_unit:
            changes.append(f"项目招引单位由 {self.unit_name(event.previous_recruiting_unit)} 变更为 "
                           f"{self.unit_name(event.recruiting_unit)}")
        return {"agreement_id": event.agreement_id, "revision": event.revision,
                "signed_on": event.signed_on.isoformat(), "items_planned": event.items_planned,
                "changes": "\n".join(changes) or "审批策划未变",
                "added_count": len(event.added), "withdrawn_count": len(event.withdrawn), "kept_count": len(event.kept),
                "added": "、".join(named(a) for a in event.added) or "无",
                "withdrawn": "、".join(named(w) for w in event.withdrawn) or "无",
                "kept": "、".join(named(PlanLine(item_code=k.item_code, item_name=k.item_name, request=k.request,
                                                  item_id="-")) for k in event.kept) or "无",
                "recruiting_unit_name": self.unit_name(event.recruiting_unit),
                "previous_recruiting_unit_name": self.unit_name(event.previous_recruiting_unit)}

    def _context(self, event: Event, project: ProjectView | None,
                 item: ItemView | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
        ctx: dict[str, Any] = {"event_type": event.type, "event_id": event.event_id,
                               "occurred_at": event.occurred_at.isoformat(timespec="seconds")}
        roles: dict[str, Any] = {}
        flags: dict[str, bool] = {}
        if project is not None:
            ctx |= {"project_code": project.code, "project_name": project.name,
                    "enterprise_name": project.enterprise.name,
                    "recruiting_unit_name": self.unit_name(project.recruiting_unit),
                    "console_link": self.console_link(project.code)}
            roles |= {"enterprise": project.enterprise, "recruiting_unit": project.recruiting_unit}
        if item is not None:
            ctx |= {"item_code": item.item_code, "item_name": item.item_name,
                    "responsible_unit_name": self.unit_name(item.responsible_unit)}
            roles["responsible_unit"] = item.responsible_unit
        ctx["console_page"] = self.console_page(_page_of(event))

        if isinstance(event, ServiceStarted):
            ctx |= {"agreement_id": event.agreement_id, "signed_on": event.signed_on.isoformat(),
                    "items_planned": event.items_planned, "items_routed": event.items_routed,
                    "items_unroutable": event.items_unroutable, "rules_version": event.rules_version}
            roles["ledger_owner"] = event.ledger_owner
        elif isinstance(event, AgreementRejected):
            ctx |= {"agreement_id": event.agreement_id, "reasons": numbered(event.reasons),
                    "agreement_kind": "补充协议" if event.amendment else "协议"}
            flags["not_eligible"] = event.reason_code == "not_eligible"
            named = self.units.get(event.project.recruiting_unit)
            if named is None or not named.recruits:
                # the agreement named a unit that cannot recruit (an outside authority, a dispatched
                # agency) or none known: it is not told of a project it did not bring in; operators are
                roles.pop("recruiting_unit", None)
                flags["no_recruiting_unit"] = True
        elif isinstance(event, ProjectAmended):
            ctx |= self._amendment(event)
            roles |= {"recruiting_unit": event.recruiting_unit, "previous_recruiting_unit": event.previous_recruiting_unit,
                      "ledger_owner": ECON_DEV_BUREAU}
            flags["recruiting_unit_changed"] = event.recruiting_unit != event.previous_recruiting_unit
        elif isinstance(event, ItemWithdrawn):
            ctx |= {"item_name": event.item_name, "responsible_unit_name": self.unit_name(event.responsible_unit),
                    "agreement_id": event.agreement_id, "revision": event.revision,
                    "from_state_name": WITHDRAWN_FROM.get(event.from_state, event.from_state),
                    "task_order_note": f"任务单 {event.withdrawn_task_order} 一并撤回。" if event.withdrawn_task_order
                    else ""}
            roles |= {"responsible_unit": event.responsible_unit, "ledger_owner": ECON_DEV_BUREAU}
        elif isinstance(event, ItemRouted):
            routed = event.item
            ctx |= {"stage_name": routed.stage_name, "mode_name": routed.mode_name,
                    "request_name": REQUESTS[routed.request],
                    "approving_authority_name": routed.approving_authority_name,
                    "time_limit_days": routed.time_limit_days, "materials": numbered(routed.materials),
                    "materials_count": len(routed.materials), "fee_note": routed.fee_note,
                    "requires": f"需待{self.items_named(routed.requires)}办结后办理" if routed.requires
                    else "无前置事项，可立即办理",
                    "rule_name": routed.decision.rule_name, "rules_version": routed.decision.rules_version}
            flags["has_task_order"] = routed.task_order_required
            flags["by_amendment"] = routed.amendment_id is not None
        elif isinstance(event, ItemUnroutable):
            ctx |= {"item_code": event.item_code, "item_name": event.item_name or "清单中无此事项",
                    "responsible_unit_name": "（未分派）", "reason": event.unroutable.reason,
                    "rules_version": event.unroutable.rules_version,
                    "facts": "；".join(facts_in_words(event.unroutable.facts, self.project_facts, self.catalog,
                                                      self.unit_name)) or "（无）"}
            flags["is_not_required"] = event.unroutable.reason_code == "not_required"
        elif isinstance(event, ItemReady):
            ctx["waited_for"] = (f"前置事项{self.items_named(event.waited_for)}已办结" if event.waited_for
                                 else "该事项无前置事项")
            flags["has_task_order"] = event.task_order_required
            roles["ledger_owner"] = ECON_DEV_BUREAU
        elif isinstance(event, (ItemContacted, ItemAccepted, ItemUnblocked, ItemResumed)):
            ctx |= {"reported_by_name": self.unit_name(event.reported_by), "note": event.note or "无"}
            if isinstance(event, ItemContacted):
                ctx |= {"specialist_name": event.specialist_name or "", "specialist_phone": event.specialist_phone or ""}
                flags["has_specialist"] = event.specialist_name is not None
            if isinstance(event, ItemUnblocked):
                credit = project.enterprise.credit_code if project is not None else None
                theirs = [b.reason for b in event.resolved if b.reported_by == credit]
                ctx["enterprise_issues"] = numbered(theirs) if theirs else ""
                flags["resolves_enterprise_issue"] = bool(theirs)
        elif isinstance(event, ItemSuspended):
            ctx |= {"reported_by_name": self.unit_name(event.reported_by), "reason": event.reason}
        elif isinstance(event, ItemBlocked):
            # the enterprise reports a 堵点 under its credit code (item.enterprise_issue)
            by_enterprise = project is not None and event.reported_by == project.enterprise.credit_code
            reporter = f"服务对象 {project.enterprise.name}" if by_enterprise and project is not None \
                else self.unit_name(event.reported_by)
            ctx |= {"reason": event.reason, "resolver_name": self.unit_name(event.resolver), "reported_by_name": reporter}
            roles["resolver"] = event.resolver
            flags["by_enterprise"] = by_enterprise
        elif isinstance(event, ItemOverdue):
            ctx |= {"clock_name": CLOCK_NAMES[event.clock], "level_name": OVERDUE_LEVEL_NAMES_ZH[event.level],
                    "due_on": event.due_on.isoformat(), "working_days_used": event.working_days_used,
                    "time_limit_days": event.time_limit_days,
                    "calendar_note": f"（{estimated_note(event.estimated_years)}）" if event.estimated_years else ""}
            roles["ledger_owner"] = ECON_DEV_BUREAU  # who issues task orders (方案四(三))
            flags["is_task_order_clock"] = event.clock == "task_order"
        elif isinstance(event, ItemDelivered):
            ctx |= {"results": numbered(event.results), "note": event.note or ""}
        elif isinstance(event, ItemRerouted):
            materials = event.materials or (self.catalog[event.item_code].materials
                                            if event.item_code in self.catalog else ())
            ctx |= {"item_name": event.item_name, "responsible_unit_name": self.unit_name(event.to_unit),
                    "previous_unit_name": self.unit_name(event.from_unit), "mode_name": MODE_NAMES_ZH[event.to_mode],
                    "previous_mode_name": MODE_NAMES_ZH[event.from_mode],
                    "approving_authority_name": self.unit_name(event.to_authority),
                    "previous_authority_name": self.unit_name(event.from_authority),
                    "responsible_unit_contact": self.unit_contact(event.to_unit),
                    "time_limit_days": event.time_limit_days,
                    "materials": numbered(materials) if materials else "（见服务事项清单）",
                    "materials_count": len(materials), "reason": event.reason, "rules_version": event.rules_version,
                    "previous_rules_version": event.from_rules_version or "（未记录）",
                    "next_step": "事项尚在等待前置事项办结，具备办理条件时将另行通知" if event.state == "waiting"
                    else "事项已具备办理条件，首问响应时限自今日起重新计算，请及时对接企业",
                    "task_order_note": f"原任务单 {event.withdrawn_task_order} 已撤回。" if event.withdrawn_task_order
                    else ""}
            roles |= {"responsible_unit": event.to_unit, "previous_unit": event.from_unit,
                      "ledger_owner": ECON_DEV_BUREAU}
            flags["has_task_order"] = event.task_order_required
            flags["unit_changed"] = event.from_unit != event.to_unit
        elif isinstance(event, TaskOrderIssued):
            ctx |= {"task_order_number": event.number, "task_order_issuer_name": self.unit_name(event.issued_by),
                    "task_order_assignee_name": self.unit_name(event.assigned_to),
                    "task_order_assignee": event.assigned_to, "note": f"任务要求：{event.note}。" if event.note else "",
                    "issued_how": "按评价规则自动下发" if event.automatic else "下发"}
            roles |= {"ledger_owner": ECON_DEV_BUREAU, "task_order_assignee": event.assigned_to}
        elif isinstance(event, TaskOrderAccepted):
            ctx |= {"task_order_number": event.number, "specialist_name": event.specialist_name,
                    "specialist_phone": event.specialist_phone}
            roles["ledger_owner"] = ECON_DEV_BUREAU
        elif isinstance(event, TaskOrderClosed):
            ctx["task_order_number"] = event.number
            roles["ledger_owner"] = ECON_DEV_BUREAU
        elif isinstance(event, ProjectDelivered):
            ctx["items_delivered"] = event.items_delivered
            roles["ledger_owner"] = ECON_DEV_BUREAU
        elif isinstance(event, AssessmentSubmitted):
            ctx |= {"provider_name": self.unit_name(event.provider), "provider": event.provider,
                    "total": f"{event.total:g}",
                    "comment": event.comment or "（无）", "assessment_id": event.assessment_id,
                    "rater_name": RATER_NAMES[event.rater],
                    "rectify_by": event.rectify_by.isoformat() if event.rectify_by else "",
                    "rectification_effect": rectification_effect(event.rectification_weight)}
            roles["provider"] = event.provider
            roles["evaluator"] = event.evaluators
            flags["is_bad_rating"] = event.bad
        elif isinstance(event, AssessmentRectified):
            ctx |= {"provider_name": self.unit_name(event.provider), "note": event.note,
                    "assessment_id": event.assessment_id, "late_note": "（逾期整改）" if event.late else ""}
            roles["provider"] = event.provider
            roles["evaluator"] = event.evaluators
            flags["is_late"] = event.late
        elif isinstance(event, AssessmentRectificationOverdue):
            ctx |= {"provider_name": self.unit_name(event.provider), "provider": event.provider,
                    "total": f"{event.total:g}", "assessment_id": event.assessment_id,
                    "rectify_by": event.rectify_by.isoformat()}
            roles["provider"] = event.provider
            roles["evaluator"] = event.evaluators
        elif isinstance(event, RequestRefused):
            ctx |= {"request_id": event.request_id, "request_name": REQUEST_NAMES_ZH.get(event.request_type, event.request_type),
                    "project_code": event.project_code or "（无）", "item_code": event.item_code or "",
                    "reason": event.reason, "requested_by_name": self.unit_name(event.requested_by)}
            if event.requested_by in self.units:
                roles["sender"] = event.requested_by
            elif project is not None and event.requested_by == project.enterprise.credit_code:
                roles["sender"] = project.enterprise
                ctx["requested_by_name"] = project.enterprise.name
        elif isinstance(event, RulesRejected):
            ctx |= {"attempted_version": event.attempted_version or "（无法读取）",
                    "active_version": event.active_version or "（无）", "directory": event.directory,
                    "problems": "\n".join(event.problems)}
        elif isinstance(event, RulesActivated):
            ctx |= {"version": event.version, "previous_version": event.previous_version or "（无）",
                    "directory": event.directory}
        return ctx, roles, flags
