"""``?``: every key binding, from the one table in ``tuiaudit.tui.keys``."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tuiaudit.tui.filters import FIELDS_HELP
from tuiaudit.tui.keys import ACTIONS, KEYS, NEXT_BATCH, SCOPES, WEBHOOKS


def help_table(read_only: bool) -> Table:
    table = Table(box=None, expand=True, show_header=False, padding=(0, 2))
    table.add_column("key", style="bold cyan", no_wrap=True, width=10)
    table.add_column("does")
    if read_only:  # first: a person looking for an action learns at once why it is not here
        table.add_row("", Text("Actions are hidden: the dashboard runs --read-only.", style="dim"))
    for scope in SCOPES:
        if scope in (NEXT_BATCH, WEBHOOKS, ACTIONS) and read_only:
            continue  # approve/reject, webhook changes, actions: off
        table.add_row("", Text(f"\n{scope}", style="bold underline"))
        for key in KEYS:
            if key.scope == scope:
                table.add_row(key.display, key.description)
    table.add_row("", Text(f"\nFilter syntax: {FIELDS_HELP}", style="dim"))
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close", key_display="escape"),
    ]

    def __init__(self, *, read_only: bool = False) -> None:
        super().__init__()
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="modal-box"):
            with VerticalScroll():
                yield Static(help_table(self.read_only), id="help-body")

    def on_mount(self) -> None:
        box = self.query_one("#help-box")
        box.border_title = "tuiaudit dashboard — keys"
        box.border_subtitle = "escape to close · mouse works too"

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss()
