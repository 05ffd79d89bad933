"""The SQLite audit archive: chunks to archive, the archive GC, retention (DESIGN §9).

SQLite has one write lock for the whole file, so the reference's "select
``FOR UPDATE SKIP LOCKED``, POST, mark, commit" cannot hold a transaction
across the POST here: ingest would stop for as long as the archive takes to
answer (up to the request time limit). Instead:

* one archiver at a time per store, across processes: the lease row
  ``archiver`` in ``ship_lease`` (the shipper's lease table), held for
  ``lease_s`` and renewed whenever less than half of it is left when a chunk
  is selected. The archiver passes a ``lease_s`` longer than twice its
  request time limit, so no other archiver can take the lease, and so the
  same rows, while a POST is on the wire;
* the selection is a read, the POST runs with no lock held, and the mark (on
  success) and the attempt's log row are one short ``BEGIN IMMEDIATE``
  transaction under the writer's lock, run in one hop on the group-commit
  writer's thread (``GroupWriter.transact``).

A crash between the POST and the mark leaves the rows unarchived: the next
chunk is the same rows (same ids), re-sent.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from tuiaudit.storage.base import (
    DELETE_ARCHIVED,
    DELETE_REASONS,
    DELETE_RETENTION,
    ArchiveAttempt,
    ArchiveChunk,
    ArchiveSend,
    ArchiveStats,
)
from tuiaudit.storage.columns import (
    AUDIT_COLUMNS,
    parse_ts,
    parse_ts_opt,
    rows_from_sqlite,
    ts_text,
)
from tuiaudit.storage.sqlite_conn import JSON_IDS, SqliteBase, ids_json, map_error, now_utc

# Exactly the predicate of the partial index audit_log_archive_queue (migration 0004).
ARCHIVE_QUEUE = "archived_at IS NULL AND substr(source, 1, 10) <> 'telemetry:'"
_QUEUE_INDEX = "INDEXED BY audit_log_archive_queue"
_ARCHIVED_INDEX = "INDEXED BY audit_log_archived"
_LEASE_NAME = "archiver"

_SELECT_CHUNK = (
    f"SELECT {AUDIT_COLUMNS} FROM audit_log {_QUEUE_INDEX} WHERE {ARCHIVE_QUEUE} "
    "ORDER BY created_at, id LIMIT ?"
)
_MARK = f"UPDATE audit_log SET archived_at = ? WHERE id IN ({JSON_IDS}) AND archived_at IS NULL"
_LOG_COLS = (
    "started_at, ended_at, status, events, bytes, body_sha256, http_status, error_class, "
    "error, latency_ms, sink, holder"
)
_INSERT_LOG = f"INSERT INTO archive_log ({_LOG_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"


def _attempt(t: Any) -> ArchiveAttempt:
    return ArchiveAttempt(
        id=t[0], started_at=parse_ts(t[1]), ended_at=parse_ts(t[2]), status=t[3], events=t[4],
        bytes=t[5], body_sha256=t[6], http_status=t[7], error_class=t[8], error=t[9],
        latency_ms=t[10], sink=t[11], holder=t[12],
    )  # fmt: skip


def _log_params(a: ArchiveAttempt) -> tuple[Any, ...]:
    return (
        ts_text(a.started_at), ts_text(a.ended_at), a.status, a.events, a.bytes,
        a.body_sha256, a.http_status, a.error_class, a.error, a.latency_ms, a.sink, a.holder,
    )  # fmt: skip


class SqliteArchive(SqliteBase):
    """The ``Store`` methods of the audit archive and retention."""

    async def archive_chunk(
        self, send: ArchiveSend, *, limit: int, holder: str, lease_s: float
    ) -> ArchiveChunk:
        # The lease is a write: a read-only store raises StoreReadOnly here.
        if not await self._hold_archive_lease(holder, lease_s):
            return ArchiveChunk(0, 0, held=True)
        rows = rows_from_sqlite(await self._fetch(_SELECT_CHUNK, (limit,)))
        if not rows:
            return ArchiveChunk(0, 0)
        attempt = await send(rows)
        mark = (ts_text(attempt.ended_at), ids_json([r.id for r in rows])) if attempt.ok else None
        log = _log_params(attempt)

        def write(conn: sqlite3.Connection) -> tuple[int, int]:
            marked = max(conn.execute(_MARK, mark).rowcount, 0) if mark else 0
            return marked, int(conn.execute(_INSERT_LOG, log).lastrowid or 0)

        try:
            # One hop to the writer thread for the mark and the log row.
            marked, entry = await self._writer.transact(write)
        except (sqlite3.Error, OSError) as exc:
            raise map_error(exc, self.path) from exc
        return ArchiveChunk(len(rows), marked, replace(attempt, id=entry))

    async def _hold_archive_lease(self, holder: str, lease_s: float) -> bool:
        """True while ``holder`` holds the archive lease with at least ``lease_s / 2`` left."""
        leases = self._archive_leases
        mono = time.monotonic()
        if leases.get(holder, 0.0) - mono >= lease_s / 2:
            return True
        now = now_utc()
        n = await self._write(
            "INSERT INTO ship_lease (name, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at "
            "WHERE ship_lease.holder = excluded.holder OR ship_lease.expires_at <= ?",
            (_LEASE_NAME, holder, ts_text(now + timedelta(seconds=lease_s)), ts_text(now)),
        )
        if n != 1:
            leases.pop(holder, None)
            return False
        leases[holder] = mono + lease_s
        return True

    async def release_archive_lease(self, holder: str) -> None:
        self._archive_leases.pop(holder, None)
        await self._write(
            "DELETE FROM ship_lease WHERE name = ? AND holder = ?", (_LEASE_NAME, holder)
        )

    # ------------------------------------------------------------- deletions

    async def gc_archived(self, *, older_than: datetime, batch: int = 10_000) -> int:
        return await self._delete_batches(
            f"SELECT id FROM audit_log {_ARCHIVED_INDEX} WHERE archived_at IS NOT NULL "
            "AND created_at < ? LIMIT ?",
            ts_text(older_than),
            batch,
            DELETE_ARCHIVED,
        )

    async def delete_expired(self, *, older_than: datetime, batch: int = 10_000) -> int:
        return await self._delete_batches(
            "SELECT id FROM audit_log WHERE created_at < ? "
            "AND substr(source, 1, 10) <> 'telemetry:' ORDER BY created_at LIMIT ?",
            ts_text(older_than),
            batch,
            DELETE_RETENTION,
        )

    async def _delete_batches(self, select_ids: str, before: str, batch: int, reason: str) -> int:
        """Delete in transactions of ``batch`` rows: a long delete never stops ingest for
        more than one batch's time. Each batch is counted in its own transaction."""
        total = 0
        while True:
            async with self._tx() as conn:
                cur = await conn.execute(
                    f"DELETE FROM audit_log WHERE id IN ({select_ids})", (before, batch)
                )
                n = max(cur.rowcount, 0)
                await _add_deletions(conn, reason, n)
            total += n
            if n < batch:
                break
        if total >= 10_000:
            await self._checkpoint()
        return total

    # --------------------------------------------------------------- reading

    async def archive_stats(self) -> ArchiveStats:
        pending, oldest = await self._fetchone(
            f"SELECT count(*), min(created_at) FROM audit_log {_QUEUE_INDEX} WHERE {ARCHIVE_QUEUE}"
        )
        (archived,) = await self._fetchone(
            f"SELECT count(*) FROM audit_log {_ARCHIVED_INDEX} WHERE archived_at IS NOT NULL"
        )
        deletions = dict.fromkeys(DELETE_REASONS, 0)
        for reason, n in await self._fetch("SELECT reason, count FROM audit_deletions"):
            deletions[reason] = n
        return ArchiveStats(pending, parse_ts_opt(oldest), archived, deletions)

    async def archive_log_recent(self, limit: int = 50) -> list[ArchiveAttempt]:
        rows = await self._fetch(
            f"SELECT id, {_LOG_COLS} FROM archive_log ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_attempt(t) for t in rows]

    async def prune_archive_log(self, keep: int) -> int:
        return await self._write(
            "DELETE FROM archive_log WHERE id <= "
            "(SELECT id FROM archive_log ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (max(keep, 0),),
        )


async def _add_deletions(conn: aiosqlite.Connection, reason: str, count: int) -> None:
    if count > 0:
        await conn.execute(
            "INSERT INTO audit_deletions (reason, count) VALUES (?, ?) "
            "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
            (reason, count),
        )
