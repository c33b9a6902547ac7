"""综合测评 requests checked against the ledger (policy 五(六)). Pure: no I/O.

A 测评 is accepted only from the project's own enterprise (by its 统一社会信用代码) or recruiting
unit, never from the provider itself (a 招引单位 that also served the project cannot rate its own
service), for a provider that served the project in the 测评's year and whose service had begun by
the day of the 测评 (for 专业跑腿, the task order's issue), once per rater group and year, with every
indicator of the questionnaire answered within its points. A total below ``bad_below`` is a 差评: it
opens a rectification due ``rectification_days`` working days later, and the departments that
evaluate the provider (政务服务局, 经济发展招商服务局) are told.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime, time

from services.common.messages import (
    AssessmentRectificationOverdue,
    AssessmentRectified,
    AssessmentSubmitted,
    RectifyAssessment,
    SubmitAssessment,
    stable_id,
)
from services.evaluation.ledger import (
    FUTURE_TOLERANCE,
    LOCAL,
    Assessment,
    LedgerItem,
    ProjectRecord,
    Refused,
    local_day,
    service_clock_start,
)
from services.evaluation.scoring import RATER_NAMES_ZH, EvaluationConfig
from services.evaluation.working_days import WorkingCalendar


def decide_assessment(command: SubmitAssessment, project: ProjectRecord, items: Sequence[LedgerItem],
                      existing: Assessment | None, config: EvaluationConfig, calendar: WorkingCalendar,
                      now: datetime, unit_names: Mapping[str, str]) -> tuple[Assessment, AssessmentSubmitted] | Refused:
    if command.occurred_at - now > FUTURE_TOLERANCE:
        return Refused(f"发生时间 {command.occurred_at.isoformat(timespec='minutes')} 晚于当前时间，不能提交测评")
    rater = RATER_NAMES_ZH[command.rater]
    expected = project.credit_code if command.rater == "enterprise" else project.recruiting_unit
    if command.requested_by != expected:
        who = unit_names.get(command.requested_by, command.requested_by)
        return Refused(f"项目 {project.code} 的{rater}测评只能由{rater}"
                       f"（{project.enterprise if command.rater == 'enterprise' else unit_names.get(expected, expected)}）"
                       f"提交，{who}不能代为提交")
    provider = unit_names.get(command.provider, command.provider)
    if command.requested_by == command.provider:
        return Refused(f"利益冲突：{provider}是项目 {project.code} 的{rater}，也承办了该项目的事项，不能测评自己的服务"
                       f"（方案五(六)：由评价单位组织服务对象、项目招引单位测评）；对{provider}的测评由服务对象提交")
    served = [i for i in items if i.responsible_unit == command.provider]
    if not served:
        return Refused(f"{provider}未承办项目 {project.code} 的任何事项，不能对其测评")
    day, today = local_day(command.occurred_at), local_day(now)  # the deadline is the ledger's day, not the sender's
    if command.year > today.year:
        return Refused(f"{command.year} 年度尚未开始，不能提交该年度的测评")
    if command.year < today.year and today > config.late_until(command.year):
        return Refused(f"{command.year} 年度测评已于 {config.late_until(command.year)} 截止，不能再提交")
    if not any(serving_in(i, command.year) for i in served):
        return Refused(f"{provider}在 {command.year} 年度没有为项目 {project.code} 承办可办理的事项"
                       "（其事项尚在等待前置事项，或“专业跑腿”任务单尚未下发），不能测评该年度")
    began = service_began(served)
    if began is None or day < began:
        return Refused(f"{provider}为项目 {project.code} 提供服务始于 {began}（事项可办理，“专业跑腿”自任务单下发），"
                       f"{day} 的测评早于其任何服务，不能提交")
    if existing is not None:
        return Refused(f"{rater}已提交过对{provider}在项目 {project.code} 的 {command.year} 年度测评"
                       f"（编号 {existing.assessment_id}），每年每类评价人只测评一次")
    indicators = {i.code: i for i in config.questionnaire}
    unknown = sorted(set(command.scores) - set(indicators))
    missing = [code for code in indicators if code not in command.scores]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"问卷中没有指标 {'、'.join(unknown)}")
        if missing:
            parts.append(f"缺少指标 {'、'.join(f'{c}（{indicators[c].name}）' for c in missing)}")
        return Refused("测评内容不完整：" + "；".join(parts))
    for code, points in command.scores.items():
        if not 0 <= points <= indicators[code].points:
            return Refused(f"“{indicators[code].name}”的得分 {points:g} 超出范围 0–{indicators[code].points:g}"
                           f"（指标编码 {code}）")
    total = round(sum(command.scores.values()), 1)
    bad = total < config.bad_below
    rectify_by = calendar.add_working_days(day, config.rectification_days) if bad else None
    assessment = Assessment(
        assessment_id=command.request_id, project_code=project.code, provider=command.provider, rater=command.rater,
        requested_by=command.requested_by, operator=command.operator, year=command.year, scores=command.scores,
        total=total, comment=command.comment, bad=bad, rectify_by=rectify_by, occurred_at=command.occurred_at,
        recorded_at=now, evaluators=tuple(sorted({i.evaluator for i in served})),
        rectification_weight=config.reference_weights.get("rectification", 0.0))
    return assessment, submitted(assessment)


def submitted(assessment: Assessment) -> AssessmentSubmitted:
    """The event of a stored 测评 (the same every time it is announced)."""
    a = assessment
    return AssessmentSubmitted(
        event_id=stable_id(a.assessment_id, "assessment.submitted"), occurred_at=a.occurred_at,
        recorded_at=a.recorded_at, assessment_id=a.assessment_id, project_code=a.project_code, provider=a.provider,
        rater=a.rater, requested_by=a.requested_by, year=a.year, scores=a.scores, total=a.total, comment=a.comment,
        bad=a.bad, rectify_by=a.rectify_by, evaluators=a.evaluators, rectification_weight=a.rectification_weight)


def rectified(assessment: Assessment) -> AssessmentRectified:
    """The event of a stored rectification."""
    a = assessment
    assert a.rectified_by_request is not None and a.rectified_on is not None
    return AssessmentRectified(
        event_id=stable_id(a.rectified_by_request, "assessment.rectified"),
        occurred_at=datetime.combine(a.rectified_on, time(12), LOCAL), recorded_at=a.recorded_at,
        assessment_id=a.assessment_id, project_code=a.project_code, provider=a.provider,
        note=a.rectification or "", late=a.rectify_by is not None and a.rectified_on > a.rectify_by,
        evaluators=a.evaluators)


def rectification_overdue(assessments: Sequence[Assessment], reminded: Collection[str], today: date,
                          now: datetime) -> list[AssessmentRectificationOverdue]:
    """The reminder of each 差评 whose deadline passed before ``today`` with no rectification, unless
    it is among the ``reminded`` event ids (sent once; a late rectification is announced by itself)."""
    due = []
    for a in assessments:
        if not a.bad or a.rectified_on is not None or a.rectify_by is None or a.rectify_by >= today:
            continue
        event_id = stable_id(a.assessment_id, "assessment.rectification_overdue")
        if event_id not in reminded:
            due.append(AssessmentRectificationOverdue(
                event_id=event_id, occurred_at=now, recorded_at=now, assessment_id=a.assessment_id,
                project_code=a.project_code, provider=a.provider, total=a.total, rectify_by=a.rectify_by,
                evaluators=a.evaluators))
    return due


def decide_rectification(command: RectifyAssessment, assessment: Assessment, now: datetime,
                         unit_names: Mapping[str, str]) -> tuple[Assessment, AssessmentRectified] | Refused:
    provider = unit_names.get(assessment.provider, assessment.provider)
    if command.requested_by != assessment.provider:
        who = unit_names.get(command.requested_by, command.requested_by)
        return Refused(f"测评 {assessment.assessment_id} 的整改由被评价单位{provider}提交，{who}不能提交")
    if not assessment.bad:
        return Refused(f"测评 {assessment.assessment_id} 得分 {assessment.total:g}，不是差评，无需整改")
    if assessment.rectified_on is not None:
        return Refused(f"测评 {assessment.assessment_id} 已于 {assessment.rectified_on} 整改")
    if command.occurred_at - now > FUTURE_TOLERANCE:
        return Refused(f"发生时间 {command.occurred_at.isoformat(timespec='minutes')} 晚于当前时间，不能提交整改说明")
    day: date = local_day(command.occurred_at)
    if day < local_day(assessment.occurred_at):
        return Refused(f"整改日期 {day} 早于测评日期 {local_day(assessment.occurred_at)}")
    late = assessment.rectify_by is not None and day > assessment.rectify_by
    updated = assessment.model_copy(update={"rectified_on": day, "rectification": command.note,
                                            "rectified_by_request": command.request_id})
    event = AssessmentRectified(
        event_id=stable_id(command.request_id, "assessment.rectified"), occurred_at=command.occurred_at,
        recorded_at=now, assessment_id=assessment.assessment_id, project_code=assessment.project_code,
        provider=assessment.provider, note=command.note, late=late, evaluators=assessment.evaluators)
    return updated, event


def serving_in(item: LedgerItem, year: int) -> bool:
    """The provider owed the enterprise service on ``item`` during ``year``: its service clock had
    started (ready; for 专业跑腿, the task order issued) by the year's end and it was not finished
    before the year began. A unit whose items only wait for others, or for their task order, has not
    served yet; one that never answered a ready item has."""
    start = service_clock_start(item)
    return (start is not None and start.year <= year
            and (item.finished_on is None or item.finished_on.year >= year))


def service_began(served: Iterable[LedgerItem]) -> date | None:
    """The first day a provider owed the project service: the earliest start of its service clocks."""
    starts = [start for item in served if (start := service_clock_start(item)) is not None]
    return min(starts) if starts else None
