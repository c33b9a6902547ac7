"""TLS to RabbitMQ: a private node that speaks only TLS and demands a client certificate
(``verify_peer``, ``fail_if_no_peer_cert``), certificates made here by the test. The router,
the notifier, the evaluation service and the CLI route a signed agreement over ``amqps://``;
a client without the CA, without a client certificate, with one from another CA, or dialling a
host name the server's certificate does not name, is refused with an error that says which
setting to look at."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from services.common.bus import connect_robust, make_broker
from services.common.settings import (
    BrokerSettings,
    BrokerUnavailable,
    EvaluationSettings,
    NotifierSettings,
    RouterSettings,
)
from services.common.storage import Store
from services.common.topology import ITEMS
from services.evaluation.app import create_evaluation
from services.evaluation.repository import MongoLedgerRepository
from services.notifier.app import create_notifier
from services.notifier.repository import NotifierRepository
from services.router.app import create_router
from tests.conftest import ALUMINIUM, EXAMPLES
from tests.rabbit_nodes import RabbitNode, private_nodes
from tests.tls_certs import Pki, make_pki

pytestmark = pytest.mark.integration

PORT = 5717  # the node's only AMQP listener: TLS, on 127.0.0.1 and 127.0.0.2


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    directory.chmod(0o755)
    return make_pki(directory)


@pytest.fixture(scope="module")
def tls_node(pki: Pki) -> Iterator[RabbitNode]:
    config = "\n".join([
        f"listeners.ssl.default = 127.0.0.1:{PORT}",
        f"listeners.ssl.second = 127.0.0.2:{PORT}",  # a host the server's certificate does not name
        f"ssl_options.cacertfile = {pki.ca}",
        f"ssl_options.certfile = {pki.server.cert}",
        f"ssl_options.keyfile = {pki.server.key}",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = true",
        "",
    ])
    with private_nodes("zetls", 1, PORT, extra_config=config, plain_listener=False) as nodes:
        status = nodes[0].ctl("status").stdout
        assert f"port: {PORT}, protocol: amqp/ssl" in status and "protocol: amqp," not in status, status
        yield nodes[0]


def tls_settings(pki: Pki, host: str = "localhost", **overrides: Any) -> BrokerSettings:
    values: dict[str, Any] = {"amqp_url": f"amqps://guest:guest@{host}:{PORT}/", "amqp_ca_file": pki.ca,
                              "amqp_cert_file": pki.client.cert, "amqp_key_file": pki.client.key}
    return BrokerSettings(**(values | overrides))


def tls_env(settings: BrokerSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROERRAND_AMQP_")}
    env["ZEROERRAND_AMQP_URL"] = settings.amqp_url
    for name, value in (("CA", settings.amqp_ca_file), ("CERT", settings.amqp_cert_file),
                        ("KEY", settings.amqp_key_file)):
        if value is not None:
            env[f"ZEROERRAND_AMQP_{name}_FILE"] = str(value)
    return env


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.cli", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def refusal(settings: BrokerSettings) -> str:
    """The message of the ``BrokerUnavailable`` a broker with these settings meets."""
    broker = make_broker(settings)
    try:
        with pytest.raises(BrokerUnavailable) as refused:
            await asyncio.wait_for(broker.connect(), 20)
    finally:
        await broker.stop()
    return str(refused.value)


@pytest.fixture
async def services_over_tls(tls_node: RabbitNode, pki: Pki, rules_copy: Path, store: Store) -> AsyncIterator[Store]:
    broker = tls_settings(pki)
    router = create_router(RouterSettings(rules_dir=rules_copy, watch_rules=False), broker)
    notifier = create_notifier(NotifierSettings(rules_dir=rules_copy, webhook_secret="tls-test-secret"), broker,
                               store=store)
    evaluation = create_evaluation(EvaluationSettings(rules_dir=rules_copy, sweep_interval_s=3600), broker, store=store)
    started = []
    try:
        for service in (evaluation, notifier, router):
            await service.app.start()
            started.append(service)
        yield store
    finally:
        for service in reversed(started):
            await service.app.stop()


async def test_the_services_and_the_cli_route_a_signed_agreement_over_tls(services_over_tls: Store, pki: Pki) -> None:
    store = services_over_tls
    settings = tls_settings(pki)
    connection = await connect_robust(settings, timeout=10)  # a downstream system's tap, over TLS as well
    async with connection:
        channel = await connection.channel()
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(await channel.get_exchange(ITEMS.name), "#")

        code, out, err = await cli(tls_env(settings), "sign", "--wait", "0", str(EXAMPLES / ALUMINIUM))
        assert code == 0, out + err
        assert "已签约并发布：协议" in out

        items: list[aio_pika.abc.AbstractIncomingMessage] = []
        async with tap.iterator(timeout=30) as messages:
            async for message in messages:
                await message.ack()
                items.append(message)
                if len(items) == 23:
                    break
        assert Counter(m.routing_key.split(".")[0] for m in items if m.routing_key) == {
            "assist": 2, "joint": 11, "errand": 10}

    ledger, notifications = MongoLedgerRepository(store), NotifierRepository(store)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        in_ledger = await ledger.project_items("HLXQ-2026-0031")
        told = Counter(d["event_type"] for d in await notifications.find(project="HLXQ-2026-0031", limit=10_000))
        if len(in_ledger) == 23 and told["item.routed"] >= 23 and told["item.ready"] > 0:
            break
        await asyncio.sleep(0.2)
    assert len(in_ledger) == 23  # the ledger read the router's items over TLS
    # the notifier read the router's events and the ledger's (item.ready: published over TLS by the ledger)
    assert told["service.started"] > 0 and told["item.routed"] >= 23 and told["item.ready"] > 0, told


async def test_a_client_without_the_ca_is_refused_and_told_to_set_it(tls_node: RabbitNode, pki: Pki) -> None:
    message = await refusal(tls_settings(pki, amqp_ca_file=None))
    assert "服务器证书未通过验证" in message and "ZEROERRAND_AMQP_CA_FILE" in message, message
    assert "self-signed certificate in certificate chain" in message
    # trusting another CA is no better
    message = await refusal(tls_settings(pki, amqp_ca_file=pki.stranger_ca))
    assert "服务器证书未通过验证" in message and f"ZEROERRAND_AMQP_CA_FILE={pki.stranger_ca}" in message, message
    # and the CLI says it in a line
    code, out, err = await cli(tls_env(tls_settings(pki, amqp_ca_file=None)), "sign", "--wait", "0", str(EXAMPLES / ALUMINIUM))
    assert code == 1 and "服务器证书未通过验证" in err and "Traceback" not in err, out + err


async def test_a_client_without_a_client_certificate_is_refused(tls_node: RabbitNode, pki: Pki) -> None:
    message = await refusal(tls_settings(pki, amqp_cert_file=None, amqp_key_file=None))
    assert "要求客户端证书" in message and "ZEROERRAND_AMQP_CERT_FILE" in message, message
    # a service does not start either, and says why
    router = create_router(RouterSettings(watch_rules=False), tls_settings(pki, amqp_cert_file=None, amqp_key_file=None))
    with pytest.raises(BrokerUnavailable, match="ZEROERRAND_AMQP_CERT_FILE"):
        await asyncio.wait_for(router.app.start(), 20)
    await router.app.stop()


async def test_a_client_certificate_from_another_ca_is_refused(tls_node: RabbitNode, pki: Pki) -> None:
    message = await refusal(tls_settings(pki, amqp_cert_file=pki.stranger_client.cert,
                                         amqp_key_file=pki.stranger_client.key))
    assert "不接受客户端证书" in message and str(pki.stranger_client.cert) in message, message


async def test_the_host_name_is_verified(tls_node: RabbitNode, pki: Pki) -> None:
    message = await refusal(tls_settings(pki, host="127.0.0.2"))  # same node, a name not in its certificate
    assert "不是签发给这个主机名的" in message and "127.0.0.2" in message, message
    connection = await connect_robust(tls_settings(pki, host="127.0.0.1"), timeout=10)  # in its SAN
    await connection.close()


async def test_a_plain_connection_to_the_tls_port_is_refused(tls_node: RabbitNode, pki: Pki) -> None:
    message = await refusal(BrokerSettings(amqp_url=f"amqp://guest:guest@127.0.0.1:{PORT}/"))
    assert "可能只接受 TLS" in message and "amqps://" in message, message
