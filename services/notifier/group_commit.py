"""Group commit: the writes of many concurrently handled events go to the store together.

Each handler submits its read-model upserts and notification documents and waits; a flush writes
everything submitted so far in one ``bulk_write`` per collection and one ``insert_many``, then
wakes every waiter (or hands each the error, so its event is retried, never acked unstored).
A flush starts when ``max_batch`` events are waiting or ``max_delay_s`` after the first one, and
only one runs at a time: what arrives meanwhile waits for the next, larger, flush (a store that
pays per request, like MongoDB over a network, gains most; the embedded server pays per
document, see bench/notifier_throughput.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne

from services.notifier.repository import NotifierRepository


@dataclass
class _Batch:
    upserts: dict[str, list[UpdateOne]] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class GroupCommit:
    def __init__(self, repository: NotifierRepository, *, max_batch: int = 64, max_delay_s: float = 0.01) -> None:
        self.repository, self.max_batch, self.max_delay_s = repository, max_batch, max_delay_s
        self._batch = _Batch()
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    async def submit(self, upserts: dict[str, list[UpdateOne]], notifications: Sequence[dict[str, Any]]) -> None:
        """Returns once everything submitted is stored; raises if the flush failed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = self._batch
        for collection, operations in upserts.items():
            batch.upserts.setdefault(collection, []).extend(operations)
        batch.notifications.extend(notifications)
        batch.waiters.append(waiter)
        if len(batch.waiters) >= self.max_batch:
            self._start_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_delay_s, self._start_flush)
        await waiter

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None or not self._batch.waiters:
            return  # the running flush starts the next one when it ends
        batch, self._batch = self._batch, _Batch()
        self._flushing = asyncio.create_task(self._flush(batch))
        self._flushing.add_done_callback(self._flushed)

    def _flushed(self, _task: asyncio.Task[None]) -> None:
        self._flushing = None
        if self._batch.waiters:
            self._start_flush()

    async def _flush(self, batch: _Batch) -> None:
        try:
            await self.repository.apply(batch.upserts)
            await self.repository.add(batch.notifications)
        except Exception as exc:
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)
