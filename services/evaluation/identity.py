"""Who may speak for which unit: a request's ``requested_by`` tied to the AMQP ``user_id``.

RabbitMQ refuses a message whose ``user_id`` is not the publishing connection's user, so the
``user_id`` a request arrives with says which RabbitMQ user sent it. A unit's own system connects as
its own user (``zeroerrand-unit.CODE``, docs/security.md), and ``ZEROERRAND_EVALUATION_UNIT_SYSTEMS``
(JSON ``{"user": "unit code"}``) says which unit each such user is: the ledger refuses a request in
which such a user speaks for another unit (another ``requested_by``, an enterprise's included).
Users not in the map (the web console, operators' CLI, the services) may speak for any unit. With
the map set, a request that carries no ``user_id`` is refused too: nothing ties it to a sender.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from pydantic_settings import BaseSettings, SettingsConfigDict


class UnitSystemsSettings(BaseSettings):
    """``ZEROERRAND_EVALUATION_UNIT_SYSTEMS``: ``{RabbitMQ user: unit code}`` of the units' own systems."""

    model_config = SettingsConfigDict(env_prefix="ZEROERRAND_EVALUATION_")

    unit_systems: dict[str, str] = {}


class Publisher(enum.Enum):
    NOT_GIVEN = "not given"  # the consumer did not pass the message's user_id: nothing to check


NOT_GIVEN = Publisher.NOT_GIVEN


def unit_systems() -> dict[str, str]:
    return dict(UnitSystemsSettings().unit_systems)


def refusal(publisher: str | Publisher | None, requested_by: str, systems: Mapping[str, str]) -> str | None:
    """Why the request is refused (Chinese, for the refusal event), or None if the sender may send it."""
    if publisher is NOT_GIVEN or not systems:
        return None
    if publisher is None:
        return ("请求没有 AMQP user_id，无法确认发送方；单位系统须以本单位的 RabbitMQ 用户发布并设置 user_id"
                " / request without user_id")
    unit = systems.get(publisher)
    if unit is None or unit == requested_by:
        return None
    return (f"RabbitMQ 用户 {publisher} 是单位 {unit} 的系统，只能以本单位名义提交请求，"
            f"不能代表 {requested_by} / user {publisher} speaks for unit {unit} only")
