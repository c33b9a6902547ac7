"""The SMS channel: a POST of JSON to an HTTP gateway, which sends the text message.

``{"id": notification id, "to": "13900000000", "text": "【零跑腿】title：body"}`` with
``Authorization: Bearer <token>``; a 2xx answer means the gateway accepted it. The ``id`` is the
same for every attempt of one notification, so a gateway can drop a repeat. A long body is cut
to ``MAX_CHARS`` characters, keeping the link at its end (the console's) whole.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from services.common.settings import NotifierSettings, mask_url, mask_urls_in
from services.notifier.channels import DeliveryError, NotConfigured, masked_in

SIGNATURE = "【零跑腿】"
MAX_CHARS = 240  # about four segments of a long SMS (67 Chinese characters each)
ELLIPSIS = "…"
_LINK = re.compile(r"https?://\S+")
NOT_CONFIGURED = ("未配置短信网关（ZEROERRAND_NOTIFIER_SMS_GATEWAY_URL），短信无法发送 "
                  "/ no SMS gateway configured (ZEROERRAND_NOTIFIER_SMS_GATEWAY_URL)")


def text_of(title: str, body: str, limit: int = MAX_CHARS) -> str:
    """``【零跑腿】title：body`` on one line, at most ``limit`` characters: a longer text is cut
    (ending in …) before its last link, which is kept whole."""
    text = " ".join(f"{SIGNATURE}{title}：{body}".split())
    if len(text) <= limit:
        return text
    links: list[str] = _LINK.findall(body)
    if links and len(links[-1]) <= limit // 2:
        link = links[-1]
        head = text[: text.rfind(link)].rstrip()
        if len(head) + len(link) <= limit:
            return head + link  # only what followed the link is left out
        return head[: limit - len(link) - len(ELLIPSIS)].rstrip() + ELLIPSIS + link
    return text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS


def payload(notification: dict[str, Any]) -> bytes:
    data = {"id": str(notification["_id"]), "to": str(notification["address"]),
            "text": text_of(str(notification["title"]), str(notification["body"]))}
    return json.dumps(data, ensure_ascii=False).encode()


async def send(client: httpx.AsyncClient, notification: dict[str, Any], settings: NotifierSettings) -> None:
    """Hands the message to the gateway; ``DeliveryError`` (the number masked) if it did not take
    it, ``NotConfigured`` if no gateway is set."""
    if not settings.sms_gateway_url:
        raise NotConfigured(NOT_CONFIGURED)
    phone = str(notification["address"])
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if settings.sms_gateway_token is not None:
        headers["Authorization"] = f"Bearer {settings.sms_gateway_token.get_secret_value()}"
    try:
        response = await client.post(settings.sms_gateway_url, content=payload(notification), headers=headers,
                                     timeout=settings.sms_timeout_s)
    except httpx.HTTPError as exc:
        reason = mask_urls_in(f"{type(exc).__name__}: {exc}")
        raise DeliveryError(masked_in(f"短信网关 {mask_url(settings.sms_gateway_url)}: {reason}", "sms", phone)) from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(masked_in(f"HTTP {response.status_code}: {response.text[:200]}", "sms", phone))
