"""Wiring of the router service: broker, subscriber, rule watcher. No connection at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from faststream import AckPolicy, FastStream
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from pydantic import Discriminator, Tag, TypeAdapter, ValidationError
from watchfiles import awatch

from services.common.bus import BrokerPublisher, Publisher, event_out, make_broker
from services.common.connection import connection_lost
from services.common.consuming import (
    SHUTDOWN_GRACE_S,
    Inflight,
    ack,
    invalid_summary,
    keep_message,
    park,
    park_if_too_large,
    retry_or_park,
)
from services.common.logs import bind_subject
from services.common.messages import AgreementAmended, AgreementSigned, RulesActivated, RulesRejected
from services.common.operations import Watched
from services.common.settings import BrokerSettings, RouterSettings, RuntimeSettings, SettingsError, check_broker_user
from services.common.topology import AGREEMENTS, ROUTER_QUEUE, declare_topology
from services.router.active_rules import ActiveRules
from services.router.handlers import handle_agreement
from services.router.registry import AgreementRegistry, MemoryAgreementRegistry, MongoAgreementRegistry
from services.router.versions import RulesArchive, StoreOpener

log = logging.getLogger(__name__)


def _agreement_kind(value: Any) -> str:
    """An ``agreement.amended`` says so; anything else is read as ``agreement.signed`` (whose type
    may be left out), as before amendments existed."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "agreement.amended" if kind == "agreement.amended" else "agreement.signed"


AGREEMENT = TypeAdapter[AgreementSigned | AgreementAmended](Annotated[
    Annotated[AgreementSigned, Tag("agreement.signed")] | Annotated[AgreementAmended, Tag("agreement.amended")],
    Discriminator(_agreement_kind)])


@dataclass
class Router:
    """The router service: one FastStream app, its rules, its watcher."""

    settings: RouterSettings
    broker: RabbitBroker
    app: FastStream
    rules: ActiveRules
    publisher: Publisher
    initial_event: RulesActivated | RulesRejected | None = None
    _watcher: asyncio.Task[None] | None = field(default=None)
    inflight: Inflight = field(default_factory=Inflight)
    archive: RulesArchive | None = None  # each activated version's files, to the store (versions.py)
    registry: AgreementRegistry = field(default_factory=MemoryAgreementRegistry)  # registry.py

    def watched(self) -> Watched:
        return Watched("router", self.broker, (ROUTER_QUEUE.name,))

    async def drain(self) -> None:
        await self.inflight.drain()

    async def apply_rules_change(self) -> None:
        """Tries the rule files on disk and announces the outcome on ``zeroerrand.events``."""
        event = await self.rules.reload()
        if event is not None:
            await self.publisher.publish_all([event_out(event)])
        self._archive(event)

    def _archive(self, event: RulesActivated | RulesRejected | None) -> None:
        if isinstance(event, RulesActivated) and self.archive is not None:
            self.archive.add(event, self.rules.contents)

    async def _watch(self) -> None:
        async for _changes in awatch(self.settings.rules_dir, debounce=self.settings.reload_debounce_ms,
                                     step=50, recursive=False):
            try:
                await self.apply_rules_change()
            except Exception:  # the watcher must outlive a failed announcement
                log.exception("applying a rules change failed; the active rules are unchanged")


def _open_archive_store() -> StoreOpener:
    from services.common.settings import StoreSettings
    from services.common.storage import open_store
    from services.router.versions import COLLECTIONS

    return lambda: open_store(StoreSettings(), COLLECTIONS, watch=False)


def _open_registry_store() -> StoreOpener:
    from services.common.settings import StoreSettings
    from services.common.storage import open_store
    from services.router.registry import COLLECTIONS

    return lambda: open_store(StoreSettings(), COLLECTIONS, watch=False)


