"""The dashboard's webhooks panel: configured webhooks and their recent deliveries.

Self-contained (widget, CSS, data loading) so the dashboard mounts it in a
tab with ``WebhooksPanel(store)`` and calls ``await panel.refresh_data()``
on its refresh tick. Tables are updated by row key (gone rows removed,
changed cells updated, new rows added), so the cursor stays put.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Label

from tuiaudit.safe_text import redact_url
from tuiaudit.storage.base import Store, Webhook, WebhookDelivery
from tuiaudit.tui.render import plain

WEBHOOK_COLUMNS = (
    ("id", "Id"),
    ("state", "State"),
    ("signed", "Signed"),
    ("retries", "Retries"),
    ("events", "Events"),
    ("last", "Last delivery"),
    ("url", "URL"),
)
DELIVERY_COLUMNS = (
    ("id", "Id"),
    ("webhook", "Hook"),
    ("event", "Event"),
    ("status", "Status"),
    ("http", "HTTP"),
    ("latency", "Latency"),
    ("attempts", "Tries"),
    ("when", "When (UTC)"),
    ("error", "Error"),
)
_STATUS_STYLE = {"delivered": "green", "failed": "bold red", "pending": "yellow"}


def _when(value: datetime | None) -> Text:
    if value is None:
        return Text("-", style="dim")
    return Text(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


def webhook_cells(hook: Webhook, last: WebhookDelivery | None) -> tuple[Any, ...]:
    if last is None:
        last_text = Text("never", style="dim")
    else:
        last_text = Text(last.status, style=_STATUS_STYLE.get(last.status, ""))
        last_text.append(" " + _when(last.delivered_at or last.due_at).plain, style="dim")
    return (
        hook.id,
        Text("enabled", style="green") if hook.enabled else Text("disabled", style="dim"),
        Text("yes" if hook.secret else "no"),
        hook.retries,
        plain(", ".join(hook.event_names) or "*"),
        last_text,
        plain(redact_url(hook.url)),  # user info and query values may be credentials
    )


def delivery_cells(d: WebhookDelivery) -> tuple[Any, ...]:
    name = d.event.get("name")
    return (
        d.id,
        d.webhook_id,
        plain(name if isinstance(name, str) else "?"),
        Text(d.status, style=_STATUS_STYLE.get(d.status, "")),
        Text("-" if d.http_status is None else str(d.http_status)),
        Text("-" if d.latency_ms is None else f"{d.latency_ms:.0f} ms", justify="right"),
        d.attempts,
        _when(d.delivered_at or d.due_at),
        plain(d.error or "", style="red"),
    )


def sync_table(
    table: DataTable[Any], rows: Sequence[tuple[str, tuple[Any, ...]]], *, newest_first: bool
) -> None:
    """Make ``table`` show ``rows`` (key, cells), touching only what changed."""
    wanted = dict(rows)
    focused = _cursor_key(table)
    for gone in [k for k in table.rows if k.value not in wanted]:
        table.remove_row(gone)
    column_keys = [c.key for c in table.ordered_columns]
    added = False
    for key, cells in rows:
        if key in table.rows:
            current = table.get_row(key)
            for column, old, new in zip(column_keys, current, cells, strict=True):
                if old != new:
                    table.update_cell(key, column, new)
        else:
            table.add_row(*cells, key=key)
            added = True
    if added:
        table.sort("id", reverse=newest_first)  # ids are integers
    if focused is not None and focused in wanted:
        # Keep the cursor on the same row even when rows above it came or went.
        index = table.get_row_index(focused)
        if index != table.cursor_row:
            table.move_cursor(row=index, animate=False)


def _cursor_key(table: DataTable[Any]) -> str | None:
    if not table.row_count or not table.is_valid_coordinate(table.cursor_coordinate):
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


class WebhooksPanel(Vertical):
    """Webhooks (top) and their recent deliveries (bottom)."""

    DEFAULT_CSS = """
    WebhooksPanel {
        height: 1fr;
    }
    WebhooksPanel > Label {
        padding: 0 1;
        text-style: bold;
    }
    WebhooksPanel #webhooks-table {
        height: auto;
        max-height: 40%;
    }
    WebhooksPanel #deliveries-table {
        height: 1fr;
    }
    """

    deliveries_limit: reactive[int] = reactive(100)
    """How many recent deliveries the lower table shows."""

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
        self.webhook_count = 0
        self.delivery_count = 0

    def compose(self) -> ComposeResult:
        yield Label("Webhooks", id="webhooks-title")
        webhooks: DataTable[Any] = DataTable(
            id="webhooks-table", cursor_type="row", zebra_stripes=True
        )
        for key, label in WEBHOOK_COLUMNS:
            webhooks.add_column(label, key=key)
        yield webhooks
        yield Label("Recent deliveries", id="deliveries-title")
        deliveries: DataTable[Any] = DataTable(
            id="deliveries-table", cursor_type="row", zebra_stripes=True
        )
        for key, label in DELIVERY_COLUMNS:
            deliveries.add_column(label, key=key)
        yield deliveries

    async def refresh_data(self) -> None:
        """Read webhooks and recent deliveries from the store and update both tables."""
        hooks = await self.store.list_webhooks()
        deliveries = await self.store.recent_deliveries(self.deliveries_limit)
        last: dict[int, WebhookDelivery] = {}
        for d in deliveries:  # newest first: the first seen per hook is its last
            last.setdefault(d.webhook_id, d)
        sync_table(
            self.query_one("#webhooks-table", DataTable),
            [(str(h.id), webhook_cells(h, last.get(h.id))) for h in hooks],
            newest_first=False,
        )
        sync_table(
            self.query_one("#deliveries-table", DataTable),
            [(str(d.id), delivery_cells(d)) for d in deliveries],
            newest_first=True,
        )
        self.webhook_count = len(hooks)
        self.delivery_count = len(deliveries)
        enabled = sum(1 for h in hooks if h.enabled)
        self.query_one("#webhooks-title", Label).update(
            f"Webhooks: {len(hooks)} ({enabled} enabled)"
            if hooks
            else "Webhooks: none (add one with `tuiaudit webhooks add URL`)"
        )
        failed = sum(1 for d in deliveries if d.status == "failed")
        self.query_one("#deliveries-title", Label).update(
            f"Recent deliveries: {len(deliveries)}, {failed} failed"
        )
