"""What a consumer does with a message it cannot process: wait out an outage, retry, or park it
with the reason.

* Malformed input (it will never parse) is parked at once on the consumer's dead-letter queue,
  the original body unchanged and the reason in headers, then acknowledged.
* A failure because the store or the broker is unreachable (:func:`outage`: PyMongo's
  ``ConnectionFailure`` family, the embedded store's FerretDB saying its PostgreSQL is gone, a
  refused or reset connection, a publish the broker did not confirm, or any failure once this
  process has given up on its store) is not the message's fault: the delivery is held,
  unacknowledged, and handled again in this process with back-off (0.5 s doubling to 5 s) until it
  succeeds. It never goes back to the queue for it, since a quorum queue counts every requeue
  toward ``x-delivery-limit`` and would park it after five quick failures. The consumer's prefetch
  bounds how many wait; the log says once that they wait and once that they went on (a WARNING a
  minute while it lasts). If the service stops meanwhile (a SIGTERM, or its embedded store gone),
  the held deliveries go back to the queue: one delivery counted per stop, not one per attempt.
* Any other failure (the message's own content, or a race that may pass: an event that arrived
  before the one it depends on) is negatively acknowledged with requeue; the quorum queue counts
  deliveries, and the attempt before the broker's own limit parks the message with the error
  instead, so the reason is kept.
* If the process dies, the unacknowledged message is redelivered; if it kept dying, the broker's
  delivery limit dead-letters it (``x-death`` says so).
* If the connection to the broker is lost while a delivery is handled, its acknowledgement cannot
  be sent: the broker requeues it and delivers it again once the service has reconnected, and the
  handlers, which de-duplicate by message id, store nothing twice. That is logged at DEBUG only;
  the connection's loss and return are logged once each (``services.common.connection``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiormq.exceptions import DeliveryError
from aiormq.exceptions import PublishError as ReturnedError
from faststream import AckPolicy, StreamMessage
from faststream.rabbit import RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from pydantic import TypeAdapter, ValidationError

from services.common import storage
from services.common.connection import ConnectionLostError, causes, connection_lost, unless_connection_lost
from services.common.logs import bind_subject
from services.common.messages import ROUTED_ITEM_TYPE, AnyCommand, AnyEvent, RoutedItem, item_routed
from services.common.topology import DEAD, DELIVERY_LIMIT, EVENTS, dead_letter_key, parked_headers

log = logging.getLogger(__name__)
ANY_EVENT = TypeAdapter[Any](AnyEvent)
ANY_COMMAND = TypeAdapter[Any](AnyCommand)

# (AMQP type, body) -> the message; raises pydantic's ValidationError on a body that does not fit
Decoder = Callable[[str | None, bytes], Any]


def decode_event(message_type: str | None, body: bytes) -> Any:
    """An event from ``zeroerrand.events``. A routed item (AMQP type ``approval.item``, a
    ``RoutedItem`` the exchange binding brings over from ``zeroerrand.items``) is the
    ``item.routed`` event it stands for, with the same id on every copy (``item_routed``)."""
    if message_type == ROUTED_ITEM_TYPE:
        return item_routed(RoutedItem.model_validate_json(body))
    return ANY_EVENT.validate_json(body)


def decode_command(message_type: str | None, body: bytes) -> Any:
    """A request to the ledger from ``zeroerrand.requests`` (its body says its type)."""
    return ANY_COMMAND.validate_json(body)




async def keep_message(message: StreamMessage[Any]) -> StreamMessage[Any]:
    """A subscriber decoder that hands the handler the whole message (body, headers, the AMQP
    properties and its ack), decoding nothing: a body that is not even JSON must reach the
    handler, to be parked with the reason. The handler then needs no dependency injection, so
    the consumers' brokers run without it (``apply_types=False``): a quarter of the notifier's
    CPU per event went to resolving the one parameter."""
    return message


def delivery_count(raw_message: Any) -> int:
    """How many times the quorum queue delivered this message before (0 on first delivery)."""
    headers = getattr(raw_message, "headers", None) or {}
    value = headers.get("x-delivery-count", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def is_last_attempt(raw_message: Any) -> bool:
    return delivery_count(raw_message) + 1 >= DELIVERY_LIMIT


# Characters a reason must not carry into a header or a log line as they are: controls (a line
# break forges a log line, an escape sequence rewrites a terminal), line and paragraph separators,
# and the bidirectional overrides that make text read other than it is stored.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MAX_REASON_CHARS = 2000


def printable(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` with every unsafe character written as ``\\uXXXX`` and cut to ``limit`` characters."""
    safe = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return safe if len(safe) <= limit else safe[:limit - 1] + "…"


