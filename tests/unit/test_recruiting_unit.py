"""The 招引单位 as the policy names it (方案三(二), 四(二), 五(二), 五(四)): only units marked in
units.yaml as able to recruit are accepted as 招引单位; it reports 堵点/卡点 on its projects' items
and gets the console's buttons and 测评 form for them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from services.common.messages import AcceptItem, ReportBlocker
from services.common.rule_files import load_rulebook
from services.common.yaml_files import RulesError
from services.console.accounts import Account, AccountError, Role, check_role
from services.console.web import _actions
from services.evaluation.handlers import handle
from services.evaluation.views import ViewContext, project_progress
from services.notifier.compose import Composer, ProjectView
from services.notifier.plan import load_plan
from services.router.routing import route_agreement
from services.router.rule_engine import RoutingEngine
from tests.conftest import ALUMINIUM, RULES, example
from tests.unit.ledger_kit import UNIT_NAMES, at, ledger, request, routed, started

BOOK = load_rulebook(RULES)
PLAN = "planning_construction_bureau"
MON, TUE = date(2026, 11, 2), date(2026, 11, 3)
NOW = datetime(2026, 11, 2, 2, tzinfo=UTC)


def test_units_yaml_marks_the_new_area_departments_as_able_to_recruit() -> None:
    recruiting = {code for code, unit in BOOK.units.items() if unit.recruits}
    assert recruiting == {"econ_dev_bureau", "gov_service_bureau", "planning_construction_bureau",
                          "public_utilities_bureau"}
    assert not BOOK.units["regional_water_authority"].recruits


def test_an_agreement_naming_an_outside_authority_as_recruiting_unit_is_refused_with_the_reason(
        engine: RoutingEngine) -> None:
    agreement = example(ALUMINIUM)
    agreement = agreement.model_copy(update={"project": agreement.project.model_copy(
        update={"recruiting_unit": "regional_water_authority"})})
    result = route_agreement(agreement, engine)
    assert result.started is None and result.routed == ()
    rejected = result.rejected
    assert rejected is not None and rejected.reason_code == "not_eligible"
    [reason] = rejected.reasons
    assert "内蒙古自治区水利厅（regional_water_authority）不是新区的项目招引单位" in reason
    assert "经济发展招商服务局（econ_dev_bureau）" in reason  # which units may
    # the outside authority is not told of a project it did not bring in; the operators are
    composer = Composer(load_plan(RULES, BOOK.units), BOOK.units, BOOK.catalog)
    p = rejected.project
    documents = composer.compose(rejected, ProjectView(p.code, p.name, p.enterprise, p.recruiting_unit), None, NOW)
    assert {d["recipient"] for d in documents} == {"role:operators"}
    assert "不是新区的项目招引单位" in documents[0]["body"]


def test_recruits_on_a_unit_outside_the_new_area_is_an_error_with_file_and_line(rules_copy: Path) -> None:
    path = rules_copy / "units.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("    short_name: 自治区水利厅\n    kind: outside_authority\n    jurisdiction: outside\n",
                                 "    short_name: 自治区水利厅\n    kind: outside_authority\n    jurisdiction: outside\n"
                                 "    recruits: true\n"), encoding="utf-8")
    line = path.read_text(encoding="utf-8").splitlines().index("    recruits: true", len(text.splitlines()) - 8) + 1
    with pytest.raises(RulesError) as caught:
        load_rulebook(rules_copy)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.subject) == (str(path), line, "单位 regional_water_authority")
    assert "管辖是 outside，不能设为 true" in problem.message


def test_a_recruiting_account_is_only_for_a_unit_that_may_recruit() -> None:
    check_role(Role.RECRUITING, "planning_construction_bureau", BOOK.units)
    with pytest.raises(AccountError, match="recruits: true"):
        check_role(Role.RECRUITING, "regional_water_authority", BOOK.units)


async def _accepted(code: str, recruiting_unit: str) -> Any:
    book = ledger()
    await handle(started(code, MON, recruiting_unit=recruiting_unit), book, at(MON))
    await handle(routed(code, "EP-03", MON), book, at(MON))
    await handle(request(AcceptItem, MON, PLAN, project_code=code, item_code="EP-03"), book, at(MON))
    return book


async def test_the_recruiting_unit_reports_a_blocker_on_its_projects_item() -> None:
    book = await _accepted("PRJ-RU1", "econ_dev_bureau")
    block = request(ReportBlocker, TUE, "econ_dev_bureau", project_code="PRJ-RU1", item_code="EP-03",
                    reason="用地红线与规划条件不一致", resolver="natural_resources_branch")
    assert await handle(block, book, at(TUE)) == "applied"
    [blocked] = [o.message for o in book.publisher.sent if o.message.type == "item.blocked"]
    assert (blocked.reported_by, blocked.resolver) == ("econ_dev_bureau", "natural_resources_branch")
    [line] = await book.repo.project_items("PRJ-RU1")
    assert line.state.value == "blocked" and line.open_blockers[0].reported_by == "econ_dev_bureau"


async def test_a_unit_neither_responsible_nor_recruiting_still_may_not_report_a_blocker() -> None:
    book = await _accepted("PRJ-RU2", "econ_dev_bureau")
    block = request(ReportBlocker, TUE, "public_utilities_bureau", project_code="PRJ-RU2", item_code="EP-03",
                    reason="x", resolver=PLAN)
    assert await handle(block, book, at(TUE)) == "refused"
    [refused] = [o.message for o in book.publisher.sent if o.message.type == "request.refused"]
    assert "首问负责" in refused.reason and "也可由项目招引单位和林格尔新区经济发展招商服务局报告" in refused.reason


async def test_the_console_offers_the_recruiting_account_the_blocker_button_on_its_projects_only() -> None:
    book = await _accepted("PRJ-RU3", "econ_dev_bureau")
    progress = await project_progress(book.repo, ViewContext(UNIT_NAMES, book.calendar, 2, TUE), "PRJ-RU3")
    assert progress is not None
    [row] = progress.items
    mine = Account("ed.wang", "王", "econ_dev_bureau", Role.RECRUITING, True, 1)
    other = Account("pu.li", "李", "public_utilities_bureau", Role.RECRUITING, True, 1)
    assert _actions(mine, row, progress.project.recruiting_unit) == ["block"]
    assert _actions(other, row, progress.project.recruiting_unit) == []
