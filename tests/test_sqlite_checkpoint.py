"""WAL checkpoints beside the group writer (storage/sqlite_checkpoint.py), on real files.

The checkpoint thread copies the WAL into the database while the writer
commits; the writer's own automatic checkpoint keeps the WAL bounded; the
thread stops with the store; a checkpoint that cannot run is counted and
changes nothing for the writer.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tuiaudit.storage import AuditRow, open_store
from tuiaudit.storage.sqlite_checkpoint import WRITER_AUTOCHECKPOINT, Checkpointer

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PAGE = 4096
THREAD_NAME = "tuiaudit-sqlite-checkpoint"


def rows(n: int, start: int) -> list[AuditRow]:
    return [
        AuditRow(
            id=uuid.uuid4(),
            name="update-file",
            type="action",
            source="frontend",
            profile_id=uuid.uuid4(),
            ip_addr="192.0.2.1",
            props={"title": "x" * 600, "n": start + i},  # about a row per 1 kB
            context={"version": "2.1.0"},
            tracked_at=T0 + timedelta(milliseconds=start + i),
            created_at=T0 + timedelta(milliseconds=start + i),
        )
        for i in range(n)
    ]


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def wal_frames_in_db(path: Path) -> int:
    """How many frames the WAL holds now (a checkpoint of nothing reports them)."""
    conn = sqlite3.connect(path)
    try:
        _busy, log, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log)
    finally:
        conn.close()


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def wal_db(path: Path) -> sqlite3.Connection:
    """A WAL database whose writer never checkpoints by itself."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (v BLOB)")
    return conn


def test_a_write_gets_its_pages_copied_into_the_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = wal_db(path)
    checkpointer = Checkpointer(path, interval_s=0.01)
    try:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 3000,) for _ in range(200)])
        conn.execute("COMMIT")
        assert checkpoint_threads() == []  # started by the first write, not before
        checkpointer.wrote()
        assert wait_for(lambda: checkpointer.stats.frames_copied >= 200)
        assert checkpointer.stats.errors == 0
        # The rows are in the database file itself now: a copy of the file alone
        # (without its WAL, which the open connection still holds) has them.
        alone = tmp_path / "alone.sqlite"
        shutil.copyfile(path, alone)
        check = sqlite3.connect(alone)
        assert check.execute("SELECT count(*) FROM t").fetchone() == (200,)
        check.close()
    finally:
        checkpointer.close()
        conn.close()
    assert checkpoint_threads() == []


def test_no_write_no_checkpoint_and_close_is_quick(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    wal_db(path).close()
    checkpointer = Checkpointer(path)
    started = time.monotonic()
    checkpointer.close()
    assert time.monotonic() - started < 1
    assert checkpointer.stats.runs == 0
    checkpointer.wrote()  # after close: nothing starts again
    assert checkpoint_threads() == []


def test_a_store_it_cannot_open_is_counted_not_raised(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path / "missing" / "db.sqlite")
    checkpointer.wrote()
    assert wait_for(lambda: checkpointer.stats.errors == 1)
    checkpointer.close()
    assert checkpointer.stats.runs == 0
    assert "unable to open" in (checkpointer.stats.last_error or "")
    assert checkpoint_threads() == []


async def test_sustained_inserts_keep_the_wal_bounded_and_every_row(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_store(f"sqlite:///{path}") as store:
        writer = store._writer  # type: ignore[attr-defined]
        total = 0
        # About 60 MB of rows through concurrent calls: without a bound the WAL
        # would hold them all.
        for _ in range(20):
            calls = [rows(500, total + i * 500) for i in range(6)]
            await asyncio.gather(*(store.insert_rows(c) for c in calls))
            total += 3000
            await asyncio.sleep(0)
        stats = writer.checkpointer.stats
        assert stats.runs > 0 and stats.errors == 0
        wal = path.with_name("store.db-wal").stat().st_size
        # WRITER_AUTOCHECKPOINT pages, plus one group's pages (a group of 3,000 rows of 1 kB).
        assert wal < (WRITER_AUTOCHECKPOINT + 1500) * (PAGE + 24), wal
        assert checkpoint_threads() != []
        assert await store.count_rows() == total
    assert checkpoint_threads() == []
    assert wal_frames_in_db(path) == 0  # closed cleanly: the WAL was folded in
