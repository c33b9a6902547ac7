"""Group commit: the writes of many concurrently handled events go to the store together.

Each handler submits its read-model and notification documents and waits; a flush writes
everything submitted so far in one unordered ``insert_many`` per collection, then
wakes every waiter (or hands each the error, so its event is retried, never acked unstored).
A flush starts when ``max_batch`` events are waiting or ``max_delay_s`` after the first one;
up to ``max_flushes`` run at once (the next batch fills while one is on its way), and what
arrives meanwhile waits for the next, larger, flush. Every write is
an insert (a document already stored is kept), the cheapest write on MongoDB and on FerretDB
alike, where an upsert costs a look-up and a transaction per document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.notifier.repository import NotifierRepository


@dataclass
class _Batch:
    read_model: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class GroupCommit:
    def __init__(self, repository: NotifierRepository, *, max_batch: int = 64, max_delay_s: float = 0.01,
                 max_flushes: int = 2) -> None:
        self.repository, self.max_batch, self.max_delay_s = repository, max_batch, max_delay_s
        self.max_flushes = max_flushes
        self._batch = _Batch()
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, read_model: dict[str, list[dict[str, Any]]], notifications: Sequence[dict[str, Any]]) -> None:
        """Returns once everything submitted is stored; raises if the flush failed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = self._batch
        for collection, documents in read_model.items():
            batch.read_model.setdefault(collection, []).extend(documents)
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
        if len(self._flushing) >= self.max_flushes or not self._batch.waiters:
            return  # a running flush starts the next one when it ends
        batch, self._batch = self._batch, _Batch()
        task = asyncio.create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if self._batch.waiters:
            self._start_flush()

    async def _flush(self, batch: _Batch) -> None:
        try:
            # independent inserts (a notification does not need the read model stored first)
            await asyncio.gather(self.repository.apply(batch.read_model), self.repository.add(batch.notifications))
        except Exception as exc:
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)
