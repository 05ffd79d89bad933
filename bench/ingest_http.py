"""Ingest over HTTP: events/s through a real daemon next to the raw store limit.

The parent process runs the daemon (in-process, mode B: two rows per event)
on 127.0.0.1 port 0; a load generator in a separate process posts batches of
100 backend events to ``/api/audit/submit`` over loopback, bounded by a count
and a time budget, and reports throughput and request latency.

The raw side is measured the way ``bench/ingest.py`` measures it (stdlib
``sqlite3.executemany`` / asyncpg ``copy_records_to_table`` into a copy of the
store's table; only the insert is timed), with the same events the load
posts (``bench/ingest.py``'s ``make_events``) and at the same transaction
size the daemon used in that round: SQLite's group commit merges concurrent
requests into one transaction, so the raw side commits as many events per
transaction as the daemon's transactions held on average (read from the
store's group-commit counters), not a fixed 100.

HTTP and raw runs alternate (HTTP, raw, HTTP, raw, ...) so both see the same
machine load; the table reports every round, then the median and the spread
(min-max) of each side and of the per-round ratio. The box is shared: read
the median ratio, not one run.

Target: HTTP mode B on SQLite at least 0.5x raw (median ratio).

    python bench/ingest_http.py                     # both back-ends, 3 rounds of ~5 s per side
    python bench/ingest_http.py --backends sqlite --seconds 3 --rounds 5 --concurrency 4
    python bench/ingest_http.py --wrk --backends sqlite --workers 1,2   # issue 20 (wrk)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import asyncpg

from tuiaudit.config import Settings
from tuiaudit.daemon.service import Daemon, running_daemon
from tuiaudit.storage.columns import row_params

# A bench script, not a test: the sibling scripts are plain modules.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ingest  # bench/ingest.py: the events and the raw side, shared
import ingest_wrk  # bench/ingest_wrk.py: the --wrk measurement

PG_DSN = ingest.PG_DSN
BATCH = 100
MODE = "B"  # audit-log + telemetry: two rows per event
FLAGS = tuple(ingest.MODES[MODE])

# The events of every request, and of the raw side: the same list, built once.
EVENTS = ingest.make_events(BATCH)


# ------------------------------------------------------------- load process


async def load(url: str, count: int, seconds: float, concurrency: int) -> dict[str, Any]:
    body = json.dumps({"events": EVENTS}).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < count and time.perf_counter() < deadline:
            sent += 1
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 204:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # warm-up: connections, prepared statements
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "events_per_s": len(latencies) * BATCH / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "errors": errors,
    }


def run_load(port: int, args: argparse.Namespace) -> dict[str, Any]:
    """The load generator in its own process (its own interpreter and core)."""
    cmd = [
        sys.executable,
        __file__,
        "--load",
        f"http://127.0.0.1:{port}/api/audit/submit",
        "--count",
        str(args.count),
        "--seconds",
        str(args.seconds),
        "--concurrency",
        str(args.concurrency),
    ]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=args.seconds + 120)
    return cast(dict[str, Any], json.loads(out.stdout))


# --------------------------------------------------------------- one round


@dataclass
class Round:
    http: float  # events/s through the daemon
    http_txn: float  # events per store transaction on the daemon's side
    raw: float  # events/s of the raw insert, same events, same transaction size
    raw_txn: int
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.http / self.raw


async def http_round(daemon: Daemon, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    """One load run; the events per store transaction it produced."""
    stats = getattr(daemon.store, "group_stats", None)  # SQLite's group commit
    before = (stats.groups, stats.calls) if stats is not None else (0, 0)
    result = await asyncio.to_thread(run_load, daemon.port, args)
    if stats is None:  # PostgreSQL: one transaction per request
        return result, float(BATCH)
    groups, calls = stats.groups - before[0], stats.calls - before[1]
    return result, BATCH * calls / groups if groups else float(BATCH)


async def raw_round(insert: Any, requests_per_txn: int, seconds: float) -> float:
    """events/s of the raw insert, ``requests_per_txn`` requests' rows per transaction."""
    spent, events = 0.0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or events == 0:
        # The rows the daemon stores for that many requests of EVENTS, made now
        # (fresh ids, this moment's created_at) and outside the timing.
        rows = [r for _ in range(requests_per_txn) for r in ingest.rows_of(MODE, EVENTS)]
        spent += await insert(rows)
        events += requests_per_txn * BATCH
    return events / spent


