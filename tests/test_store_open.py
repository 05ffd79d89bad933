"""Opening stores on both back-ends: migrations, reopen, read-only, file mode, URLs."""

from __future__ import annotations

import gc
import os
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tuiaudit.config import Settings, default_store_path
from tuiaudit.storage import (
    AuditRow,
    SchemaTooNew,
    StoreReadOnly,
    StoreUnavailable,
    open_store,
    parse_store_url,
)
from tuiaudit.storage.migrate import latest_version

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def arow() -> AuditRow:
    return AuditRow(uuid.uuid4(), "n", "action", "backend", uuid.uuid4(), "::1", {}, {}, T0, T0)


async def test_migrate_is_idempotent_and_recorded(store_url: str) -> None:
    async with open_store(store_url) as s:
        latest = latest_version(s.backend)
        assert latest >= 1
        assert await s.schema_version() == latest
        assert await s.migrate() == latest
        await s.ping()
    async with open_store(store_url) as s:  # a second open applies nothing
        assert await s.schema_version() == latest


async def test_reopen_keeps_data(store_url: str) -> None:
    r = arow()
    async with open_store(store_url) as s:
        await s.insert_rows([r])
        await s.set_property("k", {"v": [1]})
    store = await open_store(store_url)  # the awaitable form
    try:
        assert await store.get_row(r.id) == r
        assert await store.get_property("k") == {"v": [1]}
    finally:
        await store.close()


async def test_read_only_rejects_writes_and_reads(store_url: str) -> None:
    r = arow()
    async with open_store(store_url) as s:
        await s.insert_rows([r])
    async with open_store(store_url, read_only=True) as ro:
        assert ro.read_only
        assert await ro.fetch_rows() == [r]
        assert await ro.count_rows() == 1
        await ro.change_token()
        with pytest.raises(StoreReadOnly, match="read-only"):
            await ro.insert_rows([arow()])
        with pytest.raises(StoreReadOnly):
            await ro.set_property("x", 1)
        with pytest.raises(StoreReadOnly):
            await ro.enqueue_command("ship-now")
        assert await ro.total_rows() == 1


async def test_schema_too_new(store_url: str) -> None:
    async with open_store(store_url) as s:
        if s.backend == "sqlite":
            await s._write("INSERT INTO schema_migrations VALUES (999, 'x')")
        else:
            async with s._pool.acquire() as conn:
                await conn.execute("INSERT INTO schema_migrations VALUES (999, now())")
    with pytest.raises(SchemaTooNew, match="upgrade"):
        async with open_store(store_url):
            pass
    with pytest.raises(SchemaTooNew):
        async with open_store(store_url, read_only=True):
            pass


async def test_unclosed_store_warns(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        with pytest.warns(ResourceWarning, match="not closed"):
            store.__del__()
    finally:
        await store.close()
    gc.collect()


def modes(path: Path) -> dict[str, int]:
    out = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            out[suffix] = stat.S_IMODE(p.stat().st_mode)
    return out


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "sub" / "s.db"

    async def run() -> None:
        async with open_store(f"sqlite:///{path}") as s:
            await s.insert_rows([arow()])
            assert modes(path) == {"": 0o600, "-wal": 0o600, "-shm": 0o600}

    old = os.umask(0o022)
    try:
        asyncio.run(run())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_sqlite_read_only_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no store"):
        async with open_store(tmp_path / "absent.db", read_only=True):
            pass
    assert not (tmp_path / "absent.db").exists()


def test_parse_urls() -> None:
    assert parse_store_url("/a/b.db").path == Path("/a/b.db")
    assert parse_store_url("sqlite:///a/b.db").path == Path("/a/b.db")
    assert parse_store_url("sqlite:////a/b.db").path == Path("/a/b.db")
    loc = parse_store_url("postgresql://u@h:5432/db?schema=t_1&sslmode=disable")
    assert (loc.backend, loc.schema) == ("postgresql", "t_1")
    assert loc.dsn == "postgresql://u@h:5432/db?sslmode=disable"
    assert parse_store_url("postgres://h/db").schema == "public"
    with pytest.raises(ValueError, match="schema"):
        parse_store_url("postgresql://h/db?schema=a;drop")
    with pytest.raises(ValueError, match="unsupported"):
        parse_store_url("mysql://h/db")


async def test_concurrent_opens_migrate_once(store_url: str) -> None:
    import asyncio

    stores = await asyncio.gather(*(open_store(store_url) for _ in range(3)))
    try:
        for s in stores:
            assert await s.schema_version() == latest_version(s.backend)
        if stores[0].backend == "sqlite":
            rows = await stores[0]._fetch("SELECT version FROM schema_migrations ORDER BY version")
            versions = [r[0] for r in rows]
        else:
            versions = [
                r[0] for r in await stores[0]._fetch("SELECT version FROM schema_migrations")
            ]
        assert sorted(versions) == list(range(1, latest_version(stores[0].backend) + 1))
    finally:
        for s in stores:
            await s.close()


async def test_postgres_unreachable_is_unavailable(tmp_path: Path) -> None:
    # Port 1 on localhost refuses connections at once.
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        async with open_store("postgresql://postgres@127.0.0.1:1/test?schema=x"):
            pass


async def test_sqlite_unwritable_location_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable):
        async with open_store(blocker / "sub" / "s.db"):
            pass


async def test_sqlite_garbage_file_is_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable, match="cannot be used"):
        async with open_store(bad):
            pass


async def test_default_store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    expected = default_store_path()
    assert str(expected).startswith(str(tmp_path))
    async with open_store(Settings().store_url) as s:
        assert s.backend == "sqlite"
        await s.set_property("k", 1)
    assert modes(expected)[""] == 0o600
    assert stat.S_IMODE(expected.parent.stat().st_mode) == 0o700


async def test_read_only_reader_sees_live_writes(store_url: str) -> None:
    async with open_store(store_url) as writer:
        await writer.insert_rows([arow()])
        async with open_store(store_url, read_only=True) as reader:
            t0 = await reader.change_token()
            assert await reader.total_rows() == 1
            await writer.insert_rows([arow(), arow()])
            assert await reader.total_rows() == 3
            assert await reader.change_token() != t0
