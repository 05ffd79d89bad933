"""PostgreSQL plumbing shared by every part of the store: the pool, errors, codecs.

``PostgresBase`` holds the connection state and the small query helpers; the
parts of the store (``postgres_queue``, ``postgres_coord``, ``postgres_webhooks``)
subclass it, and ``storage.postgres.PostgresStore`` composes them.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from tuiaudit.storage.base import (
    AuditRow,
    QueryCut,
    StoreConflict,
    StoreError,
    StoreReadOnly,
    StoreUnavailable,
)
from tuiaudit.storage.query import Dialect
from tuiaudit.storage.url import StoreLocation, display_store_url

CONNECT_TIMEOUT_S = 10.0
READER_STATEMENT_TIMEOUT_MS = 5_000  # a read-only store's statements (the dashboard)

DIALECT = Dialect(
    placeholder=lambda n: f"${n}",
    ts=lambda dt: dt,
    uid=lambda u: u,
    telemetry_pred="source LIKE 'telemetry:%'",
    text_columns=(
        "name",
        "source",
        "type",
        "profile_id::text",
        "host(ip_addr)",
        "props::text",
        "context::text",
    ),
    search_expr="tuiaudit_search_text(name, type, source, profile_id, ip_addr, props, context)",
    like="ILIKE",
)
TELEMETRY = DIALECT.telemetry_pred

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
    # asyncpg's protocol state when the server went away mid-operation ("cannot
    # switch to state 15; another operation (2) is in progress"): a 500 on ingest
    # during a PostgreSQL restart in the fleet run, now a 503 like the rest.
    asyncpg.exceptions.InternalClientError,
)


def now_utc() -> datetime:
    return datetime.now(UTC)


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _uuid_bytes(value: Any) -> bytes:
    return value.bytes if isinstance(value, uuid.UUID) else uuid.UUID(str(value)).bytes


def _uuid_from_bytes(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=data)


def lock_key(purpose: str, schema: str) -> int:
    digest = hashlib.sha256(f"tuiaudit:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def status_count(status: str) -> int:
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
    if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        seconds = READER_STATEMENT_TIMEOUT_MS / 1000
        return QueryCut(
            f"the query was cut after {seconds:g} s; narrow the filter "
            "(name:, type:, source:, a longer text or a time range)"
        )
    if isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        return StoreUnavailable(f"store {where}: {exc}; create the database or fix the URL")
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(
            f"store {where} cannot be reached or cannot write ({exc.__class__.__name__}: {exc}); "
            "check that PostgreSQL is running and has free disk, then retry"
        )
    return StoreError(f"store {where}: {exc.__class__.__name__}: {exc}")


async def init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=json_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
        )
    await conn.set_type_codec("inet", encoder=str, decoder=str, schema="pg_catalog", format="text")
    await conn.set_type_codec(
        "uuid",
        encoder=_uuid_bytes,
        decoder=_uuid_from_bytes,
        schema="pg_catalog",
        format="binary",
    )


def audit_row(r: Any) -> AuditRow:
    return AuditRow(*r)


class PostgresBase:
    """The connection state of one store and the helpers its parts query through.

    Besides the pool, a store may hold two dedicated connections: the shipper
    lease (``postgres_coord``) and the LISTEN for change notification.
    """

    def __init__(self, url: str, loc: StoreLocation, read_only: bool) -> None:
        assert loc.dsn is not None
        self.url = url
        self.read_only = read_only
        self._dsn = loc.dsn
        self.schema = loc.schema
        self._where = f"{display_store_url(loc.dsn)} (schema {loc.schema})"
        self.session_tag = f"tuiaudit {uuid.uuid4().hex[:16]}"
        """Every session of this store carries it (``application_name``): a webhook
        claim lives only as long as one of them does (``postgres_webhooks``)."""
        self._settings = {
            "search_path": loc.schema,
            "TimeZone": "UTC",
            "application_name": self.session_tag,
        }
        if read_only:
            # The dashboard's reader (DESIGN §7): read-only transactions, and no
            # statement longer than the limit, so a slow filter never holds a
            # connection (or the screen); the dashboard says the query was cut.
            self._settings["default_transaction_read_only"] = "on"
            self._settings["statement_timeout"] = str(READER_STATEMENT_TIMEOUT_MS)
        self._pool: asyncpg.Pool | None = None
        self._lease_conn: asyncpg.Connection | None = None
        self._lease_holder: str | None = None
        self._lease_lock = asyncio.Lock()
        self._listen_conn: asyncpg.Connection | None = None
        self._listen_lock = asyncio.Lock()
        self._changes = 0

    async def _connect(self) -> asyncpg.Connection:
        """A dedicated connection (outside the pool) for the lease or LISTEN."""
        try:
            conn = await asyncpg.connect(
                self._dsn, server_settings=self._settings, timeout=CONNECT_TIMEOUT_S
            )
        except Exception as exc:
            raise map_error(exc, self._where) from exc
        return conn

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
            return status_count(await conn.execute(sql, *args))
