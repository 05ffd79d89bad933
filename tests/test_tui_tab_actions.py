"""The dashboard's tab keys (issue 14 item 10), through Pilot on real stores.

Webhooks tab: add (a form checked like ``tuiaudit webhooks add``), enable /
disable, test (a real daemon sends a signed event to a loopback receiver)
and remove (asks first), all written to the store; hidden when read-only.
Shipping tab: an attempt's detail shows the full SHA-256 of the body the
receiver got, and ``c`` copies it. What is shared: the policy's changes
table fits the screen's width, long values wrapped, never cut.
"""

from __future__ import annotations

import hashlib
import html
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from shipper_support import ScriptedReceiver, consent, settings_for, telemetry_row
from textual.widgets import DataTable, Input, Static

from tuiaudit.config import Settings
from tuiaudit.control import PAUSED_PROPERTY
from tuiaudit.daemon.actions import ActionLoop
from tuiaudit.daemon.service import running_daemon
from tuiaudit.daemon.shipper import Shipper
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditRow
from tuiaudit.timeutil import utcnow
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.messages import ShowShared
from tuiaudit.tui.screens.attempt import AttemptScreen
from tuiaudit.tui.screens.confirm import ConfirmScreen
from tuiaudit.tui.screens.webhook_add import AddWebhookScreen
from tuiaudit.tui.webhooks_panel import WebhooksPanel
from tuiaudit.webhook_payload import SIGNATURE_HEADER, verify_signature

SIZE = (160, 44)
NOT_ACCEPTED = f"policy v{POLICY_VERSION} not accepted: `tuiaudit consent --accept`"


async def settle(app: AuditApp, pilot: Any) -> None:
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


def screen_text(app: AuditApp) -> str:
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


def shipping_line(app: AuditApp) -> str:
    return str(app.query_one("#ship-status", Static).render())


def toasts(app: AuditApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_webhooks_tab_adds_toggles_tests_and_removes(store_url: str) -> None:
    settings = Settings(store=store_url, listen="127.0.0.1:0", jitter=0)
    async with (
        ScriptedReceiver().serve() as rx,
        running_daemon(settings, components=[]) as daemon,
    ):
        store = daemon.store
        app = AuditApp(store_url, refresh_interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("5")
            await settle(app, pilot)
            panel = app.query_one(WebhooksPanel)
            table = app.query_one("#webhooks-table", DataTable)
            assert table.has_focus  # the tab's keys work on arrival
            assert table.styles.border_top[0] == "round"  # the tables have borders
            assert "Webhooks: none (add one with n" in screen_text(app)

            # Add: a URL the CLI refuses is refused in the form, which stays open.
            await pilot.press("n")
            await settle(app, pilot)
            assert isinstance(app.screen, AddWebhookScreen)
            await pilot.press(*"ftp://x", "enter")
            await settle(app, pilot)
            assert isinstance(app.screen, AddWebhookScreen)
            error = app.screen.query_one("#webhook-form-error", Static)
            assert "must start with http:// or https://" in str(error.render())
            form = app.screen
            form.query_one("#webhook-url", Input).value = f"{rx.url}/hook"
            form.query_one("#webhook-events", Input).value = "team-created, login"
            form.query_one("#webhook-retries", Input).value = "2"
            form.query_one("#webhook-secret", Input).value = "s3cret"
            await pilot.click("#webhook-add")
            await settle(app, pilot)
            assert not isinstance(app.screen, AddWebhookScreen)
            [hook] = await store.list_webhooks()
            assert (hook.url, hook.secret, hook.retries) == (f"{rx.url}/hook", "s3cret", 2)
            assert list(hook.event_names) == ["team-created", "login"]
            assert f"added webhook {hook.id} → {rx.url}/hook" in toasts(app)
            assert [k.value for k in table.rows] == [str(hook.id)]

            # Enable / disable: the same store call as `tuiaudit webhooks disable`.
            await pilot.press("space")
            await settle(app, pilot)
            assert not (await store.list_webhooks())[0].enabled
            assert table.get_row(str(hook.id))[1].plain == "disabled"
            assert f"webhook {hook.id} disabled" in toasts(app)
            await pilot.press("space")
            await settle(app, pilot)
            assert (await store.list_webhooks())[0].enabled

            # Test: the daemon sends it (the dashboard has no HTTP client).
            await pilot.press("t")
            await settle(app, pilot)
            assert list(app.pending_commands.values()) == ["webhook-test"]
            assert await ActionLoop(daemon).poll_once() == 1
            app.refresh_now()
            await settle(app, pilot)
            [sent] = rx.requests
            assert sent.path.endswith("/hook") and sent.json["name"] == "webhook-test"
            assert verify_signature(sent.body, "s3cret", sent.headers[SIGNATURE_HEADER])
            said = [t for t in toasts(app) if t.startswith(f"webhook {hook.id}: HTTP 2")]
            assert said and "(signed, test-" in said[0], toasts(app)

            # Remove: asks first (the focus starts on Cancel), then removes.
            await pilot.press("delete")
            await settle(app, pilot)
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("enter")  # Cancel
            await settle(app, pilot)
            assert len(await store.list_webhooks()) == 1
            await pilot.press("delete")
            await settle(app, pilot)
            await pilot.press("y")
            await settle(app, pilot)
            assert await store.list_webhooks() == []
            assert table.row_count == 0 and panel.webhook_count == 0
            assert f"removed webhook {hook.id}" in toasts(app)


async def test_webhooks_tab_read_only_has_no_actions(store_url: str) -> None:
    async with open_store(store_url) as store:
        await store.add_webhook("https://hooks.example/in", secret=None, event_names=[])
    app = AuditApp(store_url, refresh_interval=None, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("5")
        await settle(app, pilot)
        assert app.query_one(WebhooksPanel).read_only
        for key in ("n", "space", "delete", "t"):
            await pilot.press(key)
            await settle(app, pilot)
            assert app.screen is app.screen_stack[0] and not app.pending_commands
    async with open_store(store_url) as store:
        [hook] = await store.list_webhooks()
        assert hook.enabled


async def test_ledger_attempt_detail_shows_and_copies_the_full_sha(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with ScriptedReceiver().serve() as rx, open_store(url) as store:
        await consent(store)
        day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        await store.insert_rows([telemetry_row(i, created_at=day) for i in range(5)])
        async with aiohttp.ClientSession() as session:
            settings = settings_for(rx.url)
            shipper = Shipper(store, settings, session=session, instance_id=uuid.uuid4())
            assert (await shipper.run_once(jitter=False)).rows_sent == 5
        newest = hashlib.sha256(rx.requests[-1].body).hexdigest()  # the batch, after the report

        app = AuditApp(store, refresh_interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("4")
            await settle(app, pilot)
            assert app.query_one("#ledger-table", DataTable).has_focus
            await pilot.press("c")  # on the table: the selected (newest) attempt's SHA-256
            assert app.clipboard == newest

            await pilot.press("down", "enter")  # the older attempt: the report
            await settle(app, pilot)
            assert isinstance(app.screen, AttemptScreen)
            report = hashlib.sha256(rx.requests[0].body).hexdigest()
            assert app.screen.entry.body_sha256 == report
            assert report in screen_text(app)  # whole on screen, not cut to 12 characters
            await pilot.press("c")
            assert app.clipboard == report
            await pilot.press("escape")
            await settle(app, pilot)
            assert not isinstance(app.screen, AttemptScreen)


UA = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0 "
    "with a long tail of extras that no column could hold on one line"
)


async def test_policy_changes_fit_the_width_and_no_value_is_cut(tmp_path: Path) -> None:
    now = utcnow()
    props = {
        "email": "Ann Someone <ann.someone@very-long-subdomain.example-company.com>",
        "public-uri": "https://penpot.example-company.com/a/very/long/path?with=query&and=more",
    }
    context = {"user-agent": UA, "client-user-agent": UA, "version": "2.0"}
    row = AuditRow(
        uuid.uuid4(), "login-with-password", "action", "backend", uuid.uuid4(), "10.1.2.3",
        props, context, now, now,
    )  # fmt: skip
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        await store.insert_rows([row])
        app = AuditApp(store, refresh_interval=None)
        async with app.run_test(size=(120, 50)) as pilot:
            await settle(app, pilot)
            app.post_message(ShowShared(row))  # what w on the row does
            await settle(app, pilot)
            table = app.query_one("#changes-table", DataTable)
            # Every column on screen: nothing scrolls off to the right.
            assert table.virtual_size.width <= table.scrollable_content_region.width
            assert [c.label.plain for c in table.columns.values()][-1] == "after"
            cells = {table.get_row(k)[0].plain: table.get_row(k) for k in table.rows}
            email = cells["props.email"]
            assert email[4].plain == "very-long-subdomain.example-company.com"  # whole, wrapped
            assert email[3].plain == props["email"]
            assert table.rows[next(k for k in table.rows if "email" in str(k.value))].height > 1
            assert cells["context.client-user-agent"][4].plain == "Firefox 120 / Linux"
            assert "Firefox 120 / Linux" in screen_text(app)
            await pilot.resize_terminal(200, 50)
            await settle(app, pilot)
            assert table.virtual_size.width <= table.scrollable_content_region.width
            assert "very-long-subdomain.example-company.com" in screen_text(app)  # one line now


async def test_shipping_tab_says_the_hold_in_status_words(store_url: str) -> None:
    from tuiaudit.commands.status import collect

    settings = Settings(
        store=store_url, listen="127.0.0.1:0", jitter=0, telemetry_uri="http://127.0.0.1:9/t"
    )
    async with running_daemon(settings, components=[]) as daemon:
        app = AuditApp(store_url, refresh_interval=None)  # given no URI: the daemon's counts
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("4")
            await settle(app, pilot)
            status = await collect(daemon.store, Settings(store=store_url))
            assert status["shipping"] == f"held ({NOT_ACCEPTED})"
            assert f"Shipping held ({NOT_ACCEPTED})" in shipping_line(app)

            await daemon.store.set_property(PAUSED_PROPERTY, True)
            await consent(daemon.store)
            app.refresh_now()
            await settle(app, pilot)
            status = await collect(daemon.store, Settings(store=store_url))
            assert status["shipping"] == "held (paused: resume with h in the dashboard)"
            assert f"Shipping {status['shipping']}" in shipping_line(app)


async def test_ctrl_u_after_enter_clears_the_filter_and_keeps_the_typing(tmp_path: Path) -> None:
    """Issue 14 item 9, found in tmux on `tuiaudit demo`: enter moves the focus to the
    table, where ctrl+u did nothing and the letters typed next ran dashboard keys
    (v opened Revoke consent, t changed the range): the characters were lost."""
    now = utcnow()
    rows = [
        AuditRow(uuid.uuid4(), name, "action", "backend", uuid.uuid4(), "0.0.0.0", {}, {}, now, now)
        for name in ("login", "navigate", "logout")
    ]
    async with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        await store.insert_rows(rows)
        app = AuditApp(store, refresh_interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            field = app.query_one("#filter-input", Input)
            await pilot.press("slash", *"name:login", "enter")
            await settle(app, pilot)
            assert app.audit_view.table.has_focus
            await pilot.press("ctrl+u", *"name:navigate")
            assert field.has_focus and field.value == "name:navigate"
            assert app.screen is app.screen_stack[0]  # no dialog (v, a) opened
            assert app.audit_view.range_name == "all"  # t did not change the range
            await pilot.press("enter")
            await settle(app, pilot)
            assert [r.name for r in app.audit_view.table.audit_rows.values()] == ["navigate"]


async def test_a_tab_action_from_the_palette_runs_on_its_tab(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url):
        pass  # created and migrated
    app = AuditApp(url, refresh_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Add a webhook")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.active_tab == "webhooks"
        assert isinstance(app.screen, AddWebhookScreen)
        await pilot.press("escape")
        await settle(app, pilot)
        await pilot.press("1", "ctrl+p")
        await pilot.pause()
        await pilot.press(*"Time range")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.audit_view.range_name == "1h"  # the audit view's action, not the App's
