"""The audit table: rows in keyset order (``created_at DESC, id DESC``), added by row key.

Rows are only ever added (``upsert``) or removed by key (``drop``), never cleared
and refilled on a refresh, so the cursor stays on the row it was on. The table
knows nothing about where rows come from: scrolling near its end calls the
``near_end`` callback its pane gave it (the pane reads the next page).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from tuiaudit.storage.base import TELEMETRY_SOURCE_PREFIX, AuditRow, Cursor
from tuiaudit.tui.render import fmt_time, plain

COLUMNS = (
    ("time", "time (UTC)"),
    ("source", "source"),
    ("type", "type"),
    ("name", "name"),
    ("profile", "profile"),
    ("ip", "IP"),
)


class TimeCell(Text):
    """The time cell also carries the row's keyset position, to sort by it."""

    sort_key: Cursor


def cursor_of(row: AuditRow) -> Cursor:
    return (row.created_at, row.id)


# Colour by origin and kind, so a screen of rows reads at a glance.
SOURCE_STYLES = {"backend": "cyan", "frontend": "green"}
TYPE_STYLES = {"action": "", "identify": "yellow", "trigger": "blue"}


def source_cell(row: AuditRow) -> Text:
    """The source, and "archived" on rows the audit archive has taken (DESIGN §9)."""
    telemetry = row.source.startswith(TELEMETRY_SOURCE_PREFIX)
    style = "magenta" if telemetry else SOURCE_STYLES.get(row.source, "")
    cell = plain(row.source, style=style)
    if row.archived_at is not None:
        cell.append(" archived", style="dim green")
    return cell


class AuditTable(DataTable[Any]):
    """A DataTable kept in ``created_at DESC, id DESC`` order, updated by row key."""

    def __init__(self, *, near_end: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.audit_rows: dict[str, AuditRow] = {}
        self.near_end = near_end  # called when the scroll reaches the last rows

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
        """Add the rows not shown yet, in order, keeping the cursor on its row; rows
        shown already get their source cell updated when they were archived since."""
        for r in rows:
            shown = self.audit_rows.get(str(r.id))
            if shown is not None and shown.archived_at != r.archived_at:
                self.audit_rows[str(r.id)] = r
                self.update_cell(str(r.id), "source", source_cell(r))
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
            self.add_row(
                time_cell,
                source_cell(row),
                plain(row.type, style=TYPE_STYLES.get(row.type, "dim")),  # never markup
                plain(row.name),
                str(row.profile_id),
                plain(row.ip_addr),
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
        if self.max_scroll_y and new >= self.max_scroll_y - 2 and self.near_end is not None:
            self.near_end()
