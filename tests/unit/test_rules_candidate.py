"""A candidate rules version is checked in a bounded child process; the rules in force stay."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.common.messages import RulesActivated, RulesRejected
from services.router.active_rules import ActiveRules
from tests.unit.test_rule_files import edit, explode_cases


async def active(rules_dir: Path, **bounds: float) -> ActiveRules:
    rules = ActiveRules(rules_dir, **bounds)  # type: ignore[arg-type]
    assert isinstance(await rules.reload(), RulesActivated)
    return rules


async def test_a_good_candidate_goes_live_and_the_same_files_again_change_nothing(rules_copy: Path) -> None:
    rules = await active(rules_copy)
    first = rules.version
    assert await rules.reload() is None
    edit(rules_copy / "routing.yaml", "id: consult.energy-review-city", "id: consult.energy-review-city-v2")
    event = await rules.reload()
    assert isinstance(event, RulesActivated) and event.previous_version == first and rules.version == event.version
    assert "consult.energy-review-city-v2" in {r.id for r in rules.engine.book.rules}


async def test_a_refused_candidate_names_file_and_line_and_keeps_the_rules_in_force(rules_copy: Path) -> None:
    rules = await active(rules_copy)
    good, engine = rules.version, rules.engine
    routing = rules_copy / "routing.yaml"
    edit(routing, "      unit: zhenglian_company\n", "      unit: zhenglain_company\n")
    event = await rules.reload()
    assert isinstance(event, RulesRejected) and event.active_version == good and event.attempted_version != good
    assert any(f"{routing}:" in p and "zhenglain_company" in p for p in event.problems)
    assert rules.version == good and rules.engine is engine


async def test_a_check_that_would_take_too_long_is_killed_and_refused(rules_copy: Path) -> None:
    rules = await active(rules_copy)
    good = rules.version
    rules.timeout_s = 0.05  # the child cannot even start in that time
    edit(rules_copy / "routing.yaml", "id: consult.energy-review-city", "id: consult.energy-review-city-v2")
    started = time.monotonic()
    event = await rules.reload()
    assert time.monotonic() - started < 2
    assert isinstance(event, RulesRejected) and rules.version == good
    assert "超过 0.05 秒仍未完成" in event.problems[0]


async def test_a_check_that_needs_more_memory_than_allowed_is_refused(rules_copy: Path) -> None:
    rules = await active(rules_copy)
    good = rules.version
    rules.memory_bytes, rules.timeout_s = 64 * 2**20, 60
    # 40,000 scalars: within every bound of the file itself, but parsing them takes more than 64 MiB
    filler = "filler: [" + ", ".join(f"s{i}" for i in range(40_000)) + "]\n"
    (rules_copy / "routing.yaml").write_text((rules_copy / "routing.yaml").read_text(encoding="utf-8") + filler,
                                             encoding="utf-8")
    event = await rules.reload()
    assert isinstance(event, RulesRejected) and rules.version == good
    assert "内存超过上限" in event.problems[0] or "子进程异常退出" in event.problems[0], event.problems


async def test_an_exploding_check_is_refused_by_the_child_while_the_loop_keeps_running(rules_copy: Path) -> None:
    rules = await active(rules_copy)
    good = rules.version
    fact_line = explode_cases(rules_copy)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    event = await rules.reload()
    ticker.cancel()
    assert isinstance(event, RulesRejected) and rules.version == good
    assert f"routing.yaml:{fact_line + 1}" in event.problems[0] and "超过上限 100,000" in event.problems[0]
    assert ticks > 5  # the loop was free while the child checked
