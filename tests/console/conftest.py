"""The console on the real RabbitMQ and the embedded store, with the router, the notifier and the
evaluation service running in this process, and headless Chromium from the distribution driven
by Playwright (no browser download: ``executable_path``)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.common.access import access_link
from services.common.rule_files import load_rulebook
from services.common.settings import (
    BrokerSettings,
    ConsoleSettings,
    EvaluationSettings,
    NotifierSettings,
    RouterSettings,
    RuntimeSettings,
)
from services.common.storage import Store
from services.console.accounts import Accounts, Role
from services.console.app import create_console
from services.console.service import ConsoleService
from services.evaluation.app import create_evaluation
from services.notifier.app import create_notifier
from services.router.app import create_router
from tests.integration.conftest import amqp, amqp_url, clean_queues, embedded_endpoint, embedded_uri, store  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
KEY = "console-test-key-0123456789abcdef"
PASSWORD = "correct-horse-battery"
OUTPUT = Path(__file__).resolve().parents[2] / "var" / "test-output" / "console"


@dataclass
class Site:
    """The running console and what a test needs to use it."""

    url: str
    service: ConsoleService
    store: Store
    rules: Path
    settings: ConsoleSettings

    def link(self, project: str) -> str:
        return access_link(self.url, KEY, project)

    async def account(self, username: str, unit: str, role: Role, name: str = "测试员") -> None:
        accounts = Accounts(self.store)
        book = load_rulebook(self.rules)
        await accounts.add(username, name, unit, role, PASSWORD, book.units)


@pytest.fixture
async def site(amqp_url: str, rules_copy: Path, clean_queues: None, store: Store) -> AsyncIterator[Site]:  # noqa: F811
    broker = BrokerSettings(amqp_url=amqp_url)
    settings = ConsoleSettings(port=0, secret_key=KEY, public_url="http://127.0.0.1", outcome_wait_s=8)
    runtime = RuntimeSettings(environment="development")
    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=False), broker)
    notifier = create_notifier(NotifierSettings(rules_dir=rules_copy), broker, store=store, runtime=runtime,
                               console_settings=settings)
    evaluation = create_evaluation(EvaluationSettings(rules_dir=rules_copy, sweep_interval_s=3600), broker, store=store)
    console = create_console(settings, broker, store=store, runtime=runtime, rules_dir=rules_copy)
    started: list[Any] = []
    try:
        for service in (evaluation.app, notifier.app, router.app, console):
            await service.start()
            started.append(service)
        url = f"http://127.0.0.1:{console.port}"
        console.console.settings = settings.model_copy(update={"public_url": url})
        yield Site(url=url, service=console, store=store, rules=rules_copy, settings=settings)
    finally:
        await asyncio.gather(*(s.stop() for s in reversed(started)), return_exceptions=True)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium, headless; the test fails (never skips) when it is missing."""
    from playwright.async_api import async_playwright

    assert Path(CHROMIUM).exists(), "chromium is not installed: run scripts/setup.sh (apt-get install chromium)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """Where a test writes its screenshots (var/test-output/console/<test>/)."""
    directory = OUTPUT / request.node.name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory
