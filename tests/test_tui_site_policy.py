"""The What-is-shared tab explains a row under the site's own ``[policy]`` rules
(DESIGN §3.1): the copy it shows is the one the ingest path makes on this
instance, not the default policy's."""

from __future__ import annotations

from pathlib import Path

from tui_support import NOW, make_row

from tuiaudit.config import Settings
from tuiaudit.site_policy import site_policy_from_table
from tuiaudit.storage import open_store
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.widgets.shared_view import SharedView


async def shared_title(url: str, settings: Settings) -> str:
    app = AuditApp(url, settings=settings, refresh_interval=None, clock=lambda: NOW)
    async with app.run_test(size=(160, 44)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("w")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.active_tab == "shared"
        view = app.query_one(SharedView)
        assert view.row is not None and view.row.name == "create-file"
        return str(view.query_one("#shared-title").render())


async def test_the_shared_tab_applies_the_site_policy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        await store.insert_rows([make_row(0, name="create-file", props={"n": 1})])

    default = await shared_title(url, Settings(store=url))
    assert "not shared" not in default  # the default policy shares create-file

    site = site_policy_from_table({"drop-events": ["create-file"]})
    dropped = await shared_title(url, Settings(store=url, policy=site))
    assert "is not shared" in dropped and "site" in dropped
