"""The annual 100-point evaluation (policy 五(六)). Pure: no I/O; the store supplies the records.

The score is the 综合测评 the evaluating department organises among 服务对象 and 项目招引单位: the
questionnaire of ``rules/evaluation.yaml`` (indicators and their points, 100 in all), each rater
group's mean total weighted by ``rater_weights``. The ledger's own figures (首问响应 and 法定时限
on-time rates, 差评 rectification) are shown beside it and count only with a weight in
``reference_weights`` (default 0). A provider without any 测评 of the year is 未评价.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.domain import EVALUATOR_BY_MODE, STAGE_NAMES_ZH, ServiceMode, Stage, Unit
from services.common.yaml_files import read_located, validate_located
from services.evaluation.annual import (
    AnnualReport,
    BlockerCause,
    LateRectification,
    Opinion,
    ProviderScore,
    StageTimeliness,
    Status,
)
from services.evaluation.ledger import Assessment, ItemState, LedgerItem, clock_readings
from services.evaluation.working_days import WorkingCalendar

if TYPE_CHECKING:  # the repository imports this module
    from services.evaluation.repository import LedgerRepository

EVALUATION_FILE = "evaluation.yaml"
Rater = Literal["enterprise", "recruiting_unit"]
Reference = Literal["service_on_time", "statutory_on_time", "rectification"]
RATERS: tuple[Rater, ...] = ("enterprise", "recruiting_unit")
REFERENCES: tuple[Reference, ...] = ("service_on_time", "statutory_on_time", "rectification")
RATER_NAMES_ZH: dict[str, str] = {"enterprise": "服务对象", "recruiting_unit": "项目招引单位"}


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Indicator(_Strict):
    """One question of the 测评 questionnaire, answered with 0..points."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    points: float = Field(gt=0, le=100)


DEFAULT_QUESTIONNAIRE = (
    Indicator(code="responsiveness", name="首问负责、主动对接及时", points=20),
    Indicator(code="notice", name="一次性告知清楚完整", points=20),
    Indicator(code="efficiency", name="办理效率与进度沟通", points=25),
    Indicator(code="attitude", name="服务态度与专业水平", points=15),
    Indicator(code="free_of_charge", name="免费服务落实，无额外负担", points=10),
    Indicator(code="delivery", name="审批结果一次性完整移交", points=10),
)


