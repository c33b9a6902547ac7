"""``zeroerrand rules dry-run``: what a candidate would decide differently, over an export of items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from services.cli import app
from services.common.domain import Request
from services.router.dry_run import Subject, compare
from services.router.dry_run_command import engine_for
from tests.conftest import RULES
from tests.unit.test_rule_files import edit, line_of

# annual_energy_tce of each project; the candidate moves the regional threshold from 10,000 to 8,000
ENERGY = {"P-0500": 500.0, "P-5000": 5000.0, "P-7999": 7999.5, "P-8000": 8000.0, "P-9000": 9000.0,
          "P-9999": 9999.9, "P-10000": 10000.0, "P-15000": 15000.0}
CROSSING = ["P-8000", "P-9000", "P-9999"]
OTHER_ITEMS = ("MA-01", "EP-03", "CA-04")


def export(path: Path, open_projects: set[str] = frozenset()) -> Path:  # type: ignore[assignment]
    lines: list[dict[str, Any]] = []
    for code, energy in ENERGY.items():
        facts = {"annual_energy_tce": energy, "annual_electricity_10k_kwh": 100.0}
        for item in ("PL-03", *OTHER_ITEMS):
            lines.append({"project_code": code, "item_code": item, "request": "handle", "facts": facts,
                          "open": code in open_projects, "state": "ready" if code in open_projects else "delivered"})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def lower_threshold(rules: Path) -> Path:
    routing = rules / "routing.yaml"
    edit(routing, "project.annual_energy_tce: {gte: 10000}", "project.annual_energy_tce: {gte: 8000}", count=2)
    edit(routing, "project.annual_energy_tce: {lt: 10000}", "project.annual_energy_tce: {lt: 8000}", count=2)
    return rules


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["rules", "dry-run", "--active", str(RULES), *args])


def test_identical_rules_change_nothing_and_exit_0(rules_copy: Path, tmp_path: Path) -> None:
    items = export(tmp_path / "items.jsonl", {"P-9000"})
    result = run("--rules", str(rules_copy), "--items", str(items), "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["changed"] == 0 and answer["changes"] == [] and answer["items"] == len(ENERGY) * 4
    assert answer["check"] == {"ok": True, "problems": []}
    text = run("--rules", str(rules_copy), "--items", str(items))
    assert text.exit_code == 0 and "决策改变 0 个" in text.output and "不会改变任何事项的分派" in text.output


def test_a_lower_energy_threshold_changes_exactly_the_projects_that_cross_it(rules_copy: Path, tmp_path: Path) -> None:
    items = export(tmp_path / "items.jsonl", open_projects={"P-9000", "P-15000"})
    result = run("--rules", str(lower_threshold(rules_copy)), "--items", str(items), "--json")
    assert result.exit_code == 3, result.output
    answer = json.loads(result.output)
    assert answer["changed"] == len(CROSSING) and answer["open_changed"] == 1
    [change] = answer["changes"]
    assert change["item_code"] == "PL-03" and sorted(change["projects"]) == CROSSING
    assert change["from"]["authority"] == "city_development_reform_commission"
    assert change["to"]["authority"] == "regional_development_reform_commission"
    assert change["from"]["unit"] == change["to"]["unit"] == "zhenglian_company"
    assert change["open_items"] == ["P-9000"]  # P-15000 is open too, but regional under both
    text = run("--rules", str(rules_copy), "--items", str(items))
    assert text.exit_code == 3
    assert "决策改变 3 个（其中未办结 1 个）" in text.output
    assert ("PL-03  errand.zhenglian_company（审批机关 city_development_reform_commission） → "
            "errand.zhenglian_company（审批机关 regional_development_reform_commission）：3 个") in text.output
    assert "受影响的未办结事项（项目）：P-9000" in text.output


def test_an_invalid_candidate_exits_1_naming_file_and_line(rules_copy: Path, tmp_path: Path) -> None:
    routing = rules_copy / "routing.yaml"
    edit(routing, "      unit: zhenglian_company\n", "      unit: zhenglain_company\n")
    line = line_of(routing, "zhenglain_company")
    result = run("--rules", str(rules_copy), "--items", str(export(tmp_path / "items.jsonl")))
    assert result.exit_code == 1
    assert f"{routing}:{line}" in result.output and "zhenglain_company" in result.output
    as_json = run("--rules", str(rules_copy), "--items", str(tmp_path / "items.jsonl"), "--json")
    assert as_json.exit_code == 1
    problems = json.loads(as_json.output)["check"]["problems"]
    assert problems and problems[0]["file"] == str(routing) and problems[0]["line"] == line


def test_items_that_become_unroutable_are_listed(rules_copy: Path, tmp_path: Path) -> None:
    # the candidate no longer reviews a project under 1,000 tce whatever its electricity: PL-03 of
    # P-0500 with 600 × 10⁴ kWh (now reviewed by the city) is no longer needed
    routing = rules_copy / "routing.yaml"
    edit(routing, "project.annual_electricity_10k_kwh: {lt: 500}", "project.annual_electricity_10k_kwh: {lt: 5000}",
         count=3)
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"project_code": "P-0500", "item_code": "PL-03", "open": True,
                                 "facts": {"annual_energy_tce": 500, "annual_electricity_10k_kwh": 600}}) + "\n")
    result = run("--rules", str(rules_copy), "--items", str(items))
    assert result.exit_code == 3, result.output
    assert "变为不可分派 1 个" in result.output and "将变为不可分派的事项：" in result.output
    assert "PL-03：1 个（not_required）" in result.output


def test_the_memo_gives_the_same_answer_as_deciding_every_item(rules_copy: Path) -> None:
    subjects = [Subject(f"P-{i}", code, Request.HANDLE, {"annual_energy_tce": float(i * 37 % 20000),
                                                         "annual_electricity_10k_kwh": float(i % 900)}, open=i % 3 == 0)
                for i in range(600) for code in ("PL-03", "MA-01")]
    candidate = lower_threshold(rules_copy)
    with_memo = compare(engine_for(RULES), engine_for(candidate), subjects, memo=True)
    without = compare(engine_for(RULES, memo=False), engine_for(candidate, memo=False), subjects, memo=False)
    assert with_memo.as_json()["changes"] == without.as_json()["changes"] and with_memo.changed > 0
    assert with_memo.decisions < without.decisions == len(subjects)


def test_an_export_line_that_is_not_an_item_names_its_line(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"project_code": "P-1", "item_code": "PL-03", "facts": {}}\nnot json\n')
    result = run("--rules", str(RULES), "--items", str(items))
    assert result.exit_code == 1 and f"{items}:2" in result.output


def test_bad_export_lines_are_refused_with_file_line_and_reason_never_a_traceback(tmp_path: Path) -> None:
    good = '{"project_code": "P-1", "item_code": "PL-03", "facts": {"annual_energy_tce": 900}}\n'
    bad = {  # line 2 of each file, and what the message must say
        "infinite": ('{"project_code": "P", "item_code": "PL-03", "facts": {"annual_energy_tce": 1e400}}', "有限数"),
        "object_fact": ('{"project_code": "P", "item_code": "PL-03", "facts": {"annual_energy_tce": {"a": 1}}}',
                        "facts.annual_energy_tce"),
        "wrong_types": ('{"project_code": 5, "item_code": ["PL-03"], "facts": "x"}', "project_code"),
        "bad_request": ('{"project_code": "P", "item_code": "PL-03", "request": "bogus"}', "request"),
        "nested": ("[" * 100_000, "嵌套过深"),
        "not_json": ("{nope", "不是 JSON"),
    }
    for name, (line, says) in bad.items():
        items = tmp_path / f"{name}.jsonl"
        items.write_text(good + line + "\n", encoding="utf-8")
        result = run("--rules", str(RULES), "--items", str(items))
        assert result.exit_code == 1 and f"{items}:2" in result.output and says in result.output, (name, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.exception)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(good.encode() + b"\xbb\xff\xfe garbage\n")
    result = run("--rules", str(RULES), "--items", str(binary))
    assert result.exit_code == 1 and f"{binary}:2" in result.output and "UTF-8" in result.output, result.output
