"""The dashboard's webhooks panel: configured webhooks, their recent deliveries, actions.

Self-contained (widget, CSS, data loading, keys) so the dashboard mounts it
in a tab with ``WebhooksPanel(store, writer=...)`` and calls ``await
panel.refresh_data()`` on its refresh tick. Tables are updated by row key (gone rows removed,
changed cells updated, new rows added), so the cursor stays put.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable

from tuiaudit import webhook_admin
from tuiaudit.safe_text import redact_url
from tuiaudit.storage.base import Store, Webhook, WebhookDelivery
from tuiaudit.tui.keys import KEYS, WEBHOOKS, bindings
from tuiaudit.tui.messages import CommandQueued
from tuiaudit.tui.render import plain
from tuiaudit.tui.screens.confirm import ConfirmScreen
from tuiaudit.tui.screens.webhook_add import AddWebhookScreen, NewWebhook
from tuiaudit.webhook_admin import WebhookError

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


Writer = Callable[[], Awaitable[Store]]
"""Opens (once) the dashboard's writable connection: the panel reads through ``store``."""


class WebhooksPanel(Vertical):
    """Webhooks (top) and their recent deliveries (bottom), with the tab's actions.

    Add, enable/disable and remove write through the dashboard's writable
    connection with the same code as ``tuiaudit webhooks`` (``tuiaudit.
    webhook_admin``); a test is sent by the daemon (a ``webhook-test``
    command: the dashboard holds no HTTP client), its answer notified.
    """

    BINDINGS: ClassVar[list[BindingType]] = bindings(WEBHOOKS)

    DEFAULT_CSS = """
    WebhooksPanel {
        height: 1fr;
    }
    WebhooksPanel DataTable {
        border: round $primary-darken-1;
        border-title-style: bold;
    }
    WebhooksPanel DataTable:focus {
        border: round $accent;
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
        writer: Writer | None = None,
        read_only: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.store = store
        self.writer = writer
        self.read_only = read_only or writer is None
        self.webhook_count = 0
        self.delivery_count = 0
        self.hooks: dict[str, Webhook] = {}

    def compose(self) -> ComposeResult:
        webhooks: DataTable[Any] = DataTable(
            id="webhooks-table", cursor_type="row", zebra_stripes=True
        )
        for key, label in WEBHOOK_COLUMNS:
            webhooks.add_column(label, key=key)
        yield webhooks
        deliveries: DataTable[Any] = DataTable(
            id="deliveries-table", cursor_type="row", zebra_stripes=True
        )
        for key, label in DELIVERY_COLUMNS:
            deliveries.add_column(label, key=key)
        yield deliveries

    def on_mount(self) -> None:
        webhooks = self.query_one("#webhooks-table", DataTable)
        webhooks.border_title = "Webhooks"
        if not self.read_only:
            webhooks.border_subtitle = "n add · space on/off · t test · delete remove"
        self.query_one("#deliveries-table", DataTable).border_title = "Recent deliveries"

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
        self.hooks = {str(h.id): h for h in hooks}
        self.webhook_count = len(hooks)
        self.delivery_count = len(deliveries)
        enabled = sum(1 for h in hooks if h.enabled)
        add_hint = (
            "`tuiaudit webhooks add URL`" if self.read_only else "n, or `tuiaudit webhooks add`"
        )
        self.query_one("#webhooks-table", DataTable).border_title = (
            f"Webhooks: {len(hooks)} ({enabled} enabled)"
            if hooks
            else f"Webhooks: none (add one with {add_hint})"
        )
        failed = sum(1 for d in deliveries if d.status == "failed")
        self.query_one(
            "#deliveries-table", DataTable
        ).border_title = f"Recent deliveries: {len(deliveries)}, {failed} failed"

    # ---------------------------------------------------------------- actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _WRITES and self.read_only:
            return False  # hidden from the footer, unbound
        return True

    def selected(self) -> Webhook | None:
        """The webhook under the cursor of the webhooks table, or None."""
        key = _cursor_key(self.query_one("#webhooks-table", DataTable))
        return self.hooks.get(key) if key is not None else None

    def action_add_webhook(self) -> None:
        def added(values: NewWebhook | None) -> None:
            if values is not None:
                self._write(self._add(values))

        self.app.push_screen(AddWebhookScreen(), added)

    def action_toggle_webhook(self) -> None:
        hook = self.selected()
        if hook is not None:
            self._write(self._set_enabled(hook.id, not hook.enabled))

    def action_remove_webhook(self) -> None:
        hook = self.selected()
        if hook is None:
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._write(self._remove(hook.id))

        body = Text(f"Remove webhook {hook.id} (")
        body.append(redact_url(hook.url))  # data, not markup
        body.append(") and every delivery recorded for it. Nothing more is sent to it.")
        self.app.push_screen(
            ConfirmScreen(f"Remove webhook {hook.id}", body, "Remove webhook"), confirmed
        )

    def action_test_webhook(self) -> None:
        hook = self.selected()
        if hook is not None:
            self._write(self._test(hook.id))

    def _write(self, change: Coroutine[Any, Any, None]) -> None:
        self.run_worker(change, group="webhook-edit", exclusive=True, exit_on_error=False)

    async def _writer(self) -> Store:
        assert self.writer is not None  # the write actions are off without one
        return await self.writer()

    async def _done(self, change: Awaitable[str]) -> None:
        """Say what the change did (or what is wrong), then show it."""
        try:
            said = await change
        except WebhookError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.notify(said, markup=False)
        await self.refresh_data()

    async def _add(self, values: NewWebhook) -> None:
        async def add() -> str:
            store = await self._writer()
            webhook_id = await webhook_admin.add(
                store, values.url, secret=values.secret, events=values.events,
                retries=values.retries,
            )  # fmt: skip
            return webhook_admin.added(webhook_id, values.url)

        await self._done(add())

    async def _set_enabled(self, webhook_id: int, enabled: bool) -> None:
        store = await self._writer()
        await self._done(webhook_admin.set_enabled(store, webhook_id, enabled))

    async def _remove(self, webhook_id: int) -> None:
        store = await self._writer()
        await self._done(webhook_admin.remove(store, webhook_id))

    async def _test(self, webhook_id: int) -> None:
        store = await self._writer()
        command_id = await store.enqueue_command("webhook-test", {"id": webhook_id})
        # The App tracks the command and notifies its outcome in words.
        self.post_message(CommandQueued(command_id, "webhook-test"))


_WRITES = frozenset(k.action for k in KEYS if k.scope == WEBHOOKS)
