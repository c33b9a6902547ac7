"""No service uses RabbitMQ's ``guest`` user outside development: the router, the notifier, the
evaluation service and the console refuse it (the default ``ZEROERRAND_AMQP_URL``, or a URL without
a user, which logs in as guest) unless ``ZEROERRAND_ENVIRONMENT=development``, before anything
connects; ``zeroerrand router`` says so in a line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from services.common.settings import (
    BrokerSettings,
    ConsoleSettings,
    EvaluationSettings,
    NotifierSettings,
    RouterSettings,
    RuntimeSettings,
    SettingsError,
    amqp_users,
)
from services.console.app import create_console
from services.evaluation.app import create_evaluation
from services.notifier.app import create_notifier
from services.router.app import create_router
from tests.conftest import ROOT, RULES

PRODUCTION = RuntimeSettings(environment="production")
DEVELOPMENT = RuntimeSettings(environment="development")
CONSOLE = ConsoleSettings(secret_key="a-real-console-key-0123456789")
Factory = Callable[[BrokerSettings, RuntimeSettings], Any]

FACTORIES: dict[str, Factory] = {
    # the registry production uses (opened only when the router starts)
    "router": lambda broker, runtime: create_router(RouterSettings(rules_dir=RULES, watch_rules=False,
                                                                   agreement_registry="store"), broker, runtime=runtime),
    "notifier": lambda broker, runtime: create_notifier(NotifierSettings(webhook_secret="k7Qx9-a-real-secret"),
                                                        broker, runtime=runtime, console_settings=CONSOLE),
    "evaluation": lambda broker, runtime: create_evaluation(EvaluationSettings(rules_dir=RULES), broker,
                                                            runtime=runtime),
    "console": lambda broker, runtime: create_console(CONSOLE, broker, runtime=runtime, rules_dir=RULES),
}
NAMES_ZH = {"router": "路由服务未启动", "notifier": "通知服务未启动", "evaluation": "评价服务未启动", "console": "服务台未启动"}


@pytest.mark.parametrize("service", sorted(FACTORIES))
@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:5672/",  # the default
                                 "amqp://127.0.0.1:5672/",  # no user: aiormq logs in as guest
                                 "amqp://zeroerrand-router:pw@rabbit-1/zeroerrand,amqp://guest:guest@rabbit-2/"])
def test_each_service_refuses_the_guest_user_in_production(service: str, url: str) -> None:
    with pytest.raises(SettingsError) as refused:
        FACTORIES[service](BrokerSettings(amqp_url=url), PRODUCTION)
    message = str(refused.value)
    assert message.startswith(NAMES_ZH[service]) and f"{service} refused to start" in message
    assert "guest 用户" in message and "运行环境是 production" in message
    assert "ZEROERRAND_ENVIRONMENT=development" in message and "deploy/rabbitmq/users.sh" in message
    assert ":guest@" not in message, "the URL's password is masked"


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_guest_is_allowed_in_development_and_an_own_user_anywhere(service: str) -> None:
    FACTORIES[service](BrokerSettings(amqp_url="amqp://guest:guest@127.0.0.1:5672/"), DEVELOPMENT)
    own = BrokerSettings(amqp_url=f"amqp://zeroerrand-{service}:k7Qx9pw@haproxy:5672/zeroerrand")
    FACTORIES[service](own, PRODUCTION)


def test_the_users_of_the_urls() -> None:
    assert amqp_users(BrokerSettings(amqp_url="amqp://a%40b:x@h1/,amqp://h2/")) == ["a@b", "guest"]


def test_the_default_url_is_refused_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZEROERRAND_ENVIRONMENT and ZEROERRAND_AMQP_URL unset: production and guest, refused."""
    monkeypatch.delenv("ZEROERRAND_ENVIRONMENT")
    monkeypatch.delenv("ZEROERRAND_AMQP_URL", raising=False)
    with pytest.raises(SettingsError, match="路由服务未启动：ZEROERRAND_AMQP_URL"):
        create_router(RouterSettings(rules_dir=RULES, watch_rules=False))


def test_the_cli_refuses_guest_in_a_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ZEROERRAND_ENVIRONMENT", "ZEROERRAND_AMQP_URL")}
    env["ZEROERRAND_AMQP_URL"] = "amqp://guest:guest@127.0.0.1:1/"  # never reached: the refusal comes first
    done = subprocess.run([sys.executable, "-m", "services.cli", "router"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "路由服务未启动" in done.stderr and "guest" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_router_with_its_agreements_in_memory_is_refused_outside_development() -> None:
    own = BrokerSettings(amqp_url="amqp://zeroerrand-router:pw@127.0.0.1:1/")
    memory = RouterSettings(rules_dir=RULES, watch_rules=False, agreement_registry="memory")
    with pytest.raises(SettingsError, match="ZEROERRAND_ROUTER_AGREEMENT_REGISTRY=memory"):
        create_router(memory, own, runtime=PRODUCTION)
    create_router(memory, own, runtime=DEVELOPMENT)  # the tests' own routers