def create_router(settings: RouterSettings | None = None, broker_settings: BrokerSettings | None = None,
                  publisher: Publisher | None = None, runtime: RuntimeSettings | None = None,
                  archive_store: StoreOpener | None = None, registry: AgreementRegistry | None = None) -> Router:
    """Wires the router; ``publisher`` replaces the real one (``BrokerPublisher``) in handler tests;
    ``archive_store`` opens the store the rules versions are archived in (default: the services');
    ``registry`` keeps the agreements taken (default: ``settings.agreement_registry``).
    ``SettingsError`` for RabbitMQ's guest user outside development."""
    settings = settings or RouterSettings()
    broker_settings = broker_settings or BrokerSettings()
    runtime = runtime or RuntimeSettings.load()
    check_broker_user(broker_settings, runtime, "router")
    if settings.agreement_registry == "memory" and registry is None and not runtime.development:
        raise SettingsError(
            "路由服务未启动：ZEROERRAND_ROUTER_AGREEMENT_REGISTRY=memory 只把已受理的协议记在本进程内（重启即忘、"
            "多个路由服务互不知晓），同一项目的第二份协议、重复使用的协议编号就不能被识别；生产环境必须用 store "
            "（默认）。 / the router refused to start: an agreement registry in memory is for tests only "
            "(ZEROERRAND_ENVIRONMENT=development); unset ZEROERRAND_ROUTER_AGREEMENT_REGISTRY")
    # no dependency injection (see consuming.keep_message): FastDepends resolved the handler's one
    # parameter in a worker thread, a window in which a lost connection cancelled the delivery's
    # task, which FastStream logs as an ERROR
    broker = make_broker(broker_settings, name="router", prefetch=settings.prefetch, apply_types=False)
    rules = ActiveRules(settings.rules_dir, timeout_s=settings.check_timeout_s,
                        memory_bytes=settings.check_memory_mb * 2**20)
    publisher = publisher or BrokerPublisher(broker)
    if registry is None:
        registry = (MemoryAgreementRegistry() if settings.agreement_registry == "memory"
                    else MongoAgreementRegistry(_open_registry_store()))
    router = Router(settings=settings, broker=broker, app=FastStream(broker), rules=rules, publisher=publisher,
                    registry=registry)
    if settings.archive_rules:
        router.archive = RulesArchive(archive_store or _open_archive_store(), retry_s=settings.archive_retry_s)

    subscriber = broker.subscriber(ROUTER_QUEUE, AGREEMENTS, ack_policy=AckPolicy.MANUAL, decoder=keep_message,
                                   title="agreement.signed / agreement.amended",
                                   description="Routes every planned item of a signed agreement, and the lines a "
                                               "补充协议 adds.")

    @subscriber
    async def on_agreement_signed(message):  # type: ignore[no-untyped-def]  # no annotation: nothing for FastDepends to do
        router.inflight.start(route_one(message))

    async def route_one(message: RabbitMessage) -> None:
        raw = message.raw_message
        if await park_if_too_large(broker, ROUTER_QUEUE, raw, message.body, settings.max_agreement_bytes):
            await ack(message)
            return
        try:
            agreement = AGREEMENT.validate_json(message.body)
        except ValidationError as exc:
            await park(broker, ROUTER_QUEUE, raw, kind="invalid_message",
                       reason=f"agreement.signed / agreement.amended 消息格式无效 / invalid message: {invalid_summary(exc)}")
            await ack(message)
            return
        with bind_subject(agreement):  # its log lines carry the project code
            try:
                await handle_agreement(agreement, rules, publisher, router.registry)
            except Exception as exc:
                if connection_lost(exc):  # the connection logs it once; the agreement comes again
                    log.debug("agreement %s: routing interrupted by the lost connection: %r", agreement.agreement_id,
                              exc)
                else:
                    log.exception("agreement %s: routing failed", agreement.agreement_id)
                await retry_or_park(broker, ROUTER_QUEUE, message, exc)
                return
            await ack(message)

    @router.app.on_startup
    async def load_rules() -> None:
        # the first load: a bad rule set stops the start, with every problem
        event = await rules.reload(timeout_s=settings.start_check_timeout_s)
        if isinstance(event, RulesRejected) or rules.version is None:
            problems = "\n".join(event.problems) if isinstance(event, RulesRejected) else ""
            raise SystemExit(f"规则文件有错误，路由服务未启动 / rules invalid, router not started:\n{problems}")
        router.initial_event = event
        await broker.connect()
        await declare_topology(broker)  # before consuming: parking needs the dead-letter queues

    @router.app.after_startup
    async def announce_and_watch() -> None:
        if router.initial_event is not None:
            await publisher.publish_all([event_out(router.initial_event)])
        if router.archive is not None:
            router._archive(router.initial_event)
            router.archive.start()
        if settings.watch_rules:
            router._watcher = asyncio.create_task(router._watch(), name="rules-watcher")

    @router.app.on_shutdown
    async def stop_consuming_and_finish() -> None:
        await subscriber.stop()  # no new deliveries; those in flight finish and are acked
        await router.inflight.drain(SHUTDOWN_GRACE_S)  # or, unfinished, go back to the queue
        if router._watcher is not None:
            router._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await router._watcher
        if router.archive is not None:
            await router.archive.stop()
        await router.registry.close()  # its store too: a store left open outlives the process's other users

    return router
