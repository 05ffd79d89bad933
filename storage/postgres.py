"""The PostgreSQL back-end (asyncpg pool), for several daemons on several machines.

``?schema=NAME`` in the URL selects the ``search_path``; advisory-lock keys and
the change channel derive from it, so isolated schemas never collide.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from storage.base import (
    DROP_AGE,
    DROP_CAP,
    DROP_REASONS,
    DROP_REJECTED,
    AuditFilter,
    AuditRow,
    Command,
    Cursor,
    DaemonState,
    GcResult,
    LedgerEntry,
    QuarantinedRow,
    QueueStats,
    ScanPage,
    SchemaTooNew,
    StoreConflict,
    StoreError,
    StoreReadOnly,
    StoreUnavailable,
    Webhook,
    WebhookDelivery,
    WebhookJob,
)
from storage.codec import AUDIT_COLUMNS
from storage.migrate import latest_version, load_migrations
from storage.query import Dialect, Where, check_scan, iter_pages, scan_page
from storage.url import StoreLocation

CONNECT_TIMEOUT_S = 10.0

DIALECT = Dialect(
    placeholder=lambda n: f"${n}",
    ts=lambda dt: dt,
    uid=lambda u: u,
    telemetry_pred="source LIKE 'telemetry:%'",
    text_columns=("name", "source", "type", "profile_id::text", "props::text", "context::text"),
    like="ILIKE",
)
TELEMETRY = DIALECT.telemetry_pred

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
_LEDGER_COLS = (
    "id, started_at, ended_at, kind, status, events, raw_bytes, encoded_bytes, body_sha256, "
    "batch_key, attempt, http_status, error_class, error, latency_ms, sink"
)
_STATE_COLS = (
    "daemon_id, pid, host, listen, started_at, heartbeat_at, flags, paused, next_run_at, "
    "stopped_at, info"
)
_COMMAND_COLS = "id, kind, args, created_at, status, claimed_by, finished_at, result"
_DELIVERY_COLS = (
    "id, webhook_id, event, batch_key, due_at, attempts, status, http_status, error, "
    "latency_ms, delivered_at"
)

_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, out of memory
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash
    asyncpg.exceptions.InvalidCatalogNameError,  # no such database
)


def _now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _uuid_bytes(value: Any) -> bytes:
    return value.bytes if isinstance(value, uuid.UUID) else uuid.UUID(str(value)).bytes


def _uuid_from_bytes(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=data)


def _lock_key(purpose: str, schema: str) -> int:
    digest = hashlib.sha256(f"tuiaudit:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _status_count(status: str) -> int:
    """The row count of an asyncpg status string such as ``DELETE 5``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def map_error(exc: BaseException, where: str) -> StoreError:
    """An asyncpg/OS error as a ``StoreError`` whose message says what to do."""
    if isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
        return StoreReadOnly(
            f"store {where} is read-only: open it without --read-only, or use a server and "
            "role that accept writes"
        )
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        return StoreConflict(
            f"store {where}: a row with the same id already exists, nothing was stored ({exc})"
        )
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return StoreUnavailable(f"store {where}: {exc}; create the database or fix the URL")
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(
            f"store {where} cannot be reached or cannot write ({exc.__class__.__name__}: {exc}); "
            "check that PostgreSQL is running and has free disk, then retry"
        )
    return StoreError(f"store {where}: {exc.__class__.__name__}: {exc}")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
        )
    await conn.set_type_codec("inet", encoder=str, decoder=str, schema="pg_catalog", format="text")
    await conn.set_type_codec(
        "uuid",
        encoder=_uuid_bytes,
        decoder=_uuid_from_bytes,
        schema="pg_catalog",
        format="binary",
    )


def _row(r: Any) -> AuditRow:
    return AuditRow(*r)


def _ledger(r: Any) -> LedgerEntry:
    return LedgerEntry(*r)


def _state(r: Any) -> DaemonState:
    return DaemonState(*r)


def _command(r: Any) -> Command:
    return Command(*r)


def _delivery(r: Any) -> WebhookDelivery:
    return WebhookDelivery(*r)


