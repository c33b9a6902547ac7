"""Settings: masked URLs, the TLS settings of the broker."""

from __future__ import annotations

import ssl

import pytest

from services.common.bus import make_broker
from services.common.settings import BrokerSettings, SettingsError, mask_url
from tests.tls_certs import Pki, make_pki


@pytest.mark.parametrize(("url", "shown"), [
    ("amqp://router:s3cr%40t@rabbit:5672/zeroerrand", "amqp://router:***@rabbit:5672/zeroerrand"),
    ("amqps://u:p@h/", "amqps://u:***@h/"),
    ("mongodb://app:pa:ss@mongo-1:27017,mongo-2:27017/?replicaSet=rs0",
     "mongodb://app:***@mongo-1:27017,mongo-2:27017/?replicaSet=rs0"),
    ("mongodb://mongo-1,mongo-2/?replicaSet=rs0", "mongodb://mongo-1,mongo-2/?replicaSet=rs0"),
    ("amqp://guest@localhost/", "amqp://guest@localhost/"),
    ("mongodb://%2Ftmp%2Fzeroerrand-db-x%2Fferretdb.sock", "mongodb://%2Ftmp%2Fzeroerrand-db-x%2Fferretdb.sock"),
    ("mongodb://app:s3cr@m1/?tls=true&tlsCertificateKeyFile=/c.pem&tlsCertificateKeyFilePassword=s3cr&replicaSet=rs0",
     "mongodb://app:***@m1/?tls=true&tlsCertificateKeyFile=/c.pem&tlsCertificateKeyFilePassword=***&replicaSet=rs0"),
])
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "s3cr" not in mask_url(url) and ":p@" not in mask_url(url) and "pa:ss" not in mask_url(url)


# -- TLS to RabbitMQ: what the settings accept, and what they refuse with the setting's name -------

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_an_amqps_url_verifies_the_server_and_its_host_name(pki: Pki) -> None:
    context = BrokerSettings(amqp_url="amqps://u:p@rabbit/zeroerrand", amqp_ca_file=pki.ca,
                             amqp_cert_file=pki.client.cert, amqp_key_file=pki.client.key).ssl_context()
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("organizationName", "zeroerrand tests"),), (("commonName", "zeroerrand test CA"),))]
    # without a CA file: the system's CAs, still verified
    system = BrokerSettings(amqp_url="amqps://u:p@rabbit/").ssl_context()
    assert system is not None and system.verify_mode is ssl.CERT_REQUIRED and system.check_hostname
    # a certificate file that holds the key too
    assert BrokerSettings(amqp_url="amqps://h/", amqp_cert_file=pki.client.combined).ssl_context() is not None
    assert BrokerSettings(amqp_url="amqp://guest:guest@127.0.0.1:5672/").ssl_context() is None


def test_the_settings_come_from_the_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROERRAND_AMQP_URL", "amqps://u:p@rabbit/")
    monkeypatch.setenv("ZEROERRAND_AMQP_CA_FILE", str(pki.ca))
    monkeypatch.setenv("ZEROERRAND_AMQP_CERT_FILE", str(pki.client.cert))
    monkeypatch.setenv("ZEROERRAND_AMQP_KEY_FILE", str(pki.client.key))
    settings = BrokerSettings()
    assert (settings.amqp_ca_file, settings.amqp_cert_file, settings.amqp_key_file) == (
        pki.ca, pki.client.cert, pki.client.key)
    # a URL alone (the CLI, tools) takes the TLS files from the environment too
    broker = make_broker("amqps://u:p@rabbit/")
    assert broker.settings.amqp_ca_file == pki.ca  # type: ignore[attr-defined]


@pytest.mark.parametrize(("fields", "names"), [
    ({"amqp_url": "amqp://u:p@rabbit/", "amqp_ca_file": "CA"}, ["ZEROERRAND_AMQP_CA_FILE", "amqps://"]),
    ({"amqp_url": "amqps://u:p@rabbit/?cafile=/etc/ca.pem"}, ["cafile", "ZEROERRAND_AMQP_CA_FILE"]),
    ({"amqp_url": "amqps://u:p@rabbit/?certfile=/c.pem&keyfile=/k.pem"}, ["certfile", "ZEROERRAND_AMQP_CERT_FILE"]),
    ({"amqp_url": "amqps://u:p@rabbit/?no_verify_ssl=1"}, ["no_verify_ssl", "总要验证"]),
    ({"amqp_url": "amqps://u:p@rabbit/", "amqp_ca_file": "/nonexistent/ca.pem"},
     ["ZEROERRAND_AMQP_CA_FILE=/nonexistent/ca.pem", "不存在"]),
    ({"amqp_url": "amqps://u:p@rabbit/", "amqp_key_file": "KEY"}, ["ZEROERRAND_AMQP_KEY_FILE", "ZEROERRAND_AMQP_CERT_FILE"]),
    ({"amqp_url": "amqps://u:p@rabbit/", "amqp_ca_file": "KEY"}, ["ZEROERRAND_AMQP_CA_FILE", "PEM"]),
    ({"amqp_url": "amqps://u:p@rabbit/", "amqp_cert_file": "CERT"}, ["ZEROERRAND_AMQP_CERT_FILE", "私钥"]),
    ({"amqp_url": "amqps://u:p@rabbit/", "amqp_cert_file": "CERT", "amqp_key_file": "STRANGER_KEY"},
     ["ZEROERRAND_AMQP_CERT_FILE", "配对"]),
])
def test_settings_that_cannot_work_are_refused_by_name(pki: Pki, fields: dict[str, str], names: list[str]) -> None:
    files = {"CA": pki.ca, "CERT": pki.client.cert, "KEY": pki.client.key, "STRANGER_KEY": pki.stranger_client.key}
    settings = BrokerSettings(**{k: files.get(v, v) for k, v in fields.items()})
    with pytest.raises(SettingsError) as refused:
        settings.ssl_context()
    for name in names:
        assert name in str(refused.value)
    assert ":p@" not in str(refused.value)  # the password is not shown
    with pytest.raises(SettingsError):
        make_broker(settings)  # nothing connects with them


def test_several_amqp_urls_are_each_shown_without_their_password() -> None:
    shown = mask_url("amqp://svc:s3cret@rabbit-1:5672/zeroerrand,amqp://svc:s3cret@rabbit-2:5672/zeroerrand")
    assert shown == "amqp://svc:***@rabbit-1:5672/zeroerrand,amqp://svc:***@rabbit-2:5672/zeroerrand"


@pytest.mark.parametrize("url", ["mongodb://u:s3cret@[::1:27017/",
                                 "mongodb://u:s3cret@127.0.0.1:1/?tls=true&tlsCertificateKeyFile=/nonexistent.pem"])
async def test_a_mongodb_url_the_client_cannot_use_is_one_line_without_its_password(url: str) -> None:
    from services.common.settings import StoreSettings
    from services.common.storage import StoreUnavailable, open_store

    with pytest.raises(StoreUnavailable) as refused:
        await open_store(StoreSettings(mongodb_url=url))
    assert "MONGODB_URL 无法使用" in str(refused.value) and "s3cret" not in str(refused.value)
