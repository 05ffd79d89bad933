"""The SQLite back-end (aiosqlite): one file, WAL, one connection behind a lock.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a read-then-write never
deadlocks against another process and waits (``busy_timeout``) instead.

``SqliteStore`` (here: open/close, migrations, audit rows and their statistics,
server properties) is composed of one part per concern, each a ``SqliteBase``
subclass: ``sqlite_conn`` (connection, query helpers, error mapping),
``sqlite_queue`` (telemetry queue, quarantine, drops), ``sqlite_coord`` (ledger,
shipper lease, daemon state, commands, change token), ``sqlite_webhooks``,
``sqlite_archive`` (audit archive and retention); and
``sqlite_writer`` writes ``insert_rows`` by group commit.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
import warnings
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite
import orjson

from tuiaudit.storage.base import (
    AuditFilter,
    AuditRow,
    Cursor,
    ScanPage,
    SchemaTooNew,
    StoreError,
    StoreReadOnly,
    StoreUnavailable,
    WebhookJob,
)
from tuiaudit.storage.columns import (
    AUDIT_COLUMNS,
    json_text,
    parse_ts,
    row_from_sqlite,
    rows_params,
    ts_text,
)
from tuiaudit.storage.migrate import Progress, latest_version, pending_migrations
from tuiaudit.storage.query import Where, iter_pages, scan_page
from tuiaudit.storage.sqlite_approval import SqliteApproval
from tuiaudit.storage.sqlite_archive import SqliteArchive
from tuiaudit.storage.sqlite_conn import (
    BUSY_TIMEOUT_MS,
    DIALECT,
    TELEMETRY,
    check_store_files,
    map_error,
    now_utc,
)
from tuiaudit.storage.sqlite_coord import SqliteCoordination
from tuiaudit.storage.sqlite_queue import SqliteQueue
from tuiaudit.storage.sqlite_search import SqliteSearch, uses_index
from tuiaudit.storage.sqlite_webhooks import SqliteWebhooks
from tuiaudit.storage.sqlite_writer import GroupStats
from tuiaudit.storage.url import StoreLocation

__all__ = ["BUSY_TIMEOUT_MS", "DIALECT", "TELEMETRY", "SqliteStore", "map_error"]


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (-wal/-shm inherit its mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _tighten_modes(path: Path) -> None:
    """Belt and braces: the file and its -wal/-shm readable by the owner only.

    Only group and other bits are removed: a file the user made read-only
    stays read-only (DESIGN §8.2).
    """
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        try:
            mode = p.stat().st_mode
            if mode & 0o077:
                p.chmod(mode & 0o700)
        except FileNotFoundError:
            pass
        except OSError:
            pass  # not ours to change (another user's file opened read-write)


class SqliteStore(
    SqliteQueue, SqliteCoordination, SqliteWebhooks, SqliteArchive, SqliteApproval, SqliteSearch
):
    backend = "sqlite"

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls, url: str, loc: StoreLocation, *, read_only: bool, migrate: bool
    ) -> SqliteStore:
        assert loc.path is not None
        path = loc.path.expanduser().absolute()
        check_store_files(path, read_only=read_only)  # before anything is created or opened
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

    # ------------------------------------------------------------------ schema

    async def migrate(self, progress: Progress | None = None) -> int:
        """Apply pending migrations; with ``progress`` (``tuiaudit migrate``) also build
        the free-text index of the rows not indexed yet, in committed chunks."""
        version = await self._migrate_schema()
        if progress is not None:
            await self.build_search_index(progress)
        return version

    async def _migrate_schema(self) -> int:
        async with self._tx() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            rows = await conn.execute_fetchall("SELECT max(version) FROM schema_migrations")
            current = next(iter(rows))[0] or 0
            for m in pending_migrations("sqlite", current, str(self.path)):
                for stmt in m.statements():
                    await conn.execute(stmt)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (m.version, ts_text(now_utc())),
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
        await self.insert_params(params, webhook_jobs)

    async def insert_params(
        self, params: Sequence[Sequence[Any]], webhook_jobs: Sequence[WebhookJob] = ()
    ) -> None:
        """``insert_rows`` for rows already converted by ``rows_params`` (the
        ingest worker processes convert, the writer process only inserts)."""
        if self.read_only:
            raise StoreReadOnly(f"store {self.path} is open read-only")
        self._require()
        # Group commit (storage/sqlite_writer.py): this call's rows and jobs go
        # in their own savepoint of a transaction shared with concurrent calls.
        try:
            await self._writer.insert(params, webhook_jobs)  # type: ignore[arg-type]
        except (sqlite3.Error, OSError) as exc:
            raise map_error(exc, self.path) from exc

    async def insert_packed(
        self, packed: bytes, count: int, webhook_jobs: Sequence[WebhookJob] = ()
    ) -> None:
        """``insert_rows`` for ``count`` rows an ingest worker packed: ``msgspec.msgpack``
        of their ``rows_params`` tuples. The writer binds them from these bytes
        (storage/sqlite_writer.py)."""
        if not count and not webhook_jobs:
            return
        if self.read_only:
            raise StoreReadOnly(f"store {self.path} is open read-only")
        self._require()
        try:
            await self._writer.insert_packed(packed, count, webhook_jobs)
        except (sqlite3.Error, OSError) as exc:
            raise map_error(exc, self.path) from exc

    @property
    def group_stats(self) -> GroupStats:
        """insert_rows transactions, calls and rows so far (benchmarks, tests)."""
        return self._writer.stats

    async def fetch_rows(
        self, flt: AuditFilter | None = None, *, before: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        return await self._page(flt, Where(DIALECT).before(before), "DESC", limit)

    async def fetch_rows_after(
        self, flt: AuditFilter | None = None, *, after: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        return await self._page(flt, Where(DIALECT).after(after), "", limit)

    async def _page(
        self, flt: AuditFilter | None, w: Where, way: str, limit: int
    ) -> list[AuditRow]:
        """One keyset page in ``created_at, id`` order (``way`` "DESC": newest first).

        A text of 3 characters or more is looked up in the trigram index
        (sqlite_search) unless it is common, when walking the order's index with
        the LIKE finds a page sooner than sorting every match.
        """
        w.filter(flt, text=False)
        order = f"created_at {way}, id {way}"
        needle = flt.text if flt is not None else None
        if needle and uses_index(needle):
            rows = await self._search_page(AUDIT_COLUMNS, w.copy(), needle, order, limit)
            if rows is not None:
                return [row_from_sqlite(t) for t in rows]
        if needle:
            w.text(needle)
        rows = await self._fetch(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{w.sql} ORDER BY {order} LIMIT {int(limit)}",
            w.params,
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
        if flt is not None and uses_index(flt.text):
            assert flt.text is not None
            return await self._search_count(Where(DIALECT).filter(flt, text=False), flt.text, limit)
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

    # ------------------------------------------------------- audit statistics

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
