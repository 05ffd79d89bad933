"""The Webhooks tab's "add" form: URL, events, retries and an optional signing secret.

It checks with the same code as ``tuiaudit webhooks add``
(``tuiaudit.webhook_admin``) and says what is wrong under the form instead
of closing; it dismisses with the values only when they would be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tuiaudit.webhook_admin import check_url, event_names


@dataclass(frozen=True, slots=True)
class NewWebhook:
    url: str
    events: list[str]
    retries: int
    secret: str | None


def read_form(url: str, events: str, retries: str, secret: str) -> NewWebhook | str:
    """The form's values, or the one line that says what to fix."""
    url = url.strip()
    problem = check_url(url)
    if problem:
        return problem
    try:
        count = int(retries.strip() or "0")
    except ValueError:
        return f"retries must be a whole number, got {retries!r}"
    if count < 0:
        return "retries must be 0 or more"
    return NewWebhook(url, event_names([events]), count, secret or None)


class AddWebhookScreen(ModalScreen[NewWebhook | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    AddWebhookScreen #webhook-form {
        width: 84;
        height: auto;
    }
    AddWebhookScreen Input {
        margin-bottom: 1;
    }
    AddWebhookScreen #webhook-form-error {
        color: $error;
        height: auto;
    }
    AddWebhookScreen #webhook-form-buttons {
        height: auto;
        align: right middle;
    }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="webhook-form", classes="modal-box"):
            yield Label("URL that receives the POSTs (http:// or https://)")
            yield Input(placeholder="https://hooks.example.com/audit", id="webhook-url")
            yield Label("Only these event names (comma-separated; empty: every webhook event)")
            yield Input(placeholder="login-with-password, team-created", id="webhook-events")
            yield Label("Retries of a failed delivery (exponential back-off)")
            yield Input("0", type="integer", id="webhook-retries")
            yield Label("Signing secret (HMAC-SHA256; empty: unsigned)")
            yield Input(password=True, id="webhook-secret")
            yield Static("", id="webhook-form-error")
            with Horizontal(id="webhook-form-buttons"):
                yield Button("Add webhook", id="webhook-add", variant="primary")
                yield Button("Cancel", id="webhook-cancel")

    def on_mount(self) -> None:
        self.query_one("#webhook-form").border_title = "Add a webhook"
        self.query_one("#webhook-url", Input).focus()

    @on(Button.Pressed, "#webhook-add")
    @on(Input.Submitted)
    def action_add(self) -> None:
        values = read_form(
            self.query_one("#webhook-url", Input).value,
            self.query_one("#webhook-events", Input).value,
            self.query_one("#webhook-retries", Input).value,
            self.query_one("#webhook-secret", Input).value,
        )
        if isinstance(values, str):
            # What the person typed is data: shown as text, never markup.
            self.query_one("#webhook-form-error", Static).update(Text(values))
            return
        self.dismiss(values)

    @on(Button.Pressed, "#webhook-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
