"""Wiring of the console (服务台): its resources, its pages and the server. No I/O at import."""

from __future__ import annotations

from pathlib import Path

from services.common.settings import BrokerSettings, ConsoleSettings, RuntimeSettings, StoreSettings
from services.common.storage import Store
from services.console.service import ConsoleService, make_console
from services.console.web import create_app


def create_console(settings: ConsoleSettings | None = None, broker_settings: BrokerSettings | None = None,
                   store_settings: StoreSettings | None = None, store: Store | None = None,
                   runtime: RuntimeSettings | None = None, rules_dir: Path | None = None) -> ConsoleService:
    """The console as a service with ``start``/``stop``, like the others; ``SettingsError`` if its key
    may not be used here, ``RulesError`` if the rule files cannot be read."""
    console = make_console(settings, broker_settings, store_settings, store, runtime, rules_dir)
    return ConsoleService(console, create_app(console))
