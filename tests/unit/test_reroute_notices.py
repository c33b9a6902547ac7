"""``item.rerouted`` notices: the old unit is told the item is no longer its, the new unit gets the
item with its materials and time limit, the enterprise its new contact, the ledger owner the change."""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.domain import ServiceMode
from services.common.messages import Contact, Enterprise, ItemRerouted
from services.notifier.compose import ItemView, ProjectView
from tests.unit.test_notification_plan import BOOK, COMPOSER

NOW = datetime(2026, 11, 4, 9, 0, tzinfo=UTC)
PROJECT = ProjectView("HLXQ-2026-0099", "铝型材项目", Enterprise(
    name="绿能材料", credit_code="91150100MA0N8XK21Q", contact=Contact(name="王经理")), "econ_dev_bureau")


def rerouted(**changes: object) -> ItemRerouted:
    fields: dict[str, object] = {
        "event_id": "ev-1", "occurred_at": NOW, "recorded_at": NOW, "project_code": PROJECT.code, "item_code": "MA-01",
        "reported_by": "gov_service_bureau", "request_id": "req-1", "item_name": "企业设立登记", "state": "ready",
        "from_mode": ServiceMode.ASSIST, "to_mode": ServiceMode.JOINT, "from_unit": "gov_service_bureau",
        "to_unit": "planning_construction_bureau", "from_authority": "gov_service_bureau",
        "to_authority": "planning_construction_bureau", "task_order_required": False, "time_limit_days": 3,
        "materials": ("营业执照申请书", "公司章程"), "rule_id": "joint.x", "from_rules_version": "aaaa1111",
        "rules_version": "bbbb2222", "reason": "规则版本变更"} | changes
    return ItemRerouted.model_validate(fields)


def _compose(event: ItemRerouted) -> dict[str, dict[str, object]]:
    # the notifier's read model still names the old unit: the event's new unit is what counts
    docs = COMPOSER.compose(event, PROJECT, ItemView(PROJECT.code, event.item_code, event.item_name, event.to_unit), NOW)
    return {str(d["recipient"]): d for d in docs if d["channel"] == "inbox"}


def test_both_units_the_enterprise_and_the_ledger_owner_are_told() -> None:
    docs = _compose(rerouted())
    assert set(docs) == {"unit:gov_service_bureau", "unit:planning_construction_bureau",
                         "enterprise:91150100MA0N8XK21Q", "unit:econ_dev_bureau"}
    old = docs["unit:gov_service_bureau"]
    assert str(old["title"]).startswith("事项已改派") and "不再由贵单位承办" in str(old["body"])
    new = str(docs["unit:planning_construction_bureau"]["body"])
    assert "由 " + BOOK.units["gov_service_bureau"].name + " 改派给贵单位" in new
    assert "1. 营业执照申请书\n2. 公司章程" in new and "受理后 3 个工作日" in new and "首问响应时限自今日起重新计算" in new
    enterprise = docs["enterprise:91150100MA0N8XK21Q"]
    assert enterprise["title"] == "承办单位变更：企业设立登记"
    body = str(enterprise["body"])
    assert "新的联系人：规划建设局审批科" in body and COMPOSER.console_link(PROJECT.code) in body
    assert "台账更新" in str(docs["unit:econ_dev_bureau"]["title"])
    assert all("${" not in str(d["body"]) + str(d["title"]) for d in docs.values())


def test_a_withdrawn_task_order_and_a_waiting_item_are_said_so() -> None:
    docs = _compose(rerouted(state="waiting", withdrawn_task_order="RWD-X-MA-01", materials=()))
    assert "原任务单 RWD-X-MA-01 已撤回" in str(docs["unit:gov_service_bureau"]["body"])
    new = str(docs["unit:planning_construction_bureau"]["body"])
    assert "尚在等待前置事项" in new
    assert BOOK.catalog["MA-01"].materials[0] in new  # no materials kept: the catalog's


def test_a_new_approving_authority_for_the_same_unit_is_an_adjustment_not_a_hand_over() -> None:
    """The energy review moved from the city to the regional commission, 政联公司 keeps it: nobody is
    told the item is no longer theirs, nor to hand it to themselves (fresh-eyes attack)."""
    docs = _compose(rerouted(item_code="PL-03", item_name="节能审查", from_mode=ServiceMode.ERRAND,
                             to_mode=ServiceMode.ERRAND, from_unit="zhenglian_company", to_unit="zhenglian_company",
                             from_authority="city_development_reform_commission",
                             to_authority="regional_development_reform_commission", task_order_required=True))
    assert set(docs) == {"unit:zhenglian_company", "enterprise:91150100MA0N8XK21Q", "unit:econ_dev_bureau"}
    unit = docs["unit:zhenglian_company"]
    assert str(unit["title"]).startswith("事项分派调整") and "仍由贵单位承办" in str(unit["body"])
    city, region = (BOOK.units[u].name for u in ("city_development_reform_commission",
                                                "regional_development_reform_commission"))
    assert f"审批机关：{city} → {region}" in str(unit["body"])
    assert "改派给贵单位" not in str(unit["body"]) and "不再由贵单位承办" not in str(unit["body"])
    enterprise = docs["enterprise:91150100MA0N8XK21Q"]
    assert enterprise["title"] == "审批事项安排调整：节能审查" and "承办单位由" not in str(enterprise["body"])
    assert all("${" not in str(d["body"]) + str(d["title"]) for d in docs.values())
