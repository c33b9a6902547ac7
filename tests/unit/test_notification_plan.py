"""The notification plan: who is told what, in Chinese, for each event (pure: no store, no broker)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from services.common.messages import ItemBlocked, ItemDelivered, ItemOverdue, ProjectDelivered
from services.common.rule_files import load_rulebook
from services.common.settings import NotifierSettings
from services.common.yaml_files import RulesError
from services.notifier.compose import Composer, ItemView, ProjectView
from services.notifier.delivery import backoff
from services.notifier.plan import load_plan
from services.notifier.webhook import signature, verify
from services.router.routing import route_agreement
from services.router.rule_engine import RoutingEngine
from tests.conftest import ALUMINIUM, CONSULT_UNKNOWN, INELIGIBLE, RULES, example

NOW = datetime(2026, 3, 18, 9, 0, tzinfo=UTC)
BOOK = load_rulebook(RULES)
COMPOSER = Composer(load_plan(RULES, BOOK.units), BOOK.units, BOOK.catalog)


def notifications_for(name: str, engine: RoutingEngine) -> list[dict[str, object]]:
    result = route_agreement(example(name), engine)
    docs: list[dict[str, object]] = []
    if result.rejected is not None:
        p = result.rejected.project
        return COMPOSER.compose(result.rejected, ProjectView(p.code, p.name, p.enterprise, p.recruiting_unit), None, NOW)
    assert result.started is not None
    project = result.started.project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    docs += COMPOSER.compose(result.started, view, None, NOW)
    for routed in result.routed:
        item = ItemView(project.code, routed.item.item_code, routed.item.item_name, routed.item.responsible_unit)
        docs += COMPOSER.compose(routed, view, item, NOW)
    for parked in result.unroutable:
        docs += COMPOSER.compose(parked, view, None, NOW)
    return docs


def test_an_eligible_project_tells_each_party_what_the_policy_names(engine: RoutingEngine) -> None:
    docs = notifications_for(ALUMINIUM, engine)
    routed = route_agreement(example(ALUMINIUM), engine).routed
    by_recipient = Counter((str(d["recipient"]), str(d["channel"])) for d in docs)
    enterprise = "enterprise:91150100MA0N8XK21Q"
    expected = Counter({(enterprise, "inbox"): 1 + len(routed),  # service started + one notice per item
                        # the example's contact asks for e-mail and SMS too (notify_by: [email, sms])
                        (enterprise, "email"): 1 + len(routed), (enterprise, "sms"): 1 + len(routed),
                        ("unit:econ_dev_bureau", "inbox"): 2})  # ledger line + the recruiting unit's tracking duty
    for r in routed:  # each unit hears of its items (专业跑腿 ones too: the task order follows when ready)
        expected[(f"unit:{r.item.responsible_unit}", "inbox")] += 1
    assert by_recipient == expected
    assert {d["address"] for d in docs if d["channel"] == "email"} == {"wanght@lvneng-materials.example.cn"}
    assert {d["address"] for d in docs if d["channel"] == "sms"} == {"13947100031"}
    # the inbox waits to be read; e-mail and SMS wait to be sent
    assert {(d["channel"], d["status"], d["delivered_at"], d["read_at"]) for d in docs} == {
        ("inbox", "unread", None, None), ("email", "pending", None, None), ("sms", "pending", None, None)}


def test_the_one_time_notice_lists_every_material_the_time_limit_and_the_fee_note(engine: RoutingEngine) -> None:
    docs = notifications_for(ALUMINIUM, engine)
    notice = next(d for d in docs if d["title"] == "一次性告知：国有建设用地使用权出让（招拍挂）")
    body = str(notice["body"])
    for material in BOOK.catalog["LT-02"].materials:
        assert material in body
    assert f"请一次性准备以下 {len(BOOK.catalog['LT-02'].materials)} 项材料" in body
    limit = BOOK.catalog["LT-02"].time_limit_days
    assert f"承诺时限：受理后 {limit} 个工作日" in body and "内蒙古政联招商服务有限公司" in body
    assert "国有建设用地使用权出让价款" in body and "非服务收费" in body
    assert "需待企业设立登记（MA-01）、建设用地规划条件出具（LT-01）办结后办理" in body
    assert "${" not in body


def test_a_ready_errand_item_asks_econ_dev_bureau_for_the_task_order_which_then_goes_to_zhenglian() -> None:
    from services.common.messages import ItemReady, TaskOrderAccepted, TaskOrderIssued

    project = example(ALUMINIUM).project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    item = ItemView(project.code, "PL-04", "建设项目用地预审与选址意见书", "zhenglian_company")
    common = {"occurred_at": NOW, "recorded_at": NOW, "project_code": project.code, "item_code": "PL-04",
              "reported_by": "econ_dev_bureau"}
    ready = COMPOSER.compose(ItemReady(event_id="r1", waited_for=("MA-01",), task_order_required=True, **common),
                             view, item, NOW)
    ask = next(d for d in ready if d["role"] == "ledger_owner")
    assert ask["recipient"] == "unit:econ_dev_bureau" and "下发任务单" in str(ask["body"])
    assert f"/items/{project.code}/PL-04" in str(ask["body"]), "the page where the order is issued, not a command"
    assert not any(d["role"] == "responsible_unit" for d in ready)  # 政联公司 waits for the order itself
    issued = COMPOSER.compose(TaskOrderIssued(event_id="t1", number="RWD-X-PL-04", issued_by="econ_dev_bureau",
                                              assigned_to="zhenglian_company", **common), view, item, NOW)
    order = next(d for d in issued if d["role"] == "task_order_assignee")
    assert order["recipient"] == "unit:zhenglian_company" and order["title"] == "专业跑腿服务任务单 RWD-X-PL-04"
    assert "经济发展招商服务局下发" in str(order["body"])
    accepted = COMPOSER.compose(TaskOrderAccepted(event_id="t2", number="RWD-X-PL-04", specialist_name="李专员",
                                                  specialist_phone="13800000000", **common), view, item, NOW)
    to_enterprise = next(d for d in accepted if str(d["recipient"]).startswith("enterprise:"))
    assert "李专员" in str(to_enterprise["body"]) and "13800000000" in str(to_enterprise["body"])


def test_a_refused_request_is_told_to_the_unit_that_sent_it() -> None:
    from services.common.messages import RequestRefused

    refused = COMPOSER.compose(RequestRefused(
        event_id="x1", occurred_at=NOW, recorded_at=NOW, request_id="req-9", request_type="item.accept",
        requested_by="public_utilities_bureau", project_code="HLXQ-1", item_code="CP-01",
        reason="首问负责：事项 CP-01 由规划建设局负责"), None, None, NOW)
    [doc] = refused
    assert doc["recipient"] == "unit:public_utilities_bureau" and "未被受理" in str(doc["title"])
    assert "首问负责" in str(doc["body"]) and "受理" in str(doc["body"])


def test_rejection_goes_to_the_recruiting_unit_with_every_reason(engine: RoutingEngine) -> None:
    [doc] = notifications_for(INELIGIBLE, engine)
    assert doc["recipient"] == "unit:econ_dev_bureau"
    assert "1. 投资合作协议未约定" in str(doc["body"]) and "2. 企业未同意" in str(doc["body"])


def test_unroutable_item_reaches_the_recruiting_unit_and_operators(engine: RoutingEngine) -> None:
    docs = [d for d in notifications_for(CONSULT_UNKNOWN, engine) if d["event_type"] == "item.unroutable"]
    assert {str(d["recipient"]) for d in docs} == {"unit:econ_dev_bureau", "role:operators"}
    assert all("PL-99" in str(d["body"]) for d in docs)


def test_progress_events_name_project_item_and_units() -> None:
    project = example(ALUMINIUM).project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    item = ItemView(project.code, "EP-03", "施工图联合审查", "planning_construction_bureau")
    common = {"occurred_at": NOW, "recorded_at": NOW, "project_code": project.code, "item_code": "EP-03",
              "reported_by": "planning_construction_bureau"}
    blocked = COMPOSER.compose(ItemBlocked(event_id="b1", reason="消防设计需补充", resolver="public_utilities_bureau",
                                           **common), view, item, NOW)
    assert {str(d["recipient"]) for d in blocked} == {"unit:econ_dev_bureau", "unit:public_utilities_bureau"}
    overdue = COMPOSER.compose(ItemOverdue(event_id="o1", clock="statutory", level="yellow", due_on=date(2026, 4, 1),
                                           working_days_used=10, time_limit_days=10, **common), view, item, NOW)
    assert all("黄牌" in str(d["title"]) for d in overdue) and len(overdue) == 2
    assert all("承诺办理时限已用 10 个工作日" in str(d["body"]) for d in overdue)
    delivered = COMPOSER.compose(ItemDelivered(event_id="d1", results=("施工图审查合格书 呼审字〔2026〕31号",), **common),
                                 view, item, NOW)
    handover = next(d for d in delivered if str(d["recipient"]).startswith("enterprise:"))
    assert "一次性完整移交" in str(handover["body"]) and "呼审字〔2026〕31号" in str(handover["body"])
    done = COMPOSER.compose(ProjectDelivered(event_id="p1", occurred_at=NOW, recorded_at=NOW,
                                             project_code=project.code, items_delivered=26), view, None, NOW)
    assert {str(d["role"]) for d in done} == {"enterprise", "recruiting_unit", "ledger_owner"}


def test_an_unknown_template_variable_is_an_error_with_file_and_line(rules_copy: Path) -> None:
    plan = rules_copy / "notifications.yaml"
    text = plan.read_text(encoding="utf-8")
    old = "受理后 ${time_limit_days} 个工作日；${requires}。\n        请一次性准备"
    new = old.replace("${time_limit_days}", "${time_limit}")
    assert old in text
    plan.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_plan(rules_copy, BOOK.units)
    [problem] = caught.value.problems
    line = next(i for i, t in enumerate(plan.read_text(encoding="utf-8").splitlines(), 1) if "body: |" in t
                and i > next(j for j, u in enumerate(plan.read_text(encoding="utf-8").splitlines(), 1)
                             if "一次性告知：${item_name}" in u))
    assert str(problem).startswith(f"{plan}:{line} [事件 item.routed 第1条] body: 模板变量 ['time_limit'] 不存在")


def test_an_unknown_role_or_unit_is_an_error(rules_copy: Path) -> None:
    plan = rules_copy / "notifications.yaml"
    text = plan.read_text(encoding="utf-8")
    text = text.replace("    - to: ledger_owner\n      title: 新增", "    - to: resolver\n      title: 新增", 1)
    text = text.replace("    - to: operators\n      title: 规则文件", "    - to: unit:nobody\n      title: 规则文件", 1)
    plan.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_plan(rules_copy, BOOK.units)
    found = [str(p) for p in caught.value.problems]
    assert any("[事件 service.started 第1条] to: 事件 service.started 没有角色 'resolver'" in p for p in found)
    assert any("[事件 rules.rejected 第1条] to: 单位 'unit:nobody' 不在 units.yaml 中" in p for p in found)


def test_webhook_signature_covers_timestamp_and_body() -> None:
    header = signature(b"secret", "1760000000", b'{"a":1}')
    assert verify(b"secret", "1760000000", b'{"a":1}', header)
    assert not verify(b"secret", "1760000001", b'{"a":1}', header)
    assert not verify(b"other", "1760000000", b'{"a":1}', header)


def test_backoff_doubles_up_to_the_cap() -> None:
    settings = NotifierSettings(backoff_base_s=2, backoff_max_s=10)
    assert [backoff(n, settings).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 10]


def test_a_bad_assessment_asks_the_provider_to_rectify_tells_its_evaluator_and_a_good_one_notifies_nobody() -> None:
    from services.common.messages import AssessmentRectified, AssessmentSubmitted

    project = example(ALUMINIUM).project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)

    def assessed(total: float, weight: float = 0) -> AssessmentSubmitted:
        return AssessmentSubmitted(event_id=f"a-{total}-{weight}", occurred_at=NOW, recorded_at=NOW,
                                   assessment_id=f"a-{total}", project_code=project.code,
                                   provider="planning_construction_bureau", rater="enterprise",
                                   requested_by=project.enterprise.credit_code, year=2026, scores={}, total=total,
                                   comment="超时", bad=total < 60, rectify_by=date(2026, 4, 1) if total < 60 else None,
                                   evaluators=("gov_service_bureau",), rectification_weight=weight)

    bad = COMPOSER.compose(assessed(50), view, None, NOW)
    assert {str(d["recipient"]) for d in bad} == {"unit:planning_construction_bureau", "unit:econ_dev_bureau",
                                                  "unit:gov_service_bureau"}
    notice = next(d for d in bad if d["role"] == "provider")
    assert "差评整改通知" in str(notice["title"]) and "测评编号 a-50" in str(notice["body"]) \
        and "/rectify" in str(notice["body"]) and "zeroerrand" not in str(notice["body"])
    assert "2026-04-01 前" in str(notice["body"])
    # the weight of the 差评整改率 is 0: the notice must not say the rectification counts in the score
    assert "计入年度综合评价总分" not in str(notice["body"]) and "仅供参考，不计入总分" in str(notice["body"])
    told = next(d for d in bad if d["role"] == "evaluator")
    assert "差评（年度综合评价）" in str(told["title"]) and "a-50" in str(told["body"])
    weighted = next(d for d in COMPOSER.compose(assessed(50, 0.2), view, None, NOW) if d["role"] == "provider")
    assert "按 20% 的权重计入年度综合评价总分" in str(weighted["body"])
    assert COMPOSER.compose(assessed(90), view, None, NOW) == []

    def rectified(late: bool) -> AssessmentRectified:
        return AssessmentRectified(event_id=f"r-{late}", occurred_at=NOW, recorded_at=NOW, assessment_id="a-50",
                                   project_code=project.code, provider="planning_construction_bureau",
                                   note="建立限时办结台账", late=late, evaluators=("gov_service_bureau",))

    late = COMPOSER.compose(rectified(True), view, None, NOW)
    assert [str(d["title"]) for d in late if d["role"] == "evaluator"] == [
        f"逾期整改（年度综合评价）：和林格尔新区规划建设局 / {project.name}"]
    assert not any(d["role"] == "evaluator" for d in COMPOSER.compose(rectified(False), view, None, NOW))


def test_an_order_not_issued_in_time_warns_econ_dev_bureau_not_the_unit_that_waits_for_it() -> None:
    project = example(ALUMINIUM).project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    item = ItemView(project.code, "PL-04", "建设项目用地预审与选址意见书", "zhenglian_company")
    card = ItemOverdue(event_id="o-t", occurred_at=NOW, recorded_at=NOW, project_code=project.code, item_code="PL-04",
                       reported_by="econ_dev_bureau", clock="task_order", level="yellow", due_on=date(2026, 3, 17),
                       working_days_used=3, time_limit_days=2)
    docs = COMPOSER.compose(card, view, item, NOW)
    roles = {str(d["role"]): d for d in docs}
    assert "responsible_unit" not in roles  # 政联公司 cannot act before the order
    ask = roles["ledger_owner"]
    assert ask["recipient"] == "unit:econ_dev_bureau" and "请下发专业跑腿任务单" in str(ask["title"])
    assert "任务单下发时限已用 3 个工作日" in str(ask["body"]) and "点“下发任务单”" in str(ask["body"])


def test_a_suspension_tells_the_enterprise_what_to_supply() -> None:
    from services.common.messages import ItemSuspended

    project = example(ALUMINIUM).project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    item = ItemView(project.code, "PL-01", "企业投资项目备案", "gov_service_bureau")
    docs = COMPOSER.compose(ItemSuspended(event_id="s1", occurred_at=NOW, recorded_at=NOW, project_code=project.code,
                                          item_code="PL-01", reported_by="gov_service_bureau",
                                          reason="请补充项目符合产业政策的承诺书"), view, item, NOW)
    notice = next(d for d in docs if str(d["recipient"]).startswith("enterprise:"))
    assert notice["title"] == "请补正材料：企业投资项目备案" and "请补充项目符合产业政策的承诺书" in str(notice["body"])
    assert "不计入办理时限" in str(notice["body"])
