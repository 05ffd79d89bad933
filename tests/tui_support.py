"""Helpers for the dashboard tests: rows, a call-recording store proxy, a big store."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditRow
from tuiaudit.storage.columns import ts_text

NOW = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)


def make_row(
    i: int,
    *,
    name: str = "login-with-password",
    source: str = "backend",
    type_: str = "action",
    created_at: datetime | None = None,
    props: dict[str, Any] | None = None,
) -> AuditRow:
    at = created_at or NOW - timedelta(seconds=i)
    return AuditRow(
        id=uuid.uuid4(),
        name=name,
        type=type_,
        source=source,
        profile_id=uuid.UUID(int=abs(i) + 1),
        ip_addr=f"10.0.{abs(i) // 250 % 250}.{abs(i) % 250}",
        props=props if props is not None else {"email": f"user{i}@example.com", "n": i},
        context={"request-id": str(uuid.uuid4()), "version": "2.1"},
        tracked_at=at,
        created_at=at,
    )


class Spy:
    """Wraps a Store and records every call (name, kwargs) to prove reads are bounded."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return attr(*args, **kwargs)

        return record

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


BIG_ROWS = 1_000_000


def _big_rows(n: int) -> Iterator[tuple[Any, ...]]:
    names = ("login-with-password", "navigate", "create-file", "update-file", "logout")
    sources = ("backend", "frontend")
    base = NOW - timedelta(seconds=n)
    for i in range(n):
        at = ts_text(base + timedelta(seconds=i))
        yield (
            str(uuid.UUID(int=(i + 1) << 64 | 0x7000 << 48)),
            names[i % 5],
            "action",
            sources[i % 2],
            str(uuid.UUID(int=i % 997 + 1)),
            f"10.{i % 200}.0.1",
            f'{{"email":"user{i % 5000}@example.com","n":{i}}}',
            '{"version":"2.1"}',
            at,
            at,
        )


def build_big_store(path: Path, n: int = BIG_ROWS) -> str:
    """A migrated SQLite store holding ``n`` audit rows (one per second up to NOW)."""
    url = f"sqlite:///{path}"
    if path.exists():
        # Cached by an earlier run, maybe of an older tuiaudit: migrate it as a
        # daemon would, since the dashboard's read-only open refuses an old schema.
        asyncio.run(_migrate(url))
        return url

    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    asyncio.run(_migrate(f"sqlite:///{tmp}"))
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        conn.executemany(
            "INSERT INTO audit_log (id, name, type, source, profile_id, ip_addr, props, context,"
            " tracked_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _big_rows(n),
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    tmp.rename(path)
    return url


async def _migrate(url: str) -> None:
    async with open_store(url):
        pass