def invalid_summary(exc: ValidationError, *, most: int = 10, part: int = 64) -> str:
    """What is wrong with a message, error by error: where (each part of the path cut to ``part``
    characters: a key can be as long as the body) and why; no input values, no help links."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False)[:most]:
        where = ".".join(printable(str(p), part) for p in error["loc"]) or "（整体）"
        lines.append(f"{where}: {printable(error['msg'], 300)}")
    more = exc.error_count() - len(lines)
    return "; ".join(lines) + (f"; ……另有 {more} 处 / {more} more" if more > 0 else "")


async def park(broker: RabbitBroker, queue: RabbitQueue, raw_message: Any, *, kind: str, reason: str) -> None:
    """Publishes the original message to ``queue``'s dead-letter queue with the reason (confirmed)."""
    reason = printable(reason)
    headers = parked_headers(getattr(raw_message, "headers", None) or {}, queue, kind=kind, reason=reason,
                             publisher=getattr(raw_message, "user_id", None))
    await broker.publish(
        raw_message.body,
        exchange=DEAD,
        routing_key=dead_letter_key(queue),
        persist=True,
        mandatory=True,
        message_id=getattr(raw_message, "message_id", None),
        message_type=getattr(raw_message, "type", None),
        content_type=getattr(raw_message, "content_type", None),
        headers=headers,
    )
    log.warning("parked message %s from %s (%s): %s", printable(str(getattr(raw_message, "message_id", None)), 200),
                queue.name, kind, reason)


async def park_if_too_large(broker: RabbitBroker, queue: RabbitQueue, raw_message: Any, body: bytes,
                            max_bytes: int) -> bool:
    """Parks a body larger than ``max_bytes`` unread (kind ``too_large``, the size and the limit in
    the reason); True if it did. Checked before decoding: a huge body costs nothing to refuse."""
    if len(body) <= max_bytes:
        return False
    await park(broker, queue, raw_message, kind="too_large",
               reason=f"消息有 {len(body):,} 字节，超过队列 {queue.name} 的上限 {max_bytes:,} 字节，未读取 / "
                      f"message too large: {len(body)} > {max_bytes} bytes")
    return True


# -- outages: the store or the broker unreachable -----------------------------------------------

def outage(error: BaseException) -> str | None:
    """What is unreachable when ``error`` (or what caused it) says the store or the broker is, not
    the message: ``"store"`` (``storage.store_outage``), ``"broker"`` (the connection or a channel
    lost, a publish the broker nacked; a returned one is unroutable, not an outage), or None (the
    failure is the message's own, or a race). Once this process has given up on its store
    (``storage.store_lost``), every failure is the outage's."""
    if storage.store_outage(error):
        return "store"
    for cause in causes(error):
        if isinstance(cause, DeliveryError) and not isinstance(cause, ReturnedError):
            return "broker"
        if connection_lost(cause):
            return "broker"
    if storage.store_lost() is not None:
        return "store"
    return None


OUTAGE_FIRST_DELAY_S = 0.5
OUTAGE_MAX_DELAY_S = 5.0
OUTAGE_STILL_EVERY_S = 60.0


