"""Group commit of ``insert_rows`` (storage/sqlite_writer.py), on real SQLite files.

Concurrent calls share one transaction, yet each call stays all or nothing:
a call with a duplicate id fails alone, a failing COMMIT fails every call of
its group, a caller cancelled while queued stores nothing. The contract tests
(what any caller sees) run on both back-ends; the grouping itself is SQLite's.
Every test runs twice: with the writer's compiled bulk insert
(storage/_sqlite_bulk.pyx) and with the pure path that stands in without it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tuiaudit.daemon.ingest_channel import pack_rows
from tuiaudit.storage import (
    AuditRow,
    StoreConflict,
    StoreError,
    WebhookJob,
    open_store,
    sqlite_writer,
)
from tuiaudit.storage.columns import AUDIT_COLUMNS, row_params, rows_params
from tuiaudit.storage.sqlite_writer import MAX_ARRAYS, RUN_S, GroupWriter

BULK = sqlite_writer.bulk_module

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["compiled", "pure"], autouse=True)
def writer_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The writer with its compiled bulk insert, and without it (executemany, json_each)."""
    if request.param == "compiled":
        if BULK is None:
            pytest.skip("the compiled bulk insert is not built (tests/test_sqlite_bulk.py)")
    else:
        monkeypatch.setattr(sqlite_writer, "bulk_module", None)
    return str(request.param)


def row(i: int = 0, **kw: Any) -> AuditRow:
    at = T0 + timedelta(seconds=i)
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": f"event-{i}",
        "type": "action",
        "source": "backend" if i % 2 else "telemetry:backend",
        "profile_id": uuid.uuid4(),
        "ip_addr": "192.0.2.1",
        "props": {"n": i},
        "context": {"k": "v"},
        "tracked_at": at,
        "created_at": at,
    }
    fields.update(kw)
    return AuditRow(**fields)


def batches(n: int, size: int) -> list[list[AuditRow]]:
    return [[row(c * 100 + j) for j in range(size)] for c in range(n)]


