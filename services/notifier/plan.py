"""The notification plan (``rules/notifications.yaml``) and directory (``rules/directory.yaml``).

Operator data, validated on load: unknown event types, roles, units and template variables are
errors naming the file, the line and the entry, like the routing rules.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from services.common.domain import EmailAddress, MobileNumber, WebhookUrl
from services.common.yaml_files import Problem, RulesError, read_located, validate_located

PLAN_FILE = "notifications.yaml"
DIRECTORY_FILE = "directory.yaml"

UNIT_PREFIX = "unit:"

_COMMON = ("event_type", "event_id", "occurred_at")
# console_link: the enterprise's own link to its project in the web console (it carries the
# project's access code), so only a message to the enterprise may use it
CONSOLE_LINK = "console_link"
# console_page: the console page where a unit's staff do what the notice asks (an item's page, the
# 差评 to rectify, the project): staff sign in to open it, so it is never for the enterprise
CONSOLE_PAGE = "console_page"
_PROJECT = ("project_code", "project_name", "enterprise_name", "recruiting_unit_name", CONSOLE_LINK, CONSOLE_PAGE)
_ITEM = (*_PROJECT, "item_code", "item_name", "responsible_unit_name")

# The variables each event type's templates may use (what ``compose`` puts in the context).
VARIABLES: dict[str, tuple[str, ...]] = {
    "service.started": (*_PROJECT, "agreement_id", "signed_on", "items_planned", "items_routed", "items_unroutable",
                        "rules_version"),
    "agreement.rejected": (*_PROJECT, "agreement_id", "reasons", "agreement_kind"),
    "project.amended": (*_PROJECT, "agreement_id", "revision", "signed_on", "items_planned", "changes",
                        "added_count", "withdrawn_count", "kept_count", "added", "withdrawn", "kept",
                        "previous_recruiting_unit_name"),
    "item.withdrawn": (*_ITEM, "agreement_id", "revision", "from_state_name", "task_order_note"),
    "item.routed": (*_ITEM, "stage_name", "mode_name", "request_name", "approving_authority_name", "time_limit_days",
                    "materials", "materials_count", "fee_note", "requires", "rule_name", "rules_version"),
    "item.unroutable": (*_ITEM, "reason", "rules_version", "facts"),
    "item.ready": (*_ITEM, "waited_for"),
    "item.contacted": (*_ITEM, "reported_by_name", "note", "specialist_name", "specialist_phone"),
    "item.accepted": (*_ITEM, "reported_by_name", "note"),
    "item.suspended": (*_ITEM, "reported_by_name", "reason"),
    "item.resumed": (*_ITEM, "reported_by_name", "note"),
    "item.unblocked": (*_ITEM, "reported_by_name", "note", "enterprise_issues"),
    "item.blocked": (*_ITEM, "reason", "resolver_name", "reported_by_name"),
    "item.overdue": (*_ITEM, "clock_name", "level_name", "due_on", "working_days_used", "time_limit_days",
                     "calendar_note"),
    "item.delivered": (*_ITEM, "results", "note"),
    "item.rerouted": (*_ITEM, "previous_unit_name", "previous_authority_name", "mode_name", "previous_mode_name",
                      "approving_authority_name", "responsible_unit_contact", "time_limit_days", "materials",
                      "materials_count", "reason", "rules_version", "previous_rules_version", "next_step",
                      "task_order_note"),
    "task_order.issued": (*_ITEM, "task_order_number", "task_order_issuer_name", "task_order_assignee_name",
                          "task_order_assignee", "issued_how", "note"),
    "task_order.accepted": (*_ITEM, "task_order_number", "specialist_name", "specialist_phone"),
    "task_order.closed": (*_ITEM, "task_order_number"),
    "project.delivered": (*_PROJECT, "items_delivered"),
    "assessment.submitted": (*_PROJECT, "provider_name", "provider", "rater_name", "total", "comment",
                             "assessment_id", "rectify_by", "rectification_effect"),
    "assessment.rectified": (*_PROJECT, "provider_name", "note", "assessment_id", "late_note"),
    "assessment.rectification_overdue": (*_PROJECT, "provider_name", "provider", "total", "assessment_id",
                                         "rectify_by", CONSOLE_PAGE),
    "request.refused": ("request_id", "request_name", "project_code", "item_code", "reason", "requested_by_name",
                        CONSOLE_PAGE),
    "rules.rejected": ("attempted_version", "active_version", "directory", "problems"),
    "rules.activated": ("version", "previous_version", "directory"),
}
# What each kind of notice is about, as the inbox's filter names it.
EVENT_NAMES_ZH: dict[str, str] = {
    "service.started": "服务启动", "agreement.rejected": "协议未受理", "project.amended": "补充协议",
    "item.withdrawn": "事项撤回", "item.routed": "新分派事项", "item.unroutable": "无法分派的事项",
    "item.ready": "具备办理条件", "item.contacted": "对接企业", "item.accepted": "受理", "item.suspended": "中止（待补正）",
    "item.resumed": "恢复办理", "item.unblocked": "堵点已解决", "item.blocked": "堵点/卡点", "item.overdue": "超时预警/黄牌/红牌",
    "item.delivered": "办结移交", "item.rerouted": "改派", "task_order.issued": "任务单下发",
    "task_order.accepted": "任务单接收", "task_order.closed": "任务单办结", "project.delivered": "项目全部办结",
    "assessment.submitted": "测评/差评", "assessment.rectified": "差评整改",
    "assessment.rectification_overdue": "差评逾期未整改", "request.refused": "请求未被受理",
    "rules.rejected": "规则修改被拒绝", "rules.activated": "规则生效",
}
# Roles that make sense for each event type (who exists in its context).
_ITEM_ROLES = ("enterprise", "recruiting_unit", "responsible_unit")
ROLES_BY_EVENT: dict[str, tuple[str, ...]] = {
    "service.started": ("enterprise", "recruiting_unit", "ledger_owner"),
    "agreement.rejected": ("enterprise", "recruiting_unit"),
    "project.amended": ("enterprise", "recruiting_unit", "previous_recruiting_unit", "ledger_owner"),
    "item.withdrawn": (*_ITEM_ROLES, "ledger_owner"),
    "item.routed": _ITEM_ROLES,
    "item.unroutable": ("enterprise", "recruiting_unit"),
    "item.ready": (*_ITEM_ROLES, "ledger_owner"),
    "item.contacted": _ITEM_ROLES,
    "item.accepted": _ITEM_ROLES,
    "item.suspended": _ITEM_ROLES,
    "item.resumed": _ITEM_ROLES,
    "item.unblocked": _ITEM_ROLES,
    "item.blocked": (*_ITEM_ROLES, "resolver"),
    "item.overdue": (*_ITEM_ROLES, "ledger_owner"),
    "item.delivered": _ITEM_ROLES,
    "item.rerouted": (*_ITEM_ROLES, "previous_unit", "ledger_owner"),
    "task_order.issued": (*_ITEM_ROLES, "ledger_owner", "task_order_assignee"),
    "task_order.accepted": (*_ITEM_ROLES, "ledger_owner"),
    "task_order.closed": (*_ITEM_ROLES, "ledger_owner"),
    "project.delivered": ("enterprise", "recruiting_unit", "ledger_owner"),
    "assessment.submitted": ("enterprise", "recruiting_unit", "provider", "evaluator"),
    "assessment.rectified": ("enterprise", "recruiting_unit", "provider", "evaluator"),
    "assessment.rectification_overdue": ("enterprise", "recruiting_unit", "provider", "evaluator"),
    "request.refused": ("sender",),
    "rules.rejected": (),
    "rules.activated": (),
}

class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# what an entry may be conditional on: a 专业跑腿 item, a 差评, a late rectification, an item the
# rules found not required, a re-routing that changed the unit (not only the mode or the authority),
# an agreement rejected as not eligible (not for its id or its project code), an item a 补充协议 added
# (the enterprise hears of it in the amendment's one notice), an amendment that changed the recruiting unit,
# an overdue level of 经济发展招商服务局's task-order clock (its own step, not the responsible unit's),
# a 堵点 the enterprise itself reported (item.blocked), a resolution that closed one (item.unblocked), an
# agreement whose 招引单位 is not a unit that may recruit (agreement.rejected: that unit is not told), a
# contact that named the 帮办代办 服务专员 (item.contacted)
Condition = Literal["has_task_order", "is_bad_rating", "is_late", "is_not_required", "unit_changed", "not_eligible",
                    "by_amendment", "recruiting_unit_changed", "is_task_order_clock", "by_enterprise",
                    "resolves_enterprise_issue", "no_recruiting_unit", "has_specialist"]


class PlanEntry(_Strict):
    """One message of the plan: ``to`` whom, with which title and body."""

    to: str = Field(min_length=1)
    only_if: Condition | None = None
    unless: Condition | None = None
    title: str = Field(min_length=1)
    body: str = Field(min_length=1)

    def applies(self, flags: Mapping[str, bool]) -> bool:
        if self.only_if and not flags.get(self.only_if, False):
            return False
        return not (self.unless and flags.get(self.unless, False))


class PlanFile(_Strict):
    events: dict[str, tuple[PlanEntry, ...]]

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: dict[str, tuple[PlanEntry, ...]]) -> dict[str, tuple[PlanEntry, ...]]:
        for name in events:
            if name not in VARIABLES:
                raise ValueError(f"未知的事件类型 {name!r}，可用：{'、'.join(VARIABLES)}")
        return events


class Webhook(_Strict):
    webhook: WebhookUrl


class Email(_Strict):
    email: EmailAddress


class Sms(_Strict):
    sms: MobileNumber


_CHANNEL_KINDS = ("webhook", "email", "sms")


def _channel_kind(value: Any) -> str | None:
    """Which channel a spec in the directory is: ``inbox``, or a mapping of one known key."""
    if isinstance(value, Webhook | Email | Sms):  # already built (a model given in code)
        return _CHANNEL_KINDS[(Webhook, Email, Sms).index(type(value))]
    if value == "inbox":
        return "inbox"
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _CHANNEL_KINDS:
        return str(next(iter(value)))
    return None


ChannelSpec = Annotated[
    Annotated[Literal["inbox"], Tag("inbox")] | Annotated[Webhook, Tag("webhook")] | Annotated[Email, Tag("email")]
    | Annotated[Sms, Tag("sms")],
    Discriminator(_channel_kind, custom_error_type="channel_spec",
                  custom_error_message="渠道应为 inbox、{webhook: https://...}、{email: 邮箱地址} 或 {sms: \"手机号\"} 之一"),
]


class Contact(_Strict):
    contact: str = Field(min_length=1)
    phone: str | None = Field(default=None, min_length=3, max_length=50, pattern=r"^[0-9+()\- ]+$",
                              description="a number the enterprise may call (shown in the console)")
    channels: tuple[ChannelSpec, ...] = Field(min_length=1)


class DirectoryFile(_Strict):
    units: dict[str, Contact] = Field(default_factory=dict)
    roles: dict[str, Contact] = Field(default_factory=dict)
    default_channels: tuple[ChannelSpec, ...] = ("inbox",)


@dataclass(frozen=True)
class NotificationPlan:
    entries: Mapping[str, tuple[PlanEntry, ...]]
    directory: DirectoryFile


_DIRECTORY_ENTRY = re.compile(r"^(units|roles)\.([^.\[:]+)")


def _named_entry(problem: Problem) -> Problem:
    """A directory problem named by its entry (``[单位 gov_service_bureau]``), as the plan's are."""
    found = _DIRECTORY_ENTRY.match(problem.message)
    if problem.subject or found is None:
        return problem
    label = "单位" if found.group(1) == "units" else "角色"
    return Problem(problem.file, problem.line, f"{label} {found.group(2)}", problem.message)


