"""Every tab is reachable by its digit from every other tab, whatever holds focus
there (a focused table in the tab being left once pulled the dashboard back)."""

from __future__ import annotations

from pathlib import Path

from tuiaudit.storage import open_store
from tuiaudit.tui.app import AuditApp

TABS = {"1": "audit", "2": "shared", "3": "batch", "4": "shipping", "5": "webhooks", "6": "archive"}


async def test_every_tab_is_reachable_from_every_tab(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url):
        pass
    app = AuditApp(url, refresh_interval=None)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        for here in TABS:
            for there, tab in TABS.items():
                await pilot.press(here)
                await app.workers.wait_for_complete()
                await pilot.pause()
                await pilot.press(there)
                await app.workers.wait_for_complete()
                await pilot.pause()
                assert app.active_tab == tab, f"{TABS[here]} -> {tab}"
