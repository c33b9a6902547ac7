"""The e-mail channel: a plain-text UTF-8 mail over SMTP (aiosmtplib).

Subject is the notification's title, the text its body. The ``Message-ID`` is made from the
notification's id, so a mail sent again after a lost reply (the server took it, the answer did
not arrive) carries the same id and a mail system or reader can recognise the repeat.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import aiosmtplib

from services.common.settings import NotifierSettings
from services.notifier.channels import DeliveryError, NotConfigured, masked_in

ID_HEADER = "X-ZeroErrand-Notification-Id"
FOOTER = "\n\n——\n和林格尔新区“企业零跑腿”服务（本邮件由系统自动发送，请勿直接回复）"
NOT_CONFIGURED = ("未配置 SMTP 服务器（ZEROERRAND_NOTIFIER_SMTP_HOST），邮件无法发送 "
                  "/ no SMTP server configured (ZEROERRAND_NOTIFIER_SMTP_HOST)")


def message_id(notification_id: str, sender: str) -> str:
    """``<notification id@the sender's domain>``: the same for every attempt of one notification."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "zeroerrand.invalid"
    return f"<{notification_id}@{domain}>"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build(notification: dict[str, Any], sender: str, now: datetime) -> EmailMessage:
    """The mail of one notification, as it is sent."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = str(notification["address"])
    message["Subject"] = _one_line(str(notification["title"]))
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(str(notification["_id"]), sender)
    message[ID_HEADER] = str(notification["_id"])
    message.set_content(str(notification["body"]) + FOOTER, charset="utf-8")
    return message


async def send(notification: dict[str, Any], settings: NotifierSettings, now: datetime) -> None:
    """Hands the mail to the SMTP server; ``DeliveryError`` (the address masked) if it did not take it,
    ``NotConfigured`` if no server is set."""
    if not settings.smtp_host:
        raise NotConfigured(NOT_CONFIGURED)
    address = str(notification["address"])
    message = build(notification, settings.smtp_from, now)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        # the server's certificate and host name are verified (against smtp_ca_file if it is set)
        context = ssl.create_default_context(cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)
        async with asyncio.timeout(settings.smtp_timeout_s):
            await aiosmtplib.send(
                message, recipients=[address], hostname=settings.smtp_host, port=settings.smtp_port,
                username=settings.smtp_username or None, password=password,
                use_tls=settings.smtp_security == "tls", start_tls=settings.smtp_security == "starttls",
                tls_context=context if settings.smtp_security != "none" else None, timeout=settings.smtp_timeout_s)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
        reason = str(exc) or "no reply within the time limit"
        raise DeliveryError(masked_in(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {type(exc).__name__}: {reason}",
                                      "email", address)) from exc
