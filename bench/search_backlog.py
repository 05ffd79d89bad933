"""What the search index's backlog costs a search (daemon/search_indexer.py BACKLOG_LIMIT).

    python bench/search_backlog.py [--backlogs 100000,200000,400000]

Rows not indexed yet are scanned by every free-text search, so the backlog the
indexer lets grow while ingest runs is paid by searches. This fills a fresh
SQLite store with the ingest benchmark's rows (bench/ingest_wrk.py: frontend
events and their telemetry copies), leaves them all unindexed, and times what
the dashboard does for a search at each backlog: the exact count (capped at
1,000) and the first page of 100 rows, for a common word, a rare id fragment
and a needle found nowhere. The best of three per needle (wall time: SQLite
runs in this process).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_wrk  # the rows of the ingest benchmark

from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter

TARGET_S = 0.5  # issue 18: a complete answer within half a second


async def main(backlogs: list[int]) -> None:
    _body, events, profile = ingest_wrk.frontend_body(datetime.now(UTC))
    needles = ("Quarterly", str(uuid.uuid4())[:13], "zz9q")
    with tempfile.TemporaryDirectory() as tmp:
        async with open_store(f"sqlite:///{tmp}/store.db") as store:
            total = 0
            for backlog in backlogs:
                while total < backlog:
                    rows = [r for _ in range(25) for r in ingest_wrk.rows_of(events, profile)]
                    await store.insert_rows(rows)
                    total += len(rows)
                for needle in needles:
                    times = []
                    for _ in range(3):
                        started = time.perf_counter()
                        n = await store.count_rows(AuditFilter(text=needle), limit=1000)
                        await store.fetch_rows(AuditFilter(text=needle), limit=100)
                        times.append(time.perf_counter() - started)
                    best = min(times)
                    verdict = "within" if best <= TARGET_S else "over"
                    print(
                        f"backlog {total:>9,} rows  needle {needle!r:<17} count+page "
                        f"{best * 1000:5.0f} ms ({verdict} {TARGET_S:g} s; {n:,} counted)",
                        flush=True,
                    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlogs", default="100000,200000,400000")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    asyncio.run(main([int(b) for b in args.backlogs.split(",")]))