class OutageLog:
    """What a process says about deliveries held for an outage: a WARNING when the first is held,
    an INFO when none is held any more (how long, how many), a WARNING a minute in between; never
    a line per delivery or per attempt."""

    def __init__(self) -> None:
        self.held = 0
        self.total = 0
        self.went_back = 0
        self._since: float | None = None
        self._said_at = 0.0

    def hold(self, queue: str, what: str, error: BaseException) -> None:
        """A delivery starts waiting."""
        self.held += 1
        self.total += 1
        if self._since is None:
            self._since = self._said_at = time.monotonic()
            log.warning("%s不可达：消息留在本进程中，恢复后处理，不退回队列、不计投递次数 / %s unreachable: "
                        "deliveries are held and retried until it is back (first from %s): %s",
                        "存储" if what == "store" else "RabbitMQ", what, queue, printable(repr(error), 300))

    def still(self, what: str, error: BaseException) -> None:
        """An attempt of a held delivery failed again."""
        now = time.monotonic()
        if self._since is not None and now - self._said_at >= OUTAGE_STILL_EVERY_S:
            self._said_at = now
            log.warning("%s still unreachable after %.0f s, %d deliveries held: %s", what, now - self._since,
                        self.held, printable(repr(error), 300))

    def released(self, went_back: bool) -> None:
        """A held delivery was handled (or failed for its own reason), or went back to its queue."""
        self.held -= 1
        self.went_back += went_back
        if self.held == 0 and self._since is not None:
            log.info("no delivery held any more after %.1f s: %d handled once the outage was over, %d given back to "
                     "their queues as the service stopped", time.monotonic() - self._since,
                     self.total - self.went_back, self.went_back)
            self._since, self.total, self.went_back = None, 0, 0


OUTAGES = OutageLog()


class HeldAtStop(Exception):
    """The service stopped (or the delivery's channel closed) while the delivery waited out an outage."""


async def through_outages(attempt: Callable[[], Awaitable[None]], raw_message: Any, queue: str,
                          stopping: asyncio.Event) -> BaseException | None:
    """Runs ``attempt`` until it does not fail for an outage: None when it succeeded, else the error
    of a failure that is the message's (for :func:`retry_or_park`). While the store or the broker is
    unreachable it is run again with back-off, the delivery held (see the module).
    ``HeldAtStop`` if ``stopping`` is set, or the delivery's channel closes, first."""
    delay = OUTAGE_FIRST_DELAY_S
    holding = False
    went_back = False
    try:
        while True:
            try:
                if holding:  # a retry gives way to a stop at once: it can only fail again meanwhile
                    await _unless_stopping(attempt(), stopping)
                else:
                    await attempt()
                return None
            except HeldAtStop:
                went_back = True
                raise
            except asyncio.CancelledError:
                went_back = holding
                raise
            except Exception as exc:
                what = outage(exc)
                if what is None:
                    return exc
                if delivery_lost(raw_message):
                    went_back = True
                    raise HeldAtStop("the delivery went with its channel") from exc
                if not holding:
                    holding = True
                    OUTAGES.hold(queue, what, exc)
                else:
                    OUTAGES.still(what, exc)
                log.debug("message %s on %s held for an outage (%s): %r", getattr(raw_message, "message_id", None),
                          queue, what, exc)
            if stopping.is_set():
                went_back = True
                raise HeldAtStop("the service is stopping")
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, OUTAGE_MAX_DELAY_S)
    finally:
        if holding:
            OUTAGES.released(went_back)


async def _unless_stopping(work: Awaitable[None], stopping: asyncio.Event) -> None:
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise HeldAtStop("the service is stopping")
    task.result()


RETRY_BASE_DELAY_S = 0.2


async def retry_or_park(broker: RabbitBroker, queue: RabbitQueue, message: Any, error: BaseException) -> None:
    """After a failed attempt: requeue it, or on the last attempt park it with the error.

    The requeue waits 0.2 s, 0.4 s, 0.8 s ... first, so a cause that passes (an event that
    arrived before the one it depends on, a store restarting) has time to pass. If even parking
    fails (the broker is in trouble), the message is requeued and the broker's delivery limit
    dead-letters it; it is never acknowledged without being kept somewhere. If the attempt failed
    because the connection was lost with the delivery, nothing is left to do: the broker delivers
    it again.
    """
    raw = message.raw_message
    if delivery_lost(raw):
        return
    if is_last_attempt(raw):
        try:
            await park(broker, queue, raw, kind="processing_failed",
                       reason=f"处理反复失败 / processing failed {DELIVERY_LIMIT} times: {error!r}")
        except Exception as exc:
            if not connection_lost(exc):
                log.exception("parking a failed message from %s failed; requeueing it", queue.name)
        else:
            await ack(message)
            return
    await asyncio.sleep(RETRY_BASE_DELAY_S * 2 ** delivery_count(raw))
    await requeue(message)


