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

from tuiaudit.policy import explain
from tuiaudit.safe_text import escape_controls
from tuiaudit.storage.base import AuditRow
from tuiaudit.tui.data import is_telemetry
from tuiaudit.tui.render import marked_row, plain


def _short(value: Any) -> Text:
    text = "—" if value is None else str(value)
    return plain(text if len(text) <= 40 else text[:39] + "…")  # stored data: never markup


class SharedView(Vertical):
    """Full audit row | telemetry copy, and the table of changes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.row: AuditRow | None = None

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
        for key in ("field", "action", "rule", "before", "after"):
            table.add_column(key, key=key)

    def show_row(self, row: AuditRow) -> None:
        self.row = row
        title = self.query_one("#shared-title", Static)
        full = self.query_one("#full-row", Static)
        shared = self.query_one("#shared-row", Static)
        table = self.query_one("#changes-table", DataTable)
        table.clear()  # a different row: nothing to keep by key
        if is_telemetry(row.source):
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
        explanation = explain(row)
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
                Text(change.field, style=style),
                Text(change.action, style=style),
                change.rule,
                _short(change.before),
                _short(change.after),
                key=f"{i}:{change.field}",
            )
