"""``zeroerrand rules reroute --project P``: 政务服务局 re-decides a project's open items under the
active rules and asks the ledger to move those whose decision changed (policy 五(七)).

The decision is made here, with the active rules and the facts the ledger kept (the project's, or
those of the line's decision record); whether the line may still move is the ledger's call (it
is the authority on item state): each change goes to it as an ``item.reroute`` request from
``gov_service_bureau``, and the ledger applies it (then announces ``item.rerouted``) or refuses it
with the reason. Lines an item no unit has accepted are sent; a line accepted or further on, or
whose task order was accepted, is only reported (the ledger would refuse it).

:func:`plan_reroute` is pure; :func:`run_reroute` reads the ledger, checks the rules are the
active version, publishes the requests and waits for the ledger's answers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from services.common.domain import GOV_SERVICE_BUREAU, MODE_NAMES_ZH, Decision, Request, ServiceMode, Unroutable
from services.common.messages import RerouteItem
from services.common.rule_files import PROJECT_PREFIX
from services.evaluation.ledger import REROUTABLE, STATE_NAMES_ZH, LedgerItem, ProjectRecord, RequestOutcome
from services.router.rule_engine import RoutingEngine

if TYPE_CHECKING:
    from services.common.storage import Store

EXIT_DONE, EXIT_FAILED, EXIT_NO_ANSWER = 0, 1, 3
REASON = "规则版本变更"

Verdict = Literal["reroute", "unchanged", "kept", "unroutable"]


@dataclass(frozen=True)
class LinePlan:
    """What the active rules decide for one open ledger line, and what is to be done about it."""

    item: LedgerItem
    verdict: Verdict
    decision: Decision | Unroutable
    note: str = ""  # kept: why it stays; unroutable: the reason

    @property
    def label(self) -> str:
        consult = "（仅咨询）" if self.item.request is Request.CONSULT else ""
        return f"{self.item.item_code}{consult} {self.item.item_name}"

    def old_text(self, names: Mapping[str, str]) -> str:
        i = self.item
        return _decision_text(i.mode, i.responsible_unit, i.approving_authority, i.task_order_required, names)

    def new_text(self, names: Mapping[str, str]) -> str:
        d = self.decision
        if isinstance(d, Unroutable):
            return f"不可分派（{d.reason_code}）"
        return _decision_text(d.mode, d.responsible_unit, d.approving_authority, d.task_order, names)


def _decision_text(mode: ServiceMode, unit: str, authority: str, task_order: bool, names: Mapping[str, str]) -> str:
    extra = "，下发任务单" if task_order else ""
    return (f"{MODE_NAMES_ZH[mode]}（{mode.value}）· {names.get(unit, unit)}"
            f"（审批机关 {names.get(authority, authority)}{extra}）")


def facts_of(project: ProjectRecord | None, item: LedgerItem) -> dict[str, Any]:
    """The project facts a line is decided with: the agreement's, as the ledger kept them; for a
    project recorded before they were kept, those of the line's decision record."""
    if project is not None and project.facts_json:
        return dict(json.loads(project.facts_json))
    recorded = json.loads(item.facts_json) if item.facts_json else {}
    return {k.removeprefix(PROJECT_PREFIX): v for k, v in recorded.items() if k.startswith(PROJECT_PREFIX)}


def changed(item: LedgerItem, decision: Decision) -> bool:
    """Whether the decision differs in what matters to who serves the item (a renamed rule does not)."""
    return (decision.mode, decision.responsible_unit, decision.approving_authority, decision.task_order) != (
        item.mode, item.responsible_unit, item.approving_authority, item.task_order_required)


def may_move(item: LedgerItem) -> str | None:
    """Why the ledger would refuse to move the line (None: it may move), as the ledger says it."""
    if item.state not in REROUTABLE:
        return f"状态为“{STATE_NAMES_ZH[item.state]}”，仍按原规则版本办理"
    if item.task_order is not None and item.task_order.state != "issued":
        return f"任务单 {item.task_order.number} 已接收（服务专员 {item.task_order.specialist_name}），仍按原规则版本办理"
    return None


