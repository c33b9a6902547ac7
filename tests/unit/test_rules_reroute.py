"""``zeroerrand rules reroute``: which open lines the active rules decide differently, which of them
may still move, and the refusal when the rules given are not the active version."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from services.common.domain import ServiceMode
from services.common.messages import AcceptItem
from services.evaluation.handlers import handle
from services.evaluation.ledger import LedgerItem
from services.router.dry_run_command import engine_for
from services.router.reroute import EXIT_DONE, EXIT_FAILED, LedgerView, plan_reroute, request_for, run_reroute
from tests.conftest import RULES
from tests.unit.ledger_kit import UNIT_NAMES, at, ledger, request, routed, started
from tests.unit.test_rule_files import edit

GOV = "gov_service_bureau"
MON = date(2026, 11, 2)
NOW = datetime(2026, 11, 4, 2, 0, tzinfo=UTC)


def move_gov_items(rules: Path) -> Path:
    """政务服务局's 帮办代办 items go to 经发局 instead (a revision that moves a unit)."""
    edit(rules / "routing.yaml", "      mode: assist\n      unit: gov_service_bureau\n",
         "      mode: assist\n      unit: econ_dev_bureau\n")
    return rules


async def _lines(accept: str | None = None) -> list[LedgerItem]:
    book = ledger()
    await handle(started("PRJ1", MON), book, at(MON))
    for code in ("MA-01", "MA-02", "LT-01"):
        unit, mode = (GOV, ServiceMode.ASSIST) if code.startswith("MA") else ("planning_construction_bureau",
                                                                             ServiceMode.JOINT)
        await handle(routed("PRJ1", code, MON, unit=unit, mode=mode), book, at(MON))
    if accept:
        assert await handle(request(AcceptItem, MON, GOV, project_code="PRJ1", item_code=accept), book,
                            at(MON)) == "applied"
    items: list[LedgerItem] = await book.repo.project_items("PRJ1")
    return items


async def test_the_changed_open_lines_are_sent_and_an_accepted_one_is_only_reported(rules_copy: Path) -> None:
    engine = engine_for(move_gov_items(rules_copy))
    plans = {p.item.item_code: p for p in plan_reroute(engine, None, await _lines(accept="MA-02"), NOW)}
    assert {code: p.verdict for code, p in plans.items()} == {"LT-01": "unchanged", "MA-01": "reroute",
                                                              "MA-02": "kept"}
    assert "已受理" in plans["MA-02"].note
    command = request_for(plans["MA-01"], "李四", NOW)
    assert (command.requested_by, command.responsible_unit, command.mode, command.rules_version) == (
        GOV, "econ_dev_bureau", ServiceMode.ASSIST, engine.version)
    assert command.rule_id == "assist.gov-service-bureau" and command.operator == "李四"


async def test_identical_rules_change_nothing() -> None:
    # the kit's lines name a rule of their own: only who serves them counts, and that agrees
    plans = {p.item.item_code: p.verdict for p in plan_reroute(engine_for(RULES), None, await _lines(), NOW)}
    assert plans["MA-01"] == plans["LT-01"] == "unchanged"


async def test_rules_that_are_not_the_active_version_are_refused(rules_copy: Path) -> None:
    engine = engine_for(move_gov_items(rules_copy))
    lines = await _lines()
    said: list[str] = []
    view = LedgerView(project=None, lines=lines, active_version="0123456789ab")
    code = run_reroute("PRJ1", engine, UNIT_NAMES, operator=None, wait_s=0, dry_run=True, echo=said.append,
                       ledger=lambda _: view)
    assert code == EXIT_FAILED and "不是路由服务当前生效的版本 0123456789ab" in said[0]


async def test_a_dry_run_prints_old_and_new_and_sends_nothing(rules_copy: Path) -> None:
    engine = engine_for(move_gov_items(rules_copy))
    said: list[str] = []
    view = LedgerView(project=None, lines=await _lines(accept="MA-02"), active_version=engine.version)
    code = run_reroute("PRJ1", engine, UNIT_NAMES, operator=None, wait_s=0, dry_run=True, echo=said.append,
                       ledger=lambda _: view)
    assert code == EXIT_DONE
    text = "\n".join(said)
    assert "MA-01 事项MA-01：帮办代办（assist）· " + UNIT_NAMES[GOV] in text and "（预演，未提交）" in text
    assert "MA-02 事项MA-02" in text and "不改派：状态为“已受理”" in text
    assert "LT-01 事项LT-01：不变" in text


async def test_nothing_to_do_exits_0(rules_copy: Path) -> None:
    engine = engine_for(RULES)
    lines = [i.model_copy(update={"rules_version": engine.version}) for i in await _lines()]
    said: list[str] = []
    view = LedgerView(project=None, lines=[i for i in lines if i.item_code == "LT-01"], active_version=engine.version)
    assert run_reroute("PRJ1", engine, UNIT_NAMES, operator=None, wait_s=0, dry_run=False, echo=said.append,
                       ledger=lambda _: view) == EXIT_DONE
    assert said[-1] == "没有需要重新分派的事项。"