def stored_text(path: Path) -> list[tuple[Any, ...]]:
    """Every audit row as SQLite holds it, in insertion (rowid) order."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY rowid").fetchall()
    finally:
        conn.close()


async def all_ids(store: Any) -> set[uuid.UUID]:
    return {r.id for r in await store.fetch_rows(limit=10_000)}


# ------------------------------------------------------ contract, both back-ends


async def test_a_duplicate_fails_its_own_call_only(store: Any) -> None:
    old = row(0)
    await store.insert_rows([old])
    good1, good2 = batches(2, 5)
    bad = [row(50), row(51, id=old.id), row(52)]  # one id is already stored
    results = await asyncio.gather(
        store.insert_rows(good1), store.insert_rows(bad), store.insert_rows(good2),
        return_exceptions=True,
    )  # fmt: skip
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StoreConflict)
    assert "nothing was stored" in str(results[1])
    assert await all_ids(store) == {old.id} | {r.id for r in good1 + good2}


async def test_webhook_jobs_stay_with_their_call(store: Any) -> None:
    await store.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
    old = row(0)
    await store.insert_rows([old])
    ok_rows, bad_rows = [row(1)], [row(2, id=old.id)]
    ok_job = WebhookJob(event={"name": "ok"}, event_name="ok")
    bad_job = WebhookJob(event={"name": "bad"}, event_name="bad")
    results = await asyncio.gather(
        store.insert_rows(ok_rows, [ok_job]),
        store.insert_rows(bad_rows, [bad_job]),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], StoreConflict)
    assert [d.event for d in await store.recent_deliveries()] == [{"name": "ok"}]
    assert await all_ids(store) == {old.id, ok_rows[0].id}


async def test_many_concurrent_calls_store_every_row_once(store: Any) -> None:
    calls = batches(20, 7)
    await asyncio.gather(*(store.insert_rows(b) for b in calls))
    want = {r.id for b in calls for r in b}
    assert await all_ids(store) == want
    assert await store.total_rows() == len(want)


# ------------------------------------------------------------ SQLite grouping


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> Any:
    async with open_store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        yield s


async def test_concurrent_calls_share_one_transaction(sqlite_store: Any) -> None:
    calls = batches(8, 25)
    before = sqlite_store.group_stats.groups
    await asyncio.gather(*(sqlite_store.insert_rows(b) for b in calls))
    stats = sqlite_store.group_stats
    assert stats.groups - before == 1
    assert stats.max_calls == 8
    # Row order and content are those of the calls, in call order, as the
    # reference per-row conversion writes them.
    assert stored_text(sqlite_store.path) == [row_params(r) for b in calls for r in b]


@pytest.mark.parametrize("name", ["plain", "with\x00nul"])  # one statement / executemany
async def test_a_duplicate_inside_the_same_group_fails_the_later_call(
    sqlite_store: Any, name: str
) -> None:
    first = [row(1), row(2)]
    dup = [row(3, name=name), row(4, id=first[1].id)]  # its first row must not stay
    last = [row(5)]
    before = sqlite_store.group_stats.groups
    results = await asyncio.gather(
        sqlite_store.insert_rows(first), sqlite_store.insert_rows(dup),
        sqlite_store.insert_rows(last), return_exceptions=True,
    )  # fmt: skip
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StoreConflict)
    assert sqlite_store.group_stats.groups - before == 1
    assert stored_text(sqlite_store.path) == [row_params(r) for r in first + last]


NASTY = [
    "".join(map(chr, range(0x20))) + "\x7f",  # every control character, NUL first
    'quote " backslash \\ slash / \\u0000 literal',
    "é ü 中文 🎉 \u2028 \u2029 \ufeff",
    "",
    "[1,2]",
    "null",
]


@pytest.mark.parametrize("with_nul", [False, True])
async def test_content_is_byte_identical_to_the_row_conversion(
    sqlite_store: Any, with_nul: bool
) -> None:
    texts = [t for t in NASTY if with_nul or "\x00" not in t]
    calls = [
        [
            row(i, name=t, type=t, source=f"telemetry:{t}", ip_addr=t,
                props={t: t, "n": [1.5, -0, 10**18, None, True], "o": {"d": {t: [t]}}},
                context={"c": t}, archived_at=T0 if i % 2 else None)
            for i in range(3)
        ]
        for t in texts
    ]  # fmt: skip
    await asyncio.gather(*(sqlite_store.insert_rows(b) for b in calls))
    flat = [r for b in calls for r in b]
    assert stored_text(sqlite_store.path) == rows_params(flat)
    assert [await sqlite_store.get_row(r.id) for r in flat] == flat


def packed(rows: list[AuditRow]) -> bytes:
    """The rows as an ingest worker sends them (daemon/ingest_channel.py)."""
    data = pack_rows(rows_params(rows))
    assert data is not None
    return data


async def test_worker_packed_calls_group_with_params_calls_byte_identically(
    sqlite_store: Any,
) -> None:
    """Rows that come packed by a worker (``insert_packed``) join a group with
    rows that come as parameters; the stored text is the per-row conversion's."""
    calls = batches(6, 10)
    before = sqlite_store.group_stats
    groups, rows = before.groups, before.rows

    def one(i: int, b: list[AuditRow]) -> Any:
        if i % 2:
            return sqlite_store.insert_rows(b)
        return sqlite_store.insert_packed(packed(b), len(b))

    await asyncio.gather(*(one(i, b) for i, b in enumerate(calls)))
    assert sqlite_store.group_stats.groups - groups == 1
    assert sqlite_store.group_stats.rows - rows == 60
    assert stored_text(sqlite_store.path) == [row_params(r) for b in calls for r in b]


async def test_more_calls_than_one_statement_takes_keep_their_order(sqlite_store: Any) -> None:
    calls = batches(MAX_ARRAYS + 8, 3)  # past MAX_ARRAYS the texts are joined
    before = sqlite_store.group_stats.groups
    await asyncio.gather(*(sqlite_store.insert_rows(b) for b in calls))
    assert sqlite_store.group_stats.groups - before == 1
    assert stored_text(sqlite_store.path) == [row_params(r) for b in calls for r in b]


async def test_packed_rows_keep_nul_and_every_character(sqlite_store: Any) -> None:
    rows = [row(1, name="a\x00b", props={"t": "\x00é日\U0001f600"}), row(2)]
    await sqlite_store.insert_packed(packed(rows), 2)
    assert stored_text(sqlite_store.path) == [row_params(r) for r in rows]
    assert [await sqlite_store.get_row(r.id) for r in rows] == rows


async def test_a_packed_call_of_another_shape_fails_alone(sqlite_store: Any) -> None:
    """Its values are never bound as they are (an int is not stored as an integer)."""
    good = [row(1)]
    params = [list(p) for p in rows_params([row(2)])]
    params[0][2] = 42
    bad = pack_rows(params)
    assert bad is not None
    results = await asyncio.gather(
        sqlite_store.insert_packed(packed(good), 1),
        sqlite_store.insert_packed(bad, 1),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], ValueError)  # (msgspec.ValidationError is one)
    assert stored_text(sqlite_store.path) == [row_params(r) for r in good]


