"""Shipping, live: daemon, consent, queue against the cap, sparklines, the sent ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, ProgressBar, Sparkline, Static

from tuiaudit.liveness import ALIVE, STALE
from tuiaudit.safe_text import escape_controls, safe_url
from tuiaudit.storage.base import LedgerEntry
from tuiaudit.timeutil import parse_timestamp
from tuiaudit.tui.data import ShippingSnapshot, daemon_health, info_get
from tuiaudit.tui.keys import LEDGER, bindings
from tuiaudit.tui.render import fmt_age, fmt_bytes, fmt_time, plain
from tuiaudit.tui.screens.attempt import AttemptScreen, copy_sha
from tuiaudit.tui.widgets.keyed import sync_table

LEDGER_COLUMNS = (
    "started",
    "kind",
    "status",
    "HTTP",
    "rows",
    "raw",
    "encoded",
    "latency",
    "error",
    "SHA-256",
)
QUARANTINE_COLUMNS = ("quarantined", "name", "source", "reason")
STATUS_STYLE = {"ok": "green", "failed": "bold red", "interrupted": "yellow", "running": "cyan"}


def ledger_cells(entry: LedgerEntry) -> list[Any]:
    style = STATUS_STYLE.get(entry.status, "")
    failed = entry.status in ("failed", "interrupted")
    error = entry.error or ""
    if entry.error_class:
        error = f"[{entry.error_class}] {error}"
    return [
        Text(fmt_time(entry.started_at)[5:], style="red" if failed else ""),
        entry.kind,
        Text(entry.status, style=style),
        Text(
            "—" if entry.http_status is None else str(entry.http_status),
            style="red" if failed else "",
        ),
        f"{entry.events:,}",
        fmt_bytes(entry.raw_bytes),
        fmt_bytes(entry.encoded_bytes),
        "—" if entry.latency_ms is None else f"{entry.latency_ms:.0f} ms",
        plain(error[:80] + ("…" if len(error) > 80 else ""), style="red" if failed else ""),
        entry.body_sha256,  # in full: checkable against the receiver's copy (DESIGN §5.2)
    ]


def oldest_pending(oldest: datetime | None, now: datetime) -> str:
    """The oldest queued row's age, or its day: a telemetry copy keeps only its UTC day
    (DESIGN §3), so an age from midnight would claim hours for a row minutes old."""
    if oldest is None:
        return "—"
    if (oldest.hour, oldest.minute, oldest.second, oldest.microsecond) == (0, 0, 0, 0):
        return f"since {oldest:%Y-%m-%d}"
    return fmt_age(now - oldest)


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def health_at(snap: ShippingSnapshot, now: datetime) -> str:
    """The daemon's state against ``now`` (a heartbeat ages between reads)."""
    daemon = snap.health.daemon
    return daemon_health([daemon] if daemon else [], now).state


def status_text(snap: ShippingSnapshot, now: datetime) -> Text:
    """Daemon, flags, consent, URI, next run — recomputed against ``now`` every tick."""
    health = snap.health
    daemon = health.daemon
    text = Text()
    text.append("Daemon  ", style="bold")
    if daemon is None:
        text.append("● stopped (never ran on this store)", style="bold red")
    else:
        age = now - daemon.heartbeat_at
        state = health_at(snap, now)
        style = {ALIVE: "bold green", STALE: "bold yellow"}.get(state, "bold red")
        text.append(f"● {state}", style=style)
        text.append(
            f"  pid {daemon.pid} on {daemon.host}, listening {daemon.listen}, "
            f"heartbeat {fmt_age(age)} ago"
        )
    text.append("\nFlags   ", style="bold")
    text.append(", ".join(daemon.flags) if daemon and daemon.flags else "—")
    text.append("   Shipping ", style="bold")
    if snap.hold is not None:  # `tuiaudit status`'s words for the same hold (tuiaudit.holds)
        style = "green" if snap.hold.reason is None else "bold yellow"
        text.append(snap.hold.text, style=style)
    elif daemon is not None:
        text.append("paused (h resumes)" if daemon.paused else "running")
    info = daemon.info if daemon else {}
    text.append("\nConsent ", style="bold")
    consent = snap.consent
    if consent is None:
        text.append("unknown")
    elif consent.ok:
        text.append(f"policy v{consent.current_version} accepted", style="green")
    elif consent.accepted_version is None:
        text.append(
            f"policy v{consent.current_version} not accepted: shipping holds (a)",
            style="bold yellow",
        )
    else:
        text.append(
            f"v{consent.accepted_version} accepted, current is "
            f"v{consent.current_version}: shipping holds (a)",
            style="bold yellow",
        )
    if snap.approval is not None:  # approval mode (DESIGN §10): data, never markup
        text.append("\nApproval ", style="bold")
        text.append(snap.approval, style="bold yellow" if "waiting" in snap.approval else "")
    text.append("\nSink    ", style="bold")
    uri = info_get(info, "telemetry-uri")
    text.append(
        safe_url(str(uri)) if uri else "no telemetry URI: nothing is sent",
        style="" if uri else "yellow",
    )
    text.append("\nNext run ", style="bold")
    next_run = daemon.next_run_at if daemon else None
    if health_at(snap, now) != ALIVE:
        text.append("— (daemon not running)", style="dim")
    elif next_run is None:
        text.append("not scheduled")
    else:
        due = next_run - now
        text.append("due now" if due.total_seconds() <= 0 else f"in {fmt_age(due)}")
    retry_at = _when(info_get(info, "retry-at"))
    if retry_at is not None and retry_at > now:
        text.append(f"  (retry back-off until {fmt_time(retry_at)})", style="yellow")
    for key, label in (("config-error", "Config error"), ("last-error", "Last error")):
        value = info_get(info, key)
        if value:
            text.append(f"\n{label}: ", style="bold red")
            text.append(escape_controls(str(value)[:200]), style="red")
    return text


