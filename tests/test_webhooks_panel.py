"""The dashboard's WebhooksPanel on a real store."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from tuiaudit.storage.base import AuditRow, WebhookJob
from tuiaudit.tui.webhooks_panel import WebhooksPanel
from tuiaudit.webhook_payload import webhook_event


class PanelApp(App[None]):
    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store

    def compose(self) -> ComposeResult:
        yield WebhooksPanel(self.store)


def row(name: str) -> AuditRow:
    now = datetime.now(UTC)
    return AuditRow(
        uuid.uuid4(), name, "action", "backend", uuid.uuid4(), "0.0.0.0", {}, {}, now, now
    )


async def queue(store: Any, name: str) -> None:
    r = row(name)
    await store.insert_rows([r], [WebhookJob(event=webhook_event(r), event_name=r.name)])


async def test_panel_shows_webhooks_and_deliveries(store: Any) -> None:
    a = await store.add_webhook("https://a.example/hook", secret="k", event_names=[])
    b = await store.add_webhook("https://b.example/[x]", secret=None, event_names=["only-this"])
    await store.set_webhook_enabled(b, False)
    await queue(store, "login")
    [pending] = await store.due_deliveries(datetime.now(UTC) + timedelta(hours=1))
    await store.record_delivery(
        pending.id, status="failed", http_status=500, error="HTTP 500", latency_ms=12.0,
        retry_at=None,
    )  # fmt: skip

    app = PanelApp(store)
    async with app.run_test(size=(120, 36)) as pilot:
        panel = app.query_one(WebhooksPanel)
        await panel.refresh_data()
        await pilot.pause()
        hooks = app.query_one("#webhooks-table", DataTable)
        deliveries = app.query_one("#deliveries-table", DataTable)
        assert [k.value for k in hooks.rows] == [str(a), str(b)]
        assert hooks.get_row(str(a))[1].plain == "enabled"
        assert hooks.get_row(str(b))[1].plain == "disabled"
        assert hooks.get_row(str(a))[5].plain.startswith("failed")
        assert hooks.get_row(str(b))[6].plain == "https://b.example/[x]"  # not markup
        assert [k.value for k in deliveries.rows] == [str(pending.id)]
        assert deliveries.get_row(str(pending.id))[3].plain == "failed"
        assert deliveries.get_row(str(pending.id))[8].plain == "HTTP 500"

        # Update by key: the cursor row keeps its place, new rows arrive, gone rows leave.
        hooks.move_cursor(row=1)
        await store.remove_webhook(a)  # also drops its deliveries
        c = await store.add_webhook("https://c.example/", secret=None, event_names=[])
        await queue(store, "later")
        await panel.refresh_data()
        await pilot.pause()
        assert [k.value for k in hooks.rows] == [str(b), str(c)]
        assert hooks.cursor_row == 0  # still on webhook b, now the first row
        assert len(deliveries.rows) == 1
        [only] = await store.recent_deliveries()
        assert only.webhook_id == c
        assert deliveries.get_row(str(only.id))[3].plain == "pending"
        assert panel.webhook_count == 2 and panel.delivery_count == 1

        screen = html.unescape(app.export_screenshot()).replace("\xa0", " ")
        assert "Webhooks: 2 (1 enabled)" in screen
        assert "Recent deliveries: 1, 0 failed" in screen
        assert "c.example" in screen


async def test_dashboard_webhooks_tab(store_url: str) -> None:
    """The real dashboard mounts the panel in its Webhooks tab and refreshes it there."""
    from tuiaudit.storage import open_store
    from tuiaudit.tui.app import AuditApp

    async with open_store(store_url) as store:
        await store.add_webhook("https://hooks.example/in", secret="k", event_names=["signup"])

    app = AuditApp(store_url, refresh_interval=None)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("5")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.press("r")  # refresh now
        await app.workers.wait_for_complete()
        await pilot.pause()
        panel = app.query_one(WebhooksPanel)
        assert panel.webhook_count == 1
        screen = html.unescape(app.export_screenshot()).replace("\xa0", " ")
        assert "hooks.example/in" in screen
        assert "Webhooks: 1 (1 enabled)" in screen
