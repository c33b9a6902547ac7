"""Writes of concurrently handled messages, sent to the store together when they meet.

Each caller submits one operation and awaits its own result. If fewer than ``max_flushes`` flushes
are on their way, the operation goes at once, alone or with whatever else is waiting; otherwise it
waits for the next flush, which takes everything that arrived meanwhile (at most ``max_batch``).
There is no timer: a lone request is never held back, and under load the batches grow by
themselves. A flush that fails hands its error to every caller in it, so each message is retried,
never acknowledged unstored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``flush`` takes the operations of one batch and returns one result for each, in order."""

    def __init__(self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_batch: int = 256,
                 max_flushes: int = 2) -> None:
        self._flush_fn, self.max_batch, self.max_flushes = flush, max_batch, max_flushes
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing = 0
        self._tasks: set[asyncio.Task[None]] = set()  # held, so a running flush is not collected
        self.flushes = 0  # how many flushes ran, for the benchmark's figures

    async def submit(self, operation: T) -> R:
        result: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((operation, result))
        self._next()
        return await result

    def _next(self) -> None:
        while self._waiting and self._flushing < self.max_flushes:
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
            self._flushing += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.flushes += 1
        try:
            results = await self._flush_fn([operation for operation, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except BaseException as exc:  # every caller learns of it (cancellation included)
            for _, result in batch:
                if not result.done():
                    result.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, result), value in zip(batch, results, strict=True):
                if not result.done():
                    result.set_result(value)
        finally:
            self._flushing -= 1
            self._next()
