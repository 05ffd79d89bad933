"""Dashboard tests: real stores, Pilot, an injected clock, no sleeping."""

from __future__ import annotations

import contextlib
import html
import re
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input
from textual.worker import WorkerFailed
from tui_support import NOW, Spy, build_big_store, make_row

from tuiaudit import __version__
from tuiaudit.batch import next_batch
from tuiaudit.config import Settings
from tuiaudit.instance import get_instance_id
from tuiaudit.policy import POLICY_VERSION, anonymise
from tuiaudit.storage import open_store
from tuiaudit.storage.base import DaemonState
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.filters import FilterError, parse_filter
from tuiaudit.tui.screens.confirm import ConfirmScreen
from tuiaudit.tui.screens.help import HelpScreen
from tuiaudit.tui.screens.row_detail import RowDetailScreen
from tuiaudit.tui.widgets.audit_view import COUNT_LIMIT, PAGE, TAIL_MAX
from tuiaudit.tui.widgets.shipping_view import ShippingView

SIZE = (120, 36)


def app_for(store: Any, **kwargs: Any) -> AuditApp:
    kwargs.setdefault("clock", lambda: NOW)
    kwargs.setdefault("refresh_interval", None)
    return AuditApp(store, **kwargs)


async def settle(app: AuditApp, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def screen_text(app: AuditApp) -> str:
    """The screen's text from its SVG export (tags stripped, entities decoded)."""
    svg = app.export_screenshot()
    body = svg[svg.index('<g class="') :] if '<g class="' in svg else svg
    return html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\xa0", " ")


def shown_names(app: AuditApp) -> list[str]:
    table = app.audit_view.table
    return [str(table.get_row_at(i)[3]) for i in range(table.row_count)]


# ------------------------------------------------------------------ filters


def test_parse_filter_fields_and_free_text() -> None:
    flt = parse_filter("name:login source:telemetry:* some text type:action")
    assert flt.name == "login"
    assert flt.source == "telemetry:*"
    assert flt.type == "action"
    assert flt.text == "some text"
    profile = uuid.uuid4()
    assert parse_filter(f"profile:{profile}").profile_id == profile
    assert parse_filter('"quoted words" name:') == parse_filter("quoted words")
    with pytest.raises(FilterError, match="not a UUID"):
        parse_filter("profile:nope")


# ------------------------------------------------------------------ opening


async def test_opens_on_an_empty_store(store_url: str) -> None:
    async with open_store(store_url):
        pass
    app = app_for(store_url)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.audit_view.table.row_count == 0
        assert app.audit_view.count == 0
        screen = screen_text(app)
        assert "0 of 0 rows" in screen
        assert "No daemon has run on this store" in screen
        # The webhooks tab holds the webhooks panel, refreshed like the other panes.
        await pilot.press("5")
        await settle(app, pilot)
        from tuiaudit.tui.webhooks_panel import WebhooksPanel

        assert app.query_one(WebhooksPanel).store is app.reader


@pytest.fixture(scope="session")
def big_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_big_store(tmp_path_factory.getbasetemp() / "big.db")


async def test_million_rows_bounded_reads(big_store_url: str) -> None:
    async with open_store(big_store_url, read_only=True) as store:
        spy = Spy(store)
        app = app_for(spy)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            view = app.audit_view
            assert view.table.row_count == PAGE
            assert view.count is not None and view.count > COUNT_LIMIT
            assert f"{PAGE} of >{COUNT_LIMIT}" in screen_text(app)
            # The newest row first.
            assert view.table.current_row().created_at == NOW - timedelta(seconds=1)
            # Page down to the end of the first page: the next page is loaded by keyset.
            view.table.move_cursor(row=PAGE - 1)
            await settle(app, pilot)
            assert view.table.row_count == 2 * PAGE
            # A filter: a page of matches and an honest bounded count.
            await pilot.press("slash")
            await pilot.press(*"name:logout", "enter")
            await settle(app, pilot)
            assert set(shown_names(app)) == {"logout"}
        # Every read was bounded: no count without a limit, no full iteration.
        for name, kwargs in spy.calls:
            assert name not in ("iter_rows", "total_rows"), name
            if name == "count_rows":
                assert kwargs.get("limit") == COUNT_LIMIT
            if name == "fetch_rows":
                assert kwargs["limit"] <= PAGE
            if name == "fetch_rows_after":
                assert kwargs["limit"] <= TAIL_MAX
        assert any(k.get("before") is not None for n, k in spy.calls if n == "fetch_rows")


# ------------------------------------------------------------------ filtering


async def test_filter_as_you_type_and_time_range(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        rows = [make_row(i, name="navigate" if i % 3 else "logout") for i in range(30)]
        rows.append(make_row(99, name="old-event", created_at=NOW - timedelta(days=3)))
        rows.append(make_row(100, name="special", props={"note": "needle in props"}))
        await store.insert_rows(rows)
        app = app_for(store, debounce=0.0)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.audit_view.count == 32
            # Typing filters after the debounce, without pressing enter.
            await pilot.press("slash", *"name:logout")
            assert isinstance(app.focused, Input)
            await pilot.pause(0.05)
            await settle(app, pilot)
            assert set(shown_names(app)) == {"logout"}
            assert app.audit_view.count == 10
            # Free text searches inside props.
            app.query_one("#filter-input", Input).value = "needle"
            await pilot.press("enter")
            await settle(app, pilot)
            assert shown_names(app) == ["special"]
            # Back on the audit tab from another tab, / filters at once.
            await pilot.press("escape")
            await settle(app, pilot)
            await pilot.press("4", "1", "slash", *"name:logout")
            assert isinstance(app.focused, Input)
            await pilot.press("enter")
            await settle(app, pilot)
            assert set(shown_names(app)) == {"logout"}
            # escape clears the filter; t cycles the time range: 1h hides the 3-day-old row.
            await pilot.press("escape")
            await settle(app, pilot)
            assert app.audit_view.count == 32
            await pilot.press("t")
            await settle(app, pilot)
            assert app.audit_view.range_name == "1h"
            assert "old-event" not in shown_names(app)
            assert app.audit_view.count == 31
            assert "last 1h" in screen_text(app)


# ------------------------------------------------------------------ text search


@pytest.fixture
def small_steps(monkeypatch: pytest.MonkeyPatch) -> int:
    """Search steps of 50 rows, so a small store takes many steps."""
    from tuiaudit.tui import data

    for name in ("SCAN_FIRST", "SCAN_MIN", "SCAN_MAX"):
        monkeypatch.setattr(data, name, 50)
    return 50


class Reads(Spy):
    """Records every read with the filter it was given (positional or not)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.reads: list[tuple[str, Any, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = super().__getattr__(name)
        if name not in ("fetch_rows", "fetch_rows_after", "count_rows", "scan_rows"):
            return attr

        def record(*args: Any, **kwargs: Any) -> Any:
            self.reads.append((name, args[0] if args else kwargs.get("flt"), kwargs))
            return attr(*args, **kwargs)

        return record


def needle_rows(n: int, every: int) -> list[Any]:
    """``n`` rows, newest first by index; every ``every``-th holds "a Q~" in props.

    The text is 2 characters: too short for the trigram index (DESIGN §7), so the
    dashboard searches it in bounded steps, which these tests are about.
    """
    return [
        make_row(i, name="navigate", props={"n": i, "note": "a Q~"} if i % every == 0 else {})
        for i in range(n)
    ]


def test_next_scan_grows_toward_the_step_target() -> None:
    from tuiaudit.tui.data import SCAN_MAX, SCAN_MIN, STEP_TARGET_S, next_scan

    assert next_scan(5000, STEP_TARGET_S / 100) == 20000  # fast: at most 4x bigger
    assert next_scan(5000, STEP_TARGET_S / 2) == 10000
    assert next_scan(100_000, STEP_TARGET_S * 10) == 25_000  # slow: at most 4x smaller
    assert next_scan(SCAN_MAX, 0.0) == SCAN_MAX
    assert next_scan(SCAN_MIN, 10.0) == SCAN_MIN


async def test_search_steps_yield_each_step_until_enough(tmp_path: Path) -> None:
    from tuiaudit.storage.base import AuditFilter
    from tuiaudit.tui.data import search_steps

    async with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        await store.insert_rows(needle_rows(100, 10))  # matches at 0, 10, ..., 90
        ticks = iter(range(1000))
        pages = [
            p
            async for p in search_steps(
                store, AuditFilter(text="q~"), want=4, scan=1000, clock=lambda: next(ticks)
            )
        ]
        # One step held the 4 matches; it ends at the 4th, where the search would go on.
        assert [len(p.rows) for p in pages] == [4]
        assert pages[0].scanned == 31 and not pages[0].complete
        # Slow steps (1 s each on this clock) shrink to SCAN_MIN, down to the last row.
        pages = [
            p
            async for p in search_steps(
                store, AuditFilter(text="absent"), want=4, scan=4000, clock=lambda: next(ticks)
            )
        ]
        assert len(pages) == 1 and pages[0].complete and pages[0].scanned == 100


async def test_search_steps_are_sized_by_the_store_not_by_the_caller(tmp_path: Path) -> None:
    from tuiaudit.storage.base import AuditFilter
    from tuiaudit.tui.data import SCAN_MIN, search_steps

    async with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        await store.insert_rows(needle_rows(100, 10))
        now = [0.0]
        sizes = []
        original = store.scan_rows

        async def spy(flt, *, before=None, limit, scan):  # type: ignore[no-untyped-def]
            sizes.append(scan)
            page = await original(flt, before=before, limit=limit, scan=min(scan, 30))
            return page

        store.scan_rows = spy  # type: ignore[method-assign]
        async for _ in search_steps(
            store, AuditFilter(text="absent"), want=4, scan=SCAN_MIN, clock=lambda: now[0]
        ):
            now[0] += 10.0  # the caller is slow with each page; the store took no time
        # Steps of 30 rows (the spy) over 100 rows: four steps, growing 4x each time.
        assert sizes[:3] == [SCAN_MIN, SCAN_MIN * 4, SCAN_MIN * 16]


async def test_text_search_in_bounded_steps_pauses_at_a_page(
    tmp_path: Path, small_steps: int
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        rows = needle_rows(1000, 4)  # 250 matches, one every 4 rows
        await store.insert_rows(rows)
        matches = [str(r.id) for r in rows if r.props.get("note")]
        spy = Reads(store)
        app = app_for(spy, debounce=0.0)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            spy.reads.clear()
            view = app.audit_view
            view.filter_text = "q~"
            view.apply_filter()
            await settle(app, pilot)
            # A page of matches and one more (held back): "of >100" is a fact.
            table = view.table
            shown = [str(table.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(100)]
            assert shown == matches[:PAGE] and table.row_count == PAGE
            search = view.search
            assert search is not None and not search.running and not search.done
            assert search.held is not None and str(search.held.id) == matches[PAGE]
            assert search.scanned == 401  # up to the 101st match (row 400), no further
            assert view.count is None
            assert "100 of >100 rows, 401 of ~1,000 rows searched" in screen_text(app)
            # Scrolling to the end searches on: the held row first, then a page more.
            table.move_cursor(row=table.row_count - 1)
            await settle(app, pilot)
            assert table.row_count == 2 * PAGE and search.scanned == 801
            assert "200 of >200 rows" in screen_text(app)
            table.move_cursor(row=table.row_count - 1)
            await settle(app, pilot)
            assert search.done and view.count == 250 and table.row_count == 250
            assert set(table.audit_rows) == set(matches)
            assert search.scanned == 1000
            assert "250 of 250 rows" in screen_text(app)
        # Every text read was a bounded step: never a LIKE over the whole store.
        steps = [k for name, flt, k in spy.reads if name == "scan_rows"]
        assert len(steps) >= 1000 // small_steps and all(k["scan"] <= small_steps for k in steps)
        for name, flt, _ in spy.reads:
            assert name == "scan_rows" or flt is None or not flt.text, name


async def test_a_new_filter_cancels_a_running_search(tmp_path: Path, small_steps: int) -> None:
    import asyncio

    from textual.worker import WorkerCancelled, WorkerState

    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        rows = needle_rows(300, 1000)  # one match: the newest row
        rows += [make_row(300 + i, name="logout") for i in range(5)]
        await store.insert_rows(rows)

        class Gated(Spy):
            """The second search step waits until the test opens the gate."""

            def __init__(self, inner: Any) -> None:
                super().__init__(inner)
                self.steps = 0
                self.parked = asyncio.Event()
                self.gate = asyncio.Event()

            async def scan_rows(self, *a: Any, **k: Any) -> Any:
                self.steps += 1
                if self.steps == 2:
                    self.parked.set()
                    await self.gate.wait()
                return await self._store.scan_rows(*a, **k)

        gated = Gated(store)
        app = app_for(gated, debounce=0.0)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            view = app.audit_view
            view.filter_text = "q~"
            view.apply_filter()
            await asyncio.wait_for(gated.parked.wait(), 10)
            await pilot.pause()
            # The first step's match is on screen while the search goes on.
            assert shown_names(app) == ["navigate"]
            assert "searching… 1 found, 50 of ~305 rows searched" in screen_text(app)
            (running,) = [w for w in app.workers if w.group == "audit-load"]
            view.filter_text = "name:logout"
            view.apply_filter()
            with contextlib.suppress(WorkerCancelled):
                await app.workers.wait_for_complete()
            await settle(app, pilot)
            assert running.state == WorkerState.CANCELLED
            assert view.search is None and set(shown_names(app)) == {"logout"}
            assert "searching" not in screen_text(app) and view.count == 5
            gated.gate.set()
            await settle(app, pilot)
            assert set(shown_names(app)) == {"logout"} and gated.steps == 2


async def test_text_search_tail_reads_only_new_rows(store_url: str) -> None:
    async with open_store(store_url) as writer, open_store(store_url, read_only=True) as reader:
        await writer.insert_rows(needle_rows(30, 15))  # matches: rows 0 and 15
        spy = Reads(reader)
        app = app_for(spy, debounce=0.0)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            view = app.audit_view
            view.filter_text = "q~"
            view.apply_filter()
            await settle(app, pilot)
            assert view.count == 2 and "2 of 2 rows" in screen_text(app)
            top = view.search.top if view.search else None
            spy.reads.clear()
            new = make_row(-3, name="new-match", props={"note": "Q~"})
            await writer.insert_rows([new, make_row(-2, name="new-other")])
            app.refresh_now(force=False)
            await settle(app, pilot)
            assert shown_names(app)[0] == "new-match" and view.count == 3
            # Only the rows above the newest row of the search were searched again.
            tails = [(flt, k) for name, flt, k in spy.reads if name == "fetch_rows_after"]
            assert tails and all(k["after"] == top for _, k in tails)
            assert not [r for r in spy.reads if r[0] == "scan_rows"]
            assert view.search is not None and view.search.top == (new.created_at, new.id)
            # Nothing new: no text is searched at all.
            spy.reads.clear()
            app.refresh_now(force=True)
            await settle(app, pilot)
            assert not [r for r in spy.reads if r[0] in ("fetch_rows_after", "scan_rows")]


# ------------------------------------------------------------------ live tail


async def test_live_tail_adds_rows_on_top_and_keeps_the_cursor(store_url: str) -> None:
    async with open_store(store_url) as writer, open_store(store_url, read_only=True) as reader:
        await writer.insert_rows([make_row(i, name=f"event-{i}") for i in range(10)])
        app = app_for(reader)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            table = app.audit_view.table
            table.move_cursor(row=3)
            await pilot.pause()
            selected = table.current_key()
            # Another connection commits; the change token moves; the tail reads it.
            await writer.insert_rows([make_row(-5, name="newest-event")])
            app.refresh_now(force=False)
            await settle(app, pilot)
            assert shown_names(app)[0] == "newest-event"
            assert table.row_count == 11
            assert table.current_key() == selected
            assert table.cursor_row == 4
            # Pausing live updates stops the tail.
            await pilot.press("p")
            await writer.insert_rows([make_row(-9, name="while-paused")])
            await app._refresh_chain()
            await settle(app, pilot)
            assert "while-paused" not in shown_names(app)
            assert "paused" in screen_text(app)
            await pilot.press("p")
            await settle(app, pilot)
            assert shown_names(app)[0] == "while-paused"
            # A telemetry row removed by another connection (shipped) leaves the view.
            copy = anonymise(make_row(-20, name="shipped-soon"))
            copy = replace(copy, created_at=NOW + timedelta(seconds=30))
            await writer.insert_rows([copy])
            app.refresh_now(force=False)
            await settle(app, pilot)
            assert shown_names(app)[0] == "shipped-soon"
            await writer.delete_rows([copy.id])
            app.refresh_now(force=False)
            await settle(app, pilot)
            assert "shipped-soon" not in shown_names(app)


# ------------------------------------------------------------------ detail and shared


async def test_row_detail_and_what_is_shared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        row = make_row(1, props={"email": "Ann@Example.com", "fullname": "Ann Lee", "n": 3})
        await store.insert_rows([row])
        app = app_for(store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, RowDetailScreen)
            text = screen_text(app)
            assert "Ann Lee" in text and str(row.id) in text and "request-id" in text
            await pilot.press("w")
            await pilot.pause()
            assert not isinstance(app.screen, RowDetailScreen)
            assert app.active_tab == "shared"
            screen = screen_text(app)
            assert "email → domain" in screen
            assert "example.com" in screen
            assert "props.fullname" in screen


# ------------------------------------------------------------------ preview


async def test_next_batch_preview_is_the_senders_body(store_url: str) -> None:
    async with open_store(store_url) as store:
        instance_id = await get_instance_id(store)
        full = [make_row(i) for i in range(40)]
        await store.insert_rows(full + [anonymise(r) for r in full])
        settings = Settings(batch_rows=25)
        expected = await next_batch(store, settings, instance_id=instance_id, version=__version__)
        assert expected is not None
        app = app_for(store, settings=settings)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("3")
            await settle(app, pilot)
            preview = app.query_one("#batch-summary").render()
            assert expected.sha256 in str(preview)
            screen = screen_text(app)
            assert "events 25" in screen and "of 40 pending" in screen
            assert ":login-with-password" not in screen  # names are values, not keywords
            assert '"name": "login-with-password"' in screen


# ------------------------------------------------------------------ shipping


async def test_shipping_shows_a_failure_from_the_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        ok = await store.ledger_begin(
            kind="events",
            events=10,
            raw_bytes=900,
            encoded_bytes=400,
            body_sha256="a" * 64,
            batch_key="k1",
            attempt=1,
            sink="http://x",
            started_at=NOW - timedelta(minutes=5),
        )
        await store.ledger_finish(
            ok, status="ok", ended_at=NOW - timedelta(minutes=5), http_status=200, latency_ms=12.0
        )
        bad = await store.ledger_begin(
            kind="events",
            events=7,
            raw_bytes=800,
            encoded_bytes=300,
            body_sha256="b" * 64,
            batch_key="k2",
            attempt=1,
            sink="http://x",
            started_at=NOW - timedelta(minutes=1),
        )
        await store.ledger_finish(
            bad,
            status="failed",
            ended_at=NOW - timedelta(minutes=1),
            http_status=503,
            error_class="retryable",
            error="service unavailable",
            latency_ms=30.0,
        )
        await store.add_drops("cap", 4)
        app = app_for(store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("4")
            await settle(app, pilot)
            view = app.query_one(ShippingView)
            assert view.snapshot is not None
            assert [e.status for e in view.snapshot.ledger] == ["failed", "ok"]
            assert view.snapshot.shipped_per_minute[-6] == 10
            screen = screen_text(app)
            assert "failed" in screen and "503" in screen and "service unavailable" in screen
            assert "cap 4" in screen
            assert "bbbbbbbbbbbb" in screen


async def test_daemon_dead_and_stopped_are_shown(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        state = DaemonState(
            daemon_id="d1",
            pid=4242,
            host="box",
            listen="127.0.0.1:6061",
            started_at=NOW - timedelta(hours=1),
            heartbeat_at=NOW - timedelta(minutes=2),
            flags=["audit-log"],
        )
        await store.put_daemon_state(state)
        app = app_for(store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.health is not None and app.health.state == "stale"
            assert "pid 4242 on box has not sent a heartbeat" in screen_text(app).replace(
                "(", ""
            ).replace(")", "")
            await pilot.press("4")
            await settle(app, pilot)
            assert "● stale" in screen_text(app)
            stopped = replace(state, heartbeat_at=NOW - timedelta(seconds=1), stopped_at=NOW)
            await store.put_daemon_state(stopped)
            app.refresh_now()
            await settle(app, pilot)
            assert app.health.state == "stopped"
            assert "The daemon is stopped" in screen_text(app)


async def test_a_store_that_disappears_is_a_banner_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with open_store(f"sqlite:///{path}") as store:
        await store.insert_rows([make_row(1)])
    app = app_for(f"sqlite:///{path}")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.audit_view.table.row_count == 1
        path.unlink()
        app.refresh_now()
        await settle(app, pilot)
        assert app.store_problem is not None and "removed" in app.store_problem
        assert "was removed or moved" in screen_text(app)


# ------------------------------------------------------------------ actions


ACTION_KEYS = [
    ("s", None, "ship-now", {}),
    ("h", None, "pause", {}),
    ("g", None, "gc", {}),
    ("a", "y", "accept-policy", {"version": POLICY_VERSION}),
    ("v", "y", "revoke-policy", {}),
    ("e", "y", "release-quarantine", {}),
    ("x", "y", "purge-quarantine", {}),
    ("d", "y", "purge-pending", {"filter": {"name": "logout"}}),
]


async def test_each_action_reaches_the_store_as_a_command_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        app = app_for(url, writer=store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            app.audit_view.filter_text = "name:logout"
            app.audit_view.apply_filter()
            await settle(app, pilot)
            for key, confirm, _kind, _args in ACTION_KEYS:
                await pilot.press(key)
                await pilot.pause()
                if confirm:
                    assert isinstance(app.screen, ConfirmScreen)
                    await pilot.press(confirm)
                await settle(app, pilot)
            # A cancelled confirmation sends nothing.
            await pilot.press("x")
            await pilot.pause()
            await pilot.press("escape")
            await settle(app, pilot)
            commands = await store.claim_commands("test")
            assert [(c.kind, c.args) for c in commands] == [(k, a) for _, _, k, a in ACTION_KEYS]
            # The daemon finishes one: the dashboard reports its result.
            await store.finish_command(commands[0].id, ok=False, result={"error": "no uri"})
            app.refresh_now()
            await settle(app, pilot)
            assert [c.kind for c in app.finished_commands] == ["ship-now"]
            assert commands[0].id not in app.pending_commands


async def test_read_only_hides_every_action(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        app = app_for(url, writer=store, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert "ship now" not in screen_text(app)
            for key, _confirm, _kind, _args in ACTION_KEYS:
                await pilot.press(key)
                await pilot.pause()
                assert not isinstance(app.screen, ConfirmScreen)
            await settle(app, pilot)
            assert await store.claim_commands("test") == []
            from tuiaudit.tui.palette import palette_keys

            assert not {k.action for k in palette_keys(True)} & {
                "ship_now",
                "gc",
                "purge_pending",
                "accept_policy",
            }
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            assert "Actions are hidden" in screen_text(app)


async def test_worker_failure_becomes_a_notification(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:

        class Broken(Spy):
            async def fetch_rows(self, *a: Any, **k: Any) -> Any:
                raise RuntimeError("disk on fire")

        app = app_for(Broken(store))
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(3):
                with contextlib.suppress(WorkerFailed):
                    await app.workers.wait_for_complete()
                await pilot.pause()
            assert app.is_running
            assert any("disk on fire" in str(n.message) for n in app._notifications)


async def test_refresh_reschedules_after_finishing_and_skips_while_modal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        await store.insert_rows([make_row(1)])
        # A long interval: the loop's timer never fires by itself during the test.
        app = app_for(store, refresh_interval=3600)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            first_timer = app._refresh_timer
            before = app.refreshes
            await app._refresh_chain()
            assert app.refreshes == before + 1
            assert app._refresh_timer is not first_timer  # scheduled after it finished
            await pilot.press("question_mark")
            await pilot.pause()
            await app._refresh_chain()
            assert app.refreshes == before + 1  # skipped under a modal, still rescheduled
            await pilot.press("escape")
            await pilot.pause()
            await pilot.press("p")
            await app._refresh_chain()
            assert app.refreshes == before + 1  # skipped while paused


async def test_command_palette_lists_every_action(tmp_path: Path) -> None:
    from tuiaudit.tui.keys import KEYS
    from tuiaudit.tui.palette import palette_keys

    actions = {k.action for k in palette_keys(False)}
    assert actions == {k.action for k in KEYS} - {"command_palette", "dismiss"}
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as store:
        app = app_for(url, writer=store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"ship now")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await settle(app, pilot)
            assert [c.kind for c in await store.claim_commands("t")] == ["ship-now"]


def test_tui_command_options() -> None:
    from tuiaudit.cli import build_parser

    args = build_parser().parse_args(["tui", "--read-only", "--refresh", "2", "--store", "x.db"])
    assert args.read_only and args.refresh == 2.0 and args.store == "x.db"
