"""Free-text search of the audit log in bounded steps, for the audit pane.

Free text the store's trigram index answers (DESIGN §7: 3 characters or more,
the index built) is loaded like a field filter (``audit_view``), its count
exact up to ``SEARCH_COUNT_LIMIT``. Shorter text, or a SQLite store whose index
is still being built (``Store.search_ready``), is a search in bounded steps
(``data.search_steps`` over ``Store.scan_rows``, which sizes each step): matches
show as each step finds them, the count line says how far the search got
("searching… 12 found, 200,000 of ~1,000,000 rows searched"), the search
pauses once a page of matches is shown and one more is found ("100 of >100";
the extra row is held back, shown first when the table is scrolled to its end
and the search goes on); a new filter cancels it (the pane runs it as one
exclusive worker). Its live tail reads only the rows that arrived since the
search started, never the old ones again.

The pane (``audit_view.AuditView``) owns the worker and the messages; this
module owns the search's state, the worker's body, how each step lands in the
table and the wording of its progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.message import Message

from tuiaudit.storage.base import AuditFilter, AuditRow, Cursor, ScanPage, Store
from tuiaudit.tui import data, filters
from tuiaudit.tui.widgets.audit_table import AuditTable, cursor_of

SEARCH_COUNT_LIMIT = 10_000
"""An indexed search counts its matches exactly up to here (about 0.25 s on SQLite)."""


@dataclass
class LoadCut(Message):
    """The store cut a load at its statement time limit (``QueryCut``): the count line says so."""

    generation: int
    error: str


@dataclass
class SearchInSteps(Message):
    """The store cannot answer this filter's text from its index: search in steps."""

    generation: int


@dataclass
class Search:
    """Where the text search of one filter generation stands."""

    generation: int
    run: int = 0  # one per worker run: a late message of an older run is ignored
    cursor: Cursor | None = None  # where the next step starts (None: from the newest row)
    done: bool = False  # every row was searched: the rows shown are every match
    running: bool = False
    scanned: int = 0  # rows searched so far
    total: int | None = None  # rows to search (the filter without its text), once counted
    top: Cursor | None = None  # the newest row when the search started: the tail reads above it
    top_known: bool = False
    held: AuditRow | None = None  # the match past the page shown (it makes "of >N" true)

    def begin_run(self, table: AuditTable) -> int:
        """Start the next run (the match the last one held back is shown first)."""
        if self.held is not None:
            table.upsert([self.held])
            self.held = None
        self.running = True
        self.run += 1
        return self.run

    def apply_step(self, message: SearchStepped, table: AuditTable) -> None:
        """Show one step's matches and advance to where the next step starts."""
        page = message.page
        if message.reset:
            table.clear()
            table.audit_rows.clear()
            self.scanned = 0
        rows = page.rows
        if message.last and not page.complete:
            # The run found its page and one more: hold that one back (the next
            # run starts after it, so nothing is searched twice).
            rows, self.held = rows[:-1], rows[-1]
        table.upsert(rows)
        if message.reset and table.row_count:
            table.move_cursor(row=0, animate=False)
        self.scanned += page.scanned
        self.cursor = page.next_cursor
        self.done = page.complete
        if message.last:
            self.running = False

    def status_line(self, shown: int) -> Text:
        """The count line's progress part, with ``shown`` matches in the table."""
        if self.done:
            return Text(f"{shown:,} of {shown:,} rows", style="bold")
        of = f" of ~{self.total:,}" if self.total is not None else ""
        progress = f"{self.scanned:,}{of} rows searched"
        if self.running:
            return Text.assemble((f"searching… {shown:,} found", "bold"), f", {progress}")
        # Paused: with a held-back match there are more; after a failure, maybe.
        found = f"{shown:,} of >{shown:,} rows" if self.held else f"{shown:,} found so far"
        return Text.assemble((found, "bold"), f", {progress}; scroll to the end to search on")


@dataclass
class SearchStepped(Message):
    """One bounded step of a text search (``reset``: its first step)."""

    generation: int
    run: int
    page: ScanPage
    reset: bool
    last: bool  # the run ends here (page complete, or the wanted matches found)


@dataclass
class SearchEnded(Message):
    """A search run stopped (finished, failed or cancelled)."""

    generation: int
    run: int


@dataclass
class SearchCounted(Message):
    generation: int
    total: int


def current(search: Search | None, generation: int, run: int | None = None) -> Search | None:
    """The search a message is about, unless a newer filter or run replaced it."""
    if search is None or search.generation != generation:
        return None
    return search if run is None or run == search.run else None


async def _newest(store: Store, flt: AuditFilter) -> Cursor | None:
    """The newest row the search could see: the filter without its text."""
    newest = await store.fetch_rows(filters.without_text(flt), limit=1)
    return cursor_of(newest[0]) if newest else None


async def run_search(
    store: Store,
    search: Search,
    run: int,
    flt: AuditFilter,
    post: Callable[[Message], Any],
    *,
    page_size: int,
) -> None:
    """One worker run: search on from ``search.cursor`` for a page of matches (and one over).

    Each step is posted as a ``SearchStepped``; ``SearchEnded`` always ends the run.
    """
    generation = search.generation
    try:
        if not search.top_known:
            search.top = await _newest(store, flt)
            search.top_known = True
        # A page of new rows and one more: that one proves "of >N" and is held back.
        # A continuation has already shown the row held by the previous run.
        reset = search.cursor is None
        want = page_size + 1 if reset else page_size
        steps = data.search_steps(store, flt, want=want, before=search.cursor, scan=data.SCAN_FIRST)
        found = 0
        async for page in steps:
            found += len(page.rows)
            last = page.complete or found >= want
            post(SearchStepped(generation, run, page, reset, last))
            reset = False
            if search.total is None and not page.complete:
                # How many rows the search will go through, once, after the
                # first matches are on screen: an index count, no text test.
                total = await store.count_rows(filters.without_text(flt))
                search.total = total
                post(SearchCounted(generation, total))
    finally:
        post(SearchEnded(generation, run))


async def tail_rows(
    store: Store, search: Search, generation: int, flt: AuditFilter, *, limit: int
) -> list[AuditRow]:
    """Rows that arrived since a started search began: only they are searched, once.

    Moves ``search.top`` up to the newest row, unless a newer filter replaced the
    search meanwhile (``generation`` is the pane's when the tail read began).
    """
    top = await _newest(store, flt)
    rows: list[AuditRow] = []
    arrived = 0
    if top is not None and top != search.top:
        rows = await store.fetch_rows_after(flt, after=search.top, limit=limit)
        # The new rows were searched too: count them, so the matches shown
        # never outnumber the rows searched ("121 of ~447 searched").
        arrived = len(
            await store.fetch_rows_after(filters.without_text(flt), after=search.top, limit=limit)
        )
    if generation == search.generation:
        search.top = top
        search.scanned += arrived
        if search.total is not None:
            search.total += arrived
    return rows