def plan_reroute(engine: RoutingEngine, project: ProjectRecord | None, lines: Sequence[LedgerItem],
                 now: datetime) -> list[LinePlan]:
    """Every open line of the project decided again under ``engine``, in the ledger's order."""
    plans = []
    for item in sorted((i for i in lines if i.is_open), key=lambda i: (i.item_code, i.request.value)):
        decision = engine.decide(item.item_code, item.request, facts_of(project, item), now=now)
        if isinstance(decision, Unroutable):
            plans.append(LinePlan(item, "unroutable", decision, decision.reason))
        elif not changed(item, decision):
            plans.append(LinePlan(item, "unchanged", decision))
        elif (why := may_move(item)) is not None:
            plans.append(LinePlan(item, "kept", decision, why))
        else:
            plans.append(LinePlan(item, "reroute", decision))
    return plans


def request_for(plan: LinePlan, operator: str | None, now: datetime) -> RerouteItem:
    decision = plan.decision
    assert isinstance(decision, Decision)
    item = plan.item
    return RerouteItem(
        request_id=str(uuid.uuid4()), requested_at=now, occurred_at=now, requested_by=GOV_SERVICE_BUREAU,
        operator=operator, project_code=item.project_code, item_code=item.item_code, request=item.request,
        mode=decision.mode, responsible_unit=decision.responsible_unit,
        approving_authority=decision.approving_authority, evaluated_as=decision.evaluated_as,
        evaluator=decision.evaluator, task_order_required=decision.task_order, rule_id=decision.rule_id,
        rules_version=decision.rules_version, reason=REASON)


# -- I/O: the ledger, the active version, the requests -------------------------------------------


@dataclass(frozen=True)
class LedgerView:
    project: ProjectRecord | None
    lines: list[LedgerItem]
    active_version: str | None  # the version the router announced last (None: never announced)


async def read_ledger(project_code: str) -> LedgerView:
    """The project and its lines from the ledger, and the active rules version (:func:`active_version`)."""
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository
    from services.router.versions import COLLECTIONS as VERSIONS

    async with store_session(collections=(*COLLECTIONS, *VERSIONS)) as store:
        repo = MongoLedgerRepository(store)
        return LedgerView(await repo.project(project_code), await repo.project_items(project_code),
                          await active_version(store))


async def read_active_version() -> str | None:
    """:func:`active_version`, on a store session of its own."""
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS
    from services.router.versions import COLLECTIONS as VERSIONS

    async with store_session(collections=(*COLLECTIONS, *VERSIONS)) as store:
        return await active_version(store)


async def active_version(store: Store) -> str | None:
    """The rules version the router uses now: its last announcement the ledger recorded, or its own
    archive's last activation if that is more recent; None if it never announced one."""
    from services.evaluation.repository import MongoLedgerRepository
    from services.evaluation.views import active_rules_version
    from services.router.versions import last_activation

    announced = await active_rules_version(MongoLedgerRepository(store))
    archived = await last_activation(store)
    candidates: list[tuple[datetime, str]] = []
    if announced is not None:
        candidates.append((announced.since.astimezone(UTC), announced.version))
    if archived is not None:
        candidates.append((archived[0].astimezone(UTC), archived[1]))
    return max(candidates)[1] if candidates else None


async def publish_requests(commands: Sequence[RerouteItem]) -> None:
    from services.common.bus import publish_once, request_out

    await publish_once([request_out(c) for c in commands])


async def await_outcomes(request_ids: Sequence[str], wait_s: float) -> dict[str, RequestOutcome | None]:
    """What the ledger made of each request, waiting up to ``wait_s`` in all."""
    from services.common.storage import store_session
    from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository
    from services.evaluation.views import request_outcomes

    async with store_session(collections=COLLECTIONS) as store:
        return await request_outcomes(MongoLedgerRepository(store), request_ids, wait_s, poll_s=0.2)


