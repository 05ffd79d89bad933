"""The PostgreSQL back-end (asyncpg pool), for several daemons on several machines.

``?schema=NAME`` in the URL selects the ``search_path``; advisory-lock keys and
the change channel derive from it, so isolated schemas never collide.

``PostgresStore`` (here: open/close, migrations, audit rows and their statistics,
server properties) is composed of one part per concern, each a ``PostgresBase``
subclass: ``postgres_conn`` (pool, query helpers, error mapping), ``postgres_queue``
(telemetry queue, quarantine, drops), ``postgres_coord`` (ledger, shipper lease,
daemon state, commands, change notification), ``postgres_webhooks``,
``postgres_archive`` (audit archive and retention).
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from tuiaudit.storage.base import (
    SEARCH_MIN_CHARS,
    AuditFilter,
    AuditRow,
    Cursor,
    ScanPage,
    SchemaTooNew,
    SearchIndexStep,
    StoreError,
    WebhookJob,
)
from tuiaudit.storage.columns import AUDIT_COLUMNS
from tuiaudit.storage.migrate import Progress, latest_version
from tuiaudit.storage.postgres_approval import PostgresApproval
from tuiaudit.storage.postgres_archive import PostgresArchive
from tuiaudit.storage.postgres_conn import (
    CONNECT_TIMEOUT_S,
    DIALECT,
    TELEMETRY,
    audit_row,
    init_connection,
    json_dumps,
    lock_key,
    map_error,
    now_utc,
)
from tuiaudit.storage.postgres_coord import PostgresCoordination
from tuiaudit.storage.postgres_migrate import run_migrations
from tuiaudit.storage.postgres_queue import PostgresQueue
from tuiaudit.storage.postgres_webhooks import PostgresWebhooks
from tuiaudit.storage.query import (
    SEARCH_SEPARATOR,
    WINDOW,
    Where,
    check_scan,
    iter_pages,
    like_pattern,
    rare_window,
    scan_page,
)
from tuiaudit.storage.url import StoreLocation

# A window with at most this many matches is looked up by itself. The probe
# costs about 4 µs per row it reads (a common window: RARE_PROBE / frequency).
RARE_PROBE = 500

__all__ = ["CONNECT_TIMEOUT_S", "DIALECT", "TELEMETRY", "PostgresStore", "map_error"]

# One statement per batch: columns travel as arrays (inet/jsonb as text, cast here).
_INSERT_ROWS = f"""
INSERT INTO audit_log ({AUDIT_COLUMNS})
SELECT id, name, type, source, profile_id, ip::inet, props::jsonb, context::jsonb,
       tracked_at, created_at, archived_at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[],
            $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[])
     AS t(id, name, type, source, profile_id, ip, props, context, tracked_at, created_at,
          archived_at)
