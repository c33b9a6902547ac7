"""Agreement files: what the investment-promotion system or an operator hands to ``zeroerrand sign``.

The format is ``AgreementSigned`` without the envelope (the CLI adds ``event_id`` and the times);
see ``examples/agreements/README.md``. Errors name the file and the line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from services.common.domain import Day, Ident
from services.common.messages import (
    MAX_PLAN_LINES,
    AgreementAmended,
    AgreementSigned,
    Eligibility,
    Message,
    PlannedItem,
    Project,
    stable_id,
)
from services.common.yaml_files import Problem, RulesError, read_located, validate_located


class AgreementFile(Message):
    agreement_id: Ident
    signed_on: Day
    project: Project
    eligibility: Eligibility
    plan: tuple[PlannedItem, ...] = Field(min_length=1, max_length=MAX_PLAN_LINES)


def load_agreement(path: str | Path) -> AgreementFile:
    source, _raw = read_located(Path(path))
    return validate_located(source, AgreementFile, "plan", "审批策划")


def signed_event(path: str | Path, agreement: AgreementFile, max_bytes: int) -> AgreementSigned:
    """The event to publish for a loaded file, refused (``RulesError`` naming the file) if its body is
    larger than the router reads (``ZEROERRAND_ROUTER_MAX_AGREEMENT_BYTES``): it would be parked unread."""
    event = to_event(agreement)
    _fits(path, event, max_bytes)
    return event


def amended_event(path: str | Path, agreement: AgreementFile, max_bytes: int) -> AgreementAmended:
    """A 补充协议's ``agreement.amended`` (the file holds the whole plan as amended), bounded as above."""
    event = to_amendment(agreement)
    _fits(path, event, max_bytes)
    return event


def to_amendment(agreement: AgreementFile, now: datetime | None = None) -> AgreementAmended:
    """The ``agreement.amended`` event for a file; the same 补充协议 always gets the same id."""
    now = now or datetime.now(UTC)
    return AgreementAmended(event_id=stable_id(agreement.agreement_id, "agreement.amended"),
                            occurred_at=now, recorded_at=now, **agreement.model_dump())


def _fits(path: str | Path, event: AgreementSigned | AgreementAmended, max_bytes: int) -> None:
    size = len(event.model_dump_json().encode())
    if size > max_bytes:
        raise RulesError([Problem(str(path), None, None,
                                  f"协议消息有 {size:,} 字节，超过路由服务的上限 {max_bytes:,} 字节"
                                  "（ZEROERRAND_ROUTER_MAX_AGREEMENT_BYTES），不发布 / agreement too large")])


def to_event(agreement: AgreementFile, now: datetime | None = None) -> AgreementSigned:
    """The ``agreement.signed`` event for a file; the same agreement always gets the same id."""
    now = now or datetime.now(UTC)
    return AgreementSigned(
        event_id=stable_id(agreement.agreement_id, "agreement.signed"),
        occurred_at=now, recorded_at=now, **agreement.model_dump(),
    )
