"""Builders for ledger tests: routed items, requests, and a ledger on the in-memory fakes."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from services.common.bus import MemoryPublisher
from services.common.domain import EVALUATOR_BY_MODE, Decision, Request, ServiceMode, Stage
from services.common.messages import (
    Contact,
    Enterprise,
    ItemRouted,
    Project,
    RoutedItem,
    ServiceStarted,
)
from services.common.rule_files import load_rulebook
from services.evaluation.handlers import Ledger
from services.evaluation.repository import LedgerRepository, MemoryLedgerRepository
from services.evaluation.scoring import EvaluationConfig
from services.evaluation.working_days import WorkingCalendar
from tests.conftest import RULES

LOCAL = ZoneInfo("Asia/Shanghai")
UNITS = load_rulebook(RULES).units
UNIT_NAMES = {code: unit.name for code, unit in UNITS.items()}
CREDIT = "91150100MA0000001X"
_ids = itertools.count(1)


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), LOCAL)


def ledger(config: EvaluationConfig | None = None, repo: LedgerRepository | None = None) -> Ledger:
    return Ledger(repo or MemoryLedgerRepository(), MemoryPublisher(), WorkingCalendar(), config or EvaluationConfig(),
                  UNIT_NAMES)


def project(code: str, recruiting_unit: str = "econ_dev_bureau", credit: str = CREDIT) -> Project:
    return Project(code=code, name=f"项目{code}", recruiting_unit=recruiting_unit,
                   enterprise=Enterprise(name=f"企业{code}", credit_code=credit, contact=Contact(name="王经理")))


def started(code: str, signed: date, **kwargs: Any) -> ServiceStarted:
    return ServiceStarted(event_id=f"started-{code}", occurred_at=at(signed), recorded_at=at(signed),
                          agreement_id=f"A-{code}", signed_on=signed, project=project(code, **kwargs),
                          ledger_owner="econ_dev_bureau", items_planned=1, items_routed=1, items_unroutable=0,
                          rules_version="test")


def routed(code: str, item: str, signed: date, *, unit: str = "planning_construction_bureau",
           mode: ServiceMode = ServiceMode.JOINT, limit: int = 5, requires: tuple[str, ...] = (),
           stage: Stage = Stage.ENGINEERING_PERMIT, request: Request = Request.HANDLE) -> ItemRouted:
    evaluated = ServiceMode.ERRAND if mode is ServiceMode.ERRAND else mode
    decision = Decision(mode=mode, responsible_unit=unit, approving_authority=unit, evaluated_as=evaluated,
                        evaluator=EVALUATOR_BY_MODE[evaluated], routing_key=f"{mode.value}.{unit}", rule_id="r",
                        rule_name="规则", rules_version="test", facts={}, task_order=mode is ServiceMode.ERRAND,
                        decided_at=at(signed))
    p = project(code)
    return ItemRouted(
        event_id=f"routed-{code}-{item}-{request.value}", occurred_at=at(signed), recorded_at=at(signed),
        item=RoutedItem(
            item_id=f"{code}-{item}-{request.value}", agreement_id=f"A-{code}", project_code=code, project_name=p.name,
            enterprise=p.enterprise, recruiting_unit=p.recruiting_unit, item_code=item, item_name=f"事项{item}",
            stage=stage, stage_name="阶段", request=request, mode=mode, mode_name="方式", responsible_unit=unit,
            responsible_unit_name=UNIT_NAMES.get(unit, unit), approving_authority=unit,
            approving_authority_name=UNIT_NAMES.get(unit, unit), materials=("材料",), time_limit_days=limit, fees=(),
            fee_note="免费", requires=requires, task_order_required=mode is ServiceMode.ERRAND, decision=decision))


def request(model: Any, day: date, by: str, **fields: Any) -> Any:
    moment = at(day)
    return model(request_id=f"req-{next(_ids)}", requested_at=moment.astimezone(UTC), occurred_at=moment,
                 requested_by=by, **fields)
