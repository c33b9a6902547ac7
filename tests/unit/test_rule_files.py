"""Operators' mistakes in the rule files are caught with the file, the line and the rule."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from services.common.rule_files import load_rulebook
from services.common.yaml_files import RulesError
from services.router.active_rules import load_checked
from services.router.rules_check import check_rules
from tests.conftest import RULES


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"test setup: {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """The line of the ``occurrence``-th line containing ``needle`` (1 = the first)."""
    found = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    return found[occurrence - 1]


def problems(directory: Path) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_checked(directory)
    return [str(p) for p in caught.value.problems]


def test_shipped_rules_pass_the_static_check(engine: object) -> None:
    book = load_rulebook(Path(__file__).parents[2] / "rules")
    report = check_rules(book)
    assert report.ok, report.problems
    assert len(book.catalog) == 25 and len(book.retired) == 4
    # items x requests x (energy around 1000 t and 10000 t) x (electricity around 500 万千瓦时)
    assert report.cases == 25 * 2 * 6 * 3


def test_yaml_syntax_error_names_file_and_line(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "      mode: joint\n", "      mode: [joint\n")
    found = problems(rules_copy)
    assert len(found) == 1
    assert re.match(rf"{re.escape(str(routing))}:\d+ .*YAML 语法错误", found[0])


def test_a_control_character_names_file_and_line(rules_copy: Path) -> None:
    """A NUL byte pasted into a rule file: once a traceback in the CLI and in rules.rejected."""
    routing = rules_copy / "routing.yaml"
    with routing.open("a", encoding="utf-8") as f:
        f.write('# a comment with a NUL: "a\0b"\n')
    lines = routing.read_text(encoding="utf-8").count("\n")
    assert problems(rules_copy) == [f"{routing}:{lines} 含有 YAML 不允许的字符 U+0000（不可见的控制字符），请删除 "
                                    "/ a character YAML does not allow"]


def test_invalid_mode_names_file_line_and_rule(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "      mode: joint\n", "      mode: jiont\n")
    line = line_of(routing, "mode: jiont")
    assert problems(rules_copy) == [
        f"{routing}:{line} [规则 joint.district-department] rules[2].then.mode: 取值 'jiont' 不在允许范围内，"
        "应为 'assist', 'joint', 'errand' or 'consult'"
    ]


def test_unknown_unit_in_a_rule_is_rejected(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "      unit: zhenglian_company\n", "      unit: zhenglain_company\n")
    line = line_of(routing, "zhenglain_company")
    assert problems(rules_copy) == [
        f"{routing}:{line} [规则 errand.outside-or-dispatched] then.unit: 单位 'zhenglain_company' 不在 units.yaml 中"
    ]


def test_unknown_owner_and_wrong_jurisdiction_in_the_catalog(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    text = catalog.read_text(encoding="utf-8")
    first = text.index("owner: gov_service_bureau")
    catalog.write_text(text[:first] + "owner: gov_servce_bureau" + text[first + len("owner: gov_service_bureau"):],
                       encoding="utf-8")
    edit(catalog, "owner: tax_branch\n    jurisdiction: dispatched", "owner: tax_branch\n    jurisdiction: district")
    found = problems(rules_copy)
    assert any(f"{catalog}:" in p and "[事项 MA-01] owner: 单位 'gov_servce_bureau' 不在 units.yaml 中" in p for p in found)
    assert any("[事项 MA-03] jurisdiction: 写的是 district，但审批单位 tax_branch 的管辖是 dispatched" in p
               for p in found)


def test_a_promise_longer_than_the_law_is_rejected_with_its_line(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    # CA-05 排污许可: 《排污许可管理条例》 gives 20 days (日); 20 working days from a Friday span 28, and 15 span 21
    edit(catalog, "    time_limit_days: 14\n    statutory_limit: {days: 20, unit: days}",
         "    time_limit_days: 20\n    statutory_limit: {days: 20, unit: days}")
    line = line_of(catalog, "  - code: CA-05")
    assert problems(rules_copy) == [
        f"{catalog}:{line} [事项 CA-05] items[24]: 承诺时限 time_limit_days 20 个工作日（20 个工作日自受理起最长跨 28 天）长于"
        "法定 20 日：承诺不能超过法律规定的期限 / the promised limit exceeds the statutory one"]
    # in working days the promise may equal the law, not exceed it (PL-08 取水许可: 45 of 45)
    edit(catalog, "    time_limit_days: 20\n    statutory_limit: {days: 20, unit: days}",
         "    time_limit_days: 14\n    statutory_limit: {days: 20, unit: days}")
    edit(catalog, "    time_limit_days: 45\n    statutory_limit: {days: 45, unit: working_days}",
         "    time_limit_days: 46\n    statutory_limit: {days: 45, unit: working_days}")
    assert any("[事项 PL-08]" in p and "46 个工作日长于法定 45 个工作日" in p for p in problems(rules_copy))


def test_each_item_says_its_promised_and_its_statutory_limit() -> None:
    catalog = load_rulebook(RULES).catalog
    assert catalog["MA-01"].limits_text() == "承诺 1 个工作日（法定 3 个工作日）"
    assert catalog["CA-05"].limits_text() == "承诺 14 个工作日（法定 20 日）"
    assert catalog["LT-01"].limits_text() == "承诺 5 个工作日（法律法规未规定办理时限）"
    assert all(i.statutory_limit is None or i.statutory_limit.admits(i.time_limit_days) for i in catalog.values())
    from services.common.domain import StatutoryLimit, span_days

    # accepted on a Friday, 15 working days end on the 21st day: longer than a law's 20 days
    assert [span_days(n) for n in (1, 5, 14, 15)] == [3, 7, 20, 21]
    assert StatutoryLimit(days=20, unit="days").admits(14) and not StatutoryLimit(days=20, unit="days").admits(15)


def test_duplicate_item_code_is_rejected_with_its_line(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "code: MA-02", "code: MA-01")
    second = [i for i, text in enumerate(catalog.read_text(encoding="utf-8").splitlines(), 1) if "code: MA-01" in text][1]
    assert f"{catalog}:{second} [事项 MA-01] code: 'MA-01' 重复（编码必须唯一）" in problems(rules_copy)


def test_undeclared_project_fact_is_rejected(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "project.annual_energy_tce: {gte: 10000}", "project.energy: {gte: 10000}")
    line = line_of(routing, "project.energy: {gte: 10000}")
    assert problems(rules_copy) == [
        f"{routing}:{line} [规则 errand.energy-review-regional] when.project.energy: 项目事实 'energy' 未在 project_facts 中声明"
    ]


def test_planted_gap_is_found_by_the_static_check(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    # the errand rule now covers only `outside`: every dispatched agency's item falls through
    edit(routing, "item.jurisdiction: [outside, dispatched]\n    unless:", "item.jurisdiction: [outside]\n    unless:")
    found = problems(rules_copy)
    assert any("[事项 MA-02] 遗漏：诉求为 handle 时没有任何规则适用" in p for p in found)
    assert not any("诉求为 consult" in p for p in found)


def test_planted_overlap_is_found_by_the_static_check(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    # without its exception, the errand rule also matches every energy review
    edit(routing, "    unless:                      # 节能审查按能耗分级，由下面的 energy-review 规则决定\n"
                  "      item.code: PL-03\n    then:\n      mode: errand\n", "    then:\n      mode: errand\n")
    found = problems(rules_copy)
    overlap = [p for p in found if "重叠" in p]
    assert len(overlap) == 3 and len(found) == 3
    regional = next(p for p in overlap if "errand.energy-review-regional" in p)
    assert "[规则 errand.energy-review-regional 与 errand.outside-or-dispatched]" in regional
    assert "事项 PL-03" in regional and "annual_energy_tce=10000" in regional
    assert f"{routing}:{line_of(routing, 'id: errand.energy-review-regional')}" in regional
    assert any("[规则 errand.energy-review-city 与 errand.outside-or-dispatched]" in p for p in overlap)
    assert any("[规则 errand.outside-or-dispatched 与 not-required.energy-review-small]" in p for p in overlap)


# ---- not_required rules ------------------------------------------------------------------------

NOT_REQUIRED_RULE = "  # ---- 无需办理（办理和咨询都适用）"


def test_removing_the_not_required_rule_leaves_a_gap_for_small_projects(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    text = routing.read_text(encoding="utf-8")
    routing.write_text(text[:text.index(NOT_REQUIRED_RULE)], encoding="utf-8")
    found = problems(rules_copy)
    assert len(found) == 2, found
    for request in ("handle", "consult"):
        [gap] = [p for p in found if f"诉求为 {request} 时" in p]
        catalog = rules_copy / "catalog.yaml"
        assert gap.startswith(f"{catalog}:{line_of(catalog, 'code: PL-03')} [事项 PL-03] 遗漏：")
        assert "annual_energy_tce=999.5" in gap and "annual_electricity_10k_kwh=499.5" in gap
        assert "annual_energy_tce=1000" not in gap and "annual_electricity_10k_kwh=500" not in gap


def test_a_not_required_rule_that_overlaps_another_rule_is_found(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    text = routing.read_text(encoding="utf-8")
    start = text.index(NOT_REQUIRED_RULE)
    routing.write_text(text[:start] + text[start:].replace("annual_electricity_10k_kwh: {lt: 500}",
                                                           "annual_electricity_10k_kwh: {lt: 600}"), encoding="utf-8")
    found = problems(rules_copy)
    assert len(found) == 2 and all("重叠" in p and "事项 PL-03" in p for p in found)
    assert any("[规则 errand.energy-review-city 与 not-required.energy-review-small]" in p for p in found)
    assert any("[规则 consult.energy-review-city 与 not-required.energy-review-small]" in p for p in found)
    assert all("annual_electricity_10k_kwh=500" in p for p in found)


def test_a_rule_with_both_then_and_not_required_is_rejected(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "    not_required: 项目年", "    then: {mode: assist, unit: gov_service_bureau}\n    not_required: 项目年")
    line = line_of(routing, "id: not-required.energy-review-small")
    assert problems(rules_copy) == [
        f"{routing}:{line} [规则 not-required.energy-review-small] rules[11]: 每条规则必须且只能写 then（分派结果）"
        "或 not_required（无需办理的理由）二者之一"
    ]


def test_a_rule_with_neither_then_nor_not_required_is_rejected(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    text = routing.read_text(encoding="utf-8")
    routing.write_text(text[:text.index("    not_required: 项目年")], encoding="utf-8")
    line = line_of(routing, "id: not-required.energy-review-small")
    [found] = problems(rules_copy)
    assert found.startswith(f"{routing}:{line} [规则 not-required.energy-review-small] rules[11]: 每条规则必须且只能写")


def test_a_rule_naming_a_retired_code_is_told_the_replacement(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "      item.code: PL-03\n      project.annual_energy_tce: {gte: 10000}",
         "      item.code: CP-05\n      project.annual_energy_tce: {gte: 10000}")
    line = line_of(routing, "item.code: CP-05")
    found = problems(rules_copy)
    assert f"{routing}:{line} [规则 errand.energy-review-regional] when.item.code: 事项 CP-05（取水许可）已停用：" in found[0]
    assert found[0].endswith("；请改为 PL-08（取水许可）")


# ---- the catalog: basis, retired codes, requires -------------------------------------------------


def test_an_item_without_its_basis_is_rejected(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "      time_limit: 《中华人民共和国市场主体", "      time_limt: 《中华人民共和国市场主体")
    found = problems(rules_copy)
    assert f"{catalog}:{line_of(catalog, 'basis:')} [事项 MA-01] items[1].basis.time_limit: 缺少必填字段" in found
    assert (f"{catalog}:{line_of(catalog, 'time_limt:')} [事项 MA-01] items[1].basis.time_limt: "
            "不认识的字段（拼写错误？）") in found


def test_requires_written_as_a_single_code_is_one_problem_on_its_line(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "    requires: [LT-02]\n", "    requires: LT-02\n")
    line = line_of(catalog, "requires: LT-02")
    [found] = problems(rules_copy)
    assert found.startswith(f"{catalog}:{line} [事项 LT-03] items[6].requires: ")
    assert "应为列表" in found and "previous_stage" in found


def test_a_retired_code_reused_by_a_live_item_is_rejected(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "  - code: CA-02\n    name: 规划条件核实", "  - code: CA-04\n    name: 规划条件核实")
    assert problems(rules_copy) == [
        f"{catalog}:{line_of(catalog, 'code: CA-04', 2)} [停用事项 CA-04] code: CA-04 已停用，"
        "但 items 中仍有事项使用该编码（停用的编码不得复用）"
    ]


def test_a_retired_entry_with_an_unknown_replacement_is_rejected(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "    replaced_by: PL-08\n", "    replaced_by: PL-09\n")
    assert problems(rules_copy) == [
        f"{catalog}:{line_of(catalog, 'replaced_by: PL-09')} [停用事项 CP-05] "
        "replaced_by: 事项 'PL-09' 不在服务事项清单（items）中"
    ]


def test_a_retired_entry_missing_its_reason_names_the_retired_code(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    text = catalog.read_text(encoding="utf-8")
    start = text.index("  - code: EP-04\n")
    reason = text.index("    reason:", start)
    catalog.write_text(text[:reason] + text[text.index("\n", reason) + 1:], encoding="utf-8")
    assert problems(rules_copy) == [
        f"{catalog}:{line_of(catalog, 'code: EP-04')} [停用事项 EP-04] retired[2].reason: 缺少必填字段"
    ]


def test_requiring_an_unknown_code_is_rejected(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "    requires: [LT-02]\n", "    requires: [LT-09]\n")
    assert problems(rules_copy) == [
        f"{catalog}:{line_of(catalog, 'requires: [LT-09]')} [事项 LT-03] requires: 事项 'LT-09' 不在服务事项清单（items）中"
    ]


def test_requiring_a_retired_code_names_the_replacement(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "    requires: [CA-03]\n", "    requires: [CA-01]\n")
    [found] = problems(rules_copy)
    assert found.startswith(f"{catalog}:{line_of(catalog, 'requires: [CA-01]')} [事项 CA-04] requires: "
                            "事项 CA-01（建设工程消防验收）已停用：")
    assert found.endswith("；请改为 CA-03（联合竣工验收）")


def test_requiring_itself_is_rejected(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "    requires: [LT-02]\n", "    requires: [LT-03]\n")
    assert problems(rules_copy) == [
        f"{catalog}:{line_of(catalog, 'requires: [LT-03]')} [事项 LT-03] requires: 事项不能依赖自己"
    ]


def test_requiring_an_item_of_a_later_stage_is_rejected(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "    requires: [MA-01, LT-01]\n", "    requires:\n      - MA-01\n      - LT-01\n      - PL-05\n")
    assert problems(rules_copy) == [
        f"{catalog}:{line_of(catalog, '- PL-05')} [事项 LT-02] requires: PL-05 属于后面的阶段 project_land_planning，"
        "不能作为 land_transfer 阶段事项的前置"
    ]


def test_a_requires_cycle_is_rejected(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "    requires: [PL-05]\n", "    requires: [PL-05, EP-02]\n")
    assert problems(rules_copy) == [
        f"{catalog}:{line_of(catalog, 'requires: [PL-05, EP-02]')} [事项 EP-01] requires: 循环依赖 EP-01 → EP-02 → EP-01，"
        "事项之间的前置关系不能成环"
    ]


def test_previous_stage_on_a_first_stage_item_is_rejected(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "    requires: [MA-01]\n", "    requires: previous_stage\n")
    assert problems(rules_copy) == [
        f"{catalog}:{line_of(catalog, 'requires: previous_stage')} [事项 MA-02] requires: market_access 是第一个审批阶段，"
        "没有上一阶段，不能写 previous_stage"
    ]


# -- a rule file cannot stall or exhaust the process that reads it -----------------------------


def _append(path: Path, text: str) -> int:
    """Appends ``text`` to a rule file; returns the line it starts on."""
    before = path.read_text(encoding="utf-8")
    path.write_text(before + "\n" + text + "\n", encoding="utf-8")
    return before.count("\n") + 2


def test_an_alias_bomb_is_refused_with_its_file_and_line(rules_copy: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]  # 9^10 nodes
    start = _append(rules_copy / "routing.yaml", "\n".join(lines))
    with pytest.raises(RulesError) as refused:
        load_rulebook(rules_copy)
    problem = refused.value.problems[0]
    assert problem.file.endswith("routing.yaml") and start <= (problem.line or 0) < start + 10
    assert "200,000" in problem.message and "别名" in problem.message


def test_a_deep_nesting_is_refused_before_it_is_built(rules_copy: Path) -> None:
    start = _append(rules_copy / "catalog.yaml", "deep: " + "[" * 10_000 + "]" * 10_000)
    with pytest.raises(RulesError) as refused:  # not a RecursionError
        load_rulebook(rules_copy)
    problem = refused.value.problems[0]
    assert problem.file.endswith("catalog.yaml") and problem.line == start
    assert "嵌套超过 32 层" in problem.message


def test_a_huge_rule_file_is_refused_unread(rules_copy: Path) -> None:
    _append(rules_copy / "units.yaml", "# " + "填充" * 1_200_000)
    with pytest.raises(RulesError) as refused:
        load_rulebook(rules_copy)
    assert "超过上限" in refused.value.problems[0].message and refused.value.problems[0].file.endswith("units.yaml")


def explode_cases(rules_dir: Path, facts: int = 4, values: int = 20) -> int:
    """Makes the first rule test ``facts`` new string facts of ``values`` values each (so the static
    check would try every combination); returns the line of ``project_facts:``."""
    routing = rules_dir / "routing.yaml"
    listed = ", ".join(f"v{v}" for v in range(values))
    declared = "".join(f"  zone_{f}:\n    label: 分区{f}\n    type: string\n    values: [{listed}]\n" for f in range(facts))
    edit(routing, "project_facts:\n", "project_facts:\n" + declared)
    tested = "".join(f"      project.zone_{f}: v0\n" for f in range(facts))
    edit(routing, "      item.owner: gov_service_bureau\n    then:",
         "      item.owner: gov_service_bureau\n    unless:\n" + tested + "    then:")
    return line_of(routing, "project_facts:")


def test_a_rules_file_whose_check_would_never_end_is_refused_before_it_is_tried(rules_copy: Path) -> None:
    explode_cases(rules_copy)
    report = check_rules(load_rulebook(rules_copy))
    [problem] = report.problems
    assert report.cases == 0 and problem.file.endswith("routing.yaml") and problem.line is not None
    assert "144,000,000" in problem.message and "超过上限 100,000" in problem.message
    assert "zone_0（20 种）" in problem.message


@pytest.mark.parametrize(("make", "says"), [
    (lambda p: p.symlink_to("/dev/zero"), "设备或其他特殊文件"),
    (lambda p: os.mkfifo(p), "管道（FIFO）"),
    (lambda p: p.mkdir(), "目录"),
])
def test_a_rule_file_that_is_not_a_regular_file_is_refused_unread(rules_copy: Path, make: Any, says: str) -> None:
    routing = rules_copy / "routing.yaml"
    routing.unlink()
    make(routing)
    with pytest.raises(RulesError) as refused:  # not an endless read, not a wait for a FIFO's writer
        load_rulebook(rules_copy)
    [problem] = refused.value.problems
    assert problem.file == str(routing) and says in problem.message and "不是普通文件" in problem.message


def _extra_rules(count: int) -> str:
    return "".join(f"""
  - id: extra.r{i}
    name: 额外规则{i}
    policy: 四(一)
    when:
      request: handle
      item.code: MA-01
      item.owner: {{ne: gov_service_bureau}}
    then:
      mode: assist
      unit: gov_service_bureau
