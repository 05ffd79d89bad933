"""The dashboard on a 1,000,000-row SQLite store: first rows, filters, live tail, memory.

    python bench/tui.py                       # builds /tmp/tuiaudit-bench/big.db once
    python bench/tui.py --store /path/big.db  # an existing store (built the same way)

Each figure is printed next to its target and a same-run baseline: the raw
``sqlite3`` query of the same page, i.e. what the dashboard costs on top of
the database. The App runs headless (``run_test``) at 120×36, so "on screen"
means rendered into the headless terminal.

Targets: first rows ≤ 0.5 s, filter ≤ 0.2 s, ingest-to-visible ≤ 1 s, RSS ≤ 200 MB.

A free-text filter is a search in bounded steps: its target applies to the
first matching rows on screen; the time until the page is full ("100 of
>100", the search pauses) and until the whole store was searched (scrolling
on each time it pauses: "200 of 200") are printed too, next to what the
dashboard ran before (one LIKE query for the page, then a bounded count).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tui_support import build_big_store, make_row
from tuiaudit.storage import open_store

from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.widgets.audit_view import PAGE

SIZE = (120, 36)
FILTERS = ("name:logout", "source:frontend type:action")
RARE = "user4321@example.com"  # 200 rows of 1,000,000, one every 5,000
TEXT_COLUMNS = ("name", "source", "type", "profile_id", "props", "context")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raw_page(path: Path, where: str = "", params: tuple[Any, ...] = (), limit: int = PAGE) -> float:
    """Seconds for the same first ``limit`` rows through plain sqlite3 (the baseline)."""
    order = f"ORDER BY created_at DESC, id DESC LIMIT {limit}"
    return raw_query(path, f"SELECT * FROM audit_log {where} {order}", params)


def raw_query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> float:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        t0 = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        elapsed = time.perf_counter() - t0
        assert rows
        return elapsed
    finally:
        conn.close()


def old_text_where(text: str) -> tuple[str, tuple[Any, ...]]:
    """The text filter exactly as the dashboard queried it before the bounded search."""
    ors = " OR ".join(f"{c} LIKE ?1 ESCAPE '\\'" for c in TEXT_COLUMNS)
    return f"WHERE ({ors})", (f"%{text}%",)


def line(label: str, value: float, target: float, baseline: float | None, unit: str = "s") -> str:
    ok = "ok " if value <= target else "MISS"
    base = f"   baseline {baseline * 1000:8.1f} ms" if baseline is not None else ""
    if unit == "s":
        return f"{ok} {label:<38} {value * 1000:8.1f} ms  (target ≤ {target * 1000:.0f} ms){base}"
    return f"{ok} {label:<38} {value:8.1f} MB  (target ≤ {target:.0f} MB){base}"


async def wait_for(app: AuditApp, pilot: Any, check: Any, limit: float = 30.0) -> float:
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > limit:
            raise TimeoutError("the dashboard did not get there in time")
        await pilot.pause(0.005)
    return time.perf_counter() - t0


async def run(path: Path) -> list[str]:
    url = f"sqlite:///{path}"
    out: list[str] = []
    # Baseline for startup: an empty Textual App with a header, a table and a footer.
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable, Footer, Header

    class Empty(App[None]):
        def compose(self) -> ComposeResult:
            yield Header()
            yield DataTable()
            yield Footer()

    t0 = time.perf_counter()
    empty = Empty()
    async with empty.run_test(size=SIZE) as pilot:
        await pilot.pause()
    empty_start = time.perf_counter() - t0
    # 1. First rows on screen, from creating the App.
    t0 = time.perf_counter()
    app = AuditApp(url, refresh_interval=0.2, debounce=0.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(app, pilot, lambda: app.audit_view.table.row_count > 0)
        first = time.perf_counter() - t0
        out.append(
            line("time to first rows on screen", first, 0.5, raw_page(path))
            + f"; empty Textual app start {empty_start * 1000:.0f} ms"
        )

        # Let the startup settle (the hidden panes mount lazily after the first paint).
        await app.workers.wait_for_complete()
        for _ in range(5):
            await pilot.pause(0.05)
        # 2. Filters: from applying to the table holding only matches.
        view = app.audit_view
        for text in FILTERS:
            view.filter_text = text
            t1 = time.perf_counter()
            view.apply_filter()
            generation = view.generation
            await wait_for(app, pilot, lambda g=generation: view.loaded_generation == g)
            elapsed = time.perf_counter() - t1
            await app.workers.wait_for_complete()
            counted = time.perf_counter() - t1
            where, params = _raw_filter(text)
            out.append(
                line(
                    f"filter {text!r} ({view.table.row_count} rows)",
                    elapsed,
                    0.2,
                    raw_page(path, where, params),
                )
                + f"; honest count after {counted * 1000:.0f} ms"
            )
        out.extend(await bench_search(app, pilot, path))
        view.filter_text = ""
        view.apply_filter()
        await app.workers.wait_for_complete()
        await pilot.pause()

        # 3. Ingest to visible: another connection commits; the live tail shows it.
        latencies = []
        async with open_store(url, migrate=False) as writer:
            for i in range(5):
                row = make_row(-1000 - i, name=f"bench-live-{i}", created_at=datetime.now(UTC))
                t2 = time.perf_counter()
                await writer.insert_rows([row])
                key = str(row.id)
                await wait_for(app, pilot, lambda k=key: k in view.table.audit_rows)
                latencies.append(time.perf_counter() - t2)
        out.append(
            line("ingest-to-visible (median of 5)", statistics.median(latencies), 1.0, None)
            + f"   max {max(latencies) * 1000:.0f} ms (refresh every 0.2 s)"
        )
    out.append(line("peak RSS", rss_mb(), 200, None, unit="MB"))
    return out


async def bench_search(app: AuditApp, pilot: Any, path: Path) -> list[str]:
    """The rare text: first rows, the page full (search paused), the whole store searched."""
    view = app.audit_view
    view.filter_text = RARE
    t0 = time.perf_counter()
    view.apply_filter()
    generation = view.generation
    await wait_for(
        app,
        pilot,
        lambda: view.loaded_generation == generation and view.table.row_count > 0,
    )
    first = time.perf_counter() - t0
    first_shown = view.table.row_count
    search = view.search
    assert search is not None
    await wait_for(app, pilot, lambda: not search.running)
    paused = time.perf_counter() - t0
    page_shown, page_scanned = view.table.row_count, search.scanned
    while not search.done:  # scroll to the end each time it pauses
        view.load_more()
        await wait_for(app, pilot, lambda: not search.running)
    done = time.perf_counter() - t0
    await app.workers.wait_for_complete()
    where, params = old_text_where(RARE)
    old_page = raw_page(path, where, params)
    old_count = raw_query(
        path, f"SELECT count(*) FROM (SELECT 1 FROM audit_log {where} LIMIT 501)", params
    )
    # The first match's baseline asks plain sqlite3 for as many rows as the
    # dashboard had on screen then, with the same LIKE: the same page size.
    first_raw = raw_page(path, where, params, limit=first_shown)
    return [
        line(f"search {RARE!r}: first rows ({first_shown})", first, 0.2, first_raw)
        + f" (baseline: raw sqlite3, the same LIKE, LIMIT {first_shown})",
        f"     search: page full ({page_shown} of >{page_shown}, {page_scanned:,} rows searched)"
        f" {paused * 1000:8.1f} ms   baseline {old_page * 1000:8.1f} ms (same page, one query)",
        f"     search: complete ({view.table.row_count} of {view.count}, {search.scanned:,} rows)"
        f" {done * 1000:8.1f} ms   baseline {(old_page + old_count) * 1000:8.1f} ms"
        " (old page query + its count, raw sqlite3)",
    ]


def _raw_filter(text: str) -> tuple[str, tuple[Any, ...]]:
    if text.startswith("name:"):
        return "WHERE name = ?", (text[5:],)
    if text.startswith("source:"):
        return "WHERE source = ? AND type = ?", ("frontend", "action")
    return old_text_where(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/tmp/tuiaudit-bench/big.db", help="SQLite file")
    args = parser.parse_args()
    path = Path(args.store)
    built = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    build_big_store(path)  # builds it, or migrates a cached one to this tuiaudit's schema
    if built:
        print(f"built {path} (1,000,000 rows) in {time.perf_counter() - t0:.1f} s")
    for text in asyncio.run(run(path)):
        print(text)


if __name__ == "__main__":
    main()
