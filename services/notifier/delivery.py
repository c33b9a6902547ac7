"""Delivering stored notifications of the external channels (webhook, e-mail, SMS): retries with
exponential back-off, then a final state.

A notification is stored before its event is acknowledged; this loop only moves stored ones from
``pending`` to ``delivered`` (the receiver, SMTP server or SMS gateway accepted it), or to
``failed`` after ``max_attempts`` (the error kept). A channel with no server configured is
stored ``failed`` by the composer and never claimed; if one is claimed all the same (stored by a
replica that has the server, tried by one that has not), it fails at once with the reason.
A claim is a lease: if the process dies mid-attempt, the notification is due again when the
lease ends. Taking one is an insert under a unique key (``NotifierRepository.claim_due``), so of
several workers, in one process or several, exactly one sends each attempt on every store.
Inbox notifications are not sent: they are ``unread`` until read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from services.common.operations import DELIVERY_ATTEMPTS, NOTIFICATIONS_FINAL
from services.common.settings import NotifierSettings
from services.notifier import mail, sms, webhook
from services.notifier.channels import DeliveryError, NotConfigured, mask_address
from services.notifier.repository import NotifierRepository

log = logging.getLogger(__name__)


def backoff(attempts: int, settings: NotifierSettings) -> timedelta:
    """The wait after the ``attempts``-th failure: base, 2 x base, 4 x base ... capped."""
    return timedelta(seconds=min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempts - 1)))


class Deliverer:
    def __init__(self, repository: NotifierRepository, settings: NotifierSettings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.repository, self.settings, self.clock = repository, settings, clock
        longest = max(settings.webhook_timeout_s, settings.smtp_timeout_s, settings.sms_timeout_s)
        self._lease = timedelta(seconds=longest * 3 + 5)
        self._wake = asyncio.Event()
        self._said_not_configured: set[str] = set()

    def wake(self, after_s: float = 0.0) -> None:
        """Asks for a delivery round now (notifications to send stored) or after ``after_s`` (a retry due)."""
        if after_s <= 0:
            self._wake.set()
        else:
            asyncio.get_running_loop().call_later(after_s, self._wake.set)

    async def deliver_due(self, client: httpx.AsyncClient, stop: asyncio.Event | None = None) -> int:
        """Attempts every notification due now, ``delivery_concurrency`` at a time; returns how many.

        Claims are taken one after another (an idle poll costs one query); attempts run at once.
        Once ``stop`` is set no more are claimed (a backlog of thousands must not hold up a stop).
        """
        limit = asyncio.Semaphore(self.settings.delivery_concurrency)
        running: set[asyncio.Task[None]] = set()
        attempts = 0
        while stop is None or not stop.is_set():
            await limit.acquire()
            if stop is not None and stop.is_set():
                limit.release()
                break
            notification = await self.repository.claim_due(self.clock(), self._lease)
            if notification is None:
                limit.release()
                break
            attempts += 1
            task = asyncio.create_task(self._attempt(client, notification))
            running.add(task)
            task.add_done_callback(running.discard)
            task.add_done_callback(lambda _: limit.release())
        if running:
            await asyncio.gather(*running)
        return attempts

    async def _send(self, client: httpx.AsyncClient, notification: dict[str, object]) -> None:
        channel = notification.get("channel")
        if channel == "webhook":
            await webhook.post(client, notification, self.settings.webhook_secret.get_secret_value().encode(),
                               self.clock())
        elif channel == "email":
            await mail.send(notification, self.settings, self.clock())
        elif channel == "sms":
            await sms.send(client, notification, self.settings)
        else:
            raise NotConfigured(f"渠道 {channel!r} 无法投递 / no such channel")

    async def _attempt(self, client: httpx.AsyncClient, notification: dict[str, object]) -> None:
        number = int(str(notification.get("attempts") or 0)) + 1
        ident = str(notification["_id"])
        claim = int(str(notification["claim"]))
        channel = str(notification.get("channel"))
        try:
            await self._send(client, notification)
        except DeliveryError as exc:
            now = self.clock()
            final = isinstance(exc, NotConfigured) or number >= self.settings.max_attempts
            wait = backoff(number, self.settings)
            await self.repository.attempt_failed(ident, number, str(exc), now, None if final else now + wait,
                                                 claim=claim)
            DELIVERY_ATTEMPTS.labels(channel=channel, outcome="failed").inc()
            if final:
                NOTIFICATIONS_FINAL.labels(channel=channel, status="failed").inc()
            if not final:
                self.wake(wait.total_seconds())
            to = mask_address(channel, str(notification.get("address") or ""))
            if isinstance(exc, NotConfigured):
                # said once per channel (and at start): a backlog would otherwise repeat it per notification
                level = logging.DEBUG if channel in self._said_not_configured else logging.WARNING
                self._said_not_configured.add(channel)
                log.log(level, "%s %s to %s failed: %s", channel, ident, to, exc)
                return
            log.warning("%s %s to %s attempt %d/%d failed%s: %s", channel, ident, to, number,
                        self.settings.max_attempts, " (final)" if final else "", exc)
            return
        await self.repository.delivered(ident, number, self.clock(), claim=claim)
        DELIVERY_ATTEMPTS.labels(channel=channel, outcome="delivered").inc()
        NOTIFICATIONS_FINAL.labels(channel=channel, status="delivered").inc()

    async def run(self, stop: asyncio.Event) -> None:
        """Delivers due notifications until ``stop`` is set: when woken, and every ``poll_interval_s``
        anyway (for work another replica left, or a lease that ran out after a crash)."""
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_s) as client:
            while not stop.is_set():
                try:
                    await self.deliver_due(client, stop)
                except Exception:  # the loop must outlive a store hiccup; nothing is lost, only delayed
                    log.exception("delivering notifications failed; retrying")
                self._wake.clear()
                stopping = asyncio.ensure_future(stop.wait())
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({stopping, woken}, timeout=self.settings.poll_interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                woken.cancel()
