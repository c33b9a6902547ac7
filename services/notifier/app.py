"""Wiring of the notifier: events in, notifications stored, webhooks delivered. No I/O at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from faststream import FastStream
from faststream.rabbit import RabbitBroker

from services.common.bus import make_broker
from services.common.consuming import Inflight, consume_events
from services.common.messages import Event
from services.common.rule_files import RulesError, load_rulebook
from services.common.settings import BrokerSettings, NotifierSettings, StoreSettings
from services.common.storage import Store, open_store
from services.common.topology import NOTIFIER_QUEUE, declare_topology
from services.notifier.compose import Composer
from services.notifier.delivery import Deliverer
from services.notifier.group_commit import GroupCommit
from services.notifier.handlers import handle_event
from services.notifier.plan import load_plan
from services.notifier.repository import COLLECTIONS, NotifierRepository

log = logging.getLogger(__name__)


@dataclass
class Notifier:
    settings: NotifierSettings
    broker: RabbitBroker
    app: FastStream
    store: Store | None = None
    repository: NotifierRepository | None = None
    composer: Composer | None = None
    commit: GroupCommit | None = None
    deliverer: Deliverer | None = None
    inflight: Inflight = field(default_factory=Inflight)
    stop_delivery: asyncio.Event = field(default_factory=asyncio.Event)
    _delivery: asyncio.Task[None] | None = None

    async def drain(self) -> None:
        await self.inflight.drain()


def load_composer(settings: NotifierSettings) -> Composer:
    """The plan, the directory and the unit names; ``RulesError`` lists every problem."""
    book = load_rulebook(settings.rules_dir)
    return Composer(load_plan(settings.rules_dir, book.units), book.units, book.catalog)


def create_notifier(settings: NotifierSettings | None = None, broker_settings: BrokerSettings | None = None,
                    store_settings: StoreSettings | None = None, store: Store | None = None) -> Notifier:
    """Wires the notifier; pass ``store`` to share an open store (it is then not closed here)."""
    settings = settings or NotifierSettings()
    broker_settings = broker_settings or BrokerSettings()
    broker = make_broker(broker_settings.amqp_url, name="notifier", prefetch=settings.prefetch,
                         reconnect_interval_s=broker_settings.amqp_reconnect_interval_s,
                         apply_types=False)  # see consuming.keep_message
    notifier = Notifier(settings=settings, broker=broker, app=FastStream(broker), store=store)
    owns_store = store is None

    async def notify(event: Event, final_attempt: bool) -> None:
        assert notifier.repository is not None and notifier.composer is not None and notifier.commit is not None
        if await handle_event(event, notifier.repository, notifier.composer, notifier.commit) and notifier.deliverer:
            notifier.deliverer.wake()  # webhooks stored: deliver now rather than at the next round

    subscriber = consume_events(broker, NOTIFIER_QUEUE, notifier.inflight, notify,
                                description="Stores and delivers notifications.",
                                trusted_publishers=broker_settings.trusted())

    @notifier.app.on_startup
    async def start() -> None:
        try:
            notifier.composer = load_composer(settings)
        except RulesError as exc:
            raise SystemExit("通知计划或通讯录有错误，通知服务未启动 / notification plan invalid:\n"
                             + "\n".join(str(p) for p in exc.problems)) from exc
        if notifier.store is None:
            notifier.store = await open_store(store_settings, COLLECTIONS)
        else:
            await notifier.store.ensure(COLLECTIONS)
        notifier.repository = NotifierRepository(notifier.store)
        # two batches on their way at once: one fills while the other is written
        notifier.commit = GroupCommit(notifier.repository, max_batch=max(1, settings.prefetch // 2), max_flushes=2)
        await broker.connect()
        await declare_topology(broker)

    @notifier.app.after_startup
    async def start_delivery() -> None:
        assert notifier.repository is not None
        notifier.stop_delivery.clear()
        notifier.deliverer = Deliverer(notifier.repository, settings)
        notifier._delivery = asyncio.create_task(notifier.deliverer.run(notifier.stop_delivery), name="webhook-delivery")

    @notifier.app.on_shutdown
    async def stop() -> None:
        await subscriber.stop()
        await notifier.drain()
        notifier.stop_delivery.set()
        if notifier._delivery is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await notifier._delivery

    @notifier.app.after_shutdown
    async def close_store() -> None:
        if owns_store and notifier.store is not None:
            await notifier.store.close()
            notifier.store = None

    return notifier
