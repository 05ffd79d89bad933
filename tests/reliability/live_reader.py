# ruff: noqa: ASYNC240  (a stat() per loop is the point: no await in the way)
"""A reader polling hard during a full drain: no busy/locked error on either side, WAL bounded.

    python bench/reliability/live_reader.py            # 20,000 events, both back-ends
    python bench/reliability/live_reader.py --full     # 100,000 events

A backlog is seeded; ``python -m tuiaudit daemon`` drains it to the in-process
receiver while ``_reader.py`` (a separate process) loops with no pause over
the dashboard's read-only queries (``fetch_rows``, ``count_rows``,
``change_token``). Every 10 ms the harness samples the SQLite ``-wal`` file
size. Checked: the reader saw 0 errors; the daemon log has no busy/locked
line; the queue drained; the WAL never passed ``--wal-limit-mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from reliability.harness import (
    BUSY_WORDS,
    HERE,
    daemon_argv,
    log_lines_with,
    receiver,
    run_per_backend,
    seed_backlog,
    sqlite_path,
    start_daemon,
)
from tuiaudit.storage import open_store

WAL_LIMIT_MB = 64.0


async def live_reader_scenario(
    store_url: str, workdir: Path, *, events: int, batch_rows: int = 10_000,
    wal_limit_mb: float = WAL_LIMIT_MB,
) -> dict[str, Any]:  # fmt: skip
    backlog = set(await seed_backlog(store_url, events))
    log = workdir / "daemon.log"
    stop_file = workdir / "stop-reader"
    db = sqlite_path(store_url)
    wal = Path(f"{db}-wal") if db else None
    wal_max = 0
    reader = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "_reader.py"), store_url, str(stop_file),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert reader.stdout is not None
    assert (await asyncio.wait_for(reader.stdout.readline(), 60)).strip() == b"ready"
    async with receiver(None) as (state, uri):
        argv = daemon_argv(
            store_url,
            telemetry_uri=uri,
            extra=["--batch-rows", str(batch_rows), "--max-rows", str(events * 2)],
        )
        t0 = time.perf_counter()
        d = await start_daemon(argv, log)
        async with asyncio.timeout(600):
            while not backlog <= state.event_ids.keys():
                if wal is not None and wal.exists():
                    wal_max = max(wal_max, wal.stat().st_size)
                await asyncio.sleep(0.01)
        drain_s = time.perf_counter() - t0
        await asyncio.sleep(0.3)  # the reader keeps polling the drained store a little
        code = await d.terminate()
    stop_file.touch()
    out, _ = await asyncio.wait_for(reader.communicate(), 60)
    seen = json.loads(out.decode().strip().splitlines()[-1])
    async with open_store(store_url) as store:
        pending = (await store.queue_stats()).pending
    busy_lines = log_lines_with(log, BUSY_WORDS)
    figures = {
        "backend": store_url.split(":")[0],
        "events": events,
        "drain_s": round(drain_s, 2),
        "reader_ops": seen["ops"],
        "reader_ops_per_s": round(seen["ops"] / drain_s),
        "reader_errors": sum(seen["errors"].values()),
        "reader_busy_or_locked": seen["busy_or_locked"],
        "daemon_busy_or_locked_lines": len(busy_lines),
        "wal_max_mb": round(wal_max / 2**20, 2) if wal is not None else "n/a",
        "db_mb": round(os.path.getsize(db) / 2**20, 2) if db else "n/a",
        "pending_left": pending,
        "daemon_exit": code,
    }
    assert seen["errors"] == {}, seen
    assert not busy_lines, busy_lines[:3]
    assert pending <= 1, pending  # the last daemon's stop may leave nothing but a heartbeat
    assert wal_max <= wal_limit_mb * 2**20, figures
    assert code == 0
    return figures


async def main(args: argparse.Namespace) -> int:
    events = 100_000 if args.full else args.events
    await run_per_backend(
        "live-reader",
        args.backends,
        lambda url, tmp: live_reader_scenario(url, tmp, events=events),
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="100,000 events")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--backends", default="sqlite,postgresql")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
