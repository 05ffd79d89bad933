"""The audit log pane: a keyset-paged table with a live tail and a filter bar.

Rows are loaded a page at a time (``fetch_rows(before=cursor)``), the next page
when the cursor or the scroll gets near the end; the live tail reads only rows
newer than the newest shown (``fetch_rows_after``) and inserts them at the top
by row key, keeping the cursor on the row it was on. The count is honest and
bounded: ``count_rows(limit=...)`` says "500 of >500" rather than scanning.

A free-text filter cannot use an index, so it is a search in bounded steps
(``data.search_steps`` over ``Store.scan_rows``): matches show as each step
finds them, the count line says how far the search got ("searching… 12
found, 200,000 of ~1,000,000 rows searched"), the search pauses once a page
of matches is shown and one more is found ("100 of >100"; the extra row is
held back, shown first when the table is scrolled to its end and the search
goes on); a new filter cancels it (one exclusive worker). Its live tail reads
only the rows that arrived since the search started, never the old ones again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Input, Select, Static

from storage.base import TELEMETRY_SOURCE_PREFIX, AuditFilter, AuditRow, Cursor, ScanPage
from tuiaudit.tui import data, filters
from tuiaudit.tui.keys import AUDIT, bindings
from tuiaudit.tui.messages import CountLoaded, RowsLoaded, ShowShared, TailLoaded
from tuiaudit.tui.render import fmt_time

if TYPE_CHECKING:
    from tuiaudit.tui.app import AuditApp

PAGE = 100
COUNT_LIMIT = 500
TAIL_MAX = 1000
LOAD_MORE_MARGIN = 20  # rows from the end at which the next page is fetched

COLUMNS = (
    ("time", "time (UTC)"),
    ("source", "source"),
    ("type", "type"),
    ("name", "name"),
    ("profile", "profile"),
    ("ip", "IP"),
)


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


class TimeCell(Text):
    """The time cell also carries the row's keyset position, to sort by it."""

    sort_key: Cursor


def cursor_of(row: AuditRow) -> Cursor:
    return (row.created_at, row.id)


