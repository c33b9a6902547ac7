"""Pure routing logic: one signed agreement in, the events and routed items out. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    Unit,
    Unroutable,
)
from services.common.messages import (
    AgreementAmended,
    AgreementRejected,
    AgreementSigned,
    AnyAgreement,
    ItemRouted,
    ItemUnroutable,
    PlanAmended,
    PlanLine,
    RejectionCode,
    RoutedItem,
    ServiceStarted,
    as_of_signing,
    item_routed,
    stable_id,
)
from services.router.registry import Admission, Line
from services.router.rule_engine import RoutingEngine

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RoutingResult:
    """Everything one agreement produces, in the order it is published."""

    rejected: AgreementRejected | None = None
    started: ServiceStarted | None = None
    amended: PlanAmended | None = None
    routed: tuple[ItemRouted, ...] = ()
    unroutable: tuple[ItemUnroutable, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def line_id(project_code: str, item_code: str, request: Request) -> str:
    """The stable id of one plan line of a project (its routed item's AMQP ``message_id``), whatever
    agreement or amendment carried it: a downstream system dropping repeats by message id sees each
    line of a project once."""
    return stable_id(project_code, "line", item_code, request.value)


def rejection(agreement: AnyAgreement, code: RejectionCode, reasons: list[str], now: datetime,
              print_: str = "") -> AgreementRejected:
    """``agreement.rejected``; an ineligible first agreement keeps the id it always had, the other
    refusals are told apart by their reason and the agreement's content."""
    amendment = isinstance(agreement, AgreementAmended)
    parts = () if code == "not_eligible" and not amendment else (code, print_[:16])
    return AgreementRejected(
        event_id=stable_id(agreement.agreement_id, "agreement.rejected", *parts), occurred_at=now, recorded_at=now,
        agreement_id=agreement.agreement_id, project=agreement.project, reasons=tuple(r[:2000] for r in reasons[:20]),
        reason_code=code, amendment=amendment)


def plan_lines(agreement: AnyAgreement) -> tuple[Line, ...]:
    return tuple(Line(item=p.item, request=p.request) for p in agreement.plan)


@dataclass(frozen=True)
class Take:
    """Take the agreement as ``admission`` (``replay``: it was taken before, this is a redelivery);
    ``previous`` is the revision an amendment is compared with."""

    admission: Admission
    previous: Admission | None = None
    replay: bool = False


def _line_name(line: tuple[str, Request]) -> str:
    return line[0] + ("（仅咨询）" if line[1] is Request.CONSULT else "")


def admit(agreement: AnyAgreement, print_: str, same_id: Admission | None, history: list[Admission],
          units: Mapping[str, Unit], now: datetime) -> Take | AgreementRejected:
    """Whether the router takes an agreement, and as which revision of its project's plan; pure:
    ``same_id`` is what the registry holds under its id, ``history`` the project's admissions."""
    amendment = isinstance(agreement, AgreementAmended)
    project = agreement.project
    if same_id is not None:
        if same_id.fingerprint != print_:
            return rejection(agreement, "agreement_id_reused", [
                f"协议编号 {agreement.agreement_id} 已于 {same_id.recorded_at.date()} 用于另一份内容不同的"
                f"{'补充协议' if same_id.kind == 'agreement.amended' else '协议'}（项目 {same_id.project_code}）；"
                "协议编号不能重复使用。内容有变化的，请以新的协议编号作为补充协议提交（zeroerrand sign --amend）"], now, print_)
        previous = next((a for a in history if a.revision == same_id.revision - 1), None)
        return Take(same_id, previous, replay=True)
    problems = eligibility_problems(agreement, units)
    if problems:
        return rejection(agreement, "not_eligible", problems, now, print_)
    first = history[0] if history else None
    if not amendment:
        if first is not None:
            return rejection(agreement, "project_known", [
                f"项目编码 {project.code} 已由协议 {first.agreement_id} 启动“企业零跑腿”服务（{first.recorded_at.date()}），"
                "一个项目只有一份台账记录，不再按新协议重复启动服务、重复分派已有事项；"
                "如为补充协议，请以补充协议提交（zeroerrand sign --amend 文件），只分派新增事项、撤回删除的事项"], now, print_)
        return Take(Admission(agreement_id=agreement.agreement_id, project_code=project.code, revision=0,
                              kind=agreement.type, fingerprint=print_, plan=plan_lines(agreement),
                              recruiting_unit=project.recruiting_unit, credit_code=project.enterprise.credit_code,
                              recorded_at=now))
    if first is None:
        return rejection(agreement, "project_unknown", [
            f"项目编码 {project.code} 尚未签约启动“企业零跑腿”服务，没有可补充的协议；"
            "请先以投资合作协议签约（zeroerrand sign 文件）"],
            now, print_)
    latest = history[-1]
    reasons = []
    if project.enterprise.credit_code != first.credit_code:
        reasons.append(f"补充协议的企业统一社会信用代码 {project.enterprise.credit_code} 与项目 {project.code} 原协议的 "
                       f"{first.credit_code} 不一致，补充协议不能更换服务对象")
    seen: dict[tuple[str, Request], int] = {}
    for position, planned in enumerate(agreement.plan, start=1):
        line = (planned.item, planned.request)
        if line in seen:
            reasons.append(f"审批策划第 {position} 项与第 {seen[line]} 项重复（{_line_name(line)}）")
        seen.setdefault(line, position)
    lines = frozenset(seen)
    ever = frozenset().union(*(a.lines for a in history))
    again = sorted(lines - latest.lines & ever)
    if again:
        reasons.append(f"事项 {'、'.join(_line_name(x) for x in again)} 已由此前的补充协议删除，不能再次加入同一项目"
                       "（其消息编号已用过，下游系统会当作重复而丢弃）；如确需办理，请另立项目")
    if not reasons and lines == latest.lines and project.recruiting_unit == latest.recruiting_unit:
        reasons.append(f"补充协议与项目 {project.code} 现行审批策划相同、招引单位未变，没有需要变更的内容")
    if reasons:
        return rejection(agreement, "amendment_invalid", reasons, now, print_)
    return Take(Admission(agreement_id=agreement.agreement_id, project_code=project.code, revision=latest.revision + 1,
                          kind=agreement.type, fingerprint=print_, plan=plan_lines(agreement),
                          recruiting_unit=project.recruiting_unit, credit_code=project.enterprise.credit_code,
                          recorded_at=now), latest)


def eligibility_problems(agreement: AnyAgreement, units: Mapping[str, Unit]) -> list[str]:
    """Why the agreement cannot be served (policy 二(一), 三(一)); empty when it can. The 招引单位 must be
    a unit ``units.yaml`` marks as able to recruit (``recruits: true``, policy 三(二), 五(二))."""
    reasons = []
    e = agreement.eligibility
    if not e.zero_errand_clause and not (e.committee_decision or "").strip():
        reasons.append("投资合作协议未约定“企业零跑腿”服务，且无管委会研究议定提供该服务的决定（政策二(一)）")
    if not e.enterprise_consent:
        reasons.append("企业未同意接受“企业零跑腿”服务，服务须以企业自愿为前提（政策三(一)）")
    code = agreement.project.recruiting_unit
    unit = units.get(code)
    if unit is None:
        reasons.append(f"项目招引单位 {code} 不在单位名录中，无法确定牵头跟踪单位（政策三(二)）")
    elif not unit.recruits:
        allowed = "、".join(f"{u.short_name}（{c}）" for c, u in units.items() if u.recruits) or "（无）"
        reasons.append(f"项目招引单位 {unit.name}（{code}）不是新区的项目招引单位，不能牵头审批策划和全程跟踪"
                       f"（政策三(二)、五(二)）；招引单位须是单位名录（units.yaml）中可招引项目的单位：{allowed}")
    return reasons


def route_agreement(agreement: AgreementSigned, engine: RoutingEngine, clock: Clock = _utc_now) -> RoutingResult:
    """Checks eligibility, then decides every planned item under the engine's rules version."""
    book = engine.book
    now = clock()
    project = agreement.project
    reasons = eligibility_problems(agreement, book.units)
    if reasons:
        return RoutingResult(rejected=rejection(agreement, "not_eligible", reasons, now))
    as_of = as_of_signing(agreement.signed_on if agreement.backfill else None, now)
    routed, unroutable = _route_lines(agreement, engine, now, as_of)
    started = ServiceStarted(
        event_id=stable_id(agreement.agreement_id, "service.started"), occurred_at=as_of, recorded_at=now,
        agreement_id=agreement.agreement_id, signed_on=agreement.signed_on, project=project,
        ledger_owner=ECON_DEV_BUREAU, items_planned=len(agreement.plan), items_routed=len(routed),
        items_unroutable=len(unroutable), rules_version=engine.version,
    )
    return RoutingResult(started=started, routed=tuple(routed), unroutable=tuple(unroutable))


def route_amendment(agreement: AgreementAmended, take: Take, engine: RoutingEngine,
                    clock: Clock = _utc_now) -> RoutingResult:
    """A 补充协议 the registry took (``take``, compared with ``take.previous``): ``plan.amended``, then
    only the lines it adds, decided under the engine's rules version, their prerequisites among the
    whole plan as amended. The removed lines are the ledger's to withdraw."""
    assert take.previous is not None
    now = clock()
    project = agreement.project
    before, after = take.previous.lines, take.admission.lines
    added = {line for line in after if line not in before}
    routed, unroutable = _route_lines(agreement, engine, now, now, only=added)
    names = {**{c: r.name for c, r in engine.book.retired.items()}, **{c: i.name for c, i in engine.book.catalog.items()}}
    routed_lines = [PlanLine(item_code=r.item.item_code, item_name=r.item.item_name, request=r.item.request,
                             item_id=r.item.item_id, responsible_unit=r.item.responsible_unit,
                             materials=r.item.materials, time_limit_days=r.item.time_limit_days,
                             fee_note=r.item.fee_note) for r in routed]
    parked_lines = [PlanLine(item_code=u.item_code, item_name=u.item_name, request=u.request, item_id=u.item_id,
                             routed=False) for u in unroutable]
    removed = [PlanLine(item_code=item, item_name=names.get(item), request=request,
                        item_id=line_id(project.code, item, request), routed=False)
               for item, request in sorted(before - after)]
    amended = PlanAmended(
        event_id=stable_id(agreement.agreement_id, "plan.amended"), occurred_at=now, recorded_at=now,
        agreement_id=agreement.agreement_id, signed_on=agreement.signed_on, project=project,
        previous_recruiting_unit=take.previous.recruiting_unit, revision=take.admission.revision,
        added=(*routed_lines, *parked_lines), removed=tuple(removed), items_planned=len(after),
        rules_version=engine.version)
    return RoutingResult(amended=amended, routed=tuple(routed), unroutable=tuple(unroutable))


def _route_lines(agreement: AnyAgreement, engine: RoutingEngine, now: datetime, as_of: datetime,
                 only: set[tuple[str, Request]] | None = None) -> tuple[list[ItemRouted], list[ItemUnroutable]]:
    """Decides every line of the plan (what a line waits for is among the whole plan's routable
    handled lines) and makes the routed and unroutable items of those in ``only`` (all if None)."""
    book = engine.book
    project = agreement.project
    amendment_id = agreement.agreement_id if isinstance(agreement, AgreementAmended) else None
    backfilled_from = agreement.signed_on if isinstance(agreement, AgreementSigned) and agreement.backfill else None
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
        if only is not None and (planned.item, planned.request) not in only:
            continue
        item_id = (stable_id(agreement.agreement_id, str(position), planned.item)
                   if isinstance(decision, Unroutable) and decision.reason_code == "duplicate_in_plan"
                   else line_id(project.code, planned.item, planned.request))

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
            backfilled_from=backfilled_from, amendment_id=amendment_id,
        )))
    return routed, unroutable


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
