"""Pure routing logic: one signed agreement in, the events and routed items out. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.common.domain import (
    ECON_DEV_BUREAU,
    MODE_NAMES_ZH,
    PREVIOUS_STAGE,
    STAGE_NAMES_ZH,
    CatalogItem,
    Decision,
    Request,
    Stage,
    Unroutable,
)
from services.common.messages import (
    AgreementRejected,
    AgreementSigned,
    ItemRouted,
    ItemUnroutable,
    RoutedItem,
    ServiceStarted,
    as_of_signing,
    item_routed,
    stable_id,
)
from services.router.rule_engine import RoutingEngine

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RoutingResult:
    """Everything one agreement produces, in the order it is published."""

    rejected: AgreementRejected | None = None
    started: ServiceStarted | None = None
    routed: tuple[ItemRouted, ...] = ()
    unroutable: tuple[ItemUnroutable, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def eligibility_problems(agreement: AgreementSigned, known_units: set[str] | frozenset[str]) -> list[str]:
    """Why the agreement cannot be served (policy 二(一), 三(一)); empty when it can."""
    reasons = []
    e = agreement.eligibility
    if not e.zero_errand_clause and not (e.committee_decision or "").strip():
        reasons.append("投资合作协议未约定“企业零跑腿”服务，且无管委会研究议定提供该服务的决定（政策二(一)）")
    if not e.enterprise_consent:
        reasons.append("企业未同意接受“企业零跑腿”服务，服务须以企业自愿为前提（政策三(一)）")
    if agreement.project.recruiting_unit not in known_units:
        reasons.append(f"项目招引单位 {agreement.project.recruiting_unit} 不在单位名录中，无法确定牵头跟踪单位（政策三(二)）")
    return reasons


def route_agreement(agreement: AgreementSigned, engine: RoutingEngine, clock: Clock = _utc_now) -> RoutingResult:
    """Checks eligibility, then decides every planned item under the engine's rules version."""
    book = engine.book
    now = clock()
    project = agreement.project
    reasons = eligibility_problems(agreement, frozenset(book.units))
    if reasons:
        return RoutingResult(rejected=AgreementRejected(
            event_id=stable_id(agreement.agreement_id, "agreement.rejected"),
            occurred_at=now, recorded_at=now,
            agreement_id=agreement.agreement_id, project=project, reasons=tuple(reasons),
        ))

    as_of = as_of_signing(agreement.signed_on if agreement.backfill else None, now)
    routed: list[ItemRouted] = []
    unroutable: list[ItemUnroutable] = []
    seen: dict[tuple[str, Request], int] = {}
    decisions: list[Decision | Unroutable] = []
    for position, planned in enumerate(agreement.plan, start=1):
        line = (planned.item, planned.request)
        if line in seen:
            decisions.append(Unroutable(
                reason_code="duplicate_in_plan", rules_version=engine.version, decided_at=now,
                facts={"item.code": planned.item, "request": planned.request.value},
                reason=f"审批策划第 {position} 项与第 {seen[line]} 项重复（{planned.item}，"
                       f"{'仅咨询' if planned.request is Request.CONSULT else '办理'}），同一事项只分派一次",
            ))
        else:
            seen[line] = position
            decisions.append(engine.decide(planned.item, planned.request, project.facts, now=now))
    handled = [book.catalog[p.item] for p, d in zip(agreement.plan, decisions, strict=True)
               if isinstance(d, Decision) and p.request is Request.HANDLE]

    for position, (planned, decision) in enumerate(zip(agreement.plan, decisions, strict=True), start=1):
        item_id = stable_id(agreement.agreement_id, str(position), planned.item)

        if isinstance(decision, Unroutable):
            catalog_item = book.catalog.get(planned.item) or book.retired.get(planned.item)
            unroutable.append(ItemUnroutable(
                event_id=stable_id(item_id, "item.unroutable"), occurred_at=as_of, recorded_at=now,
                item_id=item_id, agreement_id=agreement.agreement_id, project_code=project.code,
                project_name=project.name, recruiting_unit=project.recruiting_unit,
                item_code=planned.item, item_name=catalog_item.name if catalog_item else None,
                request=planned.request, unroutable=decision,
            ))
            continue

        item = book.catalog[planned.item]
        routed.append(item_routed(RoutedItem(
            item_id=item_id, agreement_id=agreement.agreement_id,
            project_code=project.code, project_name=project.name, enterprise=project.enterprise,
            recruiting_unit=project.recruiting_unit,
            item_code=item.code, item_name=item.name, stage=item.stage, stage_name=STAGE_NAMES_ZH[item.stage],
            request=planned.request, mode=decision.mode, mode_name=MODE_NAMES_ZH[decision.mode],
            responsible_unit=decision.responsible_unit,
            responsible_unit_name=book.units[decision.responsible_unit].name,
            approving_authority=decision.approving_authority,
            approving_authority_name=book.units[decision.approving_authority].name,
            materials=item.materials, time_limit_days=item.time_limit_days,
            fees=item.fees, fee_note=item.fee_note(),
            requires=prerequisites(item, handled) if planned.request is Request.HANDLE else (),
            task_order_required=decision.task_order, decision=decision,
            backfilled_from=agreement.signed_on if agreement.backfill else None,
        )))

    started = ServiceStarted(
        event_id=stable_id(agreement.agreement_id, "service.started"), occurred_at=as_of, recorded_at=now,
        agreement_id=agreement.agreement_id, signed_on=agreement.signed_on, project=project,
        ledger_owner=ECON_DEV_BUREAU, items_planned=len(agreement.plan), items_routed=len(routed),
        items_unroutable=len(unroutable), rules_version=engine.version,
    )
    return RoutingResult(started=started, routed=tuple(routed), unroutable=tuple(unroutable))


def prerequisites(item: CatalogItem, planned: list[CatalogItem]) -> tuple[str, ...]:
    """The planned (handled, routable) items ``item`` waits for, from the catalog's ``requires``.

    A required item that is not planned is not waited for; ``previous_stage`` means every planned
    item of the nearest earlier stage that has any. Advice-only lines wait for nothing.
    """
    codes = {p.code for p in planned}
    if item.requires == PREVIOUS_STAGE:
        order = list(Stage)
        earlier = [p for p in planned if order.index(p.stage) < order.index(item.stage)]
        if not earlier:
            return ()
        nearest = max(order.index(p.stage) for p in earlier)
        return tuple(sorted(p.code for p in earlier if order.index(p.stage) == nearest))
    return tuple(code for code in item.requires if code in codes and code != item.code)
