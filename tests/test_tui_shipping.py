"""The Shipping tab's figures after real sends (issue 14, items 2 and 3), through Pilot.

A real shipper sends real batches to a loopback receiver; the dashboard then
shows the sent ledger newest first (also after new attempts arrive), the
full SHA-256 of each body, the forecast rate from the rows really sent, the
oldest pending row by its day (a telemetry copy keeps only its day), and
"held (paused)" only while shipping is paused.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from shipper_support import ScriptedReceiver, consent, settings_for, telemetry_row
from textual.widgets import DataTable

from tuiaudit.config import record_settings
from tuiaudit.control import PAUSED_PROPERTY
from tuiaudit.daemon.shipper import Shipper
from tuiaudit.effective import SETTINGS_KEY
from tuiaudit.storage import open_store
from tuiaudit.storage.base import DaemonState, Store
from tuiaudit.timeutil import utcnow
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.widgets.shipping_view import ShippingView

SIZE = (160, 40)


async def settle(app: AuditApp, pilot: Any) -> None:
    for _ in range(2):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def _queue(store: Store, count: int, start: int) -> None:
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    await store.insert_rows([telemetry_row(start + i, created_at=day) for i in range(count)])


async def _ship(store: Store, url: str) -> None:
    async with aiohttp.ClientSession() as session:
        shipper = Shipper(store, settings_for(url), session=session, instance_id=uuid.uuid4())
        report = await shipper.run_once(jitter=False)
    assert report.ok and report.rows_sent, report


def _ledger_keys(app: AuditApp) -> list[int]:
    table = app.query_one("#ledger-table", DataTable)
    return [
        int(str(table.coordinate_to_cell_key((i, 0)).row_key.value)) for i in range(table.row_count)
    ]


async def test_ledger_newest_first_full_sha_and_forecast_from_real_sends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with ScriptedReceiver().serve() as rx, open_store(url) as store:
        await consent(store)
        await _queue(store, 30, 0)
        await _ship(store, rx.url)  # a report and a batch
        app = AuditApp(store, refresh_interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("4")
            await settle(app, pilot)
            first = _ledger_keys(app)
            assert first == sorted(first, reverse=True) and len(first) == 2

            await _queue(store, 30, 100)
            await _ship(store, rx.url)  # two more attempts, newer than those shown
            app.refresh_now()
            await settle(app, pilot)
            keys = _ledger_keys(app)
            assert keys == sorted(keys, reverse=True) and len(keys) == 4
            kinds = [e.kind for e in app.query_one(ShippingView).snapshot.ledger]  # type: ignore[union-attr]
            assert kinds == ["events", "report", "events", "report"]

            # The full SHA-256 of every body the receiver got, newest first.
            table = app.query_one("#ledger-table", DataTable)
            shown = [str(table.get_row_at(i)[-1]) for i in range(table.row_count)]
            assert shown == [hashlib.sha256(r.body).hexdigest() for r in rx.requests][::-1]

            # 60 rows sent within the hour: 1.0 row/min, not "0.0 rows/min".
            snap = app.query_one(ShippingView).snapshot
            assert snap is not None and snap.forecast is not None
            assert "at 1.0 rows/min" in snap.forecast


async def test_oldest_pending_is_a_day_and_resume_clears_the_hold(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        await consent(store)
        await _queue(store, 3, 0)
        now = utcnow()
        settings = settings_for("http://127.0.0.1:9/t")
        await store.put_daemon_state(
            DaemonState(
                daemon_id="d1",
                pid=4242,
                host="box",
                listen="127.0.0.1:6061",
                started_at=now - timedelta(minutes=5),
                heartbeat_at=now,
                flags=list(settings.flags),
                info={SETTINGS_KEY: record_settings(settings)},
            )
        )
        await store.set_property(PAUSED_PROPERTY, True)
        clock = [now]
        app = AuditApp(store, refresh_interval=None, clock=lambda: clock[0])
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("4")
            await settle(app, pilot)
            details = str(app.query_one("#queue-details").render())
            assert f"oldest pending since {now:%Y-%m-%d}" in details
            snap = app.query_one(ShippingView).snapshot
            assert snap is not None and snap.forecast is not None
            assert snap.forecast.startswith("held (paused")

            await store.set_property(PAUSED_PROPERTY, False)  # resumed elsewhere
            clock[0] = now + timedelta(seconds=1)
            app.refresh_now()
            await settle(app, pilot)
            snap = app.query_one(ShippingView).snapshot
            assert snap is not None and snap.forecast is not None
            assert "held" not in snap.forecast and snap.forecast.startswith("draining")
