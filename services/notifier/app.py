"""Wiring of the notifier: events in, notifications stored, webhooks delivered. No I/O at import."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from faststream import FastStream
from faststream.rabbit import RabbitBroker

from services.common.bus import make_broker
from services.common.consuming import BACKGROUND_GRACE_S, SHUTDOWN_GRACE_S, Inflight, consume_events, stop_background
from services.common.messages import Event
from services.common.operations import Watched
from services.common.rule_files import load_rulebook
from services.common.settings import (
    DEVELOPMENT_WEBHOOK_SECRET,
    BrokerSettings,
    ConsoleSettings,
    NotifierSettings,
    RuntimeSettings,
    SettingsError,
    StoreSettings,
    check_broker_user,
    check_console_key,
    mask_url,
)
from services.common.storage import Store, open_store
from services.common.topology import NOTIFIER_QUEUE, declare_topology
from services.common.yaml_files import RulesError
from services.notifier import mail, sms
from services.notifier.channels import mask_address
from services.notifier.compose import Composer
from services.notifier.delivery import Deliverer
from services.notifier.group_commit import GroupCommit
from services.notifier.handlers import handle_event
from services.notifier.plan import Email, NotificationPlan, Sms, load_plan
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

    def watched(self) -> Watched:
        return Watched("notifier", self.broker, (NOTIFIER_QUEUE.name,), lambda: self.store)


def unavailable_channels(settings: NotifierSettings) -> dict[str, str]:
    """The external channels without a server configured, with the reason their notifications fail."""
    found = {}
    if not settings.smtp_host:
        found["email"] = mail.NOT_CONFIGURED
    if not settings.sms_gateway_url:
        found["sms"] = sms.NOT_CONFIGURED
    return found


def load_composer(settings: NotifierSettings, console: ConsoleSettings | None = None) -> Composer:
    """The plan, the directory and the unit names; ``RulesError`` lists every problem. ``console``
    makes the enterprise's links (default: ``ConsoleSettings()``)."""
    book = load_rulebook(settings.rules_dir)
    return Composer(load_plan(settings.rules_dir, book.units), book.units, book.catalog, console,
                    unavailable_channels(settings), project_facts=book.project_facts)


def unconfigured_channels(plan: NotificationPlan, settings: NotifierSettings) -> dict[str, list[str]]:
    """The channels the directory uses that have no server configured, with who uses them
    (``{"email": ["units.gov_service_bureau"]}``): their notifications will end failed."""
    missing = {channel: True for channel in unavailable_channels(settings)}
    found: dict[str, list[str]] = {}
    entries = [(f"units.{code}", c.channels) for code, c in plan.directory.units.items()]
    entries += [(f"roles.{name}", c.channels) for name, c in plan.directory.roles.items()]
    entries.append(("default_channels", plan.directory.default_channels))
    for who, specs in entries:
        for spec in specs:
            channel = "email" if isinstance(spec, Email) else "sms" if isinstance(spec, Sms) else None
            if channel and missing.get(channel) and who not in found.setdefault(channel, []):
                found[channel].append(who)
    return {channel: who for channel, who in found.items() if who}


def warn_unconfigured(plan: NotificationPlan, settings: NotifierSettings) -> None:
    """One WARNING at start if the directory uses e-mail or SMS without its server configured; and
    says where the configured ones go (addresses masked)."""
    unconfigured = unconfigured_channels(plan, settings)
    if unconfigured:
        what = {"email": "电子邮件（未设置 ZEROERRAND_NOTIFIER_SMTP_HOST）",
                "sms": "短信（未设置 ZEROERRAND_NOTIFIER_SMS_GATEWAY_URL）"}
        log.warning("通讯录使用了未配置的渠道，这些通知将记为投递失败 / the directory uses channels that are not "
                    "configured, their notifications will fail: %s",
                    "；".join(f"{what[c]}：{'、'.join(who)}" for c, who in unconfigured.items()))
    if settings.smtp_host:
        log.info("e-mail notifications go to SMTP %s:%d (%s) from %s", settings.smtp_host, settings.smtp_port,
                 settings.smtp_security, mask_address("email", settings.smtp_from))
        if settings.smtp_security == "none" and settings.smtp_password is not None:
            log.warning("ZEROERRAND_NOTIFIER_SMTP_SECURITY=none: the SMTP password travels unencrypted")
    if settings.sms_gateway_url:
        log.info("SMS notifications go to the gateway %s", mask_url(settings.sms_gateway_url))


