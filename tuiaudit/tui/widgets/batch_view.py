"""The next batch and the instance report exactly as the sender would post them.

``tuiaudit.batch.next_batch`` and ``tuiaudit.report.next_report`` are the
functions the shipper calls; the SHA-256s here are the ones the sent ledger
records when those bodies leave (DESIGN §5, §5.2).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from tuiaudit.report import Report
from tuiaudit.tui.data import BatchPreview
from tuiaudit.tui.render import fmt_bytes

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


class BatchView(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("Reading the telemetry queue…", id="batch-summary")
        yield Static("", id="batch-report")
        with VerticalScroll(id="batch-events-scroll"):
            yield Static("", id="batch-events")

    def on_mount(self) -> None:
        self.query_one("#batch-events-scroll").border_title = "Decoded events of the next batch"
        self.query_one(
            "#batch-report"
        ).border_title = "Instance report, posted before the batches (its fields: tuiaudit consent)"

    def show_preview(self, preview: BatchPreview) -> None:
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
