"""Turning one event into the notifications the plan asks for. Pure: no I/O.

The handler looks up what the event itself does not carry (the project and the item, from the
notifier's read model) and passes it in.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common.domain import ECON_DEV_BUREAU, OVERDUE_LEVEL_NAMES_ZH, Request, Unit
from services.common.messages import (
    AgreementRejected,
    Enterprise,
    Event,
    ItemBlocked,
    ItemDelivered,
    ItemEvent,
    ItemOverdue,
    ItemRouted,
    ItemUnroutable,
    ProjectDelivered,
    RatingSubmitted,
    RulesActivated,
    RulesRejected,
    ServiceStarted,
    stable_id,
)
from services.notifier.plan import UNIT_PREFIX, NotificationPlan, Webhook

REQUESTS = {Request.HANDLE: "办理", Request.CONSULT: "提供咨询"}


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
    if isinstance(event, (ItemUnroutable, ItemEvent, ProjectDelivered, RatingSubmitted)):
        return event.project_code
    return None


def item_code_of(event: Event) -> str | None:
    if isinstance(event, ItemRouted):
        return event.item.item_code
    if isinstance(event, (ItemUnroutable, ItemEvent)):
        return event.item_code
    return None


class Composer:
    def __init__(self, plan: NotificationPlan, units: Mapping[str, Unit]) -> None:
        self.plan, self.units = plan, units

    def unit_name(self, code: str) -> str:
        unit = self.units.get(code)
        return unit.name if unit else code

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
            recipient = self._recipient(entry.to, roles)
            if recipient is None:
                continue
            title = string.Template(entry.title).safe_substitute(context)
            body = string.Template(entry.body).safe_substitute(context).strip()
            for channel, address in recipient.channels:
                documents.append({
                    # one per event, role, recipient and channel: a unit that is both the recruiting
                    # unit and the ledger owner gets both messages; a redelivery gets none again
                    "_id": stable_id(event.event_id, entry.to, recipient.key, channel, address or ""),
                    "event_id": event.event_id, "event_type": event_type,
                    "project_code": project_code_of(event), "item_code": item_code_of(event),
                    "role": recipient.role, "recipient": recipient.key, "recipient_name": recipient.name,
                    "channel": channel, "address": address, "title": title, "body": body,
                    "status": "delivered" if channel == "inbox" else "pending",
                    "attempts": 0, "last_error": None, "created_at": now, "updated_at": now,
                    "delivered_at": now if channel == "inbox" else None,
                    "next_attempt_at": None if channel == "inbox" else now,
                })
        return documents

    # -- recipients --------------------------------------------------------------------------

    def _channels(self, specs: Sequence[Any]) -> tuple[tuple[str, str | None], ...]:
        return tuple(("webhook", s.webhook) if isinstance(s, Webhook) else ("inbox", None) for s in specs)

    def _unit(self, role: str, code: str) -> Recipient:
        contact = self.plan.directory.units.get(code)
        specs = contact.channels if contact else self.plan.directory.default_channels
        name = self.unit_name(code) + (f"（{contact.contact}）" if contact else "")
        return Recipient(role, UNIT_PREFIX + code, name, self._channels(specs))

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
            channels: list[tuple[str, str | None]] = [("inbox", None)]
            if target.contact.webhook:
                channels.append(("webhook", target.contact.webhook))
            return Recipient(to, f"enterprise:{target.credit_code}", f"{target.name}（{target.contact.name}）",
                             tuple(channels))
        return self._unit(to, str(target))

    # -- context -----------------------------------------------------------------------------

    def _context(self, event: Event, project: ProjectView | None,
                 item: ItemView | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
        ctx: dict[str, Any] = {"event_type": event.type, "event_id": event.event_id,
                               "occurred_at": event.occurred_at.isoformat(timespec="seconds")}
        roles: dict[str, Any] = {}
        flags: dict[str, bool] = {}
        if project is not None:
            ctx |= {"project_code": project.code, "project_name": project.name,
                    "enterprise_name": project.enterprise.name,
                    "recruiting_unit_name": self.unit_name(project.recruiting_unit)}
            roles |= {"enterprise": project.enterprise, "recruiting_unit": project.recruiting_unit}
        if item is not None:
            ctx |= {"item_code": item.item_code, "item_name": item.item_name,
                    "responsible_unit_name": self.unit_name(item.responsible_unit)}
            roles["responsible_unit"] = item.responsible_unit

        if isinstance(event, ServiceStarted):
            ctx |= {"agreement_id": event.agreement_id, "signed_on": event.signed_on.isoformat(),
                    "items_planned": event.items_planned, "items_routed": event.items_routed,
                    "items_unroutable": event.items_unroutable, "rules_version": event.rules_version}
            roles["ledger_owner"] = event.ledger_owner
        elif isinstance(event, AgreementRejected):
            ctx |= {"agreement_id": event.agreement_id, "reasons": numbered(event.reasons)}
        elif isinstance(event, ItemRouted):
            routed = event.item
            order = routed.task_order
            ctx |= {"stage_name": routed.stage_name, "mode_name": routed.mode_name,
                    "request_name": REQUESTS[routed.request],
                    "approving_authority_name": routed.approving_authority_name,
                    "time_limit_days": routed.time_limit_days, "materials": numbered(routed.materials),
                    "materials_count": len(routed.materials), "fee_note": routed.fee_note,
                    "task_order_number": order.number if order else "",
                    "task_order_issuer_name": self.unit_name(order.issued_by if order else ECON_DEV_BUREAU),
                    "task_order_assignee_name": self.unit_name(order.assigned_to) if order else "",
                    "rule_name": routed.decision.rule_name, "rules_version": routed.decision.rules_version}
            flags["has_task_order"] = order is not None
            if order is not None:
                roles["task_order_assignee"] = order.assigned_to
        elif isinstance(event, ItemUnroutable):
            ctx |= {"item_code": event.item_code, "item_name": event.item_name or "（清单中无此事项）",
                    "responsible_unit_name": "（未分派）", "reason": event.unroutable.reason,
                    "rules_version": event.unroutable.rules_version,
                    "facts": json.dumps(event.unroutable.facts, ensure_ascii=False)}
        elif isinstance(event, ItemBlocked):
            ctx |= {"reason": event.reason, "resolver_name": self.unit_name(event.resolver),
                    "reported_by_name": self.unit_name(event.reported_by)}
            roles["resolver"] = event.resolver
        elif isinstance(event, ItemOverdue):
            ctx |= {"level_name": OVERDUE_LEVEL_NAMES_ZH[event.level], "due_on": event.due_on.isoformat(),
                    "working_days_used": event.working_days_used, "time_limit_days": event.time_limit_days}
        elif isinstance(event, ItemDelivered):
            ctx |= {"results": numbered(event.results), "note": event.note or ""}
        elif isinstance(event, ProjectDelivered):
            ctx["items_delivered"] = event.items_delivered
            roles["ledger_owner"] = ECON_DEV_BUREAU
        elif isinstance(event, RatingSubmitted):
            ctx |= {"provider_name": self.unit_name(event.provider), "level": event.level.value,
                    "comment": event.comment or "（无）", "rating_id": event.event_id,
                    "rater_name": "服务对象" if event.rater == "enterprise" else "项目招引单位"}
            roles["provider"] = event.provider
            flags["is_bad_rating"] = event.level.is_bad
        elif isinstance(event, RulesRejected):
            ctx |= {"attempted_version": event.attempted_version or "（无法读取）",
                    "active_version": event.active_version or "（无）", "directory": event.directory,
                    "problems": "\n".join(event.problems)}
        elif isinstance(event, RulesActivated):
            ctx |= {"version": event.version, "previous_version": event.previous_version or "（无）",
                    "directory": event.directory}
        return ctx, roles, flags
