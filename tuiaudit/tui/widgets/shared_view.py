"""What is shared: one row next to its telemetry copy, every change and its rule.

Calls ``tuiaudit.policy.explain`` — the code the ingest path uses to build the
copy — so what is shown here is what is stored for shipping.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from tuiaudit.policy import Change, explain
from tuiaudit.safe_text import escape_controls
from tuiaudit.site_policy import DEFAULT_SITE, SitePolicy
from tuiaudit.storage.base import AuditRow
from tuiaudit.tui.data import is_telemetry
from tuiaudit.tui.render import marked_row, plain

CHANGE_COLUMNS = ("field", "action", "rule", "before", "after")
MAX_VALUE = 400
"""Characters of a before/after value shown (wrapped); the two sides above show it whole."""
FRAME = 2 + 2  # the table's border, and room for its vertical scrollbar


def _cell(value: Any, style: str = "") -> Text:
    """Stored data (never markup), folded onto more lines rather than cut at the edge."""
    text = "—" if value is None else str(value)
    cell = plain(text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…", style=style)
    cell.overflow = "fold"  # a hash or a URL has no space to wrap at
    return cell


def column_widths(available: int, fields: list[str], actions: list[str]) -> list[int]:
    """Widths of ``CHANGE_COLUMNS`` that fit ``available`` cells: field and action as
    wide as their text, the rest shared by rule, before and after, which wrap (DESIGN
    §3: every change is shown with its rule, and "after" is never cut off the edge)."""
    room = max(available - FRAME - 2 * len(CHANGE_COLUMNS), 40)  # cell padding: 1 a side
    field = min(max([5, *map(len, fields)]), max(12, room // 4))
    action = max([6, *map(len, actions)])
    rest = max(room - field - action, 3 * 10)
    rule = rest * 2 // 5
    before = (rest - rule) // 2
    return [field, action, rule, before, rest - rule - before]


class SharedView(Vertical):
    """Full audit row | telemetry copy, and the table of changes.

    ``site``: the site's ``[policy]`` rules, so the explanation is the one the
    ingest path applies on this instance (not only the default policy's).
    """

    def __init__(self, *, site: SitePolicy = DEFAULT_SITE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.row: AuditRow | None = None
        self.site = site

    def compose(self) -> ComposeResult:
        yield Static(
            "Select a row in the Audit log (1) and press w to see what would be shared.",
            id="shared-title",
        )
        with Horizontal(id="shared-sides"):
            with VerticalScroll(id="full-side", classes="side"):
                yield Static("", id="full-row")
            with VerticalScroll(id="shared-side", classes="side"):
                yield Static("", id="shared-row")
        changes: DataTable[Any] = DataTable(id="changes-table", cursor_type="row")
        yield changes

    def on_mount(self) -> None:
        self.query_one("#full-side").border_title = "Full audit row (never sent)"
        self.query_one("#shared-side").border_title = "Telemetry copy (what is shared)"
        table = self.query_one("#changes-table", DataTable)
        table.border_title = "Changes made by the policy"
        self._columns(table, [])

    def _columns(self, table: DataTable[Any], changes: list[Change]) -> None:
        # Hidden on arrival (the tab is shown after this): then the screen's width.
        width = table.size.width or self.size.width or self.app.size.width
        widths = column_widths(width, [c.field for c in changes], [c.action for c in changes])
        for key, column_width in zip(CHANGE_COLUMNS, widths, strict=True):
            table.add_column(key, key=key, width=column_width)

    def on_resize(self) -> None:
        if self.row is not None:
            self.show_row(self.row)  # the columns share the new width

    def show_row(self, row: AuditRow) -> None:
        self.row = row
        title = self.query_one("#shared-title", Static)
        full = self.query_one("#full-row", Static)
        shared = self.query_one("#shared-row", Static)
        table = self.query_one("#changes-table", DataTable)
        table.clear(columns=True)  # a different row: nothing to keep by key
        if is_telemetry(row.source):
            self._columns(table, [])
            title.update(
                Text(
                    f"{escape_controls(row.name)} ({escape_controls(row.source)}) is already a "
                    "telemetry copy: it is shipped "
                    "as shown, then deleted.",
                    style="bold",
                )
            )
            full.update(
                Text(
                    "The full audit row is kept separately (mode B) or not at all (mode C).",
                    style="dim",
                )
            )
            shared.update(marked_row(row, {}, side="shared"))
            return
        explanation = explain(row, site=self.site)
        self._columns(table, explanation.changes)
        marks = {c.field: (c.action, c.rule) for c in explanation.changes}
        if explanation.shared is None:  # withheld: no telemetry copy is made at all
            title.update(
                Text.assemble(
                    (escape_controls(row.name), "bold"),
                    f" ({escape_controls(row.source)} {escape_controls(row.type)}) is not "
                    f"shared: {explanation.withheld or 'withheld by the policy'}",
                )
            )
            full.update(marked_row(row, marks, side="full"))
            shared.update(Text("nothing: this event never leaves the instance", style="dim"))
            return
        removed = sum(1 for c in explanation.changes if c.action == "removed")
        altered = len(explanation.changes) - removed
        title.update(
            Text.assemble(
                (escape_controls(row.name), "bold"),
                f" ({escape_controls(row.source)} {escape_controls(row.type)}) — ",
                (f"{removed} removed", "red"),
                ", ",
                (f"{altered} altered", "yellow"),
                f", {len(explanation.kept)} props/context entries shared as they are",
            )
        )
        full.update(marked_row(row, marks, side="full"))
        shared.update(marked_row(explanation.shared, marks, side="shared"))
        for i, change in enumerate(explanation.changes):
            style = "red" if change.action == "removed" else "yellow"
            table.add_row(
                _cell(change.field, style),
                _cell(change.action, style),
                _cell(change.rule),
                _cell(change.before),
                _cell(change.after),
                key=f"{i}:{change.field}",
                height=None,  # as many lines as the longest wrapped cell
            )
