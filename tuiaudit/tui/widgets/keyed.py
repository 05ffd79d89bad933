"""Update a DataTable by row key: remove gone keys, update changed cells, add new ones.

Never clear-and-refill, so the cursor stays on its row while the data moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from tuiaudit.tui.render import plain


class Ordered(Text):
    """A first-column cell that carries its row's wanted position."""

    order: int


def sync_table(table: DataTable[Any], rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Make ``table`` show ``rows`` (key, cells) in this order."""
    keep = None
    if table.row_count:
        keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    wanted = {key for key, _ in rows}
    for row_key in list(table.rows):
        if row_key.value not in wanted:
            table.remove_row(row_key)
    columns = [c.key for c in table.ordered_columns]
    moved = False
    for position, (key, cells) in enumerate(rows):
        first = cells[0]
        head = first.copy() if isinstance(first, Text) else plain(str(first))
        ordered = Ordered(head.plain, style=head.style, spans=head.spans)
        ordered.order = position
        # A str cell would be parsed as markup by the DataTable: shown as it is.
        values = [ordered, *(plain(c) if isinstance(c, str) else c for c in cells[1:])]
        if key in {k.value for k in table.rows}:
            old = table.get_row(key)
            if old[0].order != position:
                # The order rides on the first cell: renew it even when its text is
                # unchanged, or the sort below puts the row back where it was.
                table.update_cell(key, columns[0], ordered)
                moved = True
            for column, value, before in zip(columns, values, old, strict=False):
                if str(value) != str(before) or getattr(value, "style", None) != getattr(
                    before, "style", None
                ):
                    table.update_cell(key, column, value)
        else:
            table.add_row(*values, key=key)
            moved = True
    if moved and table.row_count:
        table.sort(columns[0], key=lambda cell: cell.order)
        if keep is not None and keep in wanted:
            table.move_cursor(row=table.get_row_index(keep), animate=False, scroll=False)
