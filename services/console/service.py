"""The console's resources and its life: the store, the broker it publishes requests on, the rules it
reads names and contacts from, and the HTTP server (uvicorn) it runs under ``up`` or ``console``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from faststream.rabbit import RabbitBroker

from services.common.bus import BrokerPublisher, make_broker, request_out
from services.common.messages import Command
from services.common.operations import Watched
from services.common.rule_files import RuleBook, load_rulebook
from services.common.settings import (
    BrokerSettings,
    ConsoleSettings,
    EvaluationSettings,
    RuntimeSettings,
    StoreSettings,
    check_broker_user,
    check_console_key,
)
from services.common.storage import Store, open_store
from services.common.topology import declare_topology
from services.console.accounts import COLLECTIONS as ACCOUNT_COLLECTIONS
from services.console.accounts import MANAGEMENT_COMMITTEE, MANAGEMENT_COMMITTEE_NAME, Accounts, Attempts
from services.evaluation.holiday_file import load_calendar
from services.evaluation.ledger import RequestOutcome
from services.evaluation.repository import COLLECTIONS as LEDGER_COLLECTIONS
from services.evaluation.repository import MongoLedgerRepository
from services.evaluation.scoring import EvaluationConfig, load_config
from services.evaluation.views import request_outcome
from services.evaluation.working_days import WorkingCalendar
from services.notifier.plan import load_plan
from services.notifier.repository import COLLECTIONS as NOTIFIER_COLLECTIONS
from services.notifier.repository import NotifierRepository

log = logging.getLogger(__name__)
COLLECTIONS = (*ACCOUNT_COLLECTIONS, *LEDGER_COLLECTIONS, *NOTIFIER_COLLECTIONS)


@dataclass
class Rules:
    """What the console reads from the rule files: unit names, contacts, the questionnaire."""

    directory: Path
    book: RuleBook
    config: EvaluationConfig
    contacts: Mapping[str, str]

    @classmethod
    def load(cls, directory: Path) -> Rules:
        book = load_rulebook(directory)
        plan = load_plan(directory, book.units)
        return cls(directory=directory, book=book, config=load_config(directory),
                   contacts={code: c.contact + (f"，电话 {c.phone}" if c.phone else "")
                             for code, c in plan.directory.units.items()})

    def unit_name(self, code: str) -> str:
        if code == MANAGEMENT_COMMITTEE:
            return MANAGEMENT_COMMITTEE_NAME
        unit = self.book.units.get(code)
        return unit.short_name if unit is not None else code


@dataclass
class Console:
    """Everything a page handler needs; one per process, shared by every request."""

    settings: ConsoleSettings
    broker_settings: BrokerSettings
    store_settings: StoreSettings | None
    rules: Rules
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)  # make_console: rules/calendar.yaml's
    store: Store | None = None
    broker: RabbitBroker | None = None
    publisher: BrokerPublisher | None = None
    accounts: Accounts | None = None
    attempts: Attempts | None = None
    ledger: MongoLedgerRepository | None = None
    notices: NotifierRepository | None = None
    owns_store: bool = True

    async def open(self) -> None:
        if self.store is None:
            self.store = await open_store(self.store_settings, COLLECTIONS)
        else:
            self.owns_store = False
            await self.store.ensure(COLLECTIONS)
        self.accounts = Accounts(self.store)
        self.attempts = Attempts(self.store, self.settings.max_attempts, self.settings.attempt_window_s)
        self.ledger = MongoLedgerRepository(self.store)
        self.notices = NotifierRepository(self.store)
        self.broker = make_broker(self.broker_settings, name="console")
        await self.broker.connect()
        await declare_topology(self.broker)
        self.publisher = BrokerPublisher(self.broker)

    async def close(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None
        if self.store is not None and self.owns_store:
            await self.store.close()
        self.store = None

    async def submit(self, model: type[Command], **fields: Any) -> tuple[Command, RequestOutcome | None]:
        """Publishes a request as the CLI does and waits a little for the ledger's answer (None: not yet)."""
        now = datetime.now(UTC)
        fields.setdefault("occurred_at", now)
        command = model(request_id=str(uuid.uuid4()), requested_at=now, **fields)
        assert self.publisher is not None and self.ledger is not None
        await self.publisher.publish_all([request_out(command)])
        return command, await request_outcome(self.ledger, command.request_id, self.settings.outcome_wait_s)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handlers: the process runner (``up``, ``console``)
    owns SIGINT and SIGTERM and stops every service, this one included."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ConsoleService:
    """The console as ``up`` and ``console`` run it: ``start`` opens the store and the broker and
    serves HTTP; ``stop`` ends the server (requests under way get a few seconds) and closes them."""

    def __init__(self, console: Console, app: Any) -> None:
        self.console, self.app = console, app
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    def watched(self) -> Watched:
        """Its store (its broker, which only publishes requests, is not watched)."""
        return Watched("console", None, (), lambda: self.console.store)

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.servers
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def start(self) -> None:
        await self.console.open()
        settings = self.console.settings
        config = uvicorn.Config(self.app, host=settings.host, port=settings.port, access_log=False, log_config=None,
                                server_header=False, timeout_graceful_shutdown=3, lifespan="off",
                                # the client address the attempt limits count by: behind a proxy, the
                                # one it forwards, but only from the proxies named in the settings
                                proxy_headers=settings.forwarded_allow_ips is not None,
                                forwarded_allow_ips=settings.forwarded_allow_ips or "")
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(), name="console-http")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises why it could not start
                raise SystemExit(f"服务台未能在 {settings.host}:{settings.port} 上启动（端口被占用？）")
            await asyncio.sleep(0.05)
        log.info("console listening on http://%s:%d", settings.host, self.port)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except TimeoutError:
                self._task.cancel()
        await self.console.close()


def make_console(settings: ConsoleSettings | None = None, broker_settings: BrokerSettings | None = None,
                 store_settings: StoreSettings | None = None, store: Store | None = None,
                 runtime: RuntimeSettings | None = None, rules_dir: Path | None = None) -> Console:
    """The console's resources (not yet opened); ``SettingsError`` for a key that may not be used here
    or RabbitMQ's guest user outside development, ``RulesError`` for rule files it cannot read."""
    settings = settings or ConsoleSettings()
    runtime = runtime or RuntimeSettings.load()
    check_console_key(settings, runtime, "服务台")
    broker_settings = broker_settings or BrokerSettings()
    check_broker_user(broker_settings, runtime, "console")
    rules = Rules.load(rules_dir or EvaluationSettings().rules_dir)
    return Console(settings=settings, broker_settings=broker_settings, store_settings=store_settings, rules=rules,
                   calendar=load_calendar(rules.directory), store=store)
