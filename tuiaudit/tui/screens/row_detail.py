"""Every field of one audit row; props and context as pretty JSON."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from tuiaudit.safe_text import escape_controls
from tuiaudit.storage.base import AuditRow
from tuiaudit.tui.keys import DETAIL, bindings
from tuiaudit.tui.messages import ShowShared
from tuiaudit.tui.render import plain, pretty_json, row_as_dict


def detail_text(row: AuditRow) -> Text:
    data = row_as_dict(row)
    text = Text()
    width = max(len(k) for k in data)
    for key, value in data.items():
        if key in ("props", "context"):
            continue
        text.append(f"{key:<{width}}  ", style="bold")
        text.append(f"{'—' if value is None else escape_controls(value)}\n")
    for key in ("props", "context"):
        text.append(f"\n{key}\n", style="bold underline")
        text.append(pretty_json(data[key]) + "\n")
    return text


class RowDetailScreen(ModalScreen[None]):
    BINDINGS = bindings(DETAIL)

    def __init__(self, row: AuditRow, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.row = row

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box", classes="modal-box"):
            with VerticalScroll(id="detail-scroll"):
                yield Static(detail_text(self.row), id="detail-body")
            yield Footer()

    def on_mount(self) -> None:
        box = self.query_one("#detail-box")
        # A str title is markup: the row's own text goes in as Text (DESIGN §8.2).
        box.border_title = plain(f"{self.row.name} — {self.row.source}")
        box.border_subtitle = "escape: close · w: what is shared"

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss()

    def action_what_is_shared(self) -> None:
        self.dismiss()
        self.app.post_message(ShowShared(self.row))