@pytest.mark.parametrize("grouped", [False, True])
async def test_a_worker_packed_call_with_a_duplicate_stores_nothing_of_it(
    sqlite_store: Any, grouped: bool
) -> None:
    first = [row(1), row(2)]
    await sqlite_store.insert_packed(packed(first), 2)
    dup = [row(3), row(4, id=first[1].id)]  # its first row must not stay
    last = [row(5)]
    calls = [sqlite_store.insert_packed(packed(dup), 2)]
    if grouped:
        calls.append(sqlite_store.insert_packed(packed(last), 1))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[0], StoreConflict)
    assert all(r is None for r in results[1:])
    want = first + (last if grouped else [])
    assert stored_text(sqlite_store.path) == [row_params(r) for r in want]


async def test_a_worker_packed_call_keeps_its_webhook_jobs(sqlite_store: Any) -> None:
    await sqlite_store.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
    rows = [row(1)]
    job = WebhookJob(event={"name": "ok"}, event_name="ok")
    await asyncio.gather(
        sqlite_store.insert_packed(packed(rows), 1, [job]),
        sqlite_store.insert_packed(packed([row(2)]), 1),
    )
    assert [d.event for d in await sqlite_store.recent_deliveries()] == [{"name": "ok"}]
    assert await sqlite_store.total_rows() == 2


async def test_a_failing_commit_fails_every_call_of_the_group(sqlite_store: Any) -> None:
    # A real COMMIT failure: a deferred foreign key that one call's row breaks
    # is only checked at COMMIT, after every call's savepoint succeeded.
    conn = sqlite3.connect(sqlite_store.path)
    conn.executescript(
        """
        CREATE TABLE parent (id INTEGER PRIMARY KEY);
        CREATE TABLE child (
            parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED
        );
        CREATE TRIGGER poison AFTER INSERT ON audit_log WHEN new.name = 'poison'
        BEGIN INSERT INTO child VALUES (42); END;
        """
    )
    conn.close()
    calls = [[row(1)], [row(2, name="poison")], [row(3), row(4)]]
    before = sqlite_store.group_stats.groups
    results = await asyncio.gather(
        *(sqlite_store.insert_rows(b) for b in calls), return_exceptions=True
    )
    assert all(isinstance(r, StoreError) for r in results), results
    assert all("nothing was stored" in str(r) for r in results)
    assert stored_text(sqlite_store.path) == []
    assert sqlite_store.group_stats.groups == before  # no committed group
    # The store is still usable afterwards.
    await sqlite_store.insert_rows(calls[0])
    assert stored_text(sqlite_store.path) == [row_params(calls[0][0])]


async def test_a_returned_call_is_committed(sqlite_store: Any) -> None:
    rows = [row(1), row(2)]
    await asyncio.gather(sqlite_store.insert_rows(rows[:1]), sqlite_store.insert_rows(rows[1:]))
    assert stored_text(sqlite_store.path) == rows_params(rows)  # another connection sees it


async def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    calls = batches(5, 3)
    async with open_store(url) as store:
        tasks = [asyncio.create_task(store.insert_rows(b)) for b in calls]
        await asyncio.sleep(0)  # every call queued, none written yet
        assert getattr(store, "group_stats").groups == 0  # noqa: B009 (SQLite only)
        await store.close()
        await asyncio.gather(*tasks)
    async with open_store(url) as again:
        assert await all_ids(again) == {r.id for b in calls for r in b}


async def test_read_only_store_refuses_before_queueing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    async with open_store(url):
        pass
    async with open_store(url, read_only=True) as ro:
        with pytest.raises(StoreError, match="read-only"):
            await ro.insert_rows([row(1)])
        assert getattr(ro, "group_stats").groups == 0  # noqa: B009 (SQLite only)


# ------------------------------------------------- the writer on its own lock


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    async with open_store(f"sqlite:///{path}"):
        pass  # migrated
    return path


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_caller_cancelled_while_queued_stores_nothing(db_path: Path) -> None:
    lock = asyncio.Lock()
    writer = GroupWriter(db_path, lock, busy_timeout_ms=5000)
    try:
        gone, kept = [row(1)], [row(2)]
        async with lock:  # the store is busy: both calls wait in the queue
            t_gone = asyncio.create_task(writer.insert(rows_params(gone)))
            t_kept = asyncio.create_task(writer.insert(rows_params(kept)))
            await settle()
            t_gone.cancel()
            await settle()
        await t_kept
        with pytest.raises(asyncio.CancelledError):
            await t_gone
        assert stored_text(db_path) == rows_params(kept)
        assert (writer.stats.groups, writer.stats.calls) == (1, 1)
    finally:
        await writer.close()


