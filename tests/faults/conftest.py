"""Fault-test fixtures: the integration fixtures (private vhost, taps, the session's store), and a
private data directory where the services, run as processes, start or join their embedded store."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.storage import Endpoint
from tests.integration.conftest import (  # noqa: F401 - fixtures, for the fault tests too
    amqp,
    amqp_url,
    clean_queues,
    embedded_endpoint,
    embedded_server,
    reach_store,
    router,
    store_directory,
    tap,
)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    data = store_directory("zeroerrand-faults-")
    yield data
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
async def services_store(data_dir: Path) -> AsyncIterator[Endpoint]:
    """The embedded store the service processes of one test share (``data_dir/store``): started by
    the test, so it outlives any service the test kills, and stopped after it."""
    server = embedded_server(data_dir / "store")
    endpoint = await reach_store(server.open())
    yield endpoint
    await server.stop()