class AuditTable(DataTable[Any]):
    """A DataTable kept in ``created_at DESC, id DESC`` order, updated by row key."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.audit_rows: dict[str, AuditRow] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def current_key(self) -> str | None:
        if not self.row_count:
            return None
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def current_row(self) -> AuditRow | None:
        key = self.current_key()
        return None if key is None else self.audit_rows.get(key)

    def oldest(self) -> Cursor | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(Coordinate(self.row_count - 1, 0)).row_key.value
        return cursor_of(self.audit_rows[str(key)])

    def newest(self) -> Cursor | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(Coordinate(0, 0)).row_key.value
        return cursor_of(self.audit_rows[str(key)])

    def upsert(self, rows: list[AuditRow]) -> int:
        """Add the rows not shown yet, in order, keeping the cursor on its row."""
        fresh = [r for r in rows if str(r.id) not in self.audit_rows]
        if not fresh:
            return 0
        oldest = self.oldest()
        keep = self.current_key()
        for row in sorted(fresh, key=cursor_of, reverse=True):
            key = str(row.id)
            self.audit_rows[key] = row
            time_cell = TimeCell(fmt_time(row.created_at))
            time_cell.sort_key = cursor_of(row)
            source_style = "magenta" if row.source.startswith(TELEMETRY_SOURCE_PREFIX) else ""
            self.add_row(
                time_cell,
                Text(row.source, style=source_style),
                row.type,
                row.name,
                str(row.profile_id),
                row.ip_addr,
                key=key,
            )
        if oldest is not None and any(cursor_of(r) > oldest for r in fresh):
            # Some rows belong above the ones shown: re-order, then put the cursor back.
            self.sort("time", key=lambda cell: cell.sort_key, reverse=True)
            if keep is not None:
                self.move_cursor(row=self.get_row_index(keep), animate=False, scroll=False)
        return len(fresh)

    def drop(self, keys: list[str]) -> None:
        for key in keys:
            if key in self.audit_rows:
                del self.audit_rows[key]
                self.remove_row(key)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self.max_scroll_y and new >= self.max_scroll_y - 2:
            view = self.parent
            while view is not None and not isinstance(view, AuditView):
                view = view.parent
            if view is not None:
                view.load_more()


class AuditView(Vertical):
    """Filter bar, honest count line and the audit table."""

    BINDINGS = bindings(AUDIT)

    def __init__(self, *, debounce: float = 0.25, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.debounce = debounce
        self.filter_text = ""
        self.range_name = "all"
        self.flt = AuditFilter()
        self.generation = 0
        self.exhausted = False
        self.loading_more = False
        self.count: int | None = None
        self.loaded_generation = -1  # the filter generation whose first page is shown
        self.tail_paused = False
        self._debounce_timer: Timer | None = None
        self.filter_error: str | None = None
        self.search: Search | None = None  # set while the filter has free text

    @property
    def dashboard(self) -> AuditApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(id="filter-bar"):
            yield Input(
                placeholder="/ to filter: name:logout source:telemetry:* type:action free text",
                id="filter-input",
            )
            yield Select(
                [(f"range: {name}", name) for name in filters.RANGES],
                value="all",
                allow_blank=False,
                id="range-select",
            )
        yield Static("", id="count-line")
        yield AuditTable(id="audit-table")

    @property
    def table(self) -> AuditTable:
        return self.query_one(AuditTable)

    # ------------------------------------------------------------- filtering
    def action_filter(self) -> None:
        self.query_one("#filter-input", Input).focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter-input", Input)
        if field.value:
            field.value = ""
            self.apply_filter()
        self.table.focus()

    def action_cycle_range(self) -> None:
        self.query_one("#range-select", Select).value = filters.next_range(self.range_name)

    @on(Select.Changed, "#range-select")
    def _range_changed(self, event: Select.Changed) -> None:
        if event.value != self.range_name and isinstance(event.value, str):
            self.range_name = event.value
            self.apply_filter()

    @on(Input.Changed, "#filter-input")
    def _filter_typed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        if self._debounce_timer is not None:
            self._debounce_timer.stop()
        if self.debounce <= 0:
            self.apply_filter()
        else:
            self._debounce_timer = self.set_timer(self.debounce, self.apply_filter)

    @on(Input.Submitted, "#filter-input")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.filter_text = event.value
        self.apply_filter()
        self.table.focus()

    def apply_filter(self) -> None:
        """Parse the filter text and reload from the newest row."""
        if self._debounce_timer is not None:
            self._debounce_timer.stop()
            self._debounce_timer = None
        try:
            flt = filters.parse_filter(self.filter_text)
        except filters.FilterError as exc:
            self.filter_error = str(exc)
            self._render_count()
            return
        self.filter_error = None
        self.flt = filters.with_range(flt, self.range_name, self.dashboard.clock())
        self.reload()

    # --------------------------------------------------------------- loading
    def reload(self) -> None:
        self.generation += 1
        self.exhausted = False
        self.workers.cancel_group(self, "audit-more")
        if self.flt.text:
            self.search = Search(self.generation)
            self.count = None
            self._start_search(self.search)
            return
        self.search = None
        self.run_worker(
            self._load_first(self.generation, self.flt),
            group="audit-load",
            exclusive=True,
            exit_on_error=False,
        )

    async def _load_first(self, generation: int, flt: AuditFilter) -> None:
        store = self.dashboard.reader
        rows = await store.fetch_rows(flt, limit=PAGE)
        await self._post_first_page(generation, flt, rows)

    async def _post_first_page(
        self, generation: int, flt: AuditFilter, rows: list[AuditRow]
    ) -> None:
        """Rows first, then the honest count (a second, bounded scan) once they are on screen.

        A short first page is already the whole answer: no count query at all.
        """
        exhausted = len(rows) < PAGE
        self.post_message(
            RowsLoaded(generation, rows, True, exhausted, len(rows) if exhausted else None)
        )
        if not exhausted:
            count = await self.dashboard.reader.count_rows(flt, limit=COUNT_LIMIT)
            self.post_message(CountLoaded(generation, count))

    # ---------------------------------------------------------- text search
    def _start_search(self, search: Search) -> None:
        """Search on from ``search.cursor`` for one more page of matches (and one over)."""
        if search.held is not None:
            self.table.upsert([search.held])
            search.held = None
        search.running = True
        search.run += 1
        self.run_worker(
            self._search(search, search.run, self.flt),
            group="audit-load",  # exclusive: a new filter cancels this search
            exclusive=True,
            exit_on_error=False,
        )
        self._render_count()

    def _current(self, generation: int, run: int | None = None) -> Search | None:
        """The search a message is about, unless a newer filter or run replaced it."""
        search = self.search
        if search is None or search.generation != generation:
            return None
        return search if run is None or run == search.run else None

    async def _search(self, search: Search, run: int, flt: AuditFilter) -> None:
        generation = search.generation
        store = self.dashboard.reader
        try:
            if not search.top_known:
                newest = await store.fetch_rows(filters.without_text(flt), limit=1)
                search.top = cursor_of(newest[0]) if newest else None
                search.top_known = True
            # A page of new rows and one more: that one proves "of >N" and is held back.
            # A continuation has already shown the row held by the previous run.
            reset = search.cursor is None
            want = PAGE + 1 if reset else PAGE
            steps = data.search_steps(
                store, flt, want=want, before=search.cursor, scan=data.SCAN_FIRST
            )
            found = 0
            async for page in steps:
                found += len(page.rows)
                last = page.complete or found >= want
                self.post_message(SearchStepped(generation, run, page, reset, last))
                reset = False
                if search.total is None and not page.complete:
                    # How many rows the search will go through, once, after the
                    # first matches are on screen: an index count, no text test.
                    total = await store.count_rows(filters.without_text(flt))
                    search.total = total
                    self.post_message(SearchCounted(generation, total))
        finally:
            self.post_message(SearchEnded(generation, run))

    def on_search_stepped(self, message: SearchStepped) -> None:
        search = self._current(message.generation, message.run)
        if search is None:
            return
        page = message.page
        table = self.table
        if message.reset:
            table.clear()
            table.audit_rows.clear()
            search.scanned = 0
        rows = page.rows
        if message.last and not page.complete:
            # The run found its page and one more: hold that one back (the next
            # run starts after it, so nothing is searched twice).
            rows, search.held = rows[:-1], rows[-1]
        table.upsert(rows)
        if message.reset and table.row_count:
            table.move_cursor(row=0, animate=False)
        search.scanned += page.scanned
        search.cursor = page.next_cursor
        search.done = page.complete
        if message.last:
            search.running = False
        self.exhausted = True  # more rows come from the search, not from fetch_rows pages
        self.count = table.row_count if search.done else None
        self.loaded_generation = message.generation
        self._render_count()

    def on_search_counted(self, message: SearchCounted) -> None:
        search = self._current(message.generation)
        if search is not None:
            search.total = message.total
            self._render_count()

    def on_search_ended(self, message: SearchEnded) -> None:
        search = self._current(message.generation, message.run)
        if search is not None:
            search.running = False
            self._render_count()

    async def _search_tail(self, search: Search) -> None:
        """Rows that arrived since the search started: only they are searched, once."""
        if not search.top_known:
            return  # the search has not started: it will read from the newest row
        store = self.dashboard.reader
        generation, flt = self.generation, self.flt
        newest = await store.fetch_rows(filters.without_text(flt), limit=1)
        top = cursor_of(newest[0]) if newest else None
        rows: list[AuditRow] = []
        if top is not None and top != search.top:
            rows = await store.fetch_rows_after(flt, after=search.top, limit=TAIL_MAX)
        if generation == search.generation:
            search.top = top
        gone = await self._gone_in_view()
        self.post_message(TailLoaded(generation, rows, gone, len(rows) >= TAIL_MAX))

    def load_more(self) -> None:
        search = self.search
        if search is not None:
            if not search.done and not search.running and self.dashboard.reader is not None:
                self._start_search(search)
            return
        if self.exhausted or self.loading_more or self.dashboard.reader is None:
            return
        before = self.table.oldest()
        if before is None:
            return
        self.loading_more = True
        self.run_worker(
            self._load_page(self.generation, self.flt, before),
            group="audit-more",
            exclusive=True,
            exit_on_error=False,
        )

    def action_load_more(self) -> None:
        self.table.action_page_down()
        self.load_more()

    async def _load_page(self, generation: int, flt: AuditFilter, before: Cursor) -> None:
        try:
            rows = await self.dashboard.reader.fetch_rows(flt, before=before, limit=PAGE)
            self.post_message(RowsLoaded(generation, rows, False, len(rows) < PAGE))
        finally:
            self.loading_more = False

    async def read_tail(self) -> None:
        """Called by the App's refresh (after a change): rows newer than the newest shown."""
        if self.tail_paused:
            return
        if self.search is not None:
            await self._search_tail(self.search)
            return
        store = self.dashboard.reader
        generation, flt = self.generation, self.flt
        newest = self.table.newest()
        if newest is None:
            # Nothing shown yet (first load, or an empty result): read the first page.
            rows = await store.fetch_rows(flt, limit=PAGE)
            if rows or self.count is None:
                await self._post_first_page(generation, flt, rows)
            return
        rows = await store.fetch_rows_after(flt, after=newest, limit=TAIL_MAX)
        gone = await self._gone_in_view()
        self.post_message(TailLoaded(generation, rows, gone, len(rows) >= TAIL_MAX))

    async def _gone_in_view(self) -> list[str]:
        """Visible telemetry rows that left the store (shipped, purged, GC'd).

        Only telemetry rows are ever deleted, so only they are checked: one
        primary-key lookup each for the rows on screen, whatever the filter.
        """
        table = self.table
        if not table.row_count:
            return []
        top = max(0, int(table.scroll_y))
        last = min(table.row_count, top + max(1, table.size.height)) - 1
        gone = []
        for i in range(top, last + 1):
            key = str(table.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value)
            row = table.audit_rows.get(key)
            if row is not None and row.source.startswith(TELEMETRY_SOURCE_PREFIX):
                if await self.dashboard.reader.get_row(row.id) is None:
                    gone.append(key)
        return gone

    # -------------------------------------------------------------- results
    def on_rows_loaded(self, message: RowsLoaded) -> None:
        if message.generation != self.generation:
            return
        table = self.table
        if message.reset:
            wanted = {str(r.id) for r in message.rows}
            gone = [k for k in table.audit_rows if k not in wanted]
            if len(gone) > table.row_count // 2:
                # A new filter is a new result, not a refresh: removing rows one by
                # one costs O(n) each in DataTable, clearing is O(1).
                table.clear()
                table.audit_rows.clear()
            else:
                table.drop(gone)
            self.count = message.count
        table.upsert(message.rows)
        if message.reset and table.row_count:
            table.move_cursor(row=0, animate=False)
        self.exhausted = message.exhausted
        self.loaded_generation = message.generation
        self._render_count()

    def on_count_loaded(self, message: CountLoaded) -> None:
        if message.generation == self.generation:
            self.count = message.count
            self._render_count()

    def on_tail_loaded(self, message: TailLoaded) -> None:
        if message.generation != self.generation:
            return
        if message.flood:
            self.reload()
            return
        added = self.table.upsert(message.rows)
        self.table.drop(message.gone)
        if self.search is not None:
            if self.search.done:
                self.count = self.table.row_count  # every match is shown
        elif self.count is not None and self.count <= COUNT_LIMIT:
            self.count = self.count + added - len(message.gone)
        self._render_count()

    def _search_line(self, search: Search) -> Text:
        shown = self.table.row_count
        if search.done:
            return Text(f"{shown:,} of {shown:,} rows", style="bold")
        of = f" of ~{search.total:,}" if search.total is not None else ""
        progress = f"{search.scanned:,}{of} rows searched"
        if search.running:
            return Text.assemble((f"searching… {shown:,} found", "bold"), f", {progress}")
        # Paused: with a held-back match there are more; after a failure, maybe.
        found = f"{shown:,} of >{shown:,} rows" if search.held else f"{shown:,} found so far"
        return Text.assemble((found, "bold"), f", {progress}; scroll to the end to search on")

    def _render_count(self) -> None:
        line = Text()
        shown = self.table.row_count
        if self.search is not None and self.search.generation == self.generation:
            line.append_text(self._search_line(self.search))
        elif self.count is None:
            line.append(f"{shown:,} of … rows (counting)" if shown else "loading…", style="bold")
        elif self.count > COUNT_LIMIT:
            line.append(f"{shown:,} of >{COUNT_LIMIT:,} rows", style="bold")
        else:
            line.append(f"{shown:,} of {self.count:,} rows", style="bold")
        described = filters.describe(self.flt)
        if described:
            line.append(f"  filter: {described}")
        if self.range_name != "all":
            line.append(f"  last {self.range_name}")
        if self.tail_paused:
            line.append("  live updates paused (p resumes)", style="bold yellow")
        else:
            line.append("  ● live", style="green")
        if self.filter_error:
            line.append(f"  {self.filter_error}", style="red")
        self.query_one("#count-line", Static).update(line)

    # --------------------------------------------------------------- actions
    def set_paused(self, paused: bool) -> None:
        self.tail_paused = paused
        self._render_count()

    def action_open_detail(self) -> None:
        row = self.table.current_row()
        if row is not None:
            self.dashboard.open_detail(row)

    def action_what_is_shared(self) -> None:
        row = self.table.current_row()
        if row is not None:
            self.post_message(ShowShared(row))

    @on(DataTable.RowSelected, "#audit-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_detail()

    @on(DataTable.RowHighlighted, "#audit-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= self.table.row_count - LOAD_MORE_MARGIN:
            self.load_more()
