"""The webhook channel: an HTTP POST of JSON, signed with HMAC-SHA256.

Receivers verify ``X-ZeroErrand-Signature: sha256=<hex>``, computed over
``"<X-ZeroErrand-Timestamp>.<raw body>"`` with the shared secret, and may refuse old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

import httpx

from services.common.settings import mask_urls_in
from services.notifier.channels import DeliveryError

SIGNATURE_HEADER = "X-ZeroErrand-Signature"
TIMESTAMP_HEADER = "X-ZeroErrand-Timestamp"
ID_HEADER = "X-ZeroErrand-Notification-Id"


class WebhookError(DeliveryError):
    """The receiver did not take the notification (status, timeout, refused connection)."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (also used by the tests' receiver)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def payload(notification: dict[str, Any]) -> bytes:
    keys = ("event_id", "event_type", "project_code", "item_code", "recipient", "recipient_name", "title", "body")
    data = {"notification_id": notification["_id"], **{k: notification.get(k) for k in keys},
            "created_at": notification["created_at"].isoformat()}
    return json.dumps(data, ensure_ascii=False).encode()


async def post(client: httpx.AsyncClient, notification: dict[str, Any], secret: bytes, now: datetime) -> None:
    body = payload(notification)
    timestamp = str(int(now.timestamp()))
    headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: signature(secret, timestamp, body), ID_HEADER: str(notification["_id"])}
    try:
        response = await client.post(str(notification["address"]), content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookError(mask_urls_in(f"{type(exc).__name__}: {exc}")) from exc
    if not 200 <= response.status_code < 300:
        raise WebhookError(f"HTTP {response.status_code}: {response.text[:200]}")
