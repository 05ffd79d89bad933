"""The SQLite search indexer yields to ingest (daemon/search_indexer.py, DESIGN §7).

While rows are being written it leaves the backlog for later (searches scan
those rows), past a backlog limit it indexes small chunks at a bounded duty
cycle, and once ingest is idle it catches up in full chunks. The writer's row
counter and the clock are the test's own, so every decision is a counter, not
a timing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tuiaudit.commands.status import collect, render_text
from tuiaudit.config import Settings
from tuiaudit.daemon.ingest_channel import merged
from tuiaudit.daemon.metrics import Metrics, render
from tuiaudit.daemon.search_indexer import SearchIndexer
from tuiaudit.daemon.service import running_daemon
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter, AuditRow

NOW = datetime.now(UTC).replace(microsecond=0)


def row(i: int) -> AuditRow:
    at = NOW - timedelta(seconds=i)
    return AuditRow(
        id=uuid.uuid4(), name=f"event-{i % 5}", type="action", source="backend",
        profile_id=uuid.uuid4(), ip_addr="192.0.2.1", props={"who": f"user-{i}@example.org"},
        context={}, tracked_at=at, created_at=at,
    )  # fmt: skip


class Writer:
    """What the indexer reads of ingest: a row counter, and a clock the test moves."""

    def __init__(self) -> None:
        self.rows = 0
        self.now = 0.0

    def write(self, n: int = 1) -> None:
        self.rows += n


async def until(check: Callable[[], bool]) -> None:
    """Let the indexer's task run until ``check`` holds (bounded, no time measured)."""
    for _ in range(20_000):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the indexer never got there")


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    async with open_store(f"sqlite:///{tmp_path / 's.db'}") as s:
        await s.insert_rows([row(i) for i in range(300)])
        yield s


def indexer_for(store: Any, writer: Writer, **kw: Any) -> SearchIndexer:
    seen: list[int] = []
    idx = SearchIndexer(
        store, chunk=1_000, busy_chunk=50, quiet_s=1.0, poll_s=0.001, idle_s=0.001,
        written=lambda: writer.rows, clock=lambda: writer.now, on_backlog=seen.append, **kw,
    )  # fmt: skip
    idx.published = seen  # type: ignore[attr-defined]
    return idx


async def test_busy_ingest_defers_indexing_then_idle_catches_up(store: Any) -> None:
    writer = Writer()
    indexer = indexer_for(store, writer, backlog_limit=10_000)
    writer.write()  # ingest is writing: the clock stays within quiet_s of it
    stop = asyncio.Event()
    task = asyncio.create_task(indexer.run(stop))
    try:
        await until(lambda: indexer.deferred >= 20)
        # One small chunk to learn the backlog, then nothing while ingest writes.
        assert (indexer.busy_chunks, indexer.full_chunks, indexer.indexed) == (1, 0, 50)
        assert (await store.search_index_state()).pending == 250
        assert indexer.backlog == 250 + 0  # no row written since that chunk
        # Searches stay exact meanwhile: the unindexed rows are scanned.
        hits = await store.fetch_rows(AuditFilter(text="user-299@"), limit=10)
        assert [r.props["who"] for r in hits] == ["user-299@example.org"]

        writer.now += 5.0  # nothing written for longer than quiet_s: idle
        await until(lambda: indexer.indexed == 300)
        assert indexer.full_chunks == 1 and indexer.busy_chunks == 1
        assert (await store.search_index_state()).pending == 0
        assert indexer.published[-1] == 0  # type: ignore[attr-defined]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    # Busy again (the indexer paused meanwhile, so no pass races the write):
    # the new rows are counted in the backlog and left for later.
    await store.insert_rows([row(1_000 + i) for i in range(7)])
    writer.write(7)
    deferred = indexer.deferred
    stop = asyncio.Event()
    task = asyncio.create_task(indexer.run(stop))
    try:
        await until(lambda: indexer.deferred > deferred)
        assert indexer.backlog == 7 and indexer.indexed == 300
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_past_the_backlog_limit_it_indexes_at_the_duty_cycle(store: Any) -> None:
    writer = Writer()
    indexer = indexer_for(store, writer, backlog_limit=100, duty=0.2)
    waits: list[float] = []

    async def wait(stop: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    indexer._wait = wait  # type: ignore[method-assign]
    index = store.index_search

    async def slow_index(*, limit: int) -> Any:
        writer.now += 0.01  # each chunk "takes" 10 ms of the test's clock
        return await index(limit=limit)

    store.index_search = slow_index
    writer.write()
    stop = asyncio.Event()
    task = asyncio.create_task(indexer.run(stop))
    try:
        await until(lambda: indexer.deferred >= 5)
        # 300 -> 250 -> ... -> 50: small chunks until the backlog is under the limit.
        assert indexer.busy_chunks == 5 and indexer.full_chunks == 0
        assert indexer.indexed == 250 and indexer.backlog == 50
        # After each busy chunk it waited 4x the chunk's time: the lock 20% at most.
        assert waits[:5] == pytest.approx([0.04] * 5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_the_backlog_is_a_metric_whichever_process_serves_the_scrape() -> None:
    own = Metrics()
    assert b"tuiaudit_search_index_pending_rows" not in render(own, None)  # no indexer
    own.search_pending = 1234
    for metrics in (own, merged(own, [])):  # one process, or a worker's scrape
        text = render(metrics, None).decode()
        assert "tuiaudit_search_index_pending_rows 1234.0" in text


async def test_tuiaudit_status_says_how_many_rows_wait_for_the_index(tmp_path: Path) -> None:
    """The backlog the indexer publishes reaches `tuiaudit status`'s text, only while it is > 0."""
    settings = Settings(store=f"sqlite:///{tmp_path / 's.db'}", listen="127.0.0.1:0")
    async with running_daemon(settings, components=[]) as daemon:
        daemon.info["search-index-pending"] = 1234
        await daemon.write_state()
        status = await collect(daemon.store, settings)
        assert status["daemons"][0]["info"]["search-index-pending"] == 1234
        assert "search index: 1234 rows not indexed yet" in render_text(status)
        daemon.info["search-index-pending"] = 0
        await daemon.write_state()
        assert "search index:" not in render_text(await collect(daemon.store, settings))
