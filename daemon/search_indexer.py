"""Keeps the SQLite store's free-text index up with ingest (DESIGN §7).

SQLite's trigram index is filled behind the writer, not in its transaction
(storage/sqlite_search.py says why): this component indexes the rows stored
since its last pass, one committed chunk at a time, and sleeps when none is
left. A chunk holds the write lock about 0.1 s, so ingest waits at most that.
Searches stay exact meanwhile: the rows not indexed yet are scanned. A store
migrated from an older schema is indexed by the same passes (``tuiaudit
migrate`` does it in one go, with a progress bar).

PostgreSQL's GIN index is written with each row: there the component is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from tuiaudit.daemon.logs import log_event
from tuiaudit.storage.base import Store, StoreError

if TYPE_CHECKING:
    from tuiaudit.daemon.service import Daemon

log = logging.getLogger("tuiaudit.daemon.search")

IDLE_S = 1.0  # between passes when nothing is left to index
CHUNK = 5_000


class SearchIndexer:
    def __init__(self, store: Store, *, idle_s: float = IDLE_S, chunk: int = CHUNK) -> None:
        self.store = store
        self.idle_s = idle_s
        self.chunk = chunk
        self.indexed = 0  # rows indexed by this daemon (status, tests)
        self.passes = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                step = await self.store.index_search(limit=self.chunk)
            except StoreError as exc:
                log_event(log, "search-index-failed", logging.WARNING, error=str(exc))
                step = None
            self.passes += 1
            if step is not None and step.indexed:
                self.indexed += step.indexed
                await asyncio.sleep(0)  # let ingest and the API run between chunks
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.idle_s)


def search_indexer_component(daemon: Daemon) -> SearchIndexer | None:
    """The daemon's component factory: SQLite stores only."""
    if daemon.store.backend != "sqlite" or daemon.store.read_only:
        return None
    return SearchIndexer(daemon.store)
