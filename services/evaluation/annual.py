"""The annual comprehensive evaluation (年度综合评价) as data: what scoring produces and reports show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.common.domain import ServiceMode, Stage


@dataclass(frozen=True)
class ProviderScore:
    """One provider's 100-point score for one service mode in one year."""

    provider: str  # unit code of the unit that did the work
    provider_name: str
    mode: ServiceMode  # assist / joint / errand: the mode it is evaluated as (consult counts as its mode)
    evaluator: str  # unit code: gov_service_bureau (assist, joint) or econ_dev_bureau (errand)
    items: int  # items of the year handled by this provider in this mode
    on_time: int  # finished (completed or delivered) within the time limit
    late: int  # finished after the limit, or still open past it
    open_items: int  # not finished yet and not past the limit
    ratings: int
    bad_ratings: int  # 差评: 不满意 or 非常不满意
    rectified: int  # 差评 whose follow-up the provider closed with a rectification note
    satisfaction: float | None  # 0..100; None without any rating
    timeliness: float | None  # 0..100; None without any finished or overdue item
    rectification: float | None  # 0..100; None without any rating, 100 with ratings but no 差评
    score: float  # 0..100, one decimal
    passed: bool  # score >= pass mark


@dataclass(frozen=True)
class StageTimeliness:
    stage: Stage
    stage_name: str
    items: int  # finished items of the stage
    on_time: int
    rate: float  # 0..100; 0 when no item finished


@dataclass(frozen=True)
class BlockerCause:
    cause: str  # the reason text given when the blocker was reported
    count: int
    open: int  # not yet unblocked


@dataclass(frozen=True)
class AnnualReport:
    year: int
    evaluator: str | None  # unit code, or None for every evaluator
    evaluator_name: str
    generated_at: datetime
    pass_mark: float
    weights: dict[str, float]  # satisfaction / timeliness / rectification, summing to 1
    scores: tuple[ProviderScore, ...]
    stages: tuple[StageTimeliness, ...]
    blockers: tuple[BlockerCause, ...]
    calendar_warnings: tuple[str, ...] = field(default=())

    @property
    def exit_list(self) -> tuple[ProviderScore, ...]:
        """退出/整改名单: providers below the pass mark."""
        return tuple(s for s in self.scores if not s.passed)