def delivery_lost(raw_message: Any) -> bool:
    """Whether the channel this delivery came on, or its connection, is closed: it can be neither
    acknowledged nor requeued any more, and the broker has requeued it itself."""
    try:
        channel = raw_message.channel  # aio-pika raises ChannelInvalidStateError once it is closed
    except Exception:
        return True
    return bool(getattr(channel, "is_closed", False) or getattr(getattr(channel, "connection", None), "is_closed", False))


async def ack(message: Any) -> None:
    """Acknowledges a delivery on the channel it came on; ``ConnectionLostError`` if that channel
    went with the connection (then the broker delivers it again)."""
    await _settle(message, requeue=None)


async def requeue(message: Any) -> None:
    """Gives a delivery back to its queue (``basic.nack`` with requeue), as :func:`ack` does."""
    await _settle(message, requeue=True)


async def _settle(message: Any, *, requeue: bool | None) -> None:
    raw = message.raw_message
    if delivery_lost(raw):
        raise ConnectionLostError(f"delivery {getattr(raw, 'message_id', None)} went with its channel")
    work = message.ack() if requeue is None else message.nack(requeue=requeue)
    await unless_connection_lost(work, getattr(raw.channel, "connection", None))


def failure_level(error: BaseException, expected: tuple[type[BaseException], ...] = (LookupError,)) -> int:
    """How loud a handler's failure is: DEBUG for the lost connection (logged once by the
    connection itself), INFO for ``expected`` races, WARNING for anything else."""
    if connection_lost(error):
        return logging.DEBUG
    return logging.INFO if isinstance(error, expected) else logging.WARNING


# How long a stopping service lets work in flight finish before it cancels it: every service must
# exit within 10 s of SIGTERM at any load, and closing the store takes up to 4.5 s more.
SHUTDOWN_GRACE_S = 4.0
# Once the process has given up on its store, what is in flight cannot finish: it goes back sooner.
STORE_LOST_GRACE_S = 0.5
# A background loop (webhook delivery, overdue sweep) is told to stop before the deliveries are
# drained, and notices at its next step; this long more, then one still busy is cancelled.
BACKGROUND_GRACE_S = 0.5


async def finish_or_cancel(tasks: set[asyncio.Task[Any]], grace_s: float | None, what: str) -> None:
    """Waits for ``tasks`` up to ``grace_s`` (``None``: for as long as they take), then cancels
    those still running and waits for them to unwind."""
    loop = asyncio.get_running_loop()
    deadline = None if grace_s is None else loop.time() + grace_s
    while pending := {task for task in tasks if not task.done()}:
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("stopping: %d %s not finished in %g s were cancelled", len(pending), what, grace_s)
            return
        await asyncio.wait(pending, timeout=remaining)


