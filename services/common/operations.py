"""What a service process shows its operators: Prometheus metrics, ``/metrics`` and ``/health``.

The counters are counted where the work is done (router, bus, notifier, ledger); this module
defines them, samples each consumed queue's depth (consumer lag) with a passive declare every few
seconds, and serves one small HTTP endpoint per process (``zeroerrand up`` runs every service in
one process, so one endpoint serves them all):

* ``GET /metrics``: every metric in Prometheus' text format;
* ``GET /health``: 200 and ``{"broker": "ok", "store": "ok"}`` when every service's broker
  connection is open and every store answers a ping within ``ZEROERRAND_HEALTH_TIMEOUT_S`` (1 s);
  else 503, the same keys naming what is unreachable (``"unreachable: ..."``).

The server is a few lines of asyncio (two GET paths, no keep-alive): nothing the services do
depends on it, and it must not need a web framework's start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.common.settings import OperationsSettings

log = logging.getLogger(__name__)

# -- the metrics ------------------------------------------------------------------------------

ITEMS_ROUTED = Counter("zeroerrand_items_routed", "Items the router routed and published, by mode", ["mode"])
ITEMS_UNROUTABLE = Counter("zeroerrand_items_unroutable", "Planned items no rule could place (item.unroutable)")
AGREEMENTS_REJECTED = Counter("zeroerrand_agreements_rejected", "Signed agreements the router found not eligible")
PUBLISH_CONFIRM_SECONDS = Histogram(
    "zeroerrand_publish_confirm_seconds", "From writing a batch to the broker to its last publisher confirm",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
NOTIFICATIONS_STORED = Counter("zeroerrand_notifications_stored", "Notifications stored, by channel", ["channel"])
NOTIFICATIONS_FINAL = Counter(
    "zeroerrand_notifications_final", "Notifications that reached a final state (delivered or failed), by channel",
    ["channel", "status"])
DELIVERY_ATTEMPTS = Counter("zeroerrand_notification_delivery_attempts",
                            "Attempts to send a notification (webhook, e-mail, SMS), by channel and outcome",
                            ["channel", "outcome"])
OVERDUE_EVENTS = Counter("zeroerrand_overdue_events", "Overdue warnings announced (item.overdue), by level", ["level"])
LEDGER_REQUESTS = Counter("zeroerrand_ledger_requests",
                          "Requests to the ledger by outcome (applied, refused, duplicate)", ["outcome"])
QUEUE_READY = Gauge("zeroerrand_queue_messages_ready",
                    "Messages ready (not yet delivered) in a queue this process consumes, sampled", ["queue"])


# -- what a process watches -------------------------------------------------------------------


@dataclass
class Watched:
    """One service's broker, the queues it consumes and (a function giving) its store, if it has one."""

    name: str
    broker: Any  # a FastStream RabbitBroker; None: the service's broker is not watched (the console's)
    queues: Sequence[str] = ()
    store: Callable[[], Any] = field(default=lambda: None)  # -> services.common.storage.Store | None


def broker_connected(broker: Any) -> bool:
    """Whether the broker's (robust) connection is open now."""
    connection = getattr(broker, "_connection", None)
    if connection is None or getattr(connection, "is_closed", True):
        return False
    connected = getattr(connection, "connected", None)
    return bool(connected.is_set()) if isinstance(connected, asyncio.Event) else True


async def store_answers(store: Any, timeout_s: float) -> str | None:
    """None if ``store`` answers a ping within ``timeout_s``; else why not."""
    try:
        await asyncio.wait_for(store.db.command("ping"), timeout_s)
    except TimeoutError:
        return f"no answer to ping within {timeout_s:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


async def health(watched: Sequence[Watched], timeout_s: float = 1.0) -> tuple[bool, dict[str, str]]:
    """(healthy, ``{"broker": ..., "store": ...}``): each ``ok`` or ``unreachable: ...`` naming the
    services (and the reason, for a store). ``store`` is there only if some service has one."""
    down = [w.name for w in watched if w.broker is not None and not broker_connected(w.broker)]
    report = {"broker": "ok" if not down else f"unreachable: {', '.join(down)}"}
    stores: dict[int, tuple[list[str], Any]] = {}
    for w in watched:
        store = w.store()
        if store is not None:
            stores.setdefault(id(store), ([], store))[0].append(w.name)
    if stores:
        answers = await asyncio.gather(*(store_answers(store, timeout_s) for _, store in stores.values()))
        failed = [f"{'/'.join(names)} ({why})" for (names, _), why in zip(stores.values(), answers, strict=True) if why]
        report["store"] = "ok" if not failed else f"unreachable: {'; '.join(failed)}"
    return all(v == "ok" for v in report.values()), report


# -- consumer lag -----------------------------------------------------------------------------


async def queue_states(connection: Any, names: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """(consumers, messages ready) of each queue by a passive declare, on a channel of its own that
    is closed again; None for a queue that does not exist (that closes the channel: another is opened)."""
    states: dict[str, tuple[int, int] | None] = {}
    channel = await connection.channel(publisher_confirms=False)
    try:
        for name in names:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except Exception as exc:
                log.debug("passive declare of queue %s failed: %r", name, exc)
                states[name] = None
                with contextlib.suppress(Exception):
                    await channel.close()
                channel = await connection.channel(publisher_confirms=False)
                continue
            result = queue.declaration_result
            states[name] = (result.consumer_count or 0, result.message_count or 0) if result is not None else (0, 0)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return states


async def sample_queues(watched: Sequence[Watched]) -> None:
    """Sets ``zeroerrand_queue_messages_ready`` for every consumed queue of a connected broker."""
    for w in watched:
        if not w.queues or w.broker is None or not broker_connected(w.broker):
            continue
        for name, state in (await queue_states(w.broker._connection, w.queues)).items():
            if state is not None:
                QUEUE_READY.labels(queue=name).set(state[1])


async def sample_forever(watched: Sequence[Watched], interval_s: float) -> None:
    while True:
        try:
            await sample_queues(watched)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker may be away: the next round tries again
            log.debug("sampling the queues failed: %r", exc)
        await asyncio.sleep(interval_s)


# -- the endpoint -----------------------------------------------------------------------------


class OperationsServer:
    """``/metrics`` and ``/health`` on ``host:port`` (0: a free port, then in ``.port``), and the
    queue sampler; ``start`` and ``stop`` with the services."""

    def __init__(self, watched: Sequence[Watched], settings: OperationsSettings | None = None,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.watched = list(watched)
        self.settings = settings or OperationsSettings()
        self.registry = registry
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        port = self.settings.metrics_port if self.settings.metrics_port is not None else 0
        self._server = await asyncio.start_server(self._serve, self.settings.metrics_host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._sampler = asyncio.create_task(sample_forever(self.watched, self.settings.queue_sample_interval_s),
                                            name="queue-sampler")
        log.info("metrics and health at http://%s:%d/metrics and /health", self.settings.metrics_host, self.port)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
            self._sampler = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass  # the headers: nothing in them matters here
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
            status, content_type, body = await self._answer(method, path)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode("latin-1") + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET only\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/health":
            healthy, report = await health(self.watched, self.settings.health_timeout_s)
            body = json.dumps(report, ensure_ascii=False).encode()
            return ("200 OK" if healthy else "503 Service Unavailable"), "application/json", body
        return "404 Not Found", "text/plain; charset=utf-8", b"/metrics or /health\n"
