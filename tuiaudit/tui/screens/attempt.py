"""One sent-ledger attempt in full: the SHA-256 to check against the receiver's copy.

The ledger table on the Shipping tab has no room for a 64-character hash
next to the error; here every field is shown whole, and ``c`` copies the
SHA-256 (``App.copy_to_clipboard``: OSC 52, so it works over SSH too) to
compare with ``sha256sum`` of the body the receiver kept (DESIGN §5.2).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from tuiaudit.safe_text import escape_controls
from tuiaudit.storage.base import LedgerEntry
from tuiaudit.tui.keys import LEDGER, bindings
from tuiaudit.tui.render import fmt_bytes, fmt_time


def attempt_fields(entry: LedgerEntry) -> list[tuple[str, str]]:
    """Every field of the attempt as (label, text), in reading order."""
    return [
        ("SHA-256", entry.body_sha256),
        ("idempotency key", entry.batch_key),
        ("kind", entry.kind),
        ("status", entry.status),
        ("attempt", str(entry.attempt)),
        ("started", fmt_time(entry.started_at)),
        ("ended", fmt_time(entry.ended_at)),
        ("HTTP", "—" if entry.http_status is None else str(entry.http_status)),
        ("latency", "—" if entry.latency_ms is None else f"{entry.latency_ms:.0f} ms"),
        ("rows", f"{entry.events:,}"),
        ("Fressian", fmt_bytes(entry.raw_bytes)),
        ("POST body", fmt_bytes(entry.encoded_bytes)),
        ("sink", entry.sink or "—"),
        ("error class", entry.error_class or "—"),
        ("error", entry.error or "—"),
    ]


def attempt_text(entry: LedgerEntry) -> Text:
    fields = attempt_fields(entry)
    width = max(len(label) for label, _ in fields)
    text = Text()
    for label, value in fields:
        text.append(f"{label:<{width}}  ", style="bold")
        # Remote text (an error, a sink) is data: no markup, no escape codes.
        text.append(escape_controls(value) + "\n", style="red" if label == "error" else "")
    return text


def copy_sha(app: Any, entry: LedgerEntry) -> None:
    """Put the attempt's SHA-256 on the clipboard and say so."""
    app.copy_to_clipboard(entry.body_sha256)
    app.notify(f"SHA-256 copied: {entry.body_sha256}", markup=False)


class AttemptScreen(ModalScreen[None]):
    BINDINGS = bindings(LEDGER, actions=("dismiss", "copy_sha"))
    DEFAULT_CSS = """
    AttemptScreen #attempt-box {
        width: 100;
        height: auto;
        max-height: 90%;
    }
    AttemptScreen #attempt-scroll {
        height: auto;
    }
    """

    def __init__(self, entry: LedgerEntry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entry = entry

    def compose(self) -> ComposeResult:
        with Vertical(id="attempt-box", classes="modal-box"):
            with VerticalScroll(id="attempt-scroll"):
                yield Static(attempt_text(self.entry), id="attempt-body")
            yield Footer()

    def on_mount(self) -> None:
        box = self.query_one("#attempt-box")
        box.border_title = f"Attempt {self.entry.id}: {self.entry.kind}, {self.entry.status}"
        box.border_subtitle = "c: copy the SHA-256 · escape: close"

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss()

    def action_copy_sha(self) -> None:
        copy_sha(self.app, self.entry)
