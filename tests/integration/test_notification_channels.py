"""E-mail, SMS and the inbox's read state, on the real RabbitMQ and the embedded store: a local SMTP
server (aiosmtpd, with STARTTLS and a login) and a local HTTP SMS gateway receive what the notifier
sends for an agreement; a refusing server and a failing gateway leave the notifications failed with
the error after the retries; a channel with no server ends failed with the reason; an inbox
notice is unread until its recipient reads it, and nobody else can read or mark it."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import logging
import socket
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.common.access import access_link
from services.common.rule_files import load_rulebook
from services.common.settings import BrokerSettings, ConsoleSettings, NotifierSettings, RouterSettings
from services.common.storage import Store
from services.notifier.app import Notifier, create_notifier
from services.notifier.repository import NotifierRepository
from services.router.app import Router, create_router
from tests.conftest import ALUMINIUM, CONSULT_UNKNOWN, RULES, example
from tests.integration.test_notifier import Receiver, serving, stored
from tests.integration.test_router_rabbitmq import sign
from tests.tls_certs import Pki, make_pki

pytestmark = pytest.mark.integration

CONSOLE = ConsoleSettings(public_url="https://fuwu.hlxq.example.cn/", secret_key="console-key-of-the-channel-tests")
SMTP_USER, SMTP_PASSWORD = "zeroerrand", "smtp-password-1"
SENDER = "notice@zeroerrand.example.cn"
TOKEN = "sms-gateway-token-1"
UNIT_EMAIL, UNIT_PHONE = "spj@gov-service.example.cn", "13900000000"
ENTERPRISE = "enterprise:91150100MA0N8XK21Q"
ENTERPRISE_EMAIL, ENTERPRISE_PHONE = "wanght@lvneng-materials.example.cn", "13947100031"


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps every mail it accepts, or refuses every recipient."""

    refusing: bool = False
    mails: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)  # from, to, content, over TLS
    refused: int = 0
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refusing:
            self.refused += 1
            return f"550 5.7.1 <{address}>: relaying denied"  # a reply that names the address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content,
                           session.ssl is not None))
        return "250 OK: queued"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)

    def parsed(self) -> list[tuple[list[str], EmailMessage, bool]]:
        return [(to, email.message_from_bytes(content, policy=email.policy.default), tls)  # type: ignore[misc]
                for _, to, content, tls in self.mails]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox, pki: Pki | None = None) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 (its own thread); with ``pki``: STARTTLS and a login required."""
    options: dict[str, Any] = {}
    if pki is not None:
        import ssl
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(pki.server.cert), str(pki.server.key))
        options = {"tls_context": context, "require_starttls": True, "auth_required": True,
                   "authenticator": mailbox.authenticate}
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="zeroerrand-smtp-pki-") as directory:
        yield make_pki(Path(directory))


@pytest.fixture
async def gateway() -> AsyncIterator[Receiver]:
    """A real HTTP server standing for the SMS gateway."""
    async with serving(Receiver(), "/sms/send") as instance:
        yield instance


def with_unit_channels(rules: Path) -> Path:
    """政务服务局 is told by e-mail and SMS as well as in its inbox."""
    directory = rules / "directory.yaml"
    text = directory.read_text(encoding="utf-8")
    old = "    contact: 政务服务局帮办代办服务专班\n    channels: [inbox]"
    assert old in text
    directory.write_text(text.replace(old, "    contact: 政务服务局帮办代办服务专班\n    channels: [inbox, "
                                      f"{{email: {UNIT_EMAIL}}}, {{sms: \"{UNIT_PHONE}\"}}]"), encoding="utf-8")
    return rules


@contextlib.asynccontextmanager
async def running(amqp_url: str, rules: Path, store: Store, **notifier: Any) -> AsyncIterator[tuple[Router, Notifier]]:
    broker = BrokerSettings(amqp_url=amqp_url)
    router = create_router(RouterSettings(rules_dir=rules, watch_rules=False), broker)
    service = create_notifier(NotifierSettings(rules_dir=rules, poll_interval_s=0.05, backoff_base_s=0.05, **notifier),
                              broker, store=store, console_settings=CONSOLE)
    await service.app.start()
    await router.app.start()
    try:
        yield router, service
    finally:
        await router.app.stop()
        await service.app.stop()


async def test_the_enterprise_and_a_unit_get_their_notices_by_email_and_sms(
        amqp_url: str, rules_copy: Path, clean_queues: None, store: Store, amqp: Any, pki: Pki,
        gateway: Receiver) -> None:
    mailbox = Mailbox()
    agreement = example(ALUMINIUM, suffix="mail")
    code = agreement.project.code
    with smtp_server(mailbox, pki) as port:
        async with running(amqp_url, with_unit_channels(rules_copy), store, smtp_host="127.0.0.1", smtp_port=port,
                           smtp_security="starttls", smtp_ca_file=pki.ca, smtp_username=SMTP_USER,
                           smtp_password=SMTP_PASSWORD, smtp_from=f"零跑腿 <{SENDER}>",
                           sms_gateway_url=gateway.url, sms_gateway_token=TOKEN):
            await sign(amqp, agreement)
            # the enterprise's 24 notices (service started + 23 items) and 政务服务局's 2, each by e-mail and SMS
            sent = await stored(store, 2 * (24 + 2), project=code, status="delivered")
    assert Counter((d["recipient"], d["channel"]) for d in sent) == {
        (ENTERPRISE, "email"): 24, (ENTERPRISE, "sms"): 24, ("unit:gov_service_bureau", "email"): 2,
        ("unit:gov_service_bureau", "sms"): 2}
    assert {(d["attempts"], d["last_error"]) for d in sent} == {(1, None)}
    by_id = {d["_id"]: d for d in sent}

    # e-mail: over STARTTLS, logged in, from the configured sender, subject = title, Chinese text intact
    assert len(mailbox.mails) == 26 and all(tls for *_, tls in mailbox.mails) and set(mailbox.logins) == {SMTP_USER}
    assert {sender for sender, *_ in mailbox.mails} == {SENDER}
    mails = mailbox.parsed()
    assert Counter(to[0] for to, _, _ in mails) == {ENTERPRISE_EMAIL: 24, UNIT_EMAIL: 2}
    link = access_link(CONSOLE.public_url, CONSOLE.secret_key.get_secret_value(), code)
    notice = next(m for _, m, _ in mails if m["Subject"] == "一次性告知：建设工程规划许可证")
    text = notice.get_content()
    assert notice["To"] == ENTERPRISE_EMAIL and "内蒙古绿能新材料科技有限公司" in text
    for material in load_rulebook(RULES).catalog["EP-02"].materials:
        assert material in text
    assert f"在线查看办理进度、反映堵点：{link}" in text
    ident = notice["X-ZeroErrand-Notification-Id"]
    assert notice["Message-ID"] == f"<{ident}@zeroerrand.example.cn>"  # a retried send is recognisable
    assert by_id[ident]["channel"] == "email" and by_id[ident]["address"] == ENTERPRISE_EMAIL
    started = next(m for _, m, _ in mails if m["Subject"] == "您的项目已启动“企业零跑腿”服务")
    assert link in started.get_content()
    unit_mails = [m for to, m, _ in mails if to == [UNIT_EMAIL]]
    assert all(str(m["Subject"]).startswith("新分派审批事项：") for m in unit_mails)
    assert all("/e/open" not in m.get_content() for m in unit_mails)  # the enterprise's link is the enterprise's

    # SMS: the gateway's token, the number, the signed and shortened text with the link whole
    assert len(gateway.requests) == 26
    assert {headers["authorization"] for headers, _ in gateway.requests} == {f"Bearer {TOKEN}"}
    messages = [json.loads(body) for _, body in gateway.requests]
    assert Counter(m["to"] for m in messages) == {ENTERPRISE_PHONE: 24, UNIT_PHONE: 2}
    assert all(m["text"].startswith("【零跑腿】") and len(m["text"]) <= 240 for m in messages)
    assert all(by_id[m["id"]]["channel"] == "sms" for m in messages)
    short = next(m["text"] for m in messages if "一次性告知：建设工程规划许可证" in m["text"])
    assert short.endswith(link) and "…" in short  # the long list of materials is cut, the link kept
    assert all("/e/open" not in m["text"] for m in messages if m["to"] == UNIT_PHONE)


async def test_a_refusing_smtp_server_and_a_failing_gateway_leave_the_notices_failed_with_the_error(
        amqp_url: str, rules_copy: Path, clean_queues: None, store: Store, amqp: Any, gateway: Receiver,
        caplog: pytest.LogCaptureFixture) -> None:
    mailbox = Mailbox(refusing=True)
    gateway.status = 500
    agreement = example(CONSULT_UNKNOWN, suffix="refused")
    caplog.set_level(logging.INFO)
    with smtp_server(mailbox) as port:
        async with running(amqp_url, with_unit_channels(rules_copy), store, smtp_host="127.0.0.1", smtp_port=port,
                           smtp_security="none", sms_gateway_url=gateway.url, sms_gateway_token=TOKEN,
                           max_attempts=3):
            await sign(amqp, agreement)
            # 政务服务局's two 帮办代办 items: an e-mail and an SMS each, tried 3 times, then failed
            failed = await stored(store, 4, project=agreement.project.code, status="failed")
            await asyncio.sleep(0.5)
    assert {(d["channel"], d["attempts"]) for d in failed} == {("email", 3), ("sms", 3)} and len(failed) == 4
    mails = [d for d in failed if d["channel"] == "email"]
    assert all(d["last_error"].startswith(f"SMTP 127.0.0.1:{port}: SMTPRecipientsRefused") for d in mails)
    assert all("550" in d["last_error"] and "s***@gov-service.example.cn" in d["last_error"] for d in mails)
    assert all(d["last_error"].startswith("HTTP 500") for d in failed if d["channel"] == "sms")
    assert mailbox.refused == 6 and mailbox.mails == [] and len(gateway.requests) == 6  # nothing after the last
    # the addresses are personal data: neither the stored errors nor the log show them whole
    assert not any(UNIT_EMAIL in d["last_error"] for d in failed)
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail."))  # not the test server's
    assert "attempt 3/3 failed (final)" in ours and "139****0000" in ours and "s***@gov-service.example.cn" in ours
    assert UNIT_EMAIL not in ours and UNIT_PHONE not in ours


async def test_a_channel_without_a_server_ends_failed_with_the_reason(
        amqp_url: str, rules_copy: Path, clean_queues: None, store: Store, amqp: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    agreement = example(CONSULT_UNKNOWN, suffix="unconfigured")
    async with running(amqp_url, with_unit_channels(rules_copy), store, max_attempts=3):
        assert "通讯录使用了未配置的渠道" in caplog.text and "units.gov_service_bureau" in caplog.text
        await sign(amqp, agreement)
        failed = await stored(store, 4, project=agreement.project.code, status="failed")
    # stored failed with the reason, never tried
    reasons = {(d["channel"], d["attempts"], d["next_attempt_at"], d["last_error"].split(" / ")[0]) for d in failed}
    assert reasons == {("email", 0, None, "未配置 SMTP 服务器（ZEROERRAND_NOTIFIER_SMTP_HOST），邮件无法发送"),
                       ("sms", 0, None, "未配置短信网关（ZEROERRAND_NOTIFIER_SMS_GATEWAY_URL），短信无法发送")}
    # the log says it once per channel, the address masked
    said = [r.getMessage() for r in caplog.records if "stored failed, not sent" in r.getMessage()]
    assert len(said) == 2 and any("s***@gov-service.example.cn" in line for line in said)
    assert not any(UNIT_EMAIL in line or UNIT_PHONE in line for line in said)
    inbox = await NotifierRepository(store).find(project=agreement.project.code, recipient="unit:gov_service_bureau",
                                                 status="unread")
    assert len(inbox) == 2  # the inbox does not depend on them


async def test_an_inbox_notice_is_unread_until_its_recipient_reads_it(
        amqp_url: str, rules_copy: Path, clean_queues: None, store: Store, amqp: Any) -> None:
    agreement = example(CONSULT_UNKNOWN, suffix="inbox")
    code = agreement.project.code
    enterprise = f"enterprise:{agreement.project.enterprise.credit_code}"
    async with running(amqp_url, rules_copy, store):
        await sign(amqp, agreement)
        await stored(store, 17, project=code)
    repository = NotifierRepository(store)
    inbox = await repository.inbox(enterprise, project=code)
    assert len(inbox) == 7 and {d["status"] for d in inbox} == {"unread"}  # service started + 6 items
    assert [d["created_at"] for d in inbox] == sorted((d["created_at"] for d in inbox), reverse=True)
    assert await repository.unread_count(enterprise) == 7
    first = inbox[0]
    # another recipient can neither open nor mark it
    other = "unit:econ_dev_bureau"
    assert await repository.notice(first["_id"], other) is None
    assert not await repository.mark_read(first["_id"], other, datetime.now(UTC))
    assert not await repository.mark_read("no-such-notice", enterprise, datetime.now(UTC))
    assert (await repository.notice(first["_id"], enterprise) or {})["status"] == "unread"
    # its recipient reads it: delivered, with the time it was read; reading again changes nothing
    read_at = datetime(2026, 3, 19, 8, 30, tzinfo=UTC)
    assert await repository.mark_read(first["_id"], enterprise, read_at)
    assert await repository.mark_read(first["_id"], enterprise, datetime(2026, 3, 20, tzinfo=UTC))
    opened = await repository.notice(first["_id"], enterprise)
    assert opened is not None and (opened["status"], opened["read_at"], opened["delivered_at"]) == \
        ("delivered", read_at, read_at)
    assert await repository.unread_count(enterprise) == 6
    unread = await repository.inbox(enterprise, unread_only=True)
    assert len(unread) == 6 and first["_id"] not in {d["_id"] for d in unread}
    assert await repository.inbox(enterprise, project="HLXQ-ELSEWHERE") == []
    assert len(await repository.inbox(enterprise, project=code, limit=5)) == 5
    # the unit's inbox holds the unit's notices only
    assert {d["recipient"] for d in await repository.inbox(other, project=code)} == {other}
