"""Keeps the SQLite store's free-text index up with ingest (DESIGN §7).

SQLite's trigram index is filled behind the writer, not in its transaction
(storage/sqlite_search.py says why): this component indexes the rows stored
since its last pass, one committed chunk at a time, and sleeps when none is
left. Searches stay exact meanwhile: the rows not indexed yet are scanned. A
store migrated from an older schema is indexed by the same passes (``tuiaudit
migrate`` does it in one go, with a progress bar).

It yields to ingest. Indexing a row costs about seven times inserting it and
holds SQLite's one write lock, so indexing at full speed during sustained
ingest took most of the writer's time (941 against 5,894 events/s under wrk,
docs/BENCHMARKS.md "ingest_wrk"). So, by what the writer did recently (the
store's group-commit row counter, read each pass):

* ingest idle (no row written for ``quiet_s``): chunks of ``chunk`` rows back
  to back, so a backlog is caught up at full speed. A chunk cannot be left
  once started, so ingest that resumes waits for it: 1,000 rows held the
  lock 0.24-0.29 s at worst on two loaded cores (FTS5 merges its segments
  inside some), 5,000 rows 0.64-0.94 s; the smaller chunks cost the
  catch-up about a third more time;
* ingest busy, backlog under ``backlog_limit``: nothing, the rows wait (a
  search scans them: it costs search time, not ingest time);
* ingest busy, backlog at or past the limit: small chunks (``busy_chunk``:
  50 rows, 1-1.4 ms of the lock at the median and 10 ms at p99, then their
  merge step, p99 16 ms, in a transaction of its own: migration 0007; with
  200-row chunks and FTS5 merging inside them, the chunks held the lock
  17-36 ms at the median and 44-82 ms at p99, which ingest's p99 paid) at a
  bounded duty cycle: after a chunk that took
  t, it waits t·(1-duty)/duty, so indexing holds the lock at most ``duty``
  of the time (20%) and the backlog grows more slowly, never unbounded in
  silence: it is exposed as ``tuiaudit_search_index_pending_rows`` and by
  ``tuiaudit status`` (``search-index-pending`` in its ``--json``).

The backlog between chunks is an estimate: the last chunk's exact count plus
the rows written since (rows deleted meanwhile make it high until the next
chunk).

PostgreSQL's GIN index is written with each row: there the component is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tuiaudit.daemon.logs import log_event
from tuiaudit.storage.base import SearchIndexStep, Store, StoreError

if TYPE_CHECKING:
    from tuiaudit.daemon.service import Daemon

log = logging.getLogger("tuiaudit.daemon.search")

IDLE_S = 1.0  # between passes when nothing is left to index
CHUNK = 1_000  # rows per chunk while ingest is idle (0.2-0.3 s of the lock at worst, loaded)
BUSY_CHUNK = 50  # rows per chunk while ingest is busy (see the module docstring)
QUIET_S = 0.5  # ingest counts as idle once no row was written for this long
DUTY = 0.2  # the most of the time busy-time chunks hold the write lock
# Rows: past it, index during ingest too (at DUTY). A search scans the backlog:
# a rare needle's exact count and first page took 0.21-0.25 s with 100,000 rows
# waiting and 0.41-0.50 s with 200,000 (bench/search_backlog.py, loaded cores), so
# this keeps a search within its half-second target while ingest runs.
BACKLOG_LIMIT = 100_000
POLL_S = 0.1  # how often a deferring indexer looks at the writer again


def _rows_written(store: Store) -> Callable[[], int]:
    """The store's count of rows written by group commit (0 when it keeps none)."""

    def written() -> int:
        stats = getattr(store, "group_stats", None)
        return int(stats.rows) if stats is not None else 0

    return written


class SearchIndexer:
    def __init__(
        self,
        store: Store,
        *,
        idle_s: float = IDLE_S,
        chunk: int = CHUNK,
        busy_chunk: int = BUSY_CHUNK,
        quiet_s: float = QUIET_S,
        duty: float = DUTY,
        backlog_limit: int = BACKLOG_LIMIT,
        poll_s: float = POLL_S,
        written: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_backlog: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.store = store
        self.idle_s = idle_s
        self.chunk = chunk
        self.busy_chunk = busy_chunk
        self.quiet_s = quiet_s
        self.duty = duty
        self.backlog_limit = backlog_limit
        self.poll_s = poll_s
        self._written = written or _rows_written(store)
        self._clock = clock
        self._on_backlog = on_backlog
        self.indexed = 0  # rows indexed by this daemon (status, tests)
        self.passes = 0
        # What each pass decided (tests, benchmarks): full-speed chunks, busy-time
        # chunks at the duty cycle, and passes that left the rows for later.
        self.full_chunks = 0
        self.busy_chunks = 0
        self.deferred = 0
        self._seen = self._written()
        self._last_write = float("-inf")  # no write seen yet: idle
        self._backlog: int | None = None  # unknown until the first chunk
        self._backlog_at = self._seen  # the written counter when _backlog was exact

    # -- what the writer did

    def _busy(self) -> bool:
        """Whether ingest wrote a row within the last ``quiet_s``."""
        now, seen = self._clock(), self._written()
        if seen != self._seen:
            self._seen, self._last_write = seen, now
        return now - self._last_write < self.quiet_s

    @property
    def backlog(self) -> int | None:
        """Rows not indexed yet (an estimate between chunks; None before the first)."""
        if self._backlog is None:
            return None
        return self._backlog + max(0, self._written() - self._backlog_at)

    def _record(self, step: SearchIndexStep) -> None:
        self._backlog, self._backlog_at = step.pending, self._written()
        self._on_backlog(step.pending)

    # -- the loop

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            busy = self._busy()
            backlog = self.backlog
            if busy and backlog is not None and backlog < self.backlog_limit:
                self.deferred += 1  # ingest first; these rows are scanned meanwhile
                self._on_backlog(backlog)
                await self._wait(stop, self.poll_s)
                continue
            started = self._clock()
            try:
                step = await self.store.index_search(limit=self.busy_chunk if busy else self.chunk)
            except StoreError as exc:
                log_event(log, "search-index-failed", logging.WARNING, error=str(exc))
                step = None
            self.passes += 1
            if step is None or not step.indexed:
                if step is not None:
                    self._record(step)
                await self._wait(stop, self.idle_s)
                continue
            self.indexed += step.indexed
            self._record(step)
            if busy:
                self.busy_chunks += 1
                took = max(0.0, self._clock() - started)
                await self._wait(stop, took * (1 - self.duty) / self.duty)
            else:
                self.full_chunks += 1
                await asyncio.sleep(0)  # let ingest and the API run between chunks

    @staticmethod
    async def _wait(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


def search_indexer_component(daemon: Daemon) -> SearchIndexer | None:
    """The daemon's component factory: SQLite stores only."""
    if daemon.store.backend != "sqlite" or daemon.store.read_only:
        return None

    def publish(pending: int) -> None:
        daemon.metrics.search_pending = pending
        daemon.info["search-index-pending"] = pending

    return SearchIndexer(daemon.store, on_backlog=publish)
