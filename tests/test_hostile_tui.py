"""Issue 13, item 3: the dashboard shows stored text literally, through Textual's Pilot.

Before: a backend event named ``oops[/]`` killed ``tuiaudit tui``
(``MarkupError``) and ``[on black black]`` hid text. Every tab that shows the
row (table, row detail, what is shared), the webhooks tab (URL, delivery
error) and a daemon notification are checked with such names.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tui_support import NOW, make_row

from tuiaudit.storage import open_store
from tuiaudit.storage.base import Command, WebhookJob
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.messages import CommandFinished
from tuiaudit.tui.screens.row_detail import RowDetailScreen
from tuiaudit.webhook_payload import webhook_event

HOSTILE = ["oops[/]", "[on black black]hidden", "[link=https://evil.example]click[/link]"]
SIZE = (160, 44)


def screen_text(app: AuditApp) -> str:
    svg = app.export_screenshot()
    body = svg[svg.index('<g class="') :] if '<g class="' in svg else svg
    return html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\xa0", " ")


async def settle(app: AuditApp, pilot: object) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()  # type: ignore[attr-defined]
    await app.workers.wait_for_complete()
    await pilot.pause()  # type: ignore[attr-defined]


async def test_markup_in_stored_data_is_shown_literally_in_every_tab(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        rows = [
            make_row(i, name=name, type_="[bold]x[/bold]", props={"k[/]": "[red]v"})
            for i, name in enumerate(HOSTILE)
        ]
        hook = await store.add_webhook(
            "https://user:pw@hooks.example/in?key=SECRET", secret=None, event_names=[]
        )
        await store.insert_rows(
            rows, [WebhookJob(event=webhook_event(r), event_name=r.name) for r in rows[:1]]
        )
        [delivery] = await store.claim_deliveries(
            datetime.now(UTC) + timedelta(days=1), holder="t", limit=10, lease_s=60
        )
        await store.record_delivery(
            delivery.id, status="failed", http_status=500, error="[/]broken [on red]body",
            latency_ms=1.0, retry_at=None,
        )  # fmt: skip
        del hook

    app = AuditApp(url, refresh_interval=None, clock=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = app.audit_view.table
        assert sorted(str(table.get_row_at(i)[3]) for i in range(table.row_count)) == sorted(
            HOSTILE
        )
        text = screen_text(app)
        assert "oops[/]" in text and "[on black black]hidden" in text

        # Row detail (its title is the row's name) and what is shared.
        for _ in range(3):
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, RowDetailScreen)
            detail = screen_text(app)
            assert app.screen.row.name in detail and "k[/]" in detail
            await pilot.press("w")
            await settle(app, pilot)
            assert app.active_tab == "shared"
            await pilot.press("1")
            await pilot.press("down")
            await pilot.pause()

        # The webhooks tab: the URL redacted, the delivery error as written.
        await pilot.press("5")
        await settle(app, pilot)
        await pilot.press("r")
        await settle(app, pilot)
        text = screen_text(app)
        assert "SECRET" not in text and "pw@" not in text
        assert "[/]broken" in text

        # A daemon's answer is data too: a failed action's error holds markup.
        command = Command(
            id=7, kind="ship-now", args={}, created_at=NOW, status="failed",
            result={"error": "receiver said [/] and [on black black]hidden"},
        )  # fmt: skip
        app.pending_commands[command.id] = command.kind
        app.post_message(CommandFinished(command))
        await settle(app, pilot)
        assert app.is_running
        [toast] = [n for n in app._notifications if n.title == "Daemon"]
        assert not toast.markup and "[on black black]hidden" in toast.message
