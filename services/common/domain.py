"""The zero-errand domain: stages, service modes, units, catalog items, routing decisions.

Pure data and rules of the policy (《内蒙古和林格尔新区优化招商引资“企业零跑腿”服务工作方案》: stages 二(二),
modes 四, evaluation 五(六)); no I/O.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Stage(StrEnum):
    """The six approval stages of policy section 二(二)."""

    MARKET_ACCESS = "market_access"
    LAND_TRANSFER = "land_transfer"
    PROJECT_LAND_PLANNING = "project_land_planning"
    ENGINEERING_PERMIT = "engineering_permit"
    CONSTRUCTION_PERMIT = "construction_permit"
    COMPLETION_ACCEPTANCE = "completion_acceptance"


STAGE_NAMES_ZH: dict[Stage, str] = {
    Stage.MARKET_ACCESS: "市场准入",
    Stage.LAND_TRANSFER: "土地使用权出让",
    Stage.PROJECT_LAND_PLANNING: "立项用地规划许可",
    Stage.ENGINEERING_PERMIT: "工程建设许可",
    Stage.CONSTRUCTION_PERMIT: "施工许可",
    Stage.COMPLETION_ACCEPTANCE: "竣工验收",
}


class ServiceMode(StrEnum):
    """How an approval item is served (policy section 四)."""

    ASSIST = "assist"
    JOINT = "joint"
    ERRAND = "errand"
    CONSULT = "consult"


MODE_NAMES_ZH: dict[ServiceMode, str] = {
    ServiceMode.ASSIST: "帮办代办",
    ServiceMode.JOINT: "联审联批",
    ServiceMode.ERRAND: "专业跑腿",
    ServiceMode.CONSULT: "咨询服务",
}


class Jurisdiction(StrEnum):
    """Where an approving authority sits relative to the New Area."""

    DISTRICT = "district"
    DISPATCHED = "dispatched"
    OUTSIDE = "outside"


class UnitKind(StrEnum):
    DEPARTMENT = "department"
    DISPATCHED_AGENCY = "dispatched_agency"
    OUTSIDE_AUTHORITY = "outside_authority"
    SERVICE_COMPANY = "service_company"


class Request(StrEnum):
    """What the enterprise asked for an item: to have it handled, or advice only."""

    HANDLE = "handle"
    CONSULT = "consult"


GOV_SERVICE_BUREAU = "gov_service_bureau"
ECON_DEV_BUREAU = "econ_dev_bureau"

# Policy 五(六): 政务服务局 evaluates 帮办代办 and 联审联批, 经济发展招商服务局 evaluates 专业跑腿.
EVALUATOR_BY_MODE: dict[ServiceMode, str] = {
    ServiceMode.ASSIST: GOV_SERVICE_BUREAU,
    ServiceMode.JOINT: GOV_SERVICE_BUREAU,
    ServiceMode.ERRAND: ECON_DEV_BUREAU,
}

# The levels of an overdue item, in order (policy 五(四) 跟踪调度), and what people call them.
OVERDUE_LEVEL_NAMES_ZH: dict[str, str] = {"warning": "预警", "yellow": "黄牌", "red": "红牌"}

# What people call each request to the ledger (the request types of ``messages.py``).
REQUEST_NAMES_ZH: dict[str, str] = {
    "item.contact": "对接企业", "item.accept": "受理", "item.report_progress": "报告进度", "item.report_blocker": "报告堵点/卡点",
    "item.resolve_blocker": "解除堵点/卡点", "item.suspend": "中止办理", "item.resume": "恢复办理", "item.complete": "办结",
    "item.deliver": "移交结果", "task_order.issue": "下发任务单", "task_order.accept": "接收任务单",
    "assessment.submit": "提交测评", "assessment.rectify": "提交整改说明",
}

FREE_SERVICE_NOTE = "“企业零跑腿”服务全程免费"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Unit(_Frozen):
    """A department, dispatched agency, outside authority or service company."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    short_name: str = Field(min_length=1)
    kind: UnitKind
    jurisdiction: Jurisdiction


class Fee(_Frozen):
    """A fee the law requires the enterprise to pay (the service itself is free)."""

    name: str = Field(min_length=1)
    basis: str = Field(min_length=1)


class ItemBasis(_Frozen):
    """Where an item's time limit and approving authority come from (law, regulation, guide)."""

    time_limit: str = Field(min_length=1, description="依据：the source of the time limit")
    owner: str = Field(min_length=1, description="依据：the source of the approving authority")


PREVIOUS_STAGE = "previous_stage"


class CatalogItem(_Frozen):
    """One approval item of the 服务事项清单.

    ``requires`` says what the item waits for: catalog codes whose results it needs (only those
    planned for the same project count), or ``previous_stage``: every planned item of the nearest
    earlier stage that has planned items. Items of one stage with nothing between them run in
    parallel (并联审批).
    """

    code: str = Field(pattern=r"^[A-Z]{2}-\d{2}$")
    name: str = Field(min_length=1)
    stage: Stage
    owner: str
    jurisdiction: Jurisdiction
    time_limit_days: int = Field(gt=0, le=365)
    materials: tuple[str, ...] = Field(min_length=1)
    fees: tuple[Fee, ...] = ()
    requires: tuple[str, ...] | Literal["previous_stage"] = ()
    basis: ItemBasis
    to_confirm: str | None = Field(default=None, description="what is not yet confirmed, for the policy office")
    note: str | None = None

    def fee_note(self) -> str:
        """The free-service statement the enterprise reads, naming any legally required fee."""
        if not self.fees:
            return f"{FREE_SERVICE_NOTE}，本事项无需企业缴纳任何费用。"
        fees = "；".join(f"{fee.name}（依据{fee.basis}）" for fee in self.fees)
        return f"{FREE_SERVICE_NOTE}；以下费用由法律法规规定由企业承担，非服务收费：{fees}。"


class RetiredItem(_Frozen):
    """A catalog code that is no longer used; it is never reused for another item."""

    code: str = Field(pattern=r"^[A-Z]{2}-\d{2}$")
    name: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    replaced_by: str | None = None


class Decision(_Frozen):
    """Why an item went where it went: the record that travels with the item and its event."""

    mode: ServiceMode
    responsible_unit: str
    approving_authority: str
    evaluated_as: ServiceMode
    evaluator: str
    routing_key: str
    rule_id: str
    rule_name: str
    rules_version: str
    facts: dict[str, Any]
    task_order: bool
    decided_at: datetime


class Unroutable(_Frozen):
    """An item no rule can place, with a specific reason (never a guess)."""

    reason_code: str
    reason: str
    rules_version: str
    facts: dict[str, Any]
    decided_at: datetime
