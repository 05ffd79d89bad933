"""SQLite plumbing shared by every part of the store: the connection, errors, helpers.

``SqliteBase`` holds the connection state and the small query helpers; the parts
of the store (``sqlite_queue``, ``sqlite_coord``, ``sqlite_webhooks``) subclass
it, and ``storage.sqlite.SqliteStore`` composes them. ``insert_rows`` writes
through a second connection, the group-commit writer (``sqlite_writer``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from tuiaudit.storage.base import StoreConflict, StoreError, StoreReadOnly, StoreUnavailable
from tuiaudit.storage.columns import ts_text
from tuiaudit.storage.query import Dialect
from tuiaudit.storage.sqlite_writer import GroupWriter

BUSY_TIMEOUT_MS = 5000
T = TypeVar("T")

DIALECT = Dialect(
    placeholder=lambda n: f"?{n}",  # numbered: a value may be used twice
    ts=ts_text,
    uid=str,
    telemetry_pred="substr(source, 1, 10) = 'telemetry:'",  # the queue index predicate
    text_columns=("name", "source", "type", "profile_id", "ip_addr", "props", "context"),
    like="LIKE",
)
TELEMETRY = DIALECT.telemetry_pred

JSON_IDS = "SELECT value FROM json_each(?)"  # one parameter: a JSON array of ids


def now_utc() -> datetime:
    return datetime.now(UTC)


def ids_json(ids: Sequence[uuid.UUID]) -> str:
    return orjson.dumps([str(i) for i in ids]).decode()


def check_store_files(path: Path, *, read_only: bool) -> None:
    """Refuse store files another user could have planted or can tamper with (DESIGN §8.2).

    The store path must not be a symbolic link (it could send the writes to
    any file the daemon may write); the file and its -wal/-shm must not be
    writable by group or others and, when opened for writing, must belong to
    this user. Files that do not exist yet are fine (they are created 0600).
    """
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise StoreError(
                f"store {path} is a symbolic link: refusing it (a link can point the writes "
                "at any file); give the real file's path with --store"
            )
    except OSError:
        return  # absent (or unreachable: opening it reports that, with its fix)
    uid = os.geteuid()
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(f"store file {p} is a symbolic link: refusing it; remove the link")
        if not read_only and st.st_uid != uid:
            raise StoreError(
                f"store file {p} belongs to uid {st.st_uid}, not to this user (uid {uid}): "
                "run tuiaudit as its owner, or open it with --read-only"
            )
        if st.st_mode & 0o022:
            raise StoreError(
                f"store file {p} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): "
                f"fix it with chmod go-w {p}"
            )


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


class SqliteBase:
    """The connection state of one store and the helpers its parts query through.

    Reads and ``_tx`` writes share one aiosqlite connection behind ``_lock``;
    ``insert_rows`` goes through ``_writer`` (its own connection, same lock).
    """

    def __init__(self, url: str, path: Path, read_only: bool) -> None:
        self.url = url
        self.path = path
        self.read_only = read_only
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._local_writes = 0
        # holder -> time.monotonic() when its archive lease lapses (sqlite_archive).
        self._archive_leases: dict[str, float] = {}
        # insert_rows: concurrent calls share one transaction (group commit).
        self._writer = GroupWriter(
            path, self._lock, busy_timeout_ms=BUSY_TIMEOUT_MS, on_commit=self._wrote
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

    def _wrote(self) -> None:
        self._local_writes += 1
