"""The annual 100-point evaluation (policy 五(六)). Pure: no I/O; the store supplies the records.

Weights, the pass mark and the points of each 好差评 level come from ``rules/evaluation.yaml``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.domain import EVALUATOR_BY_MODE, STAGE_NAMES_ZH, ServiceMode, Stage, Unit
from services.common.messages import Satisfaction
from services.common.rule_files import read_located, validate_located
from services.evaluation.annual import AnnualReport, BlockerCause, ProviderScore, StageTimeliness
from services.evaluation.working_days import WorkingCalendar

EVALUATION_FILE = "evaluation.yaml"
PARTS = ("satisfaction", "timeliness", "rectification")


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pass_mark: float = Field(default=70, ge=0, le=100)
    weights: dict[str, float] = Field(default_factory=lambda: {"satisfaction": 0.5, "timeliness": 0.4,
                                                               "rectification": 0.1})
    satisfaction_points: dict[Satisfaction, float] = Field(default_factory=lambda: {
        Satisfaction.VERY_SATISFIED: 100.0, Satisfaction.SATISFIED: 85.0, Satisfaction.FAIRLY_SATISFIED: 70.0,
        Satisfaction.DISSATISFIED: 40.0, Satisfaction.VERY_DISSATISFIED: 0.0})

    @model_validator(mode="after")
    def _complete(self) -> EvaluationConfig:
        if set(self.weights) != set(PARTS):
            raise ValueError(f"weights 必须恰好包含 {', '.join(PARTS)}")
        if any(w < 0 for w in self.weights.values()) or abs(sum(self.weights.values()) - 1) > 1e-9:
            raise ValueError(f"weights 必须非负且合计为 1（现为 {sum(self.weights.values()):g}）")
        if set(self.satisfaction_points) != set(Satisfaction):
            raise ValueError("satisfaction_points 必须为五个评价等级各给一个分值")
        return self


def load_config(rules_dir: str | Path) -> EvaluationConfig:
    source, _ = read_located(Path(rules_dir) / EVALUATION_FILE)
    return validate_located(source, EvaluationConfig, "weights", "权重")


@dataclass(frozen=True)
class ItemRecord:
    project_code: str
    item_code: str
    stage: Stage
    provider: str
    mode: ServiceMode  # evaluated as
    routed_on: date
    time_limit_days: int
    finished_on: date | None = None
    pauses: tuple[tuple[date, date | None], ...] = ()
    blockers: tuple[tuple[str, bool], ...] = ()  # (reason, still open)


@dataclass(frozen=True)
class RatingRecord:
    project_code: str
    provider: str
    level: Satisfaction
    rectified: bool = False


def weighted_score(parts: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """Σ weight × part over the parts that have data, the weights scaled to sum to 1; one decimal."""
    present = {k: v for k, v in parts.items() if v is not None}
    total = sum(weights[k] for k in present)
    if not present or total == 0:
        return 0.0
    return round(sum(weights[k] * v for k, v in present.items()) / total, 1)


@dataclass
class _Tally:
    items: int = 0
    on_time: int = 0
    late: int = 0
    open_items: int = 0
    points: list[float] = field(default_factory=list)
    bad: int = 0
    rectified: int = 0


def timeliness_of(item: ItemRecord, calendar: WorkingCalendar, today: date) -> str:
    """``on_time``, ``late``, or ``open`` (not finished and not yet past its limit)."""
    end = item.finished_on or today
    used = calendar.working_days_used(item.routed_on, end, item.pauses)
    if item.finished_on is not None:
        return "on_time" if used <= item.time_limit_days else "late"
    return "late" if used > item.time_limit_days else "open"


def evaluate(year: int, items: Iterable[ItemRecord], ratings: Iterable[RatingRecord], config: EvaluationConfig,
             units: Mapping[str, Unit], calendar: WorkingCalendar, today: date, generated_at: datetime,
             evaluator: str | None = None) -> AnnualReport:
    """The year's scores per provider and mode, for one evaluator (or all), with the report's figures."""
    year_items = [i for i in items if i.routed_on.year == year]
    tallies: dict[tuple[str, ServiceMode], _Tally] = defaultdict(_Tally)
    modes_of: dict[tuple[str, str], set[ServiceMode]] = defaultdict(set)
    stage_counts: dict[Stage, list[int]] = defaultdict(lambda: [0, 0])
    blocker_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item in year_items:
        modes_of[(item.project_code, item.provider)].add(item.mode)
        tally = tallies[(item.provider, item.mode)]
        tally.items += 1
        outcome = timeliness_of(item, calendar, today)
        if outcome == "on_time":
            tally.on_time += 1
        elif outcome == "late":
            tally.late += 1
        else:
            tally.open_items += 1
        if item.finished_on is not None:
            stage_counts[item.stage][0] += 1
            stage_counts[item.stage][1] += outcome == "on_time"
        for reason, still_open in item.blockers:
            blocker_counts[reason][0] += 1
            blocker_counts[reason][1] += still_open
    for rating in ratings:
        for mode in modes_of.get((rating.project_code, rating.provider), ()):
            tally = tallies[(rating.provider, mode)]
            tally.points.append(config.satisfaction_points[rating.level])
            if rating.level.is_bad:
                tally.bad += 1
                tally.rectified += rating.rectified

    scores = []
    for (provider, mode), t in sorted(tallies.items(), key=lambda kv: (kv[0][1].value, kv[0][0])):
        judge = EVALUATOR_BY_MODE[mode]
        if evaluator is not None and judge != evaluator:
            continue
        parts: dict[str, float | None] = {
            "satisfaction": sum(t.points) / len(t.points) if t.points else None,
            "timeliness": 100 * t.on_time / (t.on_time + t.late) if t.on_time + t.late else None,
            "rectification": (100 * t.rectified / t.bad if t.bad else 100.0) if t.points else None,
        }
        if all(v is None for v in parts.values()):
            continue  # nothing to evaluate yet (no rating, nothing finished or overdue): no score, not a fail
        score = weighted_score(parts, config.weights)
        scores.append(ProviderScore(
            provider=provider, provider_name=units[provider].name if provider in units else provider, mode=mode,
            evaluator=judge, items=t.items, on_time=t.on_time, late=t.late, open_items=t.open_items,
            ratings=len(t.points), bad_ratings=t.bad, rectified=t.rectified,
            satisfaction=_rounded(parts["satisfaction"]), timeliness=_rounded(parts["timeliness"]),
            rectification=_rounded(parts["rectification"]), score=score, passed=score >= config.pass_mark))
    stages = tuple(StageTimeliness(stage=s, stage_name=STAGE_NAMES_ZH[s], items=c[0], on_time=c[1],
                                   rate=round(100 * c[1] / c[0], 1) if c[0] else 0.0)
                   for s in Stage if (c := stage_counts.get(s)) is not None)
    blockers = tuple(BlockerCause(cause=k, count=v[0], open=v[1])
                     for k, v in sorted(blocker_counts.items(), key=lambda kv: -kv[1][0]))
    evaluator_name = units[evaluator].name if evaluator and evaluator in units else "全部评价单位"
    return AnnualReport(year=year, evaluator=evaluator, evaluator_name=evaluator_name, generated_at=generated_at,
                        pass_mark=config.pass_mark, weights=dict(config.weights), scores=tuple(scores), stages=stages,
                        blockers=blockers, calendar_warnings=calendar.warnings)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
