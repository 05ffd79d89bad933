"""Webhook delivery: POST each due queued event to its webhook (DESIGN §6).

The ingest path queues deliveries in the same transaction that stores the
event (``Store.insert_rows(rows, webhook_jobs)``); the store fans each job
out to the enabled webhooks that want its event name, and collapses jobs
that share a batch key within their window. This component only drains the
queue: every ``poll_interval`` it asks the store for due deliveries, POSTs
them with one shared ``aiohttp.ClientSession`` and records the outcome
(status, HTTP status, error, latency).

Several daemons may drain one store (PostgreSQL, or processes sharing one
SQLite file): each dispatcher claims the due deliveries under its own holder
id (``Store.claim_deliveries``) before it POSTs them, so no two send the same
one. A claim lapses after its lease, long enough for the whole page to be
sent at the configured timeouts, so the deliveries of a dispatcher that died
are taken up again.

A failed delivery is final unless the webhook opted into retries
(``retries`` > 0): then it is re-queued with exponential back-off. Delivery
is at-least-once: a crash between the POST and the record re-sends it, and
the ``X-Tuiaudit-Delivery`` id lets a receiver drop the duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from tuiaudit.daemon.logs import log_event
from tuiaudit.daemon.schedule import wait_first
from tuiaudit.safe_text import redact_text
from tuiaudit.storage.base import Store, StoreError, Webhook, WebhookDelivery
from tuiaudit.timeutil import utcnow
from tuiaudit.webhook_payload import delivery_headers, encode_body

log = logging.getLogger("tuiaudit.daemon.webhooks")

CONNECT_TIMEOUT_S = 10.0
TOTAL_TIMEOUT_S = 30.0
BACKOFF_INITIAL_S = 10.0
BACKOFF_MAX_S = 3600.0
MAX_CONCURRENT = 8  # in-flight POSTs per dispatcher: one slow receiver must not stall the rest
MAX_ERROR_CHARS = 500
LEASE_MARGIN_S = 60.0


def backoff_delay(attempt: int, *, initial: float = BACKOFF_INITIAL_S) -> float:
    """Seconds before retry number ``attempt`` (1-based): 10 s, 20 s, 40 s … capped at 1 h."""
    return min(BACKOFF_MAX_S, initial * 2.0 ** max(0, attempt - 1))


class WebhookDispatcher:
    """Drains the webhook queue of one store; a daemon component (``run(stop)``)."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        poll_interval: float = 1.0,
        batch_limit: int = 100,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        total_timeout: float = TOTAL_TIMEOUT_S,
        backoff_initial: float = BACKOFF_INITIAL_S,
        lease_s: float | None = None,
    ) -> None:
        self.store = store
        self.session = session
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.batch_limit = batch_limit
        self.timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self.backoff_initial = backoff_initial
        self.delivered = 0
        self.failed = 0
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._unrecorded: dict[int, dict[str, Any]] = {}
        """Outcomes the store could not take (it was down): written at the next poll, so
        a delivery that went out is not left claimed until its lease lapses (the fleet
        run: a PostgreSQL restart between a POST and its record held it 450 s)."""
        self.holder = f"webhooks-{uuid.uuid4()}"
        if lease_s is None:
            # A claimed page goes out MAX_CONCURRENT at a time, each POST bounded by
            # the total timeout; the margin covers the store writes in between.
            rounds = math.ceil(batch_limit / MAX_CONCURRENT)
            lease_s = rounds * total_timeout + LEASE_MARGIN_S
        self.lease_s = lease_s

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and deliver until ``stop`` is set; store outages are logged, not fatal."""
        log_event(log, "webhooks-started", poll_interval=self.poll_interval)
        while not stop.is_set():
            try:
                done = await self.deliver_due()
            except StoreError as exc:
                log_event(log, "webhooks-store-error", logging.WARNING, error=str(exc))
                done = 0
            if done >= self.batch_limit and not stop.is_set():
                continue  # a full page: more may be due right now
            await self._wait(stop)
        log_event(log, "webhooks-stopped", delivered=self.delivered, failed=self.failed)

    async def _wait(self, stop: asyncio.Event) -> None:
        await wait_first(self.sleep, self.poll_interval, stop)

    async def deliver_due(self) -> int:
        """Claim and attempt the deliveries due now; return how many were attempted."""
        for delivery_id, outcome in list(self._unrecorded.items()):
            await self.store.record_delivery(delivery_id, **outcome)
            del self._unrecorded[delivery_id]
        now = self.clock()
        # A read-only peek first: an idle poll must not take the write lock or
        # wake every dashboard with a change notification.
        if not await self.store.due_deliveries(now, 1):
            return 0
        # The webhooks before the claim: a store failure between claiming and
        # sending would leave deliveries claimed, unsent, for the whole lease (the
        # fleet run: a PostgreSQL restart did, 450 s).
        hooks = {hook.id: hook for hook in await self.store.list_webhooks()}
        due = await self.store.claim_deliveries(
            now, holder=self.holder, limit=self.batch_limit, lease_s=self.lease_s
        )
        if not due:
            return 0  # another dispatcher holds them
        results = await asyncio.gather(
            *(self._deliver(d, hooks.get(d.webhook_id), now) for d in due),
            return_exceptions=True,  # let every POST finish before reporting a store failure
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(due)

    async def _deliver(
        self, delivery: WebhookDelivery, hook: Webhook | None, now: datetime
    ) -> None:
        if hook is None or not hook.enabled:
            # Queued before the webhook was removed or disabled: it receives nothing.
            reason = "webhook removed" if hook is None else "webhook disabled"
            await self._record(delivery, "failed", None, f"{reason}: not sent", None, None)
            self.failed += 1
            return

        http_status: int | None = None
        error: str | None = None
        async with self._slots:
            started = time.perf_counter()
            try:
                # Built inside the try: whatever an event holds, its delivery is
                # recorded (failed), never left claimed to crash the next lease.
                body = encode_body(delivery.event)
                headers = delivery_headers(body, secret=hook.secret, delivery_id=delivery.id)
                async with self.session.post(
                    hook.url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,  # a signed body goes only where it was configured
                ) as resp:
                    http_status = resp.status
                    await resp.read()
            except TimeoutError:
                t = self.timeout
                error = f"timed out (limits: connect {t.connect:g} s, total {t.total:g} s)"
            except aiohttp.ClientError as exc:
                detail = redact_text(str(exc), hook.url)
                error = f"{exc.__class__.__name__}: {detail}" if detail else exc.__class__.__name__
            except Exception as exc:  # e.g. a URL or header aiohttp refuses: fail this one only
                error = f"cannot send: {exc.__class__.__name__}: {redact_text(str(exc), hook.url)}"
            latency_ms = (time.perf_counter() - started) * 1000.0

        if http_status is not None and 200 <= http_status < 300:
            self.delivered += 1
            await self._record(delivery, "delivered", http_status, None, latency_ms, None)
            log_event(
                log,
                "webhook-delivered",
                delivery_id=delivery.id,
                webhook_id=hook.id,
                http_status=http_status,
            )
            return

        if error is None:
            error = f"HTTP {http_status}"
            if http_status is not None and 300 <= http_status < 400:
                error += " (redirects are not followed: configure the final URL)"
        attempt = delivery.attempts + 1
        retry_at = None
        if attempt <= hook.retries:
            retry_at = now + timedelta(seconds=backoff_delay(attempt, initial=self.backoff_initial))
        self.failed += 1
        await self._record(
            delivery,
            "pending" if retry_at else "failed",
            http_status,
            error[:MAX_ERROR_CHARS],
            latency_ms,
            retry_at,
        )
        log_event(
            log,
            "webhook-failed",
            logging.WARNING,
            delivery_id=delivery.id,
            webhook_id=hook.id,
            http_status=http_status,
            attempt=attempt,
            retry=retry_at is not None,
            error=error[:MAX_ERROR_CHARS],
        )

    async def _record(
        self,
        delivery: WebhookDelivery,
        status: str,
        http_status: int | None,
        error: str | None,
        latency_ms: float | None,
        retry_at: datetime | None,
    ) -> None:
        outcome: dict[str, Any] = {
            "status": status,
            "http_status": http_status,
            "error": error,
            "latency_ms": latency_ms,
            "retry_at": retry_at,
        }
        try:
            await self.store.record_delivery(delivery.id, **outcome)
        except StoreError:
            self._unrecorded[delivery.id] = outcome
            raise
