"""SQLite webhooks: the registry and the delivery queue.

Delivery rows are queued by ``insert_rows`` in the rows' own transaction (the
group-commit writer, ``sqlite_writer``); the webhook sender reads and records
them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from tuiaudit.storage.base import Webhook, WebhookDelivery
from tuiaudit.storage.columns import (
    json_text,
    json_value,
    parse_ts,
    parse_ts_opt,
    ts_text,
    ts_text_opt,
)
from tuiaudit.storage.sqlite_conn import SqliteBase, now_utc

_DELIVERY_COLS = (
    "id, webhook_id, event, batch_key, due_at, attempts, status, http_status, error, "
    "latency_ms, delivered_at"
)


def _delivery(t: Any) -> WebhookDelivery:
    return WebhookDelivery(
        t[0], t[1], json_value(t[2], {}), t[3], parse_ts(t[4]), t[5], t[6], t[7], t[8], t[9],
        parse_ts_opt(t[10]),
    )  # fmt: skip


class SqliteWebhooks(SqliteBase):
    """The ``Store`` methods of the webhook registry and delivery queue."""

    async def add_webhook(
        self, url: str, *, secret: str | None, event_names: Sequence[str], retries: int = 0
    ) -> int:
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO webhook (url, secret, event_names, retries, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (url, secret, json_text(list(event_names)), retries, ts_text(now_utc())),
            )
            return int(cur.lastrowid or 0)

    async def list_webhooks(self) -> list[Webhook]:
        rows = await self._fetch(
            "SELECT id, url, secret, enabled, event_names, retries, created_at FROM webhook "
            "ORDER BY id"
        )
        return [
            Webhook(t[0], t[1], t[2], bool(t[3]), json_value(t[4], []), t[5], parse_ts(t[6]))
            for t in rows
        ]

    async def remove_webhook(self, webhook_id: int) -> bool:
        return await self._write("DELETE FROM webhook WHERE id = ?", (webhook_id,)) > 0

    async def set_webhook_enabled(self, webhook_id: int, enabled: bool) -> bool:
        n = await self._write(
            "UPDATE webhook SET enabled = ? WHERE id = ?", (int(enabled), webhook_id)
        )
        return n > 0

    async def due_deliveries(self, now: datetime, limit: int = 100) -> list[WebhookDelivery]:
        cols = ", ".join(f"d.{c.strip()}" for c in _DELIVERY_COLS.split(","))
        rows = await self._fetch(
            f"SELECT {cols} FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id "
            "WHERE d.status = 'pending' AND d.due_at <= ? AND w.enabled = 1 "
            "ORDER BY d.due_at, d.id LIMIT ?",
            (ts_text(now), limit),
        )
        return [_delivery(t) for t in rows]

    async def claim_deliveries(
        self, now: datetime, *, holder: str, limit: int = 100, lease_s: float = 60.0
    ) -> list[WebhookDelivery]:
        # One BEGIN IMMEDIATE transaction: the write lock makes the pick and the
        # mark atomic across every process on the file.
        at = ts_text(now)
        until = ts_text(now + timedelta(seconds=lease_s))
        async with self._tx() as conn:
            rows = await conn.execute_fetchall(
                "UPDATE webhook_delivery SET claimed_by = ?, claim_until = ? WHERE id IN ("
                "SELECT d.id FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id "
                "WHERE d.status = 'pending' AND d.due_at <= ? AND w.enabled = 1 "
                "AND (d.claim_until IS NULL OR d.claim_until <= ?) "
                f"ORDER BY d.due_at, d.id LIMIT ?) RETURNING {_DELIVERY_COLS}",
                (holder, until, at, at, limit),
            )
        return sorted((_delivery(t) for t in rows), key=lambda d: (d.due_at, d.id))

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
        now = now_utc()
        if retry_at is not None:
            status = "pending"
        await self._write(
            "UPDATE webhook_delivery SET attempts = attempts + 1, status = ?, http_status = ?, "
            "claimed_by = NULL, claim_until = NULL, "
            "error = ?, latency_ms = ?, due_at = coalesce(?, due_at), "
            "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
            (status, http_status, error, latency_ms, ts_text_opt(retry_at), status,
             ts_text(now), delivery_id),
        )  # fmt: skip

    async def recent_deliveries(self, limit: int = 50) -> list[WebhookDelivery]:
        rows = await self._fetch(
            f"SELECT {_DELIVERY_COLS} FROM webhook_delivery ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_delivery(t) for t in rows]
