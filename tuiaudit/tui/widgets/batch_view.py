"""The next batch and the instance report exactly as the sender would post them.

``tuiaudit.batch.next_batch`` and ``tuiaudit.report.next_report`` are the
functions the shipper calls; the SHA-256s here are the ones the sent ledger
records when those bodies leave (DESIGN §5, §5.2).

In approval mode (DESIGN §10) the tab also lists the approval queue: every
body waiting with its SHA-256, size, event count, days and wait. ``a``
approves the selected body after showing its decoded events and what the
policy changes, ``r`` rejects it (tab-local keys: elsewhere ``a`` accepts the
policy and ``r`` refreshes). The widget only posts :class:`BatchView.Decide`;
the App shows the confirmation and queues the daemon's command.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from tuiaudit.approval import KIND_EVENTS, fmt_age, waiting
from tuiaudit.report import Report
from tuiaudit.storage.base import PendingBody
from tuiaudit.tui.data import BatchPreview
from tuiaudit.tui.keys import NEXT_BATCH, bindings
from tuiaudit.tui.render import fmt_bytes
from tuiaudit.tui.widgets.keyed import sync_table

SHOWN_EVENTS = 25  # decoded events rendered; the rest are counted


def plain(value: Any) -> Any:
    """Decoded Clojure data as plain JSON (keywords as ``:name``, UUIDs as text)."""
    if isinstance(value, dict):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if type(value).__name__ == "Keyword":
        return f":{value}"
    return value


def _key(k: Any) -> str:
    return str(k) if type(k).__name__ == "Keyword" else json.dumps(plain(k))


def queue_cells(body: PendingBody, now: datetime) -> list[Any]:
    state = Text("approved", style="green") if body.approved_at else Text("waiting", "yellow")
    what = f"{body.events:,} events" if body.kind == KIND_EVENTS else "instance report"
    same = body.first_day == body.last_day
    days = body.first_day if same else f"{body.first_day}…{body.last_day}"
    waited = fmt_age(now - body.queued_at)
    return [state, body.sha256, what, fmt_bytes(body.bytes), days or "—", waited]


class BatchView(Vertical):
    """The next body and, in approval mode, the queue of bodies waiting for a person.

    ``BatchView(read_only=False)``: with ``read_only`` the approve and reject keys
    are hidden (they queue commands for the daemon).
    """

    DEFAULT_CSS = """
    BatchView #approval-queue {
        height: auto;
        max-height: 10;
        border: round $warning;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = bindings(NEXT_BATCH)

    @dataclass
    class Decide(Message):
        """A person chose to approve (``approve``) or reject the queued ``body``."""

        body: PendingBody
        approve: bool
        instance_id: uuid.UUID | None

    def __init__(self, *, read_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.read_only = read_only
        """No approve/reject keys: the dashboard was opened with --read-only."""
        self.queue: dict[str, PendingBody] = {}
        """The approval queue as last shown, by SHA-256."""
        self.instance_id: uuid.UUID | None = None

    def compose(self) -> ComposeResult:
        table: DataTable[Any] = DataTable(id="approval-queue", cursor_type="row")
        table.add_columns("state", "SHA-256", "holds", "size", "days", "waited")
        table.display = False
        yield table
        yield Static("Reading the telemetry queue…", id="batch-summary")
        yield Static("", id="batch-report")
        with VerticalScroll(id="batch-events-scroll"):
            yield Static("", id="batch-events")

    def on_mount(self) -> None:
        self.query_one("#batch-events-scroll").border_title = "Decoded events of the next batch"
        self.query_one(
            "#batch-report"
        ).border_title = "Instance report, posted before the batches (its fields: tuiaudit consent)"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("approve_body", "reject_body"):
            return not self.read_only and bool(self.queue)
        return True

    def selected(self) -> PendingBody | None:
        table = self.query_one("#approval-queue", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.queue.get(str(key))

    def action_approve_body(self) -> None:
        body = self.selected()
        if body is not None:
            self.post_message(self.Decide(body, True, self.instance_id))

    def action_reject_body(self) -> None:
        body = self.selected()
        if body is not None:
            self.post_message(self.Decide(body, False, self.instance_id))

    def show_queue(self, bodies: list[PendingBody], manual: bool, now: datetime) -> None:
        table = self.query_one("#approval-queue", DataTable)
        self.queue = {b.sha256: b for b in bodies}
        shown_before = table.display
        table.display = manual or bool(bodies)
        if table.display and not shown_before:
            table.focus()  # its keys (a, r) work at once
        table.border_title = waiting(bodies).text(now) + (
            "" if self.read_only else "   a approve (shows it first) · r reject"
        )
        sync_table(table, [(b.sha256, queue_cells(b, now)) for b in bodies])
        self.refresh_bindings()

    def show_preview(self, preview: BatchPreview) -> None:
        self.instance_id = preview.instance_id
        self.show_queue(preview.queue, preview.manual, preview.taken_at)
        summary = self.query_one("#batch-summary", Static)
        events = self.query_one("#batch-events", Static)
        batch = preview.batch
        report = self.query_one("#batch-report", Static)
        report.update(report_text(preview.report))
        report.display = preview.report is not None
        if batch is None:
            summary.update(
                Text.assemble(
                    ("No batch to preview. ", "bold"),
                    preview.note or "",
                    f"\nPending telemetry rows: {preview.pending:,}",
                )
            )
            events.update("")
            return
        text = Text()
        text.append(
            "Next POST body, built by the sender's own function (tuiaudit.batch.next_batch)\n",
            style="bold",
        )
        text.append(f"events {batch.count:,}", style="bold cyan")
        text.append(f" of {preview.pending:,} pending   ")
        text.append(f"raw (Fressian) {fmt_bytes(batch.raw_bytes)}   ")
        text.append(f"encoded body {fmt_bytes(batch.encoded_bytes)}\n")
        text.append("SHA-256 of the body: ")
        text.append(batch.sha256, style="bold green")
        text.append(f"\nIdempotency-Key: {batch.batch_key}   instance-id: {preview.instance_id}")
        if getattr(batch, "oversize", False):
            text.append(
                "\nThis single row alone passes the size cap: it will be quarantined.", style="red"
            )
        summary.update(text)
        shown = [plain(e) for e in batch.events[:SHOWN_EVENTS]]
        body = json.dumps(shown, indent=2, ensure_ascii=False)
        more = batch.count - len(shown)
        if more > 0:
            body += f"\n… and {more:,} more events in this batch"
        events.update(Text(body))


def report_text(report: Report | None) -> Text:
    """The instance report: its exact body (data, never markup) and SHA-256."""
    text = Text()
    if report is None:
        return text
    text.append("SHA-256 of the report body: ")
    text.append(report.sha256, style="bold green")
    text.append(f"   {fmt_bytes(len(report.body))}")
    if report.pinned_at is not None:
        text.append(
            f"\npinned at {report.pinned_at.isoformat(timespec='seconds')}: "
            "the next run today sends exactly this body"
        )
    text.append("\n")
    text.append(report.body.decode())
    return text


def decision_prompt(
    body: PendingBody, events: list[Any] | None, policy_words: str, *, approve: bool
) -> tuple[str, Text, str]:
    """(title, body, confirm label) of the approve/reject confirmation.

    ``events``: an events body's decoded events, rebuilt and verified (the caller says
    so instead when it cannot be rebuilt with its SHA-256: it would not be sent).
    Event data is shown as data, never markup.
    """
    text = Text()
    text.append("SHA-256 ")
    text.append(body.sha256, style="bold green")
    what = f"{body.events:,} events" if body.kind == KIND_EVENTS else "the instance report"
    text.append(f"\n{what}, {fmt_bytes(body.bytes)}, days {body.first_day} to {body.last_day}\n")
    if not approve:
        title = "Reject this body"
        if body.kind == KIND_EVENTS:
            text.append(
                f"\nIts {body.events:,} rows go to quarantine (reason rejected-by-user, "
                "counted as drops) and are never sent unless released."
            )
        else:
            text.append("\nThis report is not sent; the next run builds a new one to approve.")
        return title, text, "Reject"
    if events is not None:
        text.append("\nDecoded events of the body (the exact bytes that leave):\n", style="bold")
        shown = [plain(e) for e in events[:SHOWN_EVENTS]]
        text.append(json.dumps(shown, indent=2, ensure_ascii=False))
        if len(events) > len(shown):
            text.append(f"\n… and {len(events) - len(shown):,} more events")
    elif body.body is not None:
        text.append("\nThe report's exact body:\n", style="bold")
        text.append(body.body.decode())
    text.append("\n\nWhat the policy changed before these events were queued:\n", style="bold")
    text.append(policy_words)
    return "Approve this body", text, "Approve: it may leave"
