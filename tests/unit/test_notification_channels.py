"""The e-mail and SMS channels without a server: masking, the SMS text, the mail, the contact's
notify_by, the directory's channel specs, the console link and the start-up warning."""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.access import access_link
from services.common.agreement_files import load_agreement
from services.common.messages import Contact
from services.common.rule_files import load_rulebook
from services.common.settings import ConsoleSettings, NotifierSettings
from services.common.yaml_files import RulesError
from services.notifier import mail, sms
from services.notifier.app import unconfigured_channels, warn_unconfigured
from services.notifier.channels import mask_address, mask_email, mask_phone, masked_in
from services.notifier.compose import Composer, ItemView, ProjectView
from services.notifier.plan import Email, Sms, load_plan
from services.router.routing import route_agreement
from tests.conftest import ALUMINIUM, EXAMPLES, RULES, example

NOW = datetime(2026, 3, 18, 9, 0, tzinfo=UTC)
BOOK = load_rulebook(RULES)
CONSOLE = ConsoleSettings(public_url="https://fuwu.hlxq.example.cn", secret_key="a-console-key-for-unit-tests")


def test_phone_numbers_and_addresses_are_masked() -> None:
    assert mask_phone("13900000000") == "139****0000"
    assert mask_phone("13947100031") == "139****0031"
    assert mask_phone("1234") == "****34" and mask_phone("1") == "****"
    assert mask_email("wanght@lvneng-materials.example.cn") == "w***@lvneng-materials.example.cn"
    assert mask_email("w@example.cn") == "w***@example.cn" and mask_email("no-at-sign") == "***"
    assert mask_address("sms", "13900000000") == "139****0000"
    assert mask_address("email", "spj@example.cn") == "s***@example.cn"
    assert mask_address("webhook", "https://u:pw@hooks.example.cn/x") == "https://u:***@hooks.example.cn/x"
    assert mask_address("inbox", None) == ""
    assert masked_in("550 <spj@example.cn> refused; spj@example.cn", "email", "spj@example.cn") == \
        "550 <s***@example.cn> refused; s***@example.cn"


def test_an_sms_is_signed_on_one_line_and_a_long_one_keeps_its_link_whole() -> None:
    assert sms.text_of("已受理：企业设立登记", "王总：\n  已受理。") == "【零跑腿】已受理：企业设立登记：王总： 已受理。"
    link = "https://fuwu.hlxq.example.cn/e/open?project=HLXQ-2026-0031&code=ABCD-EFGH-IJKL-MNOP"
    body = "请一次性准备以下材料：\n" + "\n".join(f"{n}. 材料第{n}项说明" for n in range(1, 60)) + \
        f"\n在线查看办理进度、反映堵点：{link}"
    text = sms.text_of("一次性告知：建设工程规划许可证", body)
    assert len(text) <= sms.MAX_CHARS and text.endswith("…" + link) and text.startswith("【零跑腿】一次性告知")
    long_tail = sms.text_of("标题", "很长的正文" * 100)  # no link: simply cut
    assert len(long_tail) == sms.MAX_CHARS and long_tail.endswith("…")


