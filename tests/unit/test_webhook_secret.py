"""The development webhook secret, which anyone can read in this repository, is refused unless
``ZEROERRAND_ENVIRONMENT`` is ``development``: by the notifier, ``zeroerrand notifier`` and
``zeroerrand up``, before anything connects."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.common.settings import (
    DEVELOPMENT_WEBHOOK_SECRET,
    BrokerSettings,
    ConsoleSettings,
    NotifierSettings,
    RuntimeSettings,
    SettingsError,
)
from services.notifier.app import create_notifier
from tests.conftest import ROOT

# production refuses RabbitMQ's guest user (tests/unit/test_guest_refused.py)
OWN_USER = BrokerSettings(amqp_url="amqp://zeroerrand-notifier:pw@127.0.0.1:5672/zeroerrand")


def test_the_environment_is_production_unless_said_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZEROERRAND_ENVIRONMENT")
    assert RuntimeSettings.load().environment == "production"
    monkeypatch.setenv("ZEROERRAND_ENVIRONMENT", "development")
    assert RuntimeSettings.load().development
    monkeypatch.setenv("ZEROERRAND_ENVIRONMENT", "prod")
    with pytest.raises(SettingsError, match="ZEROERRAND_ENVIRONMENT 只能是 development 或 production"):
        RuntimeSettings.load()


def test_the_notifier_refuses_the_development_secret_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZEROERRAND_NOTIFIER_WEBHOOK_SECRET", raising=False)
    assert NotifierSettings().webhook_secret.get_secret_value() == DEVELOPMENT_WEBHOOK_SECRET
    with pytest.raises(SettingsError) as refused:
        create_notifier(NotifierSettings(), runtime=RuntimeSettings(environment="production"))
    message = str(refused.value)
    assert "通知服务未启动" in message and "notifier refused to start" in message
    assert "ZEROERRAND_NOTIFIER_WEBHOOK_SECRET" in message and "ZEROERRAND_ENVIRONMENT=development" in message
    # by default (ZEROERRAND_ENVIRONMENT unset) too
    monkeypatch.delenv("ZEROERRAND_ENVIRONMENT")
    with pytest.raises(SettingsError, match="ZEROERRAND_NOTIFIER_WEBHOOK_SECRET"):
        create_notifier(NotifierSettings())


def test_the_development_secret_is_allowed_in_development_and_a_real_one_anywhere(caplog: pytest.LogCaptureFixture) -> None:
    notifier = create_notifier(NotifierSettings(), runtime=RuntimeSettings(environment="development"))
    assert notifier.settings.webhook_secret.get_secret_value() == DEVELOPMENT_WEBHOOK_SECRET
    assert "development secret" in caplog.text
    chosen = create_notifier(NotifierSettings(webhook_secret="k7Qx9-a-real-secret"), OWN_USER,
                             runtime=RuntimeSettings(environment="production"),
                             console_settings=ConsoleSettings(secret_key="a-real-console-key-0123456789"))
    assert chosen.settings.webhook_secret.get_secret_value() == "k7Qx9-a-real-secret"


def test_an_empty_secret_is_refused_everywhere() -> None:
    for environment in ("development", "production"):
        with pytest.raises(SettingsError, match="ZEROERRAND_NOTIFIER_WEBHOOK_SECRET 为空"):
            create_notifier(NotifierSettings(webhook_secret=""), runtime=RuntimeSettings(environment=environment))


def test_the_notifier_refuses_the_development_console_key_in_production() -> None:
    """The enterprise's links in its notices are made with the console's key: the development one
    would let anyone open every project."""
    production = RuntimeSettings(environment="production")
    with pytest.raises(SettingsError) as refused:
        create_notifier(NotifierSettings(webhook_secret="k7Qx9-a-real-secret"), runtime=production,
                        console_settings=ConsoleSettings())
    assert "通知服务未启动" in str(refused.value) and "ZEROERRAND_CONSOLE_SECRET_KEY" in str(refused.value)
    with pytest.raises(SettingsError, match="太短"):
        create_notifier(NotifierSettings(), runtime=RuntimeSettings(environment="development"),
                        console_settings=ConsoleSettings(secret_key="short"))
    create_notifier(NotifierSettings(), runtime=RuntimeSettings(environment="development"),
                    console_settings=ConsoleSettings())  # the development key on a developer's machine


@pytest.mark.parametrize("command", ["notifier", "up"])
def test_the_cli_refuses_to_start_with_the_reason_in_a_line(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ZEROERRAND_NOTIFIER_WEBHOOK_SECRET", "ZEROERRAND_ENVIRONMENT",
                                                            "ZEROERRAND_ROUTER_AGREEMENT_REGISTRY")}
    # never reached: the refusal comes first (a user of its own: `up` refuses guest in production too)
    env["ZEROERRAND_AMQP_URL"] = "amqp://zeroerrand-notifier:pw@127.0.0.1:1/"
    done = subprocess.run([sys.executable, "-m", "services.cli", command], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ZEROERRAND_NOTIFIER_WEBHOOK_SECRET" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "运行环境是 production" in done.stderr