async def test_a_caller_cancelled_after_its_group_started_is_stored(db_path: Path) -> None:
    """Documented: a group handed to the writer thread commits whole; a caller
    cancelled meanwhile just does not wait for it."""
    writer = GroupWriter(db_path, asyncio.Lock(), busy_timeout_ms=5000)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer thread waits for SQLite's lock
        rows = [row(1)]
        task = asyncio.create_task(writer.insert(rows_params(rows)))
        await settle()  # the group is taken and in the writer thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        blocker.execute("COMMIT")
        await writer.insert(rows_params([row(2)]))  # queued behind that group
        assert [t[0] for t in stored_text(db_path)][:1] == [str(rows[0].id)]
        assert writer.stats.groups == 2
    finally:
        blocker.close()
        await writer.close()


async def test_groups_are_bounded_by_rows(db_path: Path) -> None:
    lock = asyncio.Lock()
    writer = GroupWriter(db_path, lock, busy_timeout_ms=5000, max_rows=10)
    try:
        calls = batches(5, 4)
        async with lock:
            tasks = [asyncio.create_task(writer.insert(rows_params(b))) for b in calls]
            await settle()
        await asyncio.gather(*tasks)
        assert (writer.stats.groups, writer.stats.max_calls) == (3, 2)  # 4+4, 4+4, 4
        assert stored_text(db_path) == [row_params(r) for b in calls for r in b]
        # One call larger than the bound still goes through, alone.
        big = [row(900 + i) for i in range(25)]
        await writer.insert(rows_params(big))
        assert writer.stats.groups == 4
    finally:
        await writer.close()


async def test_closed_writer_refuses(db_path: Path) -> None:
    writer = GroupWriter(db_path, asyncio.Lock(), busy_timeout_ms=5000)
    await writer.close()
    with pytest.raises(StoreError, match="closed"):
        await writer.insert(rows_params([row(1)]))


async def test_queued_groups_are_written_while_the_loop_is_busy(db_path: Path) -> None:
    """The writer thread takes the next group itself: a busy event loop (answering
    requests, reading frames) does not leave it idle with calls queued."""
    lock = asyncio.Lock()
    writer = GroupWriter(db_path, lock, busy_timeout_ms=5000, max_rows=10)
    try:
        calls = batches(3, 10)  # three groups: each call fills one
        async with lock:
            tasks = [asyncio.create_task(writer.insert(rows_params(b))) for b in calls]
            await settle()  # all queued, the writer waits for the lock
        await settle()  # the drain task has the lock and handed the queue to the thread
        # The loop is blocked from here on: only the writer thread can store rows.
        deadline = time.monotonic() + 10
        while len(stored_text(db_path)) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 (blocking the loop is the point)
        assert len(stored_text(db_path)) == 30
        assert writer.stats.groups == 0  # nobody was answered yet: the loop was blocked
        await asyncio.gather(*tasks)
        assert (writer.stats.groups, writer.stats.max_calls) == (3, 1)
        assert stored_text(db_path) == [row_params(r) for b in calls for r in b]
        # The writer's time in groups, and on a CPU in them (bench/ingest_wrk.py prints both).
        assert 0 < writer.stats.cpu_s <= writer.stats.busy_s + 0.01
    finally:
        await writer.close()


async def test_a_writer_run_yields_the_lock_to_a_waiting_reader(db_path: Path) -> None:
    """Groups back to back hold the store's lock, but not past RUN_S once another
    task waits for it: a read is not starved by sustained ingest."""
    lock = asyncio.Lock()
    writer = GroupWriter(db_path, lock, busy_timeout_ms=5000, max_rows=10)
    stop = asyncio.Event()

    async def ingest() -> None:
        while not stop.is_set():
            await asyncio.gather(*(writer.insert(rows_params(b)) for b in batches(4, 10)))

    feeders = [asyncio.create_task(ingest()) for _ in range(3)]
    try:
        await asyncio.sleep(0.2)  # sustained: calls always queued
        waits = []
        for _ in range(5):
            started = time.monotonic()
            await asyncio.wait_for(lock.acquire(), timeout=10)  # a starved reader fails here
            waits.append(time.monotonic() - started)
            lock.release()
            await asyncio.sleep(0.05)
        assert max(waits) < RUN_S + 1.0, waits  # a run ends soon after its deadline
    finally:
        stop.set()
        await asyncio.gather(*feeders)
        await writer.close()
