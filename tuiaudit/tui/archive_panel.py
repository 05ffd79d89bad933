"""The dashboard's archive panel: the audit archive's queue, deletions and attempts (DESIGN §9).

Self-contained (widget, CSS, data loading) like ``WebhooksPanel``: the
dashboard mounts ``ArchivePanel(store)`` in its Archive tab and calls
``await panel.refresh_data()`` on its refresh tick. The attempts table is
updated by row key, so the cursor stays put. What it shows comes from
``tuiaudit.archive_status``, the same function ``tuiaudit status`` prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from tuiaudit.archive_status import archive_status, describe_deleted, describe_queue
from tuiaudit.effective import live_daemon
from tuiaudit.storage.base import Store
from tuiaudit.timeutil import utcnow
from tuiaudit.tui.webhooks_panel import sync_table

ATTEMPT_COLUMNS = (
    ("id", "#"),
    ("when", "Started (UTC)"),
    ("status", "Status"),
    ("http", "HTTP"),
    ("rows", "Rows"),
    ("bytes", "Bytes"),
    ("latency", "Latency"),
    ("error", "Error"),
)
_STATUS_STYLE = {"ok": "green", "failed": "bold red"}


def attempt_cells(a: dict[str, Any]) -> tuple[Any, ...]:
    failed = a["status"] != "ok"
    error = a["error"] or ""
    if a["error-class"]:
        error = f"[{a['error-class']}] {error}"
    latency = a["latency-ms"]
    return (
        a["id"],
        Text(str(a["started-at"])[:19].replace("T", " ")),
        Text(a["status"], style=_STATUS_STYLE.get(a["status"], "")),
        Text("-" if a["http-status"] is None else str(a["http-status"])),
        a["events"],
        a["bytes"],
        Text("-" if latency is None else f"{latency:.0f} ms", justify="right"),
        Text(error, style="red" if failed else ""),
    )


def summary_text(data: dict[str, Any]) -> Text:
    text = Text()
    text.append("Archive  ", style="bold")
    if data["archiving"]:
        text.append(str(data["uri"] or "(no archive uri)"))
        text.append(f"  ({data['format']})", style="dim")
    else:
        text.append(
            "not archiving: run the daemon with --flags …,audit-log-archive and --archive-uri",
            style="yellow",
        )
    if data["next-run-at"]:
        text.append(f"   next run {str(data['next-run-at'])[:19].replace('T', ' ')}")
    if data["retry-at"]:
        text.append(
            f"   retry {str(data['retry-at'])[:19].replace('T', ' ')} "
            f"after {data['failures']} failure(s)",
            style="yellow",
        )
    text.append("\nQueue    ", style="bold")
    text.append(describe_queue(data))
    text.append("\nDeleted  ", style="bold")
    text.append(describe_deleted(data))
    if data["held"]:
        text.append("\nHeld     ", style="bold yellow")
        text.append(str(data["held"]), style="yellow")
    last = data["last-run"] or {}
    if last.get("error"):
        text.append("\nLast error ", style="bold red")
        text.append(str(last["error"])[:200], style="red")
    return text


class ArchivePanel(Vertical):
    """The archive's state (top) and its recent attempts, newest first (bottom)."""

    DEFAULT_CSS = """
    ArchivePanel {
        height: 1fr;
    }
    ArchivePanel #archive-summary {
        height: auto;
        padding: 0 1;
    }
    ArchivePanel #archive-attempts {
        height: 1fr;
    }
    """

    attempts_limit: reactive[int] = reactive(100)
    """How many recent archive attempts the table shows."""

    def __init__(
        self,
        store: Store,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.store = store
        self.data: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static("Reading the store…", id="archive-summary")
        attempts: DataTable[Any] = DataTable(
            id="archive-attempts", cursor_type="row", zebra_stripes=True
        )
        attempts.border_title = "Archive attempts (newest first)"
        for key, label in ATTEMPT_COLUMNS:
            attempts.add_column(label, key=key)
        yield attempts

    async def refresh_data(self, now: datetime | None = None) -> None:
        """Read the archive's state and recent attempts; update the summary and the table."""
        daemon = live_daemon(await self.store.daemon_states(), now or utcnow())
        data = await archive_status(self.store, daemon, attempts=self.attempts_limit)
        self.data = data
        self.query_one("#archive-summary", Static).update(summary_text(data))
        rows = [(str(a["id"]), attempt_cells(a)) for a in data["attempts"]]
        sync_table(self.query_one("#archive-attempts", DataTable), rows, newest_first=True)
