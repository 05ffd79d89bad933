"""The SQLite telemetry queue: pages to ship, collection, quarantine, drop counts.

Telemetry rows live in ``audit_log`` (source ``telemetry:...``) until they are
sent, collected by age or cap, purged, or moved to ``quarantine``; every row that
leaves without being sent is counted in ``drops`` by reason (DESIGN §5.2).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime

import aiosqlite
import orjson

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
from tuiaudit.storage.columns import (
    AUDIT_COLUMNS,
    parse_ts,
    parse_ts_opt,
    row_from_sqlite,
    rows_from_sqlite,
    ts_text,
)
from tuiaudit.storage.query import Where
from tuiaudit.storage.sqlite_conn import DIALECT, JSON_IDS, TELEMETRY, SqliteBase, ids_json, now_utc

_QUEUE_INDEX = "INDEXED BY audit_log_telemetry_queue"  # smaller than the source index
_PARSE_IN_THREAD = 1000  # rows of a page worth a thread hop to parse


class SqliteQueue(SqliteBase):
    """The ``Store`` methods of the telemetry queue, quarantine and drop accounting."""

    # -------------------------------------------------------- telemetry queue

    async def telemetry_page(self, limit: int, *, after: Cursor | None = None) -> list[AuditRow]:
        w = Where(DIALECT).telemetry().after(after)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} ORDER BY created_at, id LIMIT ?",
            [*w.params, limit],
        )
        if len(rows) < _PARSE_IN_THREAD:
            return rows_from_sqlite(rows)
        # A shipper page (10,000 rows) takes tens of ms to become records: in a
        # thread the event loop stays free, and the connection can run the
        # previous batch's delete meanwhile (the shipper's pipeline).
        return await asyncio.to_thread(rows_from_sqlite, rows)

    async def telemetry_rows(self, ids: Sequence[uuid.UUID]) -> list[AuditRow]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        # One statement over a JSON array (no variable limit), by primary key.
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id IN ({JSON_IDS}) AND {TELEMETRY}",
            (orjson.dumps(wanted).decode(),),
        )
        if len(rows) < _PARSE_IN_THREAD:
            found = rows_from_sqlite(rows)
        else:
            found = await asyncio.to_thread(rows_from_sqlite, rows)
        by_id = {r.id: r for r in found}
        return [by_id[i] for i in wanted if i in by_id]

    async def delete_rows(self, ids: Sequence[uuid.UUID]) -> int:
        if not ids:
            return 0
        # One statement over a JSON array (orjson writes UUIDs as canonical text
        # in C): no str() per id in Python, and the GIL is free while SQLite works.
        id_list = orjson.dumps(ids if isinstance(ids, list | tuple) else list(ids)).decode()
        async with self._tx() as conn:
            cur = await conn.execute(f"DELETE FROM audit_log WHERE id IN ({JSON_IDS})", (id_list,))
            n = cur.rowcount
        if n >= 10_000:
            await self._checkpoint()
        return n

    async def gc_telemetry(self, *, older_than: datetime, cap: int) -> GcResult:
        async with self._tx() as conn:
            cur = await conn.execute(
                f"DELETE FROM audit_log WHERE {TELEMETRY} AND created_at < ?",
                (ts_text(older_than),),
            )
            aged = max(cur.rowcount, 0)
            rows = await conn.execute_fetchall(
                f"SELECT count(*) FROM audit_log {_QUEUE_INDEX} WHERE {TELEMETRY}"
            )
            excess = next(iter(rows))[0] - max(cap, 0)
            capped = 0
            if excess > 0:
                cur = await conn.execute(
                    f"DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE "
                    f"{TELEMETRY} ORDER BY created_at, id LIMIT ?)",
                    (excess,),
                )
                capped = cur.rowcount
            await self._add_drops(conn, DROP_AGE, aged)
            await self._add_drops(conn, DROP_CAP, capped)
        if aged + capped >= 10_000:
            await self._checkpoint()
        return GcResult(age=aged, cap=capped)

    async def purge_telemetry(self, flt: AuditFilter | None, *, reason: str) -> int:
        w = Where(DIALECT).telemetry().filter(flt)
        async with self._tx() as conn:
            cur = await conn.execute(f"DELETE FROM audit_log{w.sql}", w.params)
            n = cur.rowcount
            await self._add_drops(conn, reason, n)
        return n

    async def queue_stats(self) -> QueueStats:
        pending, oldest = await self._fetchone(
            f"SELECT count(*), min(created_at) FROM audit_log {_QUEUE_INDEX} WHERE {TELEMETRY}"
        )
        (quarantined,) = await self._fetchone("SELECT count(*) FROM quarantine")
        return QueueStats(pending, parse_ts_opt(oldest), quarantined)

    # --------------------------------------------------------------- quarantine

    async def quarantine(self, ids: Sequence[uuid.UUID], *, reason: str) -> int:
        if not ids:
            return 0
        sel = f"{TELEMETRY} AND id IN ({JSON_IDS})"
        async with self._tx() as conn:
            await conn.execute(
                f"INSERT OR REPLACE INTO quarantine ({AUDIT_COLUMNS}, reason, quarantined_at) "
                f"SELECT {AUDIT_COLUMNS}, ?, ? FROM audit_log WHERE {sel}",
                (reason, ts_text(now_utc()), ids_json(ids)),
            )
            cur = await conn.execute(f"DELETE FROM audit_log WHERE {sel}", (ids_json(ids),))
            return cur.rowcount

    async def list_quarantine(self, limit: int = 500) -> list[QuarantinedRow]:
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS}, reason, quarantined_at FROM quarantine "
            "ORDER BY quarantined_at DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [QuarantinedRow(row_from_sqlite(t), t[11], parse_ts(t[12])) for t in rows]

    async def release_quarantine(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        where, params = (
            ("", ()) if ids is None else (f" WHERE id IN ({JSON_IDS})", (ids_json(ids),))
        )
        async with self._tx() as conn:
            await conn.execute(
                f"INSERT OR IGNORE INTO audit_log ({AUDIT_COLUMNS}) "
                f"SELECT {AUDIT_COLUMNS} FROM quarantine{where}",
                params,
            )
            cur = await conn.execute(f"DELETE FROM quarantine{where}", params)
            return cur.rowcount

    async def purge_quarantine(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        where, params = (
            ("", ()) if ids is None else (f" WHERE id IN ({JSON_IDS})", (ids_json(ids),))
        )
        async with self._tx() as conn:
            cur = await conn.execute(f"DELETE FROM quarantine{where}", params)
            n = cur.rowcount
            await self._add_drops(conn, DROP_REJECTED, n)
            return n

    # ---------------------------------------------------------------- drops

    @staticmethod
    async def _add_drops(conn: aiosqlite.Connection, reason: str, count: int) -> None:
        if count > 0:
            await conn.execute(
                "INSERT INTO drops (reason, count) VALUES (?, ?) "
                "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
                (reason, count),
            )

    async def add_drops(self, reason: str, count: int) -> None:
        if count <= 0:
            return
        async with self._tx() as conn:
            await self._add_drops(conn, reason, count)

    async def drop_counts(self) -> dict[str, int]:
        out = dict.fromkeys(DROP_REASONS, 0)
        for reason, n in await self._fetch("SELECT reason, count FROM drops"):
            out[reason] = n
        return out
