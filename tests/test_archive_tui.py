"""The dashboard and the audit archive (DESIGN §9): archived rows marked, the
``archived:yes|no`` filter, and the Archive tab (queue, deletions, attempts)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from textual.widgets import DataTable
from tui_support import NOW, make_row

from tuiaudit.control import ControlError, filter_from_json, filter_to_json
from tuiaudit.storage import open_store
from tuiaudit.storage.base import ArchiveAttempt, AuditRow
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.archive_panel import ArchivePanel
from tuiaudit.tui.filters import FilterError, parse_filter

SIZE = (120, 36)


def screen_text(app: AuditApp) -> str:
    svg = app.export_screenshot()
    body = svg[svg.index('<g class="') :] if '<g class="' in svg else svg
    return html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\xa0", " ")


async def settle(app: AuditApp, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def test_archived_filter_words() -> None:
    assert parse_filter("archived:yes").archived is True
    assert parse_filter("archived:no name:login").archived is False
    assert parse_filter("archived:").archived is None  # half typed
    with pytest.raises(FilterError, match="archived:yes or archived:no"):
        parse_filter("archived:maybe")
    # The dashboard's purge request carries the filter as JSON: it must come back whole.
    flt = parse_filter("archived:no name:login")
    assert filter_from_json(filter_to_json(flt)) == flt
    with pytest.raises(ControlError, match="true or false"):
        filter_from_json({"archived": "no"})


def attempt(rows: int, *, ok: bool) -> ArchiveAttempt:
    return ArchiveAttempt(
        started_at=NOW,
        ended_at=NOW + timedelta(milliseconds=3),
        status="ok" if ok else "failed",
        events=rows,
        bytes=100 * rows,
        body_sha256="ab" * 32,
        http_status=204 if ok else 503,
        error_class=None if ok else "retryable",
        error=None if ok else "archive answered HTTP 503; will retry with back-off",
        latency_ms=3.0,
        sink="http://archive.example/in",
    )


async def test_archived_rows_are_marked_filtered_and_the_archive_tab_shows_the_queue(
    tmp_path: Any,
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    rows = [make_row(i, name=f"event-{i}") for i in range(6)]
    async with open_store(url) as store:
        await store.insert_rows(rows)
        answers = iter([False, True, True])

        async def send(chunk: list[AuditRow]) -> ArchiveAttempt:
            return attempt(len(chunk), ok=next(answers))

        for _ in range(2):  # a failure, then the oldest two archived
            await store.archive_chunk(send, limit=2, holder="t", lease_s=60.0)
        await store.gc_archived(older_than=NOW - timedelta(days=30))  # deletes nothing
    archived = {f"event-{i}" for i in (4, 5)}  # the two oldest

    app = AuditApp(url, clock=lambda: NOW, refresh_interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = app.audit_view.table
        sources = {
            str(table.get_row_at(i)[3]): table.get_row_at(i)[1].plain
            for i in range(table.row_count)
        }
        assert {n for n, s in sources.items() if s.endswith(" archived")} == archived
        assert "backend archived" in screen_text(app)

        await pilot.press("slash", *"archived:yes", "enter")
        await settle(app, pilot)
        shown = {str(table.get_row_at(i)[3]) for i in range(table.row_count)}
        assert shown == archived
        await pilot.press("escape")
        await settle(app, pilot)
        await pilot.press("slash", *"archived:no", "enter")
        await settle(app, pilot)
        assert table.row_count == 4

        await pilot.press("escape", "6")
        await settle(app, pilot)
        panel = app.query_one(ArchivePanel)
        assert panel.data is not None
        assert (panel.data["pending"], panel.data["archived"]) == (4, 2)
        attempts = app.query_one("#archive-attempts", DataTable)
        statuses = [attempts.get_row_at(i)[2].plain for i in range(attempts.row_count)]
        assert statuses == ["ok", "failed"]  # newest first
        text = screen_text(app)
        assert "4 full row(s) not archived" in text
        assert "Deleted  archived 0, retention 0" in text
        assert "not archiving" in text  # no daemon archives this store
        assert "[retryable] archive answered HTTP 503" in text
