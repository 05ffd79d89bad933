"""The Next batch tab in approval mode (DESIGN §10), driven with Pilot on a real store:
the queue is listed, ``a`` shows the selected body's decoded events and the policy
before it queues ``approve``, ``r`` queues ``reject``; the daemon's answers show."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from shipper_support import rows

from tuiaudit import __version__
from tuiaudit.approval import approve, reject, sync_queue
from tuiaudit.config import Settings
from tuiaudit.consent import accept
from tuiaudit.instance import get_instance_id
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.site_policy import DEFAULT_SITE
from tuiaudit.storage import open_store
from tuiaudit.timeutil import utcnow
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.screens.confirm import ConfirmScreen

SIZE = (120, 36)
SETTINGS = Settings(
    approval="manual",
    batch_rows=10,
    flags=("audit-log", "telemetry"),
    telemetry_uri="http://127.0.0.1:9/telemetry",
)


async def settle(app: AuditApp, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def screen_text(app: AuditApp) -> str:
    svg = app.export_screenshot()
    body = svg[svg.index('<g class="') :] if '<g class="' in svg else svg
    return html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\xa0", " ")


async def test_the_tab_lists_the_queue_and_approves_or_rejects(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        await store.insert_rows(rows(15))
        queued = await sync_queue(
            store,
            SETTINGS,
            instance_id=await get_instance_id(store),
            version=__version__,
            now=utcnow(),
            site=DEFAULT_SITE,
        )
        first, second, _report = queued
        app = AuditApp(url, writer=store, settings=SETTINGS, refresh_interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("3")
            await settle(app, pilot)
            table = app.query_one("#approval-queue")
            assert table.has_focus
            assert "waiting for approval (3 bodies" in screen_text(app)
            assert first.sha256 in screen_text(app)

            await pilot.press("a")
            await settle(app, pilot)
            assert isinstance(app.screen, ConfirmScreen)
            shown = screen_text(app)
            assert "Approve this body" in shown and first.sha256 in shown
            assert "event-0" in shown  # decoded from the body's bytes
            await pilot.press("y")
            await settle(app, pilot)

            await pilot.press("down")
            await pilot.press("r")
            await settle(app, pilot)
            assert isinstance(app.screen, ConfirmScreen)
            assert "go to quarantine" in screen_text(app)
            await pilot.press("y")
            await settle(app, pilot)

            commands = await store.claim_commands("test")
            assert [(c.kind, c.args) for c in commands] == [
                ("approve", {"sha256": first.sha256}),
                ("reject", {"sha256": second.sha256}),
            ]
            # What the daemon's actions do; the tab shows it at the next refresh.
            await approve(store, [first.sha256], now=utcnow())
            await reject(store, second.sha256)
            app.refresh_now()
            await settle(app, pilot)
            shown = screen_text(app)
            assert "approved" in shown and second.sha256 not in shown
            assert "waiting for approval (1 body" in shown

            # Elsewhere `r` refreshes again and `a` is the policy's: no body decision.
            await pilot.press("1")
            await settle(app, pilot)
            await pilot.press("r")
            await settle(app, pilot)
            assert await store.claim_commands("test") == []

            # The command palette's "approve" goes to the tab's selected body.
            await app.run_action("approve_body")
            await settle(app, pilot)
            assert app.active_tab == "batch" and isinstance(app.screen, ConfirmScreen)
            await pilot.press("escape")
            await settle(app, pilot)
            assert await store.claim_commands("test") == []


async def test_read_only_has_no_approval_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        await store.insert_rows(rows(5))
        await sync_queue(
            store,
            SETTINGS,
            instance_id=await get_instance_id(store),
            version=__version__,
            now=utcnow(),
            site=DEFAULT_SITE,
        )
        app = AuditApp(url, writer=store, settings=SETTINGS, refresh_interval=None, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("3")
            await settle(app, pilot)
            await pilot.press("a")
            await pilot.press("r")
            await settle(app, pilot)
            assert not isinstance(app.screen, ConfirmScreen)
            assert await store.claim_commands("test") == []


async def test_the_shipping_tab_says_what_waits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        await store.insert_rows(rows(25))
        await accept(store, POLICY_VERSION)
        await sync_queue(
            store,
            SETTINGS,
            instance_id=await get_instance_id(store),
            version=__version__,
            now=utcnow(),
            site=DEFAULT_SITE,
        )
        app = AuditApp(url, writer=store, settings=SETTINGS, refresh_interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("4")
            await settle(app, pilot)
            assert "Approval waiting for approval (4 bodies, oldest 0 min)" in screen_text(app)
