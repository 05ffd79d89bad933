"""The free-text index stays in step (DESIGN §7): after deletes of every kind, after a
migration from the previous schema (``tuiaudit migrate``, resumed), and with the
daemon's background indexer. Real stores on both back-ends, the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cli_support import run_cli
from conftest import PG_DSN

from tuiaudit.daemon.search_indexer import SearchIndexer
from tuiaudit.storage import open_store, postgres_migrate
from tuiaudit.storage.base import ArchiveAttempt, AuditFilter, AuditRow
from tuiaudit.storage.migrate import load_migrations
from tuiaudit.storage.query import escape_like

NOW = datetime.now(UTC).replace(microsecond=0)
NEEDLES = ("alice@example.org", "bob.jones", "@example", "carol", "7c9", "日本語", "telemetry:")


def row(i: int, *, source: str = "backend", days_old: float = 0) -> AuditRow:
    at = NOW - timedelta(days=days_old, seconds=i)
    who = ("alice@example.org", "bob.jones@example.net", "carol@日本語.jp")[i % 3]
    return AuditRow(
        id=uuid.uuid4(), name=f"event-{i % 7}", type="action", source=source,
        profile_id=uuid.UUID(int=i * 7919), ip_addr=f"192.168.{i % 9}.{i % 250}",
        props={"email": who, "n": i}, context={"version": "2.1"}, tracked_at=at, created_at=at,
    )  # fmt: skip


async def brute_force(store: Any, needle: str) -> set[uuid.UUID]:
    pattern = f"%{escape_like(needle)}%"
    if store.backend == "sqlite":
        cols = ("name", "source", "type", "profile_id", "ip_addr", "props", "context")
        conn = sqlite3.connect(store.path)
        try:
            where = " OR ".join(f"{c} LIKE ?1 ESCAPE '\\'" for c in cols)
            return {
                uuid.UUID(r[0])
                for r in conn.execute(f"SELECT id FROM audit_log WHERE {where}", (pattern,))
            }
        finally:
            conn.close()
    cols = (
        "name",
        "source",
        "type",
        "profile_id::text",
        "host(ip_addr)",
        "props::text",
        "context::text",
    )
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": store.schema})
    try:
        where = " OR ".join(f"{c} ILIKE $1 ESCAPE '\\'" for c in cols)
        return {r[0] for r in await conn.fetch(f"SELECT id FROM audit_log WHERE {where}", pattern)}
    finally:
        await conn.close()


async def assert_search_is_exact(store: Any) -> None:
    for needle in NEEDLES:
        flt = AuditFilter(text=needle)
        found = {r.id for r in await store.fetch_rows(flt, limit=10_000)}
        expected = await brute_force(store, needle)
        assert found == expected, needle
        assert await store.count_rows(flt) == len(expected), needle
    if store.backend == "sqlite":
        # FTS5's own check of its structure; with every row indexed, also that it
        # holds exactly the rows' trigrams (rank 1 compares it with audit_log).
        full = (await store.search_index_state()).pending == 0
        conn = sqlite3.connect(store.path)
        try:
            conn.execute(
                "INSERT INTO audit_search (audit_search, rank) VALUES ('integrity-check', ?)",
                (int(full),),
            )
        finally:
            conn.close()


async def ok_send(rows: list[AuditRow]) -> ArchiveAttempt:
    at = datetime.now(UTC)
    return ArchiveAttempt(
        started_at=at, ended_at=at, status="ok", events=len(rows), bytes=1, body_sha256="0" * 64
    )


async def index_all(store: Any) -> None:
    while (await store.index_search(limit=17)).indexed:
        pass


async def test_the_index_stays_in_step_after_every_kind_of_delete(store_url: str) -> None:
    async with open_store(store_url) as store:
        old = [row(i, days_old=40) for i in range(60)]
        telemetry = [row(100 + i, source="telemetry:backend", days_old=i % 3) for i in range(30)]
        await store.insert_rows(old + telemetry + [row(200 + i) for i in range(40)])
        await index_all(store)
        await assert_search_is_exact(store)
        # Shipped telemetry rows, the telemetry GC by age and by cap.
        await store.delete_rows([r.id for r in telemetry[:5]])
        await store.gc_telemetry(older_than=NOW - timedelta(days=2), cap=15)
        # The archive: 25 old rows archived, then the archive GC deletes them.
        chunk = await store.archive_chunk(ok_send, limit=25, holder="test", lease_s=60)
        assert chunk.archived == 25
        await store.gc_archived(older_than=NOW - timedelta(days=30))
        # Retention deletes the rest of the old rows, archived or not.
        await store.delete_expired(older_than=NOW - timedelta(days=30))
        await store.release_archive_lease("test")
        # Rows arriving after the deletes: some indexed, some not yet (SQLite).
        await store.insert_rows([row(300 + i) for i in range(20)])
        await store.index_search(limit=9)
        await assert_search_is_exact(store)
        await index_all(store)
        await assert_search_is_exact(store)


async def _previous_schema(url: str, tmp: Path) -> None:
    """A store at the schema before the search index (migration 4), holding rows."""
    rows = [row(i) for i in range(250)]
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        for m in load_migrations("sqlite"):
            if m.name == "audit_search":
                break
            conn.executescript(m.sql)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, '2026-01-01T00:00:00.000000Z')",
                (m.version,),
            )
        conn.commit()
        conn.close()
    else:
        schema = url.split("schema=")[1]
        conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
        await conn.execute(
            "CREATE TABLE schema_migrations"
            " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
        )
        for m in load_migrations("postgres"):
            if m.name == "audit_search":
                break
            await conn.execute(m.sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, now())", m.version)
        await conn.close()
    # The rows go in through the previous schema's table, as the old tuiaudit wrote them.
    async with open_store(url, migrate=False) as store:
        await store.insert_rows(rows)


async def test_a_store_from_the_previous_schema_searches_after_tuiaudit_migrate(
    store_url: str, tmp_path: Path
) -> None:
    await _previous_schema(store_url, tmp_path)
    result = await run_cli("migrate", "--store", store_url)
    assert result.code == 0, result.err
    assert "migrated from schema version" in result.out
    async with open_store(store_url, migrate=False) as store:
        assert (await store.search_index_state()).pending == 0
        await assert_search_is_exact(store)
    if store_url.startswith("sqlite"):
        # Without a terminal the progress is plain lines on stderr, ending at the total.
        assert "search index: 250 of 250" in result.err


async def test_an_interrupted_sqlite_index_build_resumes_where_it_stopped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    await _previous_schema(url, tmp_path)
    async with open_store(
        url
    ) as store:  # schema migrated, index not built (as the daemon opens it)
        assert (await store.search_index_state()).pending == 250
        # An interrupted `tuiaudit migrate`: its committed chunks stay indexed.
        await store.index_search(limit=100)
        await store.index_search(limit=60)
        assert await store.search_index_state() == type(await store.search_index_state())(160, 90)
    result = await run_cli("migrate", "--store", url, "--check")
    assert result.code == 0 and "90 row(s) waiting for the search index" in result.out
    result = await run_cli("migrate", "--store", url)
    assert result.code == 0, result.err
    assert "search index: 0 of 90" in result.err and "search index: 90 of 90" in result.err
    async with open_store(url, migrate=False) as store:
        await assert_search_is_exact(store)


@pytest.mark.postgres
async def test_an_interrupted_concurrent_index_build_is_built_again(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(pg_schema_url) as store:
        await store.insert_rows([row(i) for i in range(50)])
        schema = store.schema
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        # What an interrupted CREATE INDEX CONCURRENTLY leaves: an invalid index of that name.
        await conn.execute("DROP INDEX audit_log_search")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY audit_log_search ON audit_log (type)"
            )
        await conn.execute("DELETE FROM schema_migrations WHERE version = 5")
    finally:
        await conn.close()
    monkeypatch.setattr(postgres_migrate, "CONCURRENT_FROM", 1)  # 50 rows count as large
    seen: list[tuple[str, int, int]] = []
    async with open_store(pg_schema_url, migrate=False) as store:
        assert await store.migrate(progress=lambda *a: seen.append(a)) >= 5
        await assert_search_is_exact(store)
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        valid, method = await conn.fetchrow(
            "SELECT i.indisvalid, am.amname FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
            " WHERE i.indexrelid = to_regclass('audit_log_search')"
        )
        assert valid and method == "gin"
    finally:
        await conn.close()


async def until_indexed(store: Any) -> None:
    """Polls the store: the indexer runs in the same loop and has no event to await."""
    for _ in range(1000):
        if not (await store.search_index_state()).pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the indexer did not index every row")


async def test_the_daemon_indexer_keeps_up_and_stops(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/d.db") as store:
        await store.insert_rows([row(i) for i in range(120)])
        indexer = SearchIndexer(store, idle_s=0.01, chunk=50)
        stop = asyncio.Event()
        task = asyncio.create_task(indexer.run(stop))
        await until_indexed(store)
        assert indexer.indexed == 120
        await store.insert_rows([row(500 + i) for i in range(7)])
        await until_indexed(store)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert indexer.indexed == 127
        await assert_search_is_exact(store)


async def test_export_text_is_the_indexed_answer(store_url: str) -> None:
    async with open_store(store_url) as store:
        await store.insert_rows([row(i) for i in range(90)])
        await store.index_search(limit=40)  # SQLite: part indexed, part scanned
        expected = await brute_force(store, "bob.jones")
    result = await run_cli("export", "--store", store_url, "--text", "BOB.JONES")
    assert result.code == 0, result.err
    exported = {uuid.UUID(json.loads(line)["id"]) for line in result.out.splitlines()}
    assert exported == expected and len(expected) == 30
    assert f"exported {len(expected)} rows" in result.err


async def test_a_rowid_reused_after_deleting_the_newest_rows_is_searched(tmp_path: Path) -> None:
    # SQLite gives a new row the largest rowid + 1: once the newest indexed rows
    # are deleted, new rows re-use their rowids, which must count as not indexed.
    async with open_store(f"sqlite:///{tmp_path}/r.db") as store:
        rows = [row(i) for i in range(30)]
        await store.insert_rows(rows)
        await index_all(store)
        await store.delete_rows([r.id for r in rows[20:]])  # the 10 largest rowids
        await store.delete_rows([rows[5].id])  # and one below them, indexed too
        await store.insert_rows([row(900 + i) for i in range(12)])
        assert (await store.search_index_state()).pending == 12
        await assert_search_is_exact(store)
        await index_all(store)
        await assert_search_is_exact(store)