class EvaluationConfig(_Strict):
    pass_mark: float = Field(default=70, ge=0, le=100)
    questionnaire: tuple[Indicator, ...] = Field(default=DEFAULT_QUESTIONNAIRE, min_length=1)
    rater_weights: dict[Rater, float] = Field(default_factory=lambda: dict.fromkeys(RATERS, 0.5))
    reference_weights: dict[Reference, float] = Field(default_factory=lambda: dict.fromkeys(REFERENCES, 0.0))
    service_response_days: int = Field(default=2, ge=1, le=60)
    bad_below: float = Field(default=60, ge=0, le=100)
    rectification_days: int = Field(default=10, ge=1, le=120)
    auto_issue_task_orders: bool = False
    assessment_late_until: str = Field(default="01-31", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationConfig:
        total = sum(i.points for i in self.questionnaire)
        if abs(total - 100) > 1e-9:
            raise ValueError(f"questionnaire 各指标分值合计必须为 100（现为 {total:g}）")
        codes = [i.code for i in self.questionnaire]
        if len(set(codes)) != len(codes):
            raise ValueError("questionnaire 指标编码不能重复")
        if any(w < 0 for w in self.rater_weights.values()) or abs(sum(self.rater_weights.values()) - 1) > 1e-9:
            raise ValueError(f"rater_weights 必须非负且合计为 1（现为 {sum(self.rater_weights.values()):g}）")
        references = sum(self.reference_weights.values())
        if any(w < 0 for w in self.reference_weights.values()) or references >= 1:
            raise ValueError(f"reference_weights 必须非负且合计小于 1，综合测评须占一部分（现为 {references:g}）")
        return self

    @property
    def weights(self) -> dict[str, float]:
        """The parts of the score: the questionnaire and every reference figure given a weight."""
        references: dict[str, float] = {k: w for k, w in self.reference_weights.items() if w > 0}
        return {"questionnaire": 1 - sum(references.values()), **references}

    def late_until(self, year: int) -> date:
        """The last day a 测评 of ``year`` may still be submitted (in the next year)."""
        month, day = (int(x) for x in self.assessment_late_until.split("-"))
        return date(year + 1, month, day)


def load_config(rules_dir: str | Path) -> EvaluationConfig:
    source, _ = read_located(Path(rules_dir) / EVALUATION_FILE)
    return validate_located(source, EvaluationConfig, "questionnaire", "指标")


def weighted_score(parts: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """Σ weight × part over the parts that have data, the weights scaled to sum to 1; one decimal."""
    present = {k: v for k, v in parts.items() if v is not None and weights.get(k, 0) > 0}
    total = sum(weights[k] for k in present)
    if not present or total == 0:
        return 0.0
    return round(sum(weights[k] * v for k, v in present.items()) / total, 1)


def questionnaire_score(by_group: Mapping[str, list[float]], rater_weights: Mapping[Any, float]) -> float | None:
    """The groups' mean totals weighted by group; a group nobody of answered is left out."""
    means = {g: sum(v) / len(v) for g, v in by_group.items() if v}
    weight = sum(rater_weights.get(g, 0) for g in means)
    if not means or weight == 0:
        return None
    return sum(rater_weights.get(g, 0) * m for g, m in means.items()) / weight


@dataclass
class _Tally:
    items: int = 0
    open_items: int = 0
    service: list[int] = field(default_factory=lambda: [0, 0])  # on time, late
    statutory: list[int] = field(default_factory=lambda: [0, 0])
    by_group: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    assessments: int = 0
    bad: int = 0
    rectified: int = 0
    rectified_on_time: int = 0
    rectifications_due: int = 0  # rectified, or past the deadline: a 差评 still within it is not counted yet
    late: list[LateRectification] = field(default_factory=list)
    opinions: list[Opinion] = field(default_factory=list)


def active_in(item: LedgerItem, year: int) -> bool:
    """Routed by the end of ``year`` and not finished before it began."""
    return item.routed_on.year <= year and (item.finished_on is None or item.finished_on.year >= year)


async def evaluate_year(repo: LedgerRepository, year: int, config: EvaluationConfig, units: Mapping[str, Unit],
                        calendar: WorkingCalendar, today: date, generated_at: datetime,
                        evaluator: str | None = None) -> AnnualReport:
    """``evaluate`` over the ledger: the year's assessments and the items of the year and of every
    assessed project."""
    assessments = await repo.assessments(year)
    items = await repo.year_items(year, [a.project_code for a in assessments])
    return evaluate(year, items, assessments, config, units, calendar, today, generated_at, evaluator=evaluator)


def evaluate(year: int, items: Iterable[LedgerItem], assessments: Iterable[Assessment],
             config: EvaluationConfig, units: Mapping[str, Unit], calendar: WorkingCalendar, today: date,
             generated_at: datetime, evaluator: str | None = None) -> AnnualReport:
    """The year's scores per provider and mode, for one evaluator (or all), with the report's figures."""
    all_items = list(items)
    tallies: dict[tuple[str, ServiceMode], _Tally] = defaultdict(_Tally)
    modes_of: dict[tuple[str, str], set[ServiceMode]] = defaultdict(set)
    stage_counts: dict[Stage, list[int]] = defaultdict(lambda: [0, 0])
    blocker_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    estimated: set[int] = set()  # years without holiday data the figures counted working days in
    for item in all_items:
        modes_of[(item.project_code, item.responsible_unit)].add(item.evaluated_as)
        if not active_in(item, year) or item.state is ItemState.WITHDRAWN:  # a 补充协议 took it off the plan
            continue
        tally = tallies[(item.responsible_unit, item.evaluated_as)]
        tally.items += 1
        tally.open_items += item.is_open
        for name, reading in clock_readings(item, calendar, today, config.service_response_days).items():
            estimated.update(reading.used_estimated)  # on time or late: the days used, not the due day
            counts = tally.service if name == "service" else tally.statutory
            if reading.end is not None:
                counts[reading.late] += 1
            elif reading.late:
                counts[1] += 1
            if name == "statutory" and reading.end is not None:
                stage_counts[item.stage][0] += 1
                stage_counts[item.stage][1] += not reading.late
        for blocker in item.blockers:
            blocker_counts[blocker.reason][0] += 1
            blocker_counts[blocker.reason][1] += blocker.closed_on is None
    for record in assessments:
        if record.year != year:
            continue  # only the year's 测评 count
        for mode in modes_of.get((record.project_code, record.provider), ()):
            tally = tallies[(record.provider, mode)]
            tally.assessments += 1
            tally.by_group[record.rater].append(record.total)
            if record.comment:
                tally.opinions.append(Opinion(record.project_code, RATER_NAMES_ZH.get(record.rater, record.rater),
                                              record.total, record.comment))
            if record.bad:
                tally.bad += 1
                tally.rectified += record.rectified_on is not None
                due = record.rectify_by or today
                if record.rectified_on is not None and record.rectified_on <= due:
                    tally.rectified_on_time += 1
                    tally.rectifications_due += 1
                elif record.rectified_on is not None or today > due:
                    tally.rectifications_due += 1
                    tally.late.append(LateRectification(record.assessment_id, record.project_code, due,
                                                        record.rectified_on))

    scores = []
    for (provider, mode), t in sorted(tallies.items(), key=lambda kv: (kv[0][1].value, kv[0][0])):
        judge = EVALUATOR_BY_MODE[mode]
        if evaluator is not None and judge != evaluator:
            continue
        questionnaire = questionnaire_score(t.by_group, config.rater_weights)
        references: dict[str, float | None] = {
            "service_on_time": _rate(*t.service), "statutory_on_time": _rate(*t.statutory),
            "rectification": 100 * t.rectified_on_time / t.rectifications_due if t.rectifications_due else None,
        }
        score: float | None = None
        status: Status = "未评价"
        if questionnaire is not None:
            score = weighted_score({"questionnaire": questionnaire, **references}, config.weights)
            status = "合格" if score >= config.pass_mark else "不合格"
        means = {g: sum(v) / len(v) for g, v in t.by_group.items() if v}
        scores.append(ProviderScore(
            provider=provider, provider_name=units[provider].name if provider in units else provider, mode=mode,
            evaluator=judge, items=t.items, open_items=t.open_items, service_on_time=t.service[0],
            service_late=t.service[1], statutory_on_time=t.statutory[0], statutory_late=t.statutory[1],
            assessments=t.assessments, enterprise=_rounded(means.get("enterprise")),
            recruiting_unit=_rounded(means.get("recruiting_unit")), questionnaire=_rounded(questionnaire),
            service_rate=_rounded(references["service_on_time"]), statutory_rate=_rounded(references["statutory_on_time"]),
            rectification_rate=_rounded(references["rectification"]), bad=t.bad, rectified=t.rectified,
            late_rectifications=tuple(t.late), opinions=tuple(t.opinions), score=score, status=status))
    stages = tuple(StageTimeliness(stage=s, stage_name=STAGE_NAMES_ZH[s], items=c[0], on_time=c[1],
                                   rate=round(100 * c[1] / c[0], 1) if c[0] else 0.0)
                   for s in Stage if (c := stage_counts.get(s)) is not None)
    blockers = tuple(BlockerCause(cause=k, count=v[0], open=v[1])
                     for k, v in sorted(blocker_counts.items(), key=lambda kv: -kv[1][0]))
    evaluator_name = units[evaluator].name if evaluator and evaluator in units else "全部评价单位"
    return AnnualReport(year=year, evaluator=evaluator, evaluator_name=evaluator_name, generated_at=generated_at,
                        pass_mark=config.pass_mark, weights=config.weights,
                        rater_weights={str(k): w for k, w in config.rater_weights.items()},
                        questionnaire=tuple((i.name, i.points) for i in config.questionnaire), scores=tuple(scores),
                        stages=stages, blockers=blockers, calendar_warnings=calendar.warnings_for(estimated))


def _rate(on_time: int, late: int) -> float | None:
    return 100 * on_time / (on_time + late) if on_time + late else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