async def rounds(store_url: str, raw_insert: Any, args: argparse.Namespace) -> list[Round]:
    settings = Settings(
        store=store_url, listen="127.0.0.1:0", flags=FLAGS, workers=int(args.workers.split(",")[0])
    )
    out: list[Round] = []
    async with running_daemon(settings, components=[]) as daemon:
        await raw_round(raw_insert, 1, 0.2)  # warm-up of the raw side
        for _ in range(args.rounds):
            http, per_txn = await http_round(daemon, args)
            requests_per_txn = max(1, round(per_txn / BATCH))
            raw = await raw_round(raw_insert, requests_per_txn, args.seconds)
            out.append(
                Round(
                    http=http["events_per_s"], http_txn=per_txn,
                    raw=raw, raw_txn=requests_per_txn * BATCH,
                    p50_ms=http["p50_ms"] or 0.0, p99_ms=http["p99_ms"] or 0.0,
                    errors=http["errors"],
                )
            )  # fmt: skip
    return out


async def sqlite_rounds(args: argparse.Namespace, tmp: Path) -> list[Round]:
    path = tmp / "store.db"
    url = f"sqlite:///{path}"
    async with running_daemon(Settings(store=url, listen="127.0.0.1:0", flags=FLAGS)):
        pass  # create and migrate the store, so its DDL can be copied
    conn = ingest.sqlite_raw_table(path, tmp / "raw.db")

    async def insert(rows: list[Any]) -> float:
        return ingest.sqlite_raw_insert(conn, [row_params(r) for r in rows])

    try:
        return await rounds(url, insert, args)
    finally:
        conn.close()


async def pg_rounds(args: argparse.Namespace) -> list[Round]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    raw_schema = schema + "_raw"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}; CREATE SCHEMA {raw_schema}")
        url = f"{PG_DSN}?schema={schema}"
        async with running_daemon(Settings(store=url, listen="127.0.0.1:0", flags=FLAGS)):
            pass  # create and migrate the store, so its table can be copied
        await admin.execute(
            f"CREATE TABLE {raw_schema}.audit_log (LIKE {schema}.audit_log INCLUDING ALL)"
        )

        async def insert(rows: list[Any]) -> float:
            return await ingest.pg_raw_insert(admin, raw_schema, ingest.pg_records(rows))

        return await rounds(url, insert, args)
    finally:
        await admin.execute(
            f"DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {raw_schema} CASCADE"
        )
        await admin.close()


# ------------------------------------------------------------------- report


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)``."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


async def main(args: argparse.Namespace) -> int:
    if args.wrk:  # issue 20's measurement: wrk, frontend batches, two raw baselines
        return await ingest_wrk.main(args)
    if args.load:
        print(json.dumps(await load(args.load, args.count, args.seconds, args.concurrency)))
        return 0
    print(
        f"HTTP ingest, mode {MODE}, {BATCH} events per request, {args.concurrency} connections, "
        f"{args.rounds} alternating rounds of <= {args.count} requests / {args.seconds:g} s "
        "(load in a separate process); raw: the same events, the daemon's transaction size"
    )
    head = f"{'backend':<11}{'round':<7}{'HTTP ev/s':>11}{'ev/txn':>8}{'raw ev/s':>11}{'ev/txn':>8}"
    print(f"{head}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}  errors")
    verdict: float | None = None
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                if backend == "sqlite":
                    results = await sqlite_rounds(args, Path(tmp))
                else:
                    results = await pg_rounds(args)
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"{backend:<11}skipped: {exc.__class__.__name__}: {exc}")
                continue
        for i, r in enumerate(results, 1):
            print(
                f"{backend:<11}{i:<7}{r.http:>11,.0f}{r.http_txn:>8,.0f}{r.raw:>11,.0f}"
                f"{r.raw_txn:>8,}{r.ratio:>7.2f}x{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}"
                f"  {r.errors or 'none'}"
            )
        ratios = [r.ratio for r in results]
        print(
            f"{backend:<11}median: HTTP {spread([r.http for r in results], ',.0f')} ev/s, "
            f"raw {spread([r.raw for r in results], ',.0f')} ev/s, "
            f"ratio {spread(ratios, '.2f')}"
        )
        if backend == "sqlite":
            verdict = statistics.median(ratios)
    if verdict is not None:
        status = "met" if verdict >= 0.5 else "NOT met"
        print(f"\ntarget (SQLite, median ratio) >= 0.50x raw: {verdict:.2f}x, {status}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--seconds", type=float, default=None, help="time budget per side (5; 6 with --wrk)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating HTTP/raw rounds")
    parser.add_argument("--count", type=int, default=5000, help="max requests per round")
    parser.add_argument("--concurrency", type=int, default=8, help="connections in flight")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the child process
    parser.add_argument(
        "--wrk",
        action="store_true",
        help="load with wrk as issue 20 measures (bench/ingest_wrk.py)",
    )
    parser.add_argument(
        "--workers", default="1", help="the daemon's --workers; with --wrk a list (1,2) alternates"
    )
    parser.add_argument(
        "--no-components",
        action="store_true",
        help="with --wrk: the daemon without its background components (search indexer, "
        "shipper, heartbeat): the bare ingest path",
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 6.0 if args.wrk else 5.0
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
