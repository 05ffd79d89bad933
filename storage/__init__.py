"""The tuiaudit store: ``open_store(url)`` gives a ``Store`` on SQLite or PostgreSQL.

    async with open_store(url) as store:
        await store.insert_rows(rows)

or ``store = await open_store(url)`` … ``await store.close()``.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from types import TracebackType
from typing import Any

from tuiaudit.storage.base import (
    DROP_AGE,
    DROP_CAP,
    DROP_CONSENT,
    DROP_PURGE,
    DROP_REASONS,
    DROP_REJECTED,
    TELEMETRY_SOURCE_PREFIX,
    AuditFilter,
    AuditRow,
    Command,
    Cursor,
    DaemonState,
    GcResult,
    LedgerEntry,
    QuarantinedRow,
    QueueStats,
    SchemaTooNew,
    Store,
    StoreConflict,
    StoreError,
    StoreReadOnly,
    StoreUnavailable,
    Webhook,
    WebhookDelivery,
    WebhookJob,
)
from tuiaudit.storage.url import StoreLocation, display_store_url, parse_store_url

__all__ = [
    "DROP_AGE",
    "DROP_CAP",
    "DROP_CONSENT",
    "DROP_PURGE",
    "DROP_REASONS",
    "DROP_REJECTED",
    "TELEMETRY_SOURCE_PREFIX",
    "AuditFilter",
    "AuditRow",
    "Command",
    "Cursor",
    "DaemonState",
    "GcResult",
    "LedgerEntry",
    "QuarantinedRow",
    "QueueStats",
    "SchemaTooNew",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreLocation",
    "StoreReadOnly",
    "StoreUnavailable",
    "Webhook",
    "WebhookDelivery",
    "WebhookJob",
    "display_store_url",
    "open_store",
    "parse_store_url",
]


async def _open(url: str, read_only: bool, migrate: bool) -> Any:
    loc = parse_store_url(url)
    # Each back-end loads its driver on first use: a SQLite store never pays
    # for asyncpg, nor a PostgreSQL one for aiosqlite.
    if loc.backend == "postgresql":
        from tuiaudit.storage.postgres import PostgresStore

        return await PostgresStore.open(url, loc, read_only=read_only, migrate=migrate)
    from tuiaudit.storage.sqlite import SqliteStore

    return await SqliteStore.open(url, loc, read_only=read_only, migrate=migrate)


class _Opener:
    """What ``open_store`` returns: awaitable, or an async context manager."""

    def __init__(self, url: str, read_only: bool, migrate: bool) -> None:
        self._args = (url, read_only, migrate)
        self._store: Any = None

    def __await__(self) -> Generator[Any, None, Store]:
        return _open(*self._args).__await__()

    async def __aenter__(self) -> Store:
        self._store = await _open(*self._args)
        return self._store  # type: ignore[no-any-return]

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()


def open_store(
    url: str | os.PathLike[str], *, read_only: bool = False, migrate: bool = True
) -> _Opener:
    """Open the store at ``url``: a SQLite path or ``sqlite:///`` URL, or ``postgresql://``.

    Migrations are applied unless ``read_only`` or ``migrate=False``. The
    default store's path is the settings' business (``Settings.store_url``).
    """
    return _Opener(os.fspath(url), read_only, migrate)