class ShippingView(Vertical):
    # On the sent ledger: enter shows an attempt whole, c copies its SHA-256.
    BINDINGS: ClassVar[list[BindingType]] = bindings(LEDGER, actions=("open_attempt", "copy_sha"))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot: ShippingSnapshot | None = None

    def selected_attempt(self) -> LedgerEntry | None:
        """The ledger row under the cursor, or None."""
        table = self.query_one("#ledger-table", DataTable)
        if self.snapshot is None or not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((e for e in self.snapshot.ledger if str(e.id) == key), None)

    def action_open_attempt(self) -> None:
        entry = self.selected_attempt()
        if entry is not None:
            self.app.push_screen(AttemptScreen(entry))

    def action_copy_sha(self) -> None:
        entry = self.selected_attempt()
        if entry is not None:
            copy_sha(self.app, entry)

    @on(DataTable.RowSelected, "#ledger-table")
    def _attempt_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_attempt()

    def compose(self) -> ComposeResult:
        with Horizontal(id="ship-top"):
            yield Static("Reading the store…", id="ship-status")
            with Vertical(id="ship-queue"):
                yield Static("", id="queue-line")
                yield ProgressBar(total=100_000, show_eta=False, id="queue-bar")
                yield Static("", id="queue-details")
        with Horizontal(id="ship-sparks"):
            with Vertical(classes="spark-box"):
                yield Static("rows stored / min (last 60 min)", id="ingest-label")
                yield Sparkline([0], summary_function=max, id="ingest-spark")
            with Vertical(classes="spark-box"):
                yield Static("rows shipped / min (last 60 min)", id="shipped-label")
                yield Sparkline([0], summary_function=max, id="shipped-spark")
        ledger: DataTable[Any] = DataTable(id="ledger-table", cursor_type="row")
        yield ledger
        quarantine: DataTable[Any] = DataTable(id="quarantine-table", cursor_type="row")
        yield quarantine

    def on_mount(self) -> None:
        ledger = self.query_one("#ledger-table", DataTable)
        ledger.border_title = "Sent ledger (newest first)"
        ledger.border_subtitle = "enter: attempt detail · c: copy SHA-256"
        ledger.add_columns(*LEDGER_COLUMNS)
        quarantine = self.query_one("#quarantine-table", DataTable)
        quarantine.border_title = "Quarantine (never sent unless released: e, purge: x)"
        quarantine.add_columns(*QUARANTINE_COLUMNS)

    def show(self, snap: ShippingSnapshot, now: datetime) -> None:
        self.snapshot = snap
        self.tick(now)
        queue = snap.queue
        bar = self.query_one("#queue-bar", ProgressBar)
        bar.update(total=max(1, snap.max_rows), progress=min(queue.pending, snap.max_rows))
        line = Text()
        line.append(f"{queue.pending:,}", style="bold")
        line.append(f" pending telemetry rows of the {snap.max_rows:,} cap")
        self.query_one("#queue-line", Static).update(line)
        ingest = self.query_one("#ingest-spark", Sparkline)
        ingest.data = snap.ingested_per_minute
        shipped = self.query_one("#shipped-spark", Sparkline)
        shipped.data = snap.shipped_per_minute
        self.query_one("#ingest-label", Static).update(
            f"rows stored / min (last 60 min)  now {snap.ingested_per_minute[-1]:,}  "
            f"peak {max(snap.ingested_per_minute):,}"
        )
        self.query_one("#shipped-label", Static).update(
            f"rows shipped / min (last 60 min)  now {snap.shipped_per_minute[-1]:,}  "
            f"peak {max(snap.shipped_per_minute):,}"
        )
        sync_table(
            self.query_one("#ledger-table", DataTable),
            [(str(e.id), ledger_cells(e)) for e in snap.ledger],
        )
        sync_table(
            self.query_one("#quarantine-table", DataTable),
            [
                (str(q.row.id), [fmt_time(q.quarantined_at), q.row.name, q.row.source, q.reason])
                for q in snap.quarantine
            ],
        )

    def tick(self, now: datetime) -> None:
        """Re-render what depends on the clock (ages, countdown) from the last snapshot."""
        snap = self.snapshot
        if snap is None:
            return
        self.query_one("#ship-status", Static).update(status_text(snap, now))
        queue = snap.queue
        details = Text()
        details.append("oldest pending ")
        details.append(oldest_pending(queue.oldest_created_at, now), style="bold")
        details.append(f"   quarantined {queue.quarantined:,}\n")
        details.append("dropped: ")
        details.append(
            "  ".join(f"{reason} {count:,}" for reason, count in snap.drops.items()),
            style="yellow" if any(snap.drops.values()) else "",
        )
        if snap.forecast:
            details.append("\nforecast: ", style="bold")
            details.append(snap.forecast)
        for problem in snap.errors:
            details.append(f"\n{escape_controls(problem)}", style="dim")
        self.query_one("#queue-details", Static).update(details)
