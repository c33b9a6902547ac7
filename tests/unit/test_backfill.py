"""A back-filled agreement (补录): a past agreement entered afterwards with the reports that followed it.

Its items count as routed on the signing day, so the ledger accepts reports dated from then on and
its clocks start then; an agreement that is merely entered late is routed, and clocked, as of now.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.bus import Outgoing
from services.common.domain import NEW_AREA_TIME
from services.common.messages import ContactEnterprise, ItemRouted, item_routed
from services.evaluation.ledger import Applied, ItemState, Outcome, Refused, decide, local_day, new_item
from services.router.routing import route_agreement
from services.router.rule_engine import RoutingEngine
from tests.conftest import ALUMINIUM, EXAMPLES, example
from tests.unit.ledger_kit import UNIT_NAMES

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SIGNED = date(2026, 3, 18)  # the aluminium example's signing day


def _clock() -> datetime:
    return NOW


def test_a_backfilled_agreement_counts_as_routed_on_its_signing_day(engine: RoutingEngine) -> None:
    agreement = example(ALUMINIUM).model_copy(update={"backfill": True})
    result = route_agreement(agreement, engine, clock=_clock)
    start = datetime(2026, 3, 18, tzinfo=NEW_AREA_TIME)
    assert result.started is not None and result.started.occurred_at == start
    assert result.started.recorded_at == NOW
    for routed in result.routed:
        assert routed.item.backfilled_from == SIGNED
        assert routed.occurred_at == start and routed.recorded_at == NOW == routed.item.decision.decided_at
        # the message on the wire says the same: its consumers derive the event from the item alone
        assert item_routed(routed.item) == routed
        assert new_item(routed).routed_on == SIGNED


def test_an_agreement_entered_late_without_backfill_is_routed_as_of_now(engine: RoutingEngine) -> None:
    result = route_agreement(example(ALUMINIUM), engine, clock=_clock)
    assert result.started is not None and result.started.occurred_at == NOW
    for routed in result.routed:
        assert routed.item.backfilled_from is None and routed.occurred_at == NOW
        assert new_item(routed).routed_on == local_day(NOW)


def test_a_backfilled_agreement_signed_today_or_later_is_routed_as_of_now(engine: RoutingEngine) -> None:
    for signed in (local_day(NOW), local_day(NOW) + timedelta(days=3)):
        agreement = example(ALUMINIUM).model_copy(update={"backfill": True, "signed_on": signed})
        result = route_agreement(agreement, engine, clock=_clock)
        assert {r.occurred_at for r in result.routed} == {NOW}


def test_the_ledger_takes_back_dated_reports_after_the_signing_day_only_for_a_backfilled_item(engine: RoutingEngine) -> None:
    def contact(routed: ItemRouted, day: date) -> Outcome:
        item = new_item(routed).model_copy(update={"state": ItemState.READY, "ready_on": new_item(routed).routed_on})
        command = ContactEnterprise(request_id=f"r-{day}", requested_at=NOW, project_code=item.project_code,
                                    item_code=item.item_code, requested_by=item.responsible_unit,
                                    occurred_at=datetime(day.year, day.month, day.day, 10, tzinfo=NEW_AREA_TIME))
        return decide(item, command, NOW, UNIT_NAMES, {})

    backfilled = route_agreement(example(ALUMINIUM).model_copy(update={"backfill": True}), engine, clock=_clock)
    late = route_agreement(example(ALUMINIUM), engine, clock=_clock)
    assert isinstance(contact(backfilled.routed[0], date(2026, 3, 19)), Applied)
    refused = contact(late.routed[0], date(2026, 3, 19))
    assert isinstance(refused, Refused) and "早于该事项上一次记录的日期" in refused.reason
    assert isinstance(contact(backfilled.routed[0], date(2026, 3, 17)), Refused)  # before the signing day


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Outgoing]:
    """What ``zeroerrand sign`` publishes, caught instead of sent."""
    from services.common import bus

    caught: list[Outgoing] = []

    async def capture(outgoing: list[Outgoing]) -> None:
        caught.extend(outgoing)

    monkeypatch.setattr(bus, "publish_once", capture)
    return caught


def test_sign_backfill_publishes_a_backfilled_agreement(sent: list[Outgoing]) -> None:
    plain = CliRunner().invoke(app, ["sign", "--wait", "0", str(EXAMPLES / ALUMINIUM)])
    backfilled = CliRunner().invoke(app, ["sign", "--wait", "0", "--backfill", str(EXAMPLES / ALUMINIUM)])
    assert plain.exit_code == 0 and backfilled.exit_code == 0, plain.output + backfilled.output
    assert [o.message.backfill for o in sent] == [False, True]  # type: ignore[attr-defined]
    assert "补录，事项自签约日 2026-03-18 起算" in backfilled.output and "补录" not in plain.output


def test_sign_backfill_refuses_an_agreement_not_signed_before_today(sent: list[Outgoing], tmp_path: Path) -> None:
    future = tmp_path / "future.yaml"
    text = (EXAMPLES / ALUMINIUM).read_text(encoding="utf-8")
    future.write_text(text.replace("signed_on: 2026-03-18", "signed_on: 2099-06-01"), encoding="utf-8")
    refused = CliRunner().invoke(app, ["sign", "--wait", "0", "--backfill", str(future)])
    assert refused.exit_code == 1 and "签约日期 2099-06-01 不早于今天" in refused.output and not sent
    signed_ahead = CliRunner().invoke(app, ["sign", "--wait", "0", str(future)])
    assert signed_ahead.exit_code == 0 and len(sent) == 1  # signing ahead is not 补录
