"""Ingest over HTTP: events/s through a real daemon next to the raw store limit.

The parent process runs the daemon (in-process, mode B: two rows per event)
on 127.0.0.1 port 0; a load generator in a separate process posts batches of
100 backend events to ``/api/audit/submit`` over loopback, bounded by a count
and a time budget, and reports throughput and request latency. In the same
run the parent measures the raw store limit for the same rows, 100 events
(200 rows) per transaction:

* SQLite: stdlib ``sqlite3.executemany`` in ``BEGIN IMMEDIATE`` … ``COMMIT``
  on a copy of the store's table (WAL, ``synchronous=NORMAL``);
* PostgreSQL: asyncpg ``copy_records_to_table`` into a copy of the table.

Target: HTTP mode B on SQLite at least 0.5x raw.

    python bench/ingest_http.py                     # both back-ends, ~5 s each
    python bench/ingest_http.py --backends sqlite --seconds 3 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PG_DSN = os.environ.get("TUIAUDIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 100
FLAGS = ("audit-log", "telemetry")  # mode B
COLUMNS = (
    "id",
    "name",
    "type",
    "source",
    "profile_id",
    "ip_addr",
    "props",
    "context",
    "tracked_at",
    "created_at",
    "archived_at",
)


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
    return json.loads(out.stdout)


# --------------------------------------------------------------- raw limits


def mode_b_rows(n: int) -> list[Any]:
    from tuiaudit.audit import AuditLog
    from tuiaudit.events import prepare_backend_events

    audit = AuditLog(None, FLAGS)  # type: ignore[arg-type]  # rows_for needs no store
    prepared = prepare_backend_events(make_events(n), now=datetime.now(UTC))
    return [r for p in prepared for r in audit.rows_for(p.row)]


def raw_sqlite(store_path: Path, tmp: Path, seconds: float) -> float:
    from storage.codec import row_params

    src = sqlite3.connect(store_path)
    ddl = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'audit_log' AND sql IS NOT NULL"
        )
    ]
    src.close()
    conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for sql in ddl:
        conn.execute(sql)
    insert = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 11)})"
    params = [row_params(r)[1:] for r in mode_b_rows(BATCH)]
    spent, batches = 0.0, 0
    try:
        while spent < seconds:
            batch = [(str(uuid.uuid4()), *p) for p in params]  # fresh primary keys
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, batch)
            conn.execute("COMMIT")
            spent += time.perf_counter() - t0
            batches += 1
    finally:
        conn.close()
    return batches * BATCH / spent


async def raw_postgres(schema: str, seconds: float) -> float:
    import asyncpg
    import orjson

    conn = await asyncpg.connect(PG_DSN)
    raw_schema = schema + "_raw"
    try:
        await conn.execute(
            f"CREATE SCHEMA {raw_schema}; "
            f"CREATE TABLE {raw_schema}.audit_log (LIKE {schema}.audit_log INCLUDING ALL)"
        )
        records = [
            (
                r.name,
                r.type,
                r.source,
                r.profile_id,
                r.ip_addr,
                orjson.dumps(r.props).decode(),
                orjson.dumps(r.context).decode(),
                r.tracked_at,
                r.created_at,
                r.archived_at,
            )
            for r in mode_b_rows(BATCH)
        ]
        spent, batches = 0.0, 0
        while spent < seconds:
            batch = [(uuid.uuid4(), *rec) for rec in records]
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "audit_log", records=batch, columns=COLUMNS, schema_name=raw_schema
                )
            spent += time.perf_counter() - t0
            batches += 1
        return batches * BATCH / spent
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {raw_schema} CASCADE")
        await conn.close()


# --------------------------------------------------------------------- cases


async def serve_and_load(store_url: str, args: argparse.Namespace) -> dict[str, Any]:
    from daemon.service import running_daemon
    from tuiaudit.config import Settings

    settings = Settings(store=store_url, listen="127.0.0.1:0", flags=FLAGS)
    async with running_daemon(settings, components=[]) as daemon:
        result = await asyncio.to_thread(run_load, daemon.port, args)
        stored = daemon.metrics.events_stored
    result["rows_stored"] = stored
    return result


async def case(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    if backend == "sqlite":
        store_path = tmp / "store.db"
        http = await serve_and_load(f"sqlite:///{store_path}", args)
        raw = raw_sqlite(store_path, tmp, args.seconds)
        return {"backend": backend, "raw_events_per_s": raw, **http}
    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        http = await serve_and_load(f"{PG_DSN}?schema={schema}", args)
        raw = await raw_postgres(schema, args.seconds)
        return {"backend": backend, "raw_events_per_s": raw, **http}
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


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