class PostgresStore:
    backend = "postgresql"

    def __init__(self, url: str, loc: StoreLocation, read_only: bool) -> None:
        assert loc.dsn is not None
        self.url = url
        self.read_only = read_only
        self._dsn = loc.dsn
        self.schema = loc.schema
        self._where = f"{_redact(loc.dsn)} (schema {loc.schema})"
        self._settings = {
            "search_path": loc.schema,
            "TimeZone": "UTC",
            "application_name": "tuiaudit",
        }
        if read_only:
            self._settings["default_transaction_read_only"] = "on"
        self._pool: asyncpg.Pool | None = None
        self._lease_conn: asyncpg.Connection | None = None
        self._lease_holder: str | None = None
        self._lease_lock = asyncio.Lock()
        self._listen_conn: asyncpg.Connection | None = None
        self._listen_lock = asyncio.Lock()
        self._changes = 0

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
                init=_init_connection,
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

    async def _connect(self) -> asyncpg.Connection:
        """A dedicated connection (outside the pool) for the lease or LISTEN."""
        try:
            conn = await asyncpg.connect(
                self._dsn, server_settings=self._settings, timeout=CONNECT_TIMEOUT_S
            )
        except Exception as exc:
            raise map_error(exc, self._where) from exc
        return conn

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
        pool, self._pool = self._pool, None
        for conn in (lease, listen):
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

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable(f"store {self._where} is closed")
        return self._pool

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreReadOnly(
                f"store {self._where} is open read-only: this action needs the store opened "
                "without --read-only"
            )

    # ---------------------------------------------------------------- plumbing

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._require()
        try:
            async with pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn:
                yield conn
        except StoreError:
            raise
        except Exception as exc:
            raise map_error(exc, self._where) from exc

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        self._check_writable()
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._conn() as conn:
            return list(await conn.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        async with self._conn() as conn:
            return await conn.fetchrow(sql, *args)

    async def _execute(self, sql: str, *args: Any) -> int:
        async with self._tx() as conn:
            return _status_count(await conn.execute(sql, *args))

    # ------------------------------------------------------------------ schema

    async def migrate(self) -> int:
        migrations = load_migrations("postgres")
        latest = migrations[-1].version if migrations else 0
        async with self._tx() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", _lock_key("migrate", self.schema)
            )
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
            )
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
            if current > latest:
                raise SchemaTooNew(
                    f"store {self._where} has schema version {current}, newer than this "
                    f"tuiaudit knows ({latest}): upgrade tuiaudit"
                )
            for m in migrations:
                if m.version <= current:
                    continue
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    m.version,
                    _now(),
                )
                current = m.version
        return int(current)

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

    async def _queue_webhooks(self, conn: asyncpg.Connection, jobs: Sequence[WebhookJob]) -> None:
        hooks = await conn.fetch("SELECT id, event_names FROM webhook WHERE enabled ORDER BY id")
        if not hooks:
            return
        # Concurrent transactions sharing a batch key would each miss the
        # other's uncommitted row and insert a duplicate: serialise them on the
        # key (sorted lock ids, so two multi-key batches cannot deadlock).
        keys = {j.batch_key for j in jobs if j.batch_key is not None}
        for lock in sorted({_lock_key(f"webhook-batch:{k}", self.schema) for k in keys}):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
        now = _now()
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
                    if _status_count(status):
                        continue
                await conn.execute(
                    "INSERT INTO webhook_delivery (webhook_id, event, batch_key, due_at) "
                    "VALUES ($1, $2, $3, $4)",
                    hid,
                    job.event,
                    job.batch_key,
                    due,
                )

    async def fetch_rows(
        self, flt: AuditFilter | None = None, *, before: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        w = Where(DIALECT).filter(flt).before(before)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} "
            f"ORDER BY created_at DESC, id DESC LIMIT {w.p(limit)}",
            *w.params,
        )
        return [_row(r) for r in rows]

    async def fetch_rows_after(
        self, flt: AuditFilter | None = None, *, after: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        w = Where(DIALECT).filter(flt).after(after)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} "
            f"ORDER BY created_at, id LIMIT {w.p(limit)}",
            *w.params,
        )
        return [_row(r) for r in rows]

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
                    to_row=_row, to_cursor=lambda r: (r[0], r[1]),
                )  # fmt: skip
            except asyncpg.PostgresError as exc:
                raise map_error(exc, self._where) from exc

    async def count_rows(self, flt: AuditFilter | None = None, *, limit: int | None = None) -> int:
        w = Where(DIALECT).filter(flt)
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
        return None if r is None else _row(r)

    # -------------------------------------------------------- telemetry queue

    async def telemetry_page(self, limit: int, *, after: Cursor | None = None) -> list[AuditRow]:
        w = Where(DIALECT).telemetry().after(after)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} "
            f"ORDER BY created_at, id LIMIT {w.p(limit)}",
            *w.params,
        )
        return [_row(r) for r in rows]

    async def telemetry_rows(self, ids: Sequence[uuid.UUID]) -> list[AuditRow]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = ANY($1::uuid[]) AND {TELEMETRY}",
            wanted,
        )
        by_id = {r.id: r for r in map(_row, rows)}
        return [by_id[i] for i in wanted if i in by_id]

    async def delete_rows(self, ids: Sequence[uuid.UUID]) -> int:
        if not ids:
            return 0
        return await self._execute("DELETE FROM audit_log WHERE id = ANY($1::uuid[])", list(ids))

    async def gc_telemetry(self, *, older_than: datetime, cap: int) -> GcResult:
        async with self._tx() as conn:
            # Two daemons collecting at once would each cut "the excess".
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key("gc", self.schema))
            aged = _status_count(
                await conn.execute(
                    f"DELETE FROM audit_log WHERE {TELEMETRY} AND created_at < $1", older_than
                )
            )
            excess = await conn.fetchval(f"SELECT count(*) FROM audit_log WHERE {TELEMETRY}")
            excess -= max(cap, 0)
            capped = 0
            if excess > 0:
                capped = _status_count(
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
            n = _status_count(await conn.execute(f"DELETE FROM audit_log{w.sql}", *w.params))
            await self._add_drops(conn, reason, n)
        return n

    async def queue_stats(self) -> QueueStats:
        async with self._conn() as conn:
            pending, oldest = await conn.fetchrow(
                f"SELECT count(*), min(created_at) FROM audit_log WHERE {TELEMETRY}"
            )
            quarantined = await conn.fetchval("SELECT count(*) FROM quarantine")
        return QueueStats(pending, oldest, quarantined)

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
                _now(),
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
            n = _status_count(await conn.execute(f"DELETE FROM quarantine{where}", *args))
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
            _dumps(value),
        )

    async def ensure_property(self, key: str, default: Any) -> Any:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO server_prop (id, content) VALUES ($1, $2::text::jsonb) "
                "ON CONFLICT (id) DO NOTHING",
                key,
                _dumps(default),
            )
            text = await conn.fetchval("SELECT content::text FROM server_prop WHERE id = $1", key)
        return orjson.loads(text)

    async def delete_property(self, key: str) -> None:
        await self._execute("DELETE FROM server_prop WHERE id = $1", key)

    # ---------------------------------------------------------------- ledger

    async def ledger_begin(
        self,
        *,
        kind: str,
        events: int,
        raw_bytes: int,
        encoded_bytes: int,
        body_sha256: str,
        batch_key: str,
        attempt: int,
        sink: str | None,
        started_at: datetime,
    ) -> int:
        async with self._tx() as conn:
            entry_id = await conn.fetchval(
                "INSERT INTO ship_ledger (started_at, kind, status, events, raw_bytes, "
                "encoded_bytes, body_sha256, batch_key, attempt, sink) "
                "VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                started_at, kind, events, raw_bytes, encoded_bytes, body_sha256, batch_key,
                attempt, sink,
            )  # fmt: skip
        return int(entry_id)

    async def ledger_finish(
        self,
        entry_id: int,
        *,
        status: str,
        ended_at: datetime,
        http_status: int | None = None,
        error_class: str | None = None,
        error: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        await self._execute(
            "UPDATE ship_ledger SET status = $1, ended_at = $2, http_status = $3, "
            "error_class = $4, error = $5, latency_ms = $6 WHERE id = $7",
            status, ended_at, http_status, error_class, error, latency_ms, entry_id,
        )  # fmt: skip

    async def ledger_recent(self, limit: int = 50) -> list[LedgerEntry]:
        rows = await self._fetch(
            f"SELECT {_LEDGER_COLS} FROM ship_ledger ORDER BY id DESC LIMIT $1", limit
        )
        return [_ledger(r) for r in rows]

    async def ledger_mark_interrupted(self, *, ended_at: datetime) -> int:
        return await self._execute(
            "UPDATE ship_ledger SET status = 'interrupted', ended_at = $1 WHERE status = 'running'",
            ended_at,
        )

    # ----------------------------------------------------------- shipper lease
    # A session advisory lock on a dedicated connection: it dies with the
    # process, so no expiry is needed; ttl_s only matters on SQLite.

    async def try_acquire_shipper(self, holder: str, *, ttl_s: float) -> bool:
        self._check_writable()
        self._require()
        async with self._lease_lock:
            conn = self._lease_conn
            if conn is not None:
                try:
                    await conn.fetchval("SELECT 1")
                    return self._lease_holder == holder
                except Exception:  # the connection died, and the lock with it
                    conn.terminate()
                    self._lease_conn = self._lease_holder = None
            conn = await self._connect()
            try:
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", _lock_key("shipper", self.schema)
                )
            except Exception as exc:
                conn.terminate()
                raise map_error(exc, self._where) from exc
            if not got:
                await conn.close()
                return False
            self._lease_conn, self._lease_holder = conn, holder
            return True

    async def release_shipper(self, holder: str) -> None:
        async with self._lease_lock:
            conn = self._lease_conn
            if conn is None or self._lease_holder != holder:
                return
            self._lease_conn = self._lease_holder = None
            try:
                await conn.execute(
                    "SELECT pg_advisory_unlock($1)", _lock_key("shipper", self.schema)
                )
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()  # closing the session releases the lock too

    # ------------------------------------------------------ daemon state, commands

    async def put_daemon_state(self, state: DaemonState) -> None:
        s = state
        await self._execute(
            f"INSERT INTO daemon_state ({_STATE_COLS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (daemon_id) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
            "listen = excluded.listen, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, flags = excluded.flags, "
            "paused = excluded.paused, next_run_at = excluded.next_run_at, "
            "stopped_at = excluded.stopped_at, info = excluded.info",
            s.daemon_id, s.pid, s.host, s.listen, s.started_at, s.heartbeat_at, list(s.flags),
            s.paused, s.next_run_at, s.stopped_at, s.info,
        )  # fmt: skip

    async def daemon_states(self) -> list[DaemonState]:
        rows = await self._fetch(
            f"SELECT {_STATE_COLS} FROM daemon_state ORDER BY heartbeat_at DESC, daemon_id"
        )
        return [_state(r) for r in rows]

    async def enqueue_command(self, kind: str, args: dict[str, Any] | None = None) -> int:
        async with self._tx() as conn:
            command_id = await conn.fetchval(
                "INSERT INTO command (kind, args, created_at) VALUES ($1, $2, $3) RETURNING id",
                kind,
                args or {},
                _now(),
            )
        return int(command_id)

    async def claim_commands(
        self, daemon_id: str, *, kinds: Sequence[str] | None = None
    ) -> list[Command]:
        inner = "SELECT id FROM command WHERE status = 'pending'"
        args: list[Any] = [daemon_id]
        if kinds is not None:
            inner += " AND kind = ANY($2::text[])"
            args.append(list(kinds))
        async with self._tx() as conn:
            rows = await conn.fetch(
                "UPDATE command SET status = 'running', claimed_by = $1 "
                f"WHERE status = 'pending' AND id IN ({inner} ORDER BY id FOR UPDATE SKIP LOCKED) "
                f"RETURNING {_COMMAND_COLS}",
                *args,
            )
        return sorted((_command(r) for r in rows), key=lambda c: c.id)

    async def finish_command(self, command_id: int, *, ok: bool, result: dict[str, Any]) -> None:
        await self._execute(
            "UPDATE command SET status = $1, finished_at = $2, result = $3 WHERE id = $4",
            "done" if ok else "failed",
            _now(),
            result,
            command_id,
        )

    async def get_command(self, command_id: int) -> Command | None:
        r = await self._fetchrow(f"SELECT {_COMMAND_COLS} FROM command WHERE id = $1", command_id)
        return None if r is None else _command(r)

    # ---------------------------------------------------------------- webhooks

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
                _now(),
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
            "delivered_at = CASE WHEN $1 = 'delivered' THEN $6 ELSE delivered_at END "
            "WHERE id = $7",
            status, http_status, error, latency_ms, retry_at, _now(), delivery_id,
        )  # fmt: skip

    async def recent_deliveries(self, limit: int = 50) -> list[WebhookDelivery]:
        rows = await self._fetch(
            f"SELECT {_DELIVERY_COLS} FROM webhook_delivery ORDER BY id DESC LIMIT $1", limit
        )
        return [_delivery(r) for r in rows]

    # ---------------------------------------------------------- change token

    def _on_notify(self, *_: Any) -> None:
        self._changes += 1

    async def change_token(self) -> int:
        self._require()
        async with self._listen_lock:
            conn = self._listen_conn
            if conn is None or conn.is_closed():
                conn = await self._connect()
                try:
                    await conn.add_listener(f"tuiaudit_{self.schema}", self._on_notify)
                except Exception as exc:
                    conn.terminate()
                    raise map_error(exc, self._where) from exc
                self._listen_conn = conn
                self._changes += 1  # (re)connected: changes may have been missed
            else:
                # A round trip makes the server deliver what is pending.
                try:
                    await conn.fetchval("SELECT 1")
                except Exception as exc:
                    conn.terminate()
                    self._listen_conn = None
                    raise map_error(exc, self._where) from exc
            await asyncio.sleep(0)  # let queued notification callbacks run
            return self._changes


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
