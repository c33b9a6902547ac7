"""The annual 100-point score from the 综合测评 (policy 五(六)), and 测评 requests checked by the ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from services.common.domain import ServiceMode
from services.common.messages import IssueTaskOrder, RectifyAssessment, SubmitAssessment
from services.common.yaml_files import RulesError
from services.evaluation.annual import Response
from services.evaluation.handlers import handle, sweep
from services.evaluation.ledger import Assessment
from services.evaluation.scoring import EvaluationConfig, evaluate, load_config, questionnaire_score
from services.evaluation.working_days import WorkingCalendar
from tests.unit.ledger_kit import CREDIT, UNITS, at, ledger, request, routed, started

ANSWERS = {"responsiveness": 20, "notice": 20, "efficiency": 25, "attitude": 15, "free_of_charge": 10, "delivery": 10}
MON = date(2026, 3, 2)


def scored(total: float) -> dict[str, float]:
    """Every indicator at the same share of its points, adding up to ``total``."""
    return {code: points * total / 100 for code, points in ANSWERS.items()}


def assessment(project: str, provider: str, rater: str, total: float, year: int = 2026, *, bad_below: float = 60,
               comment: str | None = None) -> Assessment:
    moment = datetime(year, 12, 1, tzinfo=UTC)
    return Assessment(assessment_id=f"{project}-{provider}-{rater}-{year}", project_code=project, provider=provider,
                      rater=rater, requested_by="x", year=year, scores=scored(total), total=total, comment=comment,
                      bad=total < bad_below, occurred_at=moment, recorded_at=moment)


async def ledger_items(*pairs: tuple[str, str]) -> list[object]:
    book = ledger()
    for project, unit in pairs:
        await handle(routed(project, "CP-01", MON, unit=unit), book, at(MON))
    return await book.repo.all_items()  # type: ignore[return-value]


def report_of(items: list[object], assessments: list[Assessment], config: EvaluationConfig | None = None,
              year: int = 2026) -> dict[str, tuple[float | None, str]]:
    result = evaluate(year, items, assessments, config or EvaluationConfig(), UNITS, WorkingCalendar(),  # type: ignore[arg-type]
                      date(2026, 12, 31), datetime(2026, 12, 31, tzinfo=UTC))
    return {s.provider: (s.score, s.status) for s in result.scores}


async def test_hand_computed_scores_at_69_9_70_and_70_1_from_the_questionnaire() -> None:
    items = await ledger_items(("PA-1", "planning_construction_bureau"), ("PB-1", "public_utilities_bureau"),
                               ("PC-1", "gov_service_bureau"))
    # enterprise and recruiting unit weigh 0.5 each: (69.8 + 70.0) / 2 = 69.9; (70 + 70) / 2; (70 + 70.2) / 2
    found = report_of(items, [
        assessment("PA-1", "planning_construction_bureau", "enterprise", 69.8),
        assessment("PA-1", "planning_construction_bureau", "recruiting_unit", 70.0),
        assessment("PB-1", "public_utilities_bureau", "enterprise", 70.0),
        assessment("PB-1", "public_utilities_bureau", "recruiting_unit", 70.0),
        assessment("PC-1", "gov_service_bureau", "enterprise", 70.0),
        assessment("PC-1", "gov_service_bureau", "recruiting_unit", 70.2)])
    assert found == {"planning_construction_bureau": (69.9, "不合格"), "public_utilities_bureau": (70.0, "合格"),
                     "gov_service_bureau": (70.1, "合格")}


async def test_a_provider_nobody_assessed_this_year_is_unevaluated_not_failed() -> None:
    items = await ledger_items(("PA-2", "zhenglian_company"), ("PB-2", "planning_construction_bureau"))
    result = evaluate(2026, items, [assessment("PB-2", "planning_construction_bureau", "enterprise", 90),  # type: ignore[arg-type]
                                    assessment("PA-2", "zhenglian_company", "enterprise", 10, year=2025)],
                      EvaluationConfig(), UNITS, WorkingCalendar(), date(2026, 12, 31), datetime.now(UTC))
    zhenglian = next(s for s in result.scores if s.provider == "zhenglian_company")
    assert (zhenglian.score, zhenglian.status, zhenglian.assessments) == (None, "未评价", 0)  # 2025's 测评 ignored
    assert result.exit_list == () and [s.provider for s in result.unevaluated] == ["zhenglian_company"]


async def test_ledger_figures_count_only_when_the_file_gives_them_a_weight() -> None:
    items = await ledger_items(("PA-3", "planning_construction_bureau"))  # ready, never contacted: service late
    answers = [assessment("PA-3", "planning_construction_bureau", "enterprise", 80)]
    assert report_of(items, answers) == {"planning_construction_bureau": (80.0, "合格")}
    weighted = EvaluationConfig(reference_weights={"service_on_time": 0.5, "statutory_on_time": 0, "rectification": 0})
    assert report_of(items, answers, weighted) == {"planning_construction_bureau": (40.0, "不合格")}  # 0.5 × 80 + 0.5 × 0


def test_a_group_nobody_answered_is_left_out_of_the_weighting() -> None:
    weights = {"enterprise": 0.7, "recruiting_unit": 0.3}
    assert questionnaire_score({"enterprise": [80.0, 60.0], "recruiting_unit": [90.0]}, weights) == pytest.approx(76.0)
    assert questionnaire_score({"enterprise": [], "recruiting_unit": [90.0]}, weights) == pytest.approx(90.0)
    assert questionnaire_score({}, weights) is None


def test_a_questionnaire_that_does_not_add_up_to_100_is_refused_with_the_line(rules_copy: Path) -> None:
    path = rules_copy / "evaluation.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("points: 25}", "points: 30}"), encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_config(rules_copy)
    assert "合计必须为 100" in str(caught.value) and "evaluation.yaml:" in str(caught.value)


def test_the_shipped_file_loads_with_the_policy_defaults() -> None:
    from tests.conftest import RULES

    config = load_config(RULES)
    assert config.pass_mark == 70 and sum(i.points for i in config.questionnaire) == 100
    assert config.weights == {"questionnaire": 1.0}


async def test_assessments_are_checked_against_the_ledger_and_a_bad_one_opens_a_rectification() -> None:
    book = ledger()
    await handle(started("PD-1", MON, recruiting_unit="econ_dev_bureau"), book, at(MON))
    await handle(routed("PD-1", "CP-01", MON), book, at(MON))
    day = date(2026, 12, 1)

    def submit(by: str, rater: str = "enterprise", provider: str = "planning_construction_bureau",
               scores: dict[str, float] | None = None, year: int = 2026, when: date = day) -> SubmitAssessment:
        return request(SubmitAssessment, when, by, project_code="PD-1", provider=provider, rater=rater, year=year,  # type: ignore[no-any-return]
                       scores=scores or scored(50), comment="办理进度沟通不及时")

    refusals = {
        "不能代为提交": submit("91150100MA0000002X"),
        "未承办项目": submit(CREDIT, provider="public_utilities_bureau"),
        "超出范围": submit(CREDIT, scores={**ANSWERS, "attitude": 16}),
        "缺少指标": submit(CREDIT, scores={"notice": 20}),
        "尚未开始": submit(CREDIT, year=2027),
        "已于 2027-01-31 截止": submit(CREDIT, year=2026, when=date(2027, 2, 1)),
    }
    for expected, ask in refusals.items():
        assert await handle(ask, book, at(ask.occurred_at.date())) == "refused", expected
        told = [o.message for o in book.publisher.sent if o.message.type == "request.refused"][-1]  # type: ignore[attr-defined]
        assert expected in told.reason
    good = submit(CREDIT)
    assert await handle(good, book, at(day)) == "applied"
    [event] = [o.message for o in book.publisher.sent if o.message.type == "assessment.submitted"]  # type: ignore[attr-defined]
    assert event.total == 50 and event.bad and event.rectify_by == date(2026, 12, 15)  # 10 working days
    again = submit(CREDIT)
    assert await handle(again, book, at(day)) == "refused"  # once per rater group and year
    rectify = request(RectifyAssessment, date(2026, 12, 16), "public_utilities_bureau", assessment_id=good.request_id,
                      note="已整改")
    assert await handle(rectify, book, at(date(2026, 12, 16))) == "refused"  # not the provider
    rectify = request(RectifyAssessment, date(2026, 12, 16), "planning_construction_bureau",
                      assessment_id=good.request_id, note="建立限时办结台账")
    assert await handle(rectify, book, at(date(2026, 12, 16))) == "applied"
    [done] = [o.message for o in book.publisher.sent if o.message.type == "assessment.rectified"]  # type: ignore[attr-defined]
    assert done.late  # a day after the deadline
    report = evaluate(2026, await book.repo.all_items(), await book.repo.assessments(2026), EvaluationConfig(), UNITS,
                      WorkingCalendar(), date(2026, 12, 31), datetime.now(UTC))
    [score] = report.scores
    assert score.late_rectifications[0].rectified_on == date(2026, 12, 16)
    assert score.opinions[0].comment == "办理进度沟通不及时"


async def test_a_bad_rating_not_rectified_by_its_deadline_is_announced_once_by_the_sweep() -> None:
    book = ledger()
    await handle(started("PR-1", MON, recruiting_unit="econ_dev_bureau"), book, at(MON))
    await handle(routed("PR-1", "CP-01", MON), book, at(MON))
    day = date(2026, 12, 1)
    bad = request(SubmitAssessment, day, CREDIT, project_code="PR-1", provider="planning_construction_bureau",
                  rater="enterprise", year=2026, scores=scored(40), comment="材料一次性告知不全")
    assert await handle(bad, book, at(day)) == "applied"  # to rectify by 2026-12-15 (10 working days)

    def reminders() -> list[Any]:
        return [o.message for o in book.publisher.sent if o.message.type == "assessment.rectification_overdue"]  # type: ignore[attr-defined]

    async def swept(on: date) -> list[Any]:  # what a sweep announced besides the line's own overdue levels
        return [e for e in await sweep(book, on, at(on)) if e.type == "assessment.rectification_overdue"]

    assert await swept(date(2026, 12, 15)) == [] and reminders() == []  # its last day
    [event] = await swept(date(2026, 12, 16))
    assert event.type == "assessment.rectification_overdue" and reminders() == [event]
    assert (event.assessment_id, event.provider, event.rectify_by, event.total) == (
        bad.request_id, "planning_construction_bureau", date(2026, 12, 15), 40)
    assert event.evaluators == ("gov_service_bureau",)  # who evaluates 联审联批 is told
    assert await swept(date(2026, 12, 17)) == [] and len(reminders()) == 1  # once
    # rectified (late) before any sweep found it: the rectification itself says it was late, no reminder
    other = request(SubmitAssessment, day, "econ_dev_bureau", project_code="PR-1", provider="planning_construction_bureau",
                    rater="recruiting_unit", year=2026, scores=scored(30))
    assert await handle(other, book, at(day)) == "applied"
    fix = request(RectifyAssessment, date(2026, 12, 18), "planning_construction_bureau", assessment_id=other.request_id,
                  note="已整改")
    assert await handle(fix, book, at(date(2026, 12, 18))) == "applied"
    assert await swept(date(2026, 12, 21)) == [] and len(reminders()) == 1


async def test_a_unit_whose_items_only_wait_has_not_served_and_cannot_be_assessed_yet() -> None:
    book = ledger()
    await handle(started("PE-1", MON), book, at(MON))
    await handle(routed("PE-1", "EP-02", MON, requires=("EP-01",)), book, at(MON))
    await handle(routed("PE-1", "EP-01", MON, unit="public_utilities_bureau"), book, at(MON))
    waiting = request(SubmitAssessment, date(2026, 12, 1), CREDIT, project_code="PE-1", rater="enterprise", year=2026,
                      provider="planning_construction_bureau", scores=scored(90))
    assert await handle(waiting, book, at(date(2026, 12, 1))) == "refused"
    told = [o.message for o in book.publisher.sent if o.message.type == "request.refused"][-1]  # type: ignore[attr-defined]
    assert "尚在等待前置事项" in told.reason
    silent = request(SubmitAssessment, date(2026, 12, 1), CREDIT, project_code="PE-1", rater="enterprise", year=2026,
                     provider="public_utilities_bureau", scores=scored(30), comment="一直没人联系我们")
    assert await handle(silent, book, at(date(2026, 12, 1))) == "applied"  # ready and never answered: it served badly


async def test_the_rectification_rate_is_bad_ratings_rectified_in_time_over_every_bad_rating_of_the_year() -> None:
    items = await ledger_items(("PF-1", "planning_construction_bureau"), ("PF-2", "planning_construction_bureau"),
                               ("PF-3", "planning_construction_bureau"))
    in_time = assessment("PF-1", "planning_construction_bureau", "enterprise", 50).model_copy(
        update={"rectify_by": date(2026, 12, 15), "rectified_on": date(2026, 12, 10)})
    late = assessment("PF-2", "planning_construction_bureau", "enterprise", 50).model_copy(
        update={"rectify_by": date(2026, 12, 15), "rectified_on": date(2026, 12, 16)})
    still_open = assessment("PF-3", "planning_construction_bureau", "enterprise", 50).model_copy(
        update={"rectify_by": date(2027, 1, 15)})  # within its deadline: not rectified yet, so not in time yet
    result = evaluate(2026, items, [in_time, late, still_open], EvaluationConfig(), UNITS, WorkingCalendar(),  # type: ignore[arg-type]
                      date(2026, 12, 31), datetime(2026, 12, 31, tzinfo=UTC))
    [score] = result.scores
    assert (score.bad, score.rectified, score.rectification_rate) == (3, 2, 33.3)  # 1 of 3
    assert [r.assessment_id for r in score.late_rectifications] == [late.assessment_id]


async def test_a_unit_cannot_rate_its_own_service_and_a_stored_self_rating_does_not_count() -> None:
    book = ledger()
    await handle(started("PS-1", MON, recruiting_unit="planning_construction_bureau"), book, at(MON))
    await handle(routed("PS-1", "CP-01", MON), book, at(MON))  # 规划建设局 recruited the project and serves it
    day = date(2026, 12, 1)
    own = request(SubmitAssessment, day, "planning_construction_bureau", project_code="PS-1", rater="recruiting_unit",
                  provider="planning_construction_bureau", year=2026, scores=scored(100))
    assert await handle(own, book, at(day)) == "refused"
    told = [o.message for o in book.publisher.sent if o.message.type == "request.refused"][-1]  # type: ignore[attr-defined]
    assert "利益冲突" in told.reason and "不能测评自己的服务" in told.reason
    enterprise = request(SubmitAssessment, day, CREDIT, project_code="PS-1", rater="enterprise",
                         provider="planning_construction_bureau", year=2026, scores=scored(80))
    assert await handle(enterprise, book, at(day)) == "applied"
    # a self-rating stored before the check existed is kept, but left out of the score and listed
    legacy = assessment("PS-1", "planning_construction_bureau", "recruiting_unit", 100).model_copy(
        update={"requested_by": "planning_construction_bureau"})
    result = evaluate(2026, await book.repo.all_items(), [*await book.repo.assessments(2026), legacy],
                      EvaluationConfig(), UNITS, WorkingCalendar(), date(2026, 12, 31), datetime.now(UTC),
                      recruiters={"PS-1": "planning_construction_bureau"})
    [score] = result.scores
    assert score.score == 80.0 and [u.assessment_id for u in score.uncounted] == [legacy.assessment_id]
    assert "利益冲突" in score.uncounted[0].reason
    # its 招引单位 is the provider itself: only the enterprise is asked, it answered, and so decided alone
    assert (score.projects, score.enterprise_response, score.recruiting_response) == (1, Response(1, 1), Response(0, 0))
    assert score.response_rate == 100.0 and score.single_group == "服务对象"


async def test_a_rating_before_the_task_order_was_issued_is_refused_and_a_stored_one_does_not_count() -> None:
    book = ledger()
    await handle(started("PT-1", MON, recruiting_unit="econ_dev_bureau"), book, at(MON))
    await handle(routed("PT-1", "PL-04", MON, unit="zhenglian_company", mode=ServiceMode.ERRAND, limit=10), book,
                 at(MON))
    early = date(2026, 11, 10)

    def rate(day: date, rater: str, by: str) -> SubmitAssessment:
        return request(SubmitAssessment, day, by, project_code="PT-1", rater=rater,  # type: ignore[no-any-return]
                       provider="zhenglian_company", year=2026, scores=scored(90))

    assert await handle(rate(early, "recruiting_unit", "econ_dev_bureau"), book, at(early)) == "refused"
    told = [o.message for o in book.publisher.sent if o.message.type == "request.refused"][-1]  # type: ignore[attr-defined]
    assert "任务单尚未下发" in told.reason
    issued_on = date(2026, 11, 20)
    await handle(request(IssueTaskOrder, issued_on, "econ_dev_bureau", project_code="PT-1", item_code="PL-04"), book,
                 at(issued_on))
    later = date(2026, 12, 1)
    assert await handle(rate(later, "recruiting_unit", "econ_dev_bureau"), book, at(later)) == "applied"
    legacy = assessment("PT-1", "zhenglian_company", "enterprise", 10).model_copy(
        update={"occurred_at": at(early), "requested_by": CREDIT})
    stored = [*await book.repo.assessments(2026), legacy]
    items = await book.repo.all_items()
    result = evaluate(2026, items, stored, EvaluationConfig(), UNITS, WorkingCalendar(), date(2026, 12, 31),
                      datetime.now(UTC), recruiters={"PT-1": "econ_dev_bureau"})
    [score] = result.scores
    assert score.score == 90.0 and score.single_group == "项目招引单位"  # the enterprise's only rating came too early
    assert "早于该单位为本项目提供服务（2026-11-20）" in score.uncounted[0].reason
    assert result.evaluator_ratings_count and result.task_orders is not None and result.task_orders.late == 1
    # 政务服务局 could say otherwise: 经发局 leads the 专业跑腿 evaluation, its rating as 招引单位 then does not count
    strict = EvaluationConfig(evaluator_ratings_count=False)
    result = evaluate(2026, items, stored, strict, UNITS, WorkingCalendar(), date(2026, 12, 31), datetime.now(UTC),
                      recruiters={"PT-1": "econ_dev_bureau"})
    [score] = result.scores
    assert (score.score, score.status, len(score.uncounted)) == (None, "未评价", 2)
    assert score.recruiting_response == Response(0, 0) and score.enterprise_response == Response(1, 0)
    assert not result.evaluator_ratings_count


async def test_a_score_one_rater_group_decided_alone_is_marked_and_the_response_rate_shown() -> None:
    items = await ledger_items(("PR-1", "public_utilities_bureau"), ("PR-2", "public_utilities_bureau"),
                               ("PR-3", "public_utilities_bureau"))
    answers = [assessment("PR-1", "public_utilities_bureau", "recruiting_unit", 90),
               assessment("PR-2", "public_utilities_bureau", "recruiting_unit", 80)]
    result = evaluate(2026, items, answers, EvaluationConfig(), UNITS, WorkingCalendar(),  # type: ignore[arg-type]
                      date(2026, 12, 31), datetime(2026, 12, 31, tzinfo=UTC))
    [score] = result.scores
    assert (score.projects, score.enterprise_response, score.recruiting_response) == (3, Response(3, 0), Response(3, 2))
    assert score.response_rate == 33.3 and score.single_group == "项目招引单位" and score.score == 85.0


async def test_replays_announce_what_is_stored_and_dates_are_checked() -> None:
    book = ledger()
    await handle(started("PG-1", MON), book, at(MON))
    await handle(routed("PG-1", "CP-01", MON), book, at(MON))
    day = date(2026, 12, 1)
    good = request(SubmitAssessment, day, CREDIT, project_code="PG-1", provider="planning_construction_bureau",
                   rater="enterprise", year=2026, scores=scored(100))
    assert await handle(good, book, at(day)) == "applied"
    forged = good.model_copy(update={"scores": scored(0), "comment": "改口"})
    assert await handle(forged, book, at(day)) == "refused"  # same id, other content
    assert await handle(good, book, at(day)) == "duplicate"
    announced = [o.message for o in book.publisher.sent if o.message.type == "assessment.submitted"]  # type: ignore[attr-defined]
    assert [(e.total, e.bad) for e in announced] == [(100, False), (100, False)]
    future = request(SubmitAssessment, date(2026, 12, 20), CREDIT, project_code="PG-1", rater="recruiting_unit",
                     provider="planning_construction_bureau", year=2026, scores=scored(50))
    assert await handle(future, book, at(day)) == "refused"
    bad = request(SubmitAssessment, day, "econ_dev_bureau", project_code="PG-1", rater="recruiting_unit",
                  provider="planning_construction_bureau", year=2026, scores=scored(50))
    assert await handle(bad, book, at(day)) == "applied"
    backdated = request(RectifyAssessment, date(2026, 11, 20), "planning_construction_bureau",
                        assessment_id=bad.request_id, note="已整改")
    assert await handle(backdated, book, at(day)) == "refused"
    told = [o.message for o in book.publisher.sent if o.message.type == "request.refused"][-1]  # type: ignore[attr-defined]
    assert "早于测评日期" in told.reason
    rectify = request(RectifyAssessment, day, "planning_construction_bureau", assessment_id=bad.request_id, note="已整改")
    assert await handle(rectify, book, at(day)) == "applied"
    assert await handle(rectify, book, at(day)) == "duplicate"
    again = [o.message for o in book.publisher.sent if o.message.type == "assessment.rectified"]  # type: ignore[attr-defined]
    assert len(again) == 2 and again[0].event_id == again[1].event_id and not again[1].late
