"""Wiring of the evaluation service: the ledger follows the router's events, checks the requests of
units, enterprises and operators and publishes what it recorded; overdue clocks are swept."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from faststream import FastStream
from faststream.rabbit import RabbitBroker

from services.common.bus import BrokerPublisher, Publisher, connected_publisher, make_broker
from services.common.consuming import (
    BACKGROUND_GRACE_S,
    SHUTDOWN_GRACE_S,
    Inflight,
    consume_events,
    decode_command,
    stop_background,
)
from services.common.messages import Event, Message
from services.common.operations import Watched
from services.common.rule_files import load_rulebook
from services.common.settings import (
    BrokerSettings,
    EvaluationSettings,
    RuntimeSettings,
    StoreSettings,
    check_broker_user,
)
from services.common.storage import Store, open_store, store_session
from services.common.topology import EVALUATION_QUEUE, LEDGER_REQUESTS_QUEUE, REQUESTS, declare_topology
from services.evaluation.handlers import Ledger, handle, sweep
from services.evaluation.holiday_file import load_calendar
from services.evaluation.ledger import local_day
from services.evaluation.migrations import upgrade
from services.evaluation.repository import COLLECTIONS, MongoLedgerRepository
from services.evaluation.scoring import EvaluationConfig, load_config
from services.evaluation.working_days import WorkingCalendar

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    settings: EvaluationSettings
    broker: RabbitBroker
    app: FastStream
    store: Store | None = None
    ledger: Ledger | None = None
    calendar: WorkingCalendar | None = None  # None: rules/calendar.yaml of the rules directory, read at start
    inflight: Inflight = field(default_factory=Inflight)
    stop_sweeping: asyncio.Event = field(default_factory=asyncio.Event)
    _sweeper: asyncio.Task[None] | None = None

    def watched(self) -> Watched:
        return Watched("evaluation", self.broker, (EVALUATION_QUEUE.name, LEDGER_REQUESTS_QUEUE.name),
                       lambda: self.store)

    async def sweep_now(self, now: datetime | None = None) -> int:
        assert self.ledger is not None
        now = now or datetime.now(UTC)
        found = await sweep(self.ledger, local_day(now), now)
        return len(found)

    async def _sweep_forever(self) -> None:
        while not self.stop_sweeping.is_set():
            try:
                await self.sweep_now()
            except Exception:  # the next round tries again; nothing is lost, only late
                log.exception("overdue sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_sweeping.wait(), self.settings.sweep_interval_s)


def read_rules(rules_dir: Path) -> tuple[EvaluationConfig, dict[str, str]]:
    """``evaluation.yaml`` and the unit names of ``units.yaml``; ``RulesError`` lists every problem."""
    units = load_rulebook(rules_dir).units
    return load_config(rules_dir), {code: unit.name for code, unit in units.items()}


def ledger_on(store: Store, publisher: Publisher, rules: tuple[EvaluationConfig, dict[str, str]],
              calendar: WorkingCalendar | None = None) -> Ledger:
    """The ledger the handlers work with, on a store: for the service and for the CLI's sweep."""
    config, unit_names = rules
    return Ledger(MongoLedgerRepository(store), publisher, calendar or WorkingCalendar(), config, unit_names)


async def sweep_once(rules: tuple[EvaluationConfig, dict[str, str]], day: date, now: datetime,
                     calendar: WorkingCalendar | None = None) -> list[Event]:
    """One sweep of the ledger outside the service (the CLI's ``sweep``), on its own store session and
    broker connection: the overdue events it published."""
    async with store_session(collections=COLLECTIONS) as store, connected_publisher() as publisher:
        return await sweep(ledger_on(store, publisher, rules, calendar), day, now)


def create_evaluation(settings: EvaluationSettings | None = None, broker_settings: BrokerSettings | None = None,
                      store_settings: StoreSettings | None = None, store: Store | None = None,
                      runtime: RuntimeSettings | None = None) -> Evaluation:
    """Wires the evaluation service (ledger, sweep); ``SettingsError`` for RabbitMQ's guest user
    outside development."""
    settings = settings or EvaluationSettings()
    broker_settings = broker_settings or BrokerSettings()
    check_broker_user(broker_settings, runtime or RuntimeSettings.load(), "evaluation")
    broker = make_broker(broker_settings, name="evaluation", prefetch=settings.prefetch,
                         apply_types=False)  # see consuming.keep_message
    service = Evaluation(settings=settings, broker=broker, app=FastStream(broker), store=store)
    owns_store = store is None
    publisher = BrokerPublisher(broker)

    async def record(message: Message, final_attempt: bool) -> None:
        assert service.ledger is not None
        await handle(message, service.ledger, datetime.now(UTC), final_attempt)

    events = consume_events(broker, EVALUATION_QUEUE, service.inflight, record,
                            description="Keeps the ledger (台账) from the router's events.",
                            max_bytes=settings.max_event_bytes,
                            trusted_publishers=broker_settings.trusted())
    async def record_request(message: Message, final_attempt: bool, publisher: str | None) -> None:
        assert service.ledger is not None  # the validated AMQP user_id: whose system sent it
        await handle(message, service.ledger, datetime.now(UTC), final_attempt, publisher=publisher)

    requests = consume_events(broker, LEDGER_REQUESTS_QUEUE, service.inflight, record_request, exchange=REQUESTS,
                              pass_publisher=True,
                              decode=decode_command, max_bytes=settings.max_request_bytes,
                              description="Checks the units' requests against the ledger, then publishes the events.")

    @service.app.on_startup
    async def start() -> None:
        # the rules first: a broken evaluation.yaml or units.yaml stops the service with the reason
        rules = read_rules(settings.rules_dir)
        if service.calendar is None:  # a broken calendar.yaml stops it too
            service.calendar = load_calendar(settings.rules_dir)
        if service.store is None:
            service.store = await open_store(store_settings, COLLECTIONS)
        else:
            await service.store.ensure(COLLECTIONS)
        await upgrade(service.store)  # a ledger the first version wrote
        service.ledger = ledger_on(service.store, publisher, rules, service.calendar)
        await broker.connect()
        await declare_topology(broker)

    @service.app.after_startup
    async def start_sweeping() -> None:
        service.stop_sweeping.clear()
        if not settings.sweep:
            log.info("overdue sweep off (ZEROERRAND_EVALUATION_SWEEP=false)")
            return
        service._sweeper = asyncio.create_task(service._sweep_forever(), name="overdue-sweep")

    @service.app.on_shutdown
    async def stop() -> None:
        await events.stop()
        await requests.stop()
        service.stop_sweeping.set()
        await service.inflight.drain(SHUTDOWN_GRACE_S)
        # a sweep cut short is done again by the next start: it announces under stable ids
        await stop_background(service._sweeper, BACKGROUND_GRACE_S, "overdue sweep")

    @service.app.after_shutdown
    async def close_store() -> None:
        if owns_store and service.store is not None:
            await service.store.close()
            service.store = None

    return service
