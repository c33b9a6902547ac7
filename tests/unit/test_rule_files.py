"""Operators' mistakes in the rule files are caught with the file, the line and the rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.common.rule_files import RulesError, load_rulebook
from services.common.rules_check import check_rules
from services.router.active_rules import load_checked


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"test setup: {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


def problems(directory: Path) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_checked(directory)
    return [str(p) for p in caught.value.problems]


def test_shipped_rules_pass_the_static_check(engine: object) -> None:
    report = check_rules(load_rulebook(Path(__file__).parents[2] / "rules"))
    assert report.ok, report.problems
    assert report.cases == 28 * 2 * 3  # items x requests x energy around the 5000 t threshold


def test_yaml_syntax_error_names_file_and_line(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "      mode: joint\n", "      mode: [joint\n")
    found = problems(rules_copy)
    assert len(found) == 1
    assert re.match(rf"{re.escape(str(routing))}:\d+ .*YAML 语法错误", found[0])


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


def test_duplicate_item_code_is_rejected_with_its_line(rules_copy: Path) -> None:
    catalog = rules_copy / "catalog.yaml"
    edit(catalog, "code: MA-02", "code: MA-01")
    second = [i for i, text in enumerate(catalog.read_text(encoding="utf-8").splitlines(), 1) if "code: MA-01" in text][1]
    assert f"{catalog}:{second} [事项 MA-01] code: 'MA-01' 重复（编码必须唯一）" in problems(rules_copy)


def test_undeclared_project_fact_is_rejected(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "project.annual_energy_tce: {gte: 5000}", "project.energy: {gte: 5000}")
    found = problems(rules_copy)
    assert any("[规则 assist.gov-service-bureau]" in p and "项目事实 'energy' 未在 project_facts 中声明" in p
               for p in found)


def test_planted_gap_is_found_by_the_static_check(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    # the errand rule now covers only `outside`: every dispatched agency's item falls through
    edit(routing, "item.jurisdiction: [outside, dispatched]\n    then:\n      mode: errand",
         "item.jurisdiction: [outside]\n    then:\n      mode: errand")
    found = problems(rules_copy)
    assert any("[事项 MA-02] 遗漏：诉求为 handle 时没有任何规则适用" in p for p in found)
    assert not any("诉求为 consult" in p for p in found)


def test_planted_overlap_is_found_by_the_static_check(rules_copy: Path) -> None:
    routing = rules_copy / "routing.yaml"
    # without its exception, the assist rule also matches a large project's energy review
    edit(routing, "    unless:                      # 年综合能耗 5000 吨标准煤以上的节能审查由自治区能源局审批\n"
                  "      item.code: PL-03\n      project.annual_energy_tce: {gte: 5000}\n", "")
    found = problems(rules_copy)
    overlap = [p for p in found if "重叠" in p]
    assert len(overlap) == 1
    assert "[规则 assist.gov-service-bureau 与 errand.energy-review-regional]" in overlap[0]
    assert "事项 PL-03" in overlap[0] and "annual_energy_tce=5000" in overlap[0]
    assert f"{routing}:{line_of(routing, 'id: assist.gov-service-bureau')}" in overlap[0]