def test_the_mail_is_plain_utf8_text_with_the_title_as_subject_and_a_message_id_from_the_notification() -> None:
    notification = {"_id": "3f2a9c1e-0000-5000-8000-000000000001", "address": "wanght@example.cn",
                    "title": "一次性告知：建设工程规划许可证", "body": "内蒙古绿能新材料科技有限公司：\n请准备材料。"}
    built = mail.build(notification, "零跑腿 <notice@zeroerrand.example.cn>", NOW)
    again = mail.build(notification, "零跑腿 <notice@zeroerrand.example.cn>", datetime(2026, 3, 19, tzinfo=UTC))
    assert built["Message-ID"] == again["Message-ID"] == "<3f2a9c1e-0000-5000-8000-000000000001@zeroerrand.example.cn>"
    parsed = email.message_from_bytes(built.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "一次性告知：建设工程规划许可证" and parsed["To"] == "wanght@example.cn"
    assert parsed.get_content_type() == "text/plain" and parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().startswith("内蒙古绿能新材料科技有限公司：\n请准备材料。")  # type: ignore[attr-defined]


def test_notify_by_needs_the_address_it_sends_to() -> None:
    ok = Contact(name="王海涛", phone="+86 139-4710-0031", email="wanght@example.cn", notify_by=("email", "sms"))
    assert ok.mobile == "13947100031"
    with pytest.raises(ValidationError, match="notify_by 含 email（以邮件通知），须填写有效的电子邮件地址"):
        Contact(name="王海涛", phone="13947100031", notify_by=("email",))
    with pytest.raises(ValidationError, match="notify_by 含 email"):
        Contact(name="王海涛", email="not an address", notify_by=("email",))
    with pytest.raises(ValidationError, match="notify_by 含 sms（以短信通知），须在 phone 填写中国大陆手机号"):
        Contact(name="王海涛", phone="0471-6512345", notify_by=("sms",))  # a landline cannot take an SMS
    with pytest.raises(ValidationError, match="不能重复"):
        Contact(name="王海涛", phone="13947100031", notify_by=("sms", "sms"))
    with pytest.raises(ValidationError):
        Contact(name="王海涛", phone="13947100031", email="w@example.cn", notify_by=("sms", "email", "sms"))
    with pytest.raises(ValidationError):
        Contact(name="王海涛", notify_by=("fax",))  # type: ignore[arg-type]
    assert Contact(name="王海涛", phone="0471-6512345").notify_by == ()  # nothing asked, nothing needed


def test_an_agreement_file_whose_notify_by_cannot_work_is_refused_with_file_line_and_reason(tmp_path: Path) -> None:
    text = (EXAMPLES / ALUMINIUM).read_text(encoding="utf-8").replace('phone: "13947100031"', 'phone: "0471-6512345"')
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_agreement(bad)
    [problem] = caught.value.problems
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "contact:" in t)
    assert str(problem).startswith(f"{bad}:{line} project.enterprise.contact: notify_by 含 sms（以短信通知），"
                                   "须在 phone 填写中国大陆手机号"), str(problem)


def composer() -> Composer:
    return Composer(load_plan(RULES, BOOK.units), BOOK.units, BOOK.catalog, CONSOLE)


def test_the_enterprise_s_notices_carry_its_console_link_and_the_units_do_not(engine: object) -> None:
    agreement = example(ALUMINIUM)
    result = route_agreement(agreement, engine)  # type: ignore[arg-type]
    assert result.started is not None
    project = agreement.project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    link = access_link(CONSOLE.public_url, CONSOLE.secret_key.get_secret_value(), project.code)
    docs = composer().compose(result.started, view, None, NOW)
    for routed in result.routed:
        item = ItemView(project.code, routed.item.item_code, routed.item.item_name, routed.item.responsible_unit)
        docs += composer().compose(routed, view, item, NOW)
    to_enterprise = [d for d in docs if d["role"] == "enterprise"]
    assert len(to_enterprise) == 3 * 24 and all(f"在线查看办理进度、反映堵点：{link}" in str(d["body"]) for d in to_enterprise)
    assert not any("/e/open" in str(d["body"]) for d in docs if d["role"] != "enterprise")
    from services.common.messages import ItemDelivered, ProjectDelivered

    common = {"occurred_at": NOW, "recorded_at": NOW, "project_code": project.code}
    item = ItemView(project.code, "EP-03", "施工图联合审查", "planning_construction_bureau")
    handover = composer().compose(ItemDelivered(event_id="d1", item_code="EP-03", reported_by="planning_construction_bureau",
                                                results=("施工图审查合格书",), **common), view, item, NOW)
    done = composer().compose(ProjectDelivered(event_id="p1", items_delivered=23, **common), view, None, NOW)
    for notices in (handover, done):
        assert {str(d["channel"]) for d in notices if d["role"] == "enterprise"} == {"inbox", "email", "sms"}
        assert all(link in str(d["body"]) for d in notices if d["role"] == "enterprise")
        assert not any(link in str(d["body"]) for d in notices if d["role"] != "enterprise")


