"""Agreement files: what the investment-promotion system or an operator hands to ``zeroerrand sign``.

The format is ``AgreementSigned`` without the envelope (the CLI adds ``event_id`` and the times);
see ``examples/agreements/README.md``. Errors name the file and the line.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import Field

from services.common.messages import AgreementSigned, Eligibility, Message, PlannedItem, Project, stable_id
from services.common.rule_files import read_located, validate_located


class AgreementFile(Message):
    agreement_id: str = Field(min_length=1)
    signed_on: date
    project: Project
    eligibility: Eligibility
    plan: tuple[PlannedItem, ...] = Field(min_length=1)


def load_agreement(path: str | Path) -> AgreementFile:
    source, _raw = read_located(Path(path))
    return validate_located(source, AgreementFile, "plan", "审批策划")


def to_event(agreement: AgreementFile, now: datetime | None = None) -> AgreementSigned:
    """The ``agreement.signed`` event for a file; the same agreement always gets the same id."""
    now = now or datetime.now(UTC)
    return AgreementSigned(
        event_id=stable_id(agreement.agreement_id, "agreement.signed"),
        occurred_at=now, recorded_at=now, **agreement.model_dump(),
    )