class Inflight:
    """Deliveries being handled in their own tasks, so a consumer overlaps its I/O waits.

    The subscriber returns at once and FastStream hands over the next delivery; how many are in
    flight is bounded by the channel's prefetch, since each is acknowledged only when done.
    Every task's outcome is read when it ends: an acknowledgement that could not be sent because
    the connection was lost is a DEBUG line (the broker delivers the message again), anything
    else that escaped a handler is an ERROR with its traceback, never an asyncio "Task exception
    was never retrieved".
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        # set when the service starts stopping: deliveries held for an outage go back to their queue
        self.stopping = asyncio.Event()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        if connection_lost(error):
            log.debug("a delivery was left unacknowledged by the lost connection; the broker delivers it again: %r",
                      error)
        else:
            log.error("handling a delivery failed outside its handler", exc_info=error)

    async def drain(self, grace_s: float | None = None) -> None:
        """Waits until every started delivery is acknowledged or requeued; after ``grace_s`` the rest
        are cancelled. Those were never acknowledged, so the broker hands them out again once this
        consumer's channel closes, and their handlers are idempotent by message id: nothing is lost
        or done twice, only done by the next consumer. Deliveries held for an outage are given back
        at once."""
        self.stopping.set()
        if storage.store_lost() is not None:  # nothing in flight can finish without the store
            grace_s = STORE_LOST_GRACE_S if grace_s is None else min(grace_s, STORE_LOST_GRACE_S)
        try:
            await finish_or_cancel(self._tasks, grace_s, "deliveries")
        finally:
            self.stopping.clear()  # a service started again in this process holds through outages again


async def stop_background(task: asyncio.Task[Any] | None, grace_s: float, what: str) -> None:
    """Waits up to ``grace_s`` for a background loop that was asked to stop, then cancels it."""
    if task is not None:
        await finish_or_cancel({task}, grace_s, what)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("%s ended with an error while stopping: %r", what, task.exception())


def consume_events(broker: RabbitBroker, queue: RabbitQueue, inflight: Inflight,
                   handle: Callable[..., Awaitable[None]], *, description: str, max_bytes: int,
                   exchange: RabbitExchange = EVENTS, decode: Decoder = decode_event,
                   trusted_publishers: frozenset[str] | None = None, pass_publisher: bool = False) -> Any:
    """Subscribes ``handle`` to ``exchange`` (default ``zeroerrand.events``) on ``queue``: the
    consumer pattern of the notifier and the evaluation service (events, and the ledger's requests).

    A body larger than ``max_bytes`` is parked at once, unread (kind ``too_large``). Each delivery
    is decoded with ``decode`` (else parked at once with the reason), handled in its own task, and
    acknowledged only after ``handle(message, final_attempt)`` returns; a failure is retried with
    back-off and parked with the error on its last attempt (``final_attempt`` tells the handler it
    is the last one), but a failure because the store or the broker is unreachable is waited out in
    this process (:func:`through_outages`) and never counted. With ``trusted_publishers``, a
    message whose AMQP ``user_id`` (which RabbitMQ validates against the publishing connection's
    user) is not one of them is parked at once, unread: only the router and the ledger may announce
    what happened. With ``pass_publisher``, ``handle`` also gets that ``user_id`` (None if the
    message has none): the ledger ties a unit system's requests to its unit by it. Returns the
    subscriber, which the service stops first on shutdown before draining ``inflight``.
    """
    subscriber = broker.subscriber(queue, exchange, ack_policy=AckPolicy.MANUAL, decoder=keep_message,
                                   title=exchange.name, description=description)

    async def process(message: RabbitMessage) -> None:
        raw = message.raw_message
        publisher = getattr(raw, "user_id", None)
        if trusted_publishers is not None and publisher not in trusted_publishers:
            trusted = ", ".join(sorted(trusted_publishers))
            await park(broker, queue, raw, kind="untrusted_publisher",
                       reason=f"发布者 {publisher!r} 不是可信的服务（只接受 {trusted} 发布的事件），"
                              f"单位应向 zeroerrand.requests 提交请求 / untrusted publisher")
            await ack(message)
            return
        if await park_if_too_large(broker, queue, raw, message.body, max_bytes):
            await ack(message)
            return
        try:
            decoded: Any = decode(getattr(raw, "type", None), message.body)
        except ValidationError as exc:
            await park(broker, queue, raw, kind="invalid_message",
                       reason=f"消息格式无效 / invalid message: {invalid_summary(exc)}")
            await ack(message)
            return
        final = is_last_attempt(raw)

        async def attempt() -> None:
            if pass_publisher:
                await handle(decoded, final, publisher)
            else:
                await handle(decoded, final)

        with bind_subject(decoded):  # its log lines carry project_code and item_code
            try:
                failed = await through_outages(attempt, raw, queue.name, inflight.stopping)
            except HeldAtStop as exc:
                log.debug("message %s on %s held for an outage goes back to its queue: %s",
                         printable(str(getattr(raw, "message_id", None)), 200), queue.name, exc)
                if not delivery_lost(raw):
                    await requeue(message)
                return
            if failed is not None:
                ident = getattr(decoded, "event_id", None) or getattr(decoded, "request_id", None)
                # a LookupError is the expected race of events that arrive before what they refer to
                # (an item.ready before its item.routed): retried at once, so not worth a warning
                log.log(failure_level(failed), "message %s (%s) on %s not handled yet: %r", ident, decoded.type,
                        queue.name, failed)
                await retry_or_park(broker, queue, message, failed)
                return
            await ack(message)

    @subscriber
    async def on_event(message):  # type: ignore[no-untyped-def]  # no annotation: nothing for FastDepends to do
        inflight.start(process(message))

    return subscriber