def check_webhook_secret(settings: NotifierSettings, runtime: RuntimeSettings) -> None:
    """Refuses (``SettingsError``) the development webhook secret, which everyone can read in
    this repository, unless ``ZEROERRAND_ENVIRONMENT`` is ``development``; and an empty one anywhere."""
    secret = settings.webhook_secret.get_secret_value()
    if not secret:
        raise SettingsError("通知服务未启动：ZEROERRAND_NOTIFIER_WEBHOOK_SECRET 为空，Webhook 签名将形同虚设；"
                            "请设为只有接收系统知道的长随机字符串 / notifier not started: "
                            "ZEROERRAND_NOTIFIER_WEBHOOK_SECRET is empty")
    if secret == DEVELOPMENT_WEBHOOK_SECRET and not runtime.development:
        raise SettingsError(
            f"通知服务未启动：Webhook 签名密钥仍是开发用默认值（{DEVELOPMENT_WEBHOOK_SECRET}，人人可见），"
            f"而运行环境是 {runtime.environment}。请设置 ZEROERRAND_NOTIFIER_WEBHOOK_SECRET 为只有接收系统知道的长随机字符串"
            "（如 python3 -c \"import secrets; print(secrets.token_hex(32))\"）；仅在开发机上可设 "
            "ZEROERRAND_ENVIRONMENT=development 使用默认值。 / notifier refused to start: the webhook secret is the "
            f"development default and ZEROERRAND_ENVIRONMENT is {runtime.environment}; set "
            "ZEROERRAND_NOTIFIER_WEBHOOK_SECRET (or ZEROERRAND_ENVIRONMENT=development on a developer's machine)")
    if secret == DEVELOPMENT_WEBHOOK_SECRET:
        log.warning("webhook signatures use the development secret (ZEROERRAND_ENVIRONMENT=development); "
                    "set ZEROERRAND_NOTIFIER_WEBHOOK_SECRET anywhere else")


def create_notifier(settings: NotifierSettings | None = None, broker_settings: BrokerSettings | None = None,
                    store_settings: StoreSettings | None = None, store: Store | None = None,
                    runtime: RuntimeSettings | None = None, console_settings: ConsoleSettings | None = None) -> Notifier:
    """Wires the notifier; pass ``store`` to share an open store (it is then not closed here).
    ``SettingsError`` if the webhook secret or the console key (``ZEROERRAND_CONSOLE_SECRET_KEY``,
    with which the enterprise's links in its notices are made) may not be used here, the
    broker's TLS settings cannot work, or it would connect as RabbitMQ's guest user outside development."""
    settings = settings or NotifierSettings()
    runtime = runtime or RuntimeSettings.load()
    console = console_settings or ConsoleSettings()
    check_webhook_secret(settings, runtime)
    check_console_key(console, runtime, "通知服务")
    broker_settings = broker_settings or BrokerSettings()
    check_broker_user(broker_settings, runtime, "notifier")
    broker = make_broker(broker_settings, name="notifier", prefetch=settings.prefetch,
                         apply_types=False)  # see consuming.keep_message
    notifier = Notifier(settings=settings, broker=broker, app=FastStream(broker), store=store)
    owns_store = store is None

    said_unavailable: set[str] = set()

    async def notify(event: Event, final_attempt: bool) -> None:
        assert notifier.repository is not None and notifier.composer is not None and notifier.commit is not None
        documents = await handle_event(event, notifier.repository, notifier.composer, notifier.commit)
        if notifier.deliverer and any(d["status"] == "pending" for d in documents):
            notifier.deliverer.wake()  # webhooks, e-mail or SMS stored: send now rather than at the next round
        for doc in documents:  # said once per channel (the start warned of the directory's)
            if doc["status"] == "failed" and doc["channel"] not in said_unavailable:
                said_unavailable.add(doc["channel"])
                log.warning("%s notifications are stored failed, not sent (first: %s to %s): %s", doc["channel"],
                            doc["_id"], mask_address(doc["channel"], doc["address"]), doc["last_error"])

    subscriber = consume_events(broker, NOTIFIER_QUEUE, notifier.inflight, notify,
                                description="Stores and delivers notifications.", max_bytes=settings.max_event_bytes,
                                trusted_publishers=broker_settings.trusted())

    @notifier.app.on_startup
    async def start() -> None:
        try:
            notifier.composer = load_composer(settings, console)
        except RulesError as exc:
            raise SystemExit("通知计划或通讯录有错误，通知服务未启动 / notification plan invalid:\n"
                             + "\n".join(str(p) for p in exc.problems)) from exc
        warn_unconfigured(notifier.composer.plan, settings)
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
        notifier._delivery = asyncio.create_task(notifier.deliverer.run(notifier.stop_delivery), name="notification-delivery")

    @notifier.app.on_shutdown
    async def stop() -> None:
        await subscriber.stop()
        notifier.stop_delivery.set()  # no new attempts to send; those under way may finish meanwhile
        await notifier.inflight.drain(SHUTDOWN_GRACE_S)
        # an attempt cut short keeps its lease and is tried again when the lease ends
        await stop_background(notifier._delivery, BACKGROUND_GRACE_S, "delivery attempts")

    @notifier.app.after_shutdown
    async def close_store() -> None:
        if owns_store and notifier.store is not None:
            await notifier.store.close()
            notifier.store = None

    return notifier
