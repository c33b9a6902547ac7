"""The annual comprehensive evaluation (年度综合评价) as data: what scoring produces and reports show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from services.common.domain import ServiceMode, Stage

Status = Literal["合格", "不合格", "未评价"]


@dataclass(frozen=True)
class Opinion:
    """One 评价意见 of a 测评, for the policy's revision (五(七))."""

    project_code: str
    rater: str  # 服务对象 / 项目招引单位
    total: float
    comment: str


@dataclass(frozen=True)
class LateRectification:
    assessment_id: str
    project_code: str
    rectify_by: date
    rectified_on: date | None  # None: still not rectified


@dataclass(frozen=True)
class UncountedRating:
    """A 测评 of the year kept in the ledger but left out of the score, with the reason."""

    assessment_id: str
    project_code: str
    rater: str  # 服务对象 / 项目招引单位
    reason: str


@dataclass(frozen=True)
class Response:
    """How many of a rater group were asked (one per project served in the year) and answered."""

    asked: int
    answered: int


@dataclass(frozen=True)
class TaskOrderTimeliness:
    """经济发展招商服务局's issuing of 专业跑腿 task orders in the year (its own clock, policy 四(三))."""

    limit_days: int
    on_time: int  # issued within the limit from ready
    late: int  # issued after it
    waiting_late: int  # not issued, the limit passed
    waiting: int  # not issued, still within the limit

    @property
    def rate(self) -> float | None:
        done = self.on_time + self.late + self.waiting_late
        return round(100 * self.on_time / done, 1) if done else None


@dataclass(frozen=True)
class ProviderScore:
    """One provider's 100-point score for one service mode in one year.

    The score is the 综合测评 of the year (policy 五(六)): the questionnaire's totals averaged per rater
    group and weighted by group; the ledger's figures are shown beside it and count only with a weight
    in ``evaluation.yaml``. Without any 测评 of the year the provider is 未评价: no score, not a fail.
    """

    provider: str  # unit code of the unit that did the work
    provider_name: str
    mode: ServiceMode  # assist / joint / errand: the mode it is evaluated as (consult counts as its mode)
    evaluator: str  # unit code: gov_service_bureau (assist, joint) or econ_dev_bureau (errand)
    items: int  # items of the year handled by this provider in this mode
    open_items: int  # not finished yet
    service_on_time: int  # 首问响应 within the limit
    service_late: int  # after the limit, or still not contacted past it
    statutory_on_time: int  # finished within the statutory limit from 受理
    statutory_late: int  # finished after it (超时办结)
    assessments: int  # 测评 of the year
    enterprise: float | None  # mean total of the service objects' 测评 (0..100)
    recruiting_unit: float | None  # mean total of the recruiting units' 测评
    questionnaire: float | None  # the groups' means weighted by rater_weights
    service_rate: float | None  # reference: % of service clocks on time
    statutory_rate: float | None  # reference: % of statutory clocks on time
    rectification_rate: float | None  # reference: 差评 rectified by their deadline ÷ all 差评 of the year, in %
    bad: int  # 差评 of the year
    rectified: int  # rectified (on time or late)
    late_rectifications: tuple[LateRectification, ...]
    opinions: tuple[Opinion, ...]
    score: float | None  # 0..100, one decimal; None when 未评价
    status: Status
    statutory_open_late: int = 0  # not finished, the limit passed (超时未办结)
    projects: int = 0  # projects served in the year: each one's enterprise and 招引单位 are asked to rate
    enterprise_response: Response = Response(0, 0)
    recruiting_response: Response = Response(0, 0)
    single_group: str | None = None  # the rater group that alone decided the score (the other did not answer)
    uncounted: tuple[UncountedRating, ...] = ()

    @property
    def response_rate(self) -> float | None:
        """Answered ÷ asked over both rater groups, in %."""
        asked = self.enterprise_response.asked + self.recruiting_response.asked
        answered = self.enterprise_response.answered + self.recruiting_response.answered
        return round(100 * answered / asked, 1) if asked else None

    @property
    def passed(self) -> bool:
        return self.status == "合格"


@dataclass(frozen=True)
class StageTimeliness:
    stage: Stage
    stage_name: str
    items: int  # items of the stage whose statutory clock ended (completed)
    on_time: int
    rate: float  # 0..100; 0 when no item finished


@dataclass(frozen=True)
class BlockerCause:
    cause: str  # the reason text given when the blocker was reported
    count: int
    open: int  # not yet resolved


@dataclass(frozen=True)
class AnnualReport:
    year: int
    evaluator: str | None  # unit code, or None for every evaluator
    evaluator_name: str
    generated_at: datetime
    pass_mark: float
    weights: dict[str, float]  # questionnaire and the ledger figures that count, summing to 1
    rater_weights: dict[str, float]  # enterprise / recruiting_unit
    questionnaire: tuple[tuple[str, float], ...]  # (indicator name, points)
    scores: tuple[ProviderScore, ...]
    stages: tuple[StageTimeliness, ...]
    blockers: tuple[BlockerCause, ...]
    calendar_warnings: tuple[str, ...] = field(default=())
    as_of: date | None = None  # the day the clocks are read on: the report's day, at most the year's last
    evaluator_ratings_count: bool = True  # a rating by the mode's evaluator acting as 招引单位 counts
    task_orders: TaskOrderTimeliness | None = None  # when the report covers 专业跑腿

    @property
    def exit_list(self) -> tuple[ProviderScore, ...]:
        """退出/整改名单: providers evaluated below the pass mark (never the 未评价)."""
        return tuple(s for s in self.scores if s.status == "不合格")

    @property
    def unevaluated(self) -> tuple[ProviderScore, ...]:
        return tuple(s for s in self.scores if s.status == "未评价")
