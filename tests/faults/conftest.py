"""Fault-test fixtures: the integration fixtures (private vhost, taps, the session's store), and a
private data directory where the services, run as processes, start or join their embedded store."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.settings import StoreSettings
from services.common.storage import EmbeddedServer, Endpoint, StoreUnavailable
from tests.integration.conftest import amqp, amqp_url, clean_queues, embedded_endpoint, router, tap  # noqa: F401


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # as root, PostgreSQL runs as the postgres user, which must be able to enter the directory
    data = Path(tempfile.mkdtemp(prefix="zeroerrand-faults-"))
    data.chmod(0o755)
    yield data
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
async def services_store(data_dir: Path) -> AsyncIterator[Endpoint]:
    """The embedded store the service processes of one test share (``data_dir/store``): started by
    the test, so it outlives any service the test kills, and stopped after it."""
    settings = StoreSettings()
    server = EmbeddedServer(settings.ferretdb, data_dir / "store", settings.embedded_start_timeout_s,
                            settings.postgres_bin)
    try:
        endpoint = await server.open()
    except StoreUnavailable as exc:
        pytest.fail(f"the embedded store cannot start (run scripts/setup.sh): {exc}")
    yield endpoint
    await server.stop()
