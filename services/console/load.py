"""How the console bounds its own work: a limit on the requests it handles at once (each reads the
store one query at a time, so this also bounds its store reads in flight), a bounded queue in front
of it that answers 503 with ``Retry-After`` when full or when a request has waited too long, and
shared reads of the same page (200 people opening 政务服务局's board at once cause one or two
reads of it, not 200)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("services.console")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Admission:
    """ASGI layer: at most ``limit`` requests are handled at once; up to ``queued`` more wait, first
    come first served, for at most ``wait_s`` each. A request that finds the queue full, or waits
    longer, is answered at once: 503 with ``Retry-After`` and a message in Chinese, never left to
    time out. Static files (a few small files, read from memory by the OS) are not counted."""

    def __init__(self, app: ASGIApp, limit: int, queued: int, wait_s: float, retry_after_s: int,
                 exempt: tuple[str, ...] = ("/static/",)) -> None:
        self.app, self.limit, self.queued, self.wait_s, self.retry_after_s = app, limit, queued, wait_s, retry_after_s
        self.exempt = exempt
        self._slots = asyncio.Semaphore(limit)
        self.waiting = 0  # requests queued for a slot now
        self.in_flight = 0  # requests handled now
        self.refused = 0  # 503s answered since the start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        if self.in_flight + self.waiting >= self.limit + self.queued:  # counted here, before any await
            await self._overloaded(send, "queue full")
            return
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_s)
        except TimeoutError:
            await self._overloaded(send, f"waited {self.wait_s:g} s")
            return
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self._slots.release()

    async def _overloaded(self, send: Send, why: str) -> None:
        self.refused += 1
        if self.refused == 1 or self.refused % 100 == 0:
            log.warning("console overloaded (%s): answering 503 (%d so far; %d in flight, %d queued)",
                        why, self.refused, self.in_flight, self.waiting)
        text = (f"服务台当前访问人数过多，暂时无法处理您的请求。请约 {self.retry_after_s} 秒后刷新页面重试；"
                "已提交的办理请求不受影响。")
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"retry-after", str(self.retry_after_s).encode())]})
        await send({"type": "http.response.body", "body": text.encode()})


class Shared(Generic[K, V]):
    """Concurrent reads of the same thing (a key) share one read, and each caller gets data read
    wholly after it arrived: a caller that finds a read of its key under way waits for the next one,
    which starts when that one ends and serves everyone who arrived meanwhile. So at most two reads
    of a key run or wait at any time, however many callers there are, and nothing is cached."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}
        self._next: dict[K, asyncio.Task[V]] = {}
        self.reads = 0  # reads made, for the tests and the figures

    async def get(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        task = self._next.get(key)
        if task is None:
            task = asyncio.create_task(self._read(key, self._running.get(key), read), name=f"console-read-{key}")
            task.add_done_callback(_retrieve)
            self._next[key] = task
        # a caller that goes away (its client disconnected) leaves the read to the others
        return await asyncio.shield(task)

    async def _read(self, key: K, before: asyncio.Task[V] | None, read: Callable[[], Awaitable[V]]) -> V:
        if before is not None:
            await asyncio.wait([before])
        me = asyncio.current_task()
        if self._next.get(key) is me:  # callers from now on wait for the read after this one
            del self._next[key]
        self._running[key] = me  # type: ignore[assignment]
        try:
            self.reads += 1
            return await read()
        finally:
            if self._running.get(key) is me:
                del self._running[key]


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Its error was given to every caller; retrieved here too, so that a read whose callers all left
    is not reported as an unretrieved exception."""
    if not task.cancelled():
        task.exception()
