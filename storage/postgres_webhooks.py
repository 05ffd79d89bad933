"""PostgreSQL webhooks: the registry, the delivery queue and its bookkeeping.

``insert_rows`` queues deliveries in the same transaction as the rows
(``_queue_webhooks``); the daemon's webhook sender then drains the due ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tuiaudit.storage.base import Webhook, WebhookDelivery, WebhookJob
from tuiaudit.storage.postgres_conn import PostgresBase, lock_key, now_utc, status_count

_DELIVERY_COLS = (
    "id, webhook_id, event, batch_key, due_at, attempts, status, http_status, error, "
    "latency_ms, delivered_at"
)


def _delivery(r: Any) -> WebhookDelivery:
    return WebhookDelivery(*r)


class PostgresWebhooks(PostgresBase):
    """The ``Store`` methods of webhooks and their deliveries."""

    async def _queue_webhooks(self, conn: asyncpg.Connection, jobs: Sequence[WebhookJob]) -> None:
        """Queue the deliveries of ``jobs`` inside ``insert_rows``'s transaction."""
        hooks = await conn.fetch("SELECT id, event_names FROM webhook WHERE enabled ORDER BY id")
        if not hooks:
            return
        # Concurrent transactions sharing a batch key would each miss the
        # other's uncommitted row and insert a duplicate: serialise them on the
        # key (sorted lock ids, so two multi-key batches cannot deadlock).
        keys = {j.batch_key for j in jobs if j.batch_key is not None}
        for lock in sorted({lock_key(f"webhook-batch:{k}", self.schema) for k in keys}):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
        now = now_utc()
        for job in jobs:
            due = now + timedelta(milliseconds=max(job.batch_timeout_ms, 0))
            for hid, names in hooks:
                if names and job.event_name not in names:
                    continue
                if job.batch_key is not None:
                    status = await conn.execute(
                        "UPDATE webhook_delivery SET event = $1 WHERE webhook_id = $2 "
                        "AND batch_key = $3 AND status = 'pending' AND attempts = 0 "
                        "AND due_at > $4",
                        job.event,
                        hid,
                        job.batch_key,
                        now,
                    )
                    if status_count(status):
                        continue
                await conn.execute(
                    "INSERT INTO webhook_delivery (webhook_id, event, batch_key, due_at) "
                    "VALUES ($1, $2, $3, $4)",
                    hid,
                    job.event,
                    job.batch_key,
                    due,
                )

    async def add_webhook(
        self, url: str, *, secret: str | None, event_names: Sequence[str], retries: int = 0
    ) -> int:
        async with self._tx() as conn:
            hook_id = await conn.fetchval(
                "INSERT INTO webhook (url, secret, event_names, retries, created_at) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                url,
                secret,
                list(event_names),
                retries,
                now_utc(),
            )
        return int(hook_id)

    async def list_webhooks(self) -> list[Webhook]:
        rows = await self._fetch(
            "SELECT id, url, secret, enabled, event_names, retries, created_at FROM webhook "
            "ORDER BY id"
        )
        return [Webhook(*r) for r in rows]

    async def remove_webhook(self, webhook_id: int) -> bool:
        return await self._execute("DELETE FROM webhook WHERE id = $1", webhook_id) > 0

    async def set_webhook_enabled(self, webhook_id: int, enabled: bool) -> bool:
        n = await self._execute(
            "UPDATE webhook SET enabled = $1 WHERE id = $2", enabled, webhook_id
        )
        return n > 0

    async def due_deliveries(self, now: datetime, limit: int = 100) -> list[WebhookDelivery]:
        cols = ", ".join(f"d.{c.strip()}" for c in _DELIVERY_COLS.split(","))
        rows = await self._fetch(
            f"SELECT {cols} FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id "
            "WHERE d.status = 'pending' AND d.due_at <= $1 AND w.enabled "
            "ORDER BY d.due_at, d.id LIMIT $2",
            now,
            limit,
        )
        return [_delivery(r) for r in rows]

    async def claim_deliveries(
        self, now: datetime, *, holder: str, limit: int = 100, lease_s: float = 60.0
    ) -> list[WebhookDelivery]:
        # SKIP LOCKED: a concurrent claimer passes over the rows this one is
        # taking instead of waiting for them; a row it claimed meanwhile fails
        # the re-checked claim_until condition.
        # Claim leases run on the server's clock: hosts' clocks differ, and a
        # daemon whose clock is ahead took deliveries another host was still
        # sending (the fleet run, docs/RELIABILITY.md). ``now`` counts only as
        # far as it is ahead of this process's clock (callers may step it); the
        # half second covers the time between reading that clock and the server's.
        # A claim also ends with its claimer's sessions (claimed_by starts with the
        # store's session tag): a daemon killed mid-page held its deliveries for
        # the whole lease (450 s by default) otherwise.
        ahead = (now - now_utc()).total_seconds()
        async with self._tx() as conn:
            rows = await conn.fetch(
                "UPDATE webhook_delivery SET claimed_by = $1, "
                "claim_until = statement_timestamp() + $2 * interval '1 second' WHERE id IN ("
                "SELECT d.id FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id "
                "WHERE d.status = 'pending' AND d.due_at <= $3 AND w.enabled "
                "AND (d.claim_until IS NULL "
                "     OR d.claim_until <= statement_timestamp() + $5 * interval '1 second' "
                "     OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE "
                "        a.application_name = split_part(d.claimed_by, '/', 1))) "
                "ORDER BY d.due_at, d.id LIMIT $4 FOR UPDATE OF d SKIP LOCKED) "
                f"RETURNING {_DELIVERY_COLS}",
                f"{self.session_tag}/{holder}",
                ahead + lease_s,
                now,
                limit,
                ahead + 0.5,
            )
        return sorted((_delivery(r) for r in rows), key=lambda d: (d.due_at, d.id))

    async def record_delivery(
        self,
        delivery_id: int,
        *,
        status: str,
        http_status: int | None,
        error: str | None,
        latency_ms: float | None,
        retry_at: datetime | None,
    ) -> None:
        if retry_at is not None:
            status = "pending"
        await self._execute(
            "UPDATE webhook_delivery SET attempts = attempts + 1, status = $1, "
            "http_status = $2, error = $3, latency_ms = $4, due_at = coalesce($5, due_at), "
            "claimed_by = NULL, claim_until = NULL, "
            "delivered_at = CASE WHEN $1 = 'delivered' THEN $6 ELSE delivered_at END "
            "WHERE id = $7",
            status, http_status, error, latency_ms, retry_at, now_utc(), delivery_id,
        )  # fmt: skip

    async def recent_deliveries(self, limit: int = 50) -> list[WebhookDelivery]:
        rows = await self._fetch(
            f"SELECT {_DELIVERY_COLS} FROM webhook_delivery ORDER BY id DESC LIMIT $1", limit
        )
        return [_delivery(r) for r in rows]
