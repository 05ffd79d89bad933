"""Ingest over HTTP: events/s through a real daemon next to the raw store limit.

The parent process runs the daemon (in-process, mode B: two rows per event)
on 127.0.0.1 port 0; a load generator in a separate process posts batches of
100 backend events to ``/api/audit/submit`` over loopback, bounded by a count
and a time budget, and reports throughput and request latency. In the same
run the parent measures the raw store limit for the same rows, 100 events
(200 rows) per transaction, with ``bench/ingest.py``'s raw side (stdlib
``sqlite3.executemany`` / asyncpg ``copy_records_to_table`` on a copy of the
store's table).

Target: HTTP mode B on SQLite at least 0.5x raw.

    python bench/ingest_http.py                     # both back-ends, ~5 s each
    python bench/ingest_http.py --backends sqlite --seconds 3 --concurrency 4
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
from pathlib import Path
from typing import Any, cast

PG_DSN = os.environ.get("TUIAUDIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 100
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
FLAGS = ("audit-log", "telemetry")  # mode B


def make_events(n: int) -> list[dict[str, Any]]:
    """Realistic backend events: UUID/number/string props, a small context."""
    profile = str(uuid.uuid4())
    return [
        {
            "name": "update-file",
            "type": "action",
            "profile-id": profile,
            "ip-addr": "203.0.113.9",
            "tracked-at": "2024-05-01T12:00:00.500Z",
            "props": {
                "file-id": str(uuid.uuid4()),
                "project-id": str(uuid.uuid4()),
                "revn": i,
                "title": "Quarterly plan",
                "is-shared": True,
            },
            "context": {"initiator": "api", "client-version": "2.1.0", "session": "abc"},
        }
        for i in range(n)
    ]


# ------------------------------------------------------------- load process


async def load(url: str, count: int, seconds: float, concurrency: int) -> dict[str, Any]:
    import aiohttp

    body = json.dumps({"events": make_events(BATCH)}).encode()
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
        "batches": len(latencies),
        "events_per_s": len(latencies) * BATCH / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "errors": errors,
        "seconds": elapsed,
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


# --------------------------------------------------------------- raw limits


async def raw_limit(backend: str, seconds: float, tmp: Path) -> float:
    """The raw store limit for the same rows (mode B, 100 events per transaction).

    Measured by ``bench/ingest.py`` (fresh rows as the store would write them,
    the same table and pragmas, stdlib ``sqlite3.executemany`` / asyncpg
    ``copy_records_to_table``), in this same run.
    """
    sys.path.insert(0, BENCH_DIR)
    import ingest  # bench/ingest.py

    if backend == "sqlite":
        _, raw = await ingest.sqlite_case("B", BATCH, seconds, tmp)
    else:
        _, raw = await ingest.pg_case("B", BATCH, seconds)
    return raw


# --------------------------------------------------------------------- cases


async def serve_and_load(store_url: str, args: argparse.Namespace) -> dict[str, Any]:
    from tuiaudit.daemon.service import running_daemon

    from tuiaudit.config import Settings

    settings = Settings(store=store_url, listen="127.0.0.1:0", flags=FLAGS)
    async with running_daemon(settings, components=[]) as daemon:
        result = await asyncio.to_thread(run_load, daemon.port, args)
        stored = daemon.metrics.events_stored
        groups = getattr(daemon.store, "group_stats", None)  # SQLite's group commit
    result["rows_stored"] = stored
    if groups is not None and groups.groups:
        result["groups"] = (
            f"{groups.groups:,} transactions, {groups.calls / groups.groups:.1f} requests "
            f"each (max {groups.max_calls})"
        )
    return result


async def case(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    if backend == "sqlite":
        http = await serve_and_load(f"sqlite:///{tmp / 'store.db'}", args)
    else:
        import asyncpg

        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(PG_DSN)
        try:
            await admin.execute(f"CREATE SCHEMA {schema}")
            http = await serve_and_load(f"{PG_DSN}?schema={schema}", args)
        finally:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await admin.close()
    return {
        "backend": backend,
        "raw_events_per_s": await raw_limit(backend, args.seconds, tmp),
        **http,
    }


async def main(args: argparse.Namespace) -> int:
    if args.load:
        print(json.dumps(await load(args.load, args.count, args.seconds, args.concurrency)))
        return 0
    print(
        f"HTTP ingest, mode B, {BATCH} events per request, {args.concurrency} connections, "
        f"<= {args.count} requests / {args.seconds:g} s per back-end (load in a separate process)"
    )
    head = f"{'backend':<11}{'HTTP ev/s':>11}{'raw ev/s':>11}{'ratio':>8}"
    print(f"{head}{'p50 ms':>9}{'p99 ms':>9}  errors")
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                r = await case(backend, args, Path(tmp))
            except (OSError, ImportError) as exc:
                print(f"{backend:<11}skipped: {exc}")
                continue
        print(
            f"{r['backend']:<11}{r['events_per_s']:>11,.0f}{r['raw_events_per_s']:>11,.0f}"
            f"{r['events_per_s'] / r['raw_events_per_s']:>7.2f}x"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}  {r['errors'] or 'none'}"
        )
        if "groups" in r:
            print(f"{'':<11}insert_rows group commit: {r['groups']}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget per side")
    parser.add_argument("--count", type=int, default=5000, help="max requests per back-end")
    parser.add_argument("--concurrency", type=int, default=8, help="connections in flight")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the child process
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
