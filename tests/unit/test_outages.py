"""Which failures are outages (the store or the broker unreachable, never the message's fault), and
how a delivery is held through one: retried in the process, given back only when the service stops."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from services.common import consuming, storage
from services.common.consuming import HeldAtStop, outage, through_outages
from services.evaluation.repository import UnknownSubject

# what FerretDB 1.24 answered while its PostgreSQL was killed (-9) under a stream of agreements
FERRETDB_PG_GONE = [
    "[msg_insert.go:168 handler.(*Handler).MsgInsert] write failed: write unix @->/tmp/zeroerrand-pg-x/.s.PGSQL.5432: "
    "write: broken pipe",
    "[msg_insert.go:168 handler.(*Handler).MsgInsert] failed to connect to `user=zeroerrand database=ferretdb`: "
    "/tmp/zeroerrand-pg-x/.s.PGSQL.5432 (/tmp/zeroerrand-pg-x): dial error: dial unix: connect: no such file or directory",
    "[msg_insert.go:168 handler.(*Handler).MsgInsert] FATAL: terminating connection due to unexpected postmaster exit "
    "(SQLSTATE 57P01)",
]


@pytest.mark.parametrize("text", FERRETDB_PG_GONE)
def test_ferretdb_losing_its_postgresql_is_a_store_outage(text: str) -> None:
    assert outage(OperationFailure(text, code=1, details={"ok": 0.0, "errmsg": text, "code": 1})) == "store"


@pytest.mark.parametrize("error", [
    AutoReconnect("/tmp/zeroerrand-db-x/ferretdb.sock: connection is already closed"),
    ServerSelectionTimeoutError("/tmp/zeroerrand-db-x/ferretdb.sock: [Errno 2] No such file or directory"),
    OperationFailure("interrupted at shutdown", code=11600),
    ConnectionRefusedError(111, "Connection refused"),
])
def test_lost_connections_and_shutdowns_are_store_outages(error: BaseException) -> None:
    assert outage(error) == "store"


def test_a_cause_is_looked_at_too() -> None:
    try:
        try:
            raise AutoReconnect("gone")
        except AutoReconnect as exc:
            raise RuntimeError("a batch failed") from exc
    except RuntimeError as wrapped:
        assert outage(wrapped) == "store"


def test_a_broker_nack_is_an_outage_and_a_returned_message_is_not() -> None:
    from aiormq.abc import DeliveredMessage
    from aiormq.exceptions import DeliveryError, PublishError
    from pamqp.commands import Basic

    assert outage(DeliveryError(None, Basic.Nack())) == "broker"
    returned = DeliveredMessage(delivery=Basic.Return(), header=None, body=b"", channel=None)  # type: ignore[arg-type]
    assert outage(PublishError(returned, Basic.Return())) is None


@pytest.mark.parametrize("error", [
    DuplicateKeyError("E11000 duplicate key"),
    OperationFailure("unknown operator: $foo", code=2),
    UnknownSubject("台账中没有项目 X"),
    ValueError("bad"),
])
def test_the_messages_own_failures_are_not_outages(error: BaseException) -> None:
    assert outage(error) is None


def test_once_the_store_is_given_up_every_failure_is_the_outages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "_store_lost", "the embedded store stopped")
    assert outage(ValueError("anything")) == "store"


def raw(channel_closed: bool = False) -> Any:
    return SimpleNamespace(message_id="m-1", headers={}, channel=SimpleNamespace(is_closed=channel_closed,
                                                                                  connection=SimpleNamespace(is_closed=False)))


async def test_a_delivery_is_held_through_an_outage_and_then_handled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consuming, "OUTAGE_FIRST_DELAY_S", 0.01)
    attempts = []

    async def attempt() -> None:
        attempts.append(1)
        if len(attempts) <= 8:  # more failures than the queue's delivery limit allows
            raise AutoReconnect("connection refused")

    assert await through_outages(attempt, raw(), "q", asyncio.Event()) is None
    assert len(attempts) == 9


async def test_a_content_failure_after_an_outage_is_returned_for_retry_or_park(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consuming, "OUTAGE_FIRST_DELAY_S", 0.01)
    errors: list[BaseException] = [AutoReconnect("gone"), UnknownSubject("no such project")]

    async def attempt() -> None:
        raise errors.pop(0)

    failed = await through_outages(attempt, raw(), "q", asyncio.Event())
    assert isinstance(failed, UnknownSubject)


async def test_a_held_delivery_gives_way_to_a_stop_at_once() -> None:
    stopping = asyncio.Event()
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise AutoReconnect("gone")
        await asyncio.sleep(30)  # a retry waiting on a store that is not there

    task = asyncio.create_task(through_outages(attempt, raw(), "q", stopping))
    await asyncio.sleep(0.7)
    stopping.set()
    with pytest.raises(HeldAtStop):
        await asyncio.wait_for(task, 1)
    assert consuming.OUTAGES.held == 0
