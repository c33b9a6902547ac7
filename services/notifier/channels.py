"""What every delivery channel shares: its errors, and addresses masked for logs and messages.

Channels: ``inbox`` (stored, read in the console), and the external ones the delivery loop sends
(``webhook``, ``email``, ``sms``). A phone number or an e-mail address is personal data: logs and
error texts show it masked (``139****0000``, ``w***@example.cn``), never whole.
"""

from __future__ import annotations

from services.common.settings import mask_url

INBOX = "inbox"
EXTERNAL_CHANNELS = ("webhook", "email", "sms")
CHANNEL_NAMES_ZH = {"inbox": "站内信", "webhook": "Webhook", "email": "电子邮件", "sms": "短信"}


class DeliveryError(RuntimeError):
    """The receiver (HTTP endpoint, SMTP server, SMS gateway) did not take the notification; tried again."""


class NotConfigured(DeliveryError):
    """The channel has no server configured: no attempt can succeed until one is, so it is final."""


def mask_phone(phone: str) -> str:
    """``13900000000`` -> ``139****0000``; a short number keeps its last two digits only."""
    digits = phone.strip()
    if len(digits) >= 8:
        return f"{digits[:3]}****{digits[-4:]}"
    return f"****{digits[-2:]}" if len(digits) > 2 else "****"


def mask_email(address: str) -> str:
    """``wanght@example.cn`` -> ``w***@example.cn``: the first letter and the domain."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_address(channel: str, address: str | None) -> str:
    """A notification's address as logs and error texts show it."""
    if not address:
        return ""
    if channel == "sms":
        return mask_phone(address)
    if channel == "email":
        return mask_email(address)
    if channel == "webhook":
        return mask_url(address)
    return address


def masked_in(text: str, channel: str, address: str | None) -> str:
    """``text`` (a server's reply, an exception) with every occurrence of the address masked."""
    if not address:
        return text
    return text.replace(address, mask_address(channel, address))