""" for i in range(count))


def test_more_rules_than_the_engine_holds_are_refused_with_the_line_of_the_first_too_many(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    routing.write_text(routing.read_text(encoding="utf-8") + _extra_rules(300), encoding="utf-8")
    found = problems(rules_copy)
    assert any(f"{routing}:{line_of(routing, '- id: extra.r189')} [规则 第201条] 共 311 条规则，超过上限 200 条" in p
               for p in found), found[:3]


def test_a_ruleset_the_engine_cannot_hold_is_a_rules_problem_not_a_crash(rules_copy: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import services.common.rule_files as rule_files
    from services.router.rule_engine import RoutingEngine

    routing = rules_copy / "routing.yaml"
    routing.write_text(routing.read_text(encoding="utf-8") + _extra_rules(300), encoding="utf-8")
    monkeypatch.setattr(rule_files, "MAX_RULES", 1000)  # past the file's own bound, as far as durable-rules itself
    book = load_rulebook(rules_copy)
    assert len(book.rules) == 311
    with pytest.raises(RulesError) as refused:
        RoutingEngine(book)
    [problem] = refused.value.problems
    assert problem.file == str(routing) and "规则引擎无法建立这套规则（311 条规则" in problem.message


def test_the_cases_the_check_plans_are_the_cases_it_tries(engine: object) -> None:
    from services.router.rules_check import cases_to_try

    book = load_rulebook(Path(__file__).parents[2] / "rules")
    assert cases_to_try(book) == check_rules(book).cases == 900


def test_rules_check_shows_what_is_still_to_confirm_and_which_items_have_no_statutory_limit() -> None:
    from typer.testing import CliRunner

    from services.cli import app

    catalog = load_rulebook(RULES).catalog
    unsure = [i for i in catalog.values() if i.to_confirm]
    lawless = [i.code for i in catalog.values() if i.statutory_limit is None]
    result = CliRunner().invoke(app, ["rules", "check", "--rules", str(RULES)])
    assert result.exit_code == 0, result.output
    assert f"待核实：事项清单中 {len(unsure)} 个事项有待政策办核实的内容" in result.output
    assert all(f"{i.code} {i.name}" in result.output for i in unsure)
    assert f"其中 {len(lawless)} 个没有法定时限（法律法规未规定期限或即时办结）（{'、'.join(lawless)}）" in result.output