def test_the_console_link_may_only_be_written_to_the_enterprise(rules_copy: Path) -> None:
    plan = rules_copy / "notifications.yaml"
    text = plan.read_text(encoding="utf-8")
    old = "        按照“谁引入、谁牵头、谁跟踪”的原则"
    assert old in text
    plan.write_text(text.replace(old, "        链接：${console_link}\n" + old), encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_plan(rules_copy, BOOK.units)
    [problem] = caught.value.problems
    line = next(i for i, t in enumerate(plan.read_text(encoding="utf-8").splitlines(), 1)
                if "“企业零跑腿”服务已启动：${project_name}" in t) + 1  # the body under that title
    assert str(problem).startswith(f"{plan}:{line} [事件 service.started 第2条] body: "
                                   "${console_link} 是企业查看本项目的专属链接")
    assert "不能发给 recruiting_unit" in str(problem)


@pytest.mark.parametrize(("spec", "message"), [
    ("{email: spj-at-example.cn}", "channels[2].email.email: 不是有效的电子邮件地址"),
    ('{sms: "0471-6512345"}', "channels[2].sms.sms: 不是中国大陆手机号"),
    ("{sms: 1390000000}", "channels[2].sms.sms: 不是中国大陆手机号"),  # ten digits
    ("{fax: 123}", "channels[2]: 渠道应为 inbox、{webhook: https://...}、{email: 邮箱地址} 或 {sms: \"手机号\"} 之一"),
])
def test_a_bad_email_or_sms_in_the_directory_names_file_line_and_entry(rules_copy: Path, spec: str, message: str) -> None:
    directory = rules_copy / "directory.yaml"
    text = directory.read_text(encoding="utf-8")
    old = "    contact: 公共事业服务局审批科\n    channels: [inbox]"
    assert old in text
    directory.write_text(text.replace(old, f"    contact: 公共事业服务局审批科\n    channels:\n      - inbox\n      - {spec}"),
                         encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_plan(rules_copy, BOOK.units)
    [problem] = caught.value.problems
    line = next(i for i, t in enumerate(directory.read_text(encoding="utf-8").splitlines(), 1) if spec in t)
    assert str(problem).startswith(f"{directory}:{line} [单位 public_utilities_bureau] "
                                   f"units.public_utilities_bureau.{message}"), str(problem)


def test_good_email_and_sms_specs_become_channels_of_the_unit(rules_copy: Path) -> None:
    directory = rules_copy / "directory.yaml"
    text = directory.read_text(encoding="utf-8").replace(
        "    contact: 公共事业服务局审批科\n    channels: [inbox]",
        "    contact: 公共事业服务局审批科\n    channels: [inbox, {email: sp@example.cn}, {sms: 13900000000}]")
    directory.write_text(text, encoding="utf-8")
    plan = load_plan(rules_copy, BOOK.units)
    assert plan.directory.units["public_utilities_bureau"].channels == (
        "inbox", Email(email="sp@example.cn"), Sms(sms="13900000000"))  # unquoted digits are read as the number
    project = example(ALUMINIUM).project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    from services.common.messages import ItemOverdue

    overdue = ItemOverdue(event_id="o1", occurred_at=NOW, recorded_at=NOW, project_code=project.code, item_code="CP-01",
                          reported_by="public_utilities_bureau", clock="statutory", level="yellow", due_on=NOW.date(),
                          working_days_used=5, time_limit_days=5)
    docs = Composer(plan, BOOK.units, BOOK.catalog, CONSOLE).compose(
        overdue, view, ItemView(project.code, "CP-01", "供水接入", "public_utilities_bureau"), NOW)
    assert {(d["channel"], d["address"], d["status"]) for d in docs if d["recipient"] == "unit:public_utilities_bureau"} \
        == {("inbox", None, "unread"), ("email", "sp@example.cn", "pending"), ("sms", "13900000000", "pending")}


def test_the_notifier_warns_once_at_start_of_channels_without_a_server(rules_copy: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    directory = rules_copy / "directory.yaml"
    text = directory.read_text(encoding="utf-8")
    for unit in ("公共事业服务局审批科", "规划建设局审批科"):
        text = text.replace(f"    contact: {unit}\n    channels: [inbox]",
                            f"    contact: {unit}\n    channels: [inbox, {{email: sp@example.cn}}, {{sms: \"13900000000\"}}]")
    directory.write_text(text, encoding="utf-8")
    plan = load_plan(rules_copy, BOOK.units)
    assert unconfigured_channels(plan, NotifierSettings()) == {
        "email": ["units.planning_construction_bureau", "units.public_utilities_bureau"],
        "sms": ["units.planning_construction_bureau", "units.public_utilities_bureau"]}
    configured = NotifierSettings(smtp_host="smtp.example.cn", sms_gateway_url="https://sms.example.cn/send")
    assert unconfigured_channels(plan, configured) == {}
    assert unconfigured_channels(load_plan(RULES, BOOK.units), NotifierSettings()) == {}  # the repository's: inbox only
    with caplog.at_level(logging.INFO):
        warn_unconfigured(plan, NotifierSettings(smtp_host="smtp.example.cn"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "未设置 ZEROERRAND_NOTIFIER_SMS_GATEWAY_URL" in warnings[0].getMessage()
    assert "SMTP_HOST" not in warnings[0].getMessage() and "13900000000" not in caplog.text


def test_an_empty_channel_setting_means_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment passes an unset variable as an empty one: no server, not a server named ''."""
    for name in ("SMTP_HOST", "SMTP_PASSWORD", "SMTP_CA_FILE", "SMS_GATEWAY_URL", "SMS_GATEWAY_TOKEN"):
        monkeypatch.setenv(f"ZEROERRAND_NOTIFIER_{name}", "")
    settings = NotifierSettings()
    assert (settings.smtp_host, settings.smtp_password, settings.smtp_ca_file, settings.sms_gateway_url,
            settings.sms_gateway_token) == (None, None, None, None, None)
    assert settings.smtp_security == "starttls" and settings.smtp_port == 587


def test_a_channel_without_a_server_is_stored_failed_with_the_reason_and_never_queued(engine: object) -> None:
    from services.notifier.app import load_composer, unavailable_channels

    assert set(unavailable_channels(NotifierSettings())) == {"email", "sms"}
    assert unavailable_channels(NotifierSettings(smtp_host="smtp.example.cn")) == {"sms": sms.NOT_CONFIGURED}
    result = route_agreement(example(ALUMINIUM), engine)  # type: ignore[arg-type]
    assert result.started is not None
    project = result.started.project
    view = ProjectView(project.code, project.name, project.enterprise, project.recruiting_unit)
    composed = load_composer(NotifierSettings(smtp_host="smtp.example.cn"), CONSOLE).compose(result.started, view, None, NOW)
    states = {(d["channel"], d["status"], d["attempts"], d["last_error"], d["next_attempt_at"])
              for d in composed if d["role"] == "enterprise"}
    assert states == {("inbox", "unread", 0, None, None), ("email", "pending", 0, None, NOW),
                      ("sms", "failed", 0, sms.NOT_CONFIGURED, None)}
    assert sms.NOT_CONFIGURED.startswith("未配置短信网关（ZEROERRAND_NOTIFIER_SMS_GATEWAY_URL）")
    assert mail.NOT_CONFIGURED.startswith("未配置 SMTP 服务器（ZEROERRAND_NOTIFIER_SMTP_HOST）")
