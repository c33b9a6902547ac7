"""The embedded store under many writers at once: FerretDB 1.24 holds the PostgreSQL connection
that found a document while it takes a second one to write the update, so as many concurrent
updates as its pool has connections hung it for good (a demo year stopped there: every service
waiting, nothing in the logs). Opened as the product opens it, it must not."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from services.common.settings import StoreSettings
from services.common.storage import EMBEDDED_CLIENT_POOL, open_store
from tests.integration.conftest import store_directory

CLIENTS = 3  # as `zeroerrand up`, the console and a CLI command or the demo would be
AT_ONCE = 100  # updates each client sends together: more than its pool has connections
ROUNDS = 10  # the hang came within a few rounds of 100 from one client of PyMongo's default pool
HANG_S = 120.0  # not a timing goal: a round takes well under a second; this only tells a hang


async def test_many_updates_at_once_from_several_clients_never_hang_the_embedded_store() -> None:
    data = store_directory("zeroerrand-test-busy-")
    stores = []
    try:
        for _ in range(CLIENTS):  # the first starts the store, the others join it, as processes do
            stores.append(await open_store(StoreSettings(data_dir=data, database="busy"), watch=False))
        assert all(s.client.options.pool_options.max_pool_size == EMBEDDED_CLIENT_POOL for s in stores)
        documents = CLIENTS * AT_ONCE
        await stores[0].db["busy"].insert_many([{"_id": n, "n": 0} for n in range(documents)])

        async def burst(client: int) -> None:  # each client its own documents: every update must land
            collection = stores[client].db["busy"]
            await asyncio.gather(*(collection.update_one({"_id": client * AT_ONCE + n}, {"$inc": {"n": 1}})
                                   for n in range(AT_ONCE)))

        for done in range(ROUNDS):
            try:
                await asyncio.wait_for(asyncio.gather(*(burst(c) for c in range(CLIENTS))), HANG_S)
            except TimeoutError:
                pytest.fail(f"{CLIENTS} clients × {AT_ONCE} concurrent update_one did not finish in {HANG_S:g} s "
                            f"(round {done + 1}): the embedded store hung")
        counts = [d["n"] async for d in stores[0].db["busy"].find({})]
        assert counts == [ROUNDS] * documents
    finally:
        for store in reversed(stores):
            await store.close()
        shutil.rmtree(data, ignore_errors=True)
