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
    Response,
    StageTimeliness,
    Status,
    TaskOrderTimeliness,
    UncountedRating,
)
from services.evaluation.ledger import (
    Assessment,
    Cards,
    ItemState,
    LedgerItem,
    clock_readings,
    local_day,
    service_clock_start,
)
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
    task_order_issue_days: int = Field(default=2, ge=1, le=60)
    evaluator_ratings_count: bool = True
    warning_days: int = Field(default=1, ge=0, le=30)
    red_card_ratio: float = Field(default=1.5, gt=1, le=10)
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

    @property
    def cards(self) -> Cards:
        """When a running clock earns a 预警, a 黄牌 and a 红牌 (电子监察)."""
        return Cards(warning_days=self.warning_days, red_ratio=self.red_card_ratio)

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
    statutory: list[int] = field(default_factory=lambda: [0, 0, 0])  # on time, finished late, open past the limit
    by_group: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    projects: set[str] = field(default_factory=set)  # served in the year
    answered: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # group -> projects
    uncounted: list[UncountedRating] = field(default_factory=list)
    assessments: int = 0
    bad: int = 0
    rectified: int = 0
    rectified_on_time: int = 0
    late: list[LateRectification] = field(default_factory=list)
    opinions: list[Opinion] = field(default_factory=list)


def active_in(item: LedgerItem, year: int) -> bool:
    """Routed by the end of ``year`` and not finished before it began."""
    return item.routed_on.year <= year and (item.finished_on is None or item.finished_on.year >= year)


def report_day(year: int, today: date) -> date:
    """The day a report of ``year`` reads its running clocks on: today, or the year's last day once
    the year is over (a clock that ran on into the next year is read as it stood on 31 December; one
    already stopped counts as it ended). The demo, the CLI and the console all pass their today
    here, so the same ledger gives the same figures."""
    return min(today, date(year, 12, 31))


async def evaluate_year(repo: LedgerRepository, year: int, config: EvaluationConfig, units: Mapping[str, Unit],
                        calendar: WorkingCalendar, today: date, generated_at: datetime,
                        evaluator: str | None = None) -> AnnualReport:
    """``evaluate`` over the ledger: the year's assessments, the items of the year and of every
    assessed project, and the 招引单位 of each of their projects (who is asked to rate)."""
    assessments = await repo.assessments(year)
    items = await repo.year_items(year, [a.project_code for a in assessments])
    recruiters = {}
    for code in sorted({i.project_code for i in items}):
        project = await repo.project(code)
        if project is not None:
            recruiters[code] = project.recruiting_unit
    return evaluate(year, items, assessments, config, units, calendar, today, generated_at, evaluator=evaluator,
                    recruiters=recruiters)


def _service_began(items: Iterable[LedgerItem]) -> dict[tuple[str, str], date]:
    """(project, provider) → the first day the provider owed the project service (its earliest
    service clock start: ready; for 专业跑腿, the task order's issue)."""
    began: dict[tuple[str, str], date] = {}
    for item in items:
        start = service_clock_start(item)
        if start is not None:
            pair = (item.project_code, item.responsible_unit)
            began[pair] = min(start, began.get(pair, start))
    return began


def _not_counted(record: Assessment, judge: str, began: date | None, config: EvaluationConfig,
                 units: Mapping[str, Unit]) -> str | None:
    """Why a stored 测评 does not count in the score, or None when it does."""
    if record.rater == "recruiting_unit" and record.requested_by == record.provider:
        return "被评价单位作为招引单位测评自己的服务（利益冲突）"
    if began is None or local_day(record.occurred_at) < began:
        return f"测评日期 {local_day(record.occurred_at)} 早于该单位为本项目提供服务（{began or '尚未开始'}）"
    if record.rater == "recruiting_unit" and record.requested_by == judge and not config.evaluator_ratings_count:
        name = units[judge].name if judge in units else judge
        return f"{name}是本服务方式的评价单位，其作为招引单位的测评按 evaluation.yaml（evaluator_ratings_count: false）不计分"
    return None


