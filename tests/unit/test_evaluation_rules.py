"""The ledger's state machine, overdue levels and the annual 100-point scoring (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from services.common.domain import ServiceMode, Stage
from services.common.messages import Satisfaction
from services.common.rule_files import RulesError, load_rulebook
from services.evaluation.ledger import TRANSITIONS, InvalidTransition, ItemState, next_state, overdue_levels
from services.evaluation.scoring import ItemRecord, RatingRecord, evaluate, load_config, weighted_score
from services.evaluation.working_days import WorkingCalendar
from tests.conftest import RULES

UNITS = load_rulebook(RULES).units

LEGAL_PATHS = [
    ["item.accepted", "item.completed", "item.delivered"],
    ["item.accepted", "item.progress", "item.progress", "item.completed", "item.delivered"],
    ["item.accepted", "item.blocked", "item.unblocked", "item.completed", "item.delivered"],
    ["item.accepted", "item.suspended", "item.resumed", "item.blocked", "item.unblocked", "item.completed",
     "item.delivered"],
    ["item.accepted", "item.progress", "item.suspended", "item.resumed", "item.progress", "item.completed",
     "item.delivered"],
]


@pytest.mark.parametrize("path", LEGAL_PATHS, ids=lambda p: "-".join(e.removeprefix("item.") for e in p))
def test_every_legal_path_ends_delivered(path: list[str]) -> None:
    state = ItemState.ROUTED
    for event in path:
        state = next_state(state, event)
    assert state is ItemState.DELIVERED


@pytest.mark.parametrize("state", list(ItemState))
@pytest.mark.parametrize("event", list(TRANSITIONS))
def test_every_illegal_transition_is_refused_with_a_reason(state: ItemState, event: str) -> None:
    sources, target = TRANSITIONS[event]
    if state in sources:
        assert next_state(state, event) is target
        return
    with pytest.raises(InvalidTransition) as caught:
        next_state(state, event)
    assert "事项当前状态为" in str(caught.value) and "不能" in str(caught.value)


def test_overdue_levels_warning_yellow_red() -> None:
    assert overdue_levels(3, 5) == []
    assert overdue_levels(4, 5) == ["warning"]  # one working day left
    assert overdue_levels(5, 5) == ["warning", "yellow"]  # the limit is reached
    assert overdue_levels(7, 5) == ["warning", "yellow"]
    assert overdue_levels(8, 5) == ["warning", "yellow", "red"]  # exceeded by half (7.5 -> from 8)
    assert overdue_levels(15, 10) == ["warning", "yellow", "red"]
    assert overdue_levels(14, 10) == ["warning", "yellow"]


def test_a_part_without_data_is_left_out_and_the_rest_reweighted() -> None:
    weights = {"satisfaction": 0.5, "timeliness": 0.4, "rectification": 0.1}
    assert weighted_score({"satisfaction": 80, "timeliness": 50, "rectification": 100}, weights) == 70.0
    assert weighted_score({"satisfaction": None, "timeliness": 50, "rectification": 100}, weights) == 60.0


def write_config(rules_dir: Path) -> None:
    (rules_dir / "evaluation.yaml").write_text(
        "pass_mark: 70\nweights: {satisfaction: 0.5, timeliness: 0.4, rectification: 0.1}\n"
        "satisfaction_points: {非常满意: 100, 满意: 80.2, 基本满意: 80, 不满意: 79.8, 非常不满意: 0}\n",
        encoding="utf-8")


def provider_items(provider: str, mode: ServiceMode, project: str) -> list[ItemRecord]:
    # routed Monday 2026-11-02 with 5 working days: one finished on time, one finished late
    return [ItemRecord(project, "CP-01", Stage.CONSTRUCTION_PERMIT, provider, mode, date(2026, 11, 2), 5,
                       finished_on=date(2026, 11, 6)),
            ItemRecord(project, "CP-02", Stage.CONSTRUCTION_PERMIT, provider, mode, date(2026, 11, 2), 5,
                       finished_on=date(2026, 11, 20), blockers=(("消防设计需补充", False),))]


def test_hand_computed_scores_at_69_9_70_and_70_1(rules_copy: Path) -> None:
    write_config(rules_copy)
    config = load_config(rules_copy)
    items = (provider_items("planning_construction_bureau", ServiceMode.JOINT, "P-A")
             + provider_items("public_utilities_bureau", ServiceMode.JOINT, "P-B")
             + provider_items("zhenglian_company", ServiceMode.ERRAND, "P-C"))
    ratings = [RatingRecord("P-A", "planning_construction_bureau", Satisfaction.DISSATISFIED, rectified=True),
               RatingRecord("P-B", "public_utilities_bureau", Satisfaction.FAIRLY_SATISFIED),
               RatingRecord("P-C", "zhenglian_company", Satisfaction.SATISFIED)]
    report = evaluate(2026, items, ratings, config, UNITS, WorkingCalendar(), date(2026, 12, 31),
                      datetime(2026, 12, 31, tzinfo=UTC))
    # 0.5 x 79.8 + 0.4 x 50 + 0.1 x 100 = 69.9 ; 0.5 x 80 + 20 + 10 = 70.0 ; 0.5 x 80.2 + 20 + 10 = 70.1
    scores = {s.provider: (s.score, s.passed) for s in report.scores}
    assert scores == {"planning_construction_bureau": (69.9, False), "public_utilities_bureau": (70.0, True),
                      "zhenglian_company": (70.1, True)}
    assert [s.provider for s in report.exit_list] == ["planning_construction_bureau"]
    joint = next(s for s in report.scores if s.provider == "planning_construction_bureau")
    assert (joint.on_time, joint.late, joint.bad_ratings, joint.rectified) == (1, 1, 1, 1)
    assert report.stages[0].rate == 50.0 and report.blockers[0].count == 3


def test_the_evaluator_split_follows_the_policy(rules_copy: Path) -> None:
    write_config(rules_copy)
    config = load_config(rules_copy)
    items = (provider_items("gov_service_bureau", ServiceMode.ASSIST, "P-A")
             + provider_items("planning_construction_bureau", ServiceMode.JOINT, "P-A")
             + provider_items("zhenglian_company", ServiceMode.ERRAND, "P-A"))
    kwargs = {"config": config, "units": UNITS, "calendar": WorkingCalendar(), "today": date(2026, 12, 31),
              "generated_at": datetime(2026, 12, 31, tzinfo=UTC)}
    gov = evaluate(2026, items, [], evaluator="gov_service_bureau", **kwargs)  # type: ignore[arg-type]
    econ = evaluate(2026, items, [], evaluator="econ_dev_bureau", **kwargs)  # type: ignore[arg-type]
    assert {(s.provider, s.mode) for s in gov.scores} == {("gov_service_bureau", ServiceMode.ASSIST),
                                                          ("planning_construction_bureau", ServiceMode.JOINT)}
    assert {(s.provider, s.mode) for s in econ.scores} == {("zhenglian_company", ServiceMode.ERRAND)}


def test_weights_come_from_the_file(rules_copy: Path) -> None:
    write_config(rules_copy)
    path = rules_copy / "evaluation.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("satisfaction: 0.5, timeliness: 0.4",
                                                             "satisfaction: 0.1, timeliness: 0.8"), encoding="utf-8")
    config = load_config(rules_copy)
    items = provider_items("public_utilities_bureau", ServiceMode.JOINT, "P-B")
    ratings = [RatingRecord("P-B", "public_utilities_bureau", Satisfaction.FAIRLY_SATISFIED)]
    report = evaluate(2026, items, ratings, config, UNITS, WorkingCalendar(), date(2026, 12, 31), datetime.now(UTC))
    assert report.scores[0].score == 58.0  # 0.1 x 80 + 0.8 x 50 + 0.1 x 100


def test_weights_that_do_not_sum_to_one_are_refused_with_the_line(rules_copy: Path) -> None:
    (rules_copy / "evaluation.yaml").write_text("pass_mark: 70\nweights: {satisfaction: 0.5, timeliness: 0.4, "
                                                "rectification: 0.2}\n", encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_config(rules_copy)
    assert "合计为 1" in str(caught.value) and "evaluation.yaml:1" in str(caught.value)
