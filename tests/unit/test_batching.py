"""The batcher the ledger's writes go through: a lone write is not held back, writes that meet
share one flush, each caller gets its own result, and a failed flush fails every caller in it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.common.batching import Batcher


class Store:
    """Records each flush; each flush waits until released, so tests control what meets."""

    def __init__(self, fail: bool = False) -> None:
        self.flushes: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def write(self, batch: Sequence[int]) -> list[int]:
        self.flushes.append(list(batch))
        await self.release.wait()
        if self.fail:
            raise ConnectionError("store away")
        return [n * 10 for n in batch]


async def test_a_lone_write_goes_at_once_and_gets_its_own_result() -> None:
    store = Store()
    store.release.set()
    batcher = Batcher(store.write)
    assert await batcher.submit(1) == 10
    assert store.flushes == [[1]]


async def test_writes_arriving_while_flushes_run_go_together_in_the_next() -> None:
    store = Store()
    batcher = Batcher(store.write, max_flushes=1)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(batcher.submit(n)) for n in range(2, 6)]
    await asyncio.sleep(0)
    assert store.flushes == [[1]]  # the others wait for the running flush
    store.release.set()
    assert await first == 10 and await asyncio.gather(*waiting) == [20, 30, 40, 50]
    assert store.flushes == [[1], [2, 3, 4, 5]]


async def test_a_batch_is_at_most_max_batch_writes() -> None:
    store = Store()
    batcher = Batcher(store.write, max_batch=2, max_flushes=1)
    blocker = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(n)) for n in range(1, 6)]
    await asyncio.sleep(0)
    store.release.set()
    await asyncio.gather(blocker, *rest)
    assert store.flushes == [[0], [1, 2], [3, 4], [5]]


async def test_a_failed_flush_fails_every_write_in_it_and_the_next_flush_still_runs() -> None:
    store = Store(fail=True)
    batcher = Batcher(store.write, max_flushes=1)
    tasks = [asyncio.create_task(batcher.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    store.release.set()
    for task in tasks:
        with pytest.raises(ConnectionError):
            await task
    store.fail = False
    assert await batcher.submit(7) == 70


async def test_a_flush_that_returns_the_wrong_number_of_results_is_an_error() -> None:
    async def short(batch: Sequence[int]) -> list[int]:
        return []

    with pytest.raises(RuntimeError, match="gave 0 results"):
        await Batcher(short).submit(1)