def template_variables(text: str) -> set[str]:
    return {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(text)
            if m.group("named") or m.group("braced")}


def load_plan(directory: str | Path, units: Mapping[str, object]) -> NotificationPlan:
    """Loads both files; raises ``RulesError`` with every problem found."""
    directory = Path(directory)
    plan_source, _ = read_located(directory / PLAN_FILE)
    plan = validate_located(plan_source, PlanFile, "events", "事件")
    dir_source, _ = read_located(directory / DIRECTORY_FILE)
    try:
        contacts = validate_located(dir_source, DirectoryFile, "units", "单位")
    except RulesError as exc:
        raise RulesError([_named_entry(p) for p in exc.problems]) from None
    problems: list[Problem] = []
    for event_type, entries in plan.events.items():
        allowed = set(VARIABLES[event_type]) | set(_COMMON)
        for index, entry in enumerate(entries):
            subject = f"事件 {event_type} 第{index + 1}条"
            line = plan_source.line(["events", event_type, index])
            if entry.to.startswith(UNIT_PREFIX):
                if entry.to.removeprefix(UNIT_PREFIX) not in units:
                    problems.append(Problem(plan_source.file, line, subject, f"to: 单位 {entry.to!r} 不在 units.yaml 中"))
            elif entry.to != "operators" and entry.to not in ROLES_BY_EVENT[event_type]:
                choices = "、".join((*ROLES_BY_EVENT[event_type], "operators", "unit:<单位编码>"))
                problems.append(Problem(plan_source.file, line, subject,
                                        f"to: 事件 {event_type} 没有角色 {entry.to!r}，可用：{choices}"))
            for part in ("title", "body"):
                used = template_variables(getattr(entry, part))
                unknown = sorted(used - allowed)
                if unknown:
                    problems.append(Problem(plan_source.file, plan_source.line(["events", event_type, index, part]),
                                            subject, f"{part}: 模板变量 {unknown} 不存在，可用：{sorted(allowed)}"))
                if CONSOLE_PAGE in used and entry.to == "enterprise":
                    problems.append(Problem(plan_source.file, plan_source.line(["events", event_type, index, part]),
                                            subject, f"{part}: ${{{CONSOLE_PAGE}}} 是单位工作人员登录服务台办理的页面，"
                                            f"企业打不开；发给 enterprise 的通知请用 ${{{CONSOLE_LINK}}}"))
                if CONSOLE_LINK in used and CONSOLE_LINK in allowed and entry.to != "enterprise":
                    problems.append(Problem(plan_source.file, plan_source.line(["events", event_type, index, part]),
                                            subject, f"{part}: ${{{CONSOLE_LINK}}} 是企业查看本项目的专属链接（含访问码），"
                                            f"只能用在发给 enterprise 的通知中，不能发给 {entry.to}"))
    for code in contacts.units:
        if code not in units:
            problems.append(Problem(dir_source.file, dir_source.line(["units", code]), f"单位 {code}",
                                    "不在 units.yaml 中"))
    if problems:
        raise RulesError(problems)
    return NotificationPlan(entries=plan.events, directory=contacts)
