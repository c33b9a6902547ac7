"""Delivering stored webhook notifications: retries with exponential back-off, then a final state.

A notification is stored before its event is acknowledged; this loop only moves stored ones from
``pending`` to ``delivered``, or to ``failed`` after ``max_attempts`` (the error kept). A claim is
a lease: if the process dies mid-attempt, the notification is due again when the lease ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from services.common.settings import NotifierSettings
from services.notifier import webhook
from services.notifier.repository import NotifierRepository

log = logging.getLogger(__name__)


def backoff(attempts: int, settings: NotifierSettings) -> timedelta:
    """The wait after the ``attempts``-th failure: base, 2 x base, 4 x base ... capped."""
    return timedelta(seconds=min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempts - 1)))


class Deliverer:
    def __init__(self, repository: NotifierRepository, settings: NotifierSettings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.repository, self.settings, self.clock = repository, settings, clock
        self._lease = timedelta(seconds=settings.webhook_timeout_s * 3 + 5)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Attempts every notification due now; returns how many attempts were made."""
        attempts = 0
        while True:
            notification = await self.repository.claim_due(self.clock(), self._lease)
            if notification is None:
                return attempts
            attempts += 1
            await self._attempt(client, notification)

    async def _attempt(self, client: httpx.AsyncClient, notification: dict[str, object]) -> None:
        number = int(str(notification.get("attempts") or 0)) + 1
        ident = str(notification["_id"])
        try:
            await webhook.post(client, notification, self.settings.webhook_secret.get_secret_value().encode(),
                               self.clock())
        except webhook.WebhookError as exc:
            now = self.clock()
            final = number >= self.settings.max_attempts
            await self.repository.attempt_failed(ident, number, str(exc), now,
                                                 None if final else now + backoff(number, self.settings))
            log.warning("webhook %s attempt %d/%d failed%s: %s", ident, number, self.settings.max_attempts,
                        " (final)" if final else "", exc)
            return
        await self.repository.delivered(ident, number, self.clock())

    async def run(self, stop: asyncio.Event) -> None:
        """Polls for due notifications until ``stop`` is set."""
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout_s) as client:
            while not stop.is_set():
                try:
                    workers = [self.deliver_due(client) for _ in range(self.settings.delivery_concurrency)]
                    await asyncio.gather(*workers)
                except Exception:  # the loop must outlive a store hiccup; nothing is lost, only delayed
                    log.exception("delivering notifications failed; retrying")
                try:
                    await asyncio.wait_for(stop.wait(), self.settings.poll_interval_s)
                except TimeoutError:
                    pass