"""


class PostgresStore(
    PostgresQueue, PostgresCoordination, PostgresWebhooks, PostgresArchive, PostgresApproval
):
    backend = "postgresql"

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls, url: str, loc: StoreLocation, *, read_only: bool, migrate: bool
    ) -> PostgresStore:
        self = cls(url, loc, read_only)
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=5,
                server_settings=self._settings,
                init=init_connection,
                timeout=CONNECT_TIMEOUT_S,
            )
        except BaseException as exc:
            if isinstance(exc, Exception):
                raise map_error(exc, self._where) from exc
            raise
        try:
            if migrate and not read_only:
                await self.migrate()
            else:
                await self._check_version(need_current=read_only)
        except BaseException:
            await self.close()
            raise
        return self

    async def _check_version(self, *, need_current: bool) -> None:
        version = await self.schema_version()
        latest = latest_version("postgres")
        if version > latest:
            raise SchemaTooNew(
                f"store {self._where} has schema version {version}, newer than this tuiaudit "
                f"knows ({latest}): upgrade tuiaudit"
            )
        if need_current and version < latest:
            raise StoreError(
                f"store {self._where} has schema version {version}, this tuiaudit needs "
                f"{latest}: open it once without --read-only (or start the daemon) to migrate it"
            )

    async def close(self) -> None:
        lease, self._lease_conn = self._lease_conn, None
        listen, self._listen_conn = self._listen_conn, None
        archive, self._archive_conn = self._archive_conn, None
        pool, self._pool = self._pool, None
        for conn in (lease, listen, archive):
            if conn is not None:
                try:
                    await conn.close(timeout=5)
                except Exception:
                    conn.terminate()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except Exception:
                pool.terminate()

    def __del__(self) -> None:
        if getattr(self, "_pool", None) is not None:
            warnings.warn(
                f"store {self.url!r} was not closed: use 'async with open_store(...)'",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    # ------------------------------------------------------------------ schema

    async def migrate(self, progress: Progress | None = None) -> int:
        # A session of its own (not a pooled one): the lock is held across the
        # transactions of the migrations, and CREATE INDEX CONCURRENTLY needs autocommit.
        conn = await self._connect()
        try:
            return await run_migrations(
                conn, schema=self.schema, where=self._where,
                lock=lock_key("migrate", self.schema), now=now_utc,
                connect=self._connect, progress=progress,
            )  # fmt: skip
        except asyncpg.PostgresError as exc:
            raise map_error(exc, self._where) from exc
        finally:
            await conn.close()

    async def search_index_state(self) -> SearchIndexStep:
        # The GIN index is written with each row: nothing is ever waiting.
        return SearchIndexStep(indexed=await self.total_rows(), pending=0)

    async def _search_where(self, flt: AuditFilter | None) -> Where:
        """A ``Where`` for ``flt``; for a long text, whether its rare window is rare.

        One probe of at most ``RARE_PROBE + 1`` rows through the window's ILIKE:
        the planner walks the table for a common window (stopping early) and
        reads the GIN index for a rare one (few rows). Rare: the window form
        (its index scan skips the needle's common trigrams); common: the whole
        needle, which the planner estimates from the statistics.
        """
        w = Where(DIALECT)
        text = flt.text if flt is not None else None
        if text and len(text) > WINDOW and await self.search_ready(text):
            probe = Where(DIALECT)
            probe.add(f"{DIALECT.search_expr} ILIKE {probe.p(like_pattern(rare_window(text)))}")
            n = await self._fetchrow(
                f"SELECT count(*) FROM (SELECT 1 FROM audit_log{probe.sql} "
                f"LIMIT {RARE_PROBE + 1}) t",
                *probe.params,
            )
            w.rare_window = int(n[0]) <= RARE_PROBE
        return w

    async def search_ready(self, text: str) -> bool:
        return len(text) >= SEARCH_MIN_CHARS and SEARCH_SEPARATOR not in text

    async def index_search(self, *, limit: int = 5000) -> SearchIndexStep:
        return SearchIndexStep(indexed=0, pending=0)

    async def schema_version(self) -> int:
        async with self._conn() as conn:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return 0
            return int(
                await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
            )

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    # ------------------------------------------------------------- audit rows

    async def insert_rows(
        self, rows: Sequence[AuditRow], webhook_jobs: Sequence[WebhookJob] = ()
    ) -> None:
        if not rows and not webhook_jobs:
            return
        try:
            dumps = orjson.dumps
            cols: list[list[Any]] = [
                [r.id for r in rows],
                [r.name for r in rows],
                [r.type for r in rows],
                [r.source for r in rows],
                [r.profile_id for r in rows],
                [r.ip_addr for r in rows],
                [dumps(r.props).decode() for r in rows],
                [dumps(r.context).decode() for r in rows],
                [r.tracked_at for r in rows],
                [r.created_at for r in rows],
                [r.archived_at for r in rows],
            ]
        except TypeError as exc:
            raise StoreError(f"cannot store the rows, nothing was stored: {exc}") from exc
        async with self._tx() as conn:
            if rows:
                await conn.execute(_INSERT_ROWS, *cols)
            if webhook_jobs:
                await self._queue_webhooks(conn, webhook_jobs)

    async def fetch_rows(
        self, flt: AuditFilter | None = None, *, before: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        w = (await self._search_where(flt)).filter(flt).before(before)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} "
            f"ORDER BY created_at DESC, id DESC LIMIT {w.p(limit)}",
            *w.params,
        )
        return [audit_row(r) for r in rows]

    async def fetch_rows_after(
        self, flt: AuditFilter | None = None, *, after: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        w = (await self._search_where(flt)).filter(flt).after(after)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} "
            f"ORDER BY created_at, id LIMIT {w.p(limit)}",
            *w.params,
        )
        return [audit_row(r) for r in rows]

    async def scan_rows(
        self,
        flt: AuditFilter | None = None,
        *,
        before: Cursor | None = None,
        limit: int,
        scan: int,
    ) -> ScanPage:
        check_scan(limit, scan)  # a ValueError, not a StoreError from inside _conn
        async with self._conn() as conn:

            async def run(sql: str, params: list[Any]) -> list[Any]:
                return list(await conn.fetch(sql, *params))

            try:
                return await scan_page(
                    run, DIALECT, AUDIT_COLUMNS, flt, before=before, limit=limit, scan=scan,
                    to_row=audit_row, to_cursor=lambda r: (r[0], r[1]),
                )  # fmt: skip
            except asyncpg.PostgresError as exc:
                raise map_error(exc, self._where) from exc

    async def count_rows(self, flt: AuditFilter | None = None, *, limit: int | None = None) -> int:
        w = (await self._search_where(flt)).filter(flt)
        if limit is None:
            sql = f"SELECT count(*) FROM audit_log{w.sql}"
        else:
            sql = f"SELECT count(*) FROM (SELECT 1 FROM audit_log{w.sql} LIMIT {w.p(limit + 1)}) t"
        row = await self._fetchrow(sql, *w.params)
        return int(row[0])

    def iter_rows(
        self, flt: AuditFilter | None = None, *, chunk: int = 1000
    ) -> AsyncIterator[AuditRow]:
        return iter_pages(self.fetch_rows_after, flt, chunk)

    async def get_row(self, row_id: uuid.UUID) -> AuditRow | None:
        r = await self._fetchrow(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = $1", row_id)
        return None if r is None else audit_row(r)

    # ------------------------------------------------------- audit statistics

    async def counts_by_name(self, *, source_prefix: str, since: datetime) -> dict[str, int]:
        w = Where(DIALECT)
        w.source_prefix(source_prefix)
        w.add(f"created_at >= {w.p(since)}")
        rows = await self._fetch(
            f"SELECT name, count(*) FROM audit_log{w.sql} GROUP BY name ORDER BY name", *w.params
        )
        return {name: n for name, n in rows}

    async def rows_per_minute(
        self, *, source_prefix: str | None, since: datetime
    ) -> list[tuple[datetime, int]]:
        w = Where(DIALECT)
        if source_prefix:
            w.source_prefix(source_prefix)
        w.add(f"created_at >= {w.p(since)}")
        rows = await self._fetch(
            f"SELECT date_trunc('minute', created_at) AS minute, count(*) FROM audit_log{w.sql} "
            "GROUP BY minute ORDER BY minute",
            *w.params,
        )
        return [(m, n) for m, n in rows]

    async def total_rows(self) -> int:
        row = await self._fetchrow("SELECT count(*) FROM audit_log")
        return int(row[0])

    # ------------------------------------------------------------ properties
    # Values travel as JSON text so that a JSON null is stored, not SQL NULL.

    async def get_property(self, key: str) -> Any | None:
        r = await self._fetchrow("SELECT content::text FROM server_prop WHERE id = $1", key)
        return None if r is None else orjson.loads(r[0])

    async def set_property(self, key: str, value: Any) -> None:
        await self._execute(
            "INSERT INTO server_prop (id, content) VALUES ($1, $2::text::jsonb) "
            "ON CONFLICT (id) DO UPDATE SET content = excluded.content",
            key,
            json_dumps(value),
        )

    async def ensure_property(self, key: str, default: Any) -> Any:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO server_prop (id, content) VALUES ($1, $2::text::jsonb) "
                "ON CONFLICT (id) DO NOTHING",
                key,
                json_dumps(default),
            )
            text = await conn.fetchval("SELECT content::text FROM server_prop WHERE id = $1", key)
        return orjson.loads(text)

    async def delete_property(self, key: str) -> None:
        await self._execute("DELETE FROM server_prop WHERE id = $1", key)
