"""The PostgreSQL audit archive: chunks to archive, the archive GC, retention (DESIGN §9).

As the reference does, one transaction per chunk: ``SELECT … ORDER BY
created_at … FOR UPDATE SKIP LOCKED``, the POST while the rows stay locked,
then ``archived_at`` on success, then ``COMMIT``. Several daemons archiving
one store take disjoint chunks and never send a row twice; a daemon that dies
mid-chunk loses its connection, the transaction rolls back and the rows are
taken again (re-sent with the same ids).

Time limit: the transaction sits idle while the POST is on the wire, so it sets
``idle_in_transaction_session_timeout`` to the caller's ``lease_s`` (longer
than the request time limit). A server-side limit shorter than the POST would
end every chunk; and a client that hangs with the rows locked (a network
partition) has them freed by the server after ``lease_s``, without a DBA.
Rows locked by an archiver are skipped by the retention delete, never waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from tuiaudit.storage.base import (
    DELETE_ARCHIVED,
    DELETE_REASONS,
    DELETE_RETENTION,
    ArchiveAttempt,
    ArchiveChunk,
    ArchiveSend,
    ArchiveStats,
    StoreError,
)
from tuiaudit.storage.columns import AUDIT_COLUMNS
from tuiaudit.storage.postgres_conn import (
    PostgresBase,
    audit_row,
    init_connection,
    map_error,
    status_count,
)

# Exactly the predicate of the partial index audit_log_archive_queue (migration 0003).
ARCHIVE_QUEUE = "archived_at IS NULL AND source NOT LIKE 'telemetry:%'"

# The transaction's idle time limit is set by the selecting statement itself
# (set_config(..., true) is SET LOCAL): one round trip fewer per chunk.
_SELECT_CHUNK = (
    f"SELECT {AUDIT_COLUMNS} FROM audit_log, "
    "(SELECT set_config('idle_in_transaction_session_timeout', $2, true)) AS limit_set "
    f"WHERE {ARCHIVE_QUEUE} ORDER BY created_at, id LIMIT $1 "
    "FOR UPDATE OF audit_log SKIP LOCKED"
)
_LOG_COLS = (
    "started_at, ended_at, status, events, bytes, body_sha256, http_status, error_class, "
    "error, latency_ms, sink, holder"
)
_INSERT_LOG = (
    f"INSERT INTO archive_log ({_LOG_COLS}) "
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING id"
)
# The mark and the attempt's log row in one statement (one round trip).
_MARK_AND_LOG = (
    "WITH marked AS (UPDATE audit_log SET archived_at = $13 WHERE id = ANY($14::uuid[]) "
    "RETURNING 1), "
    f"logged AS (INSERT INTO archive_log ({_LOG_COLS}) "
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING id) "
    "SELECT (SELECT id FROM logged), (SELECT count(*) FROM marked)"
)


class _SenderRaised(StoreError):
    """Carries the sender's exception past ``_conn`` (which maps foreign errors)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _attempt(r: Any) -> ArchiveAttempt:
    return ArchiveAttempt(
        id=r[0], started_at=r[1], ended_at=r[2], status=r[3], events=r[4], bytes=r[5],
        body_sha256=r[6], http_status=r[7], error_class=r[8], error=r[9], latency_ms=r[10],
        sink=r[11], holder=r[12],
    )  # fmt: skip


def _log_params(a: ArchiveAttempt) -> tuple[Any, ...]:
    return (
        a.started_at, a.ended_at, a.status, a.events, a.bytes, a.body_sha256, a.http_status,
        a.error_class, a.error, a.latency_ms, a.sink, a.holder,
    )  # fmt: skip


