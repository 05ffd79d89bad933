"""The audit log pane: a keyset-paged table with a live tail and a filter bar.

Rows are loaded a page at a time (``fetch_rows(before=cursor)``), the next page
when the cursor or the scroll gets near the end; the live tail reads only rows
newer than the newest shown (``fetch_rows_after``) and inserts them at the top
by row key, keeping the cursor on the row it was on. The count is honest and
bounded: ``count_rows(limit=...)`` says "500 of >500" rather than scanning.

Free text of 3 characters or more is answered by the store's trigram index
(DESIGN §7) like a field filter: a page, then an exact count up to
``SEARCH_COUNT_LIMIT`` ("1 of 1 rows"). Shorter text, or a SQLite store whose
index is still being built, is a search in bounded steps instead
(``audit_search``): this pane runs it as its exclusive loading worker and
routes its messages. The table widget itself is ``audit_table.AuditTable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.timer import Timer
from textual.widgets import DataTable, Input, Select, Static

from tuiaudit.storage.base import (
    TELEMETRY_SOURCE_PREFIX,
    AuditFilter,
    AuditRow,
    Cursor,
    QueryCut,
)
from tuiaudit.tui import filters
from tuiaudit.tui.keys import AUDIT, bindings
from tuiaudit.tui.messages import CountLoaded, RowsLoaded, ShowShared, TailLoaded
from tuiaudit.tui.widgets.audit_search import (
    SEARCH_COUNT_LIMIT,
    LoadCut,
    Search,
    SearchCounted,
    SearchEnded,
    SearchInSteps,
    SearchStepped,
    current,
    run_search,
    tail_rows,
)
from tuiaudit.tui.widgets.audit_table import AuditTable

if TYPE_CHECKING:
    from tuiaudit.tui.app import AuditApp

PAGE = 100
COUNT_LIMIT = 500
TAIL_MAX = 1000
LOAD_MORE_MARGIN = 20  # rows from the end at which the next page is fetched


def count_limit(flt: AuditFilter) -> int:
    """Where the count line stops counting: a text search's index count goes further."""
    return SEARCH_COUNT_LIMIT if flt.text else COUNT_LIMIT


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
        self.load_error: str | None = None  # the last load was cut (QueryCut)

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
        yield AuditTable(id="audit-table", near_end=self.load_more)

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

    def action_retype_filter(self) -> None:
        """ctrl+u on the table: clear the filter and put the cursor in it, as ctrl+u in
        the filter box does, so what is typed next is the new filter, not dashboard keys."""
        field = self.query_one("#filter-input", Input)
        field.value = ""  # Input.Changed: the cleared filter applies after the debounce
        field.focus()

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
        self.load_error = None
        self.exhausted = False
        self.workers.cancel_group(self, "audit-more")
        self.search = None
        self.run_worker(
            self._load_first(self.generation, self.flt),
            group="audit-load",
            exclusive=True,
            exit_on_error=False,
        )

    async def _load_first(self, generation: int, flt: AuditFilter) -> None:
        store = self.dashboard.reader
        try:
            if flt.text and not await store.search_ready(flt.text):
                self.post_message(SearchInSteps(generation))
                return
            rows = await store.fetch_rows(flt, limit=PAGE)
            await self._post_first_page(generation, flt, rows)
        except QueryCut as exc:
            # The reader's statement limit (PostgreSQL) cut it: say so, keep running.
            self.post_message(LoadCut(generation, str(exc)))

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
            count = await self.dashboard.reader.count_rows(flt, limit=count_limit(flt))
            self.post_message(CountLoaded(generation, count))

    # ---------------------------------------------------------- text search
    def on_search_in_steps(self, message: SearchInSteps) -> None:
        """The store cannot answer this text from its index: search in bounded steps."""
        if message.generation != self.generation:
            return
        self.search = Search(self.generation)
        self.count = None
        self._start_search(self.search)

    def _start_search(self, search: Search) -> None:
        """Search on from ``search.cursor`` for one more page of matches (and one over)."""
        run = search.begin_run(self.table)
        self.run_worker(
            self._search(search, run, self.flt),
            group="audit-load",  # exclusive: a new filter cancels this search
            exclusive=True,
            exit_on_error=False,
        )
        self._render_count()

    async def _search(self, search: Search, run: int, flt: AuditFilter) -> None:
        # The reader is read in the worker: a closed store becomes its error, not a crash.
        await run_search(self.dashboard.reader, search, run, flt, self.post_message, page_size=PAGE)

    def on_search_stepped(self, message: SearchStepped) -> None:
        search = current(self.search, message.generation, message.run)
        if search is None:
            return
        search.apply_step(message, self.table)
        self.exhausted = True  # more rows come from the search, not from fetch_rows pages
        self.count = self.table.row_count if search.done else None
        self.loaded_generation = message.generation
        self._render_count()

    def on_search_counted(self, message: SearchCounted) -> None:
        search = current(self.search, message.generation)
        if search is not None:
            search.total = message.total
            self._render_count()

    def on_search_ended(self, message: SearchEnded) -> None:
        search = current(self.search, message.generation, message.run)
        if search is not None:
            search.running = False
            self._render_count()

    async def _search_tail(self, search: Search) -> None:
        if not search.top_known:
            return  # the search has not started: it will read from the newest row
        generation, flt = self.generation, self.flt
        rows = await tail_rows(self.dashboard.reader, search, generation, flt, limit=TAIL_MAX)
        gone = await self._gone_in_view()
        self.post_message(TailLoaded(generation, rows, gone, len(rows) >= TAIL_MAX))

    # ------------------------------------------------- paging and live tail
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

    def on_load_cut(self, message: LoadCut) -> None:
        if message.generation == self.generation:
            self.load_error = message.error
            if self.loaded_generation != message.generation:
                self.table.clear()
                self.table.audit_rows.clear()
                self.count = 0
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
        elif self.count is not None and self.count <= count_limit(self.flt):
            self.count = self.count + added - len(message.gone)
        self._render_count()

    def _render_count(self) -> None:
        line = Text()
        shown = self.table.row_count
        if self.search is not None and self.search.generation == self.generation:
            line.append_text(self.search.status_line(shown))
        elif self.count is None:
            line.append(f"{shown:,} of … rows (counting)" if shown else "loading…", style="bold")
        elif self.count > count_limit(self.flt):
            line.append(f"{shown:,} of >{count_limit(self.flt):,} rows", style="bold")
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
        elif self.load_error:
            line.append(f"  {self.load_error}", style="red")
        elif shown == 0 and (self.count == 0 or (self.search is not None and self.search.done)):
            hint = filters.exact_hint(self.flt)
            if hint:
                line.append(f"  {hint}", style="yellow")
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
