"""TLS to the store through ``MONGODB_URL``'s own options (``tls=true&tlsCAFile=...&
tlsCertificateKeyFile=...``): the storage adapter passes them to PyMongo untouched. The server is
a FerretDB with a TLS listener that demands a client certificate (``--listen-tls-ca-file``),
on the session's embedded PostgreSQL (a database of its own), with certificates made here."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from services.common.settings import StoreSettings
from services.common.storage import Collection, Endpoint, StoreUnavailable, open_store
from tests.tls_certs import Pki, make_pki

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def ferretdb_with_tls(endpoint: Endpoint, pki: Pki, state: Path) -> Iterator[int]:
    """A FerretDB that listens only on TLS, at 127.0.0.1:PORT, stopped afterwards."""
    assert endpoint.postgres is not None
    pg = endpoint.postgres
    database = f"ferretdb_tls_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], dbname=pg["dbname"], autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    port = _free_port()
    log = state / "ferretdb.log"
    process = subprocess.Popen(
        [str(StoreSettings().ferretdb), "--handler=postgresql",
         f"--postgresql-url=postgres://{pg['user']}@/{database}?host={quote(str(pg['host']), safe='/')}&port={pg['port']}",
         "--listen-addr=", f"--listen-tls=127.0.0.1:{port}", f"--listen-tls-cert-file={pki.server.cert}",
         f"--listen-tls-key-file={pki.server.key}", f"--listen-tls-ca-file={pki.ca}", "--debug-addr=-",
         "--telemetry=disable", f"--state-dir={state}", "--log-level=error", "--log-format=text"],
        stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"FerretDB with TLS exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"FerretDB with TLS not listening on {port} within 30 s: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], dbname=pg["dbname"],
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="zeroerrand-store-pki-") as directory:
        yield make_pki(Path(directory))


@pytest.fixture
def tls_port(embedded_endpoint: Endpoint, pki: Pki, tmp_path: Path) -> Iterator[int]:
    with ferretdb_with_tls(embedded_endpoint, pki, tmp_path) as port:
        yield port


NOTES = Collection("notes")


async def test_the_store_works_over_tls_with_the_url_options(tls_port: int, pki: Pki) -> None:
    url = (f"mongodb://127.0.0.1:{tls_port}/?tls=true&tlsCAFile={pki.ca}"
           f"&tlsCertificateKeyFile={pki.client.combined}")
    store = await open_store(StoreSettings(mongodb_url=url, database="zeroerrand_tls"), [NOTES])
    try:
        assert not store.embedded  # a MongoDB URL, not the embedded store
        assert await store.insert_new("notes", [{"_id": "n1", "text": "加密传输"}]) == 1
        assert await store.db["notes"].find_one({"_id": "n1"}) == {"_id": "n1", "text": "加密传输"}
    finally:
        await store.close()


async def test_a_client_without_the_ca_or_without_a_certificate_is_refused(tls_port: int, pki: Pki) -> None:
    base = f"mongodb://127.0.0.1:{tls_port}/"
    cases = [
        (f"{base}?tls=true&tlsCertificateKeyFile={pki.client.combined}",
         "服务器证书未通过验证，请在 MONGODB_URL 中用 tlsCAFile=… 指定"),
        (f"{base}?tls=true&tlsCAFile={pki.ca}", "多半要求客户端证书，请在 MONGODB_URL 中加 tlsCertificateKeyFile"),
        (f"{base}?tls=true&tlsCAFile={pki.ca}&tlsCertificateKeyFile={pki.stranger_client.combined}",
         "多半不接受 tlsCertificateKeyFile 的客户端证书"),
        (base, "可能只接受 TLS，请在 MONGODB_URL 中加 tls=true"),  # no TLS at all
    ]

    async def refused(url: str) -> str:
        with pytest.raises(StoreUnavailable) as refusal:
            await open_store(StoreSettings(mongodb_url=url, database="zeroerrand_tls"), [NOTES])
        return str(refusal.value)

    # together: each waits for the adapter's 10 s server selection
    messages = await asyncio.gather(*(refused(url) for url, _ in cases))
    for (_, reason), message in zip(cases, messages, strict=True):
        assert f"无法连接存储（{base}" in message and reason in message, message