def run_reroute(project_code: str, engine: RoutingEngine, unit_names: Mapping[str, str], *, operator: str | None,
                wait_s: float, dry_run: bool, echo: Callable[[str], None],
                ledger: Callable[[str], LedgerView] | None = None) -> int:
    """The command: prints per line old → new and the ledger's answer; returns the exit code (0 every
    change applied or nothing to do, 1 a refusal, rules not active, or a line that became
    unroutable, 3 no answer in time)."""
    view = ledger(project_code) if ledger is not None else asyncio.run(read_ledger(project_code))
    if view.project is None and not view.lines:
        echo(f"台账中没有项目 {project_code}")
        return EXIT_FAILED
    if view.active_version != engine.version:
        active = view.active_version or "（路由服务尚未宣布生效版本）"
        echo(f"规则目录的版本 {engine.version} 不是路由服务当前生效的版本 {active}：重新分派只能按生效规则决定。"
             "请先保存规则、等路由服务宣布生效（zeroerrand rules history），或用 --rules 指定生效的规则目录")
        return EXIT_FAILED
    now = datetime.now(UTC)
    plans = plan_reroute(engine, view.project, view.lines, now)
    finished = sum(1 for i in view.lines if not i.is_open)
    echo(f"项目 {project_code}：按生效规则 {engine.version} 重新决策 {len(plans)} 个未办结事项"
         + (f"（已办结 {finished} 个，不再分派）" if finished else ""))
    names = unit_names
    for plan in plans:
        if plan.verdict == "unchanged":
            echo(f"  {plan.label}：不变（{plan.old_text(names)}）")
        elif plan.verdict == "kept":
            echo(f"  {plan.label}：{plan.old_text(names)} → {plan.new_text(names)}；不改派：{plan.note}")
        elif plan.verdict == "unroutable":
            echo(f"  {plan.label}：按生效规则不可分派，不改派，须人工处理：{plan.note}")
    moving = [p for p in plans if p.verdict == "reroute"]
    failed = any(p.verdict == "unroutable" for p in plans)
    if not moving:
        echo("没有需要重新分派的事项。")
        return EXIT_FAILED if failed else EXIT_DONE
    commands = [request_for(p, operator, now) for p in moving]
    if dry_run:
        for plan in moving:
            echo(f"  {plan.label}：{plan.old_text(names)} → {plan.new_text(names)}（预演，未提交）")
        return EXIT_FAILED if failed else EXIT_DONE
    asyncio.run(publish_requests(commands))
    answers = asyncio.run(await_outcomes([c.request_id for c in commands], wait_s)) if wait_s > 0 else {}
    code = EXIT_FAILED if failed else EXIT_DONE
    for plan, command in zip(moving, commands, strict=True):
        head = f"  {plan.label}：{plan.old_text(names)} → {plan.new_text(names)}"
        answer = answers.get(command.request_id)
        if wait_s <= 0:
            echo(f"{head}：已提交（请求编号 {command.request_id}）")
        elif answer is None:
            echo(f"{head}：{wait_s:g} 秒内台账未处理（请求编号 {command.request_id}；稍后用 zeroerrand ledger show "
                 f"{project_code} 查看是否已改派，被拒绝的见 zeroerrand ledger requests）")
            code = max(code, EXIT_NO_ANSWER) if code != EXIT_FAILED else code
        elif answer.status == "applied":
            echo(f"{head}：已改派（台账已接受）")
        else:
            echo(f"{head}：台账拒绝：{answer.reason}")
            code = EXIT_FAILED
    return code


def load_engine(rules_dir: Path) -> RoutingEngine:
    """The checked engine of the rules in ``rules_dir`` (``RulesError`` with every problem)."""
    from services.router.active_rules import load_checked

    return load_checked(rules_dir)
