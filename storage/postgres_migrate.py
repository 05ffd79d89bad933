"""The PostgreSQL migration runner (``PostgresStore.migrate``).

Migrations run one at a time under a session advisory lock (one migrator per
schema), each in its own transaction with its version row, so a crash leaves
the store at the last whole migration. A migration marked
``-- tuiaudit: outside-transaction`` builds indexes with ``CREATE INDEX
CONCURRENTLY`` (DESIGN §7), which PostgreSQL refuses inside a transaction:

* on a large ``audit_log`` (``CONCURRENT_FROM`` rows or more) its statements run
  one by one, in autocommit, so ingest goes on while an index builds. An
  interrupted build leaves an invalid index behind: it is dropped and built
  again when the migration is run again (that is how it resumes). Progress
  comes from ``pg_stat_progress_create_index``, read on a second connection;
* on a small one (a new store, the tests) the same statements without
  ``CONCURRENTLY`` run in one transaction: nothing to wait for, all or nothing.

``@TRGM@`` in a migration is the schema holding the ``pg_trgm`` extension,
created in ``public`` when the database has none yet.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import suppress
from typing import Any

import asyncpg

from tuiaudit.storage.base import StoreError
from tuiaudit.storage.migrate import Migration, Progress, pending_migrations

CONCURRENT_FROM = 100_000  # rows: from here an index build must not block writers
_PROGRESS_EVERY_S = 0.5
_INDEX_NAME = re.compile(
    r"CREATE\s+INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE
)


async def run_migrations(
    conn: asyncpg.Connection,
    *,
    schema: str,
    where: str,
    lock: int,
    now: Any,
    connect: Any,
    progress: Progress | None,
) -> int:
    """Apply the pending migrations on ``conn`` (a session of its own); the version now.

    ``connect()`` opens a second connection (progress of a concurrent build).
    """
    await conn.execute("SELECT pg_advisory_lock($1)", lock)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
        )
        current = int(
            await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        )
        for m in pending_migrations("postgres", current, where):
            sql = m.sql
            if "@TRGM@" in sql:
                sql = sql.replace("@TRGM@", await _trgm_schema(conn, where))
            if m.outside_transaction and await _large(conn):
                await _run_concurrently(conn, m, sql, connect=connect, progress=progress)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    m.version,
                    now(),
                )
            else:
                if m.outside_transaction:
                    sql = re.sub(r"\bCONCURRENTLY\s+", "", sql, flags=re.IGNORECASE)
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        m.version,
                        now(),
                    )
            current = m.version
    finally:
        with suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    return current


async def _large(conn: asyncpg.Connection) -> bool:
    if await conn.fetchval("SELECT to_regclass('audit_log')") is None:
        return False
    n = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM audit_log LIMIT {CONCURRENT_FROM}) t"
    )
    return int(n) >= CONCURRENT_FROM


async def _trgm_schema(conn: asyncpg.Connection, where: str) -> str:
    """The schema of the ``pg_trgm`` extension, created in ``public`` if missing."""
    query = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
    found = await conn.fetchval(query)
    if found is None:
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        except asyncpg.UniqueViolationError:
            pass  # another store's migration created it at the same moment
        except asyncpg.PostgresError as exc:
            raise StoreError(
                f"store {where}: cannot create the PostgreSQL extension pg_trgm, which free-text "
                f"search needs ({exc}); install postgresql-contrib, or have the database owner "
                "run CREATE EXTENSION pg_trgm, then migrate again"
            ) from exc
        found = await conn.fetchval(query)
    return f'"{found}"'


def _statements(m: Migration, sql: str) -> list[str]:
    return Migration(m.version, m.name, sql).statements()


async def _run_concurrently(
    conn: asyncpg.Connection, m: Migration, sql: str, *, connect: Any, progress: Progress | None
) -> None:
    for stmt in _statements(m, sql):
        name_match = _INDEX_NAME.search(stmt)
        if name_match is None:
            await conn.execute(stmt)
            continue
        name = name_match.group(1)
        valid = await conn.fetchval(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)", name
        )
        if valid is False:  # left by an interrupted build: build it again
            await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        elif valid:
            continue
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        build = asyncio.ensure_future(conn.execute(stmt))
        watch = asyncio.ensure_future(_watch(connect, pid, f"index {name}", progress))
        try:
            await build
        finally:
            watch.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await watch


async def _watch(connect: Any, pid: int, what: str, progress: Progress | None) -> None:
    """Report ``pg_stat_progress_create_index`` of backend ``pid`` until cancelled."""
    if progress is None:
        return
    watcher: asyncpg.Connection = await connect()
    try:
        while True:
            row = await watcher.fetchrow(
                "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                "FROM pg_stat_progress_create_index WHERE pid = $1",
                pid,
            )
            if row is not None:
                phase, bd, bt, td, tt = row
                done, total = (td, tt) if tt else (bd, bt)
                progress(f"{what}: {phase}", int(done or 0), int(total or 0))
            await asyncio.sleep(_PROGRESS_EVERY_S)
    finally:
        await watcher.close()
