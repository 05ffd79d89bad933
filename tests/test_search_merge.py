"""The SQLite trigram index merges its segments in steps of its own (migration 0007,
storage/sqlite_search.py ``index_search``): FTS5's automatic merging is off, so
no merge lands inside an indexing chunk, and each chunk's merge step keeps the
index from piling up segments, on real store files.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tuiaudit.storage import AuditFilter, AuditRow, open_store, sqlite_search

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def rows(n: int) -> list[AuditRow]:
    return [
        AuditRow(
            id=uuid.uuid4(),
            name=f"event-{i}",
            type="action",
            source="backend",
            profile_id=uuid.uuid4(),
            ip_addr="192.0.2.1",
            props={"k": str(uuid.uuid4())},
            context={},
            tracked_at=NOW,
            created_at=NOW,
        )
        for i in range(n)
    ]


def segments(path: Path) -> int:
    """Live FTS5 segments of the index: its data pages' segment ids (a page's
    rowid holds its segment id above bit 37; ids 1 and 10 are the index's own
    records, not pages)."""
    conn = sqlite3.connect(path)
    try:
        return int(
            conn.execute(
                "SELECT count(DISTINCT id >> 37) FROM audit_search_data WHERE id > 10"
            ).fetchone()[0]
        )
    finally:
        conn.close()


async def index_in_small_chunks(path: Path, n: int) -> list[AuditRow]:
    stored = rows(n)
    async with open_store(f"sqlite:///{path}", migrate=True) as store:
        await store.insert_rows(stored)
        while (await store.index_search(limit=10)).indexed:
            pass
    return stored


async def test_fts5_merges_nothing_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_store(f"sqlite:///{path}", migrate=True):
        pass
    conn = sqlite3.connect(path)
    try:
        config = dict(conn.execute("SELECT k, v FROM audit_search_config").fetchall())
    finally:
        conn.close()
    assert config["automerge"] == 0


async def test_merge_steps_keep_the_segments_few(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    stored = await index_in_small_chunks(path, 3000)  # 300 chunks, a segment each
    assert segments(path) <= 10
    async with open_store(f"sqlite:///{path}") as store:
        needle = stored[1234].props["k"][9:23]
        page = await store.fetch_rows(AuditFilter(text=needle))
        assert [r.id for r in page] == [stored[1234].id]


async def test_without_merge_steps_the_segments_pile_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measure above can fail: a budget of one page per chunk leaves dozens."""
    monkeypatch.setattr(sqlite_search, "MERGE_PAGES_PER_ROW", 0.0)
    monkeypatch.setattr(sqlite_search, "MERGE_MIN_PAGES", 1)
    path = tmp_path / "store.db"
    await index_in_small_chunks(path, 3000)
    assert segments(path) > 30


async def test_deleted_rows_segments_are_merged_when_nothing_is_left_to_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    await index_in_small_chunks(path, 3000)
    before = segments(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for rowid in range(1, 400, 40):  # ten deletions, a transaction (and segment) each
            conn.execute("DELETE FROM audit_log WHERE rowid = ?", (rowid,))
    finally:
        conn.close()
    piled = segments(path)
    assert piled >= before + 8
    async with open_store(f"sqlite:///{path}") as store:
        for _ in range(5):
            assert (await store.index_search()).indexed == 0
    assert segments(path) < piled
