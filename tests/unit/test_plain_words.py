"""What staff read is plain Chinese: the facts a decision tested by their Chinese names (never a dict
or a code), an item the rules found not required told as the rules' finding (not as a failure), and
each notice pointing at the console page where it is acted on."""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.domain import Request, Unroutable
from services.common.messages import ItemUnroutable
from services.common.rule_files import facts_in_words, load_rulebook
from services.notifier.compose import Composer, ProjectView, page_for
from services.notifier.plan import load_plan
from tests.conftest import ALUMINIUM, RULES, example

BOOK = load_rulebook(RULES)
COMPOSER = Composer(load_plan(RULES, BOOK.units), BOOK.units, BOOK.catalog, project_facts=BOOK.project_facts)
NOW = datetime(2026, 5, 6, 2, tzinfo=UTC)


def _name(code: str) -> str:
    return BOOK.units[code].short_name if code in BOOK.units else code


def test_facts_are_named_in_chinese() -> None:
    words = facts_in_words({"item.code": "PL-03", "item.owner": "city_development_reform_commission",
                            "item.jurisdiction": "outside", "project.annual_energy_tce": 800, "request": "handle"},
                           BOOK.project_facts, BOOK.catalog, _name)
    assert words[0].startswith("事项：PL-03 ") and "审批机关所在：新区以外的机关" in words
    assert "年综合能源消费量（吨标准煤）：800" in words and "企业诉求：办理" in words
    assert not any("project." in w or "_" in w for w in words), words


def _unroutable(reason_code: str) -> list[dict[str, object]]:
    project = example(ALUMINIUM).project
    event = ItemUnroutable(
        event_id=f"u-{reason_code}", occurred_at=NOW, recorded_at=NOW, item_id="i1", agreement_id="A1",
        project_code=project.code, project_name=project.name, recruiting_unit=project.recruiting_unit,
        item_code="PL-03", item_name="固定资产投资项目节能审查", request=Request.HANDLE,
        unroutable=Unroutable(reason_code=reason_code,
                              reason="年综合能源消费量不足 1000 吨标准煤且年用电不足 500 万千瓦时，无需单独节能审查",
                              rules_version="v1", facts={"project.annual_energy_tce": 800}, decided_at=NOW))
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    return COMPOSER.compose(event, view, None, NOW)


def test_an_item_not_required_is_the_rules_finding_not_a_failure() -> None:
    documents = _unroutable("not_required")
    [told] = [d for d in documents if d["channel"] == "inbox"]
    assert told["role"] == "recruiting_unit" and str(told["title"]).startswith("规则认定无需办理")
    assert "无法分派" not in str(told["body"]) and "年综合能源消费量（吨标准煤）：800" in str(told["body"])
    failed = [d for d in _unroutable("no_rule") if d["channel"] == "inbox"]
    assert {d["role"] for d in failed} == {"recruiting_unit", "operators"}
    ops = next(d for d in failed if d["role"] == "operators")
    assert "{" not in str(ops["body"]) and "/unroutable" in str(ops["body"])


def test_each_kind_of_notice_points_at_its_page() -> None:
    assert page_for("task_order.issued", "P-1", "MA-02") == "/items/P-1/MA-02"
    assert page_for("item.ready", "P-1", "CA-01", consult=True) == "/items/P-1/CA-01?consult=true"
    assert page_for("assessment.submitted", "P-1", None) == "/rectify"
    assert page_for("service.started", "P-1", None) == "/projects/P-1"
    assert page_for("agreement.rejected", "P-1", None) == "/inbox"
