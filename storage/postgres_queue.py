"""The PostgreSQL telemetry queue: pages to ship, collection, quarantine, drop counts.

Telemetry rows live in ``audit_log`` (source ``telemetry:...``) until they are
sent, collected by age or cap, purged, or moved to ``quarantine``; every row that
leaves without being sent is counted in ``drops`` by reason (DESIGN §5.2).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from tuiaudit.storage.base import (
    DROP_AGE,
    DROP_CAP,
    DROP_REASONS,
    DROP_REJECTED,
    AuditFilter,
    AuditRow,
    Cursor,
    GcResult,
    QuarantinedRow,
    QueueStats,
)
from tuiaudit.storage.columns import AUDIT_COLUMNS
from tuiaudit.storage.postgres_conn import (
    DIALECT,
    TELEMETRY,
    PostgresBase,
    audit_row,
    lock_key,
    now_utc,
    status_count,
)
from tuiaudit.storage.query import Where


class PostgresQueue(PostgresBase):
    """The ``Store`` methods of the telemetry queue, quarantine and drop accounting."""

    # -------------------------------------------------------- telemetry queue

    async def telemetry_page(self, limit: int, *, after: Cursor | None = None) -> list[AuditRow]:
        w = Where(DIALECT).telemetry().after(after)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} "
            f"ORDER BY created_at, id LIMIT {w.p(limit)}",
            *w.params,
        )
        return [audit_row(r) for r in rows]

    async def telemetry_rows(self, ids: Sequence[uuid.UUID]) -> list[AuditRow]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = ANY($1::uuid[]) AND {TELEMETRY}",
            wanted,
        )
        by_id = {r.id: r for r in map(audit_row, rows)}
        return [by_id[i] for i in wanted if i in by_id]

    async def delete_rows(self, ids: Sequence[uuid.UUID]) -> int:
        if not ids:
            return 0
        return await self._execute("DELETE FROM audit_log WHERE id = ANY($1::uuid[])", list(ids))

    async def gc_telemetry(self, *, older_than: datetime, cap: int) -> GcResult:
        async with self._tx() as conn:
            # Two daemons collecting at once would each cut "the excess".
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("gc", self.schema))
            aged = status_count(
                await conn.execute(
                    f"DELETE FROM audit_log WHERE {TELEMETRY} AND created_at < $1", older_than
                )
            )
            excess = await conn.fetchval(f"SELECT count(*) FROM audit_log WHERE {TELEMETRY}")
            excess -= max(cap, 0)
            capped = 0
            if excess > 0:
                capped = status_count(
                    await conn.execute(
                        f"DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE "
                        f"{TELEMETRY} ORDER BY created_at, id LIMIT $1)",
                        excess,
                    )
                )
            await self._add_drops(conn, DROP_AGE, aged)
            await self._add_drops(conn, DROP_CAP, capped)
        return GcResult(age=aged, cap=capped)

    async def purge_telemetry(self, flt: AuditFilter | None, *, reason: str) -> int:
        w = Where(DIALECT).telemetry().filter(flt)
        async with self._tx() as conn:
            n = status_count(await conn.execute(f"DELETE FROM audit_log{w.sql}", *w.params))
            await self._add_drops(conn, reason, n)
        return n

    async def queue_stats(self) -> QueueStats:
        async with self._conn() as conn:
            pending, oldest = await conn.fetchrow(
                f"SELECT count(*), min(created_at) FROM audit_log WHERE {TELEMETRY}"
            )
            quarantined = await conn.fetchval("SELECT count(*) FROM quarantine")
        return QueueStats(pending, oldest, quarantined)

    # --------------------------------------------------------------- quarantine

    async def quarantine(self, ids: Sequence[uuid.UUID], *, reason: str) -> int:
        if not ids:
            return 0
        async with self._tx() as conn:
            n = await conn.fetchval(
                f"WITH moved AS (DELETE FROM audit_log WHERE {TELEMETRY} "
                f"AND id = ANY($1::uuid[]) RETURNING {AUDIT_COLUMNS}), "
                f"ins AS (INSERT INTO quarantine ({AUDIT_COLUMNS}, reason, quarantined_at) "
                f"SELECT {AUDIT_COLUMNS}, $2, $3 FROM moved ON CONFLICT (id) DO UPDATE SET "
                "reason = excluded.reason, quarantined_at = excluded.quarantined_at) "
                "SELECT count(*) FROM moved",
                list(ids),
                reason,
                now_utc(),
            )
        return int(n)

    async def list_quarantine(self, limit: int = 500) -> list[QuarantinedRow]:
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS}, reason, quarantined_at FROM quarantine "
            "ORDER BY quarantined_at DESC, id DESC LIMIT $1",
            limit,
        )
        return [QuarantinedRow(AuditRow(*tuple(r)[:11]), r[11], r[12]) for r in rows]

    async def release_quarantine(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        where, args = ("", []) if ids is None else (" WHERE id = ANY($1::uuid[])", [list(ids)])
        async with self._tx() as conn:
            n = await conn.fetchval(
                f"WITH moved AS (DELETE FROM quarantine{where} RETURNING {AUDIT_COLUMNS}), "
                f"ins AS (INSERT INTO audit_log ({AUDIT_COLUMNS}) SELECT {AUDIT_COLUMNS} "
                "FROM moved ON CONFLICT (id) DO NOTHING) SELECT count(*) FROM moved",
                *args,
            )
        return int(n)

    async def purge_quarantine(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        where, args = ("", []) if ids is None else (" WHERE id = ANY($1::uuid[])", [list(ids)])
        async with self._tx() as conn:
            n = status_count(await conn.execute(f"DELETE FROM quarantine{where}", *args))
            await self._add_drops(conn, DROP_REJECTED, n)
        return n

    # ---------------------------------------------------------------- drops

    @staticmethod
    async def _add_drops(conn: asyncpg.Connection, reason: str, count: int) -> None:
        if count > 0:
            await conn.execute(
                "INSERT INTO drops (reason, count) VALUES ($1, $2) "
                "ON CONFLICT (reason) DO UPDATE SET count = drops.count + excluded.count",
                reason,
                count,
            )

    async def add_drops(self, reason: str, count: int) -> None:
        if count <= 0:
            return
        async with self._tx() as conn:
            await self._add_drops(conn, reason, count)

    async def drop_counts(self) -> dict[str, int]:
        out = dict.fromkeys(DROP_REASONS, 0)
        for reason, n in await self._fetch("SELECT reason, count FROM drops"):
            out[reason] = int(n)
        return out
