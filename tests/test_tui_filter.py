"""The audit filter says what it does (issue 14, item 9), through Pilot on a real store.

``name:login`` is exact and says so when it finds nothing; ``name:login*``
globs; a free-text search never shows more matches than rows searched, also
after new rows arrive; typing right after Ctrl+U keeps every character.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from textual.widgets import Input, Static
from tui_support import NOW, make_row

from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.widgets.audit_view import PAGE

NAMES = ["login-with-password", "login-with-oidc", "logout", "navigate", "create-file"]


async def settle(app: AuditApp, pilot: Any) -> None:
    for _ in range(2):
        await app.workers.wait_for_complete()
        await pilot.pause()


def count_line(app: AuditApp) -> str:
    return str(app.query_one("#count-line", Static).render())


async def _filter(app: AuditApp, pilot: Any, text: str) -> None:
    field = app.query_one("#filter-input", Input)
    field.value = ""
    await pilot.press("slash", *text, "enter")
    await settle(app, pilot)


async def test_field_filters_are_exact_say_so_and_glob_with_a_star(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        await store.insert_rows([make_row(i, name=n) for i, n in enumerate(NAMES)])
        app = AuditApp(store, refresh_interval=None, clock=lambda: NOW, debounce=0)
        async with app.run_test(size=(140, 30)) as pilot:
            await settle(app, pilot)
            await _filter(app, pilot, "name:login")
            assert app.audit_view.table.row_count == 0
            assert "name:login must match exactly: try name:login* for a prefix" in count_line(app)

            await _filter(app, pilot, "name:login*")
            names = {row.name for row in app.audit_view.table.audit_rows.values()}
            assert names == {"login-with-password", "login-with-oidc"}
            assert "must match exactly" not in count_line(app)

            await _filter(app, pilot, "name:*-file")
            assert [r.name for r in app.audit_view.table.audit_rows.values()] == ["create-file"]
        # The same glob from the store for every reader (export, purges).
        globbed = await store.fetch_rows(AuditFilter(name="LOGIN*"))
        assert {r.name for r in globbed} == {"login-with-password", "login-with-oidc"}
        assert await store.fetch_rows(AuditFilter(name="log_ut")) == []  # _ is literal


async def test_search_never_shows_more_matches_than_rows_searched(tmp_path: Path) -> None:
    # A 2-character text: too short for the trigram index, searched in bounded steps.
    async with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        old = [make_row(i, props={"note": "Q~"}) for i in range(3 * PAGE)]
        await store.insert_rows(old)
        app = AuditApp(store, refresh_interval=None, clock=lambda: NOW, debounce=0)
        async with app.run_test(size=(140, 30)) as pilot:
            await settle(app, pilot)
            await _filter(app, pilot, "q~")
            search = app.audit_view.search
            assert search is not None and not search.done
            assert app.audit_view.table.row_count == PAGE
            # New matching rows arrive while the search is paused.
            new = [
                make_row(-i, props={"note": "Q~"}, created_at=NOW + timedelta(seconds=i))
                for i in range(1, 51)
            ]
            await store.insert_rows(new)
            app.refresh_now()
            await settle(app, pilot)
            shown = app.audit_view.table.row_count
            assert shown == PAGE + 50
            assert search.scanned >= shown
            assert search.total is not None and search.total >= search.scanned


async def test_typing_right_after_ctrl_u_keeps_every_character(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        await store.insert_rows([make_row(i, name=n) for i, n in enumerate(NAMES)])
        app = AuditApp(store, refresh_interval=None, clock=lambda: NOW)  # debounced typing
        async with app.run_test(size=(140, 30)) as pilot:
            await settle(app, pilot)
            await pilot.press("slash", *"navigate", "ctrl+u", *"name:logout")
            assert app.query_one("#filter-input", Input).value == "name:logout"
            await pilot.press("enter")
            await settle(app, pilot)
            assert [r.name for r in app.audit_view.table.audit_rows.values()] == ["logout"]
