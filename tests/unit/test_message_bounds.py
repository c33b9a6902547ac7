"""Inputs are bounded: dates in the years 2000–2100, strings and lists of bounded length, numbers
finite; the largest agreement the models allow yields events every consumer reads; an agreement
larger than the router reads is refused before it is published, naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from services.common.agreement_files import load_agreement, signed_event, to_event
from services.common.messages import (
    MAX_PLAN_LINES,
    AgreementSigned,
    AnyCommand,
    AnyEvent,
    ItemDelivered,
    ItemOverdue,
    PlannedItem,
    Project,
    RulesRejected,
)
from services.common.settings import MAX_AGREEMENT_BYTES, MAX_EVENT_BYTES, MAX_REQUEST_BYTES, mask_url, mask_urls_in
from services.common.yaml_files import RulesError
from services.router.active_rules import announced_problems
from services.router.handlers import outgoing_for
from services.router.routing import route_agreement
from services.router.rule_engine import RoutingEngine
from tests.conftest import ALUMINIUM, EXAMPLES, ROOT, example

EVENTS = TypeAdapter[Any](AnyEvent)
COMMANDS = TypeAdapter[Any](AnyCommand)
WIDE = "𠀀"  # four bytes in UTF-8: the most a character of a name or text costs in a JSON body
NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)


def body(model: Any) -> bytes:
    return model.model_dump_json().encode()


def errors_of(call: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        call()
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in caught.value.errors()]


def agreement_data(**update: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body(example(ALUMINIUM)))
    data.update(update)
    return data


@pytest.mark.parametrize("signed_on", ["9999-12-31", "1999-12-31", "2101-01-01"])
def test_a_signing_date_outside_the_years_2000_to_2100_is_refused(signed_on: str) -> None:
    found = errors_of(lambda: AgreementSigned.model_validate(agreement_data(signed_on=signed_on)))
    assert found == [f"signed_on: Value error, 日期须在 2000 至 2100 年之间，而不是 {signed_on} / outside the years 2000-2100"]
    AgreementSigned.model_validate(agreement_data(signed_on="2100-12-31"))  # the window's last day is in it


def test_every_time_of_an_event_is_in_the_window_and_has_its_offset() -> None:
    event = json.loads(body(example(ALUMINIUM)))
    assert errors_of(lambda: AgreementSigned.model_validate({**event, "occurred_at": "9999-12-31T00:00:00Z"}))[0] \
        .startswith("occurred_at: Value error, 日期须在 2000 至 2100 年之间")
    assert errors_of(lambda: AgreementSigned.model_validate({**event, "recorded_at": "2026-11-02T09:00:00"})) == [
        "recorded_at: Input should have timezone info"]
    overdue = dict(event_id="o-1", occurred_at=NOW, recorded_at=NOW, project_code="P-1", item_code="MA-01",
                   reported_by="gov_service_bureau", level="red", working_days_used=3, time_limit_days=2)
    assert errors_of(lambda: ItemOverdue(**overdue, due_on=date(2150, 1, 1)))[0].startswith("due_on: Value error, 日期须在")
    ItemOverdue(**overdue, due_on=date(2026, 11, 3))


def request(**fields: Any) -> dict[str, Any]:
    return {"type": "item.deliver", "request_id": "r-1", "requested_at": NOW.isoformat(),
            "occurred_at": NOW.isoformat(), "requested_by": "gov_service_bureau", "project_code": "P-1",
            "item_code": "MA-01", "results": ["营业执照"], **fields}


def test_requests_use_the_same_window_and_the_same_bounds() -> None:
    assert errors_of(lambda: COMMANDS.validate_python(request(occurred_at="1999-06-01T10:00:00+08:00")))[0] \
        .startswith("item.deliver.occurred_at: Value error, 日期须在 2000 至 2100 年之间")
    too_many = errors_of(lambda: COMMANDS.validate_python(request(results=["营业执照"] * 51)))
    assert too_many == ["item.deliver.results: Tuple should have at most 50 items after validation, not 51"]
    assert errors_of(lambda: COMMANDS.validate_python(request(results=["x" * 501])))[0] \
        .startswith("item.deliver.results.0: String should have at most 500 characters")
    assert errors_of(lambda: COMMANDS.validate_python(request(note="a\x00b")))[0] \
        .startswith("item.deliver.note: Value error, 不能含控制字符")
    assert errors_of(lambda: COMMANDS.validate_python(request(item_code="MA-01\nEP-02")))[0] \
        .startswith("item.deliver.item_code: Value error, 不能含换行或控制字符")
    assert errors_of(lambda: COMMANDS.validate_python(request(operator="张" * 201)))[0] \
        .startswith("item.deliver.operator: String should have at most 200 characters")
    COMMANDS.validate_python(request(note="第一行\n第二行\t（制表符）"))  # a note may have line breaks


def test_scores_and_facts_are_finite_numbers() -> None:
    assessment = {"type": "assessment.submit", "request_id": "r-2", "requested_at": NOW.isoformat(),
                  "occurred_at": NOW.isoformat(), "requested_by": "econ_dev_bureau", "project_code": "P-1",
                  "provider": "gov_service_bureau", "rater": "recruiting_unit", "year": 2026}
    for bad in ('NaN', 'Infinity', '-Infinity'):
        raw = json.dumps(assessment)[:-1] + f', "scores": {{"notice": {bad}}}}}'
        assert errors_of(lambda raw=raw: COMMANDS.validate_json(raw))[0].startswith("assessment.submit.scores.notice")
    project = json.loads(body(example(ALUMINIUM).project))
    for bad, why in ((float("inf"), "有限数"), (10**16, "数值型事实超出"), ("x" * 201, "超过上限 200"), ("a\nb", "换行")):
        found = errors_of(lambda bad=bad: Project.model_validate({**project, "facts": {"industry": bad}}))
        assert len(found) == 1 and found[0].startswith("facts.industry: Value error") and why in found[0], found
    many = {f"fact_{i}": i for i in range(51)}
    assert errors_of(lambda: Project.model_validate({**project, "facts": many})) == [
        "facts: Dictionary should have at most 50 items after validation, not more"]


def test_contact_fields_are_bounded_and_a_webhook_is_an_http_url() -> None:
    project = json.loads(body(example(ALUMINIUM).project))
    contact = project["enterprise"]["contact"]
    for field, value in (("webhook", "file:///etc/passwd"), ("webhook", "https://" + "h" * 2000),
                         ("phone", "1" * 51), ("email", "a@b.c\nBcc: x@y.z"), ("name", "王" * 201)):
        bad = {**project, "enterprise": {**project["enterprise"], "contact": {**contact, field: value}}}
        found = errors_of(lambda bad=bad: Project.model_validate(bad))
        assert len(found) == 1 and found[0].startswith(f"enterprise.contact.{field}: "), found


def largest_agreement() -> AgreementSigned:
    """Every field of the agreement at its largest, in four-byte characters where text may be."""
    base = example(ALUMINIUM)
    enterprise = base.project.enterprise.model_copy(update={
        "name": WIDE * 200,
        "contact": base.project.enterprise.contact.model_copy(update={
            "name": WIDE * 200, "phone": "1" * 50, "email": "a" * 250 + "@b.c", "webhook": "https://" + "h" * 1992})})
    facts: dict[str, Any] = {f"{i:02d}" + WIDE * 62: WIDE * 200 for i in range(50)}
    project = base.project.model_copy(update={"code": "P" * 64, "name": WIDE * 200, "enterprise": enterprise,
                                              "recruiting_unit": "econ_dev_bureau", "facts": facts})
    plan = tuple(PlannedItem(item=f"MA-0{1 + i % 3}" if i < 3 else f"{i:03d}" + WIDE * 61) for i in range(MAX_PLAN_LINES))
    return AgreementSigned.model_validate({**base.model_dump(), "agreement_id": "A" * 200, "project": project,
                                           "plan": plan})


def test_the_largest_agreement_the_models_allow_yields_events_every_consumer_reads(engine: RoutingEngine) -> None:
    agreement = largest_agreement()
    result = route_agreement(agreement, engine)
    out = outgoing_for(result)
    assert len(out) == 1 + MAX_PLAN_LINES and len(result.routed) == 3
    largest = max(len(body(o.message)) for o in out)
    assert largest <= MAX_EVENT_BYTES, f"an event of {largest} bytes would be parked by its consumers"
    ineligible = agreement.model_copy(update={"eligibility": agreement.eligibility.model_copy(
        update={"zero_errand_clause": False, "enterprise_consent": False})})
    [rejected] = outgoing_for(route_agreement(ineligible, engine))
    assert len(body(rejected.message)) <= MAX_EVENT_BYTES


def test_the_largest_delivery_a_request_may_ask_for_yields_an_event_the_consumers_read() -> None:
    results = tuple(f"{i:02d}" + WIDE * 498 for i in range(50))
    command = COMMANDS.validate_python(request(results=results, note=WIDE * 2000, operator=WIDE * 200,
                                               request_id="r" * 200, project_code="P" * 64, item_code="I" * 64))
    assert len(body(command)) <= MAX_REQUEST_BYTES
    event = ItemDelivered(event_id="e" * 200, occurred_at=NOW, recorded_at=NOW, project_code=command.project_code,
                          item_code=command.item_code, reported_by=command.requested_by, operator=command.operator,
                          request_id=command.request_id, results=command.results, note=command.note)
    assert len(body(event)) <= MAX_EVENT_BYTES
    EVENTS.validate_json(body(event))


def test_a_rules_rejected_event_lists_the_first_problems_cut_short() -> None:
    problems = tuple(f"routing.yaml:{i} " + WIDE * 1000 for i in range(500))
    shown = announced_problems(problems)
    assert len(shown) == 20 and shown[-1].startswith("……另有 481 个问题")
    event = RulesRejected(event_id="x", occurred_at=NOW, recorded_at=NOW, attempted_version="v2", active_version="v1",
                          directory="/" + "d" * 1999, problems=shown)
    assert len(body(event)) <= MAX_EVENT_BYTES
    assert announced_problems(("a", "b")) == ("a", "b")


def test_an_agreement_larger_than_the_router_reads_is_refused_naming_the_file(tmp_path: Path) -> None:
    source = (EXAMPLES / ALUMINIUM).read_text(encoding="utf-8")
    note = "含消防、人防设计审查" * 190  # 1,900 characters, under the note's own bound
    big = tmp_path / "big.yaml"
    big.write_text(source.replace("  - {item: MA-01}\n", "".join(f"  - {{item: MA-01, note: {note}}}\n"
                                                              for _ in range(60))), encoding="utf-8")
    agreement = load_agreement(big)  # every field is within its bounds ...
    assert len(body(to_event(agreement))) > MAX_AGREEMENT_BYTES
    with pytest.raises(RulesError) as caught:  # ... but the router would park it unread
        signed_event(big, agreement, MAX_AGREEMENT_BYTES)
    [problem] = caught.value.problems
    assert str(problem).startswith(f"{big} 协议消息有 ") and "超过路由服务的上限 262,144 字节" in str(problem)
    signed_event(EXAMPLES / ALUMINIUM, load_agreement(EXAMPLES / ALUMINIUM), MAX_AGREEMENT_BYTES)


def test_sign_refuses_a_far_future_date_naming_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "future.yaml"
    bad.write_text((EXAMPLES / ALUMINIUM).read_text(encoding="utf-8").replace("signed_on: 2026-03-18",
                                                                              "signed_on: 9999-12-31"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "services.cli", "sign", str(bad)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 1
    assert f"{bad}:4 signed_on: 日期须在 2000 至 2100 年之间，而不是 9999-12-31" in done.stderr


def test_sign_never_prints_the_brokers_password() -> None:
    """Port 1 refuses at once: the failure names the broker with its password masked."""
    env = {"ZEROERRAND_AMQP_URL": "amqp://svc:s3cr3t-pw@127.0.0.1:1/zeroerrand", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "services.cli", "sign", str(EXAMPLES / ALUMINIUM)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert done.returncode == 1
    assert "发布失败（RabbitMQ amqp://svc:***@127.0.0.1:1/zeroerrand）" in done.stderr
    assert "s3cr3t-pw" not in done.stderr + done.stdout


def test_urls_in_a_text_have_their_passwords_masked() -> None:
    assert mask_url("amqp://u:p@h:5672/v") == "amqp://u:***@h:5672/v"
    assert mask_urls_in("ConnectError: https://hook:pw@example.cn/x failed, 'amqp://a:b@c/' too") == \
        "ConnectError: https://hook:***@example.cn/x failed, 'amqp://a:***@c/' too"
    assert mask_urls_in("no url at 10:30 here") == "no url at 10:30 here"



def test_a_webhook_with_a_user_or_password_in_its_url_is_refused() -> None:
    from pydantic import TypeAdapter

    from services.common.domain import WebhookUrl

    adapter = TypeAdapter(WebhookUrl)
    assert adapter.validate_python("https://hooks.example.cn/zeroerrand?unit=1") == "https://hooks.example.cn/zeroerrand?unit=1"
    for url in ("http://user:secretpw@127.0.0.1:1/hook", "https://token@hooks.example.cn/x"):
        with pytest.raises(ValueError, match="不能含用户名或密码"):
            adapter.validate_python(url)


def test_a_parked_reason_cannot_forge_a_log_line_or_hide_what_is_wrong() -> None:
    from pydantic import ValidationError

    from services.common.consuming import invalid_summary, printable

    assert printable("a\nb\x1b[31mc\u202ed") == "a\\u000ab\\u001b[31mc\\u202ed"
    assert len(printable("x" * 10_000)) == 2000
    key = "x\n2026-11-28 00:00:00,000 INFO services.router.active_rules: rules version deadbeef0000 active" + "k" * 200_000
    body = {"type": "agreement.signed", "project": {"facts": {key: 1}}}
    with pytest.raises(ValidationError) as caught:
        AgreementSigned.model_validate(body)
    summary = invalid_summary(caught.value)
    assert "\n" not in summary and "\x1b" not in summary and len(summary) < 4000
    assert "agreement_id: Field required" in summary and "errors.pydantic.dev" not in summary


@pytest.mark.parametrize("text", ["北京\u2028上海", "名称\u202e反向", "a\x85b"])
def test_names_carry_no_line_separator_or_direction_override(text: str) -> None:
    from pydantic import TypeAdapter

    from services.common.domain import Name

    with pytest.raises(ValueError, match="控制字符"):
        TypeAdapter(Name).validate_python(text)
