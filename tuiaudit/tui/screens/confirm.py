"""A yes/no modal for actions that delete or change what is shared."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only when the confirm button is pressed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm", show=False),
    ]

    def __init__(
        self,
        title: str,
        body: str | Text,
        confirm_label: str,
        *,
        danger: bool = True,
        focus_confirm: bool = False,
    ) -> None:
        super().__init__()
        self.focus_confirm = focus_confirm
        """Start on the confirm button (a safe, expected step); else on Cancel."""
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="modal-box"):
            with VerticalScroll(id="confirm-scroll"):
                yield Static(
                    self.body if isinstance(self.body, Text) else Text(self.body), id="confirm-body"
                )
            with Horizontal(id="confirm-buttons"):
                yield Button(
                    self.confirm_label, id="confirm", variant="error" if self.danger else "primary"
                )
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#confirm-box").border_title = self.title_text
        self.query_one("#confirm" if self.focus_confirm else "#cancel", Button).focus()

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
