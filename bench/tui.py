"""The dashboard on a 2,000,000-row store, SQLite or PostgreSQL: first rows, filters,
free-text search through the index, live tail, memory.

    python bench/tui.py                                   # SQLite, /tmp/tuiaudit-bench/big2m.db
    python bench/tui.py --store postgresql://postgres@127.0.0.1/test?schema=bench_tui
    python bench/tui.py --rows 500000                     # another size (its own file/schema)

The store is built once and kept (SQLite: plain inserts, then ``migrate`` builds
the trigram index in chunks; PostgreSQL: COPY into the table without its search
and filter indexes, then ``migrate`` builds them with CREATE INDEX CONCURRENTLY,
the path an existing store takes). Each figure is printed next to its target
and a same-run baseline: the raw query of the same page or count on the same
engine (sqlite3 / asyncpg), i.e. what the dashboard costs on top of the database.
The App runs headless (``run_test``) at 120×36.

Targets (issues 18, 21): first rows ≤ 0.5 s, filter change ≤ 0.2 s, a rare
term's complete answer with its exact count ≤ 0.5 s after the last key, a common
term's first page ≤ 0.2 s, ingest-to-visible ≤ 1 s (PostgreSQL: LISTEN/NOTIFY),
RSS ≤ 200 MB. On PostgreSQL, a missed target prints EXPLAIN (ANALYZE, BUFFERS)
of every query the dashboard ran for it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import asyncpg
from tui_support import _big_rows, build_big_store, make_row

from tuiaudit.storage import open_store
from tuiaudit.storage.postgres import PostgresStore
from tuiaudit.tui.app import AuditApp
from tuiaudit.tui.widgets.audit_view import PAGE

SIZE = (120, 36)
FILTERS = ("name:logout", "source:frontend type:action")
RARE = "user4321@example.com"  # one row in 5,000 (400 of 2,000,000)
COMMON = "update-file"  # one row in 5


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(label: str, value: float, target: float, baseline: float | None, unit: str = "s") -> str:
    ok = "ok " if value <= target else "MISS"
    base = f"   baseline {baseline * 1000:8.1f} ms" if baseline is not None else ""
    if unit == "s":
        return f"{ok} {label:<44} {value * 1000:8.1f} ms  (target ≤ {target * 1000:.0f} ms){base}"
    return f"{ok} {label:<44} {value:8.1f} MB  (target ≤ {target:.0f} MB){base}"


# ---------------------------------------------------------------- the store


def build_sqlite(path: Path, rows: int) -> str:
    url = f"sqlite:///{path}"
    if not path.exists():
        t0 = time.perf_counter()
        build_big_store(path, rows)
        print(f"built {path} ({rows:,} rows) in {time.perf_counter() - t0:.1f} s")
    else:
        build_big_store(path, rows)  # migrates a cached one to this tuiaudit's schema
    asyncio.run(_build_index(url))
    return url


def _progress(what: str, done: int, total: int) -> None:
    print(f"\r  {what}: {done:,} of {total:,}", end="", flush=True)


async def _build_index(url: str) -> None:
    async with open_store(url) as store:
        t0 = time.perf_counter()
        state = await store.search_index_state()
        if state.pending:
            await store.migrate(progress=_progress)
            print(f"\n  search index built in {time.perf_counter() - t0:.1f} s")


async def build_postgres(url: str, rows: int) -> None:
    """COPY ``rows`` rows into the URL's schema unless it holds them already."""
    async with open_store(url) as store:
        assert isinstance(store, PostgresStore)
        if await store.total_rows() >= rows:
            return  # built by an earlier run
        schema = store.schema
    conn = await asyncpg.connect(url.split("?")[0], server_settings={"search_path": schema})
    try:
        t0 = time.perf_counter()
        await conn.execute("TRUNCATE audit_log")
        # The table without the indexes migration 0005 builds: they are built
        # afterwards by the migration itself, as for any existing store.
        await conn.execute(
            "DROP INDEX IF EXISTS audit_log_search, audit_log_name_created, "
            "audit_log_type_created, audit_log_profile_created, audit_log_source_created_id"
        )
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS audit_log_source_created ON audit_log (source, created_at)"
        )
        await conn.execute("DELETE FROM schema_migrations WHERE version >= 5")
        records = (
            (
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                datetime.fromisoformat(r[8]), datetime.fromisoformat(r[9]), None,
            )
            for r in _big_rows(rows)
        )  # fmt: skip
        columns = [
            "id", "name", "type", "source", "profile_id", "ip_addr", "props", "context",
            "tracked_at", "created_at", "archived_at",
        ]  # fmt: skip
        await conn.copy_records_to_table("audit_log", records=records, columns=columns)
        await conn.execute("VACUUM ANALYZE audit_log")
        print(f"copied {rows:,} rows in {time.perf_counter() - t0:.1f} s")
    finally:
        await conn.close()
    async with open_store(url, migrate=False) as store:
        t0 = time.perf_counter()
        await store.migrate(progress=_progress)
        print(f"\n  migration 0005 (CREATE INDEX CONCURRENTLY) in {time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------- baselines


class Raw:
    """The same statements on a plain connection of the same engine: the baseline."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith("postgres")

    async def time(self, sql: str, *params: Any) -> float:
        if self.pg:
            base, _, query = self.url.partition("?")
            schema = query.split("schema=")[1].split("&")[0]
            conn = await asyncpg.connect(base, server_settings={"search_path": schema})
            try:
                t0 = time.perf_counter()
                await conn.fetch(sql, *params)
                return time.perf_counter() - t0
            finally:
                await conn.close()
        conn = sqlite3.connect(f"file:{self.url.removeprefix('sqlite:///')}?mode=ro", uri=True)
        try:
            t0 = time.perf_counter()
            conn.execute(sql.replace("$1", "?").replace("$2", "?"), params).fetchall()
            return time.perf_counter() - t0
        finally:
            conn.close()

    async def page(self, where: str = "", *params: Any) -> float:
        return await self.time(
            f"SELECT * FROM audit_log {where} ORDER BY created_at DESC, id DESC LIMIT {PAGE}",
            *params,
        )


# Statements the PostgreSQL reader ran, per scenario (for EXPLAIN on a miss).
RECORDED: list[tuple[str, tuple[Any, ...]]] = []


def record_pg_statements() -> None:
    for name in ("_fetch", "_fetchrow"):
        original: Callable[..., Any] = getattr(PostgresStore, name)

        async def wrapped(self: Any, sql: str, *args: Any, _o: Any = original) -> Any:
            if self.read_only:
                RECORDED.append((sql, args))
            return await _o(self, sql, *args)

        setattr(PostgresStore, name, wrapped)


async def explain(url: str) -> list[str]:
    base, _, query = url.partition("?")
    schema = query.split("schema=")[1].split("&")[0]
    conn = await asyncpg.connect(base, server_settings={"search_path": schema})
    out = []
    try:
        for sql, args in RECORDED:
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            out.append(f"    -- {sql[:200]}")
            out.extend(f"       {r[0]}" for r in plan)
    finally:
        await conn.close()
    return out


# ---------------------------------------------------------------- the dashboard


async def wait_for(pilot: Any, check: Callable[[], bool], limit: float = 60.0) -> float:
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > limit:
            raise TimeoutError("the dashboard did not get there in time")
        await pilot.pause(0.002)
    return time.perf_counter() - t0


async def run(url: str, raw: Raw) -> list[str]:
    out: list[str] = []
    pg = raw.pg
    # Baseline for startup: an empty Textual App with a header, a table and a footer.
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable, Footer, Header

    class Empty(App[None]):
        def compose(self) -> ComposeResult:
            yield Header()
            yield DataTable()
            yield Footer()

    t0 = time.perf_counter()
    async with Empty().run_test(size=SIZE) as pilot:
        await pilot.pause()
    empty_start = time.perf_counter() - t0
    RECORDED.clear()
    t0 = time.perf_counter()
    app = AuditApp(url, refresh_interval=0.2, debounce=0.0)
    async with app.run_test(size=SIZE) as pilot:
        view = app.audit_view
        await wait_for(pilot, lambda: view.table.row_count > 0)
        first = time.perf_counter() - t0
        out.append(
            line("time to first rows on screen", first, 0.5, await raw.page())
            + f"; empty Textual app start {empty_start * 1000:.0f} ms"
        )
        if pg and first > 0.5:
            out.extend(await explain(url))
        await app.workers.wait_for_complete()
        for _ in range(5):
            await pilot.pause(0.05)

        async def scenario(
            label: str, text: str, target: float, baseline: float, done: Callable[[], bool]
        ) -> None:
            RECORDED.clear()
            view.filter_text = text
            t1 = time.perf_counter()
            view.apply_filter()
            generation = view.generation
            await wait_for(pilot, lambda: view.loaded_generation == generation and done())
            elapsed = time.perf_counter() - t1
            await app.workers.wait_for_complete()
            counted = time.perf_counter() - t1
            out.append(
                line(
                    f"{label} ({view.table.row_count} rows, count {view.count})",
                    elapsed,
                    target,
                    baseline,
                )
                + f"; count after {counted * 1000:.0f} ms"
            )
            if pg and elapsed > target:
                out.extend(await explain(url))

        for text in FILTERS:
            where, params = ("WHERE name = $1", ("logout",)) if text.startswith("name:") else (
                "WHERE source = $1 AND type = $2", ("frontend", "action"))  # fmt: skip
            await scenario(
                f"filter {text!r}", text, 0.2, await raw.page(where, *params), lambda: True
            )
        like = "ILIKE" if pg else "LIKE"
        expr = (
            "tuiaudit_search_text(name, type, source, profile_id, ip_addr, props, context)"
            if pg
            else "props"
        )
        rare_base = await raw.time(
            f"SELECT count(*) FROM audit_log WHERE {expr} {like} $1", f"%{RARE}%"
        ) + await raw.page(f"WHERE {expr} {like} $1", f"%{RARE}%")
        await scenario(
            f"search {RARE!r} complete, exact count", RARE, 0.5, rare_base,
            lambda: view.count is not None and view.table.row_count > 0,
        )  # fmt: skip
        await scenario(
            f"search {COMMON!r} first page", COMMON, 0.2,
            await raw.page(f"WHERE name {like} $1", f"%{COMMON}%"),
            lambda: view.table.row_count >= PAGE,
        )  # fmt: skip
        view.filter_text = ""
        view.apply_filter()
        await app.workers.wait_for_complete()
        await pilot.pause()

        latencies = []
        live: list[Any] = []
        async with open_store(url, migrate=False) as writer:
            for i in range(5):
                row = make_row(-1000 - i, name=f"bench-live-{i}", created_at=datetime.now(UTC))
                t2 = time.perf_counter()
                await writer.insert_rows([row])
                key = str(row.id)
                await wait_for(pilot, lambda k=key: k in view.table.audit_rows)
                latencies.append(time.perf_counter() - t2)
                live.append(row.id)
            await writer.delete_rows(live)  # the store keeps its size for the next run
        how = "LISTEN/NOTIFY" if pg else "data_version"
        out.append(
            line("ingest-to-visible (median of 5)", statistics.median(latencies), 1.0, None)
            + f"   max {max(latencies) * 1000:.0f} ms ({how}, refresh every 0.2 s)"
        )
    out.append(line("peak RSS", rss_mb(), 200, None, unit="MB"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="", help="SQLite file or postgresql:// URL")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows in the store")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)")
    if args.store.startswith("postgres"):
        url = args.store
        asyncio.run(build_postgres(url, args.rows))
        record_pg_statements()
    else:
        path = Path(args.store or f"/tmp/tuiaudit-bench/big{args.rows // 1_000_000 or ''}m.db")
        if args.rows % 1_000_000:
            path = Path(args.store or f"/tmp/tuiaudit-bench/big-{args.rows}.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        url = build_sqlite(path, args.rows)
    for text in asyncio.run(run(url, Raw(url))):
        print(text)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