def evaluate(year: int, items: Iterable[LedgerItem], assessments: Iterable[Assessment],
             config: EvaluationConfig, units: Mapping[str, Unit], calendar: WorkingCalendar, today: date,
             generated_at: datetime, evaluator: str | None = None,
             recruiters: Mapping[str, str] | None = None) -> AnnualReport:
    """The year's scores per provider and mode, for one evaluator (or all), with the report's figures.
    Clocks are read on :func:`report_day`; ``recruiters`` (project → 招引单位) says who of each project
    is asked to rate (without it every project's 招引单位 counts as asked)."""
    all_items = list(items)
    recruiters = recruiters or {}
    as_of = report_day(year, today)
    tallies: dict[tuple[str, ServiceMode], _Tally] = defaultdict(_Tally)
    modes_of: dict[tuple[str, str], set[ServiceMode]] = defaultdict(set)
    stage_counts: dict[Stage, list[int]] = defaultdict(lambda: [0, 0])
    blocker_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    orders = [0, 0, 0, 0]  # on time, late, waiting past the limit, waiting
    estimated: set[int] = set()  # years without holiday data the figures counted working days in
    for item in all_items:
        modes_of[(item.project_code, item.responsible_unit)].add(item.evaluated_as)
        if not active_in(item, year) or item.state is ItemState.WITHDRAWN:  # a 补充协议 took it off the plan
            continue
        tally = tallies[(item.responsible_unit, item.evaluated_as)]
        tally.items += 1
        tally.open_items += item.is_open
        start = service_clock_start(item)
        if start is not None and start <= as_of:
            tally.projects.add(item.project_code)
        readings = clock_readings(item, calendar, as_of, config.service_response_days, config.task_order_issue_days)
        for name, reading in readings.items():
            estimated.update(reading.used_estimated)  # on time or late: the days used, not the due day
            if name == "task_order":
                orders[(0 if not reading.late else 1) if reading.end is not None else (2 if reading.late else 3)] += 1
            elif name == "service":
                if reading.end is not None or reading.late:
                    tally.service[reading.late] += 1
            elif reading.end is not None:
                tally.statutory[reading.late] += 1
                stage_counts[item.stage][0] += 1
                stage_counts[item.stage][1] += not reading.late
            elif reading.late:
                tally.statutory[2] += 1
        for blocker in item.blockers:
            blocker_counts[blocker.reason][0] += 1
            blocker_counts[blocker.reason][1] += blocker.closed_on is None
    began = _service_began(all_items)
    for record in assessments:
        if record.year != year:
            continue  # only the year's 测评 count
        for mode in modes_of.get((record.project_code, record.provider), ()):
            tally = tallies[(record.provider, mode)]
            tally.assessments += 1
            rater = RATER_NAMES_ZH.get(record.rater, record.rater)
            why = _not_counted(record, EVALUATOR_BY_MODE[mode], began.get((record.project_code, record.provider)),
                               config, units)
            if why is not None:
                tally.uncounted.append(UncountedRating(record.assessment_id, record.project_code, rater, why))
                continue
            tally.by_group[record.rater].append(record.total)
            tally.answered[record.rater].add(record.project_code)
            if record.comment:
                tally.opinions.append(Opinion(record.project_code, rater, record.total, record.comment))
            if record.bad:
                tally.bad += 1
                tally.rectified += record.rectified_on is not None
                due = record.rectify_by or as_of
                if record.rectified_on is not None and record.rectified_on <= due:
                    tally.rectified_on_time += 1
                elif record.rectified_on is not None or as_of > due:
                    tally.late.append(LateRectification(record.assessment_id, record.project_code, due,
                                                        record.rectified_on))

    scores = []
    for (provider, mode), t in sorted(tallies.items(), key=lambda kv: (kv[0][1].value, kv[0][0])):
        judge = EVALUATOR_BY_MODE[mode]
        if evaluator is not None and judge != evaluator:
            continue
        questionnaire = questionnaire_score(t.by_group, config.rater_weights)
        references: dict[str, float | None] = {
            "service_on_time": _rate(*t.service), "statutory_on_time": _rate(t.statutory[0], sum(t.statutory[1:])),
            # 差评整改率: rectified within the deadline ÷ every 差评 of the year (an open one is not rectified yet)
            "rectification": 100 * t.rectified_on_time / t.bad if t.bad else None,
        }
        score: float | None = None
        status: Status = "未评价"
        if questionnaire is not None:
            score = weighted_score({"questionnaire": questionnaire, **references}, config.weights)
            status = "合格" if score >= config.pass_mark else "不合格"
        means = {g: sum(v) / len(v) for g, v in t.by_group.items() if v}
        may_rate = {p for p in t.projects if recruiters.get(p) != provider
                    and (config.evaluator_ratings_count or recruiters.get(p) != judge)}
        groups = [g for g in RATERS if config.rater_weights.get(g, 0) > 0]
        alone = [g for g in groups if g in means]
        scores.append(ProviderScore(
            provider=provider, provider_name=units[provider].name if provider in units else provider, mode=mode,
            evaluator=judge, items=t.items, open_items=t.open_items, service_on_time=t.service[0],
            service_late=t.service[1], statutory_on_time=t.statutory[0], statutory_late=t.statutory[1],
            statutory_open_late=t.statutory[2],
            assessments=t.assessments, enterprise=_rounded(means.get("enterprise")),
            recruiting_unit=_rounded(means.get("recruiting_unit")), questionnaire=_rounded(questionnaire),
            service_rate=_rounded(references["service_on_time"]), statutory_rate=_rounded(references["statutory_on_time"]),
            rectification_rate=_rounded(references["rectification"]), bad=t.bad, rectified=t.rectified,
            late_rectifications=tuple(t.late), opinions=tuple(t.opinions), score=score, status=status,
            projects=len(t.projects),
            enterprise_response=Response(len(t.projects), len(t.answered["enterprise"] & t.projects)),
            recruiting_response=Response(len(may_rate), len(t.answered["recruiting_unit"] & may_rate)),
            single_group=RATER_NAMES_ZH[alone[0]] if len(groups) > 1 and len(alone) == 1 else None,
            uncounted=tuple(t.uncounted)))
    stages = tuple(StageTimeliness(stage=s, stage_name=STAGE_NAMES_ZH[s], items=c[0], on_time=c[1],
                                   rate=round(100 * c[1] / c[0], 1) if c[0] else 0.0)
                   for s in Stage if (c := stage_counts.get(s)) is not None)
    blockers = tuple(BlockerCause(cause=k, count=v[0], open=v[1])
                     for k, v in sorted(blocker_counts.items(), key=lambda kv: -kv[1][0]))
    evaluator_name = units[evaluator].name if evaluator and evaluator in units else "全部评价单位"
    covers_errand = evaluator in (None, EVALUATOR_BY_MODE[ServiceMode.ERRAND])
    return AnnualReport(year=year, evaluator=evaluator, evaluator_name=evaluator_name, generated_at=generated_at,
                        pass_mark=config.pass_mark, weights=config.weights,
                        rater_weights={str(k): w for k, w in config.rater_weights.items()},
                        questionnaire=tuple((i.name, i.points) for i in config.questionnaire), scores=tuple(scores),
                        stages=stages, blockers=blockers, calendar_warnings=calendar.warnings_for(estimated), as_of=as_of,
                        evaluator_ratings_count=config.evaluator_ratings_count,
                        task_orders=TaskOrderTimeliness(config.task_order_issue_days, *orders) if covers_errand else None)


def _rate(on_time: int, late: int) -> float | None:
    return 100 * on_time / (on_time + late) if on_time + late else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