class PostgresArchive(PostgresBase):
    """The ``Store`` methods of the audit archive and retention.

    Chunks go through a dedicated connection, kept across chunks: a pooled one
    would cost a reset round trip on every release, one in every four or five
    of a chunk's round trips. It is dropped after any error (the server may
    have ended it) and opened again on the next chunk.
    """

    _archive_conn: asyncpg.Connection | None = None
    _archive_lock: asyncio.Lock | None = None

    @asynccontextmanager
    async def _archive_connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._archive_lock is None:
            self._archive_lock = asyncio.Lock()
        async with self._archive_lock:
            if self._archive_conn is None or self._archive_conn.is_closed():
                conn = await self._connect()
                try:
                    await init_connection(conn)
                except BaseException:
                    conn.terminate()
                    raise
                self._archive_conn = conn
            try:
                yield self._archive_conn
            except BaseException:
                conn, self._archive_conn = self._archive_conn, None
                if conn is not None:
                    conn.terminate()  # in an unknown state: never reused
                raise

    async def archive_chunk(
        self, send: ArchiveSend, *, limit: int, holder: str, lease_s: float
    ) -> ArchiveChunk:
        self._check_writable()
        try:
            async with self._archive_connection() as conn, conn.transaction():
                # Local to this transaction; the pooled connection keeps its default.
                idle_ms = str(max(int(lease_s * 1000), 1))
                rows = [audit_row(r) for r in await conn.fetch(_SELECT_CHUNK, limit, idle_ms)]
                if not rows:
                    return ArchiveChunk(0, 0)
                try:
                    attempt = await send(rows)
                except Exception as exc:  # rolled back; re-raised as it was, below
                    raise _SenderRaised(exc) from exc
                if attempt.ok:
                    entry, marked = await conn.fetchrow(
                        _MARK_AND_LOG,
                        *_log_params(attempt),
                        attempt.ended_at,
                        [r.id for r in rows],
                    )
                else:
                    entry, marked = await conn.fetchval(_INSERT_LOG, *_log_params(attempt)), 0
        except _SenderRaised as wrapped:
            raise wrapped.error from None  # the sender's own error, as on SQLite
        except StoreError:
            raise
        except Exception as exc:
            raise map_error(exc, self._where) from exc
        return ArchiveChunk(len(rows), marked, replace(attempt, id=int(entry)))

    async def release_archive_lease(self, holder: str) -> None:
        return None  # row locks end with each chunk's transaction

    # ------------------------------------------------------------- deletions

    async def gc_archived(self, *, older_than: datetime, batch: int = 10_000) -> int:
        return await self._delete_batches(
            "SELECT id FROM audit_log WHERE archived_at IS NOT NULL AND created_at < $1 "
            "LIMIT $2 FOR UPDATE SKIP LOCKED",
            older_than,
            batch,
            DELETE_ARCHIVED,
        )

    async def delete_expired(self, *, older_than: datetime, batch: int = 10_000) -> int:
        return await self._delete_batches(
            "SELECT id FROM audit_log WHERE created_at < $1 AND source NOT LIKE 'telemetry:%' "
            "ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            older_than,
            batch,
            DELETE_RETENTION,
        )

    async def _delete_batches(
        self, select_ids: str, before: datetime, batch: int, reason: str
    ) -> int:
        """Delete in transactions of ``batch`` rows, each counted as it commits."""
        total = 0
        while True:
            async with self._tx() as conn:
                n = status_count(
                    await conn.execute(
                        f"DELETE FROM audit_log WHERE id IN ({select_ids})", before, batch
                    )
                )
                await _add_deletions(conn, reason, n)
            total += n
            if n < batch:
                return total

    # --------------------------------------------------------------- reading

    async def archive_stats(self) -> ArchiveStats:
        async with self._conn() as conn:
            pending, oldest = await conn.fetchrow(
                f"SELECT count(*), min(created_at) FROM audit_log WHERE {ARCHIVE_QUEUE}"
            )
            archived = await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE archived_at IS NOT NULL"
            )
            counted = await conn.fetch("SELECT reason, count FROM audit_deletions")
        deletions = dict.fromkeys(DELETE_REASONS, 0)
        for reason, n in counted:
            deletions[reason] = int(n)
        return ArchiveStats(int(pending), oldest, int(archived), deletions)

    async def archive_log_recent(self, limit: int = 50) -> list[ArchiveAttempt]:
        rows = await self._fetch(
            f"SELECT id, {_LOG_COLS} FROM archive_log ORDER BY id DESC LIMIT $1", limit
        )
        return [_attempt(r) for r in rows]

    async def prune_archive_log(self, keep: int) -> int:
        return await self._execute(
            "DELETE FROM archive_log WHERE id <= "
            "(SELECT id FROM archive_log ORDER BY id DESC LIMIT 1 OFFSET $1)",
            max(keep, 0),
        )


async def _add_deletions(conn: asyncpg.Connection, reason: str, count: int) -> None:
    if count > 0:
        await conn.execute(
            "INSERT INTO audit_deletions (reason, count) VALUES ($1, $2) "
            "ON CONFLICT (reason) DO UPDATE SET count = audit_deletions.count + excluded.count",
            reason,
            count,
        )
