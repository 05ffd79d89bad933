"""Why SQLite's trigram index is filled behind the writer, and what filling it costs.

    python bench/search_index.py [--rows 100000] [--batch 1000]

The same rows (tests/tui_support's big-store rows), the same transaction size:

1. raw inserts into audit_log (the store's DDL without the search triggers);
2. the same inserts with the FTS5 trigram index written in the same
   transaction (what triggers on audit_log would cost the writer);
3. the store's own path: plain inserts, then ``Store.index_search`` chunks
   (what the daemon's indexer does behind the writer), rows indexed per second.

CPU seconds of this process (SQLite runs in it), so other load on the machine
moves the figures less than wall time would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tui_support import _big_rows

from tuiaudit.storage import open_store

INSERT = (
    "INSERT INTO audit_log (id, name, type, source, profile_id, ip_addr, props, context,"
    " tracked_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
FTS = (
    "CREATE VIRTUAL TABLE audit_search USING fts5(name, type, source, profile_id, ip_addr,"
    " props, context, content = 'audit_log', content_rowid = 'rowid', tokenize = 'trigram')"
)
IN_TX = (
    "CREATE TRIGGER audit_search_insert AFTER INSERT ON audit_log BEGIN"
    " INSERT INTO audit_search (rowid, name, type, source, profile_id, ip_addr, props, context)"
    " VALUES (new.rowid, new.name, new.type, new.source, new.profile_id, new.ip_addr,"
    " new.props, new.context); END"
)


def table(path: Path, ddl_from: Path, *, index: bool) -> sqlite3.Connection:
    src = sqlite3.connect(ddl_from)
    ddl = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'audit_log' AND type != 'trigger'"
            " AND sql IS NOT NULL"
        )
    ]
    src.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for sql in ddl:
        conn.execute(sql)
    if index:
        conn.execute(FTS)
        conn.execute(IN_TX)
    return conn


def insert_all(conn: sqlite3.Connection, rows: list[tuple[object, ...]], batch: int) -> float:
    t0 = time.process_time()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows[i : i + batch])
        conn.execute("COMMIT")
    return time.process_time() - t0


async def behind_the_writer(
    url: str, rows: list[tuple[object, ...]], batch: int
) -> tuple[float, float]:
    path = Path(url.removeprefix("sqlite:///"))
    async with open_store(url):
        pass  # migrated
    conn = sqlite3.connect(path, isolation_level=None)
    insert = insert_all(conn, rows, batch)
    conn.close()
    async with open_store(url) as store:
        t0 = time.process_time()
        while (await store.index_search()).indexed:
            pass
        return insert, time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="rows per transaction")
    args = parser.parse_args()
    n = args.rows
    rows = list(_big_rows(n))
    load = os.getloadavg()[0]
    print(f"load average: {load:.2f} (2 cores shared); {n:,} rows, {args.batch} per transaction")
    with tempfile.TemporaryDirectory(prefix="tuiaudit-bench-") as tmp:
        store_url = f"sqlite:///{tmp}/store.db"
        insert, index = asyncio.run(behind_the_writer(store_url, rows, args.batch))
        ddl_from = Path(f"{tmp}/store.db")
        raw = insert_all(table(Path(f"{tmp}/raw.db"), ddl_from, index=False), rows, args.batch)
        in_tx = insert_all(table(Path(f"{tmp}/fts.db"), ddl_from, index=True), rows, args.batch)
    us = 1e6 / n

    def show(label: str, cpu: float, extra: str = "") -> None:
        print(f"{label:<36} {cpu * us:6.1f} µs/row {n / cpu:10,.0f} rows/s{extra}")

    show("raw insert (no index)", raw)
    show("insert + FTS5 in the same tx", in_tx, f"  ({in_tx / raw:.1f}x the raw insert)")
    show("store insert (index behind)", insert)
    show("index_search chunks (the indexer)", index)


if __name__ == "__main__":
    main()
