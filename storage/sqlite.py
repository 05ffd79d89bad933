"""The SQLite back-end (aiosqlite): one file, WAL, one connection behind a lock.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a read-then-write never
deadlocks against another process and waits (``busy_timeout``) instead.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiosqlite
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
from storage.codec import (
    AUDIT_COLUMNS,
    json_text,
    json_value,
    parse_ts,
    parse_ts_opt,
    row_from_sqlite,
    rows_from_sqlite,
    rows_params,
    ts_text,
    ts_text_opt,
)
from storage.migrate import latest_version, load_migrations
from storage.query import Dialect, Where, iter_pages, scan_page
from storage.sqlite_writer import GroupStats, GroupWriter
from storage.url import StoreLocation

BUSY_TIMEOUT_MS = 5000
T = TypeVar("T")

DIALECT = Dialect(
    placeholder=lambda n: f"?{n}",  # numbered: a value may be used twice
    ts=ts_text,
    uid=str,
    telemetry_pred="substr(source, 1, 10) = 'telemetry:'",  # the queue index predicate
    text_columns=("name", "source", "type", "profile_id", "props", "context"),
    like="LIKE",
)
TELEMETRY = DIALECT.telemetry_pred
_QUEUE_INDEX = "INDEXED BY audit_log_telemetry_queue"  # smaller than the source index

_IDS = "SELECT value FROM json_each(?)"
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


def _now() -> datetime:
    return datetime.now(UTC)


_PARSE_IN_THREAD = 1000  # rows of a page worth a thread hop to parse


def _ids_json(ids: Sequence[uuid.UUID]) -> str:
    return orjson.dumps([str(i) for i in ids]).decode()


def map_error(exc: BaseException, path: Path) -> StoreError:
    """A sqlite3/OS error as a ``StoreError`` whose message says what to do."""
    msg = str(exc).lower()
    if isinstance(exc, sqlite3.IntegrityError):
        if "unique" in msg or "primary key" in msg:
            return StoreConflict(
                f"store {path}: a row with the same id already exists, nothing was stored ({exc})"
            )
        return StoreError(f"store {path} rejected the write, nothing was stored: {exc}")
    if "readonly" in msg or "read-only" in msg:
        return StoreReadOnly(
            f"store {path} is read-only: open it without --read-only and check that the file "
            "and its directory are writable"
        )
    if "locked" in msg or "busy" in msg:
        return StoreUnavailable(
            f"store {path} is busy: another process held its write lock for over "
            f"{BUSY_TIMEOUT_MS // 1000} s; retry"
        )
    if "full" in msg:
        return StoreUnavailable(f"store {path}: the disk is full; free some space and retry")
    if isinstance(exc, OSError) or any(
        s in msg for s in ("i/o", "unable to open", "not a database", "malformed", "cantopen")
    ):
        return StoreUnavailable(f"store {path} cannot be used ({exc}); check the path and disk")
    return StoreError(f"store {path}: {exc}")


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (-wal/-shm inherit its mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _tighten_modes(path: Path) -> None:
    """Belt and braces: the file and its -wal/-shm readable by the owner only."""
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        try:
            if p.stat().st_mode & 0o077:
                p.chmod(0o600)
        except FileNotFoundError:
            pass
        except OSError:
            pass  # not ours to change (another user's file opened read-write)


def _ledger(t: Any) -> LedgerEntry:
    return LedgerEntry(
        t[0], parse_ts(t[1]), parse_ts_opt(t[2]), *t[3:11], t[11], t[12], t[13], t[14], t[15]
    )


def _state(t: Any) -> DaemonState:
    return DaemonState(
        t[0], t[1], t[2], t[3], parse_ts(t[4]), parse_ts(t[5]), json_value(t[6], []),
        bool(t[7]), parse_ts_opt(t[8]), parse_ts_opt(t[9]), json_value(t[10], {}),
    )  # fmt: skip


def _command(t: Any) -> Command:
    return Command(
        t[0], t[1], json_value(t[2], {}), parse_ts(t[3]), t[4], t[5], parse_ts_opt(t[6]),
        json_value(t[7], {}),
    )  # fmt: skip


def _delivery(t: Any) -> WebhookDelivery:
    return WebhookDelivery(
        t[0], t[1], json_value(t[2], {}), t[3], parse_ts(t[4]), t[5], t[6], t[7], t[8], t[9],
        parse_ts_opt(t[10]),
    )  # fmt: skip


class SqliteStore:
    backend = "sqlite"

    def __init__(self, url: str, path: Path, read_only: bool) -> None:
        self.url = url
        self.path = path
        self.read_only = read_only
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._local_writes = 0
        # insert_rows: concurrent calls share one transaction (group commit).
        self._writer = GroupWriter(
            path, self._lock, busy_timeout_ms=BUSY_TIMEOUT_MS, on_commit=self._wrote
        )

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls, url: str, loc: StoreLocation, *, read_only: bool, migrate: bool
    ) -> SqliteStore:
        assert loc.path is not None
        path = loc.path.expanduser().absolute()
        self = cls(url, path, read_only)
        try:
            if read_only:
                if not path.exists():
                    raise StoreUnavailable(
                        f"no store at {path}: start the daemon once to create it, or pass "
                        "--store with the right path"
                    )
                uri = f"file:{quote(str(path))}?mode=ro"
            else:
                _create_private(path)
                uri = f"file:{quote(str(path))}?mode=rwc"
            self._conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise map_error(exc, path) from exc
        try:
            await self._setup(migrate=migrate)
        except sqlite3.Error as exc:
            await self.close()
            raise map_error(exc, path) from exc
        except BaseException:
            await self.close()
            raise
        return self

    async def _setup(self, *, migrate: bool) -> None:
        conn = self._require()
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if self.read_only:
            await conn.execute("PRAGMA query_only = 1")
        else:
            # Switching to WAL while another connection opens the same new file
            # can answer "locked" without waiting: retry it ourselves.
            await self._retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        if migrate and not self.read_only:
            await self.migrate()
        else:
            await self._check_version(need_current=self.read_only)
        if not self.read_only:
            _tighten_modes(self.path)

    async def _check_version(self, *, need_current: bool) -> None:
        version = await self.schema_version()
        latest = latest_version("sqlite")
        if version > latest:
            raise SchemaTooNew(
                f"store {self.path} has schema version {version}, newer than this tuiaudit "
                f"knows ({latest}): upgrade tuiaudit"
            )
        if need_current and version < latest:
            raise StoreError(
                f"store {self.path} has schema version {version}, this tuiaudit needs {latest}: "
                "open it once without --read-only (or start the daemon) to migrate it"
            )

    async def close(self) -> None:
        await self._writer.close()  # queued inserts are written first
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def __del__(self) -> None:
        if getattr(self, "_conn", None) is not None:
            warnings.warn(
                f"store {self.url!r} was not closed: use 'async with open_store(...)'",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"store {self.path} is closed")
        return self._conn

    # ---------------------------------------------------------------- plumbing

    async def _retry_locked(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` again while SQLite answers "locked" without having waited
        (WAL recovery, journal-mode switch), up to the busy timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
        delay = 0.005
        while True:
            try:
                return await op()
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if ("locked" not in msg and "busy" not in msg) or loop.time() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._require()
        async with self._lock:
            try:
                return list(await self._retry_locked(lambda: conn.execute_fetchall(sql, params)))
            except sqlite3.Error as exc:
                raise map_error(exc, self.path) from exc

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._fetch(sql, params)
        return rows[0] if rows else None

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One ``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any error."""
        if self.read_only:
            raise StoreReadOnly(
                f"store {self.path} is open read-only: this action needs the store opened "
                "without --read-only"
            )
        conn = self._require()
        async with self._lock:
            try:
                await self._retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
            except sqlite3.Error as exc:
                raise map_error(exc, self.path) from exc
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    await conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the failed statement may already have rolled back
                if isinstance(exc, sqlite3.Error | OSError):
                    raise map_error(exc, self.path) from exc
                raise
            self._local_writes += 1

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._tx() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    async def _checkpoint(self) -> None:
        """Give the WAL a chance to shrink after a large delete (never blocks writers)."""
        conn = self._require()
        async with self._lock:
            try:
                await conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # an optimisation only

    # ------------------------------------------------------------------ schema

    async def migrate(self) -> int:
        migrations = load_migrations("sqlite")
        async with self._tx() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            rows = await conn.execute_fetchall("SELECT max(version) FROM schema_migrations")
            current = next(iter(rows))[0] or 0
            latest = migrations[-1].version if migrations else 0
            if current > latest:
                raise SchemaTooNew(
                    f"store {self.path} has schema version {current}, newer than this tuiaudit "
                    f"knows ({latest}): upgrade tuiaudit"
                )
            for m in migrations:
                if m.version <= current:
                    continue
                for stmt in m.statements():
                    await conn.execute(stmt)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (m.version, ts_text(_now())),
                )
                current = m.version
        return current

    async def schema_version(self) -> int:
        exists = await self._fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        )
        if exists is None:
            return 0
        row = await self._fetchone("SELECT max(version) FROM schema_migrations")
        return int(row[0] or 0)

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    # ------------------------------------------------------------- audit rows

    async def insert_rows(
        self, rows: Sequence[AuditRow], webhook_jobs: Sequence[WebhookJob] = ()
    ) -> None:
        if not rows and not webhook_jobs:
            return
        if self.read_only:
            raise StoreReadOnly(
                f"store {self.path} is open read-only: this action needs the store opened "
                "without --read-only"
            )
        self._require()
        try:
            params = rows_params(rows)
        except (TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"cannot store the rows, nothing was stored: {exc}") from exc
        # Group commit (storage/sqlite_writer.py): this call's rows and jobs go
        # in their own savepoint of a transaction shared with concurrent calls.
        try:
            await self._writer.insert(params, webhook_jobs)
        except (sqlite3.Error, OSError) as exc:
            raise map_error(exc, self.path) from exc

    def _wrote(self) -> None:
        self._local_writes += 1

    @property
    def group_stats(self) -> GroupStats:
        """insert_rows transactions, calls and rows so far (benchmarks, tests)."""
        return self._writer.stats

    async def fetch_rows(
        self, flt: AuditFilter | None = None, *, before: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        w = Where(DIALECT).filter(flt).before(before)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            [*w.params, limit],
        )
        return [row_from_sqlite(t) for t in rows]

    async def fetch_rows_after(
        self, flt: AuditFilter | None = None, *, after: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        w = Where(DIALECT).filter(flt).after(after)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} ORDER BY created_at, id LIMIT ?",
            [*w.params, limit],
        )
        return [row_from_sqlite(t) for t in rows]

    async def scan_rows(
        self,
        flt: AuditFilter | None = None,
        *,
        before: Cursor | None = None,
        limit: int,
        scan: int,
    ) -> ScanPage:
        conn = self._require()

        async def run(sql: str, params: list[Any]) -> list[Any]:
            return list(await self._retry_locked(lambda: conn.execute_fetchall(sql, params)))

        # One lock for the three statements: no other query of this
        # connection runs between them.
        async with self._lock:
            try:
                return await scan_page(
                    run, DIALECT, AUDIT_COLUMNS, flt, before=before, limit=limit, scan=scan,
                    to_row=row_from_sqlite,
                    to_cursor=lambda t: (parse_ts(t[0]), uuid.UUID(t[1])),
                )  # fmt: skip
            except sqlite3.Error as exc:
                raise map_error(exc, self.path) from exc

    async def count_rows(self, flt: AuditFilter | None = None, *, limit: int | None = None) -> int:
        w = Where(DIALECT).filter(flt)
        if limit is None:
            row = await self._fetchone(f"SELECT count(*) FROM audit_log{w.sql}", w.params)
        else:
            row = await self._fetchone(
                f"SELECT count(*) FROM (SELECT 1 FROM audit_log{w.sql} LIMIT ?)",
                [*w.params, limit + 1],
            )
        return int(row[0])

    def iter_rows(
        self, flt: AuditFilter | None = None, *, chunk: int = 1000
    ) -> AsyncIterator[AuditRow]:
        return iter_pages(self.fetch_rows_after, flt, chunk)

    async def get_row(self, row_id: uuid.UUID) -> AuditRow | None:
        t = await self._fetchone(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = ?", (str(row_id),)
        )
        return None if t is None else row_from_sqlite(t)

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
            f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id IN ({_IDS}) AND {TELEMETRY}",
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
            cur = await conn.execute(f"DELETE FROM audit_log WHERE id IN ({_IDS})", (id_list,))
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

    async def counts_by_name(self, *, source_prefix: str, since: datetime) -> dict[str, int]:
        w = Where(DIALECT)
        w.source_prefix(source_prefix)
        w.add(f"created_at >= {w.p(ts_text(since))}")
        rows = await self._fetch(
            f"SELECT name, count(*) FROM audit_log{w.sql} GROUP BY name ORDER BY name", w.params
        )
        return {name: n for name, n in rows}

    async def rows_per_minute(
        self, *, source_prefix: str | None, since: datetime
    ) -> list[tuple[datetime, int]]:
        w = Where(DIALECT)
        if source_prefix:
            w.source_prefix(source_prefix)
        w.add(f"created_at >= {w.p(ts_text(since))}")
        rows = await self._fetch(
            f"SELECT substr(created_at, 1, 16) AS minute, count(*) FROM audit_log{w.sql} "
            "GROUP BY minute ORDER BY minute",
            w.params,
        )
        return [(datetime.fromisoformat(m + ":00+00:00"), n) for m, n in rows]

    async def total_rows(self) -> int:
        (n,) = await self._fetchone("SELECT count(*) FROM audit_log")
        return int(n)

    # --------------------------------------------------------------- quarantine

    async def quarantine(self, ids: Sequence[uuid.UUID], *, reason: str) -> int:
        if not ids:
            return 0
        sel = f"{TELEMETRY} AND id IN ({_IDS})"
        async with self._tx() as conn:
            await conn.execute(
                f"INSERT OR REPLACE INTO quarantine ({AUDIT_COLUMNS}, reason, quarantined_at) "
                f"SELECT {AUDIT_COLUMNS}, ?, ? FROM audit_log WHERE {sel}",
                (reason, ts_text(_now()), _ids_json(ids)),
            )
            cur = await conn.execute(f"DELETE FROM audit_log WHERE {sel}", (_ids_json(ids),))
            return cur.rowcount

    async def list_quarantine(self, limit: int = 500) -> list[QuarantinedRow]:
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS}, reason, quarantined_at FROM quarantine "
            "ORDER BY quarantined_at DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [QuarantinedRow(row_from_sqlite(t), t[11], parse_ts(t[12])) for t in rows]

    async def release_quarantine(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        where, params = ("", ()) if ids is None else (f" WHERE id IN ({_IDS})", (_ids_json(ids),))
        async with self._tx() as conn:
            await conn.execute(
                f"INSERT OR IGNORE INTO audit_log ({AUDIT_COLUMNS}) "
                f"SELECT {AUDIT_COLUMNS} FROM quarantine{where}",
                params,
            )
            cur = await conn.execute(f"DELETE FROM quarantine{where}", params)
            return cur.rowcount

    async def purge_quarantine(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        where, params = ("", ()) if ids is None else (f" WHERE id IN ({_IDS})", (_ids_json(ids),))
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

    # ------------------------------------------------------------ properties

    async def get_property(self, key: str) -> Any | None:
        t = await self._fetchone("SELECT content FROM server_prop WHERE id = ?", (key,))
        return None if t is None else orjson.loads(t[0])

    async def set_property(self, key: str, value: Any) -> None:
        await self._write(
            "INSERT INTO server_prop (id, content) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET content = excluded.content",
            (key, json_text(value)),
        )

    async def ensure_property(self, key: str, default: Any) -> Any:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO server_prop (id, content) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                (key, json_text(default)),
            )
            rows = await conn.execute_fetchall(
                "SELECT content FROM server_prop WHERE id = ?", (key,)
            )
            return orjson.loads(next(iter(rows))[0])

    async def delete_property(self, key: str) -> None:
        await self._write("DELETE FROM server_prop WHERE id = ?", (key,))

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
            cur = await conn.execute(
                "INSERT INTO ship_ledger (started_at, kind, status, events, raw_bytes, "
                "encoded_bytes, body_sha256, batch_key, attempt, sink) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (ts_text(started_at), kind, events, raw_bytes, encoded_bytes, body_sha256,
                 batch_key, attempt, sink),
            )  # fmt: skip
            return int(cur.lastrowid or 0)

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
        await self._write(
            "UPDATE ship_ledger SET status = ?, ended_at = ?, http_status = ?, error_class = ?, "
            "error = ?, latency_ms = ? WHERE id = ?",
            (status, ts_text(ended_at), http_status, error_class, error, latency_ms, entry_id),
        )

    async def ledger_recent(self, limit: int = 50) -> list[LedgerEntry]:
        rows = await self._fetch(
            f"SELECT {_LEDGER_COLS} FROM ship_ledger ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_ledger(t) for t in rows]

    async def ledger_mark_interrupted(self, *, ended_at: datetime) -> int:
        return await self._write(
            "UPDATE ship_ledger SET status = 'interrupted', ended_at = ? WHERE status = 'running'",
            (ts_text(ended_at),),
        )

    # ----------------------------------------------------------- shipper lease

    async def try_acquire_shipper(self, holder: str, *, ttl_s: float) -> bool:
        now = _now()
        n = await self._write(
            "INSERT INTO ship_lease (name, holder, expires_at) VALUES ('shipper', ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at "
            "WHERE ship_lease.holder = excluded.holder OR ship_lease.expires_at <= ?",
            (holder, ts_text(now + timedelta(seconds=ttl_s)), ts_text(now)),
        )
        return n == 1

    async def release_shipper(self, holder: str) -> None:
        await self._write("DELETE FROM ship_lease WHERE name = 'shipper' AND holder = ?", (holder,))

    # ------------------------------------------------------ daemon state, commands

    async def put_daemon_state(self, state: DaemonState) -> None:
        s = state
        await self._write(
            f"INSERT INTO daemon_state ({_STATE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (daemon_id) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
            "listen = excluded.listen, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, flags = excluded.flags, "
            "paused = excluded.paused, next_run_at = excluded.next_run_at, "
            "stopped_at = excluded.stopped_at, info = excluded.info",
            (s.daemon_id, s.pid, s.host, s.listen, ts_text(s.started_at),
             ts_text(s.heartbeat_at), json_text(list(s.flags)), int(s.paused),
             ts_text_opt(s.next_run_at), ts_text_opt(s.stopped_at), json_text(s.info)),
        )  # fmt: skip

    async def daemon_states(self) -> list[DaemonState]:
        rows = await self._fetch(
            f"SELECT {_STATE_COLS} FROM daemon_state ORDER BY heartbeat_at DESC, daemon_id"
        )
        return [_state(t) for t in rows]

    async def enqueue_command(self, kind: str, args: dict[str, Any] | None = None) -> int:
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO command (kind, args, created_at) VALUES (?, ?, ?)",
                (kind, json_text(args or {}), ts_text(_now())),
            )
            return int(cur.lastrowid or 0)

    async def claim_commands(
        self, daemon_id: str, *, kinds: Sequence[str] | None = None
    ) -> list[Command]:
        sql = "UPDATE command SET status = 'running', claimed_by = ? WHERE status = 'pending'"
        params: list[Any] = [daemon_id]
        if kinds is not None:
            sql += f" AND kind IN ({_IDS})"
            params.append(json_text(list(kinds)))
        async with self._tx() as conn:
            rows = await conn.execute_fetchall(f"{sql} RETURNING {_COMMAND_COLS}", params)
        return sorted((_command(t) for t in rows), key=lambda c: c.id)

    async def finish_command(self, command_id: int, *, ok: bool, result: dict[str, Any]) -> None:
        await self._write(
            "UPDATE command SET status = ?, finished_at = ?, result = ? WHERE id = ?",
            ("done" if ok else "failed", ts_text(_now()), json_text(result), command_id),
        )

    async def get_command(self, command_id: int) -> Command | None:
        t = await self._fetchone(f"SELECT {_COMMAND_COLS} FROM command WHERE id = ?", (command_id,))
        return None if t is None else _command(t)

    # ---------------------------------------------------------------- webhooks

    async def add_webhook(
        self, url: str, *, secret: str | None, event_names: Sequence[str], retries: int = 0
    ) -> int:
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO webhook (url, secret, event_names, retries, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (url, secret, json_text(list(event_names)), retries, ts_text(_now())),
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
        now = _now()
        if retry_at is not None:
            status = "pending"
        await self._write(
            "UPDATE webhook_delivery SET attempts = attempts + 1, status = ?, http_status = ?, "
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

    # ---------------------------------------------------------- change token

    async def change_token(self) -> int:
        # data_version moves on commits by other connections; our own writes
        # are counted locally, so the sum moves on every commit.
        (version,) = await self._fetchone("PRAGMA data_version")
        return int(version) + self._local_writes
